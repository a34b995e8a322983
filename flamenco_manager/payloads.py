"""Model records → Flamenco JSON shapes (shared by the API answers and the event payloads)."""

from __future__ import annotations

import datetime
from typing import Any

from flamenco_manager.model import Job, Tag, Task, Worker


def timestamp(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat().replace("+00:00", "Z")


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def status_change(worker: Worker) -> dict[str, Any] | None:
    if not worker.status_requested:
        return None
    return {"status": worker.status_requested, "is_lazy": worker.lazy_status_request}


def shown_status(worker: Worker) -> str:
    """A registered worker that never signed on has no status yet; to everyone else it is offline."""
    return worker.status or "offline"


def worker_summary(worker: Worker, last_seen: float | None) -> dict[str, Any]:
    return _drop_none(
        {
            "id": worker.uuid,
            "name": worker.name,
            "status": shown_status(worker),
            "status_change": status_change(worker),
            "last_seen": timestamp(last_seen),
            "version": worker.software,
            "can_restart": worker.can_restart,
        }
    )


def worker_event(
    worker: Worker, last_seen: float | None, *, previous_status: str | None = None
) -> dict[str, Any]:
    return _drop_none(
        {
            "id": worker.uuid,
            "name": worker.name,
            "updated": timestamp(worker.updated_at),
            "last_seen": timestamp(last_seen),
            "status": shown_status(worker),
            "previous_status": previous_status or None,
            "status_change": status_change(worker),
            "version": worker.software,
            "deleted_at": timestamp(worker.deleted_at),
            "can_restart": worker.can_restart,
        }
    )


def tag(t: Tag) -> dict[str, Any]:
    return {"id": t.uuid, "name": t.name, "description": t.description}


def task_worker(worker: Worker | None) -> dict[str, Any] | None:
    if worker is None:
        return None
    return {"id": worker.uuid, "name": worker.name, "address": worker.address}


def task_summary(task: Task, worker: Worker | None) -> dict[str, Any]:
    return _drop_none(
        {
            "id": task.uuid,
            "name": task.name,
            "status": task.status,
            "index_in_job": task.index_in_job,
            "priority": task.priority,
            "task_type": task.type,
            "updated": timestamp(task.updated_at),
            "worker": task_worker(worker),
            "steps_completed": task.steps_completed,
            "steps_total": task.steps_total,
        }
    )


def commands(cmds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "name": c["name"],
            "parameters": c.get("parameters", {}),
            "total_step_count": int(c.get("total_step_count", 0)),
        }
        for c in cmds
    ]


def task(t: Task, job: Job, worker: Worker | None, failed_by: list[Worker]) -> dict[str, Any]:
    return _drop_none(
        {
            "id": t.uuid,
            "created": timestamp(t.created_at),
            "updated": timestamp(t.updated_at),
            "job_id": job.uuid,
            "name": t.name,
            "status": t.status,
            "priority": t.priority,
            "task_type": t.type,
            "activity": t.activity,
            "commands": commands(t.commands),
            "worker": task_worker(worker),
            "last_touched": timestamp(t.last_touched_at),
            "failed_by_workers": [task_worker(w) for w in failed_by],
            "index_in_job": t.index_in_job,
            "steps_completed": t.steps_completed,
            "steps_total": t.steps_total,
        }
    )


def task_event(t: Task, job_uuid: str, worker: Worker | None, previous_status: str | None) -> dict[str, Any]:
    return _drop_none(
        {
            "id": t.uuid,
            "job_id": job_uuid,
            "worker": {"name": worker.name, "uuid": worker.uuid} if worker is not None else None,
            "name": t.name,
            "updated": timestamp(t.updated_at),
            "status": t.status,
            "previous_status": previous_status,
            "activity": t.activity,
            "steps_completed": t.steps_completed,
            "steps_total": t.steps_total,
        }
    )


def job(j: Job, tag_uuid: str | None) -> dict[str, Any]:
    return _drop_none(
        {
            "id": j.uuid,
            "name": j.name,
            "type": j.job_type,
            "type_etag": j.type_etag or None,
            "priority": j.priority,
            "settings": j.settings,
            "metadata": j.metadata,
            "submitter_platform": j.submitter_platform,
            "storage": {"shaman_checkout_id": j.shaman_checkout_id} if j.shaman_checkout_id else None,
            "worker_tag": tag_uuid,
            "created": timestamp(j.created_at),
            "updated": timestamp(j.updated_at),
            "status": j.status,
            "activity": j.activity,
            "steps_completed": j.steps_completed,
            "steps_total": j.steps_total,
            "delete_requested_at": timestamp(j.delete_requested_at),
        }
    )


def job_event(
    j: Job, *, previous_status: str | None = None, refresh_tasks: bool = False, was_deleted: bool = False
) -> dict[str, Any]:
    return _drop_none(
        {
            "id": j.uuid,
            "name": j.name,
            "updated": timestamp(j.updated_at),
            "status": j.status,
            "previous_status": previous_status,
            "type": j.job_type,
            "priority": j.priority,
            "refresh_tasks": refresh_tasks,
            "steps_completed": j.steps_completed,
            "steps_total": j.steps_total,
            "delete_requested_at": timestamp(j.delete_requested_at),
            "was_deleted": True if was_deleted else None,
        }
    )
