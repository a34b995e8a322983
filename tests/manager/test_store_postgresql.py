"""The PostgreSQL store on its own: migrations, error translation, and two Managers assigning at once.

The rest of its behaviour is the manager suite's `[postgresql]` cases (see `conftest.py`).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

psycopg = pytest.importorskip("psycopg", reason="psycopg 3 not installed (Debian package python3-psycopg)")

from flamenco_manager.model import Job, NewTask, Worker  # noqa: E402
from flamenco_manager.store import StoreBusy, StoreConflict, StoreError, open_store  # noqa: E402
from flamenco_manager.store.postgresql import PostgreSQLStore, schema_version  # noqa: E402
from flamenco_manager.store.postgresql_jobs import FIND_RUNNABLE_TASK  # noqa: E402
from flamenco_manager.store.schema import migrations  # noqa: E402
from tests.support.postgresql import PostgresServer  # noqa: E402
from tests.support.stored_jobs import queued_job  # noqa: E402

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
    with store.transaction():
        job = store.create_job(queued_job(name="two managers"))
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


def _job_with_chain(store: PostgreSQLStore, tasks: int) -> Job:
    """A queued job of `tasks` tasks, each after the one before, and the last also after the first."""
    with store.transaction():
        job = store.create_job(queued_job(name="chain"))
        store.add_tasks(
            job,
            [
                NewTask(
                    uuid=str(uuid.uuid4()), name=f"t{i}", type="misc", priority=50, commands=[], steps_total=2
                )
                for i in range(tasks)
            ],
            1,
        )
        pairs = [(i + 1, i) for i in range(1, tasks)] + ([(tasks, 1)] if tasks > 2 else [])
        store.add_dependencies(job, pairs)
    return job


def test_a_job_is_stored_in_one_statement_per_call(
    postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Creating a job, its tasks and their dependencies: one round trip each, whatever the job's size."""
    url = postgres.fresh_database()
    store = _open(url)
    try:
        statements: list[str] = []
        execute = store.conn.execute

        def counting(query: Any, *args: Any, **kwargs: Any) -> Any:
            statements.append(str(query).split(maxsplit=1)[0])
            return execute(query, *args, **kwargs)

        monkeypatch.setattr(store.conn, "execute", counting)
        job = _job_with_chain(store, 2_000)
        # The unit's own BEGIN, SAVEPOINT, RELEASE and COMMIT, then one statement per store call.
        assert statements == ["BEGIN", "SAVEPOINT", "WITH", "INSERT", "INSERT", "RELEASE", "COMMIT"]
        monkeypatch.undo()
        row = store.conn.execute(
            "SELECT count(*) AS n, sum(waiting_on) AS w FROM tasks WHERE job_id = %s", (job.id,)
        ).fetchone()
        assert row is not None and (row["n"], row["w"]) == (2_000, 2_000)
    finally:
        store.close()
        postgres.drop_database(url)


# A task's dependencies that are not completed yet, counted afresh (what `waiting_on` keeps).
_INCOMPLETE_DEPENDENCIES = (
    "(SELECT count(*)::integer FROM task_dependencies d JOIN tasks w ON w.id = d.dependency_id"
    " WHERE d.task_id = t.id AND w.status <> 'completed')"
)


def _recounted(store: PostgreSQLStore, job_id: int) -> tuple[dict[str, int], tuple[int, int, int], list[int]]:
    """The job's counters as a recount from its tasks finds them: status counts, (steps completed, steps
    total, runnable tasks), and each task's incomplete dependencies."""
    rows = store.conn.execute(
        "SELECT status, count(*) AS n FROM tasks WHERE job_id = %s GROUP BY status", (job_id,)
    ).fetchall()
    sums = store.conn.execute(
        "SELECT coalesce(sum(steps_completed), 0) AS sc, coalesce(sum(steps_total), 0) AS st,"
        f" coalesce(sum(flamenco_runnable(status, {_INCOMPLETE_DEPENDENCIES})), 0) AS rn"
        " FROM tasks t WHERE job_id = %s",
        (job_id,),
    ).fetchone()
    waiting = store.conn.execute(
        f"SELECT {_INCOMPLETE_DEPENDENCIES} AS n FROM tasks t WHERE job_id = %s ORDER BY id", (job_id,)
    ).fetchall()
    assert sums is not None
    return (
        {r["status"]: r["n"] for r in rows},
        (int(sums["sc"]), int(sums["st"]), int(sums["rn"])),
        [int(r["n"]) for r in waiting],
    )


