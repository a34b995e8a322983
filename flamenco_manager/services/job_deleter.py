"""Deleting jobs: marking them (one job, or every job last updated before a time) and removing them promptly.

Rules this module keeps:
- A deletion is first a mark (`delete_requested_at`, with `updated_at` touched) committed before the
  client is answered; removal follows in the background, as soon as the job is queued here.
- A single delete and a mass delete go through the same queue. A mass delete marks every job updated at or
  before the given time, rounded up to whole seconds (so an `updated` time copied from a job whose
  sub-second part was lost still selects that job), in one unit of writes; a job still being submitted is
  left alone. Its "delete requested" events then go out, and the jobs are queued, in chunks per loop turn.
- Removing a job: its storage directory (task logs, last-rendered images) first; a job whose files cannot
  be removed keeps its rows and its mark (an error is logged) and is tried again at the next periodic
  check. Then its rows, in bounded chunks per loop turn (a job of 50,000 tasks or a mass delete of 10,000
  jobs does not stall the event loop). Then workers running one of its tasks are woken so they learn the
  task is gone, and a job update with `was_deleted` is published.
- The periodic check (and the start of the Manager) queues jobs that are marked but not queued: marks left
  by an earlier run, and jobs whose files could not be removed.
- With Manager replicas on one database, any replica marks and announces, but only the replica running
  the farm-wide loops removes (`run` is one of them), so no job is removed twice. A replica that marked
  jobs tells the others (`Hub.jobs_marked_for_deletion`); the removing one then looks for them at once.
  While leadership moves (a replica that lost its database session learns it at its next election round)
  two replicas may remove for a moment: removals tolerate each other (files already gone are fine).
- Replicas share the storage path: another replica may still write a log line of a job being removed
  (received just before its rows went), which recreates the directory; it is swept again RESWEEP_DELAY later.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import logging
import math
import pathlib
import shutil
import sys
import time
from collections.abc import Awaitable, Callable

from flamenco_manager import journal_fields
from flamenco_manager.model import Job, JobStatus, TaskStatus
from flamenco_manager.services.events import SUBSCRIBER_QUEUE_SIZE, Hub
from flamenco_manager.services.statemachine import StateMachine
from flamenco_manager.services.tasklogs import TaskLogs, job_dir
from flamenco_manager.store import Store, StoreBusy

log = logging.getLogger(__name__)

# Marked jobs that are not queued (left by an earlier run, or whose files could not be removed) are looked
# for this often; everything else is deleted as soon as it is queued. Flamenco's period.
PERIODIC_CHECK_INTERVAL = 60.0
# Jobs whose files are removed by one call on a thread, and whose rows then go: enough to make a mass
# delete of 10,000 jobs take seconds, not minutes, while each step stays small.
JOBS_PER_ROUND = 100
# Rows deleted per event-loop turn (a task, with its dependencies, is one; a job is JOB_ROWS): about
# 10 ms of SQLite work (1,000 tasks took 16 ms, a 19,000-task job in one statement 270 ms).
ROWS_PER_TURN = 600
# What deleting a job row costs in rows: the job and its per-status task counts.
JOB_ROWS = 10
# A turn of removal or announcing also ends after this long, whatever its rows: a store slower per call
# than SQLite in-process (PostgreSQL, a round trip per call) would otherwise hold the loop for 100-400 ms.
TURN_TIME = 0.02
# "Delete requested" events published per loop turn after a mass delete; the rest of the Manager (and the
# event streams, which drain between turns) keep up.
ANNOUNCE_PER_TURN = 200
# A mass delete publishes two events per job; when an event stream has this many waiting, it is given up to
# BACKLOG_WAIT to catch up before more are published (the hub drops a stream that falls SUBSCRIBER_QUEUE_SIZE
# behind, and the web interface then reloads everything). A stream that is stuck is dropped as before.
BACKLOG_HIGH = SUBSCRIBER_QUEUE_SIZE // 2
BACKLOG_WAIT = 1.0
# How often the backlog is looked at while waiting.
BACKLOG_POLL = 0.01
# With replicas, a removed job's directory is removed again this much later: a log line another replica took
# in just before the rows went reaches its file within milliseconds (its worker's answer waits for it).
RESWEEP_DELAY = 5.0
# A removal that found rows held by another writer (another replica's unit of writes marking the same jobs)
# is tried again this much later, not at the next periodic check.
BUSY_RETRY = 0.5
# Statuses a mass delete leaves alone: a job still being submitted has not been answered to its submitter.
_NOT_MASS_DELETED = (JobStatus.UNDER_CONSTRUCTION,)


def _rmtree(path: pathlib.Path) -> None:
    """Remove a directory tree; parts that vanish meanwhile (another replica removing it too) are fine."""

    def vanished_is_fine(exc: BaseException) -> None:
        if not isinstance(exc, FileNotFoundError):
            raise exc

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=lambda _f, _p, exc: vanished_is_fine(exc))
    else:
        shutil.rmtree(path, onerror=lambda _f, _p, info: vanished_is_fine(info[1]))


def _remove_job_dirs(storage: pathlib.Path, job_uuids: list[str]) -> dict[str, OSError]:
    """Remove each job's storage directory (absent is fine); the failures by job UUID."""
    failures: dict[str, OSError] = {}
    for job_uuid in job_uuids:
        try:
            _rmtree(job_dir(storage, job_uuid))
        except FileNotFoundError:
            pass
        except OSError as exc:
            failures[job_uuid] = exc
    return failures


