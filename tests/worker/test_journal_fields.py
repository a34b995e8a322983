"""Journal fields on the worker's records, the choice of handler, and the native protocol for real.

The scopes are checked on a real run: a worker core and Manager link against a scripted Manager on
loopback, running two tasks with real child processes; records go through the real native handler,
whose sender is a recorder. The native protocol itself is checked end to end in a child process that
sees a socket of ours as journald's (a private mount namespace).
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

from flamenco_worker import journal
from flamenco_worker.logs import JournalFormatter, make_handler
from tests.support import journal_socket
from tests.worker.scripted_manager import ScriptedManager, shell_task
from tests.worker.test_link_flow import Farm, farm  # noqa: F401  (the fixture, used by name)

TEST_TIMEOUT = 60


class Recorder:
    """Stands in for `journal.send`: keeps (MESSAGE, fields) of every entry."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, message: str, **fields: Any) -> None:
        self.entries.append((message, fields))

    def about(self, text: str) -> list[dict[str, Any]]:
        return [fields for message, fields in self.entries if text in message]


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """The native handler on the root logger, sending to a recorder; the process fields cleared after."""
    recorder = Recorder()
    handler = journal.NativeJournalHandler(recorder, fallback=logging.NullHandler())
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield recorder
    root.removeHandler(handler)
    root.setLevel(old_level)
    journal.set_worker(worker_id="", name="")
    journal.set_instance(None)


@pytest.mark.timeout(TEST_TIMEOUT)
async def test_a_tasks_records_carry_its_task_job_and_the_worker(farm: Farm, recorder: Recorder) -> None:  # noqa: F811
    one = shell_task("t-one", "echo first")
    two = {**shell_task("t-two", "echo second; exit 3"), "job": "job-2"}
    manager = ScriptedManager(long_poll=True, tasks=[one, two])
    journal.set_instance("render1")
    running = await farm(manager)
    journal.follow_worker(running.worker)
    await manager.wait_for("both tasks ended", lambda: len(manager.status_updates()) == 4)
    await manager.wait_for("t-two handed back", lambda: bool(recorder.about("task=t-two ended")))
    worker_id = running.worker.snapshot().worker_id
    assert worker_id

    story = [message for message, fields in recorder.entries if fields.get("FLAMENCO_TASK") == "t-one"]
    for step in (
        "task=t-one job=job-1 fetched",
        "task=t-one started",
        "command=exec",
        "pid=",
        "outcome=completed",
    ):
        assert any(step in message for message in story), (step, story)
    assert any("task=t-one ended" in message for message in story)
    assert not any("t-two" in message for message in story), story
    failed = [m for m, f in recorder.entries if f.get("FLAMENCO_TASK") == "t-two" and "outcome=failed" in m]
    assert failed, "the second task's failure is in its own story"

    ours = [(m, f) for m, f in recorder.entries if m.startswith("flamenco_worker")]  # not the stand-in's
    for message, fields in ours:
        if "t-one" in message:
            assert (fields.get("FLAMENCO_TASK"), fields.get("FLAMENCO_JOB")) == ("t-one", "job-1"), message
        if "t-two" in message:
            assert (fields.get("FLAMENCO_TASK"), fields.get("FLAMENCO_JOB")) == ("t-two", "job-2"), message
    # Every record after the link knew its id names the worker and the instance.
    named = [fields for _, fields in recorder.entries if "FLAMENCO_WORKER" in fields]
    assert named and all(f["FLAMENCO_WORKER"] == worker_id for f in named)
    assert all(f["FLAMENCO_WORKER_NAME"] == "linked" and f["FLAMENCO_INSTANCE"] == "render1" for f in named)
    # Records about no task carry no task.
    for message, fields in ours:
        if "status=" in message and "task=" not in message:
            assert "FLAMENCO_TASK" not in fields, message
    # The native entry keeps the priority and identifier journald had from the stream lines.
    assert {f["PRIORITY"] for f in recorder.about("outcome=failed")} == {"6"}
    assert {f["PRIORITY"] for f in recorder.about(" update HTTP 204")} == {"7"}
    assert {f["SYSLOG_IDENTIFIER"] for _, f in recorder.entries} == {"flamenco-worker"}


def test_extra_fields_name_another_task_than_the_scope(recorder: Recorder) -> None:
    log = logging.getLogger("flamenco_worker.test")
    with journal.task_scope("t-a", "j-a"):
        log.warning("task=t-a something")
        log.info("task=t-b queued update refused", extra=journal.about_task("t-b"))
    log.error("nothing about a task")
    (a,), (b,), (none,) = (recorder.about(t) for t in ("t-a something", "t-b", "nothing"))
    assert (a["FLAMENCO_TASK"], a["FLAMENCO_JOB"], a["PRIORITY"]) == ("t-a", "j-a", "4")
    assert b["FLAMENCO_TASK"] == "t-b" and b["PRIORITY"] == "6"
    assert "FLAMENCO_TASK" not in none and none["PRIORITY"] == "3"
    assert recorder.entries[0][0] == "flamenco_worker.test: task=t-a something"


# The choice of handler: JOURNAL_STREAM must name stderr itself (systemd.exec(5)).


def stream_of(path: Path) -> tuple[Any, dict[str, str]]:
    stream = path.open("w")
    info = os.fstat(stream.fileno())
    return stream, {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}


