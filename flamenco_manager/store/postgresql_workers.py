"""Worker, tag and sleep-schedule queries of the PostgreSQL store."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import psycopg

from flamenco_manager.model import SleepSchedule, Tag, Worker
from flamenco_manager.store.postgresql_errors import translating

Row = Mapping[str, Any]

_WORKER_COLUMNS = frozenset(
    {
        "name",
        "address",
        "platform",
        "software",
        "status",
        "status_requested",
        "lazy_status_request",
        "can_restart",
        "supported_task_types",
        "updated_at",
        "last_seen_at",
        "deleted_at",
        "secret_hash",
    }
)


def plain(value: object) -> object:
    """A value as the schema stores it: flags are integers 0/1 (as in the SQLite schema)."""
    return int(value) if isinstance(value, bool) else value


def assignments(fields: Mapping[str, object]) -> str:
    """`a = %(a)s, b = %(b)s` for the (already checked) column names in `fields`."""
    return ", ".join(f"{name} = %({name})s" for name in fields)


def worker_from_row(row: Row) -> Worker:
    types = row["supported_task_types"]
    return Worker(
        id=row["id"],
        uuid=row["uuid"],
        secret_hash=row["secret_hash"],
        name=row["name"],
        address=row["address"],
        platform=row["platform"],
        software=row["software"],
        status=row["status"],
        status_requested=row["status_requested"],
        lazy_status_request=bool(row["lazy_status_request"]),
        can_restart=bool(row["can_restart"]),
        supported_task_types=types.split(",") if types else [],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_seen_at=row["last_seen_at"],
        deleted_at=row["deleted_at"],
    )


def _schedule(row: Row) -> SleepSchedule:
    return SleepSchedule(
        worker_id=row["worker_id"],
        is_active=bool(row["is_active"]),
        days_of_week=row["days_of_week"],
        start_time=row["start_time"],
        end_time=row["end_time"],
        next_check=row["next_check"],
    )


def _tag(row: Row) -> Tag:
    return Tag(id=row["id"], uuid=row["uuid"], name=row["name"], description=row["description"])


@translating
class WorkerQueries:
    conn: psycopg.Connection[dict[str, Any]]

    def create_worker(
        self,
        *,
        uuid: str,
        secret_hash: str,
        name: str,
        address: str,
        platform: str,
        supported_task_types: list[str],
        now: float,
    ) -> Worker:
        row = self.conn.execute(
            "INSERT INTO workers (uuid, secret_hash, name, address, platform, supported_task_types,"
            " created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING *",
            (uuid, secret_hash, name, address, platform, ",".join(supported_task_types), now, now),
        ).fetchone()
        assert row is not None
        return worker_from_row(row)

    def get_worker(self, uuid: str) -> Worker | None:
        row = self.conn.execute(
            "SELECT * FROM workers WHERE uuid = %s AND deleted_at IS NULL", (uuid,)
        ).fetchone()
        return worker_from_row(row) if row else None

    def get_worker_by_id(self, worker_id: int) -> Worker | None:
        row = self.conn.execute("SELECT * FROM workers WHERE id = %s", (worker_id,)).fetchone()
        return worker_from_row(row) if row else None

    def list_workers(self) -> list[Worker]:
        rows = self.conn.execute(
            'SELECT * FROM workers WHERE deleted_at IS NULL ORDER BY name COLLATE "C", id'
        ).fetchall()
        return [worker_from_row(r) for r in rows]

    def update_worker(self, worker_id: int, **fields: Any) -> None:
        unknown = set(fields) - _WORKER_COLUMNS
        if unknown:
            raise ValueError(f"not a worker column: {sorted(unknown)}")
        if "supported_task_types" in fields:
            fields["supported_task_types"] = ",".join(fields["supported_task_types"])
        values = {name: plain(value) for name, value in fields.items()}
        self.conn.execute(
            f"UPDATE workers SET {assignments(values)} WHERE id = %(_id)s", {**values, "_id": worker_id}
        )

    def mark_workers_seen(self, seen: Iterable[tuple[int, float]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(
                "UPDATE workers SET last_seen_at = %(at)s"
                " WHERE id = %(id)s AND (last_seen_at IS NULL OR last_seen_at < %(at)s)",
                [{"id": worker_id, "at": at} for worker_id, at in seen],
            )

    def workers_not_seen_since(self, before: float) -> list[Worker]:
        rows = self.conn.execute(
            "SELECT * FROM workers WHERE deleted_at IS NULL AND status NOT IN ('error', 'offline', '')"
            " AND (last_seen_at IS NULL OR last_seen_at <= %s) ORDER BY id",
            (before,),
        ).fetchall()
        return [worker_from_row(r) for r in rows]

    def count_workers_able(self, job_id: int, task_type: str) -> int:
        """Workers that support the task type and are not blocklisted for it on this job (any status)."""
        row = self.conn.execute(
            "SELECT count(*) AS n FROM workers w WHERE w.deleted_at IS NULL"
            " AND %(type)s = ANY(string_to_array(w.supported_task_types, ',')) AND NOT EXISTS"
            " (SELECT 1 FROM job_blocks b WHERE b.job_id = %(job)s AND b.worker_id = w.id"
            " AND b.task_type = %(type)s)",
            {"job": job_id, "type": task_type},
        ).fetchone()
        assert row is not None
        return int(row["n"])

    def count_workers_by_status(self) -> dict[str, int]:
        rows = self.conn.execute(
            "SELECT status, count(*) AS n FROM workers WHERE deleted_at IS NULL GROUP BY status"
        ).fetchall()
        return {r["status"]: r["n"] for r in rows}

    # Tags.

    def create_tag(self, *, uuid: str, name: str, description: str) -> Tag:
        row = self.conn.execute(
            "INSERT INTO worker_tags (uuid, name, description) VALUES (%s, %s, %s) RETURNING id",
            (uuid, name, description),
        ).fetchone()
        assert row is not None
        return Tag(id=row["id"], uuid=uuid, name=name, description=description)

    def get_tag(self, uuid: str) -> Tag | None:
        row = self.conn.execute("SELECT * FROM worker_tags WHERE uuid = %s", (uuid,)).fetchone()
        return _tag(row) if row else None

    def get_tag_by_id(self, tag_id: int) -> Tag | None:
        row = self.conn.execute("SELECT * FROM worker_tags WHERE id = %s", (tag_id,)).fetchone()
        return _tag(row) if row else None

    def get_tag_by_name(self, name: str) -> Tag | None:
        row = self.conn.execute("SELECT * FROM worker_tags WHERE name = %s", (name,)).fetchone()
        return _tag(row) if row else None

    def list_tags(self) -> list[Tag]:
        rows = self.conn.execute('SELECT * FROM worker_tags ORDER BY name COLLATE "C"').fetchall()
        return [_tag(r) for r in rows]

    def update_tag(self, tag_id: int, *, name: str, description: str) -> None:
        self.conn.execute(
            "UPDATE worker_tags SET name = %s, description = %s WHERE id = %s", (name, description, tag_id)
        )

    def delete_tag(self, tag_id: int) -> None:
        self.conn.execute("DELETE FROM worker_tags WHERE id = %s", (tag_id,))

    def worker_tags(self, worker_id: int) -> list[Tag]:
        rows = self.conn.execute(
            "SELECT t.* FROM worker_tags t JOIN worker_tag_membership m ON m.tag_id = t.id"
            ' WHERE m.worker_id = %s ORDER BY t.name COLLATE "C"',
            (worker_id,),
        ).fetchall()
        return [_tag(r) for r in rows]

    def set_worker_tags(self, worker_id: int, tag_ids: list[int]) -> None:
        self.conn.execute("DELETE FROM worker_tag_membership WHERE worker_id = %s", (worker_id,))
        if tag_ids:
            self.conn.execute(
                "INSERT INTO worker_tag_membership (worker_id, tag_id)"
                " SELECT %s, unnest(%s::bigint[]) ON CONFLICT DO NOTHING",
                (worker_id, tag_ids),
            )

    # Sleep schedules.

    def get_sleep_schedule(self, worker_id: int) -> SleepSchedule | None:
        row = self.conn.execute("SELECT * FROM sleep_schedules WHERE worker_id = %s", (worker_id,)).fetchone()
        return _schedule(row) if row else None

    def sleep_schedules_due(self, now: float) -> list[SleepSchedule]:
        rows = self.conn.execute(
            "SELECT s.* FROM sleep_schedules s JOIN workers w ON w.id = s.worker_id"
            " WHERE s.is_active <> 0 AND w.deleted_at IS NULL"
            " AND (s.next_check IS NULL OR s.next_check <= %s) ORDER BY s.worker_id",
            (now,),
        ).fetchall()
        return [_schedule(r) for r in rows]

    def set_sleep_schedule(self, schedule: SleepSchedule) -> None:
        self.conn.execute(
            "INSERT INTO sleep_schedules"
            " (worker_id, is_active, days_of_week, start_time, end_time, next_check)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (worker_id) DO UPDATE"
            " SET is_active = excluded.is_active, days_of_week = excluded.days_of_week,"
            " start_time = excluded.start_time, end_time = excluded.end_time,"
            " next_check = excluded.next_check",
            (
                schedule.worker_id,
                int(schedule.is_active),
                schedule.days_of_week,
                schedule.start_time,
                schedule.end_time,
                schedule.next_check,
            ),
        )
