"""`make run` keeps its port when re-run at once: a port in TIME_WAIT is free, and the manager binds it."""

from __future__ import annotations

import pathlib
import socket
from collections.abc import Iterator

import pytest

from flamenco_manager.demo import free_port as demo_port
from tests.support.manager_process import ManagerProcess, free_port


def _leave_in_time_wait(port: int) -> None:
    """A connection whose server side closes first: the server's port stays in TIME_WAIT for a minute."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            served, _ = listener.accept()
            served.close()  # the active close: TIME_WAIT is on this side
            client.recv(1)


def _in_time_wait(port: int) -> bool:
    # /proc/net/tcp: local address as HEX_IP:HEX_PORT, state 06 is TIME_WAIT.
    for line in pathlib.Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "06":
            return True
    return False


@pytest.fixture
def time_wait_port() -> Iterator[int]:
    port = free_port()
    _leave_in_time_wait(port)
    assert _in_time_wait(port)
    yield port


def test_the_demo_keeps_a_port_left_in_time_wait(time_wait_port: int) -> None:
    assert demo_port(time_wait_port) == time_wait_port


def test_the_manager_listens_on_a_port_left_in_time_wait(time_wait_port: int, tmp_path: pathlib.Path) -> None:
    manager = ManagerProcess(tmp_path / "mgr", port=time_wait_port).start()
    try:
        assert manager.get("/api/v3/version")
    finally:
        manager.stop()
