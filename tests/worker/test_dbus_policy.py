"""The packaged D-Bus policy on a system-type private bus: anyone reads, only root/group flamenco act."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.dbus_daemon import PrivateBus
from tests.support.worker_process import WorkerProcess

POLICY = Path(__file__).resolve().parents[2] / "config" / "dbus" / "org.flamenco.Worker1.conf"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run busctl as another user")


@pytest.fixture
def system_bus(short_dir: Path) -> Iterator[PrivateBus]:
    bus = PrivateBus(short_dir, kind="system", policies=[POLICY]).start()
    yield bus
    bus.stop()


@pytest.fixture
def worker(short_dir: Path, system_bus: PrivateBus, notify_socket) -> Iterator[WorkerProcess]:
    proc = WorkerProcess(short_dir, ["-dbus", "system"], bus=system_bus, notify=notify_socket).start()
    proc.wait_ready()
    yield proc
    proc.stop()


def test_outsider_may_read_and_introspect(worker: WorkerProcess, system_bus: PrivateBus) -> None:
    assert worker.get("Status", user="nobody") == 's "awake"'
    out = system_bus.busctl(
        "introspect", "org.flamenco.Worker1", "/org/flamenco/Worker1", user="nobody"
    ).stdout
    assert ".ShutDown" in out


@pytest.mark.parametrize(
    ("method", "args"),
    [("ShutDown", ["b", "false"]), ("Sleep", ["b", "true"]), ("WakeUp", []), ("CancelRequest", [])],
)
def test_outsider_is_denied_actions(worker: WorkerProcess, method: str, args: list[str]) -> None:
    result = worker.call(method, *args, user="nobody", check=False)
    assert result.returncode != 0
    assert "Access denied" in result.stderr or "AccessDenied" in result.stderr, result.stderr
    assert worker.process.poll() is None
    assert worker.get("Status") == 's "awake"'


def test_root_may_act(worker: WorkerProcess) -> None:
    worker.call("ShutDown", "b", "false")
    assert worker.wait_exit() == 0


def test_outsider_may_not_own_the_name(system_bus: PrivateBus, short_dir: Path, notify_socket) -> None:
    """An outsider cannot take the name: the worker warns once and runs on without local control."""
    env = {
        "DBUS_SYSTEM_BUS_ADDRESS": system_bus.address,
        "NOTIFY_SOCKET": str(notify_socket.path),
        "FLAMENCO_HOME": str(short_dir / "home-nobody"),
        "FLAMENCO_WORKER_DISCOVERY": "false",  # no LAN searches from tests on the host's network
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    os.chmod(notify_socket.path, 0o777)
    child = subprocess.Popen(
        [sys.executable, "-m", "flamenco_worker", "-dbus", "system", "-config", "/dev/null"],
        env=env,
        cwd="/",
        user="nobody",
        group="nogroup",
        extra_groups=[],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert child.stdout is not None
    try:
        notify_socket.wait_for("READY=1")
        child.terminate()
        assert child.wait(10) == 0
        out = child.stdout.read()
        assert "may not own org.flamenco.Worker1" in out, out
    finally:
        if child.poll() is None:
            child.kill()
        child.stdout.close()
