"""Status enums and the records the store hands to the services."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field


class WorkerStatus(enum.StrEnum):
    STARTING = "starting"
    AWAKE = "awake"
    ASLEEP = "asleep"
    ERROR = "error"
    TESTING = "testing"
    OFFLINE = "offline"
    RESTART = "restart"


class JobStatus(enum.StrEnum):
    ACTIVE = "active"
    CANCELED = "canceled"
    COMPLETED = "completed"
    FAILED = "failed"
    PAUSED = "paused"
    PAUSE_REQUESTED = "pause-requested"
    QUEUED = "queued"
    CANCEL_REQUESTED = "cancel-requested"
    REQUEUEING = "requeueing"
    UNDER_CONSTRUCTION = "under-construction"


class TaskStatus(enum.StrEnum):
    ACTIVE = "active"
    CANCELED = "canceled"
    COMPLETED = "completed"
    FAILED = "failed"
    QUEUED = "queued"
    SOFT_FAILED = "soft-failed"
    PAUSED = "paused"


WORKER_STATUSES = frozenset(s.value for s in WorkerStatus)
JOB_STATUSES = frozenset(s.value for s in JobStatus)
TASK_STATUSES = frozenset(s.value for s in TaskStatus)


@dataclass(slots=True)
class Worker:
    id: int
    uuid: str
    secret_hash: str
    name: str
    address: str
    platform: str
    software: str
    status: str
    status_requested: str
    lazy_status_request: bool
    can_restart: bool
    supported_task_types: list[str]
    created_at: float
    updated_at: float
    last_seen_at: float | None
    deleted_at: float | None


@dataclass(slots=True)
class Tag:
    id: int
    uuid: str
    name: str
    description: str


@dataclass(slots=True)
class SleepSchedule:
    worker_id: int
    is_active: bool
    days_of_week: str
    start_time: str
    end_time: str
    next_check: float | None


@dataclass(slots=True)
class Job:
    id: int
    uuid: str
    name: str
    job_type: str
    type_etag: str
    priority: int
    status: str
    activity: str
    settings_json: str  # kept as stored; decoded only when an answer needs it
    metadata_json: str
    submitter_platform: str
    shaman_checkout_id: str
    worker_tag_id: int | None
    steps_completed: int
    steps_total: int
    created_at: float
    updated_at: float
    delete_requested_at: float | None

    @property
    def settings(self) -> dict:
        return json.loads(self.settings_json)

    @property
    def metadata(self) -> dict:
        return json.loads(self.metadata_json)


@dataclass(slots=True)
class Task:
    id: int
    uuid: str
    job_id: int
    index_in_job: int
    name: str
    type: str
    priority: int
    status: str
    worker_id: int | None
    last_touched_at: float | None
    commands_json: str  # decoded only when the task is handed out or shown
    activity: str
    steps_completed: int
    steps_total: int
    created_at: float
    updated_at: float
    last_update_key: str = ""  # Idempotency-Key of the last update applied (see task_updates)

    @property
    def commands(self) -> list[dict]:
        return json.loads(self.commands_json)


@dataclass(slots=True)
class NewTask:
    """A task as compiled, before it has ids; dependencies are indices into the job's task list."""

    uuid: str
    name: str
    type: str
    priority: int
    commands: list[dict]
    steps_total: int
    depends_on: list[int] = field(default_factory=list)


@dataclass(slots=True)
class BlockEntry:
    worker_id: int
    worker_uuid: str
    worker_name: str
    task_type: str