class JobDeleter:
    def __init__(self, store: Store, hub: Hub, machine: StateMachine, logs: TaskLogs, storage: pathlib.Path):
        self.store = store
        self.hub = hub
        self.machine = machine
        self.logs = logs
        self.storage = storage
        # Ordered sets of job ids: marked by a mass delete and not yet announced; queued for deletion.
        self._to_announce: dict[int, None] = {}
        self._queued: dict[int, None] = {}
        self._in_progress: set[int] = set()
        self._wake = asyncio.Event()
        self._announce_wake = asyncio.Event()
        # Set while nothing waits to be announced: removal waits for it, as the events of one loop turn
        # of both together made turns too long.
        self._announced = asyncio.Event()
        self._announced.set()
        # Whether `run` removes jobs on this replica (it is one of the farm-wide loops).
        self._removing = False
        # Another replica marked jobs: look for them.
        self._look = False
        # (when, job UUIDs) whose directories are removed once more (replicas only; see RESWEEP_DELAY).
        self._resweeps: collections.deque[tuple[float, list[str]]] = collections.deque()
        hub.deletion_hooks.append(self._marked_elsewhere)

    # Marking.

    def request_delete(self, job: Job) -> None:
        """Mark one job for deletion and queue it."""
        now = time.time()
        with self.store.transaction():
            self.store.update_job(job.id, delete_requested_at=now, updated_at=now)
        job.delete_requested_at = now
        job.updated_at = now
        log.info("job deletion requested job=%s", job.uuid, extra=journal_fields.about(job=job.uuid))
        self.machine.publish_job(job)
        self._queue([job.id])

    def mass_delete(self, last_updated_max: datetime.datetime) -> int:
        """Mark every job last updated at or before the given time (rounded up to whole seconds) for
        deletion; they are announced and queued in the background. Returns how many were marked."""
        up_to = math.ceil(last_updated_max.timestamp())
        with self.store.transaction():
            marked = self.store.mark_jobs_for_deletion(
                updated_up_to=up_to, now=time.time(), skip_statuses=_NOT_MASS_DELETED
            )
        log.info(
            "mass deletion requested last_updated_max=%s jobs=%d",
            datetime.datetime.fromtimestamp(up_to, datetime.UTC).isoformat(),
            len(marked),
        )
        self._to_announce.update(dict.fromkeys(marked))
        if marked:
            self._announced.clear()
            self._announce_wake.set()
        return len(marked)

    async def queue_marked(self) -> int:
        """Queue the jobs that are marked for deletion but not queued; how many were."""
        marked = await self.store.offloop(lambda s: [j.id for j in s.jobs_to_delete()])
        known = self._in_progress.union(self._queued, self._to_announce)
        missing = [job_id for job_id in marked if job_id not in known]
        if missing:
            log.info("queueing jobs marked for deletion jobs=%d", len(missing))
            self._queue(missing)
        return len(missing)

    def _queue(self, job_ids: list[int]) -> None:
        """Hand marked jobs to the removal: here, or on the replica that removes."""
        if self._removing:
            self._queued.update(dict.fromkeys(job_ids))
            self._wake.set()
        else:
            self.hub.jobs_marked_for_deletion()

    def _marked_elsewhere(self) -> None:
        if self._removing:
            self._look = True
            self._wake.set()

    # The background loops.

    async def announce(self) -> None:
        """Publish the "delete requested" events of a mass delete and queue its jobs (every replica)."""
        while True:
            if not self._to_announce:
                self._announce_wake.clear()
                await self._announce_wake.wait()
            try:
                await self._announce_some()
            except StoreBusy as exc:
                # The batch went back to the front; the database is busy or reconnecting.
                log.warning("database busy while announcing deleted jobs, trying again error=%s", exc)
                await asyncio.sleep(BUSY_RETRY)

    async def run(self) -> None:
        """Delete queued jobs as they come; look for marked, unqueued jobs at start and periodically (the
        replica running the farm-wide loops)."""
        self._removing = True
        try:
            await self._run()
        finally:
            self._removing = False
            self._queued.clear()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        await self._guarded(self.queue_marked)
        next_check = loop.time() + PERIODIC_CHECK_INTERVAL
        while True:
            if not self._queued and not self._look:
                self._wake.clear()
                until = min(next_check, self._resweeps[0][0]) if self._resweeps else next_check
                try:
                    async with asyncio.timeout(max(0.0, until - loop.time())):
                        await self._wake.wait()
                except TimeoutError:
                    pass
            if loop.time() >= next_check or self._look:
                self._look = False
                await self._guarded(self.queue_marked)
                if loop.time() >= next_check:
                    next_check = loop.time() + PERIODIC_CHECK_INTERVAL
            while self._resweeps and self._resweeps[0][0] <= loop.time():
                _, uuids = self._resweeps.popleft()
                await asyncio.to_thread(_remove_job_dirs, self.storage, uuids)
            if self._queued:
                await self._announced.wait()
                await self._guarded(self._delete_some)

    async def _guarded(self, step: Callable[[], Awaitable[object]]) -> None:
        try:
            await step()
        except Exception:
            # The marks stay in the database: the periodic check queues those jobs again.
            log.exception("job deletion failed, trying again at the next periodic check")

    async def _announce_some(self) -> None:
        await self._let_streams_catch_up()
        batch = _take(self._to_announce, ANNOUNCE_PER_TURN)
        if self.hub.has_listeners("/jobs"):
            loop = asyncio.get_running_loop()
            ends = loop.time() + TURN_TIME
            jobs: list[Job | None] = []
            try:
                for job_id in batch:
                    jobs.append(self.store.get_job_by_id(job_id))
                    if loop.time() >= ends:
                        break
            except StoreBusy:
                self._to_announce = dict.fromkeys(batch) | self._to_announce
                raise
            for job in jobs:
                if job is not None:
                    self.machine.publish_job(job)
            # What the time allowed is announced; the rest goes back to the front for the next turn.
            self._to_announce = dict.fromkeys(batch[len(jobs) :]) | self._to_announce
            batch = batch[: len(jobs)]
        if self._removing:
            self._queue(batch)
        elif not self._to_announce:
            self.hub.jobs_marked_for_deletion()  # once all are announced (the remover's look is a query)
        if not self._to_announce:
            self._announced.set()
        await asyncio.sleep(0)

    async def _let_streams_catch_up(self) -> None:
        for _ in range(round(BACKLOG_WAIT / BACKLOG_POLL)):
            if self.hub.backlog() <= BACKLOG_HIGH:
                return
            await asyncio.sleep(BACKLOG_POLL)

    async def _delete_some(self) -> None:
        batch = _take(self._queued, JOBS_PER_ROUND)
        self._in_progress.update(batch)
        try:
            await self._delete(batch)
        except StoreBusy as exc:
            # Jobs already removed are skipped when the batch comes round again.
            log.warning("database busy while removing jobs, trying again jobs=%d error=%s", len(batch), exc)
            self._queued = dict.fromkeys(batch) | self._queued
            await asyncio.sleep(BUSY_RETRY)
        finally:
            self._in_progress.difference_update(batch)

    async def _delete(self, job_ids: list[int]) -> None:
        jobs = [job for job in map(self.store.get_job_by_id, job_ids) if job is not None]
        jobs = [job for job in jobs if job.delete_requested_at is not None]
        if not jobs:
            return
        # Log lines already handed to the writer threads land before their directories are removed, and
        # the writers close those files (an NFS client cannot remove a directory holding an open file).
        await asyncio.to_thread(self.logs.release)
        failures = await asyncio.to_thread(_remove_job_dirs, self.storage, [job.uuid for job in jobs])
        for job_uuid, exc in failures.items():
            log.error(
                "cannot remove the files of a job, it stays marked for deletion job=%s error=%s",
                job_uuid,
                exc,
                extra=journal_fields.about(job=job_uuid),
            )
        jobs = [job for job in jobs if job.uuid not in failures]
        await self._let_streams_catch_up()
        loop = asyncio.get_running_loop()
        budget = ROWS_PER_TURN
        turn_ends = loop.time() + TURN_TIME
        for job in jobs:
            workers: set[int] = set()
            while True:
                # Looked up with each chunk: a big job's remaining tasks may be handed out between turns.
                workers.update(
                    t.worker_id
                    for t in self.store.tasks_of_job_with_status(job.id, (TaskStatus.ACTIVE,))
                    if t.worker_id is not None
                )
                with self.store.transaction():
                    removed = self.store.delete_tasks_of_job(job.id, budget)
                    finished = removed < budget
                    if finished:
                        self.store.delete_job(job.id)
                budget -= removed
                if finished:
                    budget -= JOB_ROWS
                    break
                await asyncio.sleep(0)  # a big job: the rest of its tasks in the next turns
                budget = ROWS_PER_TURN
                turn_ends = loop.time() + TURN_TIME
            if budget <= 0 or loop.time() >= turn_ends:
                await asyncio.sleep(0)
                budget = ROWS_PER_TURN
                turn_ends = loop.time() + TURN_TIME
            for worker_id in workers:
                self.hub.wake_worker(worker_id)
            log.info("job deleted job=%s", job.uuid, extra=journal_fields.about(job=job.uuid))
            self.machine.publish_job(job, was_deleted=True)
        # A log line that arrived between the removal and the rows going recreated a directory: sweep.
        uuids = [job.uuid for job in jobs]
        await asyncio.to_thread(self.logs.release)
        await asyncio.to_thread(_remove_job_dirs, self.storage, uuids)
        if self.hub.relay is not None and uuids:
            self._resweeps.append((asyncio.get_running_loop().time() + RESWEEP_DELAY, uuids))


def _take(ordered: dict[int, None], count: int) -> list[int]:
    """Remove and return the first `count` keys of an ordered set."""
    batch = []
    for key in ordered:
        batch.append(key)
        if len(batch) == count:
            break
    for key in batch:
        del ordered[key]
    return batch