def test_journal_stream_naming_stderr_chooses_the_native_protocol(tmp_path: Path) -> None:
    stream, env = stream_of(tmp_path / "stderr")
    socket_path = tmp_path / "socket"
    socket_path.touch()
    handler, note = make_handler(env, stream, load=lambda: Recorder(), journal_socket=str(socket_path))
    assert isinstance(handler, journal.NativeJournalHandler) and note == ""
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
    socket_path = tmp_path / "socket"
    socket_path.touch()
    handler, note = make_handler(env, stream, journal_socket=str(socket_path))
    assert type(handler) is logging.StreamHandler and isinstance(handler.formatter, JournalFormatter)
    assert "python3-systemd is not installed" in note
    stream.close()


def test_without_a_journal_socket_the_stream_lines_stay(tmp_path: Path) -> None:
    stream, env = stream_of(tmp_path / "stderr")
    handler, note = make_handler(env, stream, load=lambda: Recorder(), journal_socket=str(tmp_path / "none"))
    assert isinstance(handler.formatter, JournalFormatter) and "no journal socket" in note
    stream.close()


def test_an_unreachable_journal_falls_back_to_the_stream(tmp_path: Path) -> None:
    def refuse(message: str, **fields: Any) -> None:
        raise ConnectionRefusedError("journald is gone")

    with (tmp_path / "stderr").open("w+") as stream:
        fallback = logging.StreamHandler(stream)
        fallback.setFormatter(JournalFormatter("%(name)s: %(message)s"))
        handler = journal.NativeJournalHandler(refuse, fallback=fallback)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        handler.handle(logging.makeLogRecord({"name": "w", "msg": "still said", "levelno": 30}))
        stream.seek(0)
        assert stream.read() == "<4>w: still said\n"


# The native protocol for real, in a child process: python3-systemd writes to "journald's" socket.

CHILD = """
import logging, sys
from flamenco_worker import journal
from flamenco_worker.logs import setup_logging
if sys.argv[1] == "without-library":
    sys.modules["systemd"] = None
setup_logging("debug")
journal.set_instance("render1")
journal.set_worker(worker_id="w-uuid", name="node-7")
log = logging.getLogger("flamenco_worker.child")
with journal.task_scope("t-9", "j-9"):
    log.warning("task=t-9 disk nearly full")
log.info("status=awake idle")
try:
    raise ValueError("boom")
except ValueError:
    log.exception("task=t-9 failed inside the worker", extra=journal.about_task("t-9", "j-9"))
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
    env.pop("PYTHONPATH", None)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    result = sock.run_child([sys.executable, "-c", CHILD, mode], env=env, stderr_path=stderr_path)
    assert result.returncode == 0, stderr_path.read_text()
    return stderr_path.read_text()


@pytest.mark.timeout(TEST_TIMEOUT)
def test_native_entries_reach_the_journal_socket(
    journal_sock: journal_socket.JournalSocket, tmp_path: Path
) -> None:
    stderr = run_child(journal_sock, tmp_path, "native")
    assert stderr == "", "under journald with the library, nothing is written twice"
    entries = journal_sock.entries()
    by_text = {e["MESSAGE"].splitlines()[0]: e for e in entries}
    warning = by_text["flamenco_worker.child: task=t-9 disk nearly full"]
    assert warning["PRIORITY"] == "4" and warning["SYSLOG_IDENTIFIER"] == "flamenco-worker"
    assert (warning["FLAMENCO_TASK"], warning["FLAMENCO_JOB"]) == ("t-9", "j-9")
    assert (warning["FLAMENCO_WORKER"], warning["FLAMENCO_WORKER_NAME"]) == ("w-uuid", "node-7")
    assert warning["FLAMENCO_INSTANCE"] == "render1"
    assert warning["CODE_FUNC"] == "<module>" and warning["LOGGER"] == "flamenco_worker.child"
    idle = by_text["flamenco_worker.child: status=awake idle"]
    assert idle["PRIORITY"] == "6" and "FLAMENCO_TASK" not in idle and idle["FLAMENCO_WORKER"] == "w-uuid"
    failure = by_text["flamenco_worker.child: task=t-9 failed inside the worker"]
    assert failure["PRIORITY"] == "3" and failure["FLAMENCO_TASK"] == "t-9"
    assert "ValueError: boom" in failure["MESSAGE"], "a traceback stays in its record's entry"
    assert not any(e["MESSAGE"][:4] in {"<4>f", "<6>f"} for e in entries)


@pytest.mark.timeout(TEST_TIMEOUT)
def test_without_the_library_the_journal_gets_todays_lines(
    journal_sock: journal_socket.JournalSocket, tmp_path: Path
) -> None:
    stderr = run_child(journal_sock, tmp_path, "without-library")
    assert journal_sock.entries() == []
    lines = stderr.splitlines()
    notes = [line for line in lines if "python3-systemd is not installed" in line]
    assert len(notes) == 1 and notes[0].startswith("<7>flamenco_worker.logs: "), lines
    assert "<4>flamenco_worker.child: task=t-9 disk nearly full" in lines
    assert "<6>flamenco_worker.child: status=awake idle" in lines
    assert all(line.startswith("<") for line in lines), "every line (a traceback's too) has its priority"
