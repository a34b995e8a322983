"""Task updates that could not be delivered yet: a SQLite FIFO in FLAMENCO_HOME.

Rows are `(id, created_at, task_id, payload)` with the payload as JSON text, the front being the lowest id.
"""

from __future__ import annotations

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


class Outbox:
    def __init__(self, home: Path) -> None:
        self.path = home / FILENAME
        try:
            home.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # an acknowledged update must survive a power cut
            self._db.executescript(SCHEMA)
            check = self._db.execute("PRAGMA quick_check").fetchone()[0]
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(f"{self.path}: cannot open the task-update queue: {exc}") from None
        if check != "ok":
            raise OutboxError(f"{self.path}: the task-update queue is damaged ({check})")

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM task_updates").fetchone()[0])

    def push(self, task_id: str, payload: dict[str, Any]) -> None:
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        try:
            self._db.execute(
                "INSERT INTO task_updates (created_at, task_id, payload) VALUES (?, ?, ?)",
                (created, task_id, json.dumps(payload, separators=(",", ":"))),
            )
        except sqlite3.Error as exc:
            raise OutboxError(f"{self.path}: cannot queue a task update: {exc}") from None

    def front(self) -> QueuedUpdate | None:
        row = self._db.execute("SELECT id, task_id, payload FROM task_updates ORDER BY id LIMIT 1").fetchone()
        if row is None:
            return None
        try:
            payload = json.loads(row[2])
        except ValueError:
            log.error("outbox=%s row=%d holds invalid JSON; dropping it", self.path, row[0])
            self.remove(row[0])
            return self.front()
        return QueuedUpdate(row[0], row[1], payload)

    def remove(self, update_id: int) -> None:
        try:
            self._db.execute("DELETE FROM task_updates WHERE id = ?", (update_id,))
        except sqlite3.Error as exc:
            raise OutboxError(f"{self.path}: cannot remove a delivered update: {exc}") from None

    def drop_task(self, task_id: str) -> int:
        """Forget the updates of a task that was taken away from this worker (409)."""
        cur = self._db.execute("DELETE FROM task_updates WHERE task_id = ?", (task_id,))
        return cur.rowcount

    def close(self) -> None:
        self._db.close()
