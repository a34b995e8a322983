"""Job, task, failure, blocklist and scheduling queries of the SQLite store."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any

from flamenco_manager.model import TASK_STATUSES, BlockEntry, Job, NewTask, Task, Worker
from flamenco_manager.store.sqlite_errors import translating
from flamenco_manager.store.sqlite_workers import inserted_id, worker_from_row

_JOB_COLUMNS = frozenset(
    {"status", "activity", "priority", "worker_tag_id", "updated_at", "delete_requested_at", "name"}
)
_TASK_COLUMNS = frozenset(
    {
        "status",
        "activity",
        "last_update_key",
        "worker_id",
        "last_touched_at",
        "steps_completed",
        "steps_total",
        "updated_at",
        "priority",
    }
)


def _job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        uuid=row["uuid"],
        name=row["name"],
        job_type=row["job_type"],
        type_etag=row["type_etag"],
        priority=row["priority"],
        status=row["status"],
        activity=row["activity"],
        settings_json=row["settings"],
        metadata_json=row["metadata"],
        submitter_platform=row["submitter_platform"],
        shaman_checkout_id=row["shaman_checkout_id"],
        worker_tag_id=row["worker_tag_id"],
        steps_completed=row["steps_completed"],
        steps_total=row["steps_total"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        delete_requested_at=row["delete_requested_at"],
    )


def _task(row: sqlite3.Row) -> Task:
    return Task(
        id=row["id"],
        uuid=row["uuid"],
        job_id=row["job_id"],
        index_in_job=row["index_in_job"],
        name=row["name"],
        type=row["type"],
        priority=row["priority"],
        status=row["status"],
        worker_id=row["worker_id"],
        last_touched_at=row["last_touched_at"],
        commands_json=row["commands"],
        activity=row["activity"],
        steps_completed=row["steps_completed"],
        steps_total=row["steps_total"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_update_key=row["last_update_key"],
    )


def _marks(values: list) -> str:
    return ",".join("?" * len(values))


@translating
class JobQueries:
    conn: sqlite3.Connection

    def create_job(self, job: Job) -> Job:
        """Store the job row alone; tasks follow with `add_tasks` and `add_dependencies`."""
        cur = self.conn.execute(
            "INSERT INTO jobs (uuid, name, job_type, type_etag, priority, status, activity, settings,"
            " metadata, submitter_platform, shaman_checkout_id, worker_tag_id, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job.uuid,
                job.name,
                job.job_type,
                job.type_etag,
                job.priority,
                job.status,
                job.activity,
                job.settings_json,
                job.metadata_json,
                job.submitter_platform,
                job.shaman_checkout_id,
                job.worker_tag_id,
                job.created_at,
                job.updated_at,
            ),
        )
        job_id = inserted_id(cur)
        self.conn.executemany(
            "INSERT INTO job_task_counts (job_id, status, n) VALUES (?, ?, 0)",
            [(job_id, status) for status in sorted(TASK_STATUSES)],
        )
        created = self.get_job_by_id(job_id)
        assert created is not None
        return created

    def add_tasks(self, job: Job, tasks: list[NewTask], first_index: int) -> None:
        """Insert queued tasks numbered from `first_index` (1-based, as `index_in_job`)."""
        self.conn.executemany(
            "INSERT INTO tasks (uuid, job_id, index_in_job, name, type, priority, status, commands,"
            " steps_total, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?)",
            [
                (
                    t.uuid,
                    job.id,
                    first_index + offset,
                    t.name,
                    t.type,
                    t.priority,
                    json.dumps(t.commands),
                    t.steps_total,
                    job.created_at,
                    job.created_at,
                )
                for offset, t in enumerate(tasks)
            ],
        )

    def add_dependencies(self, job: Job, pairs: list[tuple[int, int]]) -> None:
        """Dependencies as (task index_in_job, index_in_job of the task it waits for)."""
        self.conn.executemany(
            "INSERT OR IGNORE INTO task_dependencies (task_id, dependency_id)"
            " SELECT t.id, d.id FROM tasks t, tasks d"
            " WHERE t.job_id = ?1 AND t.index_in_job = ?2 AND d.job_id = ?1 AND d.index_in_job = ?3",
            [(job.id, task_index, dep_index) for task_index, dep_index in pairs],
        )

    def get_job(self, uuid: str) -> Job | None:
        row = self.conn.execute("SELECT * FROM jobs WHERE uuid = ?", (uuid,)).fetchone()
        return _job(row) if row else None

    def get_job_by_id(self, job_id: int) -> Job | None:
        row = self.conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row) if row else None

    def list_jobs(self) -> list[Job]:
        return [_job(r) for r in self.conn.execute("SELECT * FROM jobs ORDER BY created_at, id")]

    def jobs_with_status(self, statuses: Iterable[str]) -> list[Job]:
        wanted = list(statuses)
        rows = self.conn.execute(f"SELECT * FROM jobs WHERE status IN ({_marks(wanted)})", wanted)
        return [_job(r) for r in rows]

    def jobs_to_delete(self) -> list[Job]:
        return [
            _job(r) for r in self.conn.execute("SELECT * FROM jobs WHERE delete_requested_at IS NOT NULL")
        ]

    def mark_jobs_for_deletion(
        self, *, updated_up_to: float, now: float, skip_statuses: Iterable[str]
    ) -> list[int]:
        skipped = list(skip_statuses)
        rows = self.conn.execute(
            "UPDATE jobs SET delete_requested_at = ?, updated_at = ?"
            f" WHERE updated_at <= ? AND status NOT IN ({_marks(skipped)}) RETURNING id",
            (now, now, updated_up_to, *skipped),
        ).fetchall()
        return sorted(r[0] for r in rows)

    def update_job(self, job_id: int, **fields: Any) -> None:
        unknown = set(fields) - _JOB_COLUMNS
        if unknown:
            raise ValueError(f"not a job column: {sorted(unknown)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        self.conn.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*fields.values(), job_id))

    def delete_job(self, job_id: int) -> None:
        self.conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def delete_tasks_of_job(self, job_id: int, limit: int) -> int:
        cur = self.conn.execute(
            "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks WHERE job_id = ? LIMIT ?)", (job_id, limit)
        )
        return cur.rowcount

    def job_task_counts(self, job_id: int) -> dict[str, int]:
        rows = self.conn.execute("SELECT status, n FROM job_task_counts WHERE job_id = ?", (job_id,))
        return {r[0]: r[1] for r in rows}

    def count_jobs_by_status(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall()
        return {r[0]: r[1] for r in rows}

    def count_tasks_by_status(self, statuses: Iterable[str]) -> dict[str, int]:
        wanted = list(statuses)
        # Every job has a row per status, mostly 0: testing `n` first looks up only the jobs that count
        # (1,000 jobs: under a millisecond, where joining every row took several).
        rows = self.conn.execute(
            "SELECT c.status, sum(c.n) FROM job_task_counts c"
            f" WHERE c.n > 0 AND c.status IN ({_marks(wanted)}) AND NOT EXISTS"
            " (SELECT 1 FROM jobs j WHERE j.id = c.job_id AND j.delete_requested_at IS NOT NULL)"
            " GROUP BY c.status",
            wanted,
        ).fetchall()
        return {r[0]: r[1] for r in rows}

    # Tasks.

    def get_task(self, uuid: str) -> Task | None:
        row = self.conn.execute("SELECT * FROM tasks WHERE uuid = ?", (uuid,)).fetchone()
        return _task(row) if row else None

    def get_task_by_id(self, task_id: int) -> Task | None:
        row = self.conn.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return _task(row) if row else None

    def tasks_of_job(self, job_id: int) -> list[Task]:
        rows = self.conn.execute("SELECT * FROM tasks WHERE job_id = ? ORDER BY index_in_job", (job_id,))
        return [_task(r) for r in rows]

    def tasks_of_job_with_status(self, job_id: int, statuses: Iterable[str]) -> list[Task]:
        wanted = list(statuses)
        rows = self.conn.execute(
            f"SELECT * FROM tasks WHERE job_id = ? AND status IN ({_marks(wanted)}) ORDER BY index_in_job",
            (job_id, *wanted),
        )
        return [_task(r) for r in rows]

    def tasks_of_worker(self, worker_id: int, statuses: Iterable[str]) -> list[Task]:
        wanted = list(statuses)
        rows = self.conn.execute(
            f"SELECT * FROM tasks WHERE worker_id = ? AND status IN ({_marks(wanted)}) ORDER BY id",
            (worker_id, *wanted),
        )
        return [_task(r) for r in rows]

    def last_task_of_worker(self, worker_id: int) -> Task | None:
        row = self.conn.execute(
            "SELECT * FROM tasks WHERE worker_id = ?"
            " ORDER BY status = 'active' DESC, updated_at DESC LIMIT 1",
            (worker_id,),
        ).fetchone()
        return _task(row) if row else None

    def update_task(self, task_id: int, **fields: Any) -> None:
        unknown = set(fields) - _TASK_COLUMNS
        if unknown:
            raise ValueError(f"not a task column: {sorted(unknown)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        self.conn.execute(f"UPDATE tasks SET {assignments} WHERE id = ?", (*fields.values(), task_id))

    def set_tasks_status(self, task_ids: list[int], status: str, *, activity: str, now: float) -> None:
        """Mass status change; `queued` resets the steps, `completed` fills them."""
        self.conn.executemany(
            "UPDATE tasks SET status = ?1, activity = ?2, updated_at = ?3, steps_completed = CASE ?1"
            " WHEN 'queued' THEN 0 WHEN 'completed' THEN steps_total ELSE steps_completed END WHERE id = ?4",
            [(status, activity, now, task_id) for task_id in task_ids],
        )

    def task_has_dependents(self, task_id: int) -> bool:
        row = self.conn.execute("SELECT 1 FROM task_dependencies WHERE dependency_id = ? LIMIT 1", (task_id,))
        return row.fetchone() is not None

    def active_tasks_untouched_since(self, before: float) -> list[Task]:
        rows = self.conn.execute(
            "SELECT * FROM tasks WHERE status = 'active'"
            " AND (last_touched_at IS NULL OR last_touched_at <= ?)",
            (before,),
        )
        return [_task(r) for r in rows]

    # Scheduling.

    def find_assigned_active_task(self, worker_id: int) -> Task | None:
        row = self.conn.execute(
            "SELECT t.* FROM tasks t JOIN jobs j ON j.id = t.job_id"
            " WHERE t.worker_id = ? AND t.status = 'active'"
            " AND j.status IN ('active', 'queued') ORDER BY t.id LIMIT 1",
            (worker_id,),
        ).fetchone()
        return _task(row) if row else None

    def find_runnable_task(self, worker: Worker) -> Task | None:
        """The best queued or soft-failed task this worker may run, or None (rules: `services.scheduler`).

        One query however many jobs are queued and however big they are: jobs in priority order (then
        age), and for each, per task type of the worker, its first runnable task of that type in order
        (priority, then position) by a walk of the per-type index that stops at the first the worker may
        run; the best of those is the job's, and the first job that has one wins. A job whose tasks are
        all of other types costs an index probe per supported type; a 20,000-task job costs no more than
        a small one (sorting all its tasks took ~20 ms per assignment).
        """
        types = list(dict.fromkeys(worker.supported_task_types))
        if not types:
            return None
        firsts = " UNION ALL ".join(
            "SELECT * FROM (SELECT t.id, t.priority, t.index_in_job FROM tasks t INDEXED BY tasks_runnable"
            f" WHERE t.job_id = j.id AND t.type = ?{n} AND t.status IN ('queued', 'soft-failed')"
            " AND t.waiting_on = 0"
            " AND NOT EXISTS (SELECT 1 FROM task_failures f WHERE f.task_id = t.id AND f.worker_id = ?1)"
            " AND NOT EXISTS (SELECT 1 FROM job_blocks b"
            " WHERE b.job_id = t.job_id AND b.worker_id = ?1 AND b.task_type = t.type)"
            " ORDER BY t.priority DESC, t.index_in_job LIMIT 1)"
            for n in range(2, len(types) + 2)
        )
        row = self.conn.execute(
            "SELECT * FROM tasks WHERE id = (SELECT (SELECT id FROM ("
            + firsts
            + ") ORDER BY priority DESC, index_in_job LIMIT 1) AS task_id"
            " FROM jobs j INDEXED BY jobs_schedulable"
            " WHERE j.runnable_tasks > 0 AND j.status IN ('active', 'queued') AND (j.worker_tag_id IS NULL"
            " OR j.worker_tag_id IN (SELECT tag_id FROM worker_tag_membership WHERE worker_id = ?1))"
            " AND task_id IS NOT NULL ORDER BY j.priority DESC, j.created_at, j.id LIMIT 1)",
            (worker.id, *types),
        ).fetchone()
        return _task(row) if row else None

    # Failures and blocklist.

    def add_task_failure(self, task_id: int, worker_id: int, now: float) -> None:
        self.conn.execute(
            "INSERT OR IGNORE INTO task_failures (task_id, worker_id, created_at) VALUES (?, ?, ?)",
            (task_id, worker_id, now),
        )

    def task_failure_count(self, task_id: int) -> int:
        return self.conn.execute(
            "SELECT count(*) FROM task_failures WHERE task_id = ?", (task_id,)
        ).fetchone()[0]

    def task_failed_by(self, task_id: int) -> list[Worker]:
        rows = self.conn.execute(
            "SELECT w.* FROM workers w JOIN task_failures f ON f.worker_id = w.id WHERE f.task_id = ?"
            " ORDER BY f.created_at",
            (task_id,),
        )
        return [worker_from_row(r) for r in rows]

    def clear_task_failures(self, task_id: int) -> None:
        self.conn.execute("DELETE FROM task_failures WHERE task_id = ?", (task_id,))

    def clear_job_failures(self, job_id: int) -> None:
        self.conn.execute(
            "DELETE FROM task_failures WHERE task_id IN (SELECT id FROM tasks WHERE job_id = ?)", (job_id,)
        )

    def count_worker_failures_in_job(self, job_id: int, worker_id: int, task_type: str) -> int:
        return self.conn.execute(
            "SELECT count(*) FROM task_failures f JOIN tasks t ON t.id = f.task_id"
            " WHERE t.job_id = ? AND f.worker_id = ? AND t.type = ?",
            (job_id, worker_id, task_type),
        ).fetchone()[0]

    def add_job_block(self, job_id: int, worker_id: int, task_type: str, now: float) -> None:
        self.conn.execute(
            "INSERT OR IGNORE INTO job_blocks (job_id, worker_id, task_type, created_at) VALUES (?, ?, ?, ?)",
            (job_id, worker_id, task_type, now),
        )

    def job_blocklist(self, job_id: int) -> list[BlockEntry]:
        rows = self.conn.execute(
            "SELECT b.worker_id, w.uuid, w.name, b.task_type"
            " FROM job_blocks b JOIN workers w ON w.id = b.worker_id"
            " WHERE b.job_id = ? ORDER BY w.name, b.task_type",
            (job_id,),
        )
        return [BlockEntry(worker_id=r[0], worker_uuid=r[1], worker_name=r[2], task_type=r[3]) for r in rows]

    def remove_job_blocks(self, job_id: int, entries: list[tuple[int, str]]) -> None:
        self.conn.executemany(
            "DELETE FROM job_blocks WHERE job_id = ? AND worker_id = ? AND task_type = ?",
            [(job_id, worker_id, task_type) for worker_id, task_type in entries],
        )

    def clear_job_blocklist(self, job_id: int) -> None:
        self.conn.execute("DELETE FROM job_blocks WHERE job_id = ?", (job_id,))

    # Last rendered.

    def set_last_rendered(self, job_id: int) -> None:
        self.conn.execute(
            "INSERT INTO last_rendered (singleton, job_id) VALUES (1, ?)"
            " ON CONFLICT (singleton) DO UPDATE SET job_id = excluded.job_id",
            (job_id,),
        )

    def get_last_rendered(self) -> Job | None:
        row = self.conn.execute(
            "SELECT j.* FROM jobs j JOIN last_rendered l ON l.job_id = j.id WHERE l.singleton = 1"
        ).fetchone()
        return _job(row) if row else None
