"""Journal fields on the Manager's records: the job, task and worker a record is about.

The scopes are checked through real requests to an in-process Manager on loopback; records go through
the real native handler, whose sender is a recorder. The native protocol itself is checked in a child
process that sees a socket of ours as journald's (a private mount namespace).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flamenco_manager import journal_fields
from flamenco_manager.logsetup import JournalFormatter, NativeJournalHandler, make_handler
from tests.manager.conftest import API, Farm
from tests.support import journal_socket

TEST_TIMEOUT = 60


class Recorder:
    """Stands in for `journal.send`: keeps (MESSAGE, fields) of every entry."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, message: str, **fields: Any) -> None:
        self.entries.append((message, fields))

    def about(self, text: str) -> list[dict[str, Any]]:
        return [fields for message, fields in self.entries if text in message]

    def one(self, text: str) -> dict[str, Any]:
        found = self.about(text)
        assert len(found) == 1, (text, [m for m, _ in self.entries])
        return found[0]


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    recorder = Recorder()
    handler = NativeJournalHandler(recorder, fallback=logging.NullHandler())
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield recorder
    root.removeHandler(handler)
    root.setLevel(old_level)
    journal_fields.set_instance(None)


@pytest.mark.timeout(TEST_TIMEOUT)
async def test_records_carry_the_job_task_and_worker_they_are_about(farm: Farm, recorder: Recorder) -> None:
    journal_fields.set_instance("farm-a")
    worker = await farm.awake_worker(("misc",), name="node-7")
    other = await farm.awake_worker(("misc",), name="node-8")
    job = await farm.submit_echo(repeats=1)
    task = (await worker.fetch()).body
    await worker.update(task["uuid"], activity="Started", taskStatus="active")
    key = {"Idempotency-Key": "k-1"}
    for _ in range(2):  # the second is a resend, which the Manager logs and ignores
        await farm.client.post(
            f"{API}/worker/task/{task['uuid']}", {"log": "a line\n"}, auth=worker.auth, headers=key
        )
    await worker.update(task["uuid"], activity="Completed", taskStatus="completed")
    second = (await worker.fetch()).body
    await worker.update(second["uuid"], taskStatus="completed")
    await farm.submit_echo(repeats=1)  # after the workers' requests, on the same connections

    signed_on = recorder.one(f"worker signed on worker={worker.uuid}")
    assert signed_on["FLAMENCO_WORKER"] == worker.uuid and "FLAMENCO_JOB" not in signed_on
    assert recorder.one(f"worker signed on worker={other.uuid}")["FLAMENCO_WORKER"] == other.uuid
    assert recorder.one(f"worker registered worker={worker.uuid}")["FLAMENCO_WORKER"] == worker.uuid

    submitted = recorder.one(f"job submitted job={job['id']}")
    assert submitted["FLAMENCO_JOB"] == job["id"]
    assert "FLAMENCO_WORKER" not in submitted and "FLAMENCO_TASK" not in submitted

    resend = recorder.one(f"ignoring a resent task update worker={worker.uuid} task={task['uuid']}")
    assert (resend["FLAMENCO_TASK"], resend["FLAMENCO_JOB"], resend["FLAMENCO_WORKER"]) == (
        task["uuid"],
        job["id"],
        worker.uuid,
    )
    # The job completes inside the last task update: that record is about the job, and names the task and
    # the worker whose update completed it.
    completed = recorder.one(f"job status changed job={job['id']} from=active to=completed")
    assert completed["FLAMENCO_JOB"] == job["id"]
    assert (completed["FLAMENCO_TASK"], completed["FLAMENCO_WORKER"]) == (second["uuid"], worker.uuid)
    assigned = recorder.one(f"task assigned worker={worker.uuid} task={task['uuid']}")
    assert (assigned["FLAMENCO_TASK"], assigned["FLAMENCO_JOB"]) == (task["uuid"], job["id"])
    assert assigned["PRIORITY"] == "7"

    ours = [(m, f) for m, f in recorder.entries if m.startswith("flamenco_manager")]
    assert all(f["FLAMENCO_INSTANCE"] == "farm-a" for _, f in ours)
    assert {f["SYSLOG_IDENTIFIER"] for _, f in ours} == {"flamenco-manager"}
    # Nothing about the job carries another job's id.
    for message, fields in ours:
        if job["id"] in message:
            assert fields["FLAMENCO_JOB"] == job["id"], message


@pytest.mark.timeout(TEST_TIMEOUT)
async def test_a_path_names_its_job_and_a_timeout_names_task_job_and_worker(
    farm: Farm, recorder: Recorder
) -> None:
    job = await farm.submit_echo(repeats=1)
    reply = await farm.client.post(f"{API}/jobs/{job['id']}/setstatus", {"status": "paused", "reason": "x"})
    assert reply.status == 204, reply.body
    paused = [f for m, f in recorder.entries if f"job={job['id']}" in m and "to=paus" in m]
    assert paused and all(f["FLAMENCO_JOB"] == job["id"] for f in paused)
    # A record outside any request (the timeout checker) names what it is about by itself.
    log = logging.getLogger("flamenco_manager.test")
    log.warning("task timed out", extra=journal_fields.about(job="j-1", task="t-1", worker="w-1"))
    fields = recorder.one("task timed out")
    assert (fields["FLAMENCO_JOB"], fields["FLAMENCO_TASK"], fields["FLAMENCO_WORKER"]) == (
        "j-1",
        "t-1",
        "w-1",
    )
    assert fields["PRIORITY"] == "4"


