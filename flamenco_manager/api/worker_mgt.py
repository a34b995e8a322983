"""Worker management for the web interface: `/api/v3/worker-mgt/...`, as in Flamenco v3."""

from __future__ import annotations

import json
import uuid

from aiohttp import web

from flamenco_manager import payloads
from flamenco_manager.api.durable import durable
from flamenco_manager.api.errors import status_of
from flamenco_manager.api.keys import SLEEP_SCHEDULER, STORE, TAGS, WORKERS, need
from flamenco_manager.api.validation import enum_field, field, json_body, path_uuid, string_list
from flamenco_manager.model import WORKER_STATUSES, Tag, Worker
from flamenco_manager.services import sleep_schedule
from flamenco_manager.services.errors import Invalid
from flamenco_manager.store import Store
from flamenco_manager.values import describe

routes = web.RouteTableDef()

#: Most workers one bulk status request may name: well above any farm's size, while keeping the one
#: unit of writes it makes (and the event-loop turn it takes) short.
BULK_STATUS_MAX_WORKERS = 1000


def _worker(request: web.Request) -> Worker:
    return need(request, WORKERS).get(path_uuid(request, "worker_id"))


@routes.get("/api/v3/worker-mgt/workers")
async def list_workers(request: web.Request) -> web.Response:
    last_seen = need(request, WORKERS).last_seen_snapshot()

    def summaries(s: Store) -> str:
        # Built and serialised on the reader thread: at 10,000 workers this is a quarter of a second of
        # work, which on the loop would hold up every worker's answer (the web interface re-reads the
        # list every 15 s while it is shown).
        return json.dumps({"workers": [payloads.worker_summary(w, last_seen(w)) for w in s.list_workers()]})

    return web.Response(text=await need(request, STORE).offloop(summaries), content_type="application/json")


@routes.get("/api/v3/worker-mgt/workers/{worker_id}")
async def get_worker(request: web.Request) -> web.Response:
    workers = need(request, WORKERS)
    worker = _worker(request)
    tags, task, job = workers.details(worker)
    body = payloads.worker_summary(worker, workers.last_seen(worker))
    body.update(
        ip_address=worker.address,
        platform=worker.platform,
        supported_task_types=worker.supported_task_types,
        tags=[payloads.tag(t) for t in tags],
    )
    if task is not None:
        body["task"] = {**payloads.task_summary(task, worker), "job_id": job.uuid if job else ""}
    return web.json_response(body)


@routes.delete("/api/v3/worker-mgt/workers/{worker_id}")
@durable
async def delete_worker(request: web.Request) -> web.Response:
    need(request, WORKERS).delete(_worker(request))
    return web.Response(status=204)


def _worker_uuids(body: dict, name: str) -> list[str]:
    """A non-empty list of distinct worker UUIDs, at most `BULK_STATUS_MAX_WORKERS`, each normalised."""
    value = field(body, name, list)
    if not value:
        raise Invalid(name, "must name at least one worker")
    if len(value) > BULK_STATUS_MAX_WORKERS:
        raise Invalid(name, f"names {len(value)} workers, at most {BULK_STATUS_MAX_WORKERS} are allowed")
    uuids: list[str] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(value):
        try:
            if not isinstance(item, str):
                raise ValueError
            normalised = str(uuid.UUID(item))
        except ValueError:
            raise Invalid(f"{name}[{index}]", f"{describe(item)} is not a worker UUID") from None
        if normalised in seen:
            raise Invalid(f"{name}[{index}]", f"{item!r} is already named at {name}[{seen[normalised]}]")
        seen[normalised] = index
        uuids.append(normalised)
    return uuids


