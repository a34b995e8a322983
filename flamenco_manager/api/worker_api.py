"""The worker protocol: `/api/v3/worker/...` as Flamenco v3 workers speak it, with long-poll."""

from __future__ import annotations

import base64
import binascii

from aiohttp import web

from flamenco_manager import journal_fields, payloads
from flamenco_manager.api.durable import durable
from flamenco_manager.api.errors import HTTPError, error_response
from flamenco_manager.api.keys import CONFIG, HUB, SCHEDULER, TASK_UPDATES, TASKS, THUMBNAILS, WORKERS, need
from flamenco_manager.api.longpoll import Hold
from flamenco_manager.api.validation import enum_field, field, json_body, path_uuid, string_list
from flamenco_manager.config import ManagerConfig
from flamenco_manager.model import (
    TASK_STATUSES,
    WORKER_STATUSES,
    Job,
    Task,
    TaskStatus,
    Worker,
    WorkerStatus,
)
from flamenco_manager.services.task_updates import TaskUpdate
from flamenco_manager.services.thumbnails import ACCEPTED_TYPES, MAX_UPLOAD_BYTES, QueueFull

routes = web.RouteTableDef()

# bcrypt reads no further than 72 bytes and stops at NUL; a longer secret would silently be cut short.
SECRET_MAX_BYTES = 72
# Our workers mark each task update with an Idempotency-Key, so a resent one is applied once; any
# client may, none must. Longer keys than this are not keys.
UPDATE_KEY_MAX = 128


async def authenticated(request: web.Request) -> Worker:
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        raise HTTPError(403, "security requirements failed: HTTP Basic authentication required")
    try:
        username, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise HTTPError(403, "security requirements failed: malformed Authorization header") from exc
    worker = await need(request, WORKERS).authenticate(username, password)
    if worker is None:
        raise HTTPError(403, "security requirements failed: unknown worker or wrong secret")
    journal_fields.add(worker=worker.uuid)  # the rest of this request's records are about this worker
    return worker


def _refresh(request: web.Request, worker: Worker) -> Worker:
    fresh = need(request, WORKERS).current(worker)
    if fresh is None:
        raise HTTPError(403, "security requirements failed: worker was deleted")
    return fresh


@routes.post("/api/v3/worker/register-worker")
@durable
async def register_worker(request: web.Request) -> web.Response:
    body = await json_body(request)
    name = field(body, "name", str)
    platform = field(body, "platform", str)
    secret = field(body, "secret", str)
    types = string_list(body, "supported_task_types")
    if "\x00" in secret or len(secret.encode("utf-8", "surrogatepass")) > SECRET_MAX_BYTES:
        raise HTTPError(400, f"secret: must be at most {SECRET_MAX_BYTES} bytes without NUL characters")
    worker = await need(request, WORKERS).register(
        name=name, platform=platform, secret=secret, supported_task_types=types, address=request.remote or ""
    )
    return web.json_response(
        {
            "uuid": worker.uuid,
            "name": worker.name,
            "address": worker.address,
            "status": worker.status,
            "platform": worker.platform,
            "software": worker.software,
            "supported_task_types": worker.supported_task_types,
        }
    )


@routes.post("/api/v3/worker/sign-on")
@durable
async def sign_on(request: web.Request) -> web.Response:
    worker = await authenticated(request)
    body = await json_body(request)
    name = field(body, "name", str)
    types = string_list(body, "supported_task_types")
    software = field(body, "software_version", str)
    can_restart = field(body, "can_restart", bool, required=False, default=False)
    workers = need(request, WORKERS)
    workers.seen(worker)
    requested = workers.sign_on(
        worker,
        name=name,
        software=software,
        supported_task_types=types,
        can_restart=can_restart,
        address=request.remote or "",
    )
    return web.json_response({"status_requested": requested})


@routes.post("/api/v3/worker/sign-off")
@durable
async def sign_off(request: web.Request) -> web.Response:
    worker = await authenticated(request)
    workers = need(request, WORKERS)
    workers.seen(worker)
    workers.sign_off(worker)
    return web.Response(status=204)


@routes.get("/api/v3/worker/state")
async def worker_state(request: web.Request) -> web.StreamResponse:
    worker = await authenticated(request)
    hub = need(request, HUB)
    hold = Hold(request, need(request, CONFIG).long_poll_max)
    need(request, WORKERS).seen(worker)
    while not worker.status_requested and hold.remaining() > 0 and not hub.closing:
        await hold.wait(hub.waiter(worker.id, work=False))
        worker = _refresh(request, worker)
    if worker.status_requested:
        return hold.decorate(web.json_response({"status_requested": worker.status_requested}))
    return hold.decorate(web.Response(status=204))


@routes.post("/api/v3/worker/state-changed")
@durable
async def state_changed(request: web.Request) -> web.Response:
    worker = await authenticated(request)
    body = await json_body(request)
    status = enum_field(body, "status", WORKER_STATUSES)
    workers = need(request, WORKERS)
    workers.seen(worker)
    workers.state_changed(worker, status)
    return web.Response(status=204)


