"""Job types, submission (as the Blender add-on sends it) and the web UI's job and task endpoints."""

from __future__ import annotations

import io
import uuid

import pytest

from tests.manager.conftest import API, Farm, eventually

ECHO = {
    "name": "echo",
    "type": "echo-sleep-test",
    "priority": 50,
    "submitter_platform": "linux",
    "settings": {"message": "hi"},
}


async def test_job_types_and_etags(farm: Farm) -> None:
    types = (await farm.client.get(f"{API}/jobs/types")).body["job_types"]
    names = [t["name"] for t in types]
    assert names == sorted(names) and {"echo-sleep-test", "simple-blender-render"} <= set(names)
    one = await farm.client.get(f"{API}/jobs/type/echo-sleep-test")
    assert one.status == 200 and one.body["etag"] == next(
        t["etag"] for t in types if t["name"] == "echo-sleep-test"
    )
    assert (await farm.client.get(f"{API}/jobs/type/no-such-type")).status == 404


async def test_submission_checks(farm: Farm) -> None:
    etag = (await farm.client.get(f"{API}/jobs/type/echo-sleep-test")).body["etag"]
    assert (await farm.client.post(f"{API}/jobs/check", {**ECHO, "type_etag": etag})).status == 204
    reply = await farm.client.post(f"{API}/jobs/check", {**ECHO, "type_etag": "0" * 40})
    assert reply.status == 412
    assert (await farm.client.post(f"{API}/jobs", {**ECHO, "type_etag": "0" * 40})).status == 412
    cases = [
        ({**ECHO, "settings": {}}, "message"),
        ({**ECHO, "type": "nope"}, "type"),
        ({**ECHO, "priority": 101}, "priority"),
        ({**ECHO, "priority": "high"}, "priority"),
        ({k: v for k, v in ECHO.items() if k != "submitter_platform"}, "submitter_platform"),
        ({**ECHO, "initial_status": "completed"}, "initial_status"),
        ({**ECHO, "worker_tag": str(uuid.uuid4())}, "worker_tag"),
        ({**ECHO, "metadata": {"a": 1}}, "metadata"),
    ]
    for body, field in cases:
        reply = await farm.client.post(f"{API}/jobs", body)
        assert reply.status == 400, (field, reply.body)
        assert field in reply.body["message"], (field, reply.body)
    assert (await farm.client.get(f"{API}/jobs")).body["jobs"] == []  # nothing half-stored


async def test_submit_paused_with_tag_and_list(farm: Farm) -> None:
    tag = (await farm.client.post(f"{API}/worker-mgt/tags", {"name": "farm-a"})).body
    reply = await farm.client.post(
        f"{API}/jobs", {**ECHO, "initial_status": "paused", "worker_tag": tag["id"]}
    )
    assert reply.status == 200
    job = reply.body
    assert job["status"] == "paused" and job["worker_tag"] == tag["id"]
    assert job["steps_total"] == 2 and job["settings"]["sleep_repeats"] == 1
    listed = (await farm.client.get(f"{API}/jobs")).body["jobs"]
    assert [j["id"] for j in listed] == [job["id"]]
    tasks = await farm.tasks(job["id"])
    assert [t["index_in_job"] for t in tasks] == [1, 2]
    assert (await farm.client.get(f"{API}/jobs/{uuid.uuid4()}")).status == 404
    assert (await farm.client.get(f"{API}/jobs/not-a-uuid")).status == 400


async def test_priority_tag_delete(farm: Farm) -> None:
    job = await farm.submit_echo()
    assert (await farm.client.post(f"{API}/jobs/{job['id']}/setpriority", {"priority": 80})).status == 204
    assert (await farm.job(job["id"]))["priority"] == 80
    assert (await farm.client.post(f"{API}/jobs/{job['id']}/setpriority", {"priority": -1})).status == 400
    assert (await farm.client.post(f"{API}/jobs/{job['id']}/settag", {"name": "nope"})).status == 406
    await farm.client.post(f"{API}/worker-mgt/tags", {"name": "t1"})
    assert (await farm.client.post(f"{API}/jobs/{job['id']}/settag", {"name": "t1"})).status == 204
    assert "worker_tag" in await farm.job(job["id"])
    assert (await farm.client.post(f"{API}/jobs/{job['id']}/settag", {})).status == 204
    assert "worker_tag" not in await farm.job(job["id"])

    assert (await farm.client.delete(f"{API}/jobs/{job['id']}")).status == 204

    async def gone() -> bool:
        return (await farm.client.get(f"{API}/jobs/{job['id']}")).status == 404

    await eventually(gone)  # deleted in the background, promptly (tests/manager/test_job_deletion.py)


