"""What systemd sees: sd_notify datagrams, reload on SIGHUP, and the journald log format."""

from __future__ import annotations

import re
import signal
import time

import pytest

from tests.support.dbus_daemon import PrivateBus
from tests.support.waiting import wait_for
from tests.worker.conftest import StartWorker


def test_ready_only_after_the_bus_name_is_owned(
    start_worker: StartWorker, session_bus: PrivateBus, notify_socket
) -> None:
    start_worker("-manager", "render-mgr:8080")
    # wait_ready returned: the name must already be there, without any retry
    session_bus.busctl("status", "org.flamenco.Worker1")
    ready = notify_socket.seen("READY=1")
    assert len(ready) == 1
    # READY=1 does not wait for the Manager; the status line says what the worker is doing about it
    assert notify_socket.seen("STATUS=starting: signing on at Manager http://render-mgr:8080/")


def test_status_line_mirrors_the_core(start_worker: StartWorker, notify_socket) -> None:
    worker = start_worker("-restart-exit-code", "47")
    worker.call("Sleep", "b", "false")
    notify_socket.wait_for("STATUS=asleep")
    worker.call("WakeUp")
    notify_socket.wait_for("STATUS=awake")
    worker.call("Restart", "b", "false")
    notify_socket.wait_for("STOPPING=1")
    notify_socket.wait_for("STATUS=restarting (exit code 47)")
    assert worker.wait_exit() == 47


def test_watchdog_pings_at_half_the_interval(start_worker: StartWorker, notify_socket) -> None:
    start_worker(env={"WATCHDOG_USEC": "1000000"})  # 1 s → a ping every 0.5 s
    notify_socket.wait_for("WATCHDOG=1")
    began = time.monotonic()
    for _ in range(4):
        notify_socket.wait_for("WATCHDOG=1", timeout=5)
    elapsed = time.monotonic() - began
    # Four intervals: 2 s at half the watchdog time (4 s at the full time, 1 s at a quarter).
    assert 1.6 <= elapsed <= 3.2, elapsed


def test_no_watchdog_pings_for_another_pid(start_worker: StartWorker, notify_socket) -> None:
    worker = start_worker(env={"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"})
    # A watchdog would have pinged at once; a status change later, there is still none.
    worker.call("Sleep", "b", "false")
    notify_socket.wait_for("STATUS=asleep")
    assert notify_socket.seen("WATCHDOG=1") == []


def test_stopping_on_sigterm(start_worker: StartWorker, notify_socket) -> None:
    worker = start_worker()
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit() == 0
    stopping = notify_socket.seen("STOPPING=1")
    assert len(stopping) == 1
    assert notify_socket.seen("STATUS=shutting down")


def test_sighup_reloads_live_settings(start_worker: StartWorker, notify_socket, short_dir) -> None:
    worker = start_worker(yaml_text="worker_name: before\nmanager_url: http://one:8080/\n")
    assert worker.get("Restartable") == "b false"
    (short_dir / "flamenco-worker.yaml").write_text(
        "worker_name: after\nmanager_url: two:9090\nrestart_exit_code: 47\ntask_types: [misc]\n"
    )
    worker.signal(signal.SIGHUP)
    notify_socket.wait_for("RELOADING=1")
    notify_socket.wait_for("READY=1")
    worker.wait_property("Name", 's "after"')
    assert worker.get("Restartable") == "b true"
    assert worker.get("ManagerURL") == 's "http://two:9090/"'
    worker.call("Restart", "b", "true")
    assert worker.wait_exit() == 47
    out = worker.output()
    assert "task_types changed; takes effect after a restart" in out


def test_sighup_with_broken_file_keeps_old_settings(
    start_worker: StartWorker, notify_socket, short_dir
) -> None:
    worker = start_worker(yaml_text="worker_name: before\nrestart_exit_code: 47\n")
    (short_dir / "flamenco-worker.yaml").write_text("worker_name: after\nrestart_exit_code: 300\n")
    worker.signal(signal.SIGHUP)
    notify_socket.wait_for("RELOADING=1")
    notify_socket.wait_for("READY=1")
    assert worker.get("Name") == 's "before"'
    assert worker.get("Restartable") == "b true"
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit() == 0
    assert (
        "flamenco-worker.yaml:2: restart_exit_code: must be a whole number from 2 to 255" in worker.output()
    )


def test_journald_format_has_priorities_and_no_timestamps(start_worker: StartWorker, short_dir) -> None:
    log_path = short_dir / "journal-stand-in.log"
    log_path.touch()
    info = log_path.stat()  # as systemd sets it: the device and inode of the stream stderr is
    worker = start_worker(env={"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}, log_path=log_path)
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit() == 0
    lines = worker.output().strip().splitlines()
    assert lines, "expected log lines"
    for line in lines:
        assert re.match(r"<[2-7]>flamenco_worker[.\w]*: ", line), line
    assert not any(re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", line) for line in lines)


@pytest.mark.parametrize("journal_stream", [None, "8:1234"], ids=["unset", "inherited-not-stderr"])
def test_terminal_format_has_timestamps(start_worker: StartWorker, journal_stream: str | None) -> None:
    # JOURNAL_STREAM naming another stream (stderr redirected elsewhere) does not mean journald.
    worker = start_worker(env={"JOURNAL_STREAM": journal_stream} if journal_stream else None)
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit() == 0
    first = worker.output().splitlines()[0]
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO", first), first


def test_two_sigterms_at_once_exit_0(start_worker: StartWorker) -> None:
    # Whether the second one finds the worker still shutting down is a race here (nothing holds the
    # shutdown up); tests/system/test_stop_signals.py holds it up with a silent Manager and checks both.
    worker = start_worker()
    worker.signal(signal.SIGSTOP)  # hold it so both signals are pending together
    worker.signal(signal.SIGTERM)
    worker.signal(signal.SIGCONT)
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit() == 0


def test_unread_notify_socket_never_blocks_the_worker(start_worker: StartWorker, notify_socket) -> None:
    # 1 ms watchdog pings fill the socket's queue within a second; a blocking send would freeze the loop.
    worker = start_worker(env={"WATCHDOG_USEC": "2000"})
    wait_for(notify_socket.is_full, 30, "the notify socket's queue to fill up")
    for _ in range(3):
        worker.call("Sleep", "b", "false")
        worker.call("WakeUp")
    assert worker.get("Status") == 's "awake"'


def test_reloading_carries_the_monotonic_time(start_worker: StartWorker, notify_socket, short_dir) -> None:
    worker = start_worker(yaml_text="worker_name: before\n")
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    worker.signal(signal.SIGHUP)
    notify_socket.wait_for("RELOADING=1")
    stamp = notify_socket.wait_for("MONOTONIC_USEC=")
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert before <= int(stamp.split("=", 1)[1]) <= after
    notify_socket.wait_for("READY=1")
