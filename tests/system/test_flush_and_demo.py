"""`flamenco-worker -flush` and the `make run` demo, as real processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.manager_process import REPO, ManagerProcess
from tests.support.waiting import PipeLines, wait_for
from tests.system.conftest import Farm

# The demo's start-up: a bus, the manager, a worker signing on, a job queued; well under this.
DEMO_START_TIMEOUT = 60.0
# The demo's first sleep task starts as soon as the worker signs on and the echo task is done.
TASK_START_TIMEOUT = 60.0


def test_flush_delivers_what_was_queued_while_the_manager_was_down(farm: Farm) -> None:
    worker = farm.start_worker("w1", log_to_file=True)
    job = farm.manager.submit_echo_sleep(seconds=2)
    task = farm.manager.running_sleep_task(job["id"])
    farm.manager.kill()
    # The task completes; its last updates can only go to the outbox.
    wait_for(lambda: f"task={task['id']} outcome=completed" in worker.output(), 30, "the task to complete")
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(30) == 0
    home = worker.workdir / "home"
    env = {**os.environ, "FLAMENCO_HOME": str(home), "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        "-m",
        "flamenco_worker",
        "-config",
        "/dev/null",
        "-dbus",
        "off",
        "-manager",
        farm.manager.url,
        "-flush",
    ]
    down = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert down.returncode == 75, down.stderr
    farm.manager.start()
    up = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stderr
    assert re.search(r"flushed (\d+) of \1 queued task updates", up.stderr), up.stderr
    assert farm.manager.task(task["id"])["status"] == "completed"


def processes_in(directory: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if Path(os.readlink(proc / "cwd")).is_relative_to(directory):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


@pytest.mark.timeout(240)
def test_ctrl_c_in_the_demo_hands_the_running_task_back_and_stops_everything(short_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for key in ("DBUS_SESSION_BUS_ADDRESS", "NOTIFY_SOCKET", "JOURNAL_STREAM"):
        env.pop(key, None)
    # Its own process group, like a terminal's foreground job: Ctrl-C is SIGINT to the whole group.
    demo = subprocess.Popen(
        [sys.executable, "-m", "flamenco_manager.demo"],
        cwd=short_dir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    run = short_dir / "run"
    try:
        assert demo.stdout is not None
        lines = PipeLines(demo.stdout)
        job_id = lines.wait_match(r"demo job:\s+\S+/api/v3/jobs/(\S+)", DEMO_START_TIMEOUT).group(1)
        lines.wait_line(lambda line: "Ctrl-C stops everything" in line, DEMO_START_TIMEOUT)
        # The banner stays readable: the worker's own log lines go to run/worker.log.
        assert not any("flamenco_worker" in line for line in lines.seen), lines.seen
        task_prefix = lines.wait_match(r"task sleep \((\w+)\): active", TASK_START_TIMEOUT).group(1)
        os.killpg(demo.pid, signal.SIGINT)
        assert demo.wait(120) == 0
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
        if demo.stdout is not None:
            demo.stdout.close()
    assert processes_in(run) == []
    assert "flamenco_worker" in (run / "worker.log").read_text()

    # The manager again, on the demo's database: the interrupted task was handed back, not left active.
    manager = ManagerProcess(run).start()
    try:
        tasks = {task["id"]: task for task in manager.tasks(job_id)}
    finally:
        manager.stop()
    interrupted = next(task for task_id, task in tasks.items() if task_id.startswith(task_prefix))
    assert interrupted["status"] in ("queued", "soft-failed"), interrupted
    assert [task for task in tasks.values() if task["status"] == "active"] == []
