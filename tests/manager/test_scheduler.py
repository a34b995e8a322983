"""Flamenco v3's scheduling rules as a table, and many concurrent workers never sharing a task."""

from __future__ import annotations

import asyncio
import collections
import time
import uuid

import pytest

from flamenco_manager.model import Job, NewTask
from flamenco_manager.store import Store
from flamenco_manager.store.sqlite import SQLiteStore
from tests.manager.conftest import API, Farm
from tests.support.stored_jobs import queued_job

#: Queued jobs none of whose tasks an idle worker can run: each once cost the scheduler a query per job
#: and supported task type.
UNRUNNABLE_JOBS = 1000
#: Statements a task request may run whatever the queue holds: authentication, the re-delivery check,
#: the one selection query, and the unit's savepoint and commit, with room to spare.
TASK_REQUEST_STATEMENTS = 20


async def _task_names_in_order(farm: Farm, worker) -> list[str]:
    names: list[str] = []
    while True:
        reply = await worker.fetch()
        if reply.status != 200:
            return names
        names.append(reply.body["name"] + "@" + str(reply.body["job_priority"]))
        await worker.update(reply.body["uuid"], taskStatus="completed")


async def test_higher_job_priority_first_then_dependencies(farm: Farm) -> None:
    worker = await farm.awake_worker(("misc",))
    await farm.submit_echo(repeats=1, priority=10)
    await farm.submit_echo(repeats=1, priority=90)
    names = await _task_names_in_order(farm, worker)
    assert [n.split("@")[1] for n in names] == ["90", "90", "10", "10"]
    assert names[0].startswith("echo") and names[2].startswith("echo")  # the sleeps depend on the echo


@pytest.mark.parametrize(
    ("worker_types", "gets_task"),
    [
        (("misc",), True),
        (("blender",), False),
        (("MISC ",), True),  # types are compared lowercased and trimmed
    ],
)
async def test_task_types(farm: Farm, worker_types: tuple[str, ...], gets_task: bool) -> None:
    worker = await farm.awake_worker(worker_types)
    await farm.submit_echo(repeats=0)
    assert (await worker.fetch()).status == (200 if gets_task else 204)


async def test_dependencies_must_be_completed(farm: Farm) -> None:
    first = await farm.awake_worker(("misc",))
    second = await farm.awake_worker(("misc",))
    await farm.submit_echo(repeats=2)
    echo = (await first.fetch()).body
    assert echo["name"] == "echo"
    assert (await second.fetch()).status == 204  # both sleeps wait for the echo
    await first.update(echo["uuid"], taskStatus="completed")
    assert (await second.fetch()).status == 200


async def test_tags(farm: Farm) -> None:
    tag = (await farm.client.post(f"{API}/worker-mgt/tags", {"name": "gpu", "description": "fast"})).body
    tagged = await farm.awake_worker(("misc",))
    untagged = await farm.awake_worker(("misc",))
    assert (
        await farm.client.post(f"{API}/worker-mgt/workers/{tagged.uuid}/settags", {"tag_ids": [tag["id"]]})
    ).status == 204
    await farm.submit_echo(repeats=0, worker_tag=tag["id"])
    assert (await untagged.fetch()).status == 204
    assert (await tagged.fetch()).status == 200
    await farm.submit_echo(repeats=0)
    assert (await untagged.fetch()).status == 200  # untagged jobs go to anyone


async def test_failure_list_and_soft_failure(farm: Farm) -> None:
    bad = await farm.awake_worker(("misc",))
    good = await farm.awake_worker(("misc",))
    await farm.awake_worker(("misc",))  # a third able worker keeps the job from failing at once
    job = await farm.submit_echo(repeats=0)
    task = (await bad.fetch()).body
    await bad.update(task["uuid"], taskStatus="failed", activity="Failed: boom", log="Failed: boom")
    detail = await farm.task(task["uuid"])
    assert detail["status"] == "soft-failed"
    assert [w["id"] for w in detail["failed_by_workers"]] == [bad.uuid]
    assert (await bad.fetch()).status == 204  # never again to a worker that failed it
    again = await good.fetch()
    assert again.body["uuid"] == task["uuid"]
    assert (await farm.job(job["id"]))["status"] == "active"


async def test_hard_failure_after_enough_workers(farm: Farm) -> None:
    workers = [await farm.awake_worker(("misc",)) for _ in range(4)]
    job = await farm.submit_echo(repeats=0)
    for worker in workers[:3]:
        task = (await worker.fetch()).body
        await worker.update(task["uuid"], taskStatus="failed")
    assert (await farm.task(task["uuid"]))["status"] == "failed"
    assert (await farm.job(job["id"]))["status"] == "failed"  # 1 of 1 tasks failed ≥ 10 %


async def test_failures_spread_over_jobs_blocklist_nothing(farm: Farm) -> None:
    bad = await farm.awake_worker(("misc",))
    for _ in range(3):
        await farm.awake_worker(("misc",))
    jobs = [await farm.submit_echo(repeats=0) for _ in range(3)]
    for _ in range(3):
        task = (await bad.fetch()).body
        await bad.update(task["uuid"], taskStatus="failed")
    for job in jobs:
        assert (await farm.client.get(f"{API}/jobs/{job['id']}/blocklist")).body == []


