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

from flamenco_manager import jobtypes, journal_fields
from flamenco_manager.jobtypes.script_job import JobContext
from flamenco_manager.model import JOB_STATUSES, Job, JobStatus, NewTask, Tag
from flamenco_manager.services.errors import Invalid, NotAcceptable, NotFound, PreconditionFailed
from flamenco_manager.services.events import Hub
from flamenco_manager.services.job_types import JobTypes
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


@dataclass(frozen=True, slots=True)
class _Checked:
    """What checking a submission found out: its compiled form and what the rules resolved."""

    compiled: jobtypes.CompiledJob
    job_uuid: str
    name: str  # as the job type left it (a script may rename the job)
    priority: int
    created: datetime.datetime
    platform: str
    tag: Tag | None


def _log_undefined_settings(job_uuid: str, name: str, type_name: str, keys: list[str]) -> None:
    log.warning(
        "job has settings its type does not define job=%s name=%r type=%s settings=%s",
        job_uuid,
        name,
        type_name,
        ",".join(keys),
        extra=journal_fields.about(job=job_uuid),
    )


def _priority_out_of_range(priority: int) -> Invalid:
    return Invalid(
        "priority", f"must be between {PRIORITY_RANGE[0]} and {PRIORITY_RANGE[-1]}, not {priority}"
    )


def _undefined_settings_activity(type_name: str, keys: list[str]) -> str:
    """The job's first activity: the settings its type does not define, or nothing."""
    return f"Settings not defined by job type {type_name}: {', '.join(keys)}" if keys else ""


class Jobs:
    def __init__(
        self,
        store: Store,
        hub: Hub,
        machine: StateMachine,
        variables: Variables,
        manager_platform: str,
        job_types: JobTypes,
    ) -> None:
        self.store = store
        self.hub = hub
        self.machine = machine
        self.variables = variables
        self.manager_platform = manager_platform
        self.job_types = job_types

    def get(self, job_uuid: str) -> Job:
        job = self.store.get_job(job_uuid)
        if job is None:
            raise NotFound(f"job {job_uuid} not found")
        return job

    def last_rendered(self) -> Job | None:
        """The job whose image was uploaded last, if it still exists."""
        return self.store.get_last_rendered()

    def find(self, job_uuid: str) -> Job | None:
        """The job, or None: its task list, blocklist and images answer empty for an unknown job."""
        return self.store.get_job(job_uuid)

    def tag_uuid(self, job: Job) -> str | None:
        if job.worker_tag_id is None:
            return None
        tag = self.store.get_tag_by_id(job.worker_tag_id)
        return tag.uuid if tag else None

    # Submission.

    async def submit(self, submission: JobSubmission, *, store: bool = True) -> Job | None:
        """Validate and compile a SubmittedJob; store it unless only checking.

        Compiling runs off the event loop (on a thread, or in the script engine's process) and the tasks
        are inserted in chunks, one per event-loop turn, while the job is `under-construction` (which the
        scheduler ignores): a 50,000-task job does not stall the loop. A job left under construction by a
        crash is removed at the next start.
        """
        checked = await self._check(submission)
        compiled, created = checked.compiled, checked.created
        name, type_name = checked.name, submission.type
        undefined = compiled.undefined_settings
        if not store:
            if undefined:
                _log_undefined_settings("-", name, type_name, undefined)
            return None
        tasks = await asyncio.to_thread(_new_tasks, compiled.tasks)
        now = created.timestamp()
        job = Job(
            id=0,
            uuid=checked.job_uuid,
            name=name,
            job_type=type_name,
            type_etag=submission.type_etag,
            priority=checked.priority,
            status=JobStatus.UNDER_CONSTRUCTION,
            activity=_undefined_settings_activity(type_name, undefined),
            settings_json=json.dumps(compiled.settings),
            metadata_json=json.dumps(compiled.metadata),
            submitter_platform=checked.platform,
            shaman_checkout_id=submission.shaman_checkout_id,
            worker_tag_id=checked.tag.id if checked.tag else None,
            steps_completed=0,
            steps_total=0,
            created_at=now,
            updated_at=now,
            delete_requested_at=None,
        )
        with self.store.transaction():
            job = self.store.create_job(job)
        if undefined:
            _log_undefined_settings(job.uuid, name, type_name, undefined)
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
            self.store.update_job(job.id, status=submission.initial_status, updated_at=time.time())
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
            extra=journal_fields.about(job=job.uuid),
        )
        self.machine.publish_job(job, refresh_tasks=True)
        self.hub.work_available()
        return job

    async def _check(self, submission: JobSubmission) -> _Checked:
        """The submission compiled, or one `Invalid` naming every problem found.

        The submission's own fields (name, priority, initial status, worker tag, type) and, when the type
        is known, its settings are reported together, the settings last. A stale `type_etag` stops the
        checking there: 412 when the fields are otherwise fine, since settings checked against a changed
        job type would mislead. Settings the type does not define are kept (`undefined_settings`).
        """
        problems: list[Invalid] = []
        if not submission.name.strip():
            problems.append(Invalid("name", "must not be empty"))
        if submission.priority not in PRIORITY_RANGE:
            problems.append(_priority_out_of_range(submission.priority))
        platform = submission.submitter_platform.lower()
        if platform == SUBMITTER_IS_MANAGER:
            platform = self.manager_platform
        initial = submission.initial_status
        if initial not in INITIAL_STATUSES:
            allowed = ", ".join(INITIAL_STATUSES)
            problems.append(Invalid("initial_status", f"must be one of {allowed}, not {initial!r}"))
        tag = None
        try:
            tag = self._tag_of_submission(submission.worker_tag)
        except Invalid as exc:
            problems.append(exc)
        type_name = submission.type
        job_type = None
        try:
            job_type = self.job_types.require(type_name)
        except jobtypes.JobCompileError as exc:
            problems.append(Invalid(exc.field, exc.message))
        etag = submission.type_etag
        if job_type is not None and etag and etag != job_type.info["etag"]:
            if problems:
                raise Invalid.together(problems)
            raise PreconditionFailed(
                f"job refused: its settings are outdated, job type {type_name!r} changed on the Manager"
                f" (etag {job_type.info['etag']}, submitted {etag}); refresh the job type and submit again"
            )
        context = JobContext(
            job_uuid=str(uuidlib.uuid4()),
            name=submission.name,
            type=type_name,
            priority=submission.priority,
            created=datetime.datetime.now(datetime.UTC),
            shaman_checkout_id=submission.shaman_checkout_id,
            worker_tag_uuid=tag.uuid if tag else "",
        )
        compiled = None
        if job_type is not None:
            submitted = {
                "type": type_name,
                "settings": self.variables.replace_two_way_at_submission(submission.settings, platform),
                "metadata": self.variables.replace_two_way_at_submission(submission.metadata, platform),
            }
            try:
                compiled = await self.job_types.compile(job_type, submitted, context)
            except jobtypes.SettingsError as exc:
                settings = [Invalid(problem.field, problem.message) for problem in exc.problems]
                problems.append(Invalid.together(settings, "settings"))
            except jobtypes.JobCompileError as exc:
                problems.append(Invalid(exc.field, exc.message))
        if problems:
            raise Invalid.together(problems)
        assert compiled is not None
        return _Checked(
            compiled=compiled.job,
            job_uuid=context.job_uuid,
            name=compiled.name,
            priority=compiled.priority,
            created=context.created,
            platform=platform,
            tag=tag,
        )

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
            raise _priority_out_of_range(priority)
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
