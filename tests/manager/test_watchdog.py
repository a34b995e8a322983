"""The manager under a systemd watchdog: pings from its event loop, a notify socket that never blocks."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import socket
import urllib.request

import pytest

from flamenco_manager.systemd_notify import Notifier, watchdog_interval
from tests.support.manager_process import NotifiedManager, write_config
from tests.support.waiting import wait_for

# WatchdogSec=0.2 s: a ping every 0.1 s, so a few periods pass in well under a second.
WATCHDOG_USEC = "200000"
# Long against the 0.1 s ping interval: a running loop would ping here many times over.
SILENCE = 1.0
# 1 ms pings fill a never-read notify socket's queue within a second.
FLOOD_USEC = "2000"


def _state(pid: int) -> str:
    """The process state letter from /proc (T: stopped)."""
    stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]


def _answers(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{url}/api/v3/version", timeout=5) as reply:
        return reply.status == 200


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "junk"}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "123"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "124"}, None),  # another process is watched
    ],
)
def test_watchdog_interval_is_half_of_what_systemd_gives(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(env, pid=123) == expected


def test_no_pings_without_a_notify_socket() -> None:
    notifier = Notifier({"WATCHDOG_USEC": WATCHDOG_USEC})
    assert not notifier.enabled and notifier.watchdog_interval is None
    notifier.send("READY=1")  # a no-op, not an error


def test_pings_come_from_the_event_loop_and_stop_while_it_is_stopped(tmp_path: pathlib.Path) -> None:
    manager = NotifiedManager(write_config(tmp_path), env={"WATCHDOG_USEC": WATCHDOG_USEC})
    try:
        for _ in range(3):
            manager.notify.wait_for("WATCHDOG=1", timeout=5)
        manager.proc.send_signal(signal.SIGSTOP)
        wait_for(lambda: _state(manager.proc.pid) == "T", 10, "the manager to be stopped")
        assert manager.notify.quiet_for("WATCHDOG=1", SILENCE) == []
        manager.proc.send_signal(signal.SIGCONT)
        manager.notify.wait_for("WATCHDOG=1", timeout=5)
        assert _answers(manager.url)
        code, stderr = manager.terminate()
        assert code == 0, stderr
    finally:
        if manager.proc.poll() is None:
            manager.proc.send_signal(signal.SIGCONT)  # a stopped process would not die of SIGTERM
        manager.close()


def test_no_pings_for_another_watched_process(tmp_path: pathlib.Path) -> None:
    env = {"WATCHDOG_USEC": WATCHDOG_USEC, "WATCHDOG_PID": str(os.getpid())}
    manager = NotifiedManager(write_config(tmp_path), env=env)
    try:
        assert manager.notify.quiet_for("WATCHDOG=1", SILENCE) == []
    finally:
        manager.close()


def test_a_never_read_notify_socket_never_blocks_the_manager(tmp_path: pathlib.Path) -> None:
    manager = NotifiedManager(write_config(tmp_path), env={"WATCHDOG_USEC": FLOOD_USEC})
    try:
        wait_for(manager.notify.is_full, 30, "the notify socket's queue to fill up")
        for _ in range(5):
            assert _answers(manager.url)
        assert manager.notify.is_full()  # still nobody reads it: the answers came despite a full queue
        code, stderr = manager.terminate()
        assert code == 0, stderr
    finally:
        manager.close()


def test_a_full_socket_drops_the_message_instead_of_blocking(tmp_path: pathlib.Path) -> None:
    path = pathlib.Path(f"/tmp/fmw-{os.getpid()}")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(str(path))
        try:
            notifier = Notifier({"NOTIFY_SOCKET": str(path)})

            async def flood() -> None:
                for _ in range(1000):  # far more than a datagram queue holds
                    notifier.send("STATUS=flood")
                await notifier.close()

            asyncio.run(asyncio.wait_for(flood(), 10))
        finally:
            path.unlink()
