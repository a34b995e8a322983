"""Two Manager replicas on one PostgreSQL database and one storage path: each answers for the task logs and
thumbnails the other wrote, and jobs deleted through both at once are removed once each."""

from __future__ import annotations

import asyncio
import io
import logging
import pathlib
import threading
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from flamenco_manager.services import ELECTION_RETRY, job_deleter, thumbnails
from flamenco_manager.services.events import Hub
from flamenco_manager.services.tasklogs import TaskLogs, job_dir
from flamenco_manager.store import StoreBusy
from tests.manager.conftest import (
    API,
    PG_TEMPLATE,
    FakeWorker,
    Farm,
    eventually,
)
from tests.manager.test_events import Stream
from tests.manager.test_replicas import _replica as one_replica
from tests.support import postgresql

pytestmark = [pytest.mark.postgresql, pytest.mark.timeout(120)]

# News crosses to the other replica within this (a loaded test machine; the goal is milliseconds).
PROMPT = 3.0
# Jobs deleted through both replicas at once, and the tasks of each (removal takes a while).
JOBS = 30
TASKS = 20


async def _replica(
    tmp_path: pathlib.Path, url: str, storage: pathlib.Path, session: aiohttp.ClientSession, **config: Any
) -> tuple[Farm, web.AppRunner]:
    """A replica whose storage path is `storage` (shared by the test's replicas)."""
    return await one_replica(tmp_path, url, session, local_manager_storage_path=str(storage), **config)


@pytest.fixture
def short_resweep(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(job_deleter, "RESWEEP_DELAY", 3.0)
    return 3.0


@pytest.fixture
def short_periodic_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each deleter looks for marked jobs every 0.1 s: a second remover would find them at once."""
    monkeypatch.setattr(job_deleter, "PERIODIC_CHECK_INTERVAL", 0.1)


@pytest.fixture
async def replicas(
    tmp_path: pathlib.Path, postgres: postgresql.PostgresServer
) -> AsyncIterator[tuple[Farm, Farm]]:
    """Replicas A and B; B is started once A runs the farm-wide loops, so A removes jobs."""
    url = postgres.fresh_database(template=PG_TEMPLATE)
    storage = tmp_path / "shared-storage"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with aiohttp.ClientSession() as session:
        a, runner_a = await _replica(tmp_path / "a", url, storage, session)
        await eventually(lambda: a.manager.runs_farm_loops, within=ELECTION_RETRY + 5)
        b, runner_b = await _replica(tmp_path / "b", url, storage, session)
        try:
            yield a, b
        finally:
            for farm, runner in ((a, runner_a), (b, runner_b)):
                farm.manager.stop_holding()
                await runner.cleanup()
                await farm.manager.stop()
    postgres.drop_database(url)


def _on(farm: Farm, worker: FakeWorker) -> FakeWorker:
    """The same worker speaking to another replica (it failed over)."""
    return FakeWorker(farm.client, worker.uuid, worker.secret, worker.name, worker.types)


async def _events(farm: Farm, query: str) -> tuple[aiohttp.ClientResponse, Stream]:
    response = await farm.client.session.get(f"{farm.client.base}{API}/events?{query}")
    assert response.status == 200
    return response, Stream(response)


async def _next_of(stream: Stream, topic: str) -> dict[str, Any]:
    while True:
        got, payload = await stream.next(within=PROMPT)
        if got == topic:
            return payload


async def _running_task(a: Farm) -> tuple[FakeWorker, dict, str]:
    worker = await a.awake_worker()
    job = await a.submit_echo()
    reply = await worker.fetch()
    assert reply.status == 200, reply.body
    return worker, job, reply.body["uuid"]


async def test_log_lines_sent_to_one_replica_are_served_by_the_other(replicas: tuple[Farm, Farm]) -> None:
    a, b = replicas
    worker, job, task_id = await _running_task(a)
    response, stream = await _events(b, f"topics=tasklog&task={task_id}")
    try:
        reply = await worker.update(task_id, log="line one from A\n")
        assert reply.status == 204, reply.body
        # (The Manager's own "assigned" line may come first: its news may cross after B subscribed.)
        while "line one from A" not in (await _next_of(stream, "/tasklog"))["log"]:
            pass

        tail = await b.client.get(f"{API}/tasks/{task_id}/logtail")
        assert tail.status == 200 and "line one from A" in tail.body
        info = await b.client.get(f"{API}/tasks/{task_id}/log")
        assert info.status == 200 and info.body["job_id"] == job["id"]
        whole = await b.client.get(info.body["url"], validate=False)
        assert whole.status == 200 and len(whole.body.encode()) == info.body["size"]
        assert "line one from A" in whole.body

        # The worker fails over to B mid-task: its next lines go to the same file, after the first.
        reply = await _on(b, worker).update(task_id, log="line two from B\n")
        assert reply.status == 204, reply.body
        tail = await a.client.get(f"{API}/tasks/{task_id}/logtail")
        assert tail.status == 200
        assert tail.body.index("line one from A") < tail.body.index("line two from B")
    finally:
        response.close()


async def test_replica_writers_leave_no_file_open_once_answered(replicas: tuple[Farm, Farm]) -> None:
    """On a shared (NFS) storage path another replica sees a file's data once its writer closed it."""
    a, _ = replicas
    assert a.manager.logs.shared
    worker, _, task_id = await _running_task(a)
    assert (await worker.update(task_id, log="a line\n")).status == 204
    writers = a.manager.logs._writers
    await eventually(lambda: all(not w._open for w in writers), within=PROMPT)


def _png(colour: tuple[int, int, int] = (10, 200, 30)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(buffer, "PNG")
    return buffer.getvalue()


async def test_thumbnail_uploaded_to_one_replica_is_served_by_the_other(replicas: tuple[Farm, Farm]) -> None:
    pytest.importorskip("PIL")
    a, b = replicas
    worker, job, task_id = await _running_task(a)
    response, stream = await _events(b, "topics=last-rendered")
    try:
        reply = await a.client.request(
            "POST",
            f"{API}/worker/task/{task_id}/output-produced",
            auth=worker.auth,
            data=_png(),
            headers={"Content-Type": "image/png"},
        )
        assert reply.status == 202, reply.body
        event = await _next_of(stream, "/last-rendered")
        assert event["job_id"] == job["id"] and event["thumbnail"] is not None
    finally:
        response.close()
    for path in (f"{API}/jobs/{job['id']}/last-rendered", f"{API}/jobs/last-rendered"):
        info = await b.client.get(path)
        assert info.status == 200, (path, info.body)
        assert "last-rendered.jpg" in info.body["suffixes"]
    image = await b.client.get(info.body["base"] + "/last-rendered.jpg", validate=False)
    assert image.status == 200 and image.headers["Content-Type"] == "image/jpeg"
    assert bytes(image.body)[:2] == b"\xff\xd8"


def test_two_writers_of_one_jobs_thumbnails_do_not_collide(tmp_path: pathlib.Path) -> None:
    """Two replicas processing uploads of one job at the same moment each rename whole images into place."""
    pytest.importorskip("PIL")
    from PIL import Image

    directory = tmp_path / "job"
    images = [_png((200, 10, 10)), _png((10, 10, 200))]
    errors: list[BaseException] = []
    start = threading.Barrier(len(images))

    def writer(data: bytes) -> None:
        start.wait()
        try:
            for _ in range(15):
                thumbnails._write_thumbnails(directory, data)
        except BaseException as exc:  # any failure of a writer fails the test
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(data,)) for data in images]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    for name, _, _ in thumbnails.THUMBNAILS:
        with Image.open(directory / name) as image:
            image.load()
    assert sorted(p.name for p in directory.iterdir()) == sorted(n for n, _, _ in thumbnails.THUMBNAILS)


