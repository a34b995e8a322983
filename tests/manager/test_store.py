"""The stores: SQLite migrations, and the trigger-kept counters agreeing with a full recount."""

from __future__ import annotations

import pathlib
import sqlite3
import threading
import time
import uuid
from typing import Any

import pytest

from flamenco_manager.model import NewTask, Task, Worker
from flamenco_manager.store import SQLiteStore, StoreBusy, StoreConflict, StoreError
from flamenco_manager.store import sqlite as sqlite_store
from flamenco_manager.store.schema import migrations
from tests.manager.conftest import API, Farm
from tests.support.stored_jobs import queued_job
from tests.support.waiting import wait_for


def test_migrations_apply_once_and_refuse_a_newer_database(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "m.sqlite"
    store = SQLiteStore.open(path)
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == len(migrations("sqlite"))
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    store.close()
    SQLiteStore.open(path).close()  # reopening applies nothing and fails on nothing
    store = SQLiteStore.open(path)
    store.conn.execute("PRAGMA user_version = 999")
    store.close()
    with pytest.raises(StoreError, match="newer"):
        SQLiteStore.open(path)


def _recount(conn: Any, *, postgresql: bool = False) -> tuple[list, list]:
    # The same query in both dialects but for the aggregate that joins strings.
    if postgresql:
        kept_counts = "string_agg(status || '=' || n, ',' ORDER BY status)"
        counted_counts = "string_agg(status || '=' || n, ',' ORDER BY status)"
    else:
        kept_counts = counted_counts = "group_concat(status || '=' || n)"
    kept = conn.execute(
        "SELECT j.id, j.runnable_tasks, j.steps_completed, j.steps_total,"
        f" (SELECT {kept_counts} FROM job_task_counts c WHERE c.job_id = j.id AND n > 0)"
        " FROM jobs j ORDER BY j.id"
    ).fetchall()
    counted = conn.execute(
        "SELECT j.id,"
        " (SELECT count(*) FROM tasks t WHERE t.job_id = j.id AND t.status IN ('queued', 'soft-failed')"
        "   AND NOT EXISTS (SELECT 1 FROM task_dependencies d JOIN tasks dt ON dt.id = d.dependency_id"
        "                   WHERE d.task_id = t.id AND dt.status <> 'completed')) AS runnable,"
        " (SELECT coalesce(sum(steps_completed), 0) FROM tasks t WHERE t.job_id = j.id) AS done,"
        " (SELECT coalesce(sum(steps_total), 0) FROM tasks t WHERE t.job_id = j.id) AS total,"
        f" (SELECT {counted_counts} FROM (SELECT status, count(*) AS n FROM tasks t"
        "   WHERE t.job_id = j.id GROUP BY status ORDER BY status) AS s)"
        " FROM jobs j ORDER BY j.id"
    ).fetchall()

    def values(row: Any) -> tuple:
        return tuple(row.values()) if isinstance(row, dict) else tuple(row)

    return [values(r) for r in kept], [values(r) for r in counted]


async def test_trigger_counters_match_a_recount(farm: Farm) -> None:
    worker = await farm.awake_worker(("misc",))
    jobs = [await farm.submit_echo(repeats=3) for _ in range(3)]
    for _ in range(5):
        task = (await worker.fetch()).body
        await worker.update(task["uuid"], steps_completed=1, taskStatus="completed")
    await farm.client.post(f"{API}/jobs/{jobs[0]['id']}/setstatus", {"status": "requeueing", "reason": "t"})
    await farm.client.post(
        f"{API}/jobs/{jobs[1]['id']}/setstatus", {"status": "pause-requested", "reason": "t"}
    )
    task = (await worker.fetch()).body
    await worker.update(task["uuid"], taskStatus="failed")
    store = farm.manager.store
    conn: Any
    if isinstance(store, SQLiteStore):
        conn, postgresql = store.conn, False
    else:
        from flamenco_manager.store.postgresql import PostgreSQLStore  # only where psycopg is installed

        assert isinstance(store, PostgreSQLStore)
        conn, postgresql = store.conn, True
    kept, counted = _recount(conn, postgresql=postgresql)
    assert len(kept) == 3
    # group_concat order of the kept counts follows the primary key (status), as the recount does.
    assert kept == counted


def test_failures_come_out_as_store_errors(tmp_path: pathlib.Path) -> None:
    """Callers see the store's own error types, never the database driver's."""
    path = tmp_path / "e.sqlite"
    store = SQLiteStore.open(path)
    with store.transaction():
        store.create_tag(uuid="1", name="gpu", description="")
    with pytest.raises(StoreConflict), store.transaction():
        store.create_tag(uuid="2", name="gpu", description="")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with pytest.raises(StoreBusy), store.transaction():
            store.create_tag(uuid="3", name="cpu", description="")
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert [t.name for t in store.list_tags()] == ["gpu"]
    store.close()


def test_the_checkpointer_sleeps_until_a_commit(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An idle Manager's checkpointer thread does not wake every interval; a commit gets its checkpoint."""
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_INTERVAL", 0.02)
    checkpoints: list[str] = []
    real = sqlite_store._connect

    class Counting:
        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn = conn

        def execute(self, sql: str) -> sqlite3.Cursor:
            checkpoints.append(sql)
            return self.conn.execute(sql)

        def close(self) -> None:
            self.conn.close()

    def connect(path: pathlib.Path, *, readonly: bool = False) -> Any:
        conn = real(path, readonly=readonly)
        return Counting(conn) if threading.current_thread().name == "store-checkpointer" else conn

    monkeypatch.setattr(sqlite_store, "_connect", connect)
    store = SQLiteStore.open(tmp_path / "manager.sqlite")
    store.start()
    try:
        # A window of 25 intervals with nothing committed: the old loop checkpointed in each.
        threading.Event().wait(25 * sqlite_store.CHECKPOINT_INTERVAL)
        assert checkpoints == []
        with store.transaction():
            store.create_tag(uuid="1", name="gpu", description="")
        store.commit()
        wait_for(lambda: len(checkpoints) == 1, 5, "the checkpoint after a commit")
        threading.Event().wait(25 * sqlite_store.CHECKPOINT_INTERVAL)
        assert checkpoints == ["PRAGMA wal_checkpoint(PASSIVE)"]
    finally:
        store.close()


def _job_of(store: SQLiteStore, tasks: int, types: tuple[str, ...]) -> None:
    with store.transaction():
        job = store.create_job(queued_job(name="big"))
        new = [
            NewTask(
                uuid=str(uuid.uuid4()),
                name=f"t{i}",
                type=types[i % len(types)],
                priority=50,
                commands=[],
                steps_total=1,
            )
            for i in range(tasks)
        ]
        store.add_tasks(job, new, 1)
    store.commit()


def _vm_steps(store: SQLiteStore, worker: Worker) -> tuple[Task | None, int]:
    """The task found, and how many SQLite VM instructions (in hundreds) finding it took."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    store.conn.set_progress_handler(count, 100)
    try:
        with store.transaction():
            return store.find_runnable_task(worker), steps[0]
    finally:
        store.conn.set_progress_handler(None, 100)


def test_assigning_from_a_big_job_costs_what_a_small_one_does(tmp_path: pathlib.Path) -> None:
    """The scheduler walks each of the worker's types in order and stops at the first task it may run;
    it used to sort every runnable task of the job for each assignment (20,000 tasks: ~20 ms)."""
    small = SQLiteStore.open(tmp_path / "small.sqlite")
    big = SQLiteStore.open(tmp_path / "big.sqlite")
    try:
        _job_of(small, 10, ("misc", "blender"))
        _job_of(big, 5000, ("misc", "blender"))
        found = {}
        steps = {}
        for name, store in (("small", small), ("big", big)):
            with store.transaction():
                worker = store.create_worker(
                    uuid=str(uuid.uuid4()),
                    secret_hash="-",
                    name="w",
                    address="",
                    platform="linux",
                    supported_task_types=["blender", "misc", "ffmpeg"],
                    now=time.time(),
                )
            found[name], steps[name] = _vm_steps(store, worker)
        assert found["big"] is not None and found["big"].index_in_job == 1
        assert steps["big"] <= 2 * steps["small"] + 5, steps
        # Priority still comes before position, across the worker's types.
        with big.transaction():
            big.conn.execute("UPDATE tasks SET priority = 60 WHERE index_in_job = 4001")
        with big.transaction():
            first = big.find_runnable_task(worker)
        assert first is not None and (first.index_in_job, first.type) == (4001, "misc")
    finally:
        small.close()
        big.close()