async def test_blocklist_within_one_job(farm: Farm) -> None:
    bad = await farm.awake_worker(("misc",))
    others = [await farm.awake_worker(("misc",)) for _ in range(3)]
    job = await farm.submit_echo(repeats=30)
    echo = (await others[0].fetch()).body
    await others[0].update(echo["uuid"], taskStatus="completed")
    for _ in range(3):
        task = (await bad.fetch()).body
        assert task["task_type"] == "misc"
        await bad.update(task["uuid"], taskStatus="failed")
    blocklist = (await farm.client.get(f"{API}/jobs/{job['id']}/blocklist")).body
    assert blocklist == [{"worker_id": bad.uuid, "task_type": "misc", "worker_name": bad.name}]
    assert (await bad.fetch()).status == 204
    reply = await farm.client.delete(
        f"{API}/jobs/{job['id']}/blocklist", [{"worker_id": bad.uuid, "task_type": "misc"}]
    )
    assert reply.status == 204
    assert (await farm.client.get(f"{API}/jobs/{job['id']}/blocklist")).body == []
    assert (await bad.fetch()).status == 200


async def test_many_concurrent_workers_never_share_a_task(farm: Farm) -> None:
    workers = [await farm.awake_worker(("misc",)) for _ in range(20)]
    for _ in range(10):
        await farm.submit_echo(repeats=9)  # 10 tasks each, 100 in all
    got: list[str] = []

    async def run(worker) -> None:
        while True:
            reply = await worker.fetch(wait=1)
            if reply.status != 200:
                return
            got.append(reply.body["uuid"])
            assert (await worker.update(reply.body["uuid"], taskStatus="completed")).status == 204

    await asyncio.gather(*(run(w) for w in workers))
    counts = collections.Counter(got)
    assert len(counts) == 100
    assert max(counts.values()) == 1


def _store(farm: Farm) -> Store:
    return farm.manager.store


def _insert_job(
    farm: Farm, *, priority: int, tasks: list[tuple[str, int]], created_at: float | None = None
) -> tuple[Job, list[str]]:
    """A queued job stored directly, its tasks as (type, priority) in order, none depending on another."""
    store = _store(farm)
    now = time.time() if created_at is None else created_at
    with store.transaction():
        job = store.create_job(
            queued_job(name=f"stored directly {priority}", priority=priority, created_at=now)
        )
        new = [
            NewTask(
                uuid=str(uuid.uuid4()),
                name=f"{task_type} {index}",
                type=task_type,
                priority=task_priority,
                commands=[{"name": "echo", "parameters": {"message": "hi"}}],
                steps_total=1,
            )
            for index, (task_type, task_priority) in enumerate(tasks)
        ]
        store.add_tasks(job, new, 1)
    return job, [t.uuid for t in new]


async def test_job_order_first_then_task_priority_over_every_supported_type(farm: Farm) -> None:
    worker = await farm.awake_worker(("misc", "blender"))
    _insert_job(farm, priority=10, tasks=[("blender", 99)])
    _, top = _insert_job(
        farm, priority=60, tasks=[("ffmpeg", 90), ("misc", 20), ("blender", 70), ("misc", 70)]
    )
    _insert_job(farm, priority=60, tasks=[("misc", 99)], created_at=time.time() + 1)  # younger: after
    got: list[str] = []
    for _ in range(3):
        got.append((await worker.fetch()).body["uuid"])
        await worker.update(got[-1], taskStatus="completed")
    # the same priority: the earlier position; another type at a higher priority beats the first type
    assert got == [top[2], top[3], top[1]]


async def test_a_blocklisted_type_leaves_the_other_types_of_that_job(farm: Farm) -> None:
    worker = await farm.awake_worker(("misc", "blender"))
    job, tasks = _insert_job(farm, priority=50, tasks=[("misc", 90), ("blender", 10)])
    store = _store(farm)
    stored = store.get_worker(worker.uuid)
    assert stored is not None
    with store.transaction():
        store.add_job_block(job.id, stored.id, "misc", time.time())
    assert (await worker.fetch()).body["uuid"] == tasks[1]


@pytest.mark.sqlite_only("counts the statements of the SQLite connection")
async def test_a_task_request_costs_a_bounded_number_of_queries(farm: Farm) -> None:
    worker = await farm.awake_worker(("blender", "ffmpeg"))
    for _ in range(UNRUNNABLE_JOBS):
        _insert_job(farm, priority=50, tasks=[("misc", 50), ("misc", 50)])
    statements: list[str] = []
    store = farm.manager.store
    assert isinstance(store, SQLiteStore)
    store.trace_statements(statements.append)
    try:
        reply = await worker.fetch()
    finally:
        store.trace_statements(None)
    assert reply.status == 204
    assert 0 < len(statements) <= TASK_REQUEST_STATEMENTS, statements[:40]
    # and a runnable job behind all of them is still found
    _, (wanted,) = _insert_job(farm, priority=1, tasks=[("ffmpeg", 50)])
    assert (await worker.fetch()).body["uuid"] == wanted
