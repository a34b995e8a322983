"""Job and task state machine: every status change and its cascades, as Flamenco v3 defines them.

All methods run inside a store transaction on the event loop, so a change and its cascade are atomic.
"""

from __future__ import annotations

import logging
import time

from flamenco_manager import journal_fields, payloads
from flamenco_manager.model import Job, JobStatus, Task, TaskStatus, Worker
from flamenco_manager.services.events import Hub
from flamenco_manager.services.tasklogs import TaskLogs
from flamenco_manager.store import Store

log = logging.getLogger(__name__)

# A job fails once this fraction of its tasks has failed.
JOB_FAIL_FRACTION = 0.10

_CANCELABLE = (TaskStatus.ACTIVE, TaskStatus.QUEUED, TaskStatus.SOFT_FAILED)
_STUCK_JOB_STATUSES = (JobStatus.CANCEL_REQUESTED, JobStatus.REQUEUEING, JobStatus.PAUSE_REQUESTED)


class StateMachine:
    def __init__(self, store: Store, hub: Hub, logs: TaskLogs) -> None:
        self.store = store
        self.hub = hub
        self.logs = logs
        # Tasks that became completed since the Manager started; the farm overview counts per sample from
        # it (a unit rolled back after the change still counts: a rare off-by-one on a chart).
        self.tasks_completed = 0

    # Tasks.

    def task_status_change(
        self,
        task: Task,
        new: str,
        *,
        activity: str | None = None,
        job: Job | None = None,
        also: dict | None = None,
    ) -> None:
        """Give one task a new status and let its job react; `also` are more columns for the same write."""
        now = time.time()
        old = task.status
        if job is None:
            job = self.store.get_job_by_id(task.job_id)
            assert job is not None
        if old == new:
            same: dict = dict(also or {})
            if activity is not None and activity != task.activity:
                same.update(activity=activity, updated_at=now)
                task.activity, task.updated_at = activity, now
            if same:
                self.store.update_task(task.id, **same)
            if activity is not None:
                self._publish_task(task, job, None)
            return
        if new == TaskStatus.SOFT_FAILED and job.status == JobStatus.PAUSE_REQUESTED:
            # A pause was asked for: the soft-failed task would have been paused had it not been running.
            new = TaskStatus.PAUSED
        fields: dict = {**(also or {}), "status": new, "updated_at": now}
        if activity is not None:
            fields["activity"] = activity
            task.activity = activity
        if new == TaskStatus.COMPLETED:
            fields["steps_completed"] = task.steps_total
        elif new == TaskStatus.QUEUED:
            fields["steps_completed"] = 0
        self.store.update_task(task.id, **fields)
        task.status, task.updated_at = new, now
        if new == TaskStatus.COMPLETED:
            self.tasks_completed += 1
        task.steps_completed = fields.get("steps_completed", task.steps_completed)
        self.logs.manager_line(job.uuid, task.uuid, f"task changed status {old} -> {new}")
        self._publish_task(task, job, old)
        self._wake_for_task(task, old, new)
        self._job_reacts(job, new)

    def _wake_for_task(self, task: Task, old: str, new: str) -> None:
        if old == TaskStatus.ACTIVE and task.worker_id is not None:
            self.hub.wake_worker(task.worker_id)  # a held may-i-run has news
        if new in (TaskStatus.QUEUED, TaskStatus.SOFT_FAILED) or (
            new == TaskStatus.COMPLETED and self.store.task_has_dependents(task.id)
        ):
            self.hub.work_available()

    def _publish_task(self, task: Task, job: Job, previous: str | None) -> None:
        def build() -> dict:
            worker = self.store.get_worker_by_id(task.worker_id) if task.worker_id else None
            return payloads.task_event(task, job.uuid, worker, previous)

        self.hub.publish("/task", build, job_id=job.uuid, task_id=task.uuid)
        self.publish_job(job)

    def publish_job(
        self, job: Job, *, previous: str | None = None, refresh_tasks: bool = False, was_deleted: bool = False
    ) -> None:
        def build() -> dict:
            fresh = self.store.get_job_by_id(job.id) or job
            return payloads.job_event(
                fresh, previous_status=previous, refresh_tasks=refresh_tasks, was_deleted=was_deleted
            )

        self.hub.publish("/jobs", build, job_id=job.uuid)

    def _job_reacts(self, job: Job, task_status: str) -> None:
        """How a task's new status moves its job (a task becoming active makes its job active, …)."""
        status = job.status
        if task_status == TaskStatus.QUEUED:
            if status == JobStatus.COMPLETED:
                self.job_status_change(job, JobStatus.REQUEUEING, "task was queued")
            return
        if task_status in (TaskStatus.ACTIVE, TaskStatus.SOFT_FAILED):
            if status not in (JobStatus.ACTIVE, JobStatus.CANCEL_REQUESTED, JobStatus.PAUSE_REQUESTED):
                self.job_status_change(job, JobStatus.ACTIVE, "task is active")
            return
        counts = self.store.job_task_counts(job.id)
        total = sum(counts.values())
        if task_status == TaskStatus.COMPLETED:
            if counts.get(TaskStatus.COMPLETED, 0) == total:
                self.job_status_change(job, JobStatus.COMPLETED, "all tasks completed")
                return
        elif task_status == TaskStatus.FAILED:
            if total and counts.get(TaskStatus.FAILED, 0) / total >= JOB_FAIL_FRACTION:
                failed = counts.get(TaskStatus.FAILED, 0)
                self.job_status_change(
                    job, JobStatus.FAILED, f"{failed} of {total} tasks failed ({JOB_FAIL_FRACTION:.0%} limit)"
                )
                return
        elif task_status == TaskStatus.CANCELED and sum(counts.get(s, 0) for s in _CANCELABLE) == 0:
            self.job_status_change(job, JobStatus.CANCELED, "all tasks canceled")
            return
        if status == JobStatus.PAUSE_REQUESTED and counts.get(TaskStatus.ACTIVE, 0) == 0:
            self.job_status_change(job, JobStatus.PAUSED, "no more active tasks")
        elif task_status in (TaskStatus.COMPLETED, TaskStatus.FAILED) and status == JobStatus.QUEUED:
            self.job_status_change(job, JobStatus.ACTIVE, "task finished")

    # Jobs.

    def job_status_change(self, job: Job, new: str, reason: str) -> None:
        """Give a job a new status, then apply cascades until the job's status is stable."""
        while True:
            old = job.status
            now = time.time()
            self.store.update_job(job.id, status=new, activity=reason, updated_at=now)
            job.status, job.activity, job.updated_at = new, reason, now
            log.info(
                "job status changed job=%s from=%s to=%s reason=%r",
                job.uuid,
                old,
                new,
                reason,
                extra=journal_fields.about(job=job.uuid),
            )
            self.hub.status_changed()
            follow_up, refreshed = self._cascade(job, old, new)
            self.publish_job(job, previous=old, refresh_tasks=refreshed)
            if follow_up is None or follow_up[0] == new:
                return
            new, reason = follow_up

    def _cascade(self, job: Job, old: str, new: str) -> tuple[tuple[str, str] | None, bool]:
        """How a job's new status moves its tasks, and which status the job goes to next."""
        if new == JobStatus.CANCEL_REQUESTED:
            changed = self._mass_update(job, _CANCELABLE, TaskStatus.CANCELED)
            return (JobStatus.CANCELED, "all tasks canceled"), changed
        if new == JobStatus.FAILED:
            return None, self._mass_update(job, _CANCELABLE, TaskStatus.CANCELED)
        if new == JobStatus.PAUSE_REQUESTED:
            changed = self._mass_update(job, (TaskStatus.QUEUED, TaskStatus.SOFT_FAILED), TaskStatus.PAUSED)
            if self.store.job_task_counts(job.id).get(TaskStatus.ACTIVE, 0) == 0:
                return (JobStatus.PAUSED, "no more active tasks"), changed
            return None, changed
        if new == JobStatus.REQUEUEING:
            if old == JobStatus.UNDER_CONSTRUCTION:
                changed = False
            elif old == JobStatus.COMPLETED:
                changed = self._mass_update(job, tuple(TaskStatus), TaskStatus.QUEUED)
            else:
                from_statuses = (
                    TaskStatus.CANCELED,
                    TaskStatus.FAILED,
                    TaskStatus.PAUSED,
                    TaskStatus.SOFT_FAILED,
                )
                changed = self._mass_update(job, from_statuses, TaskStatus.QUEUED)
            return (JobStatus.QUEUED, "requeued"), changed
        if new == JobStatus.QUEUED:
            counts = self.store.job_task_counts(job.id)
            if counts.get(TaskStatus.COMPLETED, 0) == sum(counts.values()):
                return (JobStatus.COMPLETED, "all tasks completed"), False
            self.hub.work_available()
        return None, False

    def _mass_update(self, job: Job, from_statuses: tuple[str, ...], to: str) -> bool:
        tasks = [t for t in self.store.tasks_of_job_with_status(job.id, from_statuses) if t.status != to]
        if not tasks:
            return False
        activity = f"Manager set this task to {to} because the job got status {job.status}"
        self.store.set_tasks_status([t.id for t in tasks], to, activity=activity, now=time.time())
        for task in tasks:
            previous = task.status
            self.logs.manager_line(job.uuid, task.uuid, f"task changed status {previous} -> {to}: {activity}")
            if previous == TaskStatus.ACTIVE and task.worker_id is not None:
                self.hub.wake_worker(task.worker_id)
            if self.hub.has_listeners("/task"):
                fresh = self.store.get_task_by_id(task.id)
                if fresh is not None:
                    worker = self.store.get_worker_by_id(fresh.worker_id) if fresh.worker_id else None
                    self.hub.publish(
                        "/task",
                        payloads.task_event(fresh, job.uuid, worker, previous),
                        job_id=job.uuid,
                        task_id=task.uuid,
                    )
        if to == TaskStatus.QUEUED:
            self.hub.work_available()
        return True

    # Workers' tasks and start-up repair.

    def requeue_worker_tasks(self, worker: Worker, reason: str) -> None:
        """Hand a worker's active tasks back: queued, or paused when their job is pausing."""
        for task in self.store.tasks_of_worker(worker.id, (TaskStatus.ACTIVE,)):
            job = self.store.get_job_by_id(task.job_id)
            assert job is not None
            pausing = job.status in (JobStatus.PAUSE_REQUESTED, JobStatus.PAUSED)
            target = TaskStatus.PAUSED if pausing else TaskStatus.QUEUED
            activity = f"Task was queued by Manager because {reason}"
            self.logs.manager_line(job.uuid, task.uuid, activity)
            self.task_status_change(task, target, activity=activity, job=job)

    def check_stuck(self) -> int:
        """Re-apply the cascades to jobs left half-way by an earlier run; returns how many were fixed.

        A job still under construction was never acknowledged to its submitter, so it is removed.
        """
        for job in self.store.jobs_with_status((JobStatus.UNDER_CONSTRUCTION,)):
            log.warning(
                "removing a job whose submission was interrupted job=%s name=%r",
                job.uuid,
                job.name,
                extra=journal_fields.about(job=job.uuid),
            )
            with self.store.transaction():
                self.store.delete_job(job.id)
        stuck = self.store.jobs_with_status(_STUCK_JOB_STATUSES)
        for job in stuck:
            log.info(
                "repairing job left in a transitional status job=%s status=%s",
                job.uuid,
                job.status,
                extra=journal_fields.about(job=job.uuid),
            )
            with self.store.transaction():
                self.job_status_change(job, job.status, f"resumed {job.status} at Manager start")
        return len(stuck)
