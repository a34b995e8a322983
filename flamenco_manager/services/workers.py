"""Worker registry, sign-on/off and status requests, following Flamenco v3's status-change protocol:
the Manager stores a requested status, the worker acts on it and acknowledges with state-changed."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field

from flamenco_manager import journal_fields, payloads
from flamenco_manager.model import Job, Tag, Task, Worker, WorkerStatus
from flamenco_manager.services import auth
from flamenco_manager.services.errors import NotFound, PreconditionFailed, ServiceError
from flamenco_manager.services.events import Hub
from flamenco_manager.services.sleep_schedule import scheduled_status
from flamenco_manager.services.statemachine import StateMachine
from flamenco_manager.store import Store

log = logging.getLogger(__name__)

_REMEMBERED_ON_SIGN_OFF = (WorkerStatus.AWAKE, WorkerStatus.ASLEEP)


def normalise_task_types(types: list[str]) -> list[str]:
    """Each entry trimmed and lower-cased, in the order sent: what Flamenco stores at sign-on.

    Registration stores the list exactly as sent (as Flamenco does); a worker gets no task before it
    signs on, so scheduling always compares these normalised names.
    """
    return [t.strip().lower() for t in types]


@dataclass(slots=True)
class StatusRequestOutcome:
    """What a status request of several workers did: the UUIDs asked, and those refused with why."""

    applied: list[str] = field(default_factory=list)
    refused: list[tuple[str, ServiceError]] = field(default_factory=list)


class Workers:
    def __init__(self, store: Store, hub: Hub, machine: StateMachine) -> None:
        self.store = store
        self.hub = hub
        self.machine = machine
        self.secrets = auth.SecretCache()
        # Last-seen times not yet written; flushed in batches so a poll costs no write of its own.
        self._seen: dict[int, float] = {}
        # Set while some are waiting: the flushing loop sleeps on it, so an idle farm wakes nobody.
        self.seen_pending = asyncio.Event()

    # Authentication.

    async def authenticate(self, worker_uuid: str, secret: str) -> Worker | None:
        worker = self.store.get_worker(worker_uuid)
        stored = worker.secret_hash if worker is not None else None
        if worker is not None and self.secrets.check(worker_uuid, secret, worker.secret_hash):
            return worker
        if not await auth.verify_secret(secret, stored):
            return None
        # Re-read: the worker may have been deleted while bcrypt ran on another thread.
        worker = self.store.get_worker(worker_uuid)
        if worker is None or worker.secret_hash != stored:
            return None
        self.secrets.remember(worker_uuid, secret, worker.secret_hash)
        return worker

    # Seen-tracking.

    def seen(self, worker: Worker) -> None:
        now = time.time()
        self._seen[worker.id] = now
        worker.last_seen_at = now
        self.seen_pending.set()

    def last_seen(self, worker: Worker) -> float | None:
        """A worker holding a request is seen now; otherwise at its last request."""
        if self.hub.is_held(worker.id):
            return time.time()
        return self._seen.get(worker.id, worker.last_seen_at)

    def last_seen_snapshot(self) -> Callable[[Worker], float | None]:
        """`last_seen` as of now, safe to call from another thread (for lists built off the loop)."""
        held = self.hub.held_workers()
        pending = dict(self._seen)
        now = time.time()

        def last_seen(worker: Worker) -> float | None:
            if worker.id in held:
                return now
            return pending.get(worker.id, worker.last_seen_at)

        return last_seen

    def flush_seen(self, *, held: bool = False) -> None:
        """Write the pending last-seen times; with `held`, workers holding a request now count as seen.

        The periodic flush leaves held workers out: a held request was seen when it came in and is seen
        again when it is answered, `last_seen` reads it as now meanwhile, and the timeout checker skips
        it. Writing every held worker each flush cost one UPDATE per connected worker every few seconds
        (≈40-80 ms of the event loop at 10,000 workers).
        """
        if held:
            now = time.time()
            for worker_id in self.hub.held_workers():
                self._seen[worker_id] = now
        if not self._seen:
            return
        pending, self._seen = self._seen, {}
        with self.store.transaction():
            self.store.mark_workers_seen(pending.items())

    # Worker protocol.

    async def register(
        self, *, name: str, platform: str, secret: str, supported_task_types: list[str], address: str
    ) -> Worker:
        secret_hash = await auth.hash_secret(secret)
        with self.store.transaction():
            worker = self.store.create_worker(
                uuid=str(uuidlib.uuid4()),
                secret_hash=secret_hash,
                name=name,
                address=address,
                platform=platform,
                supported_task_types=list(supported_task_types),
                now=time.time(),
            )
        log.info(
            "worker registered worker=%s name=%r platform=%s",
            worker.uuid,
            name,
            platform,
            extra=journal_fields.about(worker=worker.uuid),
        )
        self.secrets.remember(worker.uuid, secret, secret_hash)
        self.publish(worker)
        return worker

    def sign_on(
        self,
        worker: Worker,
        *,
        name: str,
        software: str,
        supported_task_types: list[str],
        can_restart: bool,
        address: str,
    ) -> str:
        previous = worker.status
        types = normalise_task_types(supported_task_types)
        now = time.time()
        with self.store.transaction():
            self.store.update_worker(
                worker.id,
                status=WorkerStatus.STARTING,
                address=address,
                name=name,
                software=software,
                supported_task_types=types,
                can_restart=int(can_restart),
                updated_at=now,
                last_seen_at=now,
            )
        worker.status, worker.address, worker.name, worker.software = (
            WorkerStatus.STARTING,
            address,
            name,
            software,
        )
        worker.supported_task_types, worker.can_restart, worker.updated_at = types, can_restart, now
        log.info(
            "worker signed on worker=%s name=%r previous_status=%s",
            worker.uuid,
            name,
            previous or "-",
            extra=journal_fields.about(worker=worker.uuid),
        )
        self.publish(worker, previous_status=previous)
        self.hub.work_available()
        if worker.status_requested:
            return worker.status_requested
        return scheduled_status(self.store.get_sleep_schedule(worker.id), time.time())

    def sign_off(self, worker: Worker) -> None:
        previous = worker.status
        fields: dict = {"status": WorkerStatus.OFFLINE, "updated_at": time.time()}
        requested = worker.status_requested
        if requested in (WorkerStatus.OFFLINE, WorkerStatus.RESTART):
            requested = ""
            fields.update(status_requested="", lazy_status_request=0)
        if not requested and previous in _REMEMBERED_ON_SIGN_OFF:
            # Remember the state so the next sign-on sends the worker back to it.
            fields.update(status_requested=previous, lazy_status_request=0)
        with self.store.transaction():
            self.store.update_worker(worker.id, **fields)
            self._apply(worker, fields)
            self.machine.requeue_worker_tasks(worker, "worker signed off")
        log.info(
            "worker signed off worker=%s previous_status=%s",
            worker.uuid,
            previous,
            extra=journal_fields.about(worker=worker.uuid),
        )
        self.publish(worker, previous_status=previous)

    def state_changed(self, worker: Worker, status: str) -> None:
        previous = worker.status
        fields: dict = {"status": status, "updated_at": time.time()}
        if worker.status_requested and worker.status_requested != status:
            log.warning(
                "worker acknowledged a status other than the one requested worker=%s status=%s requested=%s",
                worker.uuid,
                status,
                worker.status_requested,
                extra=journal_fields.about(worker=worker.uuid),
            )
        else:
            fields.update(status_requested="", lazy_status_request=0)
        with self.store.transaction():
            self.store.update_worker(worker.id, **fields)
            self._apply(worker, fields)
            if previous == WorkerStatus.AWAKE and status != WorkerStatus.AWAKE:
                reason = f"worker {worker.name} ({worker.uuid}) changed status to '{status}'"
                self.machine.requeue_worker_tasks(worker, reason)
        log.info(
            "worker status changed worker=%s from=%s to=%s",
            worker.uuid,
            previous,
            status,
            extra=journal_fields.about(worker=worker.uuid),
        )
        self.publish(worker, previous_status=previous)
        if status == WorkerStatus.AWAKE:
            self.hub.wake_worker(worker.id)

    # Management.

    def get(self, worker_uuid: str) -> Worker:
        worker = self.store.get_worker(worker_uuid)
        if worker is None:
            raise NotFound(f"worker {worker_uuid} not found")
        return worker

    def request_status(self, worker: Worker, status: str, *, is_lazy: bool) -> None:
        fields = self._status_request(worker, status, is_lazy=is_lazy, now=time.time())
        with self.store.transaction():
            self.store.update_worker(worker.id, **fields)
        self._announce_status_request(worker, fields)

    def request_status_of_many(
        self, worker_uuids: list[str], status: str, *, is_lazy: bool
    ) -> StatusRequestOutcome:
        """`request_status` for each worker, in one unit of writes (so one commit to wait for).

        A worker the single request would refuse (unknown or deleted, or unable to restart) is refused
        here with the same error and the others are still asked; each one asked gets the same event and
        long-poll wake-up as from its own request.
        """
        outcome = StatusRequestOutcome()
        requested: list[tuple[Worker, dict]] = []
        now = time.time()
        with self.store.transaction():
            for worker_uuid in worker_uuids:
                try:
                    worker = self.get(worker_uuid)
                    fields = self._status_request(worker, status, is_lazy=is_lazy, now=now)
                except (NotFound, PreconditionFailed) as exc:
                    outcome.refused.append((worker_uuid, exc))
                    continue
                self.store.update_worker(worker.id, **fields)
                requested.append((worker, fields))
        for worker, fields in requested:
            self._announce_status_request(worker, fields)
            outcome.applied.append(worker.uuid)
        log.info(
            "worker status requested of several workers status=%s lazy=%s applied=%d refused=%d",
            status,
            is_lazy,
            len(outcome.applied),
            len(outcome.refused),
        )
        return outcome

    @staticmethod
    def _status_request(worker: Worker, status: str, *, is_lazy: bool, now: float) -> dict:
        """The worker fields a status request sets; requesting the current status cancels a request."""
        if status == worker.status:
            fields: dict = {"status_requested": "", "lazy_status_request": 0}
        elif status == WorkerStatus.RESTART and not worker.can_restart:
            raise PreconditionFailed(f'worker "{worker.uuid}" does not know how to restart')
        else:
            fields = {"status_requested": status, "lazy_status_request": int(is_lazy)}
        fields["updated_at"] = now
        return fields

    def _announce_status_request(self, worker: Worker, fields: dict) -> None:
        """After the request is written: the worker object, the log, the event and the held long-poll."""
        self._apply(worker, fields)
        log.info(
            "worker status requested worker=%s status=%s lazy=%s",
            worker.uuid,
            worker.status_requested or "-",
            worker.lazy_status_request,
            extra=journal_fields.about(worker=worker.uuid),
        )
        self.publish(worker)
        self.hub.wake_worker(worker.id)

    def delete(self, worker: Worker) -> None:
        now = time.time()
        with self.store.transaction():
            self.machine.requeue_worker_tasks(worker, "worker is being deleted")
            self.store.update_worker(worker.id, deleted_at=now, updated_at=now)
        worker.deleted_at, worker.updated_at = now, now
        self.secrets.forget(worker.uuid)
        log.info("worker deleted worker=%s", worker.uuid, extra=journal_fields.about(worker=worker.uuid))
        self.publish(worker)
        self.hub.wake_worker(worker.id)

    def current(self, worker: Worker) -> Worker | None:
        """The worker as stored now (None once deleted), counted as seen: a held request re-reads it."""
        fresh = self.store.get_worker(worker.uuid)
        if fresh is not None:
            self.seen(fresh)
        return fresh

    def details(self, worker: Worker) -> tuple[list[Tag], Task | None, Job | None]:
        """What the web interface shows beside a worker: its tags, its last task and that task's job."""
        task = self.store.last_task_of_worker(worker.id)
        job = self.store.get_job_by_id(task.job_id) if task is not None else None
        return self.store.worker_tags(worker.id), task, job

    def set_tags(self, worker: Worker, tag_uuids: list[str]) -> None:
        tag_ids = []
        for tag_uuid in tag_uuids:
            tag = self.store.get_tag(tag_uuid)
            if tag is None:
                raise NotFound(f"worker tag {tag_uuid} not found")
            tag_ids.append(tag.id)
        with self.store.transaction():
            self.store.set_worker_tags(worker.id, tag_ids)
            self.store.update_worker(worker.id, updated_at=time.time())
        self.publish(worker)
        self.hub.work_available()

    def time_out(self, worker: Worker) -> None:
        previous = worker.status
        fields = {
            "status": WorkerStatus.ERROR,
            "status_requested": "",
            "lazy_status_request": 0,
            "updated_at": time.time(),
        }
        with self.store.transaction():
            self.store.update_worker(worker.id, **fields)
            self._apply(worker, fields)
            self.machine.requeue_worker_tasks(worker, "worker timed out")
        log.warning(
            "worker timed out worker=%s name=%r previous_status=%s",
            worker.uuid,
            worker.name,
            previous,
            extra=journal_fields.about(worker=worker.uuid),
        )
        self.publish(worker, previous_status=previous)

    # Helpers.

    @staticmethod
    def _apply(worker: Worker, fields: dict) -> None:
        for name, value in fields.items():
            if name == "lazy_status_request":
                value = bool(value)
            setattr(worker, name, value)

    def publish(self, worker: Worker, *, previous_status: str | None = None) -> None:
        self.hub.status_changed()
        self.hub.publish(
            "/workers",
            lambda: payloads.worker_event(worker, self.last_seen(worker), previous_status=previous_status),
        )
