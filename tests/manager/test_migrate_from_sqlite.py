"""`flamenco-manager -migrate-from-sqlite FILE`: a farm's SQLite database copied into empty PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import re
import subprocess
import sys

import pytest

from flamenco_manager.store import Store, open_store
from tests.manager.conftest import API, Farm
from tests.support.postgresql import PostgresServer

# The copy of a small farm takes well under a second; a loaded machine gets this long.
COPY_TIMEOUT = 60


def _migrate(tmp_path: pathlib.Path, url: str, sqlite_file: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "pg.yaml"
    config.write_text(f"_meta: {{version: 3}}\ndatabase: '{url}'\nlocal_manager_storage_path: {tmp_path}\n")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "flamenco_manager",
            "-config",
            str(config),
            "-migrate-from-sqlite",
            sqlite_file,
        ],
        capture_output=True,
        text=True,
        timeout=COPY_TIMEOUT,
        check=False,
    )


def _snapshot(store: Store) -> dict[str, object]:
    jobs = store.list_jobs()
    workers = store.list_workers()
    return {
        "jobs": jobs,
        "tasks": [store.tasks_of_job(j.id) for j in jobs],
        "counts": [store.job_task_counts(j.id) for j in jobs],
        "workers": workers,
        "worker_tags": [store.worker_tags(w.id) for w in workers],
        "tags": store.list_tags(),
        "failures": [
            [w.id for w in store.task_failed_by(t.id)] for j in jobs for t in store.tasks_of_job(j.id)
        ],
        "blocklists": [store.job_blocklist(j.id) for j in jobs],
        "last_rendered": store.get_last_rendered(),
    }


@pytest.mark.postgresql
@pytest.mark.sqlite_only("fills the SQLite farm that it copies")
async def test_a_farm_is_copied_whole_and_an_occupied_database_refused(
    farm: Farm, tmp_path: pathlib.Path, postgres: PostgresServer
) -> None:
    worker = await farm.awake_worker(("misc",))
    other = await farm.awake_worker(("misc",))
    tag = await farm.client.post(f"{API}/worker-mgt/tags", {"name": "gpu", "description": "fast"})
    assert tag.status == 200, tag.body
    reply = await farm.client.post(
        f"{API}/worker-mgt/workers/{worker.uuid}/settags", {"tag_ids": [tag.body["id"]]}
    )
    assert reply.status == 204, reply.body
    jobs = [await farm.submit_echo(repeats=2) for _ in range(3)]
    task = (await worker.fetch()).body
    await worker.update(task["uuid"], taskStatus="completed", steps_completed=1)
    task = (await other.fetch()).body
    await other.update(task["uuid"], taskStatus="failed")
    await farm.client.post(f"{API}/jobs/{jobs[2]['id']}/setstatus", {"status": "paused", "reason": "t"})
    # Last-seen times the requests above left pending are written now, not by the periodic flush
    # while the copy reads the file.
    farm.manager.workers.flush_seen()
    written = farm.manager.store.committed()
    if written is not None:
        await written
    sqlite_file = farm.manager.config.database
    expected = _snapshot(farm.manager.store)
    farm_jobs = farm.manager.store.list_jobs()

    url = postgres.fresh_database()
    try:
        done = await asyncio.to_thread(_migrate, tmp_path, url, sqlite_file)
        assert done.returncode == 0, done.stderr
        assert "every table's row count matches" in done.stdout
        assert re.search(r"^tasks +9 rows$", done.stdout, re.MULTILINE), done.stdout
        copied = open_store(url)
        try:
            assert _snapshot(copied) == expected
            # the copy goes on where the farm stopped: new rows get new ids
            new = dataclasses.replace(farm_jobs[0], uuid="new-job")
            with copied.transaction():
                assert copied.create_job(new).id > max(j.id for j in farm_jobs)
        finally:
            copied.close()

        again = await asyncio.to_thread(_migrate, tmp_path, url, sqlite_file)
        assert again.returncode == 78
        assert "is not empty (table workers has rows); give an empty database" in again.stderr
    finally:
        postgres.drop_database(url)


@pytest.mark.postgresql
def test_a_sqlite_database_setting_is_refused(tmp_path: pathlib.Path) -> None:
    done = _migrate(tmp_path, str(tmp_path / "farm.sqlite"), str(tmp_path / "old.sqlite"))
    assert done.returncode == 78
    assert "-migrate-from-sqlite: `database:` must name a PostgreSQL database" in done.stderr
