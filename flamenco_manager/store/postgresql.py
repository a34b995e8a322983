"""PostgreSQL implementation of the store, for farms that outgrow one machine's SQLite file.

Driver: psycopg 3 (Debian: python3-psycopg). It is the PostgreSQL project's reference driver family, is
packaged and kept current by Debian, has LISTEN/NOTIFY (`conn.notifies()`) for carrying events between
Manager replicas later, a pure-Python fallback over libpq, and - the deciding point - a synchronous API
beside its asyncio one: the `Store` protocol is synchronous (services call it on the event loop, inside
units that must not be interleaved), which asyncpg, asyncio-only, could not serve without turning every
service into coroutines.

The semantics are the SQLite store's, so that services cannot tell the two apart:

- Writes are group-committed: each `transaction()` is a savepoint inside one batch transaction that is
  committed once per event-loop turn, and `committed()` resolves once the calling task's batch is
  committed (`synchronous_commit` decides what "committed" promises: on by default, flushed to the WAL).
  A unit belongs to the asyncio task that opened it; another task that wants one while it is open (the
  owner awaited inside) gets `StoreBusy`.
- The loop's connection waits `LOOP_LOCK_TIMEOUT_MS` at most for a row lock held by another session (a
  second Manager on the same database): longer, and the unit fails with `StoreBusy` (answered 503).
- `offloop` runs big reads on a second connection in a thread, in a read-only snapshot.
- Assigning a task locks it (`FOR UPDATE … SKIP LOCKED`), so two Managers never hand out the same task.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from flamenco_manager.store.interface import StoreBusy, StoreError
from flamenco_manager.store.postgresql_errors import translate
from flamenco_manager.store.postgresql_jobs import JobQueries
from flamenco_manager.store.postgresql_workers import WorkerQueries
from flamenco_manager.store.schema import migrations

log = logging.getLogger(__name__)
T = TypeVar("T")

# How long opening the database may take before the Manager gives up with a clear error.
CONNECT_TIMEOUT_S = 10
# The event loop's connection waits this long for another session's row lock: a request that finds a
# row locked by another Manager is answered 503 with Retry-After rather than stalling every request.
LOOP_LOCK_TIMEOUT_MS = 200
# The reader thread's connection may wait longer: it holds up only the one big answer it builds.
READER_LOCK_TIMEOUT_MS = 5000
# Only one Manager applies migrations at a time: the others wait on this advisory lock (any fixed key).
MIGRATION_LOCK_KEY = 0x666C616D  # "flam"

Connection = psycopg.Connection[dict[str, Any]]


def connect(url: str, *, lock_timeout_ms: int = LOOP_LOCK_TIMEOUT_MS) -> Connection:
    """An autocommit connection (transactions are explicit, as on the SQLite store) with dict rows."""
    conn = psycopg.connect(url, autocommit=True, row_factory=dict_row, connect_timeout=CONNECT_TIMEOUT_S)
    conn.execute(f"SET lock_timeout = {int(lock_timeout_ms)}")
    # Plan every statement for the table sizes of the moment. A cached generic plan made while a table
    # was small (a new farm, a job's tasks inserted in one transaction) keeps scanning it whole as it
    # grows: 10,000 jobs inserted in one unit took minutes through the triggers' statements, not seconds.
    conn.execute("SET plan_cache_mode = force_custom_plan")
    return conn


def schema_version(conn: Connection) -> int:
    """The schema version recorded in the database; 0 for an empty database."""
    row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL AS present").fetchone()
    if row is None or not row["present"]:
        return 0
    version = conn.execute("SELECT version FROM schema_version").fetchone()
    return int(version["version"]) if version else 0


def migrate(conn: Connection) -> int:
    """Apply every migration newer than the database's schema_version, each in its own transaction."""
    available = migrations("postgresql")
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
    try:
        current = schema_version(conn)
        if current > len(available):
            raise StoreError(
                f"database schema version {current} is newer than this Manager knows ({len(available)})"
            )
        for number, name, script in available[current:]:
            log.info("applying database migration migration=%s", name)
            with conn.transaction():
                conn.execute(script.encode())
                conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
                conn.execute("DELETE FROM schema_version")
                conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (number,))
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return len(available)


