from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.dbus_daemon import PrivateBus
from tests.support.manager_process import ManagerProcess
from tests.support.notify_socket import NotifySocket
from tests.support.worker_process import WorkerProcess


@dataclass
class Farm:
    """A manager, a private session bus and workers started against them."""

    root: Path
    bus: PrivateBus
    manager: ManagerProcess
    workers: list[WorkerProcess] = field(default_factory=list)
    _notify_count: int = 0

    def start_worker(
        self,
        name: str = "w1",
        *args: str,
        ready: bool = True,
        signed_on: bool = True,
        env: dict[str, str] | None = None,
        log_to_file: bool = False,
    ) -> WorkerProcess:
        workdir = self.root / name
        workdir.mkdir(exist_ok=True)
        self._notify_count += 1
        notify = NotifySocket(self.root / f"n{self._notify_count}.sock")
        worker = WorkerProcess(
            workdir,
            [
                "-dbus",
                "session",
                "-manager",
                self.manager.url,
                "-name",
                name,
                "-restart-exit-code",
                "47",
                *args,
            ],
            bus=self.bus,
            notify=notify,
            env_extra=env or {},
            log_path=workdir / "worker.log" if log_to_file else None,
        ).start()
        self.workers.append(worker)
        if ready:
            worker.wait_ready()
        if signed_on:
            self.wait_worker_status(worker, "awake")
        return worker

    def worker_id(self, worker: WorkerProcess) -> str:
        creds = worker.workdir / "home" / "flamenco-worker-credentials.yaml"
        return self.manager.wait_until("credentials", lambda: creds.exists() and _read_id(creds))

    def wait_worker_status(self, worker: WorkerProcess, status: str, timeout: float = 20) -> dict:
        wid = self.worker_id(worker)
        return self.manager.wait_until(
            f"worker status {status}",
            lambda: (w := self.manager.worker(wid))["status"] == status and w,
            timeout,
        )


def _read_id(path: Path) -> str | None:
    for line in path.read_text().splitlines():
        if line.startswith("worker_id:"):
            return line.split(":", 1)[1].strip()
    return None


@pytest.fixture
def farm_factory(short_dir: Path, session_bus: PrivateBus) -> Iterator[Callable[..., Farm]]:
    farms: list[Farm] = []

    def make(extra_yaml: str = "", start_manager: bool = True) -> Farm:
        manager = ManagerProcess(short_dir / f"mgr{len(farms)}", extra_yaml=extra_yaml)
        if start_manager:
            manager.start()
        farm = Farm(short_dir, session_bus, manager)
        farms.append(farm)
        return farm

    yield make
    for farm in farms:
        for worker in farm.workers:
            worker.stop()
            if worker.notify is not None:
                worker.notify.close()
        farm.manager.kill()


@pytest.fixture
def farm(farm_factory) -> Farm:
    return farm_factory()
