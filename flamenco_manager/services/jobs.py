"""Job submission (what the Blender add-on sends), job management from the web interface, and a job's
blocklist of workers, with Flamenco v3's rules."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any

from flamenco_manager import jobtypes
from flamenco_manager.model import JOB_STATUSES, Job, JobStatus, NewTask, Tag
from flamenco_manager.services.errors import Invalid, NotAcceptable, NotFound, PreconditionFailed
from flamenco_manager.services.events import Hub
from flamenco_manager.services.statemachine import StateMachine
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


@dataclass(frozen=True, slots=True)
class JobSubmission:
    """A SubmittedJob as the HTTP edge parsed it: types checked, rules not yet applied."""

    name: str
    type: str
    submitter_platform: str
    priority: int = DEFAULT_PRIORITY
    settings: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    initial_status: str = JobStatus.QUEUED
    shaman_checkout_id: str = ""
    worker_tag: str = ""
    type_etag: str = ""


class Jobs:
    def __init__(
        self,
        store: Store,
        hub: Hub,
        machine: StateMachine,
        variables: Variables,
        manager_platform: str,
    ) -> None:
        self.store = store
        self.hub = hub
        self.machine = machine
        self.variables = variables
        self.manager_platform = manager_platform

    def get(self, job_uuid: str) -> Job:
        job = self.store.get_job(job_uuid)
        if job is None:
            raise NotFound(f"job {job_uuid} not found")
        return job

    def last_rendered(self) -> Job | None:
        """The job whose image was uploaded last, if it still exists."""
        return self.store.get_last_rendered()

    def tag_uuid(self, job: Job) -> str | None:
        if job.worker_tag_id is None:
            return None
        tag = self.store.get_tag_by_id(job.worker_tag_id)
        return tag.uuid if tag else None

    # Submission.

    async def submit(self, submission: JobSubmission, *, store: bool = True) -> Job | None:
        """Validate and compile a SubmittedJob; store it unless only checking.

        Compiling runs on a thread and the tasks are inserted in chunks, one per event-loop turn, while
        the job is `under-construction` (which the scheduler ignores): a 50,000-task job does not stall
        the loop. A job left under construction by a crash is removed at the next start.
        """
        name = submission.name
        if not name.strip():
            raise Invalid("name", "must not be empty")
        type_name = submission.type
        priority = submission.priority
        if priority not in PRIORITY_RANGE:
            raise Invalid("priority", "must be between 0 and 100")
        platform = submission.submitter_platform.lower()
        if platform == SUBMITTER_IS_MANAGER:
            platform = self.manager_platform
        initial = submission.initial_status
        if initial not in INITIAL_STATUSES:
            raise Invalid("initial_status", f"must be one of {', '.join(INITIAL_STATUSES)}")
        checkout = submission.shaman_checkout_id
        tag = self._tag_of_submission(submission.worker_tag)

        job_type = jobtypes.get_job_type(type_name)
        if job_type is None:
            raise Invalid("type", f"unknown job type {type_name!r}")
        etag = submission.type_etag
        if etag and etag != job_type["etag"]:
            raise PreconditionFailed(
                f"job type {type_name!r} changed on the Manager (etag {job_type['etag']}, submitted {etag});"
                " refresh the job types and submit again"
            )
        submitted = {
            "type": type_name,
            "settings": self.variables.replace_two_way_at_submission(submission.settings, platform),
            "metadata": self.variables.replace_two_way_at_submission(submission.metadata, platform),
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
            stored = self.store.get_job_by_id(job.id)
        assert stored is not None
        job = stored
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

    def _tag_of_submission(self, tag_uuid: str) -> Tag | None:
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

    def set_tag(self, job: Job, *, tag_uuid: str, tag_name: str) -> None:
        """Limit the job to the workers of a tag given by id or name; neither: any worker may run it."""
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

    # Blocklist.

    def blocklist(self, job: Job) -> list[dict[str, str]]:
        return [
            {"worker_id": e.worker_uuid, "task_type": e.task_type, "worker_name": e.worker_name}
            for e in self.store.job_blocklist(job.id)
        ]

    def remove_from_blocklist(self, job: Job, entries: list[tuple[str, str]]) -> None:
        """Forget blocklist entries given as (worker UUID, task type); unknown workers are skipped."""
        pairs = []
        for worker_uuid, task_type in entries:
            worker = self.store.get_worker(worker_uuid)
            if worker is not None:
                pairs.append((worker.id, task_type))
        with self.store.transaction():
            self.store.remove_job_blocks(job.id, pairs)
        self.hub.work_available()
