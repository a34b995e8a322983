"""Job types, submission and job management: `/api/v3/jobs/...`, as the Blender add-on and web UI use them."""

from __future__ import annotations

import datetime
import json

from aiohttp import web

from flamenco_manager import payloads
from flamenco_manager.api.durable import durable
from flamenco_manager.api.errors import HTTPError
from flamenco_manager.api.keys import JOB_DELETER, JOBS, STORAGE, STORE, need
from flamenco_manager.api.validation import Fields, field, json_body, path_uuid
from flamenco_manager.model import Job, JobStatus
from flamenco_manager.services.errors import Invalid
from flamenco_manager.services.jobs import DEFAULT_PRIORITY, JobSubmission
from flamenco_manager.services.thumbnails import thumbnail_info
from flamenco_manager.store import Store, StoreReads
from flamenco_manager.values import expected

routes = web.RouteTableDef()


def _job(request: web.Request) -> Job:
    return need(request, JOBS).get(path_uuid(request, "job_id"))


def job_json(store: StoreReads, job: Job) -> dict:
    tag = store.get_tag_by_id(job.worker_tag_id) if job.worker_tag_id is not None else None
    return payloads.job(job, tag.uuid if tag else None)


@routes.get("/api/v3/jobs/types")
async def job_types(request: web.Request) -> web.Response:
    return web.json_response({"job_types": need(request, JOBS).job_types.available()})


@routes.get("/api/v3/jobs/type/{type_name}")
async def job_type(request: web.Request) -> web.Response:
    info = need(request, JOBS).job_types.get(request.match_info["type_name"])
    if info is None:
        raise HTTPError(404, f"no job type {request.match_info['type_name']!r}")
    return web.json_response(info, headers={"ETag": f'"{info["etag"]}"'})


def _submission(body: dict) -> JobSubmission:
    """A SubmittedJob body as typed values; the service applies the rules.

    Every field of the wrong JSON type, or missing, is named in one answer; the rules are checked only
    once the body has the right shape.
    """
    fields = Fields(body)
    storage = fields.get("storage", dict, {})
    checkout = storage.get("shaman_checkout_id") or ""
    if not isinstance(checkout, str):
        fields.problem("storage.shaman_checkout_id", expected(str, checkout))
    submission = JobSubmission(
        name=fields.get("name", str, "", required=True),
        type=fields.get("type", str, "", required=True),
        submitter_platform=fields.get("submitter_platform", str, "", required=True),
        priority=fields.get("priority", int, DEFAULT_PRIORITY),
        settings=fields.get("settings", dict, {}),
        metadata=fields.string_map("metadata"),
        initial_status=fields.get("initial_status", str, "") or JobStatus.QUEUED,
        shaman_checkout_id=checkout if isinstance(checkout, str) else "",
        worker_tag=fields.get("worker_tag", str, ""),
        type_etag=fields.get("type_etag", str, ""),
    )
    fields.check()
    return submission


@routes.post("/api/v3/jobs")
@durable
async def submit_job(request: web.Request) -> web.Response:
    job = await need(request, JOBS).submit(_submission(await json_body(request)))
    assert job is not None
    return web.json_response(job_json(need(request, STORE), job))


@routes.post("/api/v3/jobs/check")
async def check_job(request: web.Request) -> web.Response:
    await need(request, JOBS).submit(_submission(await json_body(request)), store=False)
    return web.Response(status=204)


@routes.get("/api/v3/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    body = await need(request, STORE).offloop(
        lambda s: json.dumps({"jobs": [job_json(s, j) for j in s.list_jobs()]})
    )
    return web.Response(text=body, content_type="application/json")


@routes.get("/api/v3/jobs/last-rendered")
async def global_last_rendered(request: web.Request) -> web.Response:
    job = need(request, JOBS).last_rendered()
    info = thumbnail_info(need(request, STORAGE), job.uuid) if job else None
    return web.json_response(info) if info else web.Response(status=204)


def _rfc3339(name: str, raw: str) -> datetime.datetime:
    """An RFC 3339 date-time with its UTC offset ("2026-11-30T12:00:00.4Z", "...+01:00")."""
    try:
        parsed = datetime.datetime.fromisoformat(raw)
    except ValueError:
        raise Invalid(name, f"{raw!r} is not an RFC 3339 date-time") from None
    if parsed.tzinfo is None:
        raise Invalid(name, f"{raw!r} has no UTC offset (add Z or +HH:MM)")
    return parsed