async def test_task_events_of_a_status_change_on_one_replica_reach_the_other(
    replicas: tuple[Farm, Farm],
) -> None:
    """Nobody listens on A: the task events of a job cancelled there are still built for B's browser."""
    a, b = replicas
    job = await a.submit_echo(repeats=2)
    response, stream = await _events(b, f"topics=task&job={job['id']}")
    try:
        reply = await a.client.post(f"{API}/jobs/{job['id']}/setstatus", {"status": "cancel-requested"})
        assert reply.status == 204, reply.body
        while (payload := await _next_of(stream, "/task"))["status"] != "canceled":
            pass
        assert payload["job_id"] == job["id"]
    finally:
        response.close()


def _files_of(farm: Farm, job: dict) -> None:
    """Give a job a log file (the Manager's own line), through this replica."""
    farm.manager.logs.manager_line(job["id"], job["id"], "a line on disk")


async def test_jobs_deleted_through_both_replicas_at_once_go_exactly_once(
    short_periodic_check: None, replicas: tuple[Farm, Farm], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = replicas
    storage = a.manager.storage
    assert b.manager.storage == storage
    jobs = [await (a if i % 2 else b).submit_echo(repeats=TASKS) for i in range(JOBS)]
    for i, job in enumerate(jobs):
        _files_of(a if i % 2 else b, job)
    await asyncio.to_thread(a.manager.logs.sync)
    await asyncio.to_thread(b.manager.logs.sync)
    assert all(job_dir(storage, job["id"]).is_dir() for job in jobs)
    response, stream = await _events(b, "topics=jobs")
    caplog.set_level(logging.INFO, logger="flamenco_manager")
    try:
        # Every job asked to go through both replicas, all at once. The second ask of a job may find it
        # gone (404) or its row held by the other replica's unit of writes (503, "try again").
        replies = await asyncio.gather(
            *(farm.client.delete(f"{API}/jobs/{job['id']}") for job in jobs for farm in (a, b))
        )
        assert {r.status for r in replies} <= {204, 404, 503}, [r.body for r in replies]
        for i, job in enumerate(jobs):
            if 204 not in (replies[2 * i].status, replies[2 * i + 1].status):
                retried = await (a if i % 2 else b).client.delete(f"{API}/jobs/{job['id']}")
                assert retried.status in (204, 404), retried.body
        gone: dict[str, int] = {}
        while len(gone) < JOBS:
            payload = await _next_of(stream, "/jobs")
            if payload.get("was_deleted"):
                gone[payload["id"]] = gone.get(payload["id"], 0) + 1
        for job in jobs:
            for farm in (a, b):
                assert (await farm.client.get(f"{API}/jobs/{job['id']}")).status == 404
            assert not job_dir(storage, job["id"]).exists()
        # No second removal follows (it would come within the same moments).
        await asyncio.sleep(1.0)
        while True:
            try:
                payload = await _next_of(stream, "/jobs")
            except TimeoutError:
                break
            if payload.get("was_deleted"):
                gone[payload["id"]] = gone.get(payload["id"], 0) + 1
    finally:
        response.close()
    assert gone == {job["id"]: 1 for job in jobs}
    removed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("job deleted ")]
    assert sorted(removed) == sorted(f"job deleted job={job['id']}" for job in jobs)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors


