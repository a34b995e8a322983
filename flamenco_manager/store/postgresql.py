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

A lost connection (the server restarted, the session was ended) is not the end of the store: the unit
that meets it fails with `StoreUnavailable` (503, try again), and so does every request waiting on
`committed()` for the batch it took down, whose writes the server rolled back. The store connects again
off the event loop (a thread), first at once and then backing off, with the session settings of
`connect()`; until then each use fails at once with `StoreUnavailable`, without touching the network. The
reader connection behind `offloop` does the same on its own thread. The loss and the return are one log
line each. A COMMIT cut off on its way back may have landed: clients' retries carry idempotency keys.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import contextvars
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from flamenco_manager.store.interface import StoreBusy, StoreError, StoreUnavailable
from flamenco_manager.store.postgresql_errors import connection_lost, first_line, translate
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
# After a lost connection the first try is at once; a failed one waits this long before the next: a
# restarting server is back within a second or two, and a farm wants it used again as soon as it is.
RECONNECT_FIRST_DELAY_S = 0.25
# Each failed try doubles the wait up to this: a server that stays away is asked every few seconds, not
# many times a second, and the log stays quiet until it is back.
RECONNECT_MAX_DELAY_S = 2.0
# Failed batches remembered for `committed()`; a task asks right after its unit, so a few dozen suffice.
FAILED_BATCHES_KEPT = 64

Connection = psycopg.Connection[dict[str, Any]]


def connect(url: str, *, lock_timeout_ms: int = LOOP_LOCK_TIMEOUT_MS) -> Connection:
    """An autocommit connection (transactions are explicit, as on the SQLite store) with dict rows."""
    conn = psycopg.connect(url, autocommit=True, row_factory=dict_row, connect_timeout=CONNECT_TIMEOUT_S)
    conn.execute(f"SET lock_timeout = {int(lock_timeout_ms)}")
    # PostgreSQL's own choice between cached and per-call plans: the counting triggers, whose cached plans
    # went stale as a job's tasks were inserted, force per-call plans themselves (migration 0004), and
    # forcing them for every statement replanned each foreign-key check and cascade, row by row.
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

    __slots__ = ("lost", "task")

    def __init__(self, task: asyncio.Task[object] | None) -> None:
        self.task = task
        # Its connection went while it was open (it awaited inside): nothing more of it may run.
        self.lost = False


def _current_task() -> asyncio.Task[object] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None  # no event loop (tools, tests)


def _on_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _close_unused(attempt: asyncio.Future[Connection]) -> None:
    """Close a connection that came after nobody wanted it any more (the store closed meanwhile)."""
    if not attempt.cancelled() and attempt.exception() is None:
        attempt.result().close()