@routes.post("/api/v3/worker-mgt/workers/setstatus")
@durable
async def set_status_of_workers(request: web.Request) -> web.Response:
    """Ours: `setstatus` for many workers in one request and one commit; refusals are named per worker."""
    body = await json_body(request)
    worker_uuids = _worker_uuids(body, "workers")
    status = enum_field(body, "status", WORKER_STATUSES)
    is_lazy = field(body, "is_lazy", bool)
    outcome = need(request, WORKERS).request_status_of_many(worker_uuids, status, is_lazy=is_lazy)
    return web.json_response(
        {
            "applied": outcome.applied,
            "refused": [
                {"id": worker_uuid, "code": status_of(error), "message": str(error)}
                for worker_uuid, error in outcome.refused
            ],
        }
    )


@routes.post("/api/v3/worker-mgt/workers/{worker_id}/setstatus")
@durable
async def set_worker_status(request: web.Request) -> web.Response:
    worker = _worker(request)
    body = await json_body(request)
    status = enum_field(body, "status", WORKER_STATUSES)
    is_lazy = field(body, "is_lazy", bool)
    need(request, WORKERS).request_status(worker, status, is_lazy=is_lazy)
    return web.Response(status=204)


@routes.post("/api/v3/worker-mgt/workers/{worker_id}/settags")
@durable
async def set_worker_tags(request: web.Request) -> web.Response:
    worker = _worker(request)
    body = await json_body(request)
    need(request, WORKERS).set_tags(worker, string_list(body, "tag_ids", what="a list of tag UUIDs"))
    return web.Response(status=204)


@routes.get("/api/v3/worker-mgt/workers/{worker_id}/sleep-schedule")
async def get_sleep_schedule(request: web.Request) -> web.Response:
    schedule = need(request, SLEEP_SCHEDULER).get(_worker(request).id)
    if schedule is None:
        return web.Response(status=204)
    return web.json_response(sleep_schedule.as_json(schedule))


@routes.post("/api/v3/worker-mgt/workers/{worker_id}/sleep-schedule")
@durable
async def set_sleep_schedule(request: web.Request) -> web.Response:
    worker = _worker(request)
    body = await json_body(request)
    schedule = sleep_schedule.normalise(
        worker.id,
        is_active=field(body, "is_active", bool),
        days_of_week=field(body, "days_of_week", str, required=False, default=""),
        start_time=field(body, "start_time", str, required=False, default=""),
        end_time=field(body, "end_time", str, required=False, default=""),
    )
    need(request, SLEEP_SCHEDULER).apply(schedule)
    return web.Response(status=204)


# Tags.


def _tag_fields(body: dict) -> tuple[str, str]:
    # Stored as sent, an empty name too: Flamenco does not check tag names either.
    return field(body, "name", str), field(body, "description", str, required=False, default="")


def _tag(request: web.Request) -> Tag:
    return need(request, TAGS).get(path_uuid(request, "tag_id"))


@routes.get("/api/v3/worker-mgt/tags")
async def list_tags(request: web.Request) -> web.Response:
    return web.json_response({"tags": [payloads.tag(t) for t in need(request, TAGS).all()]})


@routes.post("/api/v3/worker-mgt/tags")
@durable
async def create_tag(request: web.Request) -> web.Response:
    name, description = _tag_fields(await json_body(request))
    tag = need(request, TAGS).create(name=name, description=description)
    return web.json_response(payloads.tag(tag))


@routes.get("/api/v3/worker-mgt/tag/{tag_id}")
async def get_tag(request: web.Request) -> web.Response:
    return web.json_response(payloads.tag(_tag(request)))


@routes.put("/api/v3/worker-mgt/tag/{tag_id}")
@durable
async def update_tag(request: web.Request) -> web.Response:
    tag = _tag(request)
    name, description = _tag_fields(await json_body(request))
    need(request, TAGS).update(tag, name=name, description=description)
    return web.Response(status=204)


@routes.delete("/api/v3/worker-mgt/tag/{tag_id}")
@durable
async def delete_tag(request: web.Request) -> web.Response:
    need(request, TAGS).delete(_tag(request))
    return web.Response(status=204)
