"""Each request's records carry the ids its path names (`{job_id}`, `{task_id}`, `{worker_id}`) as
journal fields; handlers add what they learn later (the authenticated worker, a task's job)."""

from __future__ import annotations

import uuid

from aiohttp import web

from flamenco_manager import journal_fields
from flamenco_manager.api.errors import Handler

#: Path parameters that name a job, task or worker, and the keyword `journal_fields` takes for each.
_PATH_IDS = {"job_id": "job", "task_id": "task", "worker_id": "worker"}


def _ids_in_path(request: web.Request) -> dict[str, str]:
    ids: dict[str, str] = {}
    for parameter, kind in _PATH_IDS.items():
        raw = request.match_info.get(parameter)
        if raw is None:
            continue
        try:
            ids[kind] = str(uuid.UUID(raw))
        except ValueError:  # not an id: the handler refuses it, the record carries no field
            continue
    return ids


@web.middleware
async def journal_scope_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    with journal_fields.scope(**_ids_in_path(request)):
        return await handler(request)
