"""Two Manager replicas on one PostgreSQL database: what wakes a held request or reaches a browser on one
replica does so on the other too (LISTEN/NOTIFY, see `store.postgresql_notify`)."""

from __future__ import annotations

import asyncio
import pathlib
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from flamenco_manager.services import ELECTION_RETRY, Manager
from tests.manager.conftest import (
    API,
    PG_TEMPLATE,
    FakeWorker,
    Farm,
    make_config,
    serve,
)
from tests.manager.test_events import Stream
from tests.support import postgresql

pytestmark = [pytest.mark.postgresql, pytest.mark.timeout(120)]

# A held request on the other replica is answered within this (the goal is 100 ms at the 99th percentile;
# this bound leaves room for a loaded test machine).
PROMPT = 1.0
# Bigger than three notifications can carry (PostgreSQL refuses payloads of 8000 bytes or more).
BIG_EVENT = 3 * 8000
# Round trips measured for the latency figures.
TRIES = 200


async def _replica(
    tmp_path: pathlib.Path, url: str, session: aiohttp.ClientSession, **config: Any
) -> tuple[Farm, web.AppRunner]:
    """One replica on the database at `url`, served on its own port."""
    return await serve(Manager(make_config(tmp_path, database=url, **config)), session)


# Managers a test stopped itself (the fixture does not stop them again).
_stopped: set[Manager] = set()


async def _stop(farm: Farm) -> None:
    _stopped.add(farm.manager)
    farm.manager.stop_holding()
    await farm.manager.stop()


@pytest.fixture
async def replicas(
    tmp_path: pathlib.Path, postgres: postgresql.PostgresServer
) -> AsyncIterator[tuple[Farm, Farm]]:
    url = postgres.fresh_database(template=PG_TEMPLATE)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with aiohttp.ClientSession() as session:
        a, runner_a = await _replica(tmp_path / "a", url, session)
        b, runner_b = await _replica(tmp_path / "b", url, session)
        try:
            yield a, b
        finally:
            for farm, runner in ((a, runner_a), (b, runner_b)):
                if farm.manager in _stopped:
                    await runner.cleanup()
                    continue
                farm.manager.stop_holding()
                await runner.cleanup()
                await farm.manager.stop()
    postgres.drop_database(url)


def _on(farm: Farm, worker: FakeWorker) -> FakeWorker:
    """The same worker speaking to another replica."""
    return FakeWorker(farm.client, worker.uuid, worker.secret, worker.name, worker.types)


async def _held(farm: Farm, worker_uuid: str) -> None:
    worker = farm.manager.store.get_worker(worker_uuid)
    assert worker is not None
    deadline = time.monotonic() + 5
    while not farm.manager.hub.is_held(worker.id):
        assert time.monotonic() < deadline, "the request was not held"
        await asyncio.sleep(0.005)


async def test_held_state_on_b_answers_setstatus_on_a(replicas: tuple[Farm, Farm]) -> None:
    a, b = replicas
    worker = await a.awake_worker()
    on_b = _on(b, worker)
    latencies: list[float] = []
    status = "awake"
    for _ in range(TRIES):
        status = "asleep" if status == "awake" else "awake"
        held = asyncio.create_task(on_b.state(wait=5))
        await _held(b, worker.uuid)
        started = time.monotonic()
        reply = await a.client.post(
            f"{API}/worker-mgt/workers/{worker.uuid}/setstatus", {"status": status, "is_lazy": False}
        )
        assert reply.status == 204, reply.body
        answer = await held
        latencies.append(time.monotonic() - started)
        assert answer.status == 200 and answer.body == {"status_requested": status}
        assert latencies[-1] < PROMPT
        await on_b.ack(status)
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(f"\nsetstatus on A -> held state on B answered: tries={TRIES} p50={p50:.1f}ms p99={p99:.1f}ms")