async def test_task_detail_and_logs(farm: Farm) -> None:
    worker = await farm.awake_worker(("misc",))
    job = await farm.submit_echo(repeats=0)
    task_id = (await farm.tasks(job["id"]))[0]["id"]
    assert (await farm.client.get(f"{API}/tasks/{task_id}/logtail")).status == 204
    assert (await farm.client.get(f"{API}/tasks/{task_id}/log")).status == 204
    await worker.fetch()
    await worker.update(task_id, log="x" * 3000)
    info = (await farm.client.get(f"{API}/tasks/{task_id}/log")).body
    assert info["task_id"] == task_id and info["job_id"] == job["id"] and info["size"] > 3000
    assert info["url"] == f"/job-files/job-{job['id'][:4]}/{job['id']}/task-{task_id}.txt"
    full = await farm.client.get(info["url"], validate=False)
    assert full.status == 200
    tail = await farm.client.get(f"{API}/tasks/{task_id}/logtail")
    assert len(tail.body.encode()) == 2048 and tail.body.endswith("x\n")
    detail = await farm.task(task_id)
    assert detail["worker"]["id"] == worker.uuid and detail["job_id"] == job["id"]
    assert detail["commands"][0]["name"] == "echo"
    assert (await farm.client.get(f"{API}/tasks/{uuid.uuid4()}")).status == 404


async def test_meta_endpoints(farm: Farm) -> None:
    version = (await farm.client.get(f"{API}/version")).body
    assert set(version) == {"version", "shortversion", "name", "git"}
    storage = (await farm.client.get(f"{API}/configuration/shared-storage/users/linux")).body
    assert (
        storage["location"] == farm.manager.config.shared_storage_path and storage["shamanEnabled"] is False
    )
    assert (await farm.client.get(f"{API}/configuration/shared-storage/robots/linux")).status == 400
    variables = (await farm.client.get(f"{API}/configuration/variables/workers/linux")).body
    assert variables["blender"] == {"value": "blender", "is_twoway": False}
    assert (await farm.client.get(f"{API}/status")).body["status"] in ("inoperative", "idle")
    spec = await farm.client.get(f"{API}/openapi3.json", validate=False)
    assert spec.status == 200 and spec.body["openapi"].startswith("3.")
    missing = await farm.client.get(f"{API}/no/such/thing", validate=False)
    assert missing.status == 404 and missing.body["code"] == 404
    wrong_method = await farm.client.request("PATCH", f"{API}/version", validate=False)
    assert wrong_method.status == 405 and "message" in wrong_method.body


async def test_output_produced(farm: Farm) -> None:
    from PIL import Image

    worker = await farm.awake_worker(("misc",))
    job = await farm.submit_echo(repeats=0)
    task = (await worker.fetch()).body
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (200, 40, 40)).save(buffer, "PNG")
    path = f"{API}/worker/task/{task['uuid']}/output-produced"
    png = {"Content-Type": "image/png"}
    reply = await farm.client.request("POST", path, data=buffer.getvalue(), headers=png, auth=worker.auth)
    assert reply.status == 202
    empty = await farm.client.request("POST", path, data=b"", headers=png, auth=worker.auth)
    assert empty.status == 411
    other = f"{API}/worker/task/{uuid.uuid4()}/output-produced"
    reply = await farm.client.request("POST", other, data=b"x", headers=png, auth=worker.auth)
    assert reply.status == 404

    async def rendered() -> bool:
        # The three sizes appear together (renamed into place at the end), so 200 means all three.
        return (await farm.client.get(f"{API}/jobs/{job['id']}/last-rendered")).status == 200

    await eventually(rendered)
    info = (await farm.client.get(f"{API}/jobs/{job['id']}/last-rendered")).body
    assert info["suffixes"] == ["last-rendered.jpg", "last-rendered-small.jpg", "last-rendered-tiny.jpg"]
    tiny = await farm.client.get(f"{info['base']}/last-rendered-tiny.jpg", validate=False)
    with Image.open(io.BytesIO(tiny.body)) as image:
        assert image.format == "JPEG" and image.size == (149, 112)
    assert (await farm.client.get(f"{API}/jobs/last-rendered")).body == info


async def test_output_queue_keeps_the_latest_image_per_job_and_answers_429_when_full(farm: Farm) -> None:
    from flamenco_manager.services.thumbnails import QUEUE_SIZE, QueueFull

    thumbs = farm.manager.thumbnails
    found = [farm.manager.store.get_job((await farm.submit_echo())["id"]) for _ in range(QUEUE_SIZE + 1)]
    jobs = [job for job in found if job is not None]
    assert len(jobs) == QUEUE_SIZE + 1
    # Nothing is processed until the loop runs again, so the queue fills within this turn.
    for job in jobs[:QUEUE_SIZE]:
        thumbs.submit(job, b"old")
    thumbs.submit(jobs[0], b"new")  # replaces, does not count twice
    assert thumbs._pending[jobs[0].id].data == b"new"
    with pytest.raises(QueueFull):
        thumbs.submit(jobs[-1], b"x")


async def test_output_produced_refuses_wrong_type_and_oversize(farm: Farm) -> None:
    from flamenco_manager.services.thumbnails import MAX_UPLOAD_BYTES

    worker = await farm.awake_worker(("misc",))
    await farm.submit_echo(repeats=0)
    task = (await worker.fetch()).body
    path = f"{API}/worker/task/{task['uuid']}/output-produced"
    reply = await farm.client.request(
        "POST", path, data=b"GIF89a", headers={"Content-Type": "image/gif"}, auth=worker.auth, validate=False
    )
    assert reply.status == 415
    reply = await farm.client.request(
        "POST",
        path,
        data=bytes(MAX_UPLOAD_BYTES + 1),
        headers={"Content-Type": "image/png"},
        auth=worker.auth,
    )
    assert reply.status == 413
