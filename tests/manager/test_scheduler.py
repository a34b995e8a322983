"""Flamenco v3's scheduling rules as a table, and many concurrent workers never sharing a task."""

from __future__ import annotations

import asyncio
import collections

import pytest

from tests.manager.conftest import API, Farm


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