class PostgreSQLStore(WorkerQueries, JobQueries):
    """All SQL of the Manager for PostgreSQL. Called on the event loop; `offloop` reads on a thread."""

    def __init__(
        self,
        conn: Connection | None,
        url: str,
        *,
        lock_timeout_ms: int = LOOP_LOCK_TIMEOUT_MS,
        role: str = "loop",
    ) -> None:
        self._conn = conn
        self.url = url
        self._lock_timeout_ms = lock_timeout_ms
        # Which of the Manager's connections this is, for the log: "loop" or "reader".
        self._role = role
        self._closed = False
        # While the connection is lost: since when (monotonic; None while connected), the task that
        # reconnects on the event loop, and (without an event loop) when the next try is due.
        self._lost_at: float | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        # Set when someone learns that the server is back (another connection got through): the
        # reconnecting task tries at once instead of finishing its back-off.
        self._nudge: asyncio.Event | None = None
        self._next_try = 0.0
        self._delay = RECONNECT_FIRST_DELAY_S
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
        self._failed: collections.OrderedDict[int, StoreError] = collections.OrderedDict()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._commit_waiters: list[asyncio.Future[None]] = []
        # Called inside the batch just before COMMIT (replicas' NOTIFYs: see postgresql_notify).
        self.before_commit: Callable[[], None] | None = None
        # Called on the event loop once a lost connection is back (news may have been lost meanwhile).
        self.on_reconnect: list[Callable[[], None]] = []

    @property
    def conn(self) -> Connection:
        """The session's connection; while it is lost, `StoreUnavailable` (and reconnecting starts).

        A connection that died unnoticed is returned as it is (asking libpq costs more than the rest of
        this on every statement): its next statement fails, and that failure lets go of it."""
        conn = self._conn
        if conn is not None:
            if self._open_unit is None or not self._open_unit.lost:
                return conn
            raise self._unavailable()  # a unit begun on the lost connection must not go on here
        return self._reconnect_or_fail()

    @conn.setter
    def conn(self, conn: Connection) -> None:
        self._conn = conn

    @property
    def batch_open(self) -> bool:
        """Whether a batch transaction is open (its commit is due this loop turn)."""
        return self._batch_open

    @property
    def connected(self) -> bool:
        """Whether the store has a connection it believes alive (a dead one shows at its next use)."""
        return self._conn is not None and not self._conn.closed

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
            self._reader.close()
            self._reader = None
        try:
            self.commit()
        finally:
            self._closed = True
            if self._reconnecting is not None:
                self._reconnecting.cancel()
                self._reconnecting = None
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def is_closed(self) -> bool:
        """Whether close() was called (a method, read afresh after every await)."""
        return self._closed

    # A lost connection.

    def _unavailable(self) -> StoreUnavailable:
        return StoreUnavailable(f"no connection to {redacted(self.url)} right now; reconnecting")

    def _lose(self, exc: BaseException | None, conn: Connection) -> StoreUnavailable:
        """Let go of a dead connection: the open batch fails with it, and reconnecting starts."""
        error = StoreUnavailable(f"lost the connection to {redacted(self.url)}; reconnecting")
        if conn is not self._conn:
            return error  # already replaced
        self._conn = None
        self._lost_at = time.monotonic()
        self._next_try = 0.0
        self._delay = RECONNECT_FIRST_DELAY_S
        log.warning(
            "database connection lost, reconnecting connection=%s database=%r error=%s",
            self._role,
            redacted(self.url),
            first_line(exc) if exc is not None else "closed",
        )
        with contextlib.suppress(psycopg.Error):
            conn.close()
        if self._open_unit is not None:
            self._open_unit.lost = True
        if self._batch_open:
            # The server rolled the batch back with the session: none of its units' writes happened.
            self._batch_open = False
            waiters, self._commit_waiters = self._commit_waiters, []
            self._fail_batch(self._batch_seq, error, waiters)
        self._start_reconnecting()
        return error

    def connection_failed(self, exc: psycopg.Error) -> None:
        """A query method met an error that may mean the session is gone (see `translated`)."""
        conn = self._conn
        if conn is not None and connection_lost(exc, conn) and conn.closed:
            self._lose(exc, conn)

    def _start_reconnecting(self) -> None:
        """On the event loop: reconnect in the background. Elsewhere the next use tries (see `conn`)."""
        if self._closed or (self._reconnecting is not None and not self._reconnecting.done()):
            return
        if _on_loop():
            self._reconnecting = asyncio.get_running_loop().create_task(
                self._reconnect(), name=f"store-reconnect-{self._role}"
            )

    def _reconnect_or_fail(self) -> Connection:
        if self._closed:
            raise StoreError(f"the store of {redacted(self.url)} is closed")
        if _on_loop():
            self._start_reconnecting()
            raise self._unavailable()
        # No event loop (the reader's thread, tools): try here, at most once per back-off step.
        if time.monotonic() < self._next_try:
            raise self._unavailable()
        try:
            conn = connect(self.url, lock_timeout_ms=self._lock_timeout_ms)
        except psycopg.Error as exc:
            self._try_failed(exc)
            self._next_try = time.monotonic() + self._delay
            self._delay = min(self._delay * 2, RECONNECT_MAX_DELAY_S)
            raise self._unavailable() from exc
        self._install(conn)
        return conn

    def _try_failed(self, exc: psycopg.Error) -> None:
        if self._lost_at is None:  # never connected yet (the reader's first try)
            self._lost_at = time.monotonic()
            log.warning(
                "cannot connect to the database, retrying connection=%s database=%r error=%s",
                self._role,
                redacted(self.url),
                first_line(exc),
            )
        else:
            log.debug("reconnecting failed connection=%s error=%s", self._role, first_line(exc))

    async def _reconnect(self) -> None:
        """Connect again on a thread (never blocking the loop), backing off while the server is away."""
        loop = asyncio.get_running_loop()
        delay = RECONNECT_FIRST_DELAY_S
        while not self.is_closed():
            attempt = loop.run_in_executor(
                None, functools.partial(connect, self.url, lock_timeout_ms=self._lock_timeout_ms)
            )
            try:
                conn = await asyncio.shield(attempt)
            except asyncio.CancelledError:
                attempt.add_done_callback(_close_unused)
                raise
            except psycopg.Error as exc:
                self._try_failed(exc)
                nudge = self._nudge = asyncio.Event()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await nudge.wait()
                delay = min(delay * 2, RECONNECT_MAX_DELAY_S)
                continue
            if self.is_closed():  # closed while connecting
                conn.close()
                return
            self._install(conn)
            for hook in list(self.on_reconnect):
                try:
                    hook()
                except Exception:
                    log.exception("a hook after reconnecting failed hook=%s", hook)
            return

    def _install(self, conn: Connection) -> None:
        self._conn = conn
        self._next_try = 0.0
        self._delay = RECONNECT_FIRST_DELAY_S
        if self._lost_at is not None:
            log.info(
                "database connection back connection=%s database=%r after_s=%.1f",
                self._role,
                redacted(self.url),
                time.monotonic() - self._lost_at,
            )
            self._lost_at = None

    async def wait_connected(self) -> None:
        """Check the loop's connection (when no unit is open) and return once it works, reconnected if
        it had been lost (at once: callers come here because another connection got through). Callers
        bound the wait themselves."""
        conn = self._conn
        if conn is not None and self._open_unit is None:
            try:
                conn.execute("SELECT 1")
            except psycopg.Error as exc:
                if connection_lost(exc, conn):
                    self._lose(exc, conn)
        if self._conn is None and not self._closed:
            self._start_reconnecting()
            if self._nudge is not None:
                self._nudge.set()  # the caller got through to the server: try now
            if self._reconnecting is not None:
                await asyncio.shield(self._reconnecting)

    # Units and batches.

    def _execute(self, sql: str) -> None:
        conn = self.conn
        try:
            conn.execute(sql)
        except psycopg.Error as exc:
            if connection_lost(exc, conn):
                raise self._lose(exc, conn) from exc
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
        seq = self._batch_seq
        self._wrote_in.set(seq)
        unit = _Unit(task)
        token = self._unit.set(unit)
        self._open_unit = unit
        try:
            yield
        except BaseException:
            self._end_unit(unit, token)
            if self._batch_open and self._batch_seq == seq:  # else the connection went, the batch with it
                self._execute("ROLLBACK TO SAVEPOINT unit")
                self._execute("RELEASE SAVEPOINT unit")
                if self._loop is None:
                    self.commit()
            raise
        self._end_unit(unit, token)
        if not (self._batch_open and self._batch_seq == seq):
            raise self._unavailable()  # the connection went during the unit: none of it was written
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
        conn = self._conn
        error: StoreError | None = None
        if conn is None:  # (a lost connection closes its batch at once; this is a safety net)
            error = self._unavailable()
        elif conn.info.transaction_status == TransactionStatus.INERROR:
            # A statement outside any unit failed: COMMIT would quietly roll back. Say so instead.
            error = StoreError("a statement of the batch failed; the batch is rolled back")
            with contextlib.suppress(psycopg.Error):
                conn.execute("ROLLBACK")
        else:
            try:
                if self.before_commit is not None:
                    self.before_commit()
                conn.execute("COMMIT")
            except (StoreError, psycopg.Error) as exc:  # (before_commit raises store errors too)
                if conn.closed:
                    error = self._lose(exc, conn)
                else:
                    with contextlib.suppress(psycopg.Error):
                        conn.execute("ROLLBACK")
                    error = exc if isinstance(exc, StoreError) else translate(exc)
        if error is not None:
            if not isinstance(error, StoreUnavailable):  # a lost connection has logged its own line
                log.error("commit failed, the batch is rolled back error=%s", error)
            self._fail_batch(self._batch_seq, error, waiters)
            return
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def _fail_batch(self, seq: int, error: StoreError, waiters: list[asyncio.Future[None]]) -> None:
        self._failed[seq] = error
        while len(self._failed) > FAILED_BATCHES_KEPT:
            self._failed.popitem(last=False)
        for fut in waiters:
            if not fut.done():
                fut.set_exception(type(error)(f"commit failed: {error}"))

    def committed(self) -> Awaitable[None] | None:
        """Resolves once the calling task's writes are committed; None when they already are."""
        seq = self._wrote_in.get()
        if seq == 0:
            return None
        if self._batch_open and seq == self._batch_seq:
            fut = asyncio.get_running_loop().create_future()
            self._commit_waiters.append(fut)
            return fut
        error = self._failed.get(seq)
        if error is not None:
            failed = asyncio.get_running_loop().create_future()
            failed.set_exception(type(error)(f"commit failed: {error}"))
            return failed
        return None

    async def offloop(self, fn: Callable[[PostgreSQLStore], T]) -> T:
        """Run a read-only function against a second connection on a worker thread."""
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="store-reader")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._run_reader, fn)

    def _run_reader(self, fn: Callable[[PostgreSQLStore], T]) -> T:
        with self._reader_lock:
            if self._reader is None:
                self._reader = PostgreSQLStore(
                    None, self.url, lock_timeout_ms=READER_LOCK_TIMEOUT_MS, role="reader"
                )
            reader = self._reader
            conn = reader.conn  # (re)connects here on the reader's thread; StoreUnavailable meanwhile
            try:
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                try:
                    return fn(reader)
                finally:
                    if not conn.closed:
                        conn.execute("ROLLBACK")
            except psycopg.Error as exc:
                if connection_lost(exc, conn):
                    raise reader._lose(exc, conn) from exc
                raise translate(exc) from exc
