"""Tasks as the web interface and the workers' keep-alive see them: lookup, status requests, touches."""

from __future__ import annotations

import time
from dataclasses import dataclass

from flamenco_manager.model import Job, Task, TaskStatus, Worker
from flamenco_manager.services.errors import NotFound
from flamenco_manager.services.statemachine import StateMachine
from flamenco_manager.services.tasklogs import TaskLogs
from flamenco_manager.store import Store


@dataclass(slots=True)
class TaskDetails:
    task: Task
    job: Job
    worker: Worker | None
    failed_by: list[Worker]


class Tasks:
    def __init__(self, store: Store, machine: StateMachine, logs: TaskLogs) -> None:
        self.store = store
        self.machine = machine
        self.logs = logs

    def find(self, task_uuid: str) -> Task | None:
        return self.store.get_task(task_uuid)

    def get(self, task_uuid: str, *, missing: str = "task not found") -> tuple[Task, Job]:
        task = self.store.get_task(task_uuid)
        if task is None:
            raise NotFound(missing)
        job = self.store.get_job_by_id(task.job_id)
        if job is None:
            raise NotFound(f"job of task {task_uuid} not found")
        return task, job

    def details(self, task_uuid: str) -> TaskDetails:
        task, job = self.get(task_uuid)
        worker = self.store.get_worker_by_id(task.worker_id) if task.worker_id else None
        return TaskDetails(task, job, worker, self.store.task_failed_by(task.id))

    def set_status(self, task: Task, job: Job, status: str, reason: str) -> None:
        """A status asked for by a person; queueing again forgets which workers failed the task."""
        with self.store.transaction():
            if status == TaskStatus.QUEUED:
                self.store.clear_task_failures(task.id)
            if reason:
                self.logs.manager_line(job.uuid, task.uuid, f"status change to {status} requested: {reason}")
            self.machine.task_status_change(task, status, activity=reason or None, job=job)

    def touch(self, task: Task) -> None:
        """A worker showed it is still running this task; restarts its timeout clock."""
        with self.store.transaction():
            self.store.update_task(task.id, last_touched_at=time.time())
