"""Job submission and job management (reference §5.3, §5.7, §4.8 blocklist)."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import shutil
import time
import uuid as uuidlib
from typing import Any

from flamenco_manager import jobtypes
from flamenco_manager.model import JOB_STATUSES, Job, JobStatus, NewTask, Tag
from flamenco_manager.services.errors import Invalid, NotAcceptable, NotFound, PreconditionFailed
from flamenco_manager.services.events import Hub
from flamenco_manager.services.statemachine import StateMachine
from flamenco_manager.services.tasklogs import TaskLogs, job_dir
from flamenco_manager.store import Store
from flamenco_manager.variables import Variables

log = logging.getLogger(__name__)

DEFAULT_PRIORITY = 50
PRIORITY_RANGE = range(0, 101)
# Statuses a submission may start in: the add-on sends `queued`, or `paused` for "submit paused".
INITIAL_STATUSES = (JobStatus.QUEUED, JobStatus.PAUSED)
# The platform name a submitter uses to mean "whatever the Manager runs on".
SUBMITTER_IS_MANAGER = "manager"
# Tasks inserted per event-loop turn while a job is stored: ~5 ms of work, so other requests interleave
# (500 per turn let a 10,000-task submission delay other answers by up to ~115 ms; 200: ~30 ms).
TASK_INSERT_CHUNK = 200


def _new_tasks(compiled: list[jobtypes.CompiledTask]) -> list[NewTask]:
    return [
        NewTask(
            uuid=str(uuidlib.uuid4()),
            name=t.name,
            type=t.type.strip().lower(),
            priority=t.priority,
            commands=t.commands,
            steps_total=t.steps_total,
            depends_on=list(t.depends_on),
        )
        for t in compiled
    ]


def _require(body: dict, key: str, kind: type, *, required: bool = True) -> Any:
    value = body.get(key)
    if value is None:
        if required:
            raise Invalid(key, "is required")
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise Invalid(key, f"must be of type {kind.__name__}")
    return value


class Jobs:
    def __init__(
        self,
        store: Store,
        hub: Hub,
        machine: StateMachine,
        variables: Variables,
        manager_platform: str,
        storage: Any,
        logs: TaskLogs,
    ) -> None:
        self.store = store
        self.hub = hub
        self.machine = machine
        self.variables = variables
        self.manager_platform = manager_platform
        self.storage = storage
        self.logs = logs

    def get(self, job_uuid: str) -> Job:
        job = self.store.get_job(job_uuid)
        if job is None:
            raise NotFound(f"job {job_uuid} not found")
        return job

    def find(self, job_uuid: str) -> Job | None:
        """The job, or None: its task list, blocklist and images answer empty for an unknown job."""
        return self.store.get_job(job_uuid)

    def tag_uuid(self, job: Job) -> str | None:
        if job.worker_tag_id is None:
            return None
        tag = self.store.get_tag_by_id(job.worker_tag_id)
        return tag.uuid if tag else None

    # Submission.

    async def submit(self, body: dict[str, Any], *, store: bool = True) -> Job | None:
        """Validate and compile a SubmittedJob; store it unless only checking.

        Compiling runs on a thread and the tasks are inserted in chunks, one per event-loop turn, while
        the job is `under-construction` (which the scheduler ignores): a 50,000-task job does not stall
        the loop. A job left under construction by a crash is removed at the next start.
        """
        name = _require(body, "name", str)
        if not name.strip():
            raise Invalid("name", "must not be empty")
        type_name = _require(body, "type", str)
        priority = _require(body, "priority", int, required=False)
        priority = DEFAULT_PRIORITY if priority is None else priority
        if priority not in PRIORITY_RANGE:
            raise Invalid("priority", "must be between 0 and 100")
        platform = _require(body, "submitter_platform", str).lower()
        if platform == SUBMITTER_IS_MANAGER:
            platform = self.manager_platform
        settings = _require(body, "settings", dict, required=False) or {}
        metadata = _require(body, "metadata", dict, required=False) or {}
        initial = _require(body, "initial_status", str, required=False) or JobStatus.QUEUED
        if initial not in INITIAL_STATUSES:
            raise Invalid("initial_status", f"must be one of {', '.join(INITIAL_STATUSES)}")
        storage = _require(body, "storage", dict, required=False) or {}
        checkout = storage.get("shaman_checkout_id") or ""
        if not isinstance(checkout, str):
            raise Invalid("storage.shaman_checkout_id", "must be a string")
        tag = self._tag_of_submission(body)

        job_type = jobtypes.get_job_type(type_name)
        if job_type is None:
            raise Invalid("type", f"unknown job type {type_name!r}")
        etag = _require(body, "type_etag", str, required=False)
        if etag and etag != job_type["etag"]:
            raise PreconditionFailed(
                f"job refused: its settings are outdated, job type {type_name!r} changed on the Manager"
                f" (etag {job_type['etag']}, submitted {etag}); refresh the job type and submit again"
            )
        submitted = {
            **body,
            "settings": self.variables.replace_two_way_at_submission(settings, platform),
            "metadata": self.variables.replace_two_way_at_submission(metadata, platform),
            "submitter_platform": platform,
        }
        created = datetime.datetime.now(datetime.UTC)
        try:
            compiled = await asyncio.to_thread(jobtypes.compile_job, submitted, created=created)
        except jobtypes.JobCompileError as exc:
            raise Invalid(exc.field, exc.message) from exc
        if not store:
            return None
        tasks = await asyncio.to_thread(_new_tasks, compiled.tasks)
        now = created.timestamp()
        job = Job(
            id=0,
            uuid=str(uuidlib.uuid4()),
            name=name,
            job_type=type_name,
            type_etag=etag or "",
            priority=priority,
            status=JobStatus.UNDER_CONSTRUCTION,
            activity="",
            settings_json=json.dumps(compiled.settings),
            metadata_json=json.dumps(compiled.metadata),
            submitter_platform=platform,
            shaman_checkout_id=checkout,
            worker_tag_id=tag.id if tag else None,
            steps_completed=0,
            steps_total=0,
            created_at=now,
            updated_at=now,
            delete_requested_at=None,
        )
        with self.store.transaction():
            job = self.store.create_job(job)
        for first in range(0, len(tasks), TASK_INSERT_CHUNK):
            with self.store.transaction():
                self.store.add_tasks(job, tasks[first : first + TASK_INSERT_CHUNK], first + 1)
            await asyncio.sleep(0)
        pairs = [(index + 1, dep + 1) for index, t in enumerate(tasks) for dep in t.depends_on]
        for first in range(0, len(pairs), TASK_INSERT_CHUNK):
            with self.store.transaction():
                self.store.add_dependencies(job, pairs[first : first + TASK_INSERT_CHUNK])
            await asyncio.sleep(0)
        with self.store.transaction():
            self.store.update_job(job.id, status=initial, updated_at=time.time())
            job = self.store.get_job_by_id(job.id)
        assert job is not None
        log.info(
            "job submitted job=%s name=%r type=%s tasks=%d status=%s",
            job.uuid,
            name,
            type_name,
            len(tasks),
            job.status,
        )
        self.machine.publish_job(job, refresh_tasks=True)
        self.hub.work_available()
        return job

    def _tag_of_submission(self, body: dict[str, Any]) -> Tag | None:
        tag_uuid = _require(body, "worker_tag", str, required=False)
        if not tag_uuid:
            return None
        tag = self.store.get_tag(tag_uuid)
        if tag is None:
            raise Invalid("worker_tag", f"no worker tag with id {tag_uuid}")
        return tag

    # Management.

    def set_status(self, job: Job, status: str, reason: str) -> None:
        if status not in JOB_STATUSES:
            raise Invalid("status", f"{status!r} is not a job status")
        with self.store.transaction():
            if status == JobStatus.REQUEUEING:
                self.store.clear_job_failures(job.id)
                self.store.clear_job_blocklist(job.id)
            self.machine.job_status_change(job, status, reason or f"status set to {status}")

    def set_priority(self, job: Job, priority: int) -> None:
        if priority not in PRIORITY_RANGE:
            raise Invalid("priority", "must be between 0 and 100")
        with self.store.transaction():
            self.store.update_job(job.id, priority=priority, updated_at=time.time())
        job.priority = priority
        self.machine.publish_job(job)
        self.hub.work_available()

    def set_tag(self, job: Job, body: dict[str, Any]) -> None:
        tag_uuid, tag_name = body.get("id") or "", body.get("name") or ""
        if not isinstance(tag_uuid, str) or not isinstance(tag_name, str):
            raise Invalid("id", "id and name must be strings")
        tag = None
        if tag_uuid:
            tag = self.store.get_tag(tag_uuid)
        elif tag_name:
            tag = self.store.get_tag_by_name(tag_name)
        if (tag_uuid or tag_name) and tag is None:
            raise NotAcceptable(f"worker tag {tag_uuid or tag_name!r} not found")
        with self.store.transaction():
            self.store.update_job(job.id, worker_tag_id=tag.id if tag else None, updated_at=time.time())
        self.machine.publish_job(job)
        self.hub.work_available()

    def request_delete(self, job: Job) -> None:
        now = time.time()
        with self.store.transaction():
            self.store.update_job(job.id, delete_requested_at=now, updated_at=now)
        job.delete_requested_at = now
        log.info("job deletion requested job=%s", job.uuid)
        self.machine.publish_job(job)

    async def delete_marked(self) -> int:
        """Remove jobs marked for deletion, with their files; returns how many went."""
        marked = self.store.jobs_to_delete()
        for job in marked:
            with self.store.transaction():
                workers = {t.worker_id for t in self.store.tasks_of_job(job.id) if t.worker_id is not None}
                self.store.delete_job(job.id)
            for worker_id in workers:
                self.hub.wake_worker(worker_id)
            await asyncio.to_thread(self.logs.sync)
            await asyncio.to_thread(shutil.rmtree, job_dir(self.storage, job.uuid), True)
            log.info("job deleted job=%s", job.uuid)
            self.machine.publish_job(job, was_deleted=True)
        return len(marked)

    # Blocklist.

    def blocklist(self, job: Job) -> list[dict[str, str]]:
        return [
            {"worker_id": e.worker_uuid, "task_type": e.task_type, "worker_name": e.worker_name}
            for e in self.store.job_blocklist(job.id)
        ]

    def remove_from_blocklist(self, job: Job | None, entries: list[dict[str, Any]]) -> None:
        """Remove entries; for an unknown job (None) the entries are checked and nothing is removed."""
        pairs = []
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise Invalid(f"[{index}]", "must be an object with worker_id and task_type")
            worker_uuid, task_type = entry.get("worker_id"), entry.get("task_type")
            if not isinstance(worker_uuid, str) or not isinstance(task_type, str):
                raise Invalid(f"[{index}]", "worker_id and task_type must be strings")
            worker = self.store.get_worker(worker_uuid)
            if worker is not None:
                pairs.append((worker.id, task_type))
        if job is None:
            return
        with self.store.transaction():
            self.store.remove_job_blocks(job.id, pairs)
        self.hub.work_available()
