"""The farm overview's history: samples of a real Manager with a real SQLite file, the one-hour window, and
completions counted from task status changes, with time driven by an injected clock."""

from __future__ import annotations

import asyncio
import itertools
import json
import pathlib
from typing import Any

import pytest

from flamenco_manager.config import ConfigError, load_config
from flamenco_manager.services.farm_history import HISTORY_SPAN, FarmHistory
from tests.manager.conftest import API, Farm, eventually

START = 1_700_000_000.0
INTERVAL = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def history_of(farm: Farm, clock: Clock) -> FarmHistory:
    """A history of the farm's Manager whose time the test moves (the Manager's own loop keeps running)."""
    m = farm.manager
    return FarmHistory(m.store, m.hub, m.machine, interval=INTERVAL, clock=clock)


async def test_a_sample_counts_workers_tasks_jobs_and_completions(farm: Farm) -> None:
    clock = Clock()
    history = history_of(farm, clock)
    first = history.sample()
    assert first.workers["awake"] == 0 and set(first.workers) >= {"awake", "asleep", "offline", "error"}
    assert (first.tasks_queued, first.tasks_active, first.tasks_completed, first.jobs_queued) == (0, 0, 0, 0)

    worker = await farm.awake_worker()
    await farm.awake_worker()
    await farm.client.post(f"{API}/worker-mgt/workers/{worker.uuid}/setstatus", {"status": "asleep"})
    job = await farm.submit_echo(repeats=2)  # an echo task, then two sleep tasks waiting for it
    clock.now += INTERVAL
    queued = history.sample()
    assert queued.workers["awake"] == 2 and queued.workers_working == 0
    assert (queued.tasks_queued, queued.tasks_active, queued.jobs_queued, queued.jobs_active) == (3, 0, 1, 0)

    echo = (await worker.fetch()).body
    clock.now += INTERVAL
    running = history.sample()
    assert (running.tasks_queued, running.tasks_active, running.workers_working) == (2, 1, 1)
    assert (running.jobs_queued, running.jobs_active, running.tasks_completed) == (0, 1, 0)

    assert (await worker.update(echo["uuid"], taskStatus="completed")).status == 204
    clock.now += INTERVAL
    done = history.sample()
    assert (done.tasks_completed, done.tasks_active, done.tasks_queued) == (1, 0, 2)
    clock.now += INTERVAL
    assert history.sample().tasks_completed == 0, "a completion counts in one sample only"
    assert [s.time for s in history.samples()] == [START + i * INTERVAL for i in range(5)]
    assert (await farm.job(job["id"]))["status"] == "active"


async def test_completions_come_from_status_changes_not_from_rows(farm: Farm) -> None:
    """A task completed, requeued and completed again is two completions, though one row is completed."""
    clock = Clock()
    history = history_of(farm, clock)
    history.sample()
    worker = await farm.awake_worker()
    job = await farm.submit_echo(repeats=0)
    task = (await worker.fetch()).body
    await worker.update(task["uuid"], taskStatus="completed")
    reply = await farm.client.post(
        f"{API}/tasks/{task['uuid']}/setstatus", {"status": "queued", "reason": "again"}
    )
    assert reply.status == 204
    again = (await worker.fetch()).body
    assert again["uuid"] == task["uuid"]
    await worker.update(task["uuid"], taskStatus="completed")
    clock.now += INTERVAL
    assert history.sample().tasks_completed == 2
    assert (await farm.job(job["id"]))["status"] == "completed"

    # Deleting the job takes its tasks out of the counts at once, and completes nothing.
    assert (await farm.client.delete(f"{API}/jobs/{job['id']}")).status == 204
    clock.now += INTERVAL
    after = history.sample()
    assert (after.tasks_completed, after.tasks_queued, after.jobs_queued) == (0, 0, 0)


async def test_the_window_keeps_one_hour_and_drops_older_samples(farm: Farm) -> None:
    clock = Clock()
    history = history_of(farm, clock)
    per_hour = int(HISTORY_SPAN / INTERVAL)
    for _ in range(per_hour + 30):  # half a minute more than an hour
        history.sample()
        clock.now += INTERVAL
    samples = history.samples()
    newest = samples[-1].time
    assert len(samples) == per_hour + 1  # the sample exactly an hour old is still shown
    assert samples[0].time == newest - HISTORY_SPAN
    assert all(b.time - a.time == INTERVAL for a, b in itertools.pairwise(samples))

    clock.now += 2 * HISTORY_SPAN  # the Manager was stalled (or the machine suspended) for two hours
    history.sample()
    assert [s.time for s in history.samples()] == [clock.now]


async def test_the_endpoint_and_the_event_carry_the_samples(farm: Farm) -> None:
    history = farm.manager.farm_history
    await eventually(lambda: history.samples())  # the loop samples once at start
    response = await farm.client.session.get(f"{farm.client.base}{API}/events?topics=farm-history")
    try:
        assert response.status == 200
        await farm.awake_worker()
        taken = history.sample()
        topic, payload = await _next_event(response)
        assert topic == "/farm-history"
        assert payload == json.loads(json.dumps(taken.as_json()))
        assert payload["workers"]["awake"] == 1
    finally:
        response.close()
    reply = await farm.client.get(f"{API}/farm-history")  # checked against the OpenAPI document too
    assert reply.status == 200
    assert reply.body["interval"] == 10.0 and reply.body["span"] == HISTORY_SPAN
    assert reply.body["samples"][-1] == payload
    assert len(reply.body["samples"]) == len(history.samples()) >= 2


async def _next_event(response: Any) -> tuple[str, dict[str, Any]]:
    async def read() -> tuple[str, dict[str, Any]]:
        topic = ""
        while True:
            line = (await response.content.readline()).decode().rstrip("\n")
            if line.startswith("event: "):
                topic = line[7:]
            elif line.startswith("data: ") and topic:
                return topic, json.loads(line[6:])

    return await asyncio.wait_for(read(), 5.0)


@pytest.mark.parametrize("config_overrides", [{"farm_history_interval": 0.05}])
async def test_the_loop_samples_on_its_interval(farm: Farm) -> None:
    history = farm.manager.farm_history
    await eventually(lambda: len(history.samples()) >= 4)
    samples = history.samples()
    gaps = [b.time - a.time for a, b in itertools.pairwise(samples)]
    assert all(0.02 < gap < 1.0 for gap in gaps), gaps


def _config(tmp_path: pathlib.Path, line: str) -> pathlib.Path:
    path = tmp_path / "flamenco-manager.yaml"
    path.write_text(f"_meta: {{version: 3}}\n{line}\n")
    return path


def test_the_interval_is_a_hidden_duration_setting(tmp_path: pathlib.Path) -> None:
    assert load_config(_config(tmp_path, "manager_name: x"), explicit=True).farm_history_interval == 10.0
    assert (
        load_config(_config(tmp_path, "farm_history_interval: 500ms"), explicit=True).farm_history_interval
        == 0.5
    )
    with pytest.raises(ConfigError, match="2: farm_history_interval: must be longer than zero"):
        load_config(_config(tmp_path, "farm_history_interval: 0s"), explicit=True)
