"""The PostgreSQL server restarts (or a session is cut) under a running Manager: the store fails the units
that meet the lost connection cleanly (503, never 500, nothing half-written), reconnects by itself, and the
replicas find each other and their farm-wide loops again.

These tests restart their own private server (one per module), not the session's shared one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import pathlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

psycopg = pytest.importorskip("psycopg", reason="psycopg 3 not installed (Debian package python3-psycopg)")

from flamenco_manager.services import ELECTION_RETRY  # noqa: E402
from flamenco_manager.store import StoreUnavailable  # noqa: E402
from flamenco_manager.store import postgresql as pg_store  # noqa: E402
from flamenco_manager.store.postgresql import (  # noqa: E402
    LOOP_LOCK_TIMEOUT_MS,
    RECONNECT_MAX_DELAY_S,
    PostgreSQLStore,
    connect,
)
from flamenco_manager.store.postgresql_leader import LEADER_LOCK_KEY  # noqa: E402
from tests.manager.conftest import API, PG_TEMPLATE, FakeWorker, Farm, migrated_postgres  # noqa: E402
from tests.manager.test_replicas import _held, _on, _replica  # noqa: E402
from tests.support import postgresql  # noqa: E402

pytestmark = [pytest.mark.postgresql, pytest.mark.timeout(180)]

# Simulated workers sending task updates while the server restarts.
WORKERS = 8
# A worker answered 503 tries again after this (a real worker waits Retry-After or longer; the test
# need not).
RETRY_PAUSE = 0.05
# Updates each worker has acknowledged before the restart, and again after it.
UPDATES_BEFORE = 5
UPDATES_AFTER = 5
# The store is serving again within this after the server is back (its back-off tops out at 2 s).
RECOVERY = 15.0
# How long the server stays stopped in the test of the back-off (several of its steps).
OUTAGE = 4.0
# A held request on one replica is answered within this after a change on the other.
PROMPT = 3.0


@pytest.fixture(scope="module")
def server() -> Iterator[postgresql.PostgresServer]:
    """A private server of this module's own, since its tests restart it."""
    yield from migrated_postgres()


@pytest.fixture
def url(server: postgresql.PostgresServer) -> Iterator[str]:
    url = server.fresh_database(template=PG_TEMPLATE)
    yield url
    server.drop_database(url)


def _terminate(server: postgresql.PostgresServer, pid: int) -> None:
    """End one session as an operator would, and wait until its backend is gone."""
    server.admin(f"SELECT pg_terminate_backend({int(pid)}, 5000)")


async def _until(predicate: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {within}s"
        await asyncio.sleep(0.02)


def _store(farm: Farm) -> PostgreSQLStore:
    store = farm.manager.store
    assert isinstance(store, PostgreSQLStore)
    return store


def _lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(text)]


# The store on its own.


def _tag_names(store: PostgreSQLStore) -> list[str]:
    return [t.name for t in store.list_tags()]


async def _serving(store: PostgreSQLStore) -> None:
    """Wait until the store answers again (it reconnects by itself in the background)."""
    deadline = time.monotonic() + RECOVERY
    while True:
        try:
            store.list_tags()
            return
        except StoreUnavailable:
            assert time.monotonic() < deadline, "the store did not reconnect"
            await asyncio.sleep(0.05)


