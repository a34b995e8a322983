"""Flamenco v3's job and task status cascades as tables, driven through the web-UI endpoints."""

from __future__ import annotations

import pytest

from flamenco_manager.services import Manager
from flamenco_manager.services.jobs import JobSubmission
from tests.manager.conftest import API, Farm, make_config


async def _job_with_tasks(farm: Farm, statuses: list[str]) -> tuple[str, list[str]]:
    """A job whose tasks have the given statuses (set directly, as the web UI may)."""
    job = await farm.submit_echo(repeats=len(statuses) - 1)
    tasks = await farm.tasks(job["id"])
    for task, status in zip(tasks, statuses, strict=True):
        if status != "queued":
            reply = await farm.client.post(
                f"{API}/tasks/{task['id']}/setstatus", {"status": status, "reason": "setup"}
            )
            assert reply.status == 204
    return job["id"], [t["id"] for t in tasks]


async def _statuses(farm: Farm, job_id: str) -> tuple[str, list[str]]:
    tasks = await farm.tasks(job_id)
    return (await farm.job(job_id))["status"], [t["status"] for t in tasks]


@pytest.mark.parametrize(
    ("tasks", "request_status", "job_after", "tasks_after"),
    [
        (
            ["completed", "active", "queued"],
            "cancel-requested",
            "canceled",
            ["completed", "canceled", "canceled"],
        ),
        (["completed", "active", "soft-failed"], "failed", "failed", ["completed", "canceled", "canceled"]),
        (
            ["completed", "active", "queued"],
            "pause-requested",
            "pause-requested",
            ["completed", "active", "paused"],
        ),
        (
            ["completed", "queued", "soft-failed"],
            "pause-requested",
            "paused",
            ["completed", "paused", "paused"],
        ),
        (["completed", "canceled", "paused"], "requeueing", "queued", ["completed", "queued", "queued"]),
        (["completed", "completed", "completed"], "requeueing", "queued", ["queued", "queued", "queued"]),
        (
            ["completed", "completed", "completed"],
            "queued",
            "completed",
            ["completed", "completed", "completed"],
        ),
    ],
)
async def test_job_status_cascades_to_tasks(
    farm: Farm, tasks: list[str], request_status: str, job_after: str, tasks_after: list[str]
) -> None:
    job_id, _ = await _job_with_tasks(farm, tasks)
    reply = await farm.client.post(
        f"{API}/jobs/{job_id}/setstatus", {"status": request_status, "reason": "test"}
    )
    assert reply.status == 204
    assert await _statuses(farm, job_id) == (job_after, tasks_after)


async def test_pause_completes_when_the_last_active_task_finishes(farm: Farm) -> None:
    worker = await farm.awake_worker(("misc",))
    job = await farm.submit_echo(repeats=2)
    task = (await worker.fetch()).body
    await farm.client.post(
        f"{API}/jobs/{job['id']}/setstatus", {"status": "pause-requested", "reason": "test"}
    )
    assert (await farm.job(job["id"]))["status"] == "pause-requested"
    assert (await worker.may_i_run(task["uuid"])).body["mayKeepRunning"] is True  # active tasks keep running
    await worker.update(task["uuid"], taskStatus="completed")
    assert await _statuses(farm, job["id"]) == ("paused", ["completed", "paused", "paused"])
    assert (await worker.fetch()).status == 204


@pytest.mark.parametrize(
    ("tasks", "change", "job_after"),
    [
        (["queued", "queued"], ("active", 0), "active"),
        (["completed", "active"], ("completed", 1), "completed"),
        (["completed", "completed"], ("queued", 0), "queued"),  # via requeueing
        (["canceled", "active"], ("canceled", 1), "canceled"),
        (["queued", "active"], ("soft-failed", 1), "active"),
    ],
)
async def test_task_status_moves_its_job(
    farm: Farm, tasks: list[str], change: tuple[str, int], job_after: str
) -> None:
    job_id, task_ids = await _job_with_tasks(farm, tasks)
    status, index = change
    await farm.client.post(f"{API}/tasks/{task_ids[index]}/setstatus", {"status": status, "reason": "test"})
    assert (await farm.job(job_id))["status"] == job_after


async def test_job_fails_at_ten_percent_failed_tasks(farm: Farm) -> None:
    job = await farm.submit_echo(repeats=19)  # 20 tasks: 2 failures are 10 %
    tasks = await farm.tasks(job["id"])
    await farm.client.post(f"{API}/tasks/{tasks[5]['id']}/setstatus", {"status": "failed", "reason": "x"})
    assert (await farm.job(job["id"]))["status"] != "failed"
    await farm.client.post(f"{API}/tasks/{tasks[6]['id']}/setstatus", {"status": "failed", "reason": "x"})
    status, task_statuses = await _statuses(farm, job["id"])
    assert status == "failed"
    assert task_statuses.count("canceled") == 18


async def test_steps_follow_status(farm: Farm) -> None:
    job = await farm.submit_echo(repeats=1)
    tasks = await farm.tasks(job["id"])
    await farm.client.post(f"{API}/tasks/{tasks[0]['id']}/setstatus", {"status": "completed", "reason": "x"})
    assert (await farm.job(job["id"]))["steps_completed"] == 1
    await farm.client.post(f"{API}/tasks/{tasks[0]['id']}/setstatus", {"status": "queued", "reason": "x"})
    assert (await farm.task(tasks[0]["id"]))["steps_completed"] == 0
    assert (await farm.job(job["id"]))["steps_completed"] == 0


async def test_task_setstatus_validation(farm: Farm) -> None:
    job = await farm.submit_echo(repeats=0)
    task = (await farm.tasks(job["id"]))[0]
    reply = await farm.client.post(f"{API}/tasks/{task['id']}/setstatus", {"status": "exploded"})
    assert reply.status == 400 and "status" in reply.body["message"]
    reply = await farm.client.post(f"{API}/jobs/{job['id']}/setstatus", {"status": "exploded"})
    assert reply.status == 400 and "status" in reply.body["message"]


def _echo(name: str) -> JobSubmission:
    return JobSubmission(
        name=name,
        type="echo-sleep-test",
        submitter_platform="linux",
        settings={"message": "x", "sleep_repeats": 1},
    )


async def test_stuck_jobs_are_repaired_at_start(tmp_path) -> None:
    manager = Manager(make_config(tmp_path))
    job = await manager.jobs.submit(_echo("j"))
    assert job is not None
    with manager.store.transaction():
        manager.store.update_job(job.id, status="cancel-requested")  # as if killed mid-cascade
    half = await manager.jobs.submit(_echo("h"))
    assert half is not None
    with manager.store.transaction():
        manager.store.update_job(half.id, status="under-construction")  # as if killed while storing
    manager.logs.close()
    manager.store.close()

    restarted = Manager(make_config(tmp_path))
    await restarted.start()
    try:
        repaired = restarted.store.get_job(job.uuid)
        assert repaired is not None and repaired.status == "canceled"
        assert {t.status for t in restarted.store.tasks_of_job(job.id)} == {"canceled"}
        assert restarted.store.get_job(half.uuid) is None
    finally:
        await restarted.stop()
