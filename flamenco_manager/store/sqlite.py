"""SQLite implementation of the store: connection setup, migrations, transactions, off-loop reads.

Writes are group-committed: each `transaction()` is a savepoint inside one batch transaction that is
committed once per event-loop turn, so a turn's requests share one WAL write. Whoever acknowledges a
write to a client first awaits `committed()`, which knows (per asyncio task) which batch that task wrote
in. A unit of writes is synchronous: one connection cannot keep two interleaved units apart, so a unit
belongs to the asyncio task that opened it, nesting is counted per task (a context variable), and a
second task that wants a unit while another task's unit is still open (it awaited inside its
`transaction()`) gets `StoreBusy` instead of silently joining it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import pathlib
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from flamenco_manager.store.interface import StoreBusy, StoreError
from flamenco_manager.store.schema import migrations
from flamenco_manager.store.sqlite_errors import translate
from flamenco_manager.store.sqlite_jobs import JobQueries
from flamenco_manager.store.sqlite_workers import WorkerQueries

log = logging.getLogger(__name__)
T = TypeVar("T")

# How long a background connection (reader, checkpointer) waits for a lock before giving up.
BUSY_TIMEOUT_MS = 5000
# The event loop's connection waits much less: a request that finds the database locked (by another
# process) is answered 503 with Retry-After rather than stalling every other request.
LOOP_BUSY_TIMEOUT_MS = 200
# How often the checkpointer thread copies the WAL into the database file. Checkpoints (with their
# fsync) used to run inside a commit on the event loop and stalled it for ~100 ms.
CHECKPOINT_INTERVAL = 1.0


def _connect(path: pathlib.Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
    else:
        conn = sqlite3.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
        # WAL + NORMAL survives a killed process (the WAL is in the OS cache); only power loss may drop
        # the last commits. That is the durability the farm needs, at a fraction of FULL's cost.
        conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Apply every migration newer than the database's user_version, each in its own transaction."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    available = migrations("sqlite")
    if current > len(available):
        raise StoreError(
            f"database schema version {current} is newer than this Manager knows ({len(available)})"
        )
    for number, name, script in available[current:]:
        log.info("applying database migration migration=%s", name)
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _split_statements(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return len(available)


def _split_statements(script: str) -> Iterator[str]:
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                yield buffer
            buffer = ""
    if buffer.strip() and not buffer.strip().startswith("--"):
        raise StoreError("migration script ends with an incomplete statement")


class _Unit:
    """An open unit of writes, owned by the asyncio task that opened it."""

    __slots__ = ("task",)

    def __init__(self, task: asyncio.Task[object] | None) -> None:
        self.task = task


def _current_task() -> asyncio.Task[object] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None  # no event loop (tools, tests)


@dataclass
class _BatchFailure:
    seq: int
    error: StoreError


class SQLiteStore(WorkerQueries, JobQueries):
    """All SQL of the Manager. Called on the event loop; `offloop` runs big reads on a reader thread."""

    def __init__(self, conn: sqlite3.Connection, path: pathlib.Path, *, reader: bool = False) -> None:
        self.conn = conn
        self.path = path
        self._reader: SQLiteStore | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._is_reader = reader
        self._reader_lock = threading.Lock()
        # The unit of writes of the current asyncio task (context variable: each task sees its own).
        self._unit: contextvars.ContextVar[_Unit | None] = contextvars.ContextVar(
            f"sqlite_store_unit_{id(self)}", default=None
        )
        # The number of the batch the current task last wrote in; 0: none.
        self._wrote_in: contextvars.ContextVar[int] = contextvars.ContextVar(
            f"sqlite_store_wrote_in_{id(self)}", default=0
        )
        self._open_unit: _Unit | None = None
        self._commit_due = False
        self._batch_open = False
        self._batch_seq = 0
        self._last_failure: _BatchFailure | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._commit_waiters: list[asyncio.Future[None]] = []
        self._checkpointer: threading.Thread | None = None
        self._checkpoint_stop = threading.Event()
        # Set by each commit: the checkpointer has WAL to copy.
        self._wal_grew = threading.Event()

    @classmethod
    def open(cls, path: pathlib.Path) -> SQLiteStore:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = _connect(path)
            migrate(conn)
            conn.execute(f"PRAGMA busy_timeout = {LOOP_BUSY_TIMEOUT_MS}")
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"database {path}: {exc}") from exc
        return cls(conn, path)

    def start(self) -> None:
        """Checkpoint the WAL on a thread from now on, instead of inside commits on the event loop."""
        if self._checkpointer is not None:
            return
        self.conn.execute("PRAGMA wal_autocheckpoint = 0")
        self._checkpoint_stop.clear()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="store-checkpointer", daemon=True
        )
        self._checkpointer.start()

    def _checkpoint_loop(self) -> None:
        conn = _connect(self.path)
        try:
            while True:
                # Asleep until a commit grew the WAL, so an idle Manager's thread wakes nobody.
                self._wal_grew.wait()
                if self._checkpoint_stop.wait(CHECKPOINT_INTERVAL):
                    break
                self._wal_grew.clear()
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as exc:
                    self._wal_grew.set()  # tried again after the next interval
                    log.warning("WAL checkpoint failed, trying again error=%s", exc)
        finally:
            conn.close()

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpoint_stop.set()
            self._wal_grew.set()
            self._checkpointer.join()
            self._checkpointer = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._reader is not None:
            self._reader.conn.close()
            self._reader = None
        self.commit()
        # A clean close checkpoints the WAL so the database is one file again.
        self.conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic unit of writes; a nested use by the same asyncio task joins the open unit.

        Units are savepoints inside a batch transaction that is committed once per event-loop
        iteration (group commit): one WAL write for every request handled in that iteration. Callers
        that acknowledge something to a client first await `committed()`.
        """
        task = _current_task()
        mine = self._unit.get()
        if mine is not None and mine is self._open_unit and mine.task is task:
            yield  # nested: part of the unit already open, which commits or rolls back as a whole
            return
        if self._open_unit is not None:
            holder = self._open_unit.task.get_name() if self._open_unit.task is not None else "-"
            log.error("a store unit was held across an await holder=%s", holder)
            raise StoreBusy(f"another task's unit of writes is still open (task {holder})")
        try:
            self._begin_batch()
            self.conn.execute("SAVEPOINT unit")
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        self._wrote_in.set(self._batch_seq)
        unit = _Unit(task)
        token = self._unit.set(unit)
        self._open_unit = unit
        try:
            yield
        except BaseException:
            self._end_unit(unit, token)
            try:
                self.conn.execute("ROLLBACK TO unit")
                self.conn.execute("RELEASE unit")
            except sqlite3.Error as exc:
                raise translate(exc) from exc
            if self._loop is None:
                self.commit()  # ends the batch (and its lock) that this unit opened
            raise
        self._end_unit(unit, token)
        try:
            self.conn.execute("RELEASE unit")
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        if self._loop is None:
            self.commit()

    def _end_unit(self, unit: _Unit, token: contextvars.Token[_Unit | None]) -> None:
        self._open_unit = None
        if self._commit_due and self._loop is not None:
            self._commit_due = False
            self._loop.call_soon(self.commit)
        try:
            self._unit.reset(token)
        except ValueError:  # left in another context than entered (a generator closed elsewhere)
            self._unit.set(None)

    def _begin_batch(self) -> None:
        if self._batch_open:
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self._batch_open = True
        self._batch_seq += 1
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None  # no event loop (tools, tests): every unit commits at once
            return
        self._loop.call_soon(self.commit)

    def commit(self) -> None:
        """Commit the open batch, if any, and tell everyone waiting for it.

        Not while a unit is open (its task awaited inside it): the commit follows when the unit ends.
        """
        if self._open_unit is not None:
            self._commit_due = True
            return
        waiters, self._commit_waiters = self._commit_waiters, []
        if not self._batch_open:
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)
            return
        self._batch_open = False
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.error("commit failed, the batch is rolled back error=%s", exc)
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            error = translate(exc)
            self._last_failure = _BatchFailure(self._batch_seq, error)
            for fut in waiters:
                if not fut.done():
                    fut.set_exception(type(error)(f"commit failed: {exc}"))
            return
        self._wal_grew.set()
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def committed(self) -> Awaitable[None] | None:
        """Resolves once the calling task's writes are on disk; None when they already are."""
        seq = self._wrote_in.get()
        if seq == 0:
            return None
        if self._batch_open and seq == self._batch_seq:
            fut = asyncio.get_running_loop().create_future()
            self._commit_waiters.append(fut)
            return fut
        failure = self._last_failure
        if failure is not None and failure.seq == seq:
            failed = asyncio.get_running_loop().create_future()
            failed.set_exception(type(failure.error)(f"commit failed: {failure.error}"))
            return failed
        return None

    def trace_statements(self, callback: Callable[[str], object] | None) -> None:
        """Call `callback` with each SQL statement the event-loop connection runs; None stops it.

        For tests that bound how many queries a request costs; not part of the `Store` interface.
        """
        self.conn.set_trace_callback(callback)

    async def offloop(self, fn: Callable[[SQLiteStore], T]) -> T:
        """Run a read-only function against a second connection on a worker thread."""
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="store-reader")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._run_reader, fn)

    def _run_reader(self, fn: Callable[[SQLiteStore], T]) -> T:
        try:
            if self._reader is None:
                self._reader = SQLiteStore(_connect(self.path, readonly=True), self.path, reader=True)
            with self._reader_lock:
                self._reader.conn.execute("BEGIN")
                try:
                    return fn(self._reader)
                finally:
                    self._reader.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise translate(exc) from exc
