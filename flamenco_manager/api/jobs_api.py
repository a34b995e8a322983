"""Job types, submission and job management: `/api/v3/jobs/...` (reference §5.3, §5.4, §5.7)."""

from __future__ import annotations

import json

from aiohttp import web

from flamenco_manager import jobtypes, payloads
from flamenco_manager.api.errors import HTTPError
from flamenco_manager.api.validation import field, json_body, path_uuid
from flamenco_manager.api.worker_api import manager_of
from flamenco_manager.model import Job
from flamenco_manager.services import Manager
from flamenco_manager.services.thumbnails import thumbnail_info
from flamenco_manager.store import Store

routes = web.RouteTableDef()


def _job(m: Manager, request: web.Request) -> Job:
    return m.jobs.get(path_uuid(request, "job_id"))


def job_json(store: Store, job: Job) -> dict:
    tag = store.get_tag_by_id(job.worker_tag_id) if job.worker_tag_id is not None else None
    return payloads.job(job, tag.uuid if tag else None)


@routes.get("/api/v3/jobs/types")
async def job_types(request: web.Request) -> web.Response:
    return web.json_response({"job_types": jobtypes.available_job_types()})


@routes.get("/api/v3/jobs/type/{type_name}")
async def job_type(request: web.Request) -> web.Response:
    info = jobtypes.get_job_type(request.match_info["type_name"])
    if info is None:
        raise HTTPError(404, f"no job type {request.match_info['type_name']!r}")
    return web.json_response(info, headers={"ETag": f'"{info["etag"]}"'})


@routes.post("/api/v3/jobs")
async def submit_job(request: web.Request) -> web.Response:
    m = manager_of(request)
    job = await m.jobs.submit(await json_body(request))
    assert job is not None
    return web.json_response(job_json(m.store, job))


@routes.post("/api/v3/jobs/check")
async def check_job(request: web.Request) -> web.Response:
    await manager_of(request).jobs.submit(await json_body(request), store=False)
    return web.Response(status=204)


@routes.get("/api/v3/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    m = manager_of(request)
    body = await m.store.offloop(lambda s: json.dumps({"jobs": [job_json(s, j) for j in s.list_jobs()]}))
    return web.Response(text=body, content_type="application/json")


@routes.get("/api/v3/jobs/last-rendered")
async def global_last_rendered(request: web.Request) -> web.Response:
    m = manager_of(request)
    job = m.store.get_last_rendered()
    info = thumbnail_info(m.storage, job.uuid) if job else None
    return web.json_response(info) if info else web.Response(status=204)


@routes.get("/api/v3/jobs/{job_id}")
async def get_job(request: web.Request) -> web.Response:
    m = manager_of(request)
    return web.json_response(job_json(m.store, _job(m, request)))


@routes.delete("/api/v3/jobs/{job_id}")
async def delete_job(request: web.Request) -> web.Response:
    m = manager_of(request)
    m.jobs.request_delete(_job(m, request))
    return web.Response(status=204)


@routes.get("/api/v3/jobs/{job_id}/what-would-delete-do")
async def what_would_delete_do(request: web.Request) -> web.Response:
    m = manager_of(request)
    _job(m, request)
    return web.json_response({"shaman_checkout": False})


@routes.get("/api/v3/jobs/{job_id}/tasks")
async def job_tasks(request: web.Request) -> web.Response:
    m = manager_of(request)
    # Like Flamenco, an unknown job has no tasks rather than being an error.
    job = m.jobs.find(path_uuid(request, "job_id"))
    if job is None:
        return web.json_response({"tasks": []})

    def summaries(s: Store) -> str:
        # Built and serialised on the reader thread: a large job's list is tens of milliseconds of work.
        workers = {w.id: w for w in s.list_workers()}
        tasks = [payloads.task_summary(t, workers.get(t.worker_id)) for t in s.tasks_of_job(job.id)]
        return json.dumps({"tasks": tasks})

    return web.Response(text=await m.store.offloop(summaries), content_type="application/json")


@routes.post("/api/v3/jobs/{job_id}/setstatus")
async def set_job_status(request: web.Request) -> web.Response:
    m = manager_of(request)
    job = _job(m, request)
    body = await json_body(request)
    status = field(body, "status", str)
    reason = field(body, "reason", str, required=False, default="")
    m.jobs.set_status(job, status, reason)
    return web.Response(status=204)


@routes.post("/api/v3/jobs/{job_id}/setpriority")
async def set_job_priority(request: web.Request) -> web.Response:
    m = manager_of(request)
    job = _job(m, request)
    body = await json_body(request)
    m.jobs.set_priority(job, field(body, "priority", int))
    return web.Response(status=204)


@routes.post("/api/v3/jobs/{job_id}/settag")
async def set_job_tag(request: web.Request) -> web.Response:
    m = manager_of(request)
    job = _job(m, request)
    m.jobs.set_tag(job, await json_body(request))
    return web.Response(status=204)


@routes.get("/api/v3/jobs/{job_id}/last-rendered")
async def job_last_rendered(request: web.Request) -> web.Response:
    m = manager_of(request)
    # An unknown job has no image: 204, as Flamenco answers.
    info = thumbnail_info(m.storage, path_uuid(request, "job_id"))
    return web.json_response(info) if info else web.Response(status=204)


@routes.get("/api/v3/jobs/{job_id}/blocklist")
async def get_blocklist(request: web.Request) -> web.Response:
    m = manager_of(request)
    # An unknown job has an empty blocklist, as Flamenco answers.
    job = m.jobs.find(path_uuid(request, "job_id"))
    return web.json_response(m.jobs.blocklist(job) if job is not None else [])


@routes.delete("/api/v3/jobs/{job_id}/blocklist")
async def delete_blocklist(request: web.Request) -> web.Response:
    m = manager_of(request)
    job_uuid = path_uuid(request, "job_id")
    entries = await json_body(request, list)
    # Removing entries of an unknown job removes nothing and succeeds, as in Flamenco.
    m.jobs.remove_from_blocklist(m.jobs.find(job_uuid), entries)
    return web.Response(status=204)
