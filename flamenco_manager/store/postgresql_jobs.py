"""Job, task, failure, blocklist and scheduling queries of the PostgreSQL store."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import psycopg

from flamenco_manager.model import TASK_STATUSES, BlockEntry, Job, NewTask, Task, Worker
from flamenco_manager.store.postgresql_errors import translating
from flamenco_manager.store.postgresql_workers import Row, assignments, plain, worker_from_row

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


def _job(row: Row) -> Job:
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


def _task(row: Row) -> Task:
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


# The scheduler's query: jobs in order, and for each the first task the worker may run, found by walking
# the job's runnable tasks in order (index tasks_runnable_in_order); the walk stops at the first job that
# has one, so an assignment costs the same for a job of ten tasks or of twenty thousand.
FIND_RUNNABLE_TASK = (
    "SELECT t.* FROM (SELECT j.id, j.priority, j.created_at FROM jobs j"
    " WHERE j.runnable_tasks > 0 AND j.status IN ('active', 'queued') AND (j.worker_tag_id IS NULL"
    " OR j.worker_tag_id IN (SELECT tag_id FROM worker_tag_membership WHERE worker_id = %(w)s))"
    " ORDER BY j.priority DESC, j.created_at, j.id) j"
    " CROSS JOIN LATERAL (SELECT t.* FROM tasks t WHERE t.job_id = j.id"
    " AND t.status IN ('queued', 'soft-failed') AND t.waiting_on = 0 AND t.type = ANY(%(types)s)"
    " AND NOT EXISTS (SELECT 1 FROM task_failures f WHERE f.task_id = t.id AND f.worker_id = %(w)s)"
    " AND NOT EXISTS (SELECT 1 FROM job_blocks b"
    " WHERE b.job_id = t.job_id AND b.worker_id = %(w)s AND b.task_type = t.type)"
    " ORDER BY t.priority DESC, t.index_in_job LIMIT 1 FOR UPDATE SKIP LOCKED) t"
    " ORDER BY j.priority DESC, j.created_at, j.id LIMIT 1"
)


@translating
class JobQueries:
    conn: psycopg.Connection[dict[str, Any]]

    def create_job(self, job: Job) -> Job:
        """Store the job row alone (and its zero task counts); tasks follow with `add_tasks`."""
        row = self.conn.execute(
            "WITH j AS (INSERT INTO jobs (uuid, name, job_type, type_etag, priority, status, activity,"
            " settings, metadata, submitter_platform, shaman_checkout_id, worker_tag_id, created_at,"
            " updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING *),"
            " c AS (INSERT INTO job_task_counts (job_id, status, n)"
            " SELECT j.id, s, 0 FROM j, unnest(%s::text[]) AS s)"
            " SELECT * FROM j",
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
                sorted(TASK_STATUSES),
            ),
        ).fetchone()
        assert row is not None
        return _job(row)

    def add_tasks(self, job: Job, tasks: list[NewTask], first_index: int) -> None:
        """Insert queued tasks numbered from `first_index` (1-based, as `index_in_job`).

        One statement for all of them: the counting trigger then runs once, not once per task.
        """
        if not tasks:
            return
        self.conn.execute(
            "INSERT INTO tasks (uuid, job_id, index_in_job, name, type, priority, status, commands,"
            " steps_total, created_at, updated_at)"
            " SELECT u, %(job)s, %(first)s + o - 1, n, ty, p, 'queued', c, st, %(at)s, %(at)s"
            " FROM unnest(%(uuids)s::text[], %(names)s::text[], %(types)s::text[], %(prios)s::integer[],"
            " %(cmds)s::text[], %(steps)s::integer[]) WITH ORDINALITY AS x(u, n, ty, p, c, st, o)",
            {
                "job": job.id,
                "first": first_index,
                "at": job.created_at,
                "uuids": [t.uuid for t in tasks],
                "names": [t.name for t in tasks],
                "types": [t.type for t in tasks],
                "prios": [t.priority for t in tasks],
                "cmds": [json.dumps(t.commands) for t in tasks],
                "steps": [t.steps_total for t in tasks],
            },
        )

    def add_dependencies(self, job: Job, pairs: list[tuple[int, int]]) -> None:
        """Dependencies as (task index_in_job, index_in_job of the task it waits for).

        One statement, one round trip: each index is looked up through the (job_id, index_in_job) key, one
        row per pair (LATERAL … LIMIT 1), whatever the statistics of a tasks table that grew inside this
        very unit say. Fetching the job's ids instead cost every chunk of a submission a read of all its
        tasks so far (quadratic in the job's size). Pairs naming an index the job lacks are skipped.
        """
        if not pairs:
            return
        self.conn.execute(
            "INSERT INTO task_dependencies (task_id, dependency_id)"
            " SELECT t.id, d.id FROM unnest(%(waiting)s::integer[], %(waited)s::integer[]) AS p(ti, di)"
            " CROSS JOIN LATERAL (SELECT id FROM tasks"
            "  WHERE job_id = %(job)s AND index_in_job = p.ti LIMIT 1) t"
            " CROSS JOIN LATERAL (SELECT id FROM tasks"
            "  WHERE job_id = %(job)s AND index_in_job = p.di LIMIT 1) d"
            " ON CONFLICT DO NOTHING",
            {"job": job.id, "waiting": [t for t, _ in pairs], "waited": [d for _, d in pairs]},
        )

    def get_job(self, uuid: str) -> Job | None:
        row = self.conn.execute("SELECT * FROM jobs WHERE uuid = %s", (uuid,)).fetchone()
        return _job(row) if row else None

    def get_job_by_id(self, job_id: int) -> Job | None:
        row = self.conn.execute("SELECT * FROM jobs WHERE id = %s", (job_id,)).fetchone()
        return _job(row) if row else None

    def list_jobs(self) -> list[Job]:
        return [_job(r) for r in self.conn.execute("SELECT * FROM jobs ORDER BY created_at, id").fetchall()]

    def jobs_with_status(self, statuses: Iterable[str]) -> list[Job]:
        rows = self.conn.execute(
            "SELECT * FROM jobs WHERE status = ANY(%s) ORDER BY id", (list(statuses),)
        ).fetchall()
        return [_job(r) for r in rows]

    def jobs_to_delete(self) -> list[Job]:
        rows = self.conn.execute(
            "SELECT * FROM jobs WHERE delete_requested_at IS NOT NULL ORDER BY id"
        ).fetchall()
        return [_job(r) for r in rows]

    def mark_jobs_for_deletion(
        self, *, updated_up_to: float, now: float, skip_statuses: Iterable[str]
    ) -> list[int]:
        rows = self.conn.execute(
            "UPDATE jobs SET delete_requested_at = %s, updated_at = %s"
            " WHERE updated_at <= %s AND status <> ALL(%s) RETURNING id",
            (now, now, updated_up_to, list(skip_statuses)),
        ).fetchall()
        return sorted(r["id"] for r in rows)

    def update_job(self, job_id: int, **fields: Any) -> None:
        unknown = set(fields) - _JOB_COLUMNS
        if unknown:
            raise ValueError(f"not a job column: {sorted(unknown)}")
        values = {name: plain(value) for name, value in fields.items()}
        self.conn.execute(
            f"UPDATE jobs SET {assignments(values)} WHERE id = %(_id)s", {**values, "_id": job_id}
        )

    def delete_job(self, job_id: int) -> None:
        self.conn.execute("DELETE FROM jobs WHERE id = %s", (job_id,))

    def delete_tasks_of_job(self, job_id: int, limit: int) -> int:
        """Through `flamenco_delete_tasks` (schema 4): its per-row cascades are not replanned per row."""
        row = self.conn.execute("SELECT flamenco_delete_tasks(%s, %s) AS n", (job_id, limit)).fetchone()
        assert row is not None
        return int(row["n"])

    def job_task_counts(self, job_id: int) -> dict[str, int]:
        rows = self.conn.execute(
            "SELECT status, n FROM job_task_counts WHERE job_id = %s", (job_id,)
        ).fetchall()
        return {r["status"]: r["n"] for r in rows}

    def count_jobs_by_status(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT status, count(*) AS n FROM jobs GROUP BY status").fetchall()
        return {r["status"]: r["n"] for r in rows}

    def count_tasks_by_status(self, statuses: Iterable[str]) -> dict[str, int]:
        rows = self.conn.execute(
            "SELECT c.status, sum(c.n) AS n FROM job_task_counts c"
            " WHERE c.n > 0 AND c.status = ANY(%s) AND NOT EXISTS"
            " (SELECT 1 FROM jobs j WHERE j.id = c.job_id AND j.delete_requested_at IS NOT NULL)"
            " GROUP BY c.status",
            (list(statuses),),
        ).fetchall()
        return {r["status"]: int(r["n"]) for r in rows}

    # Tasks.

    def get_task(self, uuid: str) -> Task | None:
        row = self.conn.execute("SELECT * FROM tasks WHERE uuid = %s", (uuid,)).fetchone()
        return _task(row) if row else None

    def get_task_by_id(self, task_id: int) -> Task | None:
        row = self.conn.execute("SELECT * FROM tasks WHERE id = %s", (task_id,)).fetchone()
        return _task(row) if row else None

    def tasks_of_job(self, job_id: int) -> list[Task]:
        rows = self.conn.execute(
            "SELECT * FROM tasks WHERE job_id = %s ORDER BY index_in_job", (job_id,)
        ).fetchall()
        return [_task(r) for r in rows]

    def tasks_of_job_with_status(self, job_id: int, statuses: Iterable[str]) -> list[Task]:
        rows = self.conn.execute(
            "SELECT * FROM tasks WHERE job_id = %s AND status = ANY(%s) ORDER BY index_in_job",
            (job_id, list(statuses)),
        ).fetchall()
        return [_task(r) for r in rows]

    def tasks_of_worker(self, worker_id: int, statuses: Iterable[str]) -> list[Task]:
        rows = self.conn.execute(
            "SELECT * FROM tasks WHERE worker_id = %s AND status = ANY(%s) ORDER BY id",
            (worker_id, list(statuses)),
        ).fetchall()
        return [_task(r) for r in rows]

    def last_task_of_worker(self, worker_id: int) -> Task | None:
        row = self.conn.execute(
            "SELECT * FROM tasks WHERE worker_id = %s"
            " ORDER BY status = 'active' DESC, updated_at DESC, id LIMIT 1",
            (worker_id,),
        ).fetchone()
        return _task(row) if row else None

    def update_task(self, task_id: int, **fields: Any) -> None:
        unknown = set(fields) - _TASK_COLUMNS
        if unknown:
            raise ValueError(f"not a task column: {sorted(unknown)}")
        values = {name: plain(value) for name, value in fields.items()}
        self.conn.execute(
            f"UPDATE tasks SET {assignments(values)} WHERE id = %(_id)s", {**values, "_id": task_id}
        )

    def set_tasks_status(self, task_ids: list[int], status: str, *, activity: str, now: float) -> None:
        """Mass status change; `queued` resets the steps, `completed` fills them."""
        if not task_ids:
            return
        # One statement: the counting trigger runs once for all of them (sums do not depend on order).
        self.conn.execute(
            "UPDATE tasks SET status = %(s)s, activity = %(a)s, updated_at = %(now)s,"
            " steps_completed = CASE %(s)s WHEN 'queued' THEN 0 WHEN 'completed' THEN steps_total"
            " ELSE steps_completed END WHERE id = ANY(%(ids)s)",
            {"s": status, "a": activity, "now": now, "ids": task_ids},
        )

    def task_has_dependents(self, task_id: int) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM task_dependencies WHERE dependency_id = %s LIMIT 1", (task_id,)
        ).fetchone()
        return row is not None

    def active_tasks_untouched_since(self, before: float) -> list[Task]:
        rows = self.conn.execute(
            "SELECT * FROM tasks WHERE status = 'active'"
            " AND (last_touched_at IS NULL OR last_touched_at <= %s) ORDER BY id",
            (before,),
        ).fetchall()
        return [_task(r) for r in rows]

    # Scheduling.

    def find_assigned_active_task(self, worker_id: int) -> Task | None:
        row = self.conn.execute(
            "SELECT t.* FROM tasks t JOIN jobs j ON j.id = t.job_id"
            " WHERE t.worker_id = %s AND t.status = 'active'"
            " AND j.status IN ('active', 'queued') ORDER BY t.id LIMIT 1",
            (worker_id,),
        ).fetchone()
        return _task(row) if row else None

    def find_runnable_task(self, worker: Worker) -> Task | None:
        """The best queued or soft-failed task this worker may run, or None (rules: `services.scheduler`).

        The same rules as the SQLite store's query, and the task row comes back locked for this transaction
        (`FOR UPDATE … SKIP LOCKED`): another Manager on the same database that is assigning at the same
        moment passes over it to the next task instead of handing out the same one or waiting.
        """
        types = list(dict.fromkeys(worker.supported_task_types))
        if not types:
            return None
        row = self.conn.execute(
            FIND_RUNNABLE_TASK,
            {"w": worker.id, "types": types},
        ).fetchone()
        return _task(row) if row else None

    # Failures and blocklist.

    def add_task_failure(self, task_id: int, worker_id: int, now: float) -> None:
        self.conn.execute(
            "INSERT INTO task_failures (task_id, worker_id, created_at) VALUES (%s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (task_id, worker_id, now),
        )

    def task_failure_count(self, task_id: int) -> int:
        row = self.conn.execute(
            "SELECT count(*) AS n FROM task_failures WHERE task_id = %s", (task_id,)
        ).fetchone()
        assert row is not None
        return int(row["n"])

    def task_failed_by(self, task_id: int) -> list[Worker]:
        rows = self.conn.execute(
            "SELECT w.* FROM workers w JOIN task_failures f ON f.worker_id = w.id WHERE f.task_id = %s"
            " ORDER BY f.created_at, f.worker_id",
            (task_id,),
        ).fetchall()
        return [worker_from_row(r) for r in rows]

    def clear_task_failures(self, task_id: int) -> None:
        self.conn.execute("DELETE FROM task_failures WHERE task_id = %s", (task_id,))

    def clear_job_failures(self, job_id: int) -> None:
        self.conn.execute(
            "DELETE FROM task_failures WHERE task_id IN (SELECT id FROM tasks WHERE job_id = %s)", (job_id,)
        )

    def count_worker_failures_in_job(self, job_id: int, worker_id: int, task_type: str) -> int:
        row = self.conn.execute(
            "SELECT count(*) AS n FROM task_failures f JOIN tasks t ON t.id = f.task_id"
            " WHERE t.job_id = %s AND f.worker_id = %s AND t.type = %s",
            (job_id, worker_id, task_type),
        ).fetchone()
        assert row is not None
        return int(row["n"])

    def add_job_block(self, job_id: int, worker_id: int, task_type: str, now: float) -> None:
        self.conn.execute(
            "INSERT INTO job_blocks (job_id, worker_id, task_type, created_at) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (job_id, worker_id, task_type, now),
        )

    def job_blocklist(self, job_id: int) -> list[BlockEntry]:
        rows = self.conn.execute(
            "SELECT b.worker_id, w.uuid, w.name, b.task_type"
            " FROM job_blocks b JOIN workers w ON w.id = b.worker_id"
            ' WHERE b.job_id = %s ORDER BY w.name COLLATE "C", b.task_type COLLATE "C"',
            (job_id,),
        ).fetchall()
        return [
            BlockEntry(
                worker_id=r["worker_id"],
                worker_uuid=r["uuid"],
                worker_name=r["name"],
                task_type=r["task_type"],
            )
            for r in rows
        ]

    def remove_job_blocks(self, job_id: int, entries: list[tuple[int, str]]) -> None:
        if not entries:
            return
        with self.conn.cursor() as cur:
            cur.executemany(
                "DELETE FROM job_blocks WHERE job_id = %s AND worker_id = %s AND task_type = %s",
                [(job_id, worker_id, task_type) for worker_id, task_type in entries],
            )

    def clear_job_blocklist(self, job_id: int) -> None:
        self.conn.execute("DELETE FROM job_blocks WHERE job_id = %s", (job_id,))

    # Last rendered.

    def set_last_rendered(self, job_id: int) -> None:
        self.conn.execute(
            "INSERT INTO last_rendered (singleton, job_id) VALUES (1, %s)"
            " ON CONFLICT (singleton) DO UPDATE SET job_id = excluded.job_id",
            (job_id,),
        )

    def get_last_rendered(self) -> Job | None:
        row = self.conn.execute(
            "SELECT j.* FROM jobs j JOIN last_rendered l ON l.job_id = j.id WHERE l.singleton = 1"
        ).fetchone()
        return _job(row) if row else None
