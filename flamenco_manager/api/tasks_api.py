"""Task details, status and logs: `/api/v3/tasks/...`, as Flamenco v3's web interface uses them."""

from __future__ import annotations

import asyncio

from aiohttp import web

from flamenco_manager import payloads
from flamenco_manager.api.durable import durable
from flamenco_manager.api.keys import TASK_LOGS, TASKS, need
from flamenco_manager.api.validation import enum_field, field, json_body, path_uuid
from flamenco_manager.model import TASK_STATUSES

routes = web.RouteTableDef()


@routes.get("/api/v3/tasks/{task_id}")
async def get_task(request: web.Request) -> web.Response:
    found = need(request, TASKS).details(path_uuid(request, "task_id"))
    return web.json_response(payloads.task(found.task, found.job, found.worker, found.failed_by))


@routes.post("/api/v3/tasks/{task_id}/setstatus")
@durable
async def set_task_status(request: web.Request) -> web.Response:
    tasks = need(request, TASKS)
    task, job = tasks.get(path_uuid(request, "task_id"))
    body = await json_body(request)
    status = enum_field(body, "status", TASK_STATUSES)
    reason = field(body, "reason", str, required=False, default="")
    tasks.set_status(task, job, status, reason)
    return web.Response(status=204)


@routes.get("/api/v3/tasks/{task_id}/log")
async def task_log_info(request: web.Request) -> web.Response:
    task, job = need(request, TASKS).get(path_uuid(request, "task_id"))
    logs = need(request, TASK_LOGS)
    size = await asyncio.to_thread(logs.size, job.uuid, task.uuid)
    if size == 0:
        return web.Response(status=204)
    return web.json_response(
        {
            "task_id": task.uuid,
            "job_id": job.uuid,
            "url": logs.relative_url(job.uuid, task.uuid),
            "size": size,
        }
    )


@routes.get("/api/v3/tasks/{task_id}/logtail")
async def task_log_tail(request: web.Request) -> web.Response:
    task, job = need(request, TASKS).get(path_uuid(request, "task_id"))
    tail = await asyncio.to_thread(need(request, TASK_LOGS).tail, job.uuid, task.uuid)
    if not tail:
        return web.Response(status=204)
    return web.Response(body=tail, content_type="text/plain", charset="utf-8")
