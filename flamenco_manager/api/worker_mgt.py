"""Worker management for the web UI: `/api/v3/worker-mgt/...` (reference §3.5)."""

from __future__ import annotations

import sqlite3
import uuid as uuidlib

from aiohttp import web

from flamenco_manager import payloads
from flamenco_manager.api.errors import HTTPError
from flamenco_manager.api.validation import enum_field, field, json_body, path_uuid
from flamenco_manager.api.worker_api import manager_of
from flamenco_manager.model import WORKER_STATUSES, Tag
from flamenco_manager.services import Manager, sleep_schedule
from flamenco_manager.services.errors import Invalid

routes = web.RouteTableDef()


def _worker(m: Manager, request: web.Request):
    return m.workers.get(path_uuid(request, "worker_id"))


@routes.get("/api/v3/worker-mgt/workers")
async def list_workers(request: web.Request) -> web.Response:
    m = manager_of(request)
    workers = [payloads.worker_summary(w, m.workers.last_seen(w)) for w in m.store.list_workers()]
    return web.json_response({"workers": workers})


@routes.get("/api/v3/worker-mgt/workers/{worker_id}")
async def get_worker(request: web.Request) -> web.Response:
    m = manager_of(request)
    worker = _worker(m, request)
    body = payloads.worker_summary(worker, m.workers.last_seen(worker))
    body.update(
        ip_address=worker.address,
        platform=worker.platform,
        supported_task_types=worker.supported_task_types,
        tags=[payloads.tag(t) for t in m.store.worker_tags(worker.id)],
    )
    task = m.store.last_task_of_worker(worker.id)
    if task is not None:
        job = m.store.get_job_by_id(task.job_id)
        body["task"] = {**payloads.task_summary(task, worker), "job_id": job.uuid if job else ""}
    return web.json_response(body)


@routes.delete("/api/v3/worker-mgt/workers/{worker_id}")
async def delete_worker(request: web.Request) -> web.Response:
    m = manager_of(request)
    m.workers.delete(_worker(m, request))
    return web.Response(status=204)


@routes.post("/api/v3/worker-mgt/workers/{worker_id}/setstatus")
async def set_worker_status(request: web.Request) -> web.Response:
    m = manager_of(request)
    worker = _worker(m, request)
    body = await json_body(request)
    status = enum_field(body, "status", WORKER_STATUSES)
    is_lazy = field(body, "is_lazy", bool)
    m.workers.request_status(worker, status, is_lazy=is_lazy)
    return web.Response(status=204)


@routes.post("/api/v3/worker-mgt/workers/{worker_id}/settags")
async def set_worker_tags(request: web.Request) -> web.Response:
    m = manager_of(request)
    worker = _worker(m, request)
    body = await json_body(request)
    tag_ids = field(body, "tag_ids", list)
    if not all(isinstance(t, str) for t in tag_ids):
        raise Invalid("tag_ids", "must be a list of tag UUIDs")
    m.workers.set_tags(worker, tag_ids)
    return web.Response(status=204)


@routes.get("/api/v3/worker-mgt/workers/{worker_id}/sleep-schedule")
async def get_sleep_schedule(request: web.Request) -> web.Response:
    m = manager_of(request)
    worker = _worker(m, request)
    schedule = m.store.get_sleep_schedule(worker.id)
    if schedule is None:
        return web.Response(status=204)
    return web.json_response(sleep_schedule.as_json(schedule))


@routes.post("/api/v3/worker-mgt/workers/{worker_id}/sleep-schedule")
async def set_sleep_schedule(request: web.Request) -> web.Response:
    m = manager_of(request)
    worker = _worker(m, request)
    schedule = sleep_schedule.normalise(worker.id, await json_body(request))
    m.sleep_scheduler.apply(schedule)
    return web.Response(status=204)


# Tags.


def _tag_body(body: dict) -> tuple[str, str]:
    # Stored as sent, an empty name too: Flamenco does not check tag names either.
    name = field(body, "name", str)
    return name, field(body, "description", str, required=False, default="")


def _tag(m: Manager, request: web.Request) -> Tag:
    tag = m.store.get_tag(path_uuid(request, "tag_id"))
    if tag is None:
        raise HTTPError(404, "worker tag not found")
    return tag


@routes.get("/api/v3/worker-mgt/tags")
async def list_tags(request: web.Request) -> web.Response:
    m = manager_of(request)
    return web.json_response({"tags": [payloads.tag(t) for t in m.store.list_tags()]})


@routes.post("/api/v3/worker-mgt/tags")
async def create_tag(request: web.Request) -> web.Response:
    m = manager_of(request)
    name, description = _tag_body(await json_body(request))
    try:
        with m.store.transaction():
            tag = m.store.create_tag(uuid=str(uuidlib.uuid4()), name=name, description=description)
    except sqlite3.IntegrityError as exc:
        raise HTTPError(409, f"name: a worker tag named {name!r} already exists") from exc
    m.hub.publish("/workertags", {"tag": payloads.tag(tag)})
    return web.json_response(payloads.tag(tag))


@routes.get("/api/v3/worker-mgt/tag/{tag_id}")
async def get_tag(request: web.Request) -> web.Response:
    return web.json_response(payloads.tag(_tag(manager_of(request), request)))


@routes.put("/api/v3/worker-mgt/tag/{tag_id}")
async def update_tag(request: web.Request) -> web.Response:
    m = manager_of(request)
    tag = _tag(m, request)
    name, description = _tag_body(await json_body(request))
    try:
        with m.store.transaction():
            m.store.update_tag(tag.id, name=name, description=description)
    except sqlite3.IntegrityError as exc:
        raise HTTPError(409, f"name: a worker tag named {name!r} already exists") from exc
    tag.name, tag.description = name, description
    m.hub.publish("/workertags", {"tag": payloads.tag(tag)})
    return web.Response(status=204)


@routes.delete("/api/v3/worker-mgt/tag/{tag_id}")
async def delete_tag(request: web.Request) -> web.Response:
    m = manager_of(request)
    tag = _tag(m, request)
    with m.store.transaction():
        m.store.delete_tag(tag.id)
    m.hub.publish("/workertags", {"tag": payloads.tag(tag), "was_deleted": True})
    m.hub.work_available()
    return web.Response(status=204)
