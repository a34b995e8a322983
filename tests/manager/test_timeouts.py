"""Worker and task timeouts (Flamenco v3's rules) with short intervals."""

from __future__ import annotations

import asyncio

import pytest

from tests.manager.conftest import API, Farm, eventually


@pytest.fixture
def config_overrides() -> dict:
    return {
        "task_timeout": 0.6,
        "worker_timeout": 0.6,
        "timeout_initial_delay": 0.3,
        "timeout_check_interval": 0.1,
    }


async def test_silent_worker_goes_to_error_and_its_task_is_requeued(farm: Farm) -> None:
    farm.manager.timeouts.task_timeout = 60.0  # only the worker timeout should fire here
    worker = await farm.awake_worker(("misc",))
    await farm.submit_echo(repeats=0)
    task = (await worker.fetch()).body
    await farm.client.post(
        f"{API}/worker-mgt/workers/{worker.uuid}/setstatus", {"status": "asleep", "is_lazy": True}
    )

    async def timed_out() -> bool:
        return (await farm.worker(worker.uuid))["status"] == "error"

    await eventually(timed_out, within=5)
    summary = await farm.worker(worker.uuid)
    assert "status_change" not in summary  # the request is cleared
    detail = await farm.task(task["uuid"])
    assert detail["status"] == "queued" and "timed out" in detail["activity"]
    # The worker comes back: 409 until it signs on again.
    assert (await worker.fetch()).status == 409


async def test_untouched_task_fails_while_the_worker_is_seen(farm: Farm) -> None:
    worker = await farm.awake_worker(("misc",))
    job = await farm.submit_echo(repeats=0)
    task = (await worker.fetch()).body
    # The worker keeps polling its state (seen) but never touches the task.
    for _ in range(12):
        await worker.state()
        await asyncio.sleep(0.1)
    detail = await farm.task(task["uuid"])
    assert detail["status"] == "failed"
    assert detail["activity"].startswith("Task timed out on worker")
    assert (await farm.job(job["id"]))["status"] == "failed"
    assert (await farm.worker(worker.uuid))["status"] == "awake"


async def test_may_i_run_touches_the_task(farm: Farm) -> None:
    worker = await farm.awake_worker(("misc",))
    await farm.submit_echo(repeats=0)
    task = (await worker.fetch()).body
    for _ in range(12):
        assert (await worker.may_i_run(task["uuid"])).body["mayKeepRunning"] is True
        await asyncio.sleep(0.1)
    assert (await farm.task(task["uuid"]))["status"] == "active"