async def test_killed_session_fails_cleanly_and_is_recovered(
    url: str, server: postgresql.PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flamenco_manager.store")
    store = PostgreSQLStore.open(url)
    try:
        with store.transaction():
            store.create_tag(uuid="1", name="before", description="")
        await asyncio.sleep(0)  # the batch commits at the end of the loop turn

        # Cut in the middle of a unit: the unit fails as "unavailable" and nothing of it is written.
        with pytest.raises(StoreUnavailable), store.transaction():
            store.create_tag(uuid="2", name="half", description="")
            _terminate(server, store.conn.info.backend_pid)
            store.create_tag(uuid="3", name="other half", description="")
        with pytest.raises(StoreUnavailable):  # until it is back, every use fails at once
            store.list_tags()
        await _serving(store)
        assert _tag_names(store) == ["before"]
        # The session settings of connect() hold on the new connection too.
        settings = store.conn.execute("SELECT current_setting('lock_timeout') AS lock_timeout").fetchone()
        assert settings == {"lock_timeout": f"{LOOP_LOCK_TIMEOUT_MS}ms"}

        # Cut after the unit, before its batch commits: whoever waits on committed() hears of it.
        async def write() -> None:
            with store.transaction():
                store.create_tag(uuid="4", name="lost at commit", description="")
            _terminate(server, store.conn.info.backend_pid)
            committed = store.committed()
            assert committed is not None
            await committed

        with pytest.raises(StoreUnavailable):
            await asyncio.create_task(write())
        await _serving(store)
        assert _tag_names(store) == ["before"]
        with store.transaction():
            store.create_tag(uuid="5", name="after", description="")
        await asyncio.sleep(0)
        assert _tag_names(store) == ["after", "before"]

        # The reader connection behind offloop recovers the same way, on its own thread.
        assert await store.offloop(lambda s: len(s.list_tags())) == 2
        assert store._reader is not None and store._reader._conn is not None
        _terminate(server, store._reader._conn.info.backend_pid)
        with pytest.raises(StoreUnavailable):
            await store.offloop(lambda s: len(s.list_tags()))
        assert await store.offloop(lambda s: len(s.list_tags())) == 2
    finally:
        store.close()
    lost = _lines(caplog, "database connection lost")
    back = _lines(caplog, "database connection back")
    assert len(lost) == len(back) == 3, (lost, back)  # one line each per loss, whatever the traffic
    assert all("postgres@" not in line for line in lost + back)


async def test_reconnecting_neither_blocks_the_loop_nor_hammers_the_server(
    url: str,
    server: postgresql.PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Requests keep coming while the server is away for a few seconds: each fails at once, the store
    connects on a thread, and a few tries (backing off) bring it back, not one per request; the log
    has one line for the loss and one for the return."""
    caplog.set_level(logging.INFO, logger="flamenco_manager.store")
    tries: list[str] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        tries.append(threading.current_thread().name)
        return connect(*args, **kwargs)

    monkeypatch.setattr(pg_store, "connect", counted)
    store = PostgreSQLStore.open(url)
    tries.clear()  # opening connects on the caller's thread, as it should
    try:
        restart = asyncio.create_task(asyncio.to_thread(server.restart, down_for=OUTAGE))
        uses, slowest = 0, 0.0
        deadline = time.monotonic() + OUTAGE + RECOVERY
        served = False
        failed_from: float | None = None
        away = 0.0
        while not (restart.done() and served and uses >= 10):
            assert time.monotonic() < deadline, "the store did not reconnect"
            started = time.monotonic()
            try:
                store.list_tags()
                served = True
                if failed_from is not None:
                    away, failed_from = started - failed_from, None
            except StoreUnavailable:
                served = False
                failed_from = failed_from or started
            slowest = max(slowest, time.monotonic() - started)
            uses += 1
            await asyncio.sleep(0.005)
        await restart
        assert tries and threading.main_thread().name not in tries, tries
        # Backing off: a handful of tries over the outage however many uses met it, then one a second at
        # most (the longest wait between tries is longer than that).
        assert RECONNECT_MAX_DELAY_S >= 1.0
        assert len(tries) <= 5 + away, (len(tries), uses, away)
        assert slowest < 1.0, slowest  # a use never waits for a connection attempt
        store.list_tags()
        assert [r.levelname for r in caplog.records if r.name.startswith("flamenco_manager")] == [
            "WARNING",
            "INFO",
        ], [r.getMessage() for r in caplog.records]
        print(
            f"\nrestart: {uses} uses, {len(tries)} connection tries over {away:.1f}s away,"
            f" slowest use {slowest * 1000:.1f}ms"
        )
    finally:
        store.close()


# A Manager under load.


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def manager(tmp_path: pathlib.Path, url: str, session: aiohttp.ClientSession) -> AsyncIterator[Farm]:
    farm, runner = await _replica(tmp_path, url, session)
    try:
        yield farm
    finally:
        farm.manager.stop_holding()
        await runner.cleanup()
        await farm.manager.stop()


class Reporter:
    """A worker sending task updates one after another; a 503 is tried again until it lands."""

    def __init__(self, worker: FakeWorker, task_id: str, statuses: collections.Counter[int]) -> None:
        self.worker = worker
        self.task_id = task_id
        self.statuses = statuses
        self.acked: list[str] = []
        self.running = asyncio.Event()
        self.running.set()
        self.waiting = asyncio.Event()

    async def run(self) -> None:
        n = 0
        while True:
            if not self.running.is_set():
                self.waiting.set()
                await self.running.wait()
                self.waiting.clear()
            n += 1
            activity = f"{self.worker.name} update {n}"
            while True:
                reply = await self.worker.update(self.task_id, activity=activity)
                self.statuses[reply.status] += 1
                if reply.status == 204:
                    self.acked.append(activity)
                    break
                assert reply.status == 503, (reply.status, reply.body)
                assert reply.headers.get("Retry-After"), reply.headers
                await asyncio.sleep(RETRY_PAUSE)


async def _pause(reporters: list[Reporter], tasks: list[asyncio.Task[None]]) -> None:
    """Let each reporter finish its update (until it lands) and wait; a failed one fails the test."""
    for r in reporters:
        r.running.clear()
    pairs = list(zip(reporters, tasks, strict=True))
    await _until(lambda: all(r.waiting.is_set() or t.done() for r, t in pairs), 60, "paused")
    for t in tasks:
        if t.done():
            t.result()  # an unexpected status fails the test here


def _activities(url: str, task_ids: list[str]) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT uuid, activity FROM tasks WHERE uuid = ANY(%s)", (task_ids,)).fetchall()
    return {uuid: activity for uuid, activity in rows}


async def test_restart_under_load_loses_no_acknowledged_update(
    manager: Farm, url: str, server: postgresql.PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flamenco_manager")
    statuses: collections.Counter[int] = collections.Counter()
    reporters: list[Reporter] = []
    for _ in range(WORKERS):
        await manager.submit_echo(repeats=0)
    for _ in range(WORKERS):
        worker = await manager.awake_worker()
        reply = await worker.fetch()
        assert reply.status == 200, reply.body
        reporters.append(Reporter(worker, reply.body["uuid"], statuses))
    tasks = [asyncio.create_task(r.run()) for r in reporters]
    try:
        await _until(lambda: all(len(r.acked) >= UPDATES_BEFORE for r in reporters), 30, "updates before")
        await asyncio.to_thread(server.restart)  # the updates keep coming meanwhile
        # Each finishes what it was sending (retrying until it lands) and pauses: what was
        # acknowledged, before, during or after the restart, must be in the database.
        await _pause(reporters, tasks)
        assert {r.task_id: r.acked[-1] for r in reporters} == _activities(url, [r.task_id for r in reporters])
        marks = [len(r.acked) for r in reporters]
        for r in reporters:
            r.running.set()
        await _until(
            lambda: all(len(r.acked) >= m + UPDATES_AFTER for r, m in zip(reporters, marks, strict=True)),
            30,
            "updates after",
        )
        await _pause(reporters, tasks)
        assert {r.task_id: r.acked[-1] for r in reporters} == _activities(url, [r.task_id for r in reporters])
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
    assert set(statuses) <= {204, 503}, statuses
    print(f"\ntask updates during a restart: {dict(statuses)}")
    # One line for the loss and one for the return, however many requests met the gap.
    assert len(_lines(caplog, "database connection lost, reconnecting connection=loop")) == 1
    assert len(_lines(caplog, "database connection back connection=loop")) == 1
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(noisy) < 10, [r.getMessage() for r in noisy]


# Two replicas.


@pytest.fixture
async def replicas(
    tmp_path: pathlib.Path, url: str, session: aiohttp.ClientSession
) -> AsyncIterator[tuple[Farm, Farm]]:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, runner_a = await _replica(tmp_path / "a", url, session)
    b, runner_b = await _replica(tmp_path / "b", url, session)
    try:
        yield a, b
    finally:
        for farm, runner in ((a, runner_a), (b, runner_b)):
            farm.manager.stop_holding()
            await runner.cleanup()
            await farm.manager.stop()


def _lock_holder_pid(url: str) -> int | None:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND ((classid::bigint << 32) | objid::bigint) = %s",
            (LEADER_LOCK_KEY,),
        ).fetchone()
    return None if row is None else int(row[0])


def _one_runner(a: Farm, b: Farm, url: str) -> Farm | None:
    """The replica running the farm-wide loops, if exactly one does and holds the lock in the database."""
    runners = [f for f in (a, b) if f.manager.runs_farm_loops]
    if len(runners) != 1:
        return None
    leader = runners[0].manager._leader
    if leader is None or leader._conn is None or leader._conn.closed:
        return None
    return runners[0] if _lock_holder_pid(url) == leader._conn.info.backend_pid else None


async def _serves(farm: Farm) -> None:
    """Wait until the replica answers a request that reads the database."""
    deadline = time.monotonic() + RECOVERY
    while (reply := await farm.client.get(f"{API}/worker-mgt/workers")).status != 200:
        assert reply.status == 503, (reply.status, reply.body)
        assert time.monotonic() < deadline, "the replica does not serve again"
        await asyncio.sleep(0.05)


async def test_replicas_after_a_restart(
    replicas: tuple[Farm, Farm], url: str, server: postgresql.PostgresServer
) -> None:
    a, b = replicas
    await _until(lambda: _one_runner(a, b, url) is not None, ELECTION_RETRY + 5, "a farm-loops runner")
    worker = await a.awake_worker()
    on_b = _on(b, worker)

    await asyncio.to_thread(server.restart)
    restarted = time.monotonic()
    await _serves(a)
    await _serves(b)

    # A change on A still reaches a request held on B.
    held = asyncio.create_task(on_b.state(wait=10))
    await _held(b, worker.uuid)
    reply = await a.client.post(
        f"{API}/worker-mgt/workers/{worker.uuid}/setstatus", {"status": "asleep", "is_lazy": False}
    )
    assert reply.status == 204, reply.body
    answer = await asyncio.wait_for(held, PROMPT)
    assert answer.status == 200 and answer.body == {"status_requested": "asleep"}

    # The farm-wide loops run on exactly one replica again, and stay so.
    await _until(lambda: _one_runner(a, b, url) is not None, 2 * ELECTION_RETRY + 5, "one runner again")
    print(f"\nfarm-wide loops on one replica again {time.monotonic() - restarted:.2f}s after the restart")
    runner = _one_runner(a, b, url)
    await asyncio.sleep(ELECTION_RETRY * 1.5)
    assert _one_runner(a, b, url) is runner


async def test_replica_that_missed_news_catches_up(
    replicas: tuple[Farm, Farm], server: postgresql.PostgresServer
) -> None:
    """B's listening session is cut and A's news goes out while it is away: once B listens again it wakes
    its held requests (which re-read their state) and ends its event streams (browsers refetch)."""
    a, b = replicas
    worker = await a.awake_worker()
    on_b = _on(b, worker)
    held = asyncio.create_task(on_b.state(wait=10))
    await _held(b, worker.uuid)
    response = await b.client.session.get(f"{b.client.base}{API}/events?topics=workers")
    try:
        assert response.status == 200
        relay = b.manager._relay
        assert relay is not None and relay._conn is not None
        _terminate(server, relay._conn.info.backend_pid)
        reply = await a.client.post(
            f"{API}/worker-mgt/workers/{worker.uuid}/setstatus", {"status": "asleep", "is_lazy": False}
        )
        assert reply.status == 204, reply.body
        answer = await asyncio.wait_for(held, PROMPT)
        assert answer.status == 200 and answer.body == {"status_requested": "asleep"}
        # The stream ends (the browser's EventSource reconnects and its page fetches afresh).
        await asyncio.wait_for(response.content.read(), PROMPT)
        assert response.content.at_eof()
    finally:
        response.close()


async def test_replica_whose_store_lost_its_session_tells_the_others(
    replicas: tuple[Farm, Farm], server: postgresql.PostgresServer
) -> None:
    """Only A's store session is cut: news A sent meanwhile may not have gone out, so once A's store is
    back it tells B, whose browsers then refetch."""
    a, b = replicas
    response = await b.client.session.get(f"{b.client.base}{API}/events?topics=workers")
    try:
        assert response.status == 200
        _terminate(server, _store(a).conn.info.backend_pid)
        await _serves(a)
        await asyncio.wait_for(response.content.read(), PROMPT)
        assert response.content.at_eof()
    finally:
        response.close()