def test_a_scope_ends_with_its_block(recorder: Recorder) -> None:
    log = logging.getLogger("flamenco_manager.test")
    with journal_fields.scope(job="j-1"):
        journal_fields.add(worker="w-1")
        log.error("inside")
    log.info("outside")
    inside, outside = recorder.one("inside"), recorder.one("outside")
    assert (inside["FLAMENCO_JOB"], inside["FLAMENCO_WORKER"], inside["PRIORITY"]) == ("j-1", "w-1", "3")
    assert "FLAMENCO_JOB" not in outside and "FLAMENCO_WORKER" not in outside


# The choice of handler: JOURNAL_STREAM must name stderr itself (systemd.exec(5)).


def stream_of(path: Path) -> tuple[Any, dict[str, str]]:
    stream = path.open("w")
    info = os.fstat(stream.fileno())
    return stream, {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}


def test_journal_stream_naming_stderr_chooses_the_native_protocol(tmp_path: Path) -> None:
    stream, env = stream_of(tmp_path / "stderr")
    (tmp_path / "socket").touch()
    handler, note = make_handler(
        env, stream, load=lambda: Recorder(), journal_socket=str(tmp_path / "socket")
    )
    assert isinstance(handler, NativeJournalHandler) and note == ""
    stream.close()


@pytest.mark.parametrize("journal_stream", [None, "8:1234", "garbage"])
def test_journal_stream_naming_another_stream_means_plain_lines(
    tmp_path: Path, journal_stream: str | None
) -> None:
    with (tmp_path / "stderr").open("w") as stream:
        env = {"JOURNAL_STREAM": journal_stream} if journal_stream else {}
        handler, note = make_handler(env, stream, load=lambda: Recorder(), journal_socket=str(tmp_path))
    assert type(handler) is logging.StreamHandler and note == ""
    assert handler.formatter is not None and "asctime" in (handler.formatter._fmt or "")


def test_without_python3_systemd_the_stream_lines_stay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "systemd", None)  # as if the package were not installed
    monkeypatch.delitem(sys.modules, "systemd.journal", raising=False)
    stream, env = stream_of(tmp_path / "stderr")
    (tmp_path / "socket").touch()
    handler, note = make_handler(env, stream, journal_socket=str(tmp_path / "socket"))
    assert type(handler) is logging.StreamHandler and isinstance(handler.formatter, JournalFormatter)
    assert "python3-systemd is not installed" in note
    stream.close()


# The native protocol for real, in a child process.

CHILD = """
import logging, sys
from flamenco_manager import journal_fields, logsetup
if sys.argv[1] == "without-library":
    sys.modules["systemd"] = None
logsetup.setup(quiet=False, debug=True)
journal_fields.set_instance("farm-a")
log = logging.getLogger("flamenco_manager.child")
with journal_fields.scope(worker="w-uuid"):
    journal_fields.add(task="t-9", job="j-9")
    log.warning("task timed out task=t-9 job=j-9")
log.info("job submitted job=j-2", extra=journal_fields.about(job="j-2"))
"""


@pytest.fixture
def journal_sock(tmp_path: Path) -> Iterator[journal_socket.JournalSocket]:
    if (why := journal_socket.available()) is not None:
        pytest.skip(why)
    if importlib.util.find_spec("systemd") is None:
        pytest.skip("python3-systemd is not installed")
    sock = journal_socket.JournalSocket(tmp_path)
    yield sock
    sock.close()


def run_child(sock: journal_socket.JournalSocket, tmp_path: Path, mode: str) -> str:
    stderr_path = tmp_path / "stderr"
    stderr_path.touch()
    info = stderr_path.stat()
    env = {**os.environ, "JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    result = sock.run_child([sys.executable, "-c", CHILD, mode], env=env, stderr_path=stderr_path)
    assert result.returncode == 0, stderr_path.read_text()
    return stderr_path.read_text()


@pytest.mark.timeout(TEST_TIMEOUT)
def test_native_entries_reach_the_journal_socket(
    journal_sock: journal_socket.JournalSocket, tmp_path: Path
) -> None:
    assert run_child(journal_sock, tmp_path, "native") == ""
    by_text = {e["MESSAGE"]: e for e in journal_sock.entries()}
    timed_out = by_text["flamenco_manager.child: task timed out task=t-9 job=j-9"]
    assert (timed_out["PRIORITY"], timed_out["SYSLOG_IDENTIFIER"]) == ("4", "flamenco-manager")
    assert (timed_out["FLAMENCO_TASK"], timed_out["FLAMENCO_JOB"], timed_out["FLAMENCO_WORKER"]) == (
        "t-9",
        "j-9",
        "w-uuid",
    )
    assert timed_out["FLAMENCO_INSTANCE"] == "farm-a"
    submitted = by_text["flamenco_manager.child: job submitted job=j-2"]
    assert submitted["PRIORITY"] == "6" and submitted["FLAMENCO_JOB"] == "j-2"
    assert "FLAMENCO_WORKER" not in submitted and "FLAMENCO_TASK" not in submitted


@pytest.mark.timeout(TEST_TIMEOUT)
def test_without_the_library_the_journal_gets_todays_lines(
    journal_sock: journal_socket.JournalSocket, tmp_path: Path
) -> None:
    lines = run_child(journal_sock, tmp_path, "without-library").splitlines()
    assert journal_sock.entries() == []
    notes = [line for line in lines if "python3-systemd is not installed" in line]
    assert len(notes) == 1 and notes[0].startswith("<7>flamenco_manager.logsetup: "), lines
    assert "<4>flamenco_manager.child: task timed out task=t-9 job=j-9" in lines
    assert "<6>flamenco_manager.child: job submitted job=j-2" in lines
