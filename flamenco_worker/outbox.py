"""Task updates that could not be delivered yet: a SQLite FIFO in FLAMENCO_HOME.

Rows are `(id, created_at, task_id, payload)` with the payload as JSON text, the front being the lowest id.
When the file cannot be written (read-only or full disk) the queue carries on in memory, says so loudly,
and keeps what the file already holds in front, so nothing is reordered or lost while the process lives.
When the file cannot even be read any more (damaged while open), the queue carries on in memory as well;
what the file held stays there for the next start. Callers never see `sqlite3` errors: only `OutboxError`,
from opening with `required=True` or from using a closed queue.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FILENAME = "flamenco-worker.sqlite"
#: How long a write may wait for a lock held by another process (e.g. a `-flush` run).
BUSY_TIMEOUT_MS = 5000

SCHEMA = """
CREATE TABLE IF NOT EXISTS task_updates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    task_id VARCHAR(36) NOT NULL,
    payload TEXT NOT NULL
);
"""


class OutboxError(Exception):
    """The queue file cannot be used (disk full, read-only, corrupt); the text names the file."""


@dataclass(frozen=True, slots=True)
class QueuedUpdate:
    id: int
    task_id: str
    payload: dict[str, Any]
    in_memory: bool = False


def _open(target: str) -> sqlite3.Connection:
    db = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
    db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    if target != ":memory:":
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # an acknowledged update must survive a power cut
    db.executescript(SCHEMA)
    return db


class Outbox:
    def __init__(self, home: Path, *, required: bool = False) -> None:
        """Open the queue; with `required`, a file that cannot be used raises OutboxError instead."""
        self.path = home / FILENAME
        self._disk: sqlite3.Connection | None = None
        self._memory: sqlite3.Connection | None = None
        # Delivery is FIFO, so delivered rows the full disk would not let us delete form a prefix:
        # everything up to this id is done and skipped, and deleted once there is room again.
        self._disk_floor = 0
        self._stuck_rows_reported = False
        self._closed = False
        try:
            home.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._disk = _open(str(self.path))
            check = self._disk.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                self._disk.close()
                self._disk = None
                raise OutboxError(f"{self.path}: the task-update queue is damaged ({check}); move it aside")
        except (sqlite3.Error, OSError) as exc:
            self._disk = None
            problem = OutboxError(f"{self.path}: cannot open the task-update queue: {exc}")
            if required:
                raise problem from None
            self._fall_back(str(problem))
        except OutboxError as exc:
            if required:
                raise
            self._fall_back(str(exc))

    @property
    def durable(self) -> bool:
        """False once updates are kept in memory (they would not survive a restart)."""
        return self._memory is None

    def _fall_back(self, reason: str) -> None:
        if self._memory is None:
            log.error("%s; task updates are now kept in memory and do not survive a restart", reason)
            self._memory = _open(":memory:")

    def _disk_unreadable(self, exc: sqlite3.Error) -> None:
        """The file failed a read: leave it alone (it keeps what it holds) and carry on in memory."""
        if self._disk is not None:
            with contextlib.suppress(sqlite3.Error):
                self._disk.close()
            self._disk = None
        reason = f"{self.path}: cannot read the task-update queue ({exc}); what it holds stays there"
        if self._memory is None:
            self._fall_back(reason)
        else:
            log.error("%s", reason)

    def _check_open(self) -> None:
        if self._closed:
            raise OutboxError(f"{self.path}: the task-update queue is already closed")

    def _stores(self) -> list[tuple[sqlite3.Connection, bool]]:
        self._check_open()
        stores = []
        if self._disk is not None:
            stores.append((self._disk, False))
        if self._memory is not None:
            stores.append((self._memory, True))
        return stores

    def _floor(self, in_memory: bool) -> int:
        return 0 if in_memory else self._disk_floor

    def __len__(self) -> int:
        total = 0
        for db, in_memory in self._stores():
            sql = "SELECT COUNT(*) FROM task_updates WHERE id > ?"
            try:
                total += int(db.execute(sql, (self._floor(in_memory),)).fetchone()[0])
            except sqlite3.Error as exc:
                if in_memory:
                    raise
                self._disk_unreadable(exc)
        return total

    def push(self, task_id: str, payload: dict[str, Any]) -> None:
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        row = (created, task_id, json.dumps(payload, separators=(",", ":")))
        sql = "INSERT INTO task_updates (created_at, task_id, payload) VALUES (?, ?, ?)"
        self._check_open()
        if self._memory is None and self._disk is not None:
            try:
                self._disk.execute(sql, row)
                return
            except sqlite3.Error as exc:
                self._fall_back(f"{self.path}: cannot queue a task update: {exc}")
        assert self._memory is not None
        self._memory.execute(sql, row)

    def front(self) -> QueuedUpdate | None:
        for db, in_memory in self._stores():
            sql = "SELECT id, task_id, payload FROM task_updates WHERE id > ? ORDER BY id LIMIT 1"
            try:
                row = db.execute(sql, (self._floor(in_memory),)).fetchone()
            except sqlite3.Error as exc:
                if in_memory:
                    raise
                self._disk_unreadable(exc)
                continue
            if row is None:
                continue
            try:
                payload = json.loads(row[2])
            except ValueError:
                log.error("outbox=%s row=%d holds invalid JSON; dropping it", self.path, row[0])
                db.execute("DELETE FROM task_updates WHERE id = ?", (row[0],))
                return self.front()
            return QueuedUpdate(row[0], row[1], payload, in_memory)
        return None

    def remove(self, item: QueuedUpdate) -> None:
        """Forget a delivered update (a full disk cannot stop this: the row is skipped until it can go)."""
        if item.in_memory:
            assert self._memory is not None
            self._memory.execute("DELETE FROM task_updates WHERE id = ?", (item.id,))
            return
        if self._disk is None:
            return  # the file became unreadable since; the row stays in it for the next start
        self._disk_floor = max(self._disk_floor, item.id)
        try:
            self._disk.execute("DELETE FROM task_updates WHERE id <= ?", (self._disk_floor,))
            self._stuck_rows_reported = False
        except sqlite3.Error as exc:
            if self._stuck_rows_reported:
                return
            self._stuck_rows_reported = True
            log.warning(
                "outbox=%s delivered update %d stays in the file until there is room (%s)",
                self.path,
                item.id,
                exc,
            )

    def drop_task(self, task_id: str) -> int:
        """Forget the updates of a task that was taken away from this worker (409)."""
        dropped = 0
        for db, _ in self._stores():
            try:
                dropped += db.execute("DELETE FROM task_updates WHERE task_id = ?", (task_id,)).rowcount
            except sqlite3.Error as exc:
                log.error("outbox=%s cannot drop updates of task=%s: %s", self.path, task_id, exc)
        return dropped

    def close(self) -> None:
        """Close the file (idempotent); using the queue afterwards raises OutboxError."""
        if self._closed:
            return
        for db in (self._disk, self._memory):
            if db is not None:
                with contextlib.suppress(sqlite3.Error):
                    db.close()
        self._disk = self._memory = None
        self._closed = True