async def test_browser_on_b_sees_job_submitted_on_a(replicas: tuple[Farm, Farm]) -> None:
    a, b = replicas
    response = await b.client.session.get(f"{b.client.base}{API}/events?topics=jobs")
    try:
        assert response.status == 200
        stream = Stream(response)
        job = await a.submit_echo()
        topic, payload = await stream.next(within=PROMPT)
        assert topic == "/jobs" and payload["id"] == job["id"] and payload["type"] == "echo-sleep-test"
    finally:
        response.close()


async def test_big_event_crosses_in_parts(replicas: tuple[Farm, Farm]) -> None:
    a, b = replicas
    sub = b.manager.hub.subscribe(frozenset({"/tasklog"}), None, None)
    try:
        text = "x" * BIG_EVENT
        a.manager.hub.publish("/tasklog", {"task_id": "t", "log": text}, job_id="j", task_id="t")
        a.manager.hub.publish("/tasklog", {"task_id": "t", "log": "small"}, job_id="j", task_id="t")
        first = await asyncio.wait_for(sub.queue.get(), PROMPT)
        second = await asyncio.wait_for(sub.queue.get(), PROMPT)
        assert first is not None and first.payload["log"] == text and first.job_id == "j"
        assert second is not None and second.payload["log"] == "small"
    finally:
        b.manager.hub.unsubscribe(sub)


async def test_own_events_are_not_delivered_twice(replicas: tuple[Farm, Farm]) -> None:
    a, _ = replicas
    sub = a.manager.hub.subscribe(frozenset({"/tasklog"}), None, None)
    try:
        a.manager.hub.publish("/tasklog", {"task_id": "t", "log": "once"}, job_id="j", task_id="t")
        first = await asyncio.wait_for(sub.queue.get(), PROMPT)
        assert first is not None and first.payload["log"] == "once"
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(sub.queue.get(), 0.5)
    finally:
        a.manager.hub.unsubscribe(sub)


async def _runner_of(a: Farm, b: Farm, within: float) -> Farm:
    deadline = time.monotonic() + within
    while not (a.manager.runs_farm_loops or b.manager.runs_farm_loops):
        assert time.monotonic() < deadline, "no replica runs the farm-wide loops"
        await asyncio.sleep(0.02)
    return a if a.manager.runs_farm_loops else b


def _farm_loop_names(farm: Farm) -> set[str]:
    names = {"timeouts", "sleep-scheduler", "farm-history"}
    return {t.get_name() for t in asyncio.all_tasks() if t.get_name() in names and not t.done()} & {
        t.get_name() for t in farm.manager._farm_loops
    }


async def test_farm_loops_run_on_one_replica_and_move_when_it_stops(replicas: tuple[Farm, Farm]) -> None:
    a, b = replicas
    holder = await _runner_of(a, b, within=ELECTION_RETRY + 2)
    other = b if holder is a else a
    assert _farm_loop_names(holder) == {"timeouts", "sleep-scheduler", "farm-history"}
    # The other keeps trying and keeps failing while the holder lives.
    await asyncio.sleep(ELECTION_RETRY * 1.5)
    assert holder.manager.runs_farm_loops and not other.manager.runs_farm_loops
    assert not other.manager._farm_loops
    await _stop(holder)
    stopped = time.monotonic()
    assert await _runner_of(other, other, within=ELECTION_RETRY + 2) is other
    print(f"\nfarm-wide loops taken over in {time.monotonic() - stopped:.2f}s")
    assert _farm_loop_names(other) == {"timeouts", "sleep-scheduler", "farm-history"}


async def test_holder_whose_session_ends_steps_down(
    replicas: tuple[Farm, Farm], postgres: postgresql.PostgresServer
) -> None:
    a, b = replicas
    holder = await _runner_of(a, b, within=ELECTION_RETRY + 2)
    other = b if holder is a else a
    leader = holder.manager._leader
    assert leader is not None and leader._conn is not None
    pid = leader._conn.info.backend_pid
    postgres.admin(f"SELECT pg_terminate_backend({pid})")
    deadline = time.monotonic() + 2 * ELECTION_RETRY + 2
    while holder.manager.runs_farm_loops or not other.manager.runs_farm_loops:
        assert time.monotonic() < deadline, "the other replica did not take over"
        await asyncio.sleep(0.02)
