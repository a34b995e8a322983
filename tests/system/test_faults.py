"""Faults a farm meets overnight, with real processes; each records a row of the reliability summary."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.reliability import scale
from tests.support.dbus_daemon import PrivateBus
from tests.support.waiting import wait_for
from tests.system.conftest import Farm
from tests.system.test_farm import FAKE_BLENDER, blender_yaml, submit_render, task_log, wait_job

pytestmark = pytest.mark.reliability


def children_of(pid: int) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(proc.name))
    return found


def test_manager_down_while_ten_workers_log(farm_factory, short_dir: Path, fault) -> None:
    row = fault("manager killed while 10 workers log", "every log line once, in order, per task")
    farm: Farm = farm_factory(blender_yaml())
    lines_per_frame, frames, outage = 30, int(scale(4, 12)), scale(2.5, 20)
    for i in range(10):
        farm.start_worker(
            f"w{i}", env={"FAKE_BLENDER_LINES": str(lines_per_frame), "FAKE_BLENDER_DELAY": "0.4"}
        )
    job = submit_render(farm, short_dir / "out", frames=f"1-{frames * 10}", chunk=frames, fmt="EXR")

    def ten_active() -> list[dict] | None:
        tasks = [t for t in farm.manager.tasks(job["id"]) if t["status"] == "active"]
        return tasks if len(tasks) == 10 else None

    active = farm.manager.wait_until("ten tasks active", ten_active)
    # Every task's output is flowing to the manager when it goes down.
    farm.manager.wait_until(
        "output of every active task at the manager",
        lambda: all("> Fra:" in task_log(farm, task["id"]) for task in active),
    )
    farm.manager.kill()
    time.sleep(outage)
    farm.manager.start()
    wait_job(farm, job["id"], timeout=90 + outage)
    sent = received = 0
    for task in farm.manager.tasks(job["id"]):
        first = int(task["name"].split("-")[1])
        expected = [f"Fra:{f} line {i}" for f in range(first, first + frames) for i in range(lines_per_frame)]
        seen = [ln.split("> ", 1)[1] for ln in task_log(farm, task["id"]).splitlines() if "> Fra:" in ln]
        sent += len(expected)
        received += len(seen)
        assert seen == expected, f"task {task['name']}: lines lost, repeated or out of order"
    row.figure = f"{outage:.1f} s outage: lines sent {sent}, received {received}"


def test_worker_killed_and_not_restarted_its_task_moves_on(farm_factory, fault) -> None:
    row = fault("worker kill -9, not restarted", "timeout marks it error; task requeued, run elsewhere")
    farm: Farm = farm_factory(
        "worker_timeout: 2s\ntimeout_check_interval: 500ms\ntimeout_initial_delay: 0s\nlong_poll_max: 1s\n"
    )
    doomed = farm.start_worker("doomed")
    job = farm.manager.submit_echo_sleep(seconds=1)
    task = farm.manager.running_sleep_task(job["id"])
    doomed.process.send_signal(signal.SIGKILL)
    doomed.wait_exit(5)
    started = time.monotonic()
    farm.wait_worker_status(doomed, "error", timeout=20)
    rescuer = farm.start_worker("rescuer")
    wait_job(farm, job["id"], timeout=30)
    detail = farm.manager.task(task["id"])
    assert detail["worker"]["name"] == "rescuer"
    row.figure = f"task completed elsewhere {time.monotonic() - started:.1f} s after the kill"
    assert rescuer.process.poll() is None


def test_unusable_flamenco_home_keeps_the_worker_serving(farm: Farm, short_dir: Path, fault) -> None:
    row = fault("unusable FLAMENCO_HOME", "clear errors; jobs still run; nothing overwritten")
    blocker = short_dir / "not-a-directory"
    blocker.write_text("")
    worker = farm.start_worker("homeless", env={"FLAMENCO_HOME": str(blocker / "home")}, signed_on=False)
    farm.manager.wait_until(
        "registered",
        lambda: any(w["name"] == "homeless" and w["status"] == "awake" for w in farm.manager.workers()),
    )
    job = farm.manager.submit_echo_sleep(seconds=0)
    wait_job(farm, job["id"])
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(20) == 0
    out = worker.output()
    assert "credentials cannot be saved" in out and "kept in memory" in out
    assert blocker.read_text() == ""
    row.figure = "job completed, updates kept in memory"


def test_dbus_daemon_restart_the_worker_takes_its_name_again(farm: Farm, short_dir: Path, fault) -> None:
    row = fault("dbus-daemon restarted", "the worker owns its name again and obeys")
    worker = farm.start_worker("w1")
    farm.bus.stop()
    farm.bus.start()
    began = time.monotonic()
    wait_for(
        lambda: farm.bus.busctl("status", "org.flamenco.Worker1", check=False).returncode == 0,
        20,
        "the worker to own its name on the new bus",
        interval=0.2,
    )
    took = time.monotonic() - began
    assert worker.get("Status") == 's "awake"'
    worker.call("Sleep", "b", "false")
    farm.wait_worker_status(worker, "asleep")
    row.figure = f"back on the bus after {took:.1f} s"


def test_bad_dbus_calls_get_errors_and_the_worker_runs_on(farm: Farm, session_bus: PrivateBus, fault) -> None:
    row = fault("bad D-Bus calls", "wrong types, unknown methods, read-only sets: errors")
    worker = farm.start_worker("w1")
    obj = ["org.flamenco.Worker1", "/org/flamenco/Worker1", "org.flamenco.Worker1"]
    cases = [
        (["call", *obj, "ShutDown", "s", "yes"], 'ShutDown with signature "s" could not be found'),
        (["call", *obj, "ShutDown"], 'ShutDown with signature "" could not be found'),
        (["call", *obj, "Explode"], "Explode with signature"),
        (["set-property", *obj, "Status", "s", "asleep"], "the property is readonly"),
        (
            ["call", "org.flamenco.Worker1", "/nowhere", "org.flamenco.Worker1", "WakeUp"],
            "could not be found",
        ),
    ]
    for args, expected in cases:
        result = session_bus.busctl(*args, check=False)
        assert result.returncode != 0, args
        assert expected in result.stderr, (args, result.stderr)
    row.figure = f"{len(cases)} bad calls refused, worker running"
    assert worker.get("Status") == 's "awake"'
    assert worker.process.poll() is None


def test_sighup_during_a_task_does_not_disturb_it(farm: Farm, fault) -> None:
    row = fault("SIGHUP during a task", "reloads leave the task running to completion")
    count = int(scale(5, 50))
    worker = farm.start_worker("w1")
    job = farm.manager.submit_echo_sleep(seconds=2)
    farm.manager.running_sleep_task(job["id"])
    for _ in range(count):
        worker.signal(signal.SIGHUP)
        time.sleep(0.05)
    wait_job(farm, job["id"])
    assert worker.process.poll() is None
    row.figure = f"{count} reloads, task completed"


def test_sigterm_storm_exits_zero_and_leaves_no_process(farm_factory, fault) -> None:
    row = fault("SIGTERM storm on a busy worker", "exit 0, no task process left")
    count = int(scale(20, 200))
    farm: Farm = farm_factory(blender_yaml())
    worker = farm.start_worker("w1", env={"FAKE_BLENDER_DELAY": "60"})
    job = submit_render(farm, farm.root / "storm", frames="1", chunk=1, fmt="EXR")
    farm.manager.wait_until(
        "render running", lambda: any(t["status"] == "active" for t in farm.manager.tasks(job["id"]))
    )
    kids = wait_for(lambda: children_of(worker.process.pid), 10, "the render process to run")
    for _ in range(count):
        worker.signal(signal.SIGTERM)
    assert worker.wait_exit(15) == 0

    def alive() -> list[int]:
        return [
            k
            for k in kids
            if Path(f"/proc/{k}").exists()
            and "Z" not in Path(f"/proc/{k}/stat").read_text().rsplit(")", 1)[1].split()[0]
        ]

    # The process group was killed before the worker exited; the kernel may take a moment to reap it.
    wait_for(lambda: alive() == [], 5, f"render processes to be gone: {alive()}")
    row.figure = f"{count} SIGTERMs: exit 0, 0 processes left"


def test_secrets_never_reach_a_log(farm: Farm, fault) -> None:
    row = fault("secrets in logs", "worker secret absent from worker and manager logs; file 0600")
    worker = farm.start_worker("w1", "-debug")
    secret_line = next(
        ln
        for ln in (worker.workdir / "home" / "flamenco-worker-credentials.yaml").read_text().splitlines()
        if ln.startswith("worker_secret:")
    )
    secret = secret_line.split(":", 1)[1].strip()
    assert len(secret) == 64
    assert (
        oct(os.stat(worker.workdir / "home" / "flamenco-worker-credentials.yaml").st_mode & 0o777) == "0o600"
    )
    job = farm.manager.submit_echo_sleep(seconds=0)
    wait_job(farm, job["id"])
    worker.signal(signal.SIGTERM)
    worker.wait_exit(20)
    out, manager_log = worker.output(), farm.manager.log()
    assert secret not in out
    assert secret not in manager_log
    row.figure = f"{(len(out) + len(manager_log)) / 1000:.0f} kB of debug logs searched"


@pytest.mark.skipif(not FAKE_BLENDER.exists(), reason="fake blender missing")
def test_fake_blender_is_executable() -> None:
    assert os.access(FAKE_BLENDER, os.X_OK)
    out = subprocess.run(
        [str(FAKE_BLENDER), "x.blend", "--render-frame", "1", "--render-output", "/dev/null"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "Blender quit" in out.stdout


def test_damaged_credentials_stop_the_worker_with_78(farm: Farm, fault) -> None:
    row = fault("damaged credentials file", "exit 78 naming the file, no restart loop")
    home = farm.root / "w1" / "home"
    home.mkdir(parents=True)
    (home / "flamenco-worker-credentials.yaml").write_text("worker_id: [unclosed\n")
    worker = farm.start_worker("w1", signed_on=False)
    assert worker.wait_exit(20) == 78
    out = worker.output()
    assert "flamenco-worker-credentials.yaml" in out and "delete the file" in out
    row.figure = "exit 78"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a small tmpfs")
def test_manager_storage_full_keeps_the_farm_running(short_dir: Path, session_bus: PrivateBus, fault) -> None:
    row = fault("manager storage full", "task logs fail loudly; tasks and jobs still complete")
    from tests.support.manager_process import ManagerProcess

    storage = short_dir / "mgr" / "storage"
    storage.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(storage)], check=True)
    manager = ManagerProcess(short_dir / "mgr", extra_yaml=blender_yaml()).start()
    farm = Farm(short_dir, session_bus, manager)
    try:
        farm.start_worker("w1", env={"FAKE_BLENDER_LINES": "4000"})
        job = submit_render(farm, short_dir / "full", frames="1-8", chunk=2, fmt="EXR")
        wait_job(farm, job["id"], timeout=60)
        assert manager.request("GET", "/api/v3/version")[0] == 200
        log = manager.log()
        assert "cannot write task log" in log and "No space left on device" in log, log[-3000:]
        assert "Traceback" not in log  # reported as a clear line, not a crash
        errors = [line for line in log.splitlines() if "No space left" in line]
        row.figure = (
            f"job of {len(manager.tasks(job['id']))} tasks completed on a full 256 KiB disk; "
            f"{len(errors)} error lines"
        )
    finally:
        for w in farm.workers:
            w.stop()
        manager.kill()
        subprocess.run(["umount", "-l", str(storage)], check=False)