async def test_mass_delete_on_the_replica_that_does_not_remove_is_prompt(
    short_resweep: float, replicas: tuple[Farm, Farm], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = replicas
    assert a.manager.runs_farm_loops and not b.manager.runs_farm_loops
    jobs = [await b.submit_echo() for _ in range(5)]
    for job in jobs:
        _files_of(b, job)
    await asyncio.to_thread(b.manager.logs.sync)
    caplog.set_level(logging.ERROR, logger="flamenco_manager")
    reply = await b.client.delete(f"{API}/jobs/mass-delete", {"last_updated_max": "2100-01-01T00:00:00Z"})
    assert reply.status == 204, reply.body
    storage = a.manager.storage

    async def all_gone() -> bool:
        return all([(await b.client.get(f"{API}/jobs/{job['id']}")).status == 404 for job in jobs])

    # Well before the remover's periodic check (a minute) would find them.
    await eventually(all_gone, within=PROMPT)
    assert not any(job_dir(storage, job["id"]).exists() for job in jobs)
    # A log line B took in just before the rows went lands after the removal: swept again shortly.
    late: TaskLogs = b.manager.logs
    late.manager_line(jobs[0]["id"], jobs[0]["id"], "late")
    await asyncio.to_thread(late.sync)
    assert job_dir(storage, jobs[0]["id"]).exists()
    await eventually(lambda: not job_dir(storage, jobs[0]["id"]).exists(), within=short_resweep + PROMPT)
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def test_removal_held_up_by_another_replicas_writes_is_retried_soon(
    replicas: tuple[Farm, Farm], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """B's unit of writes may hold a job's row A removes (B marking it too): A tries again at once, not at
    the periodic check a minute later, and logs no error."""
    a, b = replicas
    store = a.manager.store
    real = store.delete_tasks_of_job
    busy = [True]

    def held_once(job_id: int, limit: int) -> int:
        if busy.pop() if busy else False:
            raise StoreBusy("canceling statement due to lock timeout")
        return real(job_id, limit)

    monkeypatch.setattr(store, "delete_tasks_of_job", held_once)
    caplog.set_level(logging.WARNING, logger="flamenco_manager")
    job = await b.submit_echo()
    assert (await b.client.delete(f"{API}/jobs/{job['id']}")).status == 204

    async def gone() -> bool:
        return (await a.client.get(f"{API}/jobs/{job['id']}")).status == 404

    await eventually(gone, within=job_deleter.BUSY_RETRY + PROMPT)
    assert not busy
    assert any("database busy while removing jobs" in r.getMessage() for r in caplog.records)
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_single_manager_keeps_log_files_open_until_released(tmp_path: pathlib.Path) -> None:
    """Without replicas files stay open between chunks (cheaper); before a job's directory is removed they
    are closed (an NFS client cannot remove a directory holding a file it has open)."""
    logs = TaskLogs(tmp_path, Hub())
    try:
        assert not logs.shared
        logs.append("job-uuid", "task-uuid", "a line")
        logs.sync()
        assert sum(len(w._open) for w in logs._writers) == 1
        logs.release()
        assert sum(len(w._open) for w in logs._writers) == 0
        assert logs.size("job-uuid", "task-uuid") == len("a line\n")
    finally:
        logs.close()
