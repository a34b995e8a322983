from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.dbus_daemon import PrivateBus, short_tempdir
from tests.support.notify_socket import NotifySocket


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = short_tempdir("fw-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def session_bus(short_dir: Path) -> Iterator[PrivateBus]:
    bus = PrivateBus(short_dir).start()
    yield bus
    bus.stop()


@pytest.fixture
def notify_socket(short_dir: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(short_dir / "notify.sock")
    yield sock
    sock.close()
