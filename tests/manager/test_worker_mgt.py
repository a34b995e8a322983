"""Worker management endpoints of the web UI (Flamenco v3's worker-mgt API)."""

from __future__ import annotations

import uuid

from tests.manager.conftest import API, Farm


async def test_list_get_delete(farm: Farm) -> None:
    worker = await farm.awake_worker(("misc",))
    await farm.submit_echo(repeats=0)
    task = (await worker.fetch()).body
    listed = (await farm.client.get(f"{API}/worker-mgt/workers")).body["workers"]
    assert [w["id"] for w in listed] == [worker.uuid]
    assert listed[0]["can_restart"] is True and listed[0]["version"] == "3.9" and "last_seen" in listed[0]
    detail = await farm.worker(worker.uuid)
    assert detail["platform"] == "linux" and detail["ip_address"] == "127.0.0.1"
    assert detail["supported_task_types"] == ["misc"]
    assert detail["task"]["id"] == task["uuid"] and detail["task"]["job_id"] == task["job"]
    assert (await farm.client.get(f"{API}/worker-mgt/workers/{uuid.uuid4()}")).status == 404
    assert (await farm.client.get(f"{API}/worker-mgt/workers/nope")).status == 400

    assert (await farm.client.delete(f"{API}/worker-mgt/workers/{worker.uuid}")).status == 204
    assert (await farm.task(task["uuid"]))["status"] == "queued"
    assert (await farm.client.get(f"{API}/worker-mgt/workers")).body["workers"] == []


async def test_setstatus_validation(farm: Farm) -> None:
    worker = await farm.awake_worker()
    path = f"{API}/worker-mgt/workers/{worker.uuid}/setstatus"
    assert (await farm.client.post(path, {"status": "asleep"})).status == 400
    reply = await farm.client.post(path, {"status": "sleepy", "is_lazy": True})
    assert reply.status == 400 and "status" in reply.body["message"]
    missing = f"{API}/worker-mgt/workers/{uuid.uuid4()}/setstatus"
    assert (await farm.client.post(missing, {"status": "asleep", "is_lazy": True})).status == 404


async def test_tag_crud_and_membership(farm: Farm) -> None:
    created = await farm.client.post(f"{API}/worker-mgt/tags", {"name": "gpu", "description": "RTX"})
    assert created.status == 200
    tag = created.body
    assert (await farm.client.post(f"{API}/worker-mgt/tags", {"name": "gpu"})).status == 409
    assert (await farm.client.post(f"{API}/worker-mgt/tags", {"description": "x"})).status == 400
    assert (await farm.client.get(f"{API}/worker-mgt/tag/{tag['id']}")).body == tag
    reply = await farm.client.put(
        f"{API}/worker-mgt/tag/{tag['id']}", {"name": "gpu2", "description": "A100"}
    )
    assert reply.status == 204
    assert (await farm.client.get(f"{API}/worker-mgt/tags")).body["tags"] == [
        {"id": tag["id"], "name": "gpu2", "description": "A100"}
    ]
    worker = await farm.awake_worker()
    settags = f"{API}/worker-mgt/workers/{worker.uuid}/settags"
    assert (await farm.client.post(settags, {"tag_ids": [tag["id"]]})).status == 204
    assert [t["id"] for t in (await farm.worker(worker.uuid))["tags"]] == [tag["id"]]
    assert (await farm.client.post(settags, {"tag_ids": [str(uuid.uuid4())]})).status == 404
    assert (await farm.client.delete(f"{API}/worker-mgt/tag/{tag['id']}")).status == 204
    assert (await farm.worker(worker.uuid)).get("tags", []) == []
    assert (await farm.client.get(f"{API}/worker-mgt/tag/{tag['id']}")).status == 404


async def test_sleep_schedule_storage_and_validation(farm: Farm) -> None:
    worker = await farm.awake_worker()
    path = f"{API}/worker-mgt/workers/{worker.uuid}/sleep-schedule"
    assert (await farm.client.get(path)).status == 204
    body = {"is_active": False, "days_of_week": "Mo TU fr", "start_time": "18:00", "end_time": "9:00"}
    assert (await farm.client.post(path, body)).status == 204
    stored = (await farm.client.get(path)).body
    assert stored == {
        "is_active": False,
        "days_of_week": "mo tu fr",
        "start_time": "09:00",
        "end_time": "18:00",
    }
    for bad, field in [
        ({**body, "start_time": "25:00"}, "start_time"),
        ({**body, "days_of_week": "someday"}, "days_of_week"),
        ({**body, "is_active": "yes"}, "is_active"),
    ]:
        reply = await farm.client.post(path, bad)
        assert reply.status == 400 and field in reply.body["message"]
    # An active schedule covering the whole day sends the worker to sleep at once.
    always = {"is_active": True, "days_of_week": "", "start_time": "", "end_time": ""}
    assert (await farm.client.post(path, always)).status == 204
    assert (await farm.worker(worker.uuid))["status_change"] == {"status": "asleep", "is_lazy": False}
    assert (await worker.fetch()).status == 423
    missing = f"{API}/worker-mgt/workers/{uuid.uuid4()}/sleep-schedule"
    assert (await farm.client.get(missing)).status == 404


def test_next_check_is_the_nearest_transition() -> None:
    import datetime

    from flamenco_manager.model import SleepSchedule
    from flamenco_manager.services.sleep_scheduler import next_check

    schedule = SleepSchedule(1, True, "", "09:00", "18:00", None)
    ten = datetime.datetime(2026, 3, 4, 10, 0).astimezone()
    assert datetime.datetime.fromtimestamp(next_check(schedule, ten.timestamp())).hour == 18
    late = datetime.datetime(2026, 3, 4, 23, 0).astimezone()
    nxt = datetime.datetime.fromtimestamp(next_check(schedule, late.timestamp()))
    assert (nxt.day, nxt.hour) == (5, 0)  # midnight comes before 09:00


async def test_due_schedules_are_applied_by_the_loop(farm: Farm) -> None:
    worker = await farm.awake_worker()
    path = f"{API}/worker-mgt/workers/{worker.uuid}/sleep-schedule"
    always = {"is_active": True, "days_of_week": "", "start_time": "", "end_time": ""}
    await farm.client.post(path, always)
    await worker.ack("asleep")
    # A manual wake-up holds until the next transition; when the schedule is due again, it applies.
    await farm.client.post(
        f"{API}/worker-mgt/workers/{worker.uuid}/setstatus", {"status": "awake", "is_lazy": False}
    )
    await worker.ack("awake")
    with farm.manager.store.transaction():
        stored = farm.manager.store.get_worker(worker.uuid)
        assert stored is not None
        schedule = farm.manager.store.get_sleep_schedule(stored.id)
        assert schedule is not None
        schedule.next_check = 0.0
        farm.manager.store.set_sleep_schedule(schedule)
    farm.manager.sleep_scheduler.check()
    assert (await farm.worker(worker.uuid))["status_change"] == {"status": "asleep", "is_lazy": False}


async def test_switching_a_schedule_off_wakes_the_worker(farm: Farm) -> None:
    worker = await farm.awake_worker()
    path = f"{API}/worker-mgt/workers/{worker.uuid}/sleep-schedule"
    always = {"is_active": True, "days_of_week": "", "start_time": "", "end_time": ""}
    assert (await farm.client.post(path, always)).status == 204
    await worker.ack("asleep")
    assert (await farm.client.post(path, {**always, "is_active": False})).status == 204
    assert (await farm.worker(worker.uuid))["status_change"] == {"status": "awake", "is_lazy": False}
