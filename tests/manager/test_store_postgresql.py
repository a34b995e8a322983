"""The PostgreSQL store on its own: migrations, error translation, and two Managers assigning at once.

The rest of its behaviour is the manager suite's `[postgresql]` cases (see `conftest.py`).
"""

from __future__ import annotations

import time
import uuid

import pytest

psycopg = pytest.importorskip("psycopg", reason="psycopg 3 not installed (Debian package python3-psycopg)")

from flamenco_manager.model import Job, JobStatus, NewTask, Worker  # noqa: E402
from flamenco_manager.store import StoreBusy, StoreConflict, StoreError, open_store  # noqa: E402
from flamenco_manager.store.postgresql import PostgreSQLStore, schema_version  # noqa: E402
from flamenco_manager.store.schema import migrations  # noqa: E402
from tests.support.postgresql import PostgresServer  # noqa: E402

pytestmark = pytest.mark.postgresql


def _open(url: str) -> PostgreSQLStore:
    store = open_store(url)
    assert isinstance(store, PostgreSQLStore)
    return store


def test_migrations_apply_once_and_refuse_a_newer_database(postgres: PostgresServer) -> None:
    url = postgres.fresh_database()
    try:
        store = _open(url)
        assert schema_version(store.conn) == len(migrations("postgresql")) == len(migrations("sqlite"))
        store.close()
        _open(url).close()  # reopening applies nothing and fails on nothing
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE schema_version SET version = 999")
        with pytest.raises(StoreError, match="schema version 999 is newer"):
            open_store(url)
    finally:
        postgres.drop_database(url)


def test_an_unreachable_server_is_a_store_error(postgres: PostgresServer) -> None:
    with pytest.raises(StoreError, match="database: cannot connect to PostgreSQL database nosuchdb"):
        open_store(postgres.url("nosuchdb"))


def test_failures_come_out_as_store_errors(postgres: PostgresServer) -> None:
    url = postgres.fresh_database()
    store = _open(url)
    try:
        with store.transaction():
            store.create_tag(uuid="1", name="gpu", description="")
        with pytest.raises(StoreConflict), store.transaction():
            store.create_tag(uuid="2", name="gpu", description="")
        with psycopg.connect(url) as other:  # another session holds the row lock of a name being added
            other.execute("INSERT INTO worker_tags (uuid, name) VALUES ('x', 'cpu')")
            started = time.monotonic()
            with pytest.raises(StoreBusy), store.transaction():
                store.create_tag(uuid="3", name="cpu", description="")
            assert time.monotonic() - started < 5  # the loop's lock timeout, not an endless wait
            other.rollback()
        assert [t.name for t in store.list_tags()] == ["gpu"]
        with store.transaction():  # the store is usable again after both failures
            store.create_tag(uuid="4", name="cpu", description="")
        assert [t.name for t in store.list_tags()] == ["cpu", "gpu"]
    finally:
        store.close()
        postgres.drop_database(url)


def _queued_job(store: PostgreSQLStore, tasks: int) -> None:
    now = time.time()
    with store.transaction():
        job = store.create_job(
            Job(
                id=0,
                uuid=str(uuid.uuid4()),
                name="two managers",
                job_type="echo-sleep-test",
                type_etag="",
                priority=50,
                status=JobStatus.QUEUED,
                activity="",
                settings_json="{}",
                metadata_json="{}",
                submitter_platform="linux",
                shaman_checkout_id="",
                worker_tag_id=None,
                steps_completed=0,
                steps_total=0,
                created_at=now,
                updated_at=now,
                delete_requested_at=None,
            )
        )
        new = [
            NewTask(
                uuid=str(uuid.uuid4()), name=f"t{i}", type="misc", priority=50, commands=[], steps_total=1
            )
            for i in range(tasks)
        ]
        store.add_tasks(job, new, 1)


def _worker(store: PostgreSQLStore, name: str) -> Worker:
    with store.transaction():
        return store.create_worker(
            uuid=str(uuid.uuid4()),
            secret_hash="-",
            name=name,
            address="",
            platform="linux",
            supported_task_types=["misc"],
            now=time.time(),
        )


def test_two_managers_never_find_the_same_task(postgres: PostgresServer) -> None:
    """While one Manager's unit holds the task it found, another Manager passes over it, without waiting."""
    url = postgres.fresh_database()
    first, second = _open(url), _open(url)
    try:
        _queued_job(first, 2)
        one, two = _worker(first, "one"), _worker(first, "two")
        with first.transaction():
            found = first.find_runnable_task(one)
            assert found is not None and found.index_in_job == 1
            started = time.monotonic()
            with second.transaction():
                other = second.find_runnable_task(two)
                assert other is not None and other.index_in_job == 2
            assert time.monotonic() - started < 1.0  # passed over, not waited for
    finally:
        first.close()
        second.close()
        postgres.drop_database(url)
