"""Task updates sent by workers, and the failure and blocklist rules, as Flamenco v3 applies them.

A `failed` report adds the worker to the task's failure list; a worker that failed too many tasks of one
type in a job is blocklisted for that type in that job; a task failed by enough distinct workers, or with
no other capable worker left, fails for good, otherwise it is soft-failed and may run elsewhere.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from flamenco_manager import journal_fields, payloads
from flamenco_manager.model import Job, JobStatus, Task, TaskStatus, Worker
from flamenco_manager.services.errors import Conflict, Invalid
from flamenco_manager.services.events import Hub
from flamenco_manager.services.statemachine import StateMachine
from flamenco_manager.services.tasklogs import TaskLogs
from flamenco_manager.store import Store

log = logging.getLogger(__name__)


@dataclass(slots=True)
class TaskUpdate:
    status: str | None = None
    activity: str | None = None
    log: str | None = None
    steps_completed: int | None = None


class TaskUpdates:
    def __init__(
        self,
        store: Store,
        hub: Hub,
        machine: StateMachine,
        logs: TaskLogs,
        *,
        blocklist_threshold: int,
        fail_after_softfail_count: int,
    ) -> None:
        self.store = store
        self.hub = hub
        self.machine = machine
        self.logs = logs
        self.blocklist_threshold = blocklist_threshold
        self.fail_after = fail_after_softfail_count

    def apply(self, worker: Worker, task: Task, update: TaskUpdate, *, key: str = "") -> bool:
        """Apply a worker's update; False when `key` says it was applied already (a resend)."""
        if task.worker_id is None:
            raise Conflict(f"task {task.uuid} is not assigned to any worker, so not to you either")
        if task.worker_id != worker.id:
            raise Conflict(f"task {task.uuid} is not assigned to you")
        if key and key == task.last_update_key:
            log.info(
                "ignoring a resent task update worker=%s task=%s key=%s",
                worker.uuid,
                task.uuid,
                key,
                extra=journal_fields.about(task=task.uuid, worker=worker.uuid),
            )
            return False
        if update.status == TaskStatus.SOFT_FAILED:
            raise Invalid("taskStatus", "workers report 'failed'; the Manager decides about soft failure")
        job = self.store.get_job_by_id(task.job_id)
        assert job is not None
        now = time.time()
        fields: dict = {"last_touched_at": now}
        if update.activity is not None:
            fields["activity"] = task.activity = update.activity
        if update.steps_completed is not None:
            fields["steps_completed"] = task.steps_completed = max(
                0, min(update.steps_completed, task.steps_total)
            )
        if len(fields) > 1:
            fields["updated_at"] = task.updated_at = now
        publish = len(fields) > 1
        if key:
            fields["last_update_key"] = task.last_update_key = key
        changes_status = update.status is not None and update.status != task.status
        with self.store.transaction():
            if update.log:
                self.logs.append(job.uuid, task.uuid, update.log, from_worker=True)
            if not changes_status:
                self.store.update_task(task.id, **fields)
                if publish:
                    self._publish(task, job, worker)
            elif task.status != TaskStatus.ACTIVE:
                # The Manager already took the task away (cancel, pause, timeout); the worker's view is stale.
                self.store.update_task(task.id, **fields)
                log.info(
                    "ignoring status from worker for a task that is no longer active worker=%s task=%s"
                    " status=%s reported=%s",
                    worker.uuid,
                    task.uuid,
                    task.status,
                    update.status,
                    extra=journal_fields.about(job=job.uuid, task=task.uuid, worker=worker.uuid),
                )
            elif update.status == TaskStatus.FAILED:
                self.store.update_task(task.id, **fields)
                self._failed(task, job, worker)
            else:
                assert update.status is not None
                self.machine.task_status_change(task, update.status, job=job, also=fields)
        return True

    def _publish(self, task: Task, job: Job, worker: Worker) -> None:
        self.hub.publish(
            "/task",
            lambda: payloads.task_event(task, job.uuid, worker, None),
            job_id=job.uuid,
            task_id=task.uuid,
        )
        self.machine.publish_job(job)

    def _failed(self, task: Task, job: Job, worker: Worker) -> None:
        now = time.time()
        self.store.add_task_failure(task.id, worker.id, now)
        if self._blocklist(task, job, worker, now):
            return
        failures = self.store.task_failure_count(task.id)
        who = f"{failures} worker{'s' if failures != 1 else ''}"
        if failures >= self.fail_after:
            message = f"Task failed by {who}, Manager will mark it as hard failure"
            self.logs.manager_line(job.uuid, task.uuid, message)
            self.machine.task_status_change(task, TaskStatus.FAILED, job=job)
            return
        if self.store.count_workers_able(job.id, task.type) <= 1:
            message = f"Task failed by {who} and no other worker can run tasks of type {task.type}"
            self.logs.manager_line(job.uuid, task.uuid, message)
            self.machine.task_status_change(task, TaskStatus.FAILED, job=job)
            if job.status not in (JobStatus.FAILED, JobStatus.CANCELED):
                self.machine.job_status_change(job, JobStatus.FAILED, f"no workers left to run {task.name}")
            return
        left = self.fail_after - failures
        message = (
            f"Task failed by {who}, Manager will mark it as soft failure. "
            f"{left} more failure{'s' if left != 1 else ''} will cause hard failure."
        )
        self.logs.manager_line(job.uuid, task.uuid, message)
        self.machine.task_status_change(task, TaskStatus.SOFT_FAILED, job=job)

    def _blocklist(self, task: Task, job: Job, worker: Worker, now: float) -> bool:
        """Blocklist the worker for this job's task type once it failed too often; True if the job failed."""
        if self.store.count_worker_failures_in_job(job.id, worker.id, task.type) < self.blocklist_threshold:
            return False
        self.store.add_job_block(job.id, worker.id, task.type, now)
        log.info(
            "worker blocklisted worker=%s job=%s task_type=%s",
            worker.uuid,
            job.uuid,
            task.type,
            extra=journal_fields.about(job=job.uuid, worker=worker.uuid),
        )
        self.logs.manager_line(
            job.uuid,
            task.uuid,
            f"Worker {worker.name} ({worker.uuid}) is blocklisted for tasks of type {task.type} of this job",
        )
        if self.store.count_workers_able(job.id, task.type) == 0:
            self.machine.task_status_change(task, TaskStatus.FAILED, job=job)
            if job.status not in (JobStatus.FAILED, JobStatus.CANCELED):
                self.machine.job_status_change(
                    job, JobStatus.FAILED, f"no more workers left to run tasks of type {task.type}"
                )
            return True
        for failed in self.store.tasks_of_worker(worker.id, (TaskStatus.FAILED,)):
            if failed.job_id == job.id and failed.id != task.id:
                self.machine.task_status_change(
                    failed,
                    TaskStatus.QUEUED,
                    activity=f"Requeued: worker {worker.name} was blocklisted",
                    job=job,
                )
        return False
