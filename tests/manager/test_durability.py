"""Durability in plain sight: units of writes per asyncio task, answers after the commit, kill -9 safety."""

from __future__ import annotations

import asyncio
import pathlib
import signal

import aiohttp
import pytest

from flamenco_manager.api import build_app
from flamenco_manager.api.durable import is_durable
from flamenco_manager.services import Manager
from flamenco_manager.store import SQLiteStore, StoreBusy
from tests.manager.conftest import API, basic_auth, make_config
from tests.support.manager_process import NotifiedManager, write_config

# Requests that change nothing durable although they are not GETs: a dry-run check, and an image for the
# thumbnail queue (answered 202 Accepted, processed later).
NOT_WRITING = {
    ("POST", "/api/v3/jobs/check"),
    ("POST", "/api/v3/worker/task/{task_id}/output-produced"),
}


def test_every_writing_route_waits_for_the_commit(tmp_path: pathlib.Path) -> None:
    manager = Manager(make_config(tmp_path))
    try:
        app = build_app(manager)
        forgotten = []
        for route in app.router.routes():
            path = route.resource.canonical if route.resource is not None else ""
            if not path.startswith("/api/") or route.method in ("GET", "HEAD", "*"):
                continue
            if (route.method, path) not in NOT_WRITING and not is_durable(route.handler):
                forgotten.append(f"{route.method} {path}")
        assert forgotten == []
    finally:
        manager.logs.close()
        manager.store.close()


async def test_interleaved_tasks_do_not_share_a_unit(tmp_path: pathlib.Path) -> None:
    """A task that awaits inside its unit cannot pull another task's writes into it (and its rollback)."""
    store = SQLiteStore.open(tmp_path / "s.sqlite")
    inside, release = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        with pytest.raises(RuntimeError), store.transaction():
            store.create_tag(uuid="a", name="held", description="")
            inside.set()
            await release.wait()  # the mistake: an await inside a unit
            raise RuntimeError("the holder gives up: its unit is rolled back")

    async def other() -> str:
        await inside.wait()
        try:
            with store.transaction():
                store.create_tag(uuid="b", name="other", description="")
            outcome = "joined"
        except StoreBusy:
            outcome = "refused"
        release.set()
        return outcome

    _, outcome = await asyncio.gather(holder(), other())
    assert outcome == "refused"
    assert store.get_tag("a") is None
    with store.transaction():  # once the holder's unit is gone, the other task's write goes through
        store.create_tag(uuid="b", name="other", description="")
    await asyncio.sleep(0)
    assert store.get_tag("b") is not None
    store.close()


async def test_nesting_and_commit_waits_are_per_task(tmp_path: pathlib.Path) -> None:
    store = SQLiteStore.open(tmp_path / "s.sqlite")

    async def writer() -> None:
        with store.transaction(), store.transaction():  # nested: one unit
            store.create_tag(uuid="w", name="w", description="")
        pending = store.committed()
        assert pending is not None
        await pending
        assert store.committed() is None

    async def reader() -> None:
        assert store.committed() is None  # wrote nothing: no reason to wait for anyone's commit

    await asyncio.gather(writer(), reader())
    store.close()


async def _task_done_then_kill(manager: NotifiedManager) -> dict[str, str]:
    async with aiohttp.ClientSession(base_url=manager.url) as session:
        reply = await session.post(
            f"{API}/worker/register-worker",
            json={"name": "w", "platform": "linux", "secret": "s", "supported_task_types": ["misc"]},
        )
        worker = (await reply.json())["uuid"]
        auth = basic_auth(worker, "s")
        body = {"name": "w", "supported_task_types": ["misc"], "software_version": "1"}
        assert (await session.post(f"{API}/worker/sign-on", json=body, headers=auth)).status == 200
        awake = await session.post(f"{API}/worker/state-changed", json={"status": "awake"}, headers=auth)
        assert awake.status == 204
        job = {
            "name": "j",
            "type": "echo-sleep-test",
            "submitter_platform": "linux",
            "settings": {"message": "m", "sleep_repeats": 1},
        }
        job_id = (await (await session.post(f"{API}/jobs", json=job)).json())["id"]
        task = await (await session.post(f"{API}/worker/task", headers=auth)).json()
        update = {"taskStatus": "completed", "log": "the last words\n"}
        done = await session.post(f"{API}/worker/task/{task['uuid']}", json=update, headers=auth)
        assert done.status == 204
        # SIGKILL the moment the acknowledgement arrived: nothing after it may be needed to keep it.
        manager.proc.send_signal(signal.SIGKILL)
        return {"job": job_id, "task": task["uuid"]}


def test_acknowledged_write_survives_kill_9(tmp_path: pathlib.Path) -> None:
    config = write_config(tmp_path)
    manager = NotifiedManager(config)
    try:
        facts = asyncio.run(_task_done_then_kill(manager))
        manager.proc.wait(10)
        assert manager.proc.returncode == -signal.SIGKILL
    finally:
        manager.close()

    restarted = NotifiedManager(config)
    try:

        async def check() -> None:
            async with aiohttp.ClientSession(base_url=restarted.url) as session:
                task = await (await session.get(f"{API}/tasks/{facts['task']}")).json()
                assert task["status"] == "completed"
                tail = await session.get(f"{API}/tasks/{facts['task']}/logtail")
                assert "the last words" in await tail.text()

        asyncio.run(check())
        returncode, stderr = restarted.terminate()
        assert returncode == 0, stderr
    finally:
        restarted.close()
