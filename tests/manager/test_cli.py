"""`flamenco-manager` as a process: -help, flag errors, signals (first graceful, second forced), journald."""

from __future__ import annotations

import os
import pathlib
import re
import signal
import socket
import subprocess
import sys

import pytest

from flamenco_manager.logsetup import stderr_is_journal
from tests.support.manager_process import NotifiedManager, free_port, write_config
from tests.support.waiting import PipeLines


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


def _hold_a_request_in_flight(url: str) -> socket.socket:
    """A request whose body never completes: its handler stays in flight until the manager gives up.

    The manager answers `Expect: 100-continue` once it handles the request, so when this returns the
    request is in flight (without that wait, a loaded machine may not have read the headers yet when the
    test signals, and the manager rightly stops at once).
    """
    host, port = url.removeprefix("http://").split(":")
    conn = socket.create_connection((host, int(port)), timeout=10)
    conn.sendall(
        b"POST /api/v3/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Expect: 100-continue\r\nContent-Length: 1000\r\n\r\n"
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = conn.recv(1024)
        assert chunk, f"the manager closed the connection: {answer!r}"
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 100 "), answer
    conn.sendall(b"{")
    return conn


def test_first_sigterm_waits_for_requests_in_flight_and_a_second_stops_at_once(
    tmp_path: pathlib.Path,
) -> None:
    manager = NotifiedManager(write_config(tmp_path))
    conn = _hold_a_request_in_flight(manager.url)
    try:
        assert manager.proc.stderr is not None
        lines = PipeLines(manager.proc.stderr)
        lines.wait_line(lambda line: "listening" in line, 10)
        manager.proc.send_signal(signal.SIGTERM)
        lines.wait_line(lambda line: "stopping signal=SIGTERM" in line, 10)
        manager.notify.wait_for("STOPPING=1")
        # Still waiting for the held request (the grace is 5 s); the second signal cuts it short.
        assert manager.proc.poll() is None
        manager.proc.send_signal(signal.SIGINT)
        assert manager.proc.wait(3) == 1
        rest = manager.proc.stderr.read()
        assert "second signal" in rest and "stopped without waiting" in rest, rest
        assert "Traceback" not in rest, rest
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
