"""The whole Manager link (sign-on, fetch, task updates, sign-off) against a scripted Manager on loopback.

Two kinds of Manager: one that long-polls (answers `Prefer: wait` with `Preference-Applied`, as ours
does) and a stock one that does not; the worker sends its task log at a different cadence to each.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from flamenco_worker import pacing
from flamenco_worker.config import WorkerSettings
from flamenco_worker.credentials import load_credentials
from flamenco_worker.link import ManagerLink
from flamenco_worker.status import Origin, WorkerStatus
from flamenco_worker.worker import Worker
from tests.worker.scripted_manager import ScriptedManager, shell_task


class RunningWorker:
    """The core and the link as the daemon wires them, without D-Bus, signals or systemd."""

    def __init__(self, url: str, home: Path) -> None:
        settings = WorkerSettings(
            manager_urls=(url,), worker_name="linked", task_types=("misc",), dbus="off", flamenco_home=home
        )
        self.link = ManagerLink(settings)
        self.worker = Worker(settings, task_source=self.link)
        self.link.attach(self.worker)
        self.core: asyncio.Task[int] | None = None

    async def start(self) -> None:
        requested = await self.link.connect()
        self.worker.request_status(requested, lazy=False, origin=Origin.MANAGER)
        self.core = asyncio.create_task(self.worker.run())

    async def stop(self) -> None:
        if self.core is not None and not self.core.done():
            self.worker.request_status(WorkerStatus.OFFLINE, lazy=False, origin=Origin.LOCAL)
            assert await asyncio.wait_for(self.core, 20) == 0
        await self.link.close()


Farm = Callable[[ScriptedManager], Awaitable[RunningWorker]]


@pytest.fixture
async def farm(tmp_path: Path) -> AsyncIterator[Farm]:
    """Start a scripted Manager and a worker signed on to it; both are stopped after the test."""
    started: list[tuple[ScriptedManager, RunningWorker]] = []

    async def make(manager: ScriptedManager) -> RunningWorker:
        worker = RunningWorker(await manager.start(), tmp_path / "home")
        started.append((manager, worker))
        await worker.start()
        return worker

    yield make
    for manager, worker in started:
        await worker.stop()
        await manager.stop()


#: A task that writes 25 lines over about 2.5 s.
SLOW_LINES = "for i in $(seq 1 25); do echo line $i; sleep 0.1; done"


def numbered_lines(log_text: str) -> list[str]:
    return [ln.split("> ", 1)[1] for ln in log_text.splitlines() if "> line" in ln]


@pytest.mark.slow
async def test_long_polling_manager_gets_the_log_every_second(farm: Farm) -> None:
    manager = ScriptedManager(long_poll=True, tasks=[shell_task("t-live", SLOW_LINES)])
    await farm(manager)
    await manager.wait_for("completion", lambda: len(manager.status_updates()) == 2)
    started, completed = manager.status_updates()
    assert (started.body["taskStatus"], completed.body["taskStatus"]) == ("active", "completed")
    during = [u for u in manager.log_updates() if u.at < completed.at]
    assert len(during) >= 2, "the log should go out at least every second while the task runs"
    first_gap = during[0].at - started.at
    assert first_gap < 1.5, f"first log update {first_gap:.2f}s after the start"
    assert numbered_lines(manager.log_text()) == [f"line {i}" for i in range(1, 26)]


@pytest.mark.slow
async def test_stock_manager_gets_the_log_batched_as_flamenco_does(farm: Farm) -> None:
    manager = ScriptedManager(long_poll=False, tasks=[shell_task("t-batched", SLOW_LINES)])
    await farm(manager)
    await manager.wait_for("completion", lambda: len(manager.status_updates()) == 2)
    started, completed = manager.status_updates()
    logs = manager.log_updates()
    # The start goes out at once; the whole log of a short task follows in one update, right before the
    # completion, in order.
    assert started is manager.updates[0]
    assert len(logs) == 1, f"expected one batched log update, got {len(logs)}"
    assert manager.updates.index(logs[0]) == manager.updates.index(completed) - 1
    assert logs[0].at - started.at > 2.0, "the batch waited for the end of the task"
    assert numbered_lines(logs[0].body["log"]) == [f"line {i}" for i in range(1, 26)]


@pytest.mark.slow
async def test_stock_manager_gets_more_than_10_kib_of_log_at_once(farm: Farm) -> None:
    burst = "i=0; while [ $i -lt 200 ]; do printf '%0100d\\n' $i; i=$((i+1)); done; sleep 3"
    manager = ScriptedManager(long_poll=False, tasks=[shell_task("t-burst", burst)])
    await farm(manager)
    await manager.wait_for("the burst", lambda: len(manager.log_updates()) >= 1)
    assert len(manager.status_updates()) == 1, "the burst should go out while the task still runs"
    first = manager.log_updates()[0]
    assert len(first.body["log"]) > 10 * 1024
    assert first.at - manager.updates[0].at < 2.0
    await manager.wait_for("completion", lambda: len(manager.status_updates()) == 2)


async def test_a_refused_worker_signs_on_again_and_registers_anew(farm: Farm, tmp_path: Path) -> None:
    manager = ScriptedManager(long_poll=True)
    manager.fetch_answers = [403]  # the Manager no longer knows this worker…
    manager.sign_on_answers = [200, 403]  # …so signing on again is refused as well
    await farm(manager)
    sign_on = "POST /api/v3/worker/sign-on"
    await manager.wait_for("a third sign-on", lambda: manager.calls.count(sign_on) == 3)
    assert manager.registered == 2
    creds = load_credentials(tmp_path / "home")
    assert creds is not None and creds.worker_id == "worker-2"
    await manager.wait_for("a task fetch after it", lambda: manager.calls[-1] == "POST /api/v3/worker/task")


async def test_a_busy_manager_is_asked_again_after_its_retry_after(farm: Farm) -> None:
    # Replicas sharing a database answer 503 "busy, Retry-After: 1" when a row is locked by another one; a
    # worker that waited its usual 10 s after an error would sit idle, and miss a failover meanwhile.
    manager = ScriptedManager(long_poll=True)
    manager.fetch_answers = [503]
    await farm(manager)
    fetch = "POST /api/v3/worker/task"
    await manager.wait_for("the busy answer", lambda: manager.calls.count(fetch) == 1)
    refused = time.monotonic()
    await manager.wait_for("the fetch asked again", lambda: manager.calls.count(fetch) == 2)
    assert time.monotonic() - refused < pacing.FETCH_FAILED_BACKOFF / 2


async def test_sign_off_happens_even_when_the_outbox_file_is_damaged(tmp_path: Path) -> None:
    manager = ScriptedManager(long_poll=True)
    worker = RunningWorker(await manager.start(), tmp_path / "home")
    try:
        await worker.link.connect()
        for path in (tmp_path / "home").glob("flamenco-worker.sqlite*"):
            path.write_bytes(b"not a database" * 1000)
        await worker.link.close()
        assert manager.signed_off.is_set()
    finally:
        await manager.stop()