def redacted(url: str) -> str:
    """The URL without a password, for messages."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return "the configured PostgreSQL database"
    host = info.get("host") or "localhost"
    return f"PostgreSQL database {info.get('dbname', '?')} on {host}"


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


class PostgreSQLStore(WorkerQueries, JobQueries):
    """All SQL of the Manager for PostgreSQL. Called on the event loop; `offloop` reads on a thread."""

    def __init__(self, conn: Connection, url: str) -> None:
        self.conn = conn
        self.url = url
        self._reader: PostgreSQLStore | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._reader_lock = threading.Lock()
        self._unit: contextvars.ContextVar[_Unit | None] = contextvars.ContextVar(
            f"pg_store_unit_{id(self)}", default=None
        )
        self._wrote_in: contextvars.ContextVar[int] = contextvars.ContextVar(
            f"pg_store_wrote_in_{id(self)}", default=0
        )
        self._open_unit: _Unit | None = None
        self._commit_due = False
        self._batch_open = False
        self._batch_seq = 0
        self._last_failure: _BatchFailure | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._commit_waiters: list[asyncio.Future[None]] = []
        # Called inside the batch just before COMMIT (replicas' NOTIFYs: see postgresql_notify).
        self.before_commit: Callable[[], None] | None = None

    @property
    def batch_open(self) -> bool:
        """Whether a batch transaction is open (its commit is due this loop turn)."""
        return self._batch_open

    @classmethod
    def open(cls, url: str) -> PostgreSQLStore:
        try:
            conn = connect(url)
        except psycopg.Error as exc:
            raise StoreError(f"database: cannot connect to {redacted(url)}: {exc}") from exc
        try:
            migrate(conn)
        except psycopg.Error as exc:
            conn.close()
            raise StoreError(f"database: {redacted(url)}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return cls(conn, url)

    def start(self) -> None:
        """Nothing runs in the background: the server does its own upkeep (autovacuum, checkpoints)."""

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._reader is not None:
            self._reader.conn.close()
            self._reader = None
        self.commit()
        self.conn.close()

    def _execute(self, sql: str) -> None:
        try:
            self.conn.execute(sql)
        except psycopg.Error as exc:
            raise translate(exc) from exc

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic unit of writes; a nested use by the same asyncio task joins the open unit."""
        task = _current_task()
        mine = self._unit.get()
        if mine is not None and mine is self._open_unit and mine.task is task:
            yield
            return
        if self._open_unit is not None:
            holder = self._open_unit.task.get_name() if self._open_unit.task is not None else "-"
            log.error("a store unit was held across an await holder=%s", holder)
            raise StoreBusy(f"another task's unit of writes is still open (task {holder})")
        self._begin_batch()
        self._execute("SAVEPOINT unit")
        self._wrote_in.set(self._batch_seq)
        unit = _Unit(task)
        token = self._unit.set(unit)
        self._open_unit = unit
        try:
            yield
        except BaseException:
            self._end_unit(unit, token)
            self._execute("ROLLBACK TO SAVEPOINT unit")
            self._execute("RELEASE SAVEPOINT unit")
            if self._loop is None:
                self.commit()
            raise
        self._end_unit(unit, token)
        self._execute("RELEASE SAVEPOINT unit")
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
        self._execute("BEGIN")
        self._batch_open = True
        self._batch_seq += 1
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None  # no event loop (tools, tests): every unit commits at once
            return
        self._loop.call_soon(self.commit)

    def commit(self) -> None:
        """Commit the open batch, if any, and tell everyone waiting for it (not while a unit is open)."""
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
        error: StoreError | None = None
        if self.conn.info.transaction_status == TransactionStatus.INERROR:
            # A statement outside any unit failed: COMMIT would quietly roll back. Say so instead.
            error = StoreError("a statement of the batch failed; the batch is rolled back")
            with contextlib.suppress(psycopg.Error):
                self.conn.execute("ROLLBACK")
        else:
            try:
                if self.before_commit is not None:
                    self.before_commit()
                self.conn.execute("COMMIT")
            except psycopg.Error as exc:
                with contextlib.suppress(psycopg.Error):
                    self.conn.execute("ROLLBACK")
                error = translate(exc)
        if error is not None:
            log.error("commit failed, the batch is rolled back error=%s", error)
            self._last_failure = _BatchFailure(self._batch_seq, error)
            for fut in waiters:
                if not fut.done():
                    fut.set_exception(type(error)(f"commit failed: {error}"))
            return
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def committed(self) -> Awaitable[None] | None:
        """Resolves once the calling task's writes are committed; None when they already are."""
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

    async def offloop(self, fn: Callable[[PostgreSQLStore], T]) -> T:
        """Run a read-only function against a second connection on a worker thread."""
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="store-reader")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._run_reader, fn)

    def _run_reader(self, fn: Callable[[PostgreSQLStore], T]) -> T:
        try:
            with self._reader_lock:
                if self._reader is None:
                    conn = connect(self.url, lock_timeout_ms=READER_LOCK_TIMEOUT_MS)
                    self._reader = PostgreSQLStore(conn, self.url)
                reader = self._reader.conn
                reader.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                try:
                    return fn(self._reader)
                finally:
                    reader.execute("ROLLBACK")
        except psycopg.Error as exc:
            raise translate(exc) from exc