def _kept(store: PostgreSQLStore, job_id: int) -> tuple[dict[str, int], tuple[int, int, int], list[int]]:
    """The same counters as the triggers keep them."""
    counts = {s: n for s, n in store.job_task_counts(job_id).items() if n}
    row = store.conn.execute(
        "SELECT steps_completed, steps_total, runnable_tasks FROM jobs WHERE id = %s", (job_id,)
    ).fetchone()
    assert row is not None
    waiting = store.conn.execute(
        "SELECT waiting_on FROM tasks WHERE job_id = %s ORDER BY id", (job_id,)
    ).fetchall()
    return (
        counts,
        (row["steps_completed"], row["steps_total"], row["runnable_tasks"]),
        [r["waiting_on"] for r in waiting],
    )


def test_counting_triggers_scan_transition_tables_once_and_keep_exact_counts(
    postgres: PostgresServer,
) -> None:
    """After a session's first updates changed one task each, a job-wide update is still planned for its
    size: no transition table is scanned again for every row of another (that made a 20,000-task job's
    dependencies take minutes), and every counter equals a recount from the tasks."""
    url = postgres.fresh_database()
    store = _open(url)
    plans: list[str] = []
    try:
        small = _job_with_chain(store, 2)  # its dependency's trigger updates a single row: plans for one
        tasks = store.tasks_of_job(small.id)
        for status in ("active", "completed", "queued", "completed"):  # one row per statement, first
            with store.transaction():
                store.set_tasks_status([tasks[0].id], status, activity="", now=time.time())
            assert _kept(store, small.id) == _recounted(store, small.id)
        store.conn.execute("LOAD 'auto_explain'")
        for setting in (
            "auto_explain.log_min_duration = 0",
            "auto_explain.log_nested_statements = on",
            "auto_explain.log_analyze = on",
            "auto_explain.log_timing = off",
            "auto_explain.log_level = notice",
            "client_min_messages = notice",
        ):
            store.conn.execute(f"SET {setting}")
        store.conn.add_notice_handler(lambda diag: plans.append(diag.message_primary or ""))
        big = _job_with_chain(store, 300)
        assert _kept(store, big.id) == _recounted(store, big.id)
        ids = [t.id for t in store.tasks_of_job(big.id)]
        for status, chosen in (
            ("completed", ids[:200]),
            ("queued", ids[50:250]),
            ("completed", ids),
            ("canceled", ids[::2]),
            ("queued", ids),
        ):
            with store.transaction():
                store.set_tasks_status(chosen, status, activity="", now=time.time())
            assert _kept(store, big.id) == _recounted(store, big.id), status
        store.conn.execute("SET client_min_messages = warning")
    finally:
        store.close()
        postgres.drop_database(url)
    scans = [line for plan in plans for line in plan.splitlines() if "Named Tuplestore Scan" in line]
    assert scans, "auto_explain showed no plan of the counting triggers"
    rescanned = [line.strip() for line in scans if "loops=1)" not in line]
    assert not rescanned, rescanned[:3]


def _tasks_rows_read(node: dict[str, Any]) -> int:
    """Rows the plan node and those below it took from the tasks table (over all their loops)."""
    own = node["Actual Rows"] * node["Actual Loops"] if node.get("Relation Name") == "tasks" else 0
    return own + sum(_tasks_rows_read(child) for child in node.get("Plans", ()))


def test_assigning_from_a_big_job_reads_one_task_not_the_whole_job(postgres: PostgresServer) -> None:
    """The scheduler walks a job's runnable tasks in order and stops at the first it may run: the cost of
    an assignment does not grow with the job (it used to read and sort all 3,000 tasks for each)."""
    url = postgres.fresh_database()
    store = _open(url)
    try:
        _queued_job(store, 3000)
        _queued_job(store, 10)
        worker = _worker(store, "one")
        store.conn.execute("ANALYZE")
        with store.transaction():
            found = store.find_runnable_task(worker)
            assert found is not None and found.index_in_job == 1 and found.job_id == 1
            plan = store.conn.execute(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + FIND_RUNNABLE_TASK,
                {"w": worker.id, "types": ["misc", "blender"]},
            ).fetchone()
        assert plan is not None
        read = _tasks_rows_read(plan["QUERY PLAN"][0]["Plan"])
        assert 1 <= read <= 3, plan
        # The order within the job still holds: priority first, then position.
        with store.transaction():
            store.conn.execute("UPDATE tasks SET priority = 60 WHERE job_id = 1 AND index_in_job = 2500")
        with store.transaction():
            found = store.find_runnable_task(worker)
            assert found is not None and (found.job_id, found.index_in_job) == (1, 2500)
    finally:
        store.close()
        postgres.drop_database(url)
