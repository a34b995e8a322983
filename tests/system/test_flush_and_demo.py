"""`flamenco-worker -flush` and the `make run` demo, as real processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.manager_process import REPO
from tests.system.conftest import Farm


def test_flush_delivers_what_was_queued_while_the_manager_was_down(farm: Farm) -> None:
    worker = farm.start_worker("w1")
    job = farm.manager.submit_echo_sleep(seconds=2)
    task = farm.manager.running_sleep_task(job["id"])
    farm.manager.kill()
    time.sleep(3)  # the task completes; its last updates can only go to the outbox
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


def test_demo_runs_a_farm_and_stops_cleanly_on_ctrl_c(short_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for key in ("DBUS_SESSION_BUS_ADDRESS", "NOTIFY_SOCKET", "JOURNAL_STREAM"):
        env.pop(key, None)
    demo = subprocess.Popen(
        [sys.executable, "-m", "flamenco_manager.demo"],
        cwd=short_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert demo.stdout is not None
        deadline = time.monotonic() + 30
        text = ""
        while "Ctrl-C stops everything" not in text and time.monotonic() < deadline:
            text += demo.stdout.readline()
        url = re.search(r"web interface:\s+(\S+)", text).group(1)
        busctl = re.search(r"(busctl --address=\S+) get-property (.*) StatusText", text)
        got = ""
        while "running task" not in got and time.monotonic() < deadline:
            got = subprocess.run(
                f"{busctl.group(1)} get-property {busctl.group(2)} StatusText",
                shell=True,
                capture_output=True,
                text=True,
            ).stdout
            time.sleep(0.2)
        assert "running task" in got, got
        assert url.startswith("http://127.0.0.1:")
        demo.send_signal(signal.SIGINT)
        assert demo.wait(60) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        demo.stdout.close()
    assert processes_in(short_dir / "run") == []
    assert (short_dir / "run" / "flamenco-manager.sqlite").exists()
