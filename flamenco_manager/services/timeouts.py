"""Worker and task timeouts, as Flamenco v3 has them: a task untouched for `task_timeout` fails, a worker
unseen for `worker_timeout` goes to `error` and its tasks are requeued."""

from __future__ import annotations

import asyncio
import logging
import time

from flamenco_manager import journal_fields
from flamenco_manager.model import TaskStatus
from flamenco_manager.services.statemachine import StateMachine
from flamenco_manager.services.tasklogs import TaskLogs
from flamenco_manager.services.workers import Workers
from flamenco_manager.store import Store

log = logging.getLogger(__name__)


class TimeoutChecker:
    def __init__(
        self,
        store: Store,
        workers: Workers,
        machine: StateMachine,
        logs: TaskLogs,
        *,
        task_timeout: float,
        worker_timeout: float,
        initial_delay: float,
        interval: float,
    ) -> None:
        self.store = store
        self.workers = workers
        self.machine = machine
        self.logs = logs
        self.task_timeout = task_timeout
        self.worker_timeout = worker_timeout
        self.initial_delay = initial_delay
        self.interval = interval

    async def run(self) -> None:
        if self.task_timeout <= 0:
            log.info("task_timeout is 0: task and worker timeouts are disabled")
            return
        await asyncio.sleep(self.initial_delay)
        while True:
            try:
                self.check()
            except Exception:
                log.exception("timeout check failed; trying again next interval")
            await asyncio.sleep(self.interval)

    def check(self) -> None:
        now = time.time()
        self.workers.flush_seen()
        for task in self.store.active_tasks_untouched_since(now - self.task_timeout):
            job = self.store.get_job_by_id(task.job_id)
            worker = self.store.get_worker_by_id(task.worker_id) if task.worker_id else None
            assert job is not None
            who = f"{worker.name} ({worker.uuid})" if worker else "an unknown worker"
            touched = task.last_touched_at or task.created_at
            since = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(touched))
            log.warning(
                "task timed out task=%s job=%s worker=%s",
                task.uuid,
                job.uuid,
                worker.uuid if worker else "-",
                extra=journal_fields.about(
                    job=job.uuid, task=task.uuid, worker=worker.uuid if worker else None
                ),
            )
            with self.store.transaction():
                self.logs.manager_line(job.uuid, task.uuid, f"Task timed out: untouched since {since}")
                self.machine.task_status_change(
                    task, TaskStatus.FAILED, activity=f"Task timed out on worker {who}", job=job
                )
        if self.worker_timeout > 0:
            hub = self.workers.hub
            for worker in self.store.workers_not_seen_since(now - self.worker_timeout):
                if not hub.is_held(worker.id):
                    self.workers.time_out(worker)
