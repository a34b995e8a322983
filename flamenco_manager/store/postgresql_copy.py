"""Copy a farm's SQLite database into an empty PostgreSQL database (`flamenco-manager -migrate-from-sqlite`).

Both are first brought to the newest schema version, so their tables and columns are the same. Rows are
copied table by table with their ids, with the counting triggers off (the counters are copied as they
are, not counted twice), in one transaction: a failure leaves the PostgreSQL database empty. Afterwards
every table's row count is compared, and the id sequences continue after the highest copied id.
"""

from __future__ import annotations

import logging
import pathlib
import sqlite3

import psycopg

from flamenco_manager.store.interface import StoreError
from flamenco_manager.store.postgresql import PostgreSQLStore, redacted
from flamenco_manager.store.sqlite import SQLiteStore

log = logging.getLogger(__name__)

# Every table of the schema, parents before children (foreign keys are checked row by row).
TABLES = (
    "workers",
    "worker_tags",
    "worker_tag_membership",
    "sleep_schedules",
    "jobs",
    "tasks",
    "task_dependencies",
    "task_failures",
    "job_blocks",
    "last_rendered",
    "job_task_counts",
)
# Tables whose ids PostgreSQL hands out from an identity sequence.
_IDENTITY_TABLES = ("workers", "worker_tags", "jobs", "tasks")
# Rows sent to the server per statement.
_BATCH_ROWS = 1000


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def copy_from_sqlite(sqlite_path: pathlib.Path, url: str) -> dict[str, int]:
    """Copy every row; the rows per table. Raises StoreError (nothing copied) on any problem."""
    if not sqlite_path.is_file():
        raise StoreError(f"-migrate-from-sqlite: {sqlite_path}: no such file")
    source = SQLiteStore.open(sqlite_path)  # brings an older farm's file to the newest schema first
    target = PostgreSQLStore.open(url)
    try:
        counts = _copy(source.conn, target.conn, url)
    finally:
        target.close()
        source.close()
    return counts


def _copy(source: sqlite3.Connection, target: psycopg.Connection[dict], url: str) -> dict[str, int]:
    for table in TABLES:
        row = target.execute(f"SELECT EXISTS (SELECT 1 FROM {table}) AS used").fetchone()
        if row is not None and row["used"]:
            raise StoreError(
                f"-migrate-from-sqlite: {redacted(url)} is not empty (table {table} has rows);"
                " give an empty database"
            )
    counts: dict[str, int] = {}
    try:
        with target.transaction():
            target.execute("ALTER TABLE tasks DISABLE TRIGGER USER")
            target.execute("ALTER TABLE task_dependencies DISABLE TRIGGER USER")
            for table in TABLES:
                columns = _columns(source, table)
                names = ", ".join(columns)
                marks = ", ".join(["%s"] * len(columns))
                cursor = source.execute(f"SELECT {names} FROM {table}")
                copied = 0
                with target.cursor() as cur:
                    while rows := cursor.fetchmany(_BATCH_ROWS):
                        cur.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)
                        copied += len(rows)
                counts[table] = copied
                log.info("copied table=%s rows=%d", table, copied)
            target.execute("ALTER TABLE tasks ENABLE TRIGGER USER")
            target.execute("ALTER TABLE task_dependencies ENABLE TRIGGER USER")
            for table in _IDENTITY_TABLES:
                target.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                    f" coalesce((SELECT max(id) FROM {table}), 0) + 1, false)"
                )
            for table in TABLES:
                expected = source.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                row = target.execute(f"SELECT count(*) AS n FROM {table}").fetchone()
                got = row["n"] if row is not None else -1
                if got != expected or counts[table] != expected:
                    raise StoreError(
                        f"-migrate-from-sqlite: table {table}: {expected} rows in SQLite, {got} copied;"
                        " nothing was kept"
                    )
    except psycopg.Error as exc:
        raise StoreError(f"-migrate-from-sqlite: {redacted(url)}: {exc}; nothing was kept") from exc
    return counts
