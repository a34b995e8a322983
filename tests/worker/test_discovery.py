"""Finding a Manager from candidates, remembering it, and the trust rule at sign-on (loopback HTTP)."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web

import flamenco_worker.discovery as discovery
from flamenco_worker.config import WorkerSettings
from flamenco_worker.credentials import Credentials, load_credentials, save_credentials
from flamenco_worker.discovery import find_manager, local
from flamenco_worker.discovery.adapter import ManagerDiscovery
from flamenco_worker.discovery.candidates import Candidate
from flamenco_worker.discovery.remembered import Remembered, load_remembered, remembered_path, save_remembered
from flamenco_worker.link import ManagerLink
from flamenco_worker.worker import Worker
from tests.worker.scripted_manager import ScriptedManager

DEAD_URL = "http://127.0.0.1:9/"  # the discard port: nobody listens on loopback


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # aiohttp keeps it private
    return runner, f"http://127.0.0.1:{port}/"


def finder_of(*urls: str) -> Callable[[asyncio.Event], AsyncIterator[Candidate]]:
    async def find(stop: asyncio.Event) -> AsyncIterator[Candidate]:
        for url in urls:
            yield Candidate(url, "ssdp")
        await stop.wait()

    return find


async def test_the_first_candidate_that_answers_as_a_manager_wins() -> None:
    stranger = web.Application()  # an HTTP server that is no Flamenco Manager
    strange_runner, strange_url = await _serve(stranger)
    manager = ScriptedManager(long_poll=True)
    url = await manager.start()
    try:
        found = await find_manager(finders=[finder_of(DEAD_URL, strange_url, url)], within=10)
        assert found is not None
        assert (found.url, found.source, found.name, found.version) == (url, "ssdp", "Scripted", "3.7")
    finally:
        await manager.stop()
        await strange_runner.cleanup()


async def test_nothing_found_within_the_time_gives_none() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await find_manager(finders=[finder_of(DEAD_URL)], within=0.5) is None
    assert loop.time() - started < 5


async def test_excluded_urls_are_not_tried_and_first_candidates_are() -> None:
    manager = ScriptedManager(long_poll=True)
    url = await manager.start()
    try:
        assert await find_manager(finders=[finder_of(url)], exclude=[url], within=0.5) is None
        found = await find_manager(first=[Candidate(url, "remembered")], finders=[finder_of()], within=5)
        assert found is not None and found.source == "remembered"
    finally:
        await manager.stop()


def test_remembered_manager_round_trip_and_damage(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert load_remembered(tmp_path) is None
    remembered = Remembered("http://10.0.0.5:8080/", "w-1", "ssdp")
    path = save_remembered(tmp_path / "home", remembered)
    assert path == remembered_path(tmp_path / "home") and path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    assert load_remembered(tmp_path / "home") == remembered
    path.write_text("{not json")
    with caplog.at_level(logging.WARNING):
        assert load_remembered(tmp_path / "home") is None
    assert "unreadable" in caplog.text
    path.write_text(json.dumps({"url": 5}))
    assert load_remembered(tmp_path / "home") is None


class Discovering:
    """The link, the core and discovery wired as the daemon wires them without a manager_url."""

    def __init__(self, home: Path) -> None:
        settings = WorkerSettings(worker_name="found", task_types=("misc",), dbus="off", flamenco_home=home)
        self.link = ManagerLink(settings)
        self.worker = Worker(settings, task_source=self.link)
        self.link.attach(self.worker)
        self.discovery = ManagerDiscovery(self.link.client, self.worker, home)
        self.link.parts.signon.guard_with(self.discovery)
        self.tasks: list[asyncio.Task[object]] = []

    def start(self) -> None:
        self.tasks.append(asyncio.create_task(self.discovery.run()))
        self.tasks.append(asyncio.create_task(self.link.connect()))

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.link.close()


@pytest.fixture
def scripted_finder(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    urls: list[str] = []

    async def find(stop: asyncio.Event) -> AsyncIterator[Candidate]:
        for url in urls:
            yield Candidate(url, "ssdp")
        await stop.wait()

    monkeypatch.setattr(discovery, "FINDERS", [find])
    yield urls


async def _wait(check: Callable[[], bool], what: str, limit: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_without_credentials_the_found_manager_is_joined_and_remembered(
    tmp_path: Path, scripted_finder: list[str]
) -> None:
    manager = ScriptedManager(long_poll=True)
    url = await manager.start()
    scripted_finder.append(url)
    rig = Discovering(tmp_path)
    try:
        rig.start()
        await _wait(lambda: rig.link.parts.signon.signed_on, "sign-on")
        assert manager.registered == 1
        assert load_remembered(tmp_path) == Remembered(url, "worker-1", "ssdp")
        assert rig.worker.snapshot().manager_url == url
    finally:
        await rig.close()
        await manager.stop()


async def test_a_stranger_refusing_stored_credentials_is_not_joined(
    tmp_path: Path, scripted_finder: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    save_credentials(tmp_path, Credentials("old-worker", "secret"))
    stranger = ScriptedManager(long_poll=True, sign_on_answers=[403, 403, 403])
    url = await stranger.start()
    scripted_finder.append(url)
    rig = Discovering(tmp_path)
    try:
        with caplog.at_level(logging.INFO):
            rig.start()
            await _wait(lambda: "NOT registering there" in caplog.text, "the refusal")
            await _wait(
                lambda: "refused this worker's credentials" in rig.worker.snapshot().detail, "the status line"
            )
        assert stranger.registered == 0
        assert load_credentials(tmp_path) == Credentials("old-worker", "secret")
        assert not rig.link.client.url  # forgotten; the search goes on without it
        assert load_remembered(tmp_path) is None
    finally:
        await rig.close()
        await stranger.stop()


async def test_the_remembered_manager_refusing_credentials_is_joined_anew(
    tmp_path: Path, scripted_finder: list[str]
) -> None:
    save_credentials(tmp_path, Credentials("deleted-worker", "secret"))
    manager = ScriptedManager(long_poll=True, sign_on_answers=[403])
    url = await manager.start()
    save_remembered(tmp_path, Remembered(url, "deleted-worker", "ssdp"))
    rig = Discovering(tmp_path)
    try:
        rig.start()
        await _wait(lambda: rig.link.parts.signon.signed_on, "sign-on")
        assert manager.registered == 1
        creds = load_credentials(tmp_path)
        assert creds is not None and creds.worker_id == "worker-1"
        assert load_remembered(tmp_path) == Remembered(url, "worker-1", "ssdp")
    finally:
        await rig.close()
        await manager.stop()


async def test_this_machine_is_asked_with_back_off_until_stopped() -> None:
    stop = asyncio.Event()
    seen: list[tuple[float, Candidate]] = []
    loop = asyncio.get_running_loop()

    async def collect() -> None:
        async for candidate in local.find(stop):
            seen.append((loop.time(), candidate))
            if len(seen) == 3:
                stop.set()

    await asyncio.wait_for(collect(), 10)
    assert [c for _, c in seen] == [Candidate("http://localhost:8080/", "local")] * 3
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(seen)]
    assert gaps[0] >= local.FIRST_INTERVAL * 0.9 and gaps[1] >= gaps[0] * 1.5, gaps


def test_flush_without_a_manager_url_uses_the_remembered_manager(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {"FLAMENCO_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    args = [sys.executable, "-m", "flamenco_worker", "-config", str(tmp_path / "w.yaml"), "-flush"]
    (tmp_path / "w.yaml").write_text("dbus: off\n")
    nothing = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert nothing.returncode == 78 and "discovery found none yet" in nothing.stderr, nothing.stderr
    save_remembered(tmp_path / "home", Remembered(DEAD_URL, "w-1", "ssdp"))
    remembered = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    # no credentials and nothing queued: done at once, without asking the (absent) Manager
    assert remembered.returncode == 0, remembered.stderr
    assert "never registered" in remembered.stderr
