"""`flamenco-manager` as a process: -help, flag errors, signals (first graceful, second forced), journald."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys

import pytest

from flamenco_manager.logsetup import stderr_is_journal
from tests.support.manager_process import NotifiedManager, free_port, write_config
from tests.support.waiting import PipeLines, wait_for


def _run(*args: str, cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flamenco_manager", *args], cwd=cwd, capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize("flag", ["-help", "--help", "-h"])
def test_help_lists_flags_exit_codes_and_signals(tmp_path: pathlib.Path, flag: str) -> None:
    result = _run(flag, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for text in ("-config PATH", "-listen HOST:PORT", "exit codes:", "78", "signals:", "SIGTERM"):
        assert text in result.stdout


def test_a_flag_error_names_the_flag_once(tmp_path: pathlib.Path) -> None:
    result = _run("-listen", cwd=tmp_path)
    assert result.returncode == 78
    assert (
        result.stderr.strip()
        == "flamenco-manager: command line: flag -listen: expected one argument (see -help)"
    )


# A job type whose compilation never ends on its own: a submission of it keeps its handler busy (in the
# script engine) until the script time limit, which the test sets far beyond its own run.
ENDLESS_SCRIPT = """
const JOB_TYPE = { label: "Endless", settings: [] };
function compileJob(job) { for (;;) {} }
"""


# CPU time the engine must burn after the submission: far more than any other work it does in a test.
ENGINE_BUSY_CPU = 0.3


def _cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    tasks = pathlib.Path(f"/proc/{pid}/task")
    return [int(c) for t in tasks.iterdir() for c in (t / "children").read_text().split()]


def _submit_endless_job(manager: NotifiedManager) -> socket.socket:
    """Submit an `endless` job; returns once the script engine is busy compiling it (its CPU time grows).

    From then on the submission's handler is in flight for as long as the script time limit allows; the
    request is complete, so the shutdown cannot cut it short by ending its body.
    """
    body = json.dumps(
        {"name": "endless", "type": "endless", "priority": 50, "submitter_platform": "linux", "settings": {}}
    ).encode()
    conn = socket.create_connection(("127.0.0.1", manager.port), timeout=10)
    conn.sendall(
        b"POST /api/v3/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    engines = wait_for(lambda: _children(manager.proc.pid), 10, "the script engine process")
    start = {pid: _cpu_seconds(pid) for pid in engines}
    wait_for(
        lambda: any(_cpu_seconds(pid) - start[pid] > ENGINE_BUSY_CPU for pid in engines),
        30,
        "the script engine to spin on the endless compilation",
        interval=0.05,
    )
    return conn


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js (node) is not installed")
def test_first_sigterm_waits_for_requests_in_flight_and_a_second_stops_at_once(
    tmp_path: pathlib.Path,
) -> None:
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "endless.js").write_text(ENDLESS_SCRIPT)
    config = write_config(tmp_path, scripts_dir=str(tmp_path / "scripts"), job_script_time_limit="120s")
    manager = NotifiedManager(config)
    conn: socket.socket | None = None
    try:
        assert manager.proc.stderr is not None
        lines = PipeLines(manager.proc.stderr)
        lines.wait_line(lambda line: "listening" in line, 10)
        conn = _submit_endless_job(manager)
        manager.proc.send_signal(signal.SIGTERM)
        lines.wait_line(lambda line: "stopping signal=SIGTERM" in line, 10)
        manager.notify.wait_for("STOPPING=1")
        # The submission holds the shutdown (up to the 5 s grace); the second signal cuts it short.
        assert manager.proc.poll() is None
        manager.proc.send_signal(signal.SIGINT)
        assert manager.proc.wait(10) == 1
        rest = manager.proc.stderr.read()
        assert "second signal" in rest and "stopped without waiting" in rest, rest
        assert "Traceback" not in rest, rest
    finally:
        if conn is not None:
            conn.close()
        manager.close()


def test_a_request_waiting_for_its_body_does_not_hold_the_shutdown(tmp_path: pathlib.Path) -> None:
    # A client that never finishes its request body is not work in flight: the shutdown ends it at once.
    manager = NotifiedManager(write_config(tmp_path))
    conn = socket.create_connection(("127.0.0.1", manager.port), timeout=10)
    try:
        conn.sendall(
            b"POST /api/v3/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nContent-Length: 1000\r\n\r\n"
        )
        assert conn.recv(1024).startswith(b"HTTP/1.1 100 ")  # the manager is handling the request
        conn.sendall(b"{")
        code, stderr = manager.terminate(signal.SIGTERM)
        assert code == 0, stderr
        assert "stopped" in stderr and "Traceback" not in stderr, stderr
    finally:
        conn.close()
        manager.close()


def test_sigint_alone_stops_gracefully_with_0(tmp_path: pathlib.Path) -> None:
    manager = NotifiedManager(write_config(tmp_path))
    try:
        code, stderr = manager.terminate(signal.SIGINT)
        assert code == 0, stderr
        assert "stopped" in stderr and "Traceback" not in stderr
    finally:
        manager.close()


def test_journal_stream_counts_only_when_it_is_stderr(tmp_path: pathlib.Path) -> None:
    with open(tmp_path / "stderr", "w") as stream:
        info = os.fstat(stream.fileno())
        assert stderr_is_journal({"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}, stream)
        assert not stderr_is_journal({"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino + 1}"}, stream)
        assert not stderr_is_journal({"JOURNAL_STREAM": "garbage"}, stream)
        assert not stderr_is_journal({}, stream)


def test_an_inherited_journal_stream_that_is_not_stderr_gives_plain_lines(tmp_path: pathlib.Path) -> None:
    # e.g. `flamenco-manager 2>file` run from a unit's shell: JOURNAL_STREAM is inherited, stderr is a file.
    port = free_port()
    manager = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flamenco_manager",
            "-config",
            str(write_config(tmp_path)),
            "-listen",
            f"127.0.0.1:{port}",
        ],
        env={**os.environ, "JOURNAL_STREAM": "8:1234"},
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert manager.stderr is not None
        line = PipeLines(manager.stderr).wait_line(lambda text: "listening" in text, 15)
        assert not line.startswith("<"), line
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", line), line
    finally:
        manager.send_signal(signal.SIGTERM)
        manager.communicate(timeout=15)