# Before `/api/v3/jobs/{job_id}`, which would otherwise take `mass-delete` for a job id.
@routes.delete("/api/v3/jobs/mass-delete")
@durable
async def mass_delete_jobs(request: web.Request) -> web.Response:
    body = await json_body(request)
    raw = field(body, "last_updated_max", str, required=False, default="")
    if not raw:
        raise Invalid(
            "last_updated_max", "is required: jobs last updated at or before this RFC 3339 time are deleted"
        )
    if not need(request, JOB_DELETER).mass_delete(_rfc3339("last_updated_max", raw)):
        raise HTTPError(416, "no jobs modified before timestamp")
    return web.Response(status=204)


@routes.get("/api/v3/jobs/{job_id}")
async def get_job(request: web.Request) -> web.Response:
    return web.json_response(job_json(need(request, STORE), _job(request)))


@routes.delete("/api/v3/jobs/{job_id}")
@durable
async def delete_job(request: web.Request) -> web.Response:
    need(request, JOB_DELETER).request_delete(_job(request))
    return web.Response(status=204)


@routes.get("/api/v3/jobs/{job_id}/what-would-delete-do")
async def what_would_delete_do(request: web.Request) -> web.Response:
    _job(request)
    return web.json_response({"shaman_checkout": False})


@routes.get("/api/v3/jobs/{job_id}/tasks")
async def job_tasks(request: web.Request) -> web.Response:
    # Like Flamenco, an unknown job has no tasks rather than being an error.
    job = need(request, JOBS).find(path_uuid(request, "job_id"))
    if job is None:
        return web.json_response({"tasks": []})

    def summaries(s: Store) -> str:
        # Built and serialised on the reader thread: a large job's list is tens of milliseconds of work.
        workers = {w.id: w for w in s.list_workers()}
        tasks = [
            payloads.task_summary(t, workers.get(t.worker_id) if t.worker_id is not None else None)
            for t in s.tasks_of_job(job.id)
        ]
        return json.dumps({"tasks": tasks})

    return web.Response(text=await need(request, STORE).offloop(summaries), content_type="application/json")


@routes.post("/api/v3/jobs/{job_id}/setstatus")
@durable
async def set_job_status(request: web.Request) -> web.Response:
    job = _job(request)
    body = await json_body(request)
    status = field(body, "status", str)
    reason = field(body, "reason", str, required=False, default="")
    need(request, JOBS).set_status(job, status, reason)
    return web.Response(status=204)


@routes.post("/api/v3/jobs/{job_id}/setpriority")
@durable
async def set_job_priority(request: web.Request) -> web.Response:
    job = _job(request)
    body = await json_body(request)
    need(request, JOBS).set_priority(job, field(body, "priority", int))
    return web.Response(status=204)


@routes.post("/api/v3/jobs/{job_id}/settag")
@durable
async def set_job_tag(request: web.Request) -> web.Response:
    job = _job(request)
    body = await json_body(request)
    tag_uuid = field(body, "id", str, required=False, default="")
    tag_name = field(body, "name", str, required=False, default="")
    need(request, JOBS).set_tag(job, tag_uuid=tag_uuid, tag_name=tag_name)
    return web.Response(status=204)


@routes.get("/api/v3/jobs/{job_id}/last-rendered")
async def job_last_rendered(request: web.Request) -> web.Response:
    # An unknown job has no image: 204, as Flamenco answers.
    info = thumbnail_info(need(request, STORAGE), path_uuid(request, "job_id"))
    return web.json_response(info) if info else web.Response(status=204)


@routes.get("/api/v3/jobs/{job_id}/blocklist")
async def get_blocklist(request: web.Request) -> web.Response:
    # An unknown job has an empty blocklist, as Flamenco answers.
    jobs = need(request, JOBS)
    job = jobs.find(path_uuid(request, "job_id"))
    return web.json_response(jobs.blocklist(job) if job is not None else [])


@routes.delete("/api/v3/jobs/{job_id}/blocklist")
@durable
async def delete_blocklist(request: web.Request) -> web.Response:
    jobs = need(request, JOBS)
    job = jobs.find(path_uuid(request, "job_id"))
    entries = []
    for index, entry in enumerate(await json_body(request, list)):
        if not isinstance(entry, dict):
            raise Invalid(f"[{index}]", "must be an object with worker_id and task_type")
        worker_uuid, task_type = entry.get("worker_id"), entry.get("task_type")
        if not isinstance(worker_uuid, str) or not isinstance(task_type, str):
            raise Invalid(f"[{index}]", "worker_id and task_type must be strings")
        entries.append((worker_uuid, task_type))
    # Removing entries of an unknown job removes nothing and succeeds, as in Flamenco.
    if job is not None:
        jobs.remove_from_blocklist(job, entries)
    return web.Response(status=204)
