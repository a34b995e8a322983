"""Manager replicas as real processes on one PostgreSQL database, and what their workers' logs tell.

`Replica` is a `ManagerProcess` whose `database:` is a PostgreSQL URL and whose task logs go to a storage
directory all replicas share (as a farm's replicas share a network file system). `worker_runs` reads our
worker daemon's own log: when each worker started and ended each task, and when it moved to another
Manager URL. Used by tests/system/test_replica_failover.py and bench/replica_failover.
"""

from __future__ import annotations

import datetime
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.manager_process import ManagerProcess

# What the election in `Manager._elect` logs when a replica takes or loses the farm-wide loops.
LOOPS_TAKEN = "running the farm-wide background loops on this replica"
LOOPS_LOST = "no longer running the farm-wide background loops"

# Our worker's log: "2026-01-01 12:00:00,123 INFO     flamenco_worker.worker: task=UUID started: sleep".
_TASK_LINE = re.compile(r"^(\S+ \S+) \S+\s+flamenco_worker\.\w+: task=(\S+) (started|ended|outcome=(\S+))")
# "… WARNING  flamenco_worker.manager_client: manager=http://a/ → http://b/ reason=…".
_SWITCH_LINE = re.compile(r"^(\S+ \S+) \S+\s+flamenco_worker\.manager_client: manager=(\S+) → (\S+) reason=")


@dataclass
class Replica(ManagerProcess):
    """One Manager replica: its own directory, port and log; the shared database and storage."""

    database: str = ""
    storage: Path | None = None

    def config_yaml(self) -> str:
        assert self.database and self.storage is not None
        return (
            "_meta: {version: 3}\n"
            f"listen: 127.0.0.1:{self.port}\n"
            f"database: {self.database}\n"
            f"local_manager_storage_path: {self.storage}\n"
            f"shared_storage_path: {self.storage.parent / 'shared'}\n" + self.extra_yaml
        )

    def runs_farm_loops(self, since: int = 0) -> bool:
        """Whether this replica's log (from byte `since`) says it holds the farm-wide loops now."""
        text = self.log()[since:]
        taken, lost = text.rfind(LOOPS_TAKEN), text.rfind(LOOPS_LOST)
        return taken >= 0 and taken > lost


def parse_time(text: str) -> float:
    """A worker log line's local timestamp ("2026-01-01 12:00:00,123") as epoch seconds."""
    return datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()


@dataclass
class Run:
    """One worker's run of one task, from its own log."""

    worker: str
    task: str
    started: float
    ended: float | None = None
    outcome: str = ""


@dataclass
class WorkerLog:
    """What one worker's log says: its runs and its moves between Manager URLs (time, old, new)."""

    worker: str
    runs: list[Run] = field(default_factory=list)
    switches: list[tuple[float, str, str]] = field(default_factory=list)


def read_worker_log(worker: str, text: str) -> WorkerLog:
    result = WorkerLog(worker)
    open_runs: dict[str, Run] = {}
    for line in text.splitlines():
        if m := _SWITCH_LINE.match(line):
            result.switches.append((parse_time(m.group(1)), m.group(2), m.group(3)))
            continue
        m = _TASK_LINE.match(line)
        if not m:
            continue
        at, task, what = parse_time(m.group(1)), m.group(2), m.group(3)
        if what == "started":
            run = Run(worker, task, at)
            open_runs[task] = run
            result.runs.append(run)
        elif what == "ended" and task in open_runs:
            open_runs.pop(task).ended = at
        elif m.group(4) and task in open_runs:
            open_runs[task].outcome = m.group(4)
    return result


def overlapping_runs(logs: list[WorkerLog]) -> list[tuple[Run, Run]]:
    """Pairs of runs of one task by two different workers whose times overlap: a task run twice at once.

    A run still open when the log ends counts as running until then (end of time).
    """
    by_task: dict[str, list[Run]] = defaultdict(list)
    for log in logs:
        for run in log.runs:
            by_task[run.task].append(run)
    found = []
    for runs in by_task.values():
        runs.sort(key=lambda r: r.started)
        for i, first in enumerate(runs):
            for second in runs[i + 1 :]:
                first_end = first.ended if first.ended is not None else float("inf")
                if second.worker != first.worker and second.started < first_end:
                    found.append((first, second))
    return found


def assignments(task_log: str) -> list[str]:
    """The workers a task was assigned to, in order, from the Manager's own lines in its task log."""
    return re.findall(r"Task assigned to worker \S+ \((\S+)\)", task_log)


def task_log_path(storage: Path, job: str, task: str) -> Path:
    """Where the Manager keeps a task's log under its storage directory (`services.tasklogs`)."""
    return storage / f"job-{job[:4]}" / job / f"task-{task}.txt"


@dataclass
class Audit:
    """What the Manager holds against what the workers did (their logs), per task; empty lists: all good."""

    tasks: int = 0
    #: Pairs of runs of one task by two workers at the same time.
    overlaps: list[tuple[Run, Run]] = field(default_factory=list)
    #: Tasks the Manager does not have as completed.
    not_completed: list[str] = field(default_factory=list)
    #: Tasks no worker's log shows completed (the Manager has a completion nobody reported).
    never_completed: list[str] = field(default_factory=list)
    #: Tasks completed by more than one run (one after the other).
    completed_twice: list[str] = field(default_factory=list)
    #: Tasks whose log on the Manager lacks the line their command sent.
    lines_lost: list[str] = field(default_factory=list)
    #: Tasks whose log on the Manager holds that line more than once (an update applied twice).
    lines_doubled: list[str] = field(default_factory=list)
    #: Tasks the Manager assigned more than once (not wrong in itself: a task handed back runs again).
    reassigned: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        """Task updates lost: a completion or a log line a worker sent that the Manager does not have."""
        return len(self.not_completed) + len(self.lines_lost)


def audit(
    tasks: list[dict], task_logs: dict[str, str], worker_logs: list[WorkerLog], expected: dict[str, str]
) -> Audit:
    """Check `tasks` (the API's task list) and their logs (task id → text) against the workers' logs.

    `expected` maps a task name to the line its command logs once per run ("slept 1s" for a sleep task).
    """
    result = Audit(tasks=len(tasks))
    result.overlaps = overlapping_runs(worker_logs)
    completed: dict[str, int] = defaultdict(int)
    for log in worker_logs:
        for run in log.runs:
            if run.outcome == "completed":
                completed[run.task] += 1
    for task in tasks:
        task_id, text = task["id"], task_logs.get(task["id"], "")
        if task["status"] != "completed":
            result.not_completed.append(task_id)
        if completed[task_id] == 0:
            result.never_completed.append(task_id)
        elif completed[task_id] > 1:
            result.completed_twice.append(task_id)
        count = text.count(expected[task["name"]])
        if count < max(1, completed[task_id]):
            result.lines_lost.append(task_id)
        elif count > max(1, completed[task_id]):
            result.lines_doubled.append(task_id)
        if len(assignments(text)) > 1:
            result.reassigned.append(task_id)
    return result
