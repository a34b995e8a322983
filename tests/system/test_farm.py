"""The farm end to end: real rendering commands, outages, crashes, conflicts, and who wins a disagreement."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.system.conftest import Farm

FAKE_BLENDER = Path(__file__).resolve().parents[1] / "support" / "fake_blender.py"


def blender_yaml(exe: Path | str = FAKE_BLENDER) -> str:
    return f"variables:\n  blender:\n    values:\n      - platform: linux\n        value: {exe}\n"


def submit_render(farm: Farm, out: Path, frames: str = "1-4", chunk: int = 2, fmt: str = "PNG") -> dict:
    code, job = farm.manager.request(
        "POST",
        "/api/v3/jobs",
        {
            "name": "render test",
            "type": "simple-blender-render",
            "priority": 50,
            "submitter_platform": "linux",
            "settings": {
                "frames": frames,
                "chunk_size": chunk,
                "render_output_root": str(out),
                "add_path_components": 0,
                "render_output_path": str(out / "######"),
                "blendfile": str(out / "shot.blend"),
                "fps": 24.0,
                "format": fmt,
                "image_file_extension": ".png",
                "has_previews": False,
                "scene": "Scene",
            },
        },
    )
    assert code == 200, job
    return job


def wait_job(farm: Farm, job_id: str, status: str = "completed", timeout: float = 60) -> dict:
    return farm.manager.wait_until(
        f"job {status}", lambda: (j := farm.manager.job(job_id))["status"] == status and j, timeout
    )


def task_log(farm: Farm, task_id: str) -> str:
    code, info = farm.manager.request("GET", f"/api/v3/tasks/{task_id}/log")
    if code == 204:
        return ""
    assert code == 200, info
    path = farm.manager.workdir / "storage" / info["url"].split("/job-files/", 1)[1]
    return path.read_text()


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_render_job_with_fake_blender_and_real_ffmpeg(farm_factory, short_dir: Path) -> None:
    farm: Farm = farm_factory(blender_yaml())
    out = short_dir / "render"
    farm.start_worker("w1", env={"FAKE_BLENDER_PREFIX": "1"})
    job = submit_render(farm, out)
    wait_job(farm, job["id"])
    tasks = {t["name"]: t for t in farm.manager.tasks(job["id"])}
    assert set(tasks) == {
        "render-1,2",
        "render-3,4",
        "preview-video",
    }  # two-frame chunks, named as Flamenco does
    assert all(t["status"] == "completed" for t in tasks.values())
    assert tasks["render-1,2"]["steps_completed"] == 2  # one step per "Time:" line
    assert sorted(p.name for p in out.glob("*.png")) == [
        "000001.png",
        "000002.png",
        "000003.png",
        "000004.png",
    ]
    video = out / "shot-1-4.mp4"
    assert video.exists() and video.stat().st_size > 0
    probe = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames,codec_name",
            "-of",
            "json",
            str(video),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    stream = json.loads(probe.stdout)["streams"][0]
    assert stream["codec_name"] == "h264" and int(stream["nb_read_frames"]) == 4
    log = task_log(farm, tasks["render-1,2"]["id"])
    assert "going to run" in log and "Saved: '" in log
    # the last rendered image reached the manager as a thumbnail
    farm.manager.wait_until(
        "last-rendered",
        lambda: farm.manager.request("GET", "/api/v3/jobs/last-rendered")[0] == 200,
        timeout=10,
    )


@pytest.mark.skipif(shutil.which("blender") is None, reason="Blender is not installed on this machine")
def test_real_blender_renders_a_frame(farm_factory, short_dir: Path) -> None:
    blender = shutil.which("blender")
    assert blender is not None
    farm: Farm = farm_factory(blender_yaml(blender))
    out = short_dir / "real"
    blend = out / "shot.blend"
    out.mkdir()
    subprocess.run(
        [
            "blender",
            "-b",
            "--factory-startup",
            "--python-expr",
            f"import bpy; bpy.ops.wm.save_as_mainfile(filepath={str(blend)!r})",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    farm.start_worker("w1")
    job = submit_render(farm, out, frames="1", chunk=1)
    wait_job(farm, job["id"], timeout=300)
    assert list(out.glob("*.png"))


def test_worker_started_before_the_manager(farm_factory) -> None:
    farm: Farm = farm_factory(start_manager=False)
    worker = farm.start_worker("early", signed_on=False)
    worker.wait_property("Status", 's "starting"')
    assert "unreachable" in worker.get("StatusText")
    farm.manager.start()
    farm.wait_worker_status(worker, "awake", timeout=20)
    job = farm.manager.submit_echo_sleep(seconds=0)
    wait_job(farm, job["id"])


@pytest.mark.reliability
def test_manager_outage_mid_task_loses_no_update(farm_factory, short_dir: Path, fault) -> None:
    row = fault("manager kill -9 mid-task", "the task's 240 log lines and 6 steps arrive, in order")
    farm: Farm = farm_factory(blender_yaml())
    out = short_dir / "outage"
    worker = farm.start_worker(
        "w1", env={"FAKE_BLENDER_LINES": "40", "FAKE_BLENDER_DELAY": "0.5"}, log_to_file=True
    )
    job = submit_render(farm, out, frames="1-6", chunk=6)
    task = farm.manager.wait_until(
        "render task active",
        lambda: next((t for t in farm.manager.tasks(job["id"]) if t["status"] == "active"), None),
    )
    # Some of the task's output has reached the manager before it is killed.
    farm.manager.wait_until("render output at the manager", lambda: "> Fra:" in task_log(farm, task["id"]))
    farm.manager.kill()  # kill -9: in-flight updates go to the worker's outbox
    farm.manager.wait_until(
        "the worker to queue updates", lambda: "Manager not taking task updates" in worker.output()
    )
    assert worker.process.poll() is None
    farm.manager.start()
    wait_job(farm, job["id"], timeout=60)
    log = task_log(farm, task["id"])
    seen = [line.split("> ", 1)[1] for line in log.splitlines() if "> Fra:" in line]
    expected = [f"Fra:{f} line {i}" for f in range(1, 7) for i in range(40)]
    if seen != expected:
        worker.signal(signal.SIGTERM)
        worker.wait_exit(20)
        (Path("/tmp") / f"outage-{os.getpid()}.log").write_text(
            farm.manager.log() + "\n=====\n" + worker.output()
        )
    assert seen == expected, f"{len(seen)} of {len(expected)} lines, first difference at " + str(
        next((i for i, (a, b) in enumerate(zip(seen, expected, strict=False)) if a != b), len(seen))
    )
    assert farm.manager.task(task["id"])["steps_completed"] == 6
    row.figure = f"{len(seen)} of {len(expected)} lines"


@pytest.mark.reliability
def test_worker_killed_mid_task_gets_its_task_back(farm: Farm, fault) -> None:
    row = fault("worker kill -9, restarted", "its active task is re-delivered to it")
    worker = farm.start_worker("w1")
    job = farm.manager.submit_echo_sleep(seconds=30)
    task = farm.manager.running_sleep_task(job["id"])
    worker.process.send_signal(signal.SIGKILL)
    worker.wait_exit(5)
    again = farm.start_worker("w1")  # same FLAMENCO_HOME: same worker
    farm.manager.wait_until(
        "re-delivery", lambda: again.get("CurrentTask") == f's "{task["id"]}"', timeout=20
    )
    assert farm.manager.task(task["id"])["status"] == "active"
    row.figure = "same task re-delivered"


@pytest.mark.reliability
def test_worker_in_error_recovers_by_itself(farm_factory, fault) -> None:
    row = fault("worker marked error (frozen past the timeout)", "recovers to awake by itself (409 handled)")
    # A short worker timeout marks a frozen worker `error`; once it runs again, it must not stay stuck (409).
    farm: Farm = farm_factory(
        "worker_timeout: 2s\ntimeout_check_interval: 500ms\ntimeout_initial_delay: 0s\nlong_poll_max: 1s\n"
    )
    worker = farm.start_worker("w1")
    worker.process.send_signal(signal.SIGSTOP)
    try:
        farm.wait_worker_status(worker, "error", timeout=20)
    finally:
        worker.process.send_signal(signal.SIGCONT)
    resumed = time.monotonic()
    farm.wait_worker_status(worker, "awake", timeout=40)
    row.figure = f"awake again {time.monotonic() - resumed:.1f} s after it resumed"
    job = farm.manager.submit_echo_sleep(seconds=0)
    wait_job(farm, job["id"], timeout=40)


def test_latest_request_wins_between_manager_and_dbus(farm: Farm) -> None:
    worker = farm.start_worker("w1")
    wid = farm.worker_id(worker)
    job = farm.manager.submit_echo_sleep(seconds=4)
    farm.manager.running_sleep_task(job["id"])
    # the Manager asks for a lazy shutdown, then a local operator sends the worker to sleep instead
    assert farm.manager.set_worker_status(wid, "offline", True)[0] == 204
    # (204: the Manager has recorded it, so the D-Bus request below is the later one)
    worker.call("Sleep", "b", "false")
    # the Manager's view follows the later, local request
    farm.manager.wait_until(
        "mirrored request",
        lambda: (farm.manager.worker(wid).get("status_change") or {}).get("status") == "asleep",
        timeout=10,
    )
    wait_job(farm, job["id"], timeout=20)
    farm.wait_worker_status(worker, "asleep")
    # Nothing is pending any more: the older shutdown request cannot come back and win.
    assert worker.get("RequestedStatus") == 's ""'
    assert worker.process.poll() is None, "the older shutdown request must not win"
    # and the other way round: a later Manager request overrides a local one
    worker.call("Sleep", "b", "false")  # already asleep: no-op
    assert farm.manager.set_worker_status(wid, "awake", False)[0] == 204
    worker.wait_property("Status", 's "awake"', timeout=10)


def test_sign_on_answer_is_the_first_status(farm: Farm) -> None:
    # asleep, then stopped: the Manager remembers "asleep" and the next start goes straight back to sleep
    worker = farm.start_worker("w1")
    worker.call("Sleep", "b", "false")
    farm.wait_worker_status(worker, "asleep")
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(20) == 0
    again = farm.start_worker("w1", signed_on=False)
    farm.wait_worker_status(again, "asleep")
    again.wait_property("Status", 's "asleep"')


def test_deleted_worker_registers_anew_and_says_so(farm: Farm) -> None:
    worker = farm.start_worker("w1")
    old_id = farm.worker_id(worker)
    code, _ = farm.manager.request("DELETE", f"/api/v3/worker-mgt/workers/{old_id}")
    assert code == 204
    farm.manager.wait_until(
        "a new registration",
        lambda: any(
            w["name"] == "w1" and w["id"] != old_id and w["status"] == "awake" for w in farm.manager.workers()
        ),
        timeout=30,
    )
    new_id = farm.worker_id(worker)
    assert new_id != old_id
    worker.wait_property("WorkerID", f's "{new_id}"')
    worker.signal(signal.SIGTERM)
    worker.wait_exit(20)
    assert "REGISTERING AS A NEW WORKER" in worker.output()