def assigned_task(config: ManagerConfig, worker: Worker, task: Task, job: Job) -> dict:
    return {
        "uuid": task.uuid,
        "job": job.uuid,
        "name": task.name,
        "status": task.status,
        "priority": task.priority,
        "job_priority": job.priority,
        "job_type": job.job_type,
        "task_type": task.type,
        "commands": payloads.commands(config.variables.expand_for_worker(task.commands, worker.platform)),
        "steps_completed": task.steps_completed,
        "steps_total": task.steps_total,
    }


@routes.post("/api/v3/worker/task")
@durable
async def schedule_task(request: web.Request) -> web.StreamResponse:
    worker = await authenticated(request)
    config, hub, scheduler = need(request, CONFIG), need(request, HUB), need(request, SCHEDULER)
    hold = Hold(request, config.long_poll_max)
    need(request, WORKERS).seen(worker)
    while True:
        if worker.status_requested:
            return hold.decorate(web.json_response({"status_requested": worker.status_requested}, status=423))
        if worker.status != WorkerStatus.AWAKE:
            message = f'worker is in state "{worker.status}", requires state "awake" to execute tasks'
            return hold.decorate(error_response(409, message))
        assigned = scheduler.assign(worker)
        if assigned is not None:
            return hold.decorate(web.json_response(assigned_task(config, worker, *assigned)))
        if hold.remaining() <= 0 or hub.closing:
            return hold.decorate(web.Response(status=204))
        await hold.wait(hub.waiter(worker.id, work=True))
        worker = _refresh(request, worker)


@routes.post("/api/v3/worker/task/{task_id}")
@durable
async def task_update(request: web.Request) -> web.Response:
    worker = await authenticated(request)
    task_uuid = path_uuid(request, "task_id")
    body = await json_body(request)
    update = TaskUpdate(
        status=enum_field(body, "taskStatus", TASK_STATUSES, required=False),
        activity=field(body, "activity", str, required=False),
        log=field(body, "log", str, required=False),
        steps_completed=field(body, "steps_completed", int, required=False),
    )
    key = request.headers.get("Idempotency-Key", "")
    if len(key) > UPDATE_KEY_MAX:
        raise HTTPError(400, f"Idempotency-Key: at most {UPDATE_KEY_MAX} characters")
    need(request, WORKERS).seen(worker)
    task, job = need(request, TASKS).get(task_uuid, missing=f"task {task_uuid} not found")
    journal_fields.add(job=job.uuid)
    need(request, TASK_UPDATES).apply(worker, task, update, key=key)
    return web.Response(status=204)


def _may_keep_running(worker: Worker, task: Task | None) -> dict:
    """The MayKeepRunning answer; like Flamenco it always carries all three fields."""
    allowed, reason, change = False, "", False
    if task is None:
        reason = "Task not found"
    elif worker.status_requested and not worker.lazy_status_request:
        reason, change = "worker status change requested", True
    elif task.worker_id != worker.id:
        reason = "task not assigned to this worker"
    elif task.status != TaskStatus.ACTIVE:
        reason = f'task is in non-runnable status "{task.status}"'
    else:
        allowed = True
    return {"mayKeepRunning": allowed, "reason": reason, "statusChangeRequested": change}


@routes.get("/api/v3/worker/task/{task_id}/may-i-run")
@durable
async def may_i_run(request: web.Request) -> web.StreamResponse:
    worker = await authenticated(request)
    task_uuid = path_uuid(request, "task_id")
    hub, tasks = need(request, HUB), need(request, TASKS)
    hold = Hold(request, need(request, CONFIG).long_poll_max)
    need(request, WORKERS).seen(worker)
    task = tasks.find(task_uuid)
    answer = _may_keep_running(worker, task)
    while answer["mayKeepRunning"] and hold.remaining() > 0 and not hub.closing:
        await hold.wait(hub.waiter(worker.id, work=False))
        worker = _refresh(request, worker)
        task = tasks.find(task_uuid)
        answer = _may_keep_running(worker, task)
    if answer["mayKeepRunning"] and task is not None:
        tasks.touch(task)
    return hold.decorate(web.json_response(answer))


@routes.post("/api/v3/worker/task/{task_id}/output-produced")
async def output_produced(request: web.Request) -> web.Response:
    worker = await authenticated(request)
    task_uuid = path_uuid(request, "task_id")
    need(request, WORKERS).seen(worker)
    length = request.content_length
    if length is None or length <= 0:
        raise HTTPError(411, "Content-Length is required and must be positive")
    if length > MAX_UPLOAD_BYTES:
        raise HTTPError(413, f"image is larger than {MAX_UPLOAD_BYTES} bytes")
    if request.content_type not in ACCEPTED_TYPES:
        raise HTTPError(415, f"Content-Type must be one of {', '.join(ACCEPTED_TYPES)}")
    _, job = need(request, TASKS).get(task_uuid, missing=f"task {task_uuid} not found")
    journal_fields.add(job=job.uuid)
    thumbnails = need(request, THUMBNAILS)
    if thumbnails.full(job):
        raise HTTPError(429, "too many images waiting to be processed; try again later")
    data = await request.read()
    try:
        thumbnails.submit(job, data)
    except QueueFull as exc:
        raise HTTPError(429, str(exc)) from exc
    return web.Response(status=202)
