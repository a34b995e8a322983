"""A running task's cancellation: an abort is the task's own and is taken back, anything else propagates.

Real parts throughout: the task runs a real `sleep` command and reports over real HTTP to a scripted
Manager on loopback, through a real outbox file.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from flamenco_worker.manager_client import AssignedTask, ManagerClient
from flamenco_worker.outbox import Outbox
from flamenco_worker.output_upload import OutputUploader
from flamenco_worker.task_run import ManagedTask
from flamenco_worker.task_updates_sender import TaskUpdatesSender
from tests.worker.scripted_manager import ScriptedManager


@dataclass
class Reporting:
    manager: ScriptedManager
    sender: TaskUpdatesSender
    uploader: OutputUploader


@pytest.fixture
async def reporting(tmp_path: Path) -> AsyncIterator[Reporting]:
    manager = ScriptedManager(long_poll=True)
    client = ManagerClient(await manager.start())
    outbox = Outbox(tmp_path)
    sender = TaskUpdatesSender(client, outbox)
    uploader = OutputUploader(client)
    yield Reporting(manager, sender, uploader)
    await uploader.close()
    await sender.close()
    await client.close()
    outbox.close()
    await manager.stop()


async def no_watch(task: ManagedTask) -> None:
    await asyncio.Event().wait()


def sleeping_task(reporting: Reporting) -> ManagedTask:
    assigned = AssignedTask(
        uuid="t-sleep",
        job="j",
        name="sleeps",
        task_type="misc",
        commands=[{"name": "sleep", "parameters": {"duration_in_seconds": 60}}],
        raw={},
    )
    return ManagedTask(assigned, reporting.sender, reporting.uploader, watch=no_watch)


async def run_and_report_cancelling(task: ManagedTask) -> int:
    """Run the task; afterwards, how many cancellations of this asyncio task are still outstanding."""
    await task.run()
    current = asyncio.current_task()
    assert current is not None
    return current.cancelling()


async def started(reporting: Reporting) -> None:
    await reporting.manager.wait_for("the Started update", lambda: len(reporting.manager.updates) >= 1)


async def test_abort_returns_normally_and_takes_back_its_cancellation(reporting: Reporting) -> None:
    task = sleeping_task(reporting)
    runner = asyncio.create_task(run_and_report_cancelling(task))
    await started(reporting)
    task.abort("the test says stop")
    assert await asyncio.wait_for(runner, 10) == 0, "the abort's own cancellation was left outstanding"
    assert task.outcome == "aborted"
    assert "Task aborted on the worker: the test says stop" in reporting.manager.log_text()
    assert [u.body.get("taskStatus") for u in reporting.manager.status_updates()] == ["active"]


async def test_abort_and_an_outside_cancel_together_propagate(reporting: Reporting) -> None:
    task = sleeping_task(reporting)
    runner = asyncio.create_task(run_and_report_cancelling(task))
    await started(reporting)
    task.abort("the test says stop")
    runner.cancel()  # the core stopping at the same moment
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(runner, 10)
    assert task.outcome == "aborted"


async def test_outside_cancel_alone_propagates(reporting: Reporting) -> None:
    task = sleeping_task(reporting)
    runner = asyncio.create_task(run_and_report_cancelling(task))
    await started(reporting)
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(runner, 10)
    assert "Task aborted on the worker: worker stopping" in reporting.manager.log_text()
