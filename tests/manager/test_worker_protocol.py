"""The worker protocol, replayed the way Flamenco v3's Go worker drives it, status changes included."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from flamenco_manager.store import StoreBusy
from tests.manager.conftest import API, Farm

# What may-i-run answers while the task may go on.
KEEP_RUNNING = {"mayKeepRunning": True, "reason": "", "statusChangeRequested": False}


async def test_go_worker_sequence_register_to_completion(farm: Farm) -> None:
    worker = await farm.register(("misc",))
    assert await worker.sign_on() == "awake"
    await worker.ack("awake")
    job = await farm.submit_echo(repeats=1)

    first = await worker.fetch()
    assert first.status == 200
    task = first.body
    assert task["job"] == job["id"] and task["name"] == "echo" and task["task_type"] == "misc"
    assert task["commands"] == [{"name": "echo", "parameters": {"message": "hello"}, "total_step_count": 0}]
    assert (await worker.may_i_run(task["uuid"])).body == KEEP_RUNNING

    assert (await worker.update(task["uuid"], activity="Started", taskStatus="active")).status == 204
    assert (await worker.update(task["uuid"], log='pid=1 > echo: "hello"\n')).status == 204
    assert (await worker.update(task["uuid"], activity="Progress", steps_completed=1)).status == 204
    assert (await worker.update(task["uuid"], activity="Completed", taskStatus="completed")).status == 204

    # The sleep task depended on the echo task and is now runnable.
    second = await worker.fetch()
    assert second.status == 200 and second.body["name"].startswith("sleep")
    assert second.body["commands"][0]["parameters"] == {"duration_in_seconds": 0}
    await worker.update(second.body["uuid"], taskStatus="completed")
    assert (await worker.fetch()).status == 204

    assert (await farm.job(job["id"]))["status"] == "completed"
    logtail = await farm.client.get(f"{API}/tasks/{task['uuid']}/logtail")
    assert logtail.status == 200
    assert 'echo: "hello"' in logtail.body
    assert "Task assigned to worker" in logtail.body
    assert "task changed status active -> completed" in logtail.body


async def test_task_endpoint_answers_423_with_pending_request_lazy_or_not(farm: Farm) -> None:
    worker = await farm.awake_worker()
    for lazy in (True, False):
        reply = await farm.client.post(
            f"{API}/worker-mgt/workers/{worker.uuid}/setstatus", {"status": "asleep", "is_lazy": lazy}
        )
        assert reply.status == 204
        fetched = await worker.fetch()
        assert fetched.status == 423 and fetched.body == {"status_requested": "asleep"}
        # The request stays until acknowledged.
        assert (await worker.fetch()).status == 423
        await worker.ack("asleep")
        assert (await worker.state()).status == 204
        await farm.client.post(
            f"{API}/worker-mgt/workers/{worker.uuid}/setstatus", {"status": "awake", "is_lazy": False}
        )
        assert (await worker.state()).body == {"status_requested": "awake"}
        await worker.ack("awake")


async def test_lazy_request_lets_the_task_finish_immediate_one_stops_it(farm: Farm) -> None:
    worker = await farm.awake_worker()
    await farm.submit_echo(repeats=0)
    task = (await worker.fetch()).body
    setstatus = f"{API}/worker-mgt/workers/{worker.uuid}/setstatus"

    await farm.client.post(setstatus, {"status": "asleep", "is_lazy": True})
    assert (await worker.may_i_run(task["uuid"])).body == KEEP_RUNNING

    await farm.client.post(setstatus, {"status": "asleep", "is_lazy": False})
    assert (await worker.may_i_run(task["uuid"])).body == {
        "mayKeepRunning": False,
        "reason": "worker status change requested",
        "statusChangeRequested": True,
    }
    # The worker kills its process, sends nothing, asks for a task and acks asleep: the task is requeued.
    assert (await worker.fetch()).status == 423
    await worker.ack("asleep")
    detail = await farm.task(task["uuid"])
    assert detail["status"] == "queued"
    assert "changed status to 'asleep'" in detail["activity"]
    assert detail["worker"]["id"] == worker.uuid  # the last worker is remembered


async def test_sign_off_requeues_and_remembers_the_state(farm: Farm) -> None:
    worker = await farm.awake_worker()
    await farm.submit_echo(repeats=0)
    task = (await worker.fetch()).body
    await worker.sign_off()

    assert (await farm.task(task["uuid"]))["status"] == "queued"
    summary = await farm.worker(worker.uuid)
    assert summary["status"] == "offline"
    assert summary["status_change"] == {"status": "awake", "is_lazy": False}
    assert await worker.sign_on() == "awake"
    await worker.ack("awake")
    assert "status_change" not in await farm.worker(worker.uuid)


async def test_offline_request_is_replaced_by_the_remembered_state_on_sign_off(farm: Farm) -> None:
    worker = await farm.awake_worker()
    await farm.client.post(
        f"{API}/worker-mgt/workers/{worker.uuid}/setstatus", {"status": "offline", "is_lazy": True}
    )
    assert (await worker.fetch()).body == {"status_requested": "offline"}
    await worker.sign_off()
    summary = await farm.worker(worker.uuid)
    assert summary["status"] == "offline"
    assert summary["status_change"] == {"status": "awake", "is_lazy": False}


async def test_update_from_a_worker_the_task_was_taken_from_is_409(farm: Farm) -> None:
    first = await farm.awake_worker()
    second = await farm.awake_worker()
    await farm.submit_echo(repeats=0)
    task = (await first.fetch()).body
    await first.sign_off()  # requeued
    again = await second.fetch()
    assert again.body["uuid"] == task["uuid"]
    reply = await first.update(task["uuid"], taskStatus="completed")
    assert reply.status == 409
    assert (await first.may_i_run(task["uuid"])).body["mayKeepRunning"] is False


async def test_crashed_worker_gets_its_active_task_again(farm: Farm) -> None:
    worker = await farm.awake_worker()
    await farm.submit_echo(repeats=0)
    task = (await worker.fetch()).body
    # No sign-off: the process died and comes back.
    assert await worker.sign_on() == "awake"
    await worker.ack("awake")
    again = await worker.fetch()
    assert again.status == 200 and again.body["uuid"] == task["uuid"]


async def test_task_fetch_when_not_awake_is_409(farm: Farm) -> None:
    worker = await farm.register()
    await worker.sign_on()
    reply = await worker.fetch()
    assert reply.status == 409
    assert "awake" in reply.body["message"]


async def test_auth_failures_are_403(farm: Farm) -> None:
    worker = await farm.awake_worker()
    path = f"{API}/worker/task"
    assert (await farm.client.post(path)).status == 403
    assert (await farm.client.post(path, auth=(worker.uuid, "wrong"))).status == 403
    assert (await farm.client.post(path, auth=(str(uuid.uuid4()), worker.secret))).status == 403
    assert (await farm.client.get(f"{API}/worker/state", auth=(worker.uuid, "x"))).status == 403
    await farm.client.delete(f"{API}/worker-mgt/workers/{worker.uuid}")
    assert (await farm.client.post(path, auth=worker.auth)).status == 403  # deleted workers are refused


async def test_register_and_sign_on_validation_names_the_field(farm: Farm) -> None:
    reply = await farm.client.post(
        f"{API}/worker/register-worker", {"name": "x", "platform": "linux", "secret": "s"}
    )
    assert reply.status == 400 and "supported_task_types" in reply.body["message"]
    reply = await farm.client.post(
        f"{API}/worker/register-worker",
        {"name": 3, "platform": "linux", "secret": "s", "supported_task_types": []},
    )
    assert reply.status == 400 and "name" in reply.body["message"]
    reply = await farm.client.request(
        "POST", f"{API}/worker/register-worker", data=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert reply.status == 400 and "JSON" in reply.body["message"]
    worker = await farm.register()
    reply = await farm.client.post(f"{API}/worker/sign-on", {"name": "x"}, auth=worker.auth)
    assert reply.status == 400 and "supported_task_types" in reply.body["message"]
    reply = await farm.client.post(f"{API}/worker/state-changed", {"status": "dancing"}, auth=worker.auth)
    assert reply.status == 400 and "status" in reply.body["message"]


async def test_task_update_error_paths(farm: Farm) -> None:
    worker = await farm.awake_worker()
    await farm.submit_echo(repeats=0)
    task = (await worker.fetch()).body
    assert (await worker.update("not-a-uuid", activity="x")).status == 400
    assert (await worker.update(str(uuid.uuid4()), activity="x")).status == 404
    reply = await worker.update(task["uuid"], taskStatus="soft-failed")
    assert reply.status == 400 and "taskStatus" in reply.body["message"]
    reply = await worker.update(task["uuid"], taskStatus="dancing")
    assert reply.status == 400 and "taskStatus" in reply.body["message"]
    reply = await worker.update(task["uuid"], steps_completed="many")
    assert reply.status == 400 and "steps_completed" in reply.body["message"]
    assert (await worker.update(task["uuid"], steps_completed=99)).status == 204
    assert (await farm.task(task["uuid"]))["steps_completed"] == 1  # clamped to steps_total


async def test_may_i_run_answers(farm: Farm) -> None:
    worker = await farm.awake_worker()
    job = await farm.submit_echo(repeats=0)
    task = (await worker.fetch()).body
    assert (await worker.may_i_run("bad")).status == 400
    assert (await worker.may_i_run(str(uuid.uuid4()))).body == {
        "mayKeepRunning": False,
        "reason": "Task not found",
        "statusChangeRequested": False,
    }
    other = await farm.awake_worker()
    assert (await other.may_i_run(task["uuid"])).body == {
        "mayKeepRunning": False,
        "reason": "task not assigned to this worker",
        "statusChangeRequested": False,
    }
    await farm.client.post(
        f"{API}/jobs/{job['id']}/setstatus", {"status": "cancel-requested", "reason": "test"}
    )
    answer = (await worker.may_i_run(task["uuid"])).body
    assert answer["mayKeepRunning"] is False and "canceled" in answer["reason"]


async def test_restart_needs_can_restart(farm: Farm) -> None:
    worker = await farm.register()
    await worker.sign_on(can_restart=False)
    reply = await farm.client.post(
        f"{API}/worker-mgt/workers/{worker.uuid}/setstatus", {"status": "restart", "is_lazy": True}
    )
    assert reply.status == 412
    await worker.sign_on(can_restart=True)
    reply = await farm.client.post(
        f"{API}/worker-mgt/workers/{worker.uuid}/setstatus", {"status": "restart", "is_lazy": True}
    )
    assert reply.status == 204


async def test_state_changed_to_different_status_keeps_the_request(farm: Farm) -> None:
    worker = await farm.awake_worker()
    await farm.client.post(
        f"{API}/worker-mgt/workers/{worker.uuid}/setstatus", {"status": "asleep", "is_lazy": False}
    )
    await worker.ack("awake")
    assert (await farm.worker(worker.uuid))["status_change"] == {"status": "asleep", "is_lazy": False}
    # Requesting the current status cancels the pending request.
    await farm.client.post(
        f"{API}/worker-mgt/workers/{worker.uuid}/setstatus", {"status": "awake", "is_lazy": False}
    )
    assert "status_change" not in await farm.worker(worker.uuid)


async def test_variables_expanded_for_the_worker_platform(farm: Farm) -> None:
    worker = await farm.awake_worker(("blender", "ffmpeg"))
    body = {
        "name": "render",
        "type": "simple-blender-render",
        "priority": 50,
        "submitter_platform": "linux",
        "settings": {
            "frames": "1-4",
            "chunk_size": 2,
            "render_output_root": "/render/out",
            "add_path_components": 0,
            "render_output_path": "/render/out/shot/######",
            "blendfile": "/render/shot.blend",
            "fps": 24.0,
            "format": "PNG",
            "image_file_extension": ".png",
            "has_previews": False,
            "scene": "Scene",
        },
    }
    reply = await farm.client.post(f"{API}/jobs", body)
    assert reply.status == 200, reply.body
    task = (await worker.fetch()).body
    params = task["commands"][0]["parameters"]
    assert task["commands"][0]["name"] == "blender-render"
    assert params["exe"] == "blender"
    assert params["exeArgs"] == "-b -y"
    assert "{" not in repr(list(params.values()))


async def test_register_refuses_secrets_bcrypt_would_mangle(farm: Farm) -> None:
    base = {"name": "x", "platform": "linux", "supported_task_types": ["misc"]}
    for secret in ("a\x00b", "x" * 73, "\udcff" * 5):
        reply = await farm.client.request(
            "POST",
            f"{API}/worker/register-worker",
            data=json.dumps({**base, "secret": secret}).encode(),
            headers={"Content-Type": "application/json"},
        )
        assert reply.status == 400, (secret[:5], reply.status)
        assert reply.body["message"].startswith("secret:")


async def test_lone_surrogates_in_names_are_refused_not_crashing(farm: Farm) -> None:
    body = (
        '{"name": "bad \\udc80 name", "platform": "linux", "secret": "s", "supported_task_types": ["misc"]}'
    )
    reply = await farm.client.request(
        "POST",
        f"{API}/worker/register-worker",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert reply.status == 400


async def test_resent_update_with_the_same_key_is_applied_once(farm: Farm) -> None:
    worker = await farm.awake_worker()
    await farm.submit_echo(repeats=0)
    task = (await worker.fetch()).body

    async def send(text: str, key: str) -> int:
        reply = await farm.client.post(
            f"{API}/worker/task/{task['uuid']}",
            {"log": text},
            auth=worker.auth,
            headers={"Idempotency-Key": key},
        )
        return reply.status

    assert await send("first line\n", "k1") == 204
    assert await send("first line\n", "k1") == 204  # the answer was lost; the worker sends it again
    assert await send("second line\n", "k2") == 204
    assert await send("no key line\n", "") == 204
    tail = (await farm.client.get(f"{API}/tasks/{task['uuid']}/logtail")).body
    assert tail.count("first line") == 1 and "second line" in tail and "no key line" in tail
    reply = await farm.client.post(
        f"{API}/worker/task/{task['uuid']}",
        {"log": "x"},
        auth=worker.auth,
        headers={"Idempotency-Key": "k" * 129},
    )
    assert reply.status == 400 and "Idempotency-Key" in reply.body["message"]


async def test_an_assignment_undone_leaves_no_line_in_the_task_log(
    farm: Farm, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With replicas on PostgreSQL, activating the task can wait too long for a row another replica
    # holds: the unit is rolled back and the worker told 503. The task log must not name that worker.
    worker = await farm.awake_worker()
    job = await farm.submit_echo(repeats=0)
    machine = farm.manager.machine
    change = machine.task_status_change

    def busy_once(*args: Any, **kwargs: Any) -> None:
        monkeypatch.setattr(machine, "task_status_change", change)
        raise StoreBusy("row locked by another Manager")

    monkeypatch.setattr(machine, "task_status_change", busy_once)
    assert (await worker.fetch()).status == 503
    task = (await worker.fetch()).body
    assert task["job"] == job["id"]
    logtail = await farm.client.get(f"{API}/tasks/{task['uuid']}/logtail")
    assert logtail.body.count("Task assigned to worker") == 1, logtail.body
