"""The Manager link's parts against real files and a real loopback HTTP server (aiohttp)."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from flamenco_worker.config import ConfigError
from flamenco_worker.credentials import Credentials, load_credentials, new_secret, save_credentials
from flamenco_worker.manager_client import (
    ManagerClient,
    ManagerUnreachable,
    StateAnswer,
    StatusRequested,
    Unauthorised,
    UnexpectedAnswer,
)
from flamenco_worker.outbox import Outbox, OutboxError
from flamenco_worker.pacing import (
    FETCH_FAILED_BACKOFF,
    RETRY_AFTER_MIN,
    UNREACHABLE_BACKOFF,
    backoff_for,
)
from flamenco_worker.task_updates_sender import TaskReassigned, TaskUpdatesSender
from flamenco_worker.trouble import Trouble, TroubleLog

# --- credentials ---


def test_credentials_round_trip_private_and_atomic(tmp_path: Path) -> None:
    creds = Credentials("0b3c5b0e-2f5f-4b7a-9f60-0d5f2b6c8a11", new_secret())
    assert len(creds.worker_secret) == 64
    path = save_credentials(tmp_path / "home", creds)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not path.with_name(path.name + "~").exists()
    assert load_credentials(tmp_path / "home") == creds
    assert creds.worker_secret not in repr(creds)


def test_missing_credentials_mean_register(tmp_path: Path) -> None:
    assert load_credentials(tmp_path) is None


@pytest.mark.parametrize(
    "text", ["worker_id: [\n", "- a\n", "worker_id: abc\n", "worker_id: a\nworker_secret: 3\n"]
)
def test_broken_credentials_name_the_file(tmp_path: Path, text: str) -> None:
    (tmp_path / "flamenco-worker-credentials.yaml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load_credentials(tmp_path)
    assert str(tmp_path / "flamenco-worker-credentials.yaml") in str(err.value)
    assert "delete the file" in str(err.value)


# --- outbox ---


def test_outbox_is_fifo_and_survives_reopening(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    for i in range(5):
        box.push(f"t{i % 2}", {"log": f"line {i}\n"})
    box.close()
    box = Outbox(tmp_path)
    seen = []
    while (item := box.front()) is not None:
        seen.append(item.payload["log"])
        box.remove(item)
    assert seen == [f"line {i}\n" for i in range(5)]
    assert len(box) == 0


def test_outbox_drop_task(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    box.push("a", {"log": "1"})
    box.push("b", {"log": "2"})
    box.push("a", {"log": "3"})
    assert box.drop_task("a") == 2
    front = box.front()
    assert front is not None and front.task_id == "b"


def test_outbox_unusable_home_falls_back_to_memory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    home = tmp_path / "a-file" / "home"  # a path through a regular file can never be created
    (tmp_path / "a-file").write_text("")
    with pytest.raises(OutboxError) as err:
        Outbox(home, required=True)
    assert str(home) in str(err.value)
    box = Outbox(home)
    assert not box.durable
    assert "kept in memory" in caplog.text and str(home) in caplog.text
    box.push("t", {"log": "kept"})
    item = box.front()
    assert item is not None and item.payload == {"log": "kept"}


def test_outbox_damaged_file_is_left_alone_and_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    damaged = tmp_path / "flamenco-worker.sqlite"
    damaged.write_bytes(b"this is not a database" * 100)
    with pytest.raises(OutboxError) as err:
        Outbox(tmp_path, required=True)
    assert "flamenco-worker.sqlite" in str(err.value)
    box = Outbox(tmp_path)
    assert not box.durable and "flamenco-worker.sqlite" in caplog.text
    assert damaged.read_bytes() == b"this is not a database" * 100  # nothing stored is overwritten


def test_outbox_damaged_while_open_carries_on_in_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    box = Outbox(tmp_path)
    box.push("t", {"log": "before\n"})
    for path in tmp_path.glob("flamenco-worker.sqlite*"):
        path.write_bytes(b"not a database" * 1000)
    assert len(box) == 0  # what the file held cannot be read; no sqlite3 error escapes
    assert not box.durable and "cannot read the task-update queue" in caplog.text
    box.push("t", {"log": "after\n"})
    item = box.front()
    assert item is not None and item.payload == {"log": "after\n"}
    box.remove(item)
    assert box.front() is None
    box.close()


def test_closed_outbox_says_so(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    box.close()
    box.close()  # closing twice is harmless
    for use in (lambda: len(box), box.front, lambda: box.push("t", {})):
        with pytest.raises(OutboxError, match="already closed"):
            use()


async def test_flush_of_a_closed_outbox_fails_cleanly(fake_manager: FakeManager, tmp_path: Path) -> None:
    client = ManagerClient(await fake_manager.start())
    box = Outbox(tmp_path)
    sender = TaskUpdatesSender(client, box)
    box.close()
    assert await sender.flush(1) is False
    await sender.close()
    await client.close()


@pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/bin/mount").exists(), reason="needs root to mount a tmpfs"
)
def test_outbox_full_disk_keeps_order_in_memory(tmp_path: Path) -> None:
    import subprocess

    home = tmp_path / "small"
    home.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(home)], check=True)
    try:
        box = Outbox(home)
        durable_at_first = box.durable
        big = "y" * 4000
        for i in range(100):  # far more than 128 KiB
            box.push("t", {"log": f"{i} {big}"})
        assert durable_at_first and not box.durable
        seen = []
        while (item := box.front()) is not None:
            seen.append(int(item.payload["log"].split()[0]))
            box.remove(item)
        assert seen == list(range(100))
        box.close()
    finally:
        subprocess.run(["umount", "-l", str(home)], check=True)


# --- a scriptable Manager on loopback ---


class FakeManager:
    def __init__(self) -> None:
        self.answers: list[int] = []  # status codes for the next task updates; default 204
        self.received: list[tuple[str, dict]] = []
        self.keys: list[str] = []  # Idempotency-Key of every update request, in order
        self.app = web.Application()
        self.app.router.add_post("/api/v3/worker/task/{task_id}", self.update)
        self.app.router.add_post("/api/v3/worker/task", self.fetch)
        self.app.router.add_get("/api/v3/worker/state", self.state)
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.auth_header = ""

    async def update(self, request: web.Request) -> web.Response:
        self.auth_header = request.headers.get("Authorization", "")
        code = self.answers.pop(0) if self.answers else 204
        self.keys.append(request.headers.get("Idempotency-Key", ""))
        if code == 204:
            self.received.append((request.match_info["task_id"], await request.json()))
        return web.Response(status=code)

    async def fetch(self, request: web.Request) -> web.Response:
        if request.headers.get("Prefer") == "wait=5":
            return web.json_response(
                {"status_requested": "asleep"}, status=423, headers={"Preference-Applied": "wait=5"}
            )
        return web.json_response({"message": "bad credentials"}, status=403)

    async def state(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def start(self, port: int = 0) -> str:
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port or self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{self.port}/"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@pytest.fixture
async def fake_manager() -> AsyncIterator[FakeManager]:
    fm = FakeManager()
    yield fm
    await fm.stop()


async def test_client_reads_status_request_and_long_poll(fake_manager: FakeManager) -> None:
    client = ManagerClient(await fake_manager.start())
    client.set_credentials("id", "secret")
    answer = await client.fetch_task(wait=5)
    assert answer == StatusRequested("asleep", long_polled=True)
    with pytest.raises(Unauthorised):
        await client.fetch_task(wait=None)
    assert await client.state(wait=None) == StateAnswer(None, long_polled=False)
    await client.close()


async def test_client_unreachable_is_one_clear_error() -> None:
    client = ManagerClient("http://127.0.0.1:9/")
    with pytest.raises(ManagerUnreachable) as err:
        await client.state(wait=None)
    assert "GET /api/v3/worker/state" in str(err.value)
    await client.close()


async def test_updates_survive_an_outage_in_order(
    fake_manager: FakeManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("flamenco_worker.task_updates_sender.RETRY_INTERVAL", 0.05)
    url = await fake_manager.start()
    client = ManagerClient(url)
    client.set_credentials("wid", "s3cret")
    sender = TaskUpdatesSender(client, Outbox(tmp_path))
    await sender.send("t1", {"log": "0\n"})
    await fake_manager.stop()  # the Manager goes away
    for i in range(1, 4):
        await sender.send("t1", {"log": f"{i}\n"})
    assert sender.queued == 3
    fake_manager.answers = [503]  # comes back busy first
    await fake_manager.start(fake_manager.port)
    await sender.send("t1", {"log": "4\n"})  # queued behind the others, never ahead of them
    for _ in range(100):
        if sender.queued == 0:
            break
        await asyncio.sleep(0.05)
    assert [p["log"] for _, p in fake_manager.received] == [f"{i}\n" for i in range(5)]
    assert fake_manager.auth_header.startswith("Basic ")
    await sender.close()
    await client.close()


async def test_409_means_reassigned(fake_manager: FakeManager, tmp_path: Path) -> None:
    client = ManagerClient(await fake_manager.start())
    sender = TaskUpdatesSender(client, Outbox(tmp_path))
    fake_manager.answers = [409]
    with pytest.raises(TaskReassigned):
        await sender.send("t1", {"taskStatus": "completed"})
    # a queued update that learns the same is dropped, and whoever runs the task is told
    told: list[str] = []
    sender.on_reassigned(told.append)
    Outbox(tmp_path).push("t2", {"log": "x"})
    fake_manager.answers = [409]
    assert await sender.flush(5) is True
    assert told == ["t2"] and sender.queued == 0
    await client.close()


async def test_refused_update_is_dropped_not_retried_forever(
    fake_manager: FakeManager, tmp_path: Path
) -> None:
    client = ManagerClient(await fake_manager.start())
    sender = TaskUpdatesSender(client, Outbox(tmp_path))
    fake_manager.answers = [400]
    await sender.send("t1", {"taskStatus": "bogus"})
    assert sender.queued == 0
    await client.close()


async def test_each_update_keeps_one_key_through_retries(fake_manager: FakeManager, tmp_path: Path) -> None:
    client = ManagerClient(await fake_manager.start())
    sender = TaskUpdatesSender(client, Outbox(tmp_path))
    fake_manager.answers = [503]  # not taken: queued, then sent again by the flush
    await sender.send("t1", {"log": "a\n"})
    await sender.send("t1", {"log": "b\n"})
    assert await sender.flush(5) is True
    first, again, second = fake_manager.keys
    assert len(first) == 32 and first == again and second not in ("", first)
    assert all("_update_key" not in body for _, body in fake_manager.received)
    await sender.close()
    await client.close()


# --- trouble, told once per kind ---


def test_trouble_is_logged_once_per_kind(caplog: pytest.LogCaptureFixture) -> None:
    details: list[str] = []
    trouble = TroubleLog(details.append)
    with caplog.at_level(logging.INFO, logger="flamenco_worker.trouble"):
        trouble.report(Trouble.TASK_FETCH, "cannot fetch a task (HTTP 503); retrying in 10s")
        trouble.report(Trouble.TASK_FETCH, "cannot fetch a task (connection refused); retrying in 2s")
        trouble.report(Trouble.UPDATES_QUEUED, "3 task updates still queued")
        trouble.clear("Manager reachable again")
        trouble.clear("Manager reachable again")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "cannot fetch a task (HTTP 503); retrying in 10s"),
        ("WARNING", "3 task updates still queued"),
        ("INFO", "Manager reachable again (after: task updates are still queued)"),
    ]
    assert len(details) == 3  # the detail line shows every retry's own text


def test_a_retry_after_is_obeyed_within_bounds() -> None:
    def busy(retry_after: float | None) -> UnexpectedAnswer:
        return UnexpectedAnswer("task", 503, "busy", retry_after)

    assert backoff_for(busy(1.0)) == 1.0
    assert backoff_for(busy(0.0)) == RETRY_AFTER_MIN  # no tight loop on "Retry-After: 0"
    assert backoff_for(busy(3600.0)) == FETCH_FAILED_BACKOFF
    assert backoff_for(busy(None)) == FETCH_FAILED_BACKOFF
    assert backoff_for(ManagerUnreachable("down")) == UNREACHABLE_BACKOFF
