"""Every endpoint of our OpenAPI document fuzzed with schemathesis against a real manager process.

Zero 5xx answers and every answer as the document says (errors as `{code, message}`). Real ids of a
worker, a job, a task and a tag are handed to the fuzzer so it gets past the 404s into the handlers.
The default run makes a few cases per endpoint; `make reliability` makes 1,000.

The document declares `Prefer: wait=N` on the three long-poll endpoints, so the fuzzer sends it: the
fuzzed Manager holds requests for at most LONG_POLL_MAX, which keeps every case short while the
holding code still runs. The event stream never ends by design, so it is left out of the generic
run and checked on its own with bounded reads.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest

from tests.reliability import scale
from tests.support.manager_process import REPO, ManagerProcess

pytestmark = [pytest.mark.system, pytest.mark.reliability, pytest.mark.timeout(600)]

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
# How long the fuzzed Manager holds a `Prefer: wait=N` request: long enough to take the holding path.
LONG_POLL_MAX = "5ms"
# Left out of the generic fuzzing: an endless text/event-stream (tested below with bounded reads).
STREAM_PATH = "/api/v3/events"
# Operations that remove what the other cases work on (the job and its tasks, the worker, the tag): fuzzed
# last, on their own, so they do not turn every later case of the others into a 404.
DESTRUCTIVE = ("deleteJob", "deleteJobMass", "deleteWorker", "deleteWorkerTag")
# Splits the other operations into two shards of similar size, one fuzzer process each.
SHARD_SPLIT = "^/api/v3/(worker/|jobs)"
# The fuzzers' own reports (cases per operation), kept for whoever reads a long run's figures.
ARTIFACTS = REPO / "test-artifacts" / "fuzz"
# Longest a bounded read of the event stream waits for its first bytes.
STREAM_READ_TIMEOUT = 10.0


@pytest.mark.skipif(
    not SCHEMATHESIS.exists(), reason="schemathesis is not installed (pip install schemathesis)"
)
def test_fuzz_every_endpoint(short_dir: Path, fault) -> None:
    examples = int(scale(4, 1000))
    row = fault("API fuzzing (schemathesis)", f"{examples} cases per endpoint: no 5xx, answers as documented")
    manager = ManagerProcess(short_dir / "mgr", extra_yaml=f"long_poll_max: {LONG_POLL_MAX}\n").start()
    try:
        secret = "f" * 64
        code, worker = manager.request(
            "POST",
            "/api/v3/worker/register-worker",
            {"name": "fuzz", "platform": "linux", "secret": secret, "supported_task_types": ["misc"]},
        )
        assert code == 200
        # The worker the management endpoints act on (and may delete); the one above keeps its login.
        code, target = manager.request(
            "POST",
            "/api/v3/worker/register-worker",
            {"name": "target", "platform": "linux", "secret": secret, "supported_task_types": ["misc"]},
        )
        assert code == 200
        job = manager.submit_echo_sleep(seconds=1)
        task = manager.tasks(job["id"])[0]
        code, tag = manager.request("POST", "/api/v3/worker-mgt/tags", {"name": "fuzz-tag"})
        assert code == 200, tag
        (short_dir / "schemathesis.toml").write_text(
            "[auth]\n"
            f'basic = {{ username = "{worker["uuid"]}", password = "{secret}" }}\n'
            "[parameters]\n"
            + "".join(
                f'{name} = "{value}"\n'
                for name, value in {
                    "job_id": job["id"],
                    "task_id": task["id"],
                    "worker_id": target["uuid"],
                    "tag_id": tag["id"],
                    "type_name": "echo-sleep-test",
                }.items()
            )
        )
        command = [
            str(SCHEMATHESIS),
            "--config-file",
            str(short_dir / "schemathesis.toml"),
            "run",
            f"{manager.url}api/v3/openapi3.json",
            "--max-examples",
            str(examples),
            "--phases",
            "examples,fuzzing",
            "--exclude-path",
            STREAM_PATH,
            "--no-shrink",
            "--checks",
            "not_a_server_error,response_schema_conformance",
            "--workers",
            "1",
            "--no-color",
        ]
        started = time.monotonic()
        # The fuzzer is bound by its own CPU (one core per process), so each shard of the operations
        # gets its own process, and both run against the one Manager at the same time.
        keep = [arg for name in DESTRUCTIVE for arg in ("--exclude-operation-id", name)]
        outputs = _run_fuzzers(
            [[*command, f"--{mode}-path-regex", SHARD_SPLIT, *keep] for mode in ("include", "exclude")],
            short_dir,
        )
        destroy = [arg for name in DESTRUCTIVE for arg in ("--include-operation-id", name)]
        outputs += _run_fuzzers([[*command, *destroy]], short_dir)
        log = manager.log()
    finally:
        manager.kill()
    elapsed = time.monotonic() - started
    total = 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for index, (output, returncode) in enumerate(outputs):
        (ARTIFACTS / f"shard-{index}.txt").write_text(output)
        assert returncode == 0, output[-6000:]
        cases = re.search(r"(\d+) generated", output)
        assert cases, output[-3000:]
        total += int(cases.group(1))
    assert "unexpected error" not in log and "Traceback" not in log, log[-4000:]
    row.figure = f"{total} cases in {elapsed:.0f} s, 0 server errors"


def _run_fuzzers(commands: list[list[str]], cwd: Path) -> list[tuple[str, int]]:
    """Run the fuzzer processes side by side; their outputs and exit codes."""
    running = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd)
        for command in commands
    ]
    outputs = []
    try:
        for process in running:
            outputs.append((process.communicate(timeout=scale(600, 3600))[0], process.returncode))
    finally:
        for process in running:
            if process.poll() is None:
                process.kill()
                process.wait()
    return outputs


def _stream_head(manager: ManagerProcess, query: str) -> tuple[int, str, bytes]:
    """Status, content type and the first bytes of `GET /api/v3/events?query`; then the client hangs up."""
    with socket.create_connection(("127.0.0.1", manager.port), timeout=STREAM_READ_TIMEOUT) as conn:
        conn.sendall(f"GET {STREAM_PATH}?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = conn.recv(4096)
            assert chunk, f"connection closed before the headers: {received!r}"
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        # An error has a length; the stream is read only up to its first event block.
        while (len(body) < int(length.group(1))) if length else (status == 200 and b"\n\n" not in body):
            chunk = conn.recv(4096)
            if not chunk:
                break
            body += chunk
    kind = re.search(rb"(?im)^content-type:\s*([^;\r\n]+)", head)
    return status, kind.group(1).decode() if kind else "", body


def test_event_stream_bounded_reads(short_dir: Path) -> None:
    """Every documented filter opens the stream; a bad one is a documented 400; no stream is left held."""
    manager = ManagerProcess(short_dir / "mgr", extra_yaml=f"long_poll_max: {LONG_POLL_MAX}\n").start()
    try:
        job = manager.submit_echo_sleep(seconds=1)
        task = manager.tasks(job["id"])[0]
        good = [
            "",
            "topics=jobs,workers",
            "topics=%2Fjobs",
            f"job={job['id']}",
            f"task={task['id']}&topics=tasklog",
            "topics=",
        ]
        for query in good:
            status, kind, body = _stream_head(manager, query)
            assert status == 200 and kind == "text/event-stream", (query, status, body)
            assert body.startswith(b"retry: ") or b"retry: " in body, (query, body)
        bad = ["topics=nope", "topics=jobs,%00", "topics=" + urllib.parse.quote("é" * 50), "topics=,,"]
        for query in bad:
            status, kind, body = _stream_head(manager, query)
            assert status == 400 and kind == "application/json", (query, status, body)
            error = json.loads(body)
            assert error["code"] == 400 and "topics" in error["message"], error
        # The Manager is unharmed and holds no dropped stream.
        assert manager.request("GET", "/api/v3/version")[0] == 200
        log = manager.log()
    finally:
        manager.kill()
    assert "Traceback" not in log, log[-4000:]
