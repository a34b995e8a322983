from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.dbus_daemon import PrivateBus
from tests.support.notify_socket import NotifySocket
from tests.support.worker_process import WorkerProcess

StartWorker = Callable[..., WorkerProcess]


@pytest.fixture
def start_worker(
    short_dir: Path, session_bus: PrivateBus, notify_socket: NotifySocket
) -> Iterator[StartWorker]:
    """Start the real worker on the private session bus with the test's NOTIFY_SOCKET."""
    started: list[WorkerProcess] = []

    def start(
        *args: str,
        yaml_text: str | None = None,
        env: dict[str, str] | None = None,
        ready: bool = True,
        log_path: Path | None = None,
    ) -> WorkerProcess:
        if yaml_text is not None:
            (short_dir / "flamenco-worker.yaml").write_text(yaml_text)
        worker = WorkerProcess(
            short_dir,
            ["-dbus", "session", *args],
            bus=session_bus,
            notify=notify_socket,
            env_extra=env or {},
            log_path=log_path,
        )
        started.append(worker.start())
        if ready:
            worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.stop()
