"""Task scheduling with Flamenco v3's rules: pick, assign and activate in one transaction.

A worker gets its own active task again (after a crash) or the best runnable one: highest job priority,
then task priority, of a type it supports, not failed by it, not blocklisted for it, dependencies done.
"""

from __future__ import annotations

import logging
import time

from flamenco_manager import journal_fields
from flamenco_manager.model import Job, Task, TaskStatus, Worker
from flamenco_manager.services.statemachine import StateMachine
from flamenco_manager.services.tasklogs import TaskLogs
from flamenco_manager.store import Store

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, store: Store, machine: StateMachine, logs: TaskLogs) -> None:
        self.store = store
        self.machine = machine
        self.logs = logs

    def assign(self, worker: Worker) -> tuple[Task, Job] | None:
        """The worker's own active task again, else the best runnable task, now active for this worker.

        Everything happens inside one write transaction on the event loop, so two workers can never be
        handed the same task.
        """
        now = time.time()
        with self.store.transaction():
            task = self.store.find_assigned_active_task(worker.id)
            if task is not None:
                self.store.update_task(task.id, last_touched_at=now)
                task.last_touched_at = now
                job = self.store.get_job_by_id(task.job_id)
                assert job is not None
                log.info(
                    "re-delivering active task worker=%s task=%s",
                    worker.uuid,
                    task.uuid,
                    extra=journal_fields.about(job=job.uuid, task=task.uuid, worker=worker.uuid),
                )
                return task, job
            task = self.store.find_runnable_task(worker)
            if task is None:
                return None
            job = self.store.get_job_by_id(task.job_id)
            assert job is not None
            task.worker_id, task.last_touched_at = worker.id, now
            self.machine.task_status_change(
                task, TaskStatus.ACTIVE, job=job, also={"worker_id": worker.id, "last_touched_at": now}
            )
        # Once the unit went through: an assignment undone (another replica held a row: 503) leaves no line.
        self.logs.manager_line(job.uuid, task.uuid, f"Task assigned to worker {worker.name} ({worker.uuid})")
        log.debug(
            "task assigned worker=%s task=%s job=%s",
            worker.uuid,
            task.uuid,
            job.uuid,
            extra=journal_fields.about(job=job.uuid, task=task.uuid, worker=worker.uuid),
        )
        return task, job
