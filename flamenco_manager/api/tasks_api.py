"""Task details, status and logs: `/api/v3/tasks/...` (reference §5.6, §5.7)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from flamenco_manager import payloads
from flamenco_manager.api.errors import HTTPError
from flamenco_manager.api.validation import enum_field, field, json_body, path_uuid
from flamenco_manager.api.worker_api import manager_of
from flamenco_manager.model import TASK_STATUSES, Job, Task, TaskStatus
from flamenco_manager.services import Manager

routes = web.RouteTableDef()


def _task(m: Manager, request: web.Request) -> tuple[Task, Job]:
    task = m.store.get_task(path_uuid(request, "task_id"))
    if task is None:
        raise HTTPError(404, "task not found")
    job = m.store.get_job_by_id(task.job_id)
    assert job is not None
    return task, job


@routes.get("/api/v3/tasks/{task_id}")
async def get_task(request: web.Request) -> web.Response:
    m = manager_of(request)
    task, job = _task(m, request)
    worker = m.store.get_worker_by_id(task.worker_id) if task.worker_id else None
    return web.json_response(payloads.task(task, job, worker, m.store.task_failed_by(task.id)))


@routes.post("/api/v3/tasks/{task_id}/setstatus")
async def set_task_status(request: web.Request) -> web.Response:
    m = manager_of(request)
    task, job = _task(m, request)
    body = await json_body(request)
    status = enum_field(body, "status", TASK_STATUSES)
    reason = field(body, "reason", str, required=False, default="")
    with m.store.transaction():
        if status == TaskStatus.QUEUED:
            m.store.clear_task_failures(task.id)
        if reason:
            m.logs.manager_line(job.uuid, task.uuid, f"status change to {status} requested: {reason}")
        m.machine.task_status_change(task, status, activity=reason or None, job=job)
    return web.Response(status=204)


@routes.get("/api/v3/tasks/{task_id}/log")
async def task_log_info(request: web.Request) -> web.Response:
    m = manager_of(request)
    task, job = _task(m, request)
    size = await asyncio.to_thread(m.logs.size, job.uuid, task.uuid)
    if size == 0:
        return web.Response(status=204)
    return web.json_response(
        {
            "task_id": task.uuid,
            "job_id": job.uuid,
            "url": m.logs.relative_url(job.uuid, task.uuid),
            "size": size,
        }
    )


@routes.get("/api/v3/tasks/{task_id}/logtail")
async def task_log_tail(request: web.Request) -> web.Response:
    m = manager_of(request)
    task, job = _task(m, request)
    tail = await asyncio.to_thread(m.logs.tail, job.uuid, task.uuid)
    if not tail:
        return web.Response(status=204)
    return web.Response(body=tail, content_type="text/plain", charset="utf-8")
