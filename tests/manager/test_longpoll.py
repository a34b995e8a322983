"""Long-poll (`Prefer: wait=N`): held requests answer as soon as there is news, else on expiry."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.manager.conftest import API, Farm

# A held request that answers within this time answered "at once" (loopback, loaded CI machine).
PROMPT = 0.5


async def test_held_task_fetch_answers_when_a_job_arrives(farm: Farm) -> None:
    worker = await farm.awake_worker()
    fetch = asyncio.create_task(worker.fetch(wait=5))
    await asyncio.sleep(0.2)
    assert not fetch.done()
    started = time.monotonic()
    await farm.submit_echo(repeats=0)
    reply = await fetch
    assert time.monotonic() - started < PROMPT
    assert reply.status == 200 and reply.body["name"] == "echo"
    assert reply.headers["Preference-Applied"] == "wait=5"


async def test_held_task_fetch_answers_423_on_setstatus(farm: Farm) -> None:
    worker = await farm.awake_worker()
    fetch = asyncio.create_task(worker.fetch(wait=5))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    await farm.client.post(
        f"{API}/worker-mgt/workers/{worker.uuid}/setstatus", {"status": "asleep", "is_lazy": True}
    )
    reply = await fetch
    assert time.monotonic() - started < PROMPT
    assert reply.status == 423 and reply.body == {"status_requested": "asleep"}


async def test_held_state_answers_on_setstatus(farm: Farm) -> None:
    worker = await farm.awake_worker()
    await farm.client.post(
        f"{API}/worker-mgt/workers/{worker.uuid}/setstatus", {"status": "asleep", "is_lazy": False}
    )
    await worker.ack("asleep")
    state = asyncio.create_task(worker.state(wait=5))
    await asyncio.sleep(0.2)
    assert not state.done()
    started = time.monotonic()
    await farm.client.post(
        f"{API}/worker-mgt/workers/{worker.uuid}/setstatus", {"status": "awake", "is_lazy": False}
    )
    reply = await state
    assert time.monotonic() - started < PROMPT
    assert reply.status == 200 and reply.body == {"status_requested": "awake"}
    assert reply.headers["Preference-Applied"] == "wait=5"


async def test_held_may_i_run_answers_on_immediate_request_and_on_cancel(farm: Farm) -> None:
    worker = await farm.awake_worker()
    job = await farm.submit_echo(repeats=0)
    task = (await worker.fetch()).body
    held = asyncio.create_task(worker.may_i_run(task["uuid"], wait=5))
    await asyncio.sleep(0.2)
    # A lazy request is no reason to stop.
    await farm.client.post(
        f"{API}/worker-mgt/workers/{worker.uuid}/setstatus", {"status": "asleep", "is_lazy": True}
    )
    await asyncio.sleep(0.2)
    assert not held.done()
    started = time.monotonic()
    await farm.client.post(
        f"{API}/worker-mgt/workers/{worker.uuid}/setstatus", {"status": "asleep", "is_lazy": False}
    )
    reply = await held
    assert time.monotonic() - started < PROMPT
    assert reply.body["statusChangeRequested"] is True

    await farm.client.post(
        f"{API}/worker-mgt/workers/{worker.uuid}/setstatus", {"status": "awake", "is_lazy": False}
    )
    held = asyncio.create_task(worker.may_i_run(task["uuid"], wait=5))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    await farm.client.post(
        f"{API}/jobs/{job['id']}/setstatus", {"status": "cancel-requested", "reason": "stop"}
    )
    reply = await held
    assert time.monotonic() - started < PROMPT
    assert reply.body["mayKeepRunning"] is False


@pytest.mark.slow
async def test_expiry_gives_the_normal_nothing_answer(farm: Farm) -> None:
    worker = await farm.awake_worker()
    started = time.monotonic()
    reply = await worker.fetch(wait=1)
    assert 0.9 < time.monotonic() - started < 2.0
    assert reply.status == 204 and reply.headers["Preference-Applied"] == "wait=1"
    reply = await worker.state(wait=1)
    assert reply.status == 204
    await farm.submit_echo(repeats=0)
    task = (await worker.fetch()).body
    started = time.monotonic()
    reply = await worker.may_i_run(task["uuid"], wait=1)
    assert time.monotonic() - started > 0.9
    assert reply.body == {"mayKeepRunning": True, "reason": "", "statusChangeRequested": False}


async def test_without_prefer_nothing_is_held(farm: Farm) -> None:
    worker = await farm.awake_worker()
    started = time.monotonic()
    reply = await worker.fetch()
    assert time.monotonic() - started < PROMPT
    assert reply.status == 204 and "Preference-Applied" not in reply.headers


async def test_wait_is_capped_by_long_poll_max(farm: Farm) -> None:
    worker = await farm.awake_worker()
    state = asyncio.create_task(worker.state(wait=3600))
    await asyncio.sleep(0.1)
    await farm.client.post(
        f"{API}/worker-mgt/workers/{worker.uuid}/setstatus", {"status": "asleep", "is_lazy": False}
    )
    reply = await state
    assert reply.headers["Preference-Applied"] == f"wait={int(farm.manager.config.long_poll_max)}"


async def test_held_request_keeps_the_worker_seen(farm: Farm) -> None:
    worker = await farm.awake_worker()
    held = asyncio.create_task(worker.fetch(wait=3))
    await asyncio.sleep(0.2)
    manager = farm.manager
    manager.timeouts.worker_timeout = 0.1
    await asyncio.sleep(0.3)
    manager.timeouts.check()
    assert (await farm.worker(worker.uuid))["status"] == "awake"
    held.cancel()


async def test_two_workers_racing_for_one_task(farm: Farm) -> None:
    workers = [await farm.awake_worker() for _ in range(2)]
    fetches = [asyncio.create_task(w.fetch(wait=1)) for w in workers]
    await asyncio.sleep(0.2)
    await farm.submit_echo(repeats=0)
    replies = await asyncio.gather(*fetches)
    assert sorted(r.status for r in replies) == [200, 204]
