"""Several Manager URLs: the worker uses the first that answers and fails over on connection errors.

Replicas of one Manager share its database, so a worker sees one Manager behind several addresses. Here
two loopback listeners serve one scripted Manager's state (`Replica`), which is exactly that; `kill()`
drops a listener the way a crashed process does (no more accepts, every connection cut). One test runs
the real Manager process and the real worker process behind a dead first URL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from flamenco_worker import pacing, signon
from flamenco_worker.config import ConfigError, WorkerSettings
from flamenco_worker.credentials import load_credentials
from flamenco_worker.flags import build_parser
from flamenco_worker.link import ManagerLink
from flamenco_worker.status import Origin, WorkerStatus
from flamenco_worker.worker import Worker
from tests.support.manager_process import ManagerProcess, free_port
from tests.worker.conftest import StartWorker
from tests.worker.scripted_manager import WAIT_LIMIT, ScriptedManager, Update, shell_task
from tests.worker.test_config import settings as load

#: Pauses shortened for the tests that wait through a back-off; the rules stay the same.
SHORT_PAUSE = 0.2
#: A task that writes 30 numbered lines over about 3 s.
COUNTING = "for i in $(seq 1 30); do echo line $i; sleep 0.1; done"
SWITCH_LOGGER = "flamenco_worker.manager_client"


def dead_url() -> str:
    """A loopback URL where nobody listens: connections are refused."""
    return f"http://127.0.0.1:{free_port()}/"


@dataclass
class SharedManager(ScriptedManager):
    """The state replicas share. A resent update (same Idempotency-Key) counts once, as at the real
    Manager; with `hold_fetch`, a task fetch with nothing to hand out is held until its replica goes."""

    hold_fetch: bool = False
    keys: set[str] = field(default_factory=set)

    async def update(self, request: web.Request) -> web.Response:
        self._note(request)
        body = await request.json()
        key = request.headers.get("Idempotency-Key", "")
        if not key or key not in self.keys:
            self.keys.add(key)
            now = asyncio.get_running_loop().time()
            self.updates.append(Update(now, request.match_info["task_id"], body))
        return web.Response(status=204)

    async def fetch(self, request: web.Request) -> web.Response:
        if self.hold_fetch and not self.tasks and "Prefer" in request.headers:
            self._note(request)
            replica: Replica = request["replica"]
            await replica.gone.wait()
            return web.Response(status=204)
        return await super().fetch(request)

    def count(self, call: str) -> int:
        return sum(1 for c in self.calls if c.endswith(call))


class Replica:
    """One listener on loopback for `manager`'s endpoints; its own record of the calls it took."""

    def __init__(self, manager: SharedManager, port: int = 0) -> None:
        self.manager = manager
        self.port = port
        self.calls: list[str] = []
        self.gone = asyncio.Event()
        self._transports: set[asyncio.Transport] = set()
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def start(self) -> Replica:
        app = self.manager.app()
        app.middlewares.append(self._track)
        self.gone = asyncio.Event()
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        server = site._server  # aiohttp keeps the listening server private; kill() must close it first
        assert isinstance(server, asyncio.Server)
        self._server = server
        self.port = server.sockets[0].getsockname()[1]
        return self

    @web.middleware
    async def _track(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.calls.append(f"{request.method} {request.path}")
        request["replica"] = self
        if request.transport is not None:
            self._transports.add(request.transport)
        response: web.StreamResponse = await handler(request)
        return response

    async def kill(self) -> None:
        """Gone at once, like a crashed process: no more accepts, every connection cut, holds ended."""
        if self._runner is None:
            return
        assert self._server is not None
        self._server.close()
        for transport in self._transports:
            transport.abort()
        self._transports.clear()
        self.gone.set()
        await self._runner.cleanup()
        self._runner = None

    def took(self, call: str) -> bool:
        return any(c.endswith(call) for c in self.calls)


class FailoverWorker:
    """The core and the link as the daemon wires them, given several Manager URLs."""

    def __init__(self, urls: Sequence[str], home: Path) -> None:
        settings = WorkerSettings(
            manager_urls=tuple(urls),
            worker_name="replicated",
            task_types=("misc",),
            dbus="off",
            flamenco_home=home,
        )
        self.home = home
        self.link = ManagerLink(settings)
        self.worker = Worker(settings, task_source=self.link)
        self.link.attach(self.worker)
        self.started: asyncio.Task[None] | None = None
        self.core: asyncio.Task[int] | None = None
        self._changed = asyncio.Event()
        self.worker.subscribe(self._changed.set)

    async def until(self, what: str, check: Callable[[], bool]) -> None:
        """Wait for the core's state (what D-Bus and systemd show) to pass `check`."""
        try:
            async with asyncio.timeout(WAIT_LIMIT):
                while not check():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"no {what} within {WAIT_LIMIT:.0f}s: {self.line}") from None

    @property
    def line(self) -> str:
        """The status line (systemd's STATUS=)."""
        return self.worker.snapshot().describe()

    def start(self) -> asyncio.Task[None]:
        self.started = asyncio.create_task(self._start())
        return self.started

    async def _start(self) -> None:
        requested = await self.link.connect()
        self.worker.request_status(requested, lazy=False, origin=Origin.MANAGER)
        self.core = asyncio.create_task(self.worker.run())

    @property
    def url_in_use(self) -> str:
        return self.worker.snapshot().manager_url

    async def stop(self) -> None:
        if self.started is not None and not self.started.done():
            self.started.cancel()
            await asyncio.gather(self.started, return_exceptions=True)
        if self.core is not None and not self.core.done():
            self.worker.request_status(WorkerStatus.OFFLINE, lazy=False, origin=Origin.LOCAL)
            assert await asyncio.wait_for(self.core, 20) == 0
        await self.link.close()


@dataclass
class Setup:
    manager: SharedManager
    replicas: list[Replica]
    workers: list[FailoverWorker]


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    """One shared scripted Manager; replicas and workers the test adds are stopped afterwards."""
    made = Setup(SharedManager(long_poll=True), [], [])
    yield made
    for worker in made.workers:
        await worker.stop()
    for replica in made.replicas:
        await replica.kill()


async def replica(setup: Setup, port: int = 0) -> Replica:
    started = await Replica(setup.manager, port).start()
    setup.replicas.append(started)
    return started


def worker(setup: Setup, urls: Sequence[str], home: Path) -> FailoverWorker:
    made = FailoverWorker(urls, home)
    setup.workers.append(made)
    made.start()
    return made


def switches(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == SWITCH_LOGGER and "→" in r.getMessage()]


def numbered_lines(log_text: str) -> list[str]:
    return [ln.split("> ", 1)[1] for ln in log_text.splitlines() if "> line" in ln]


# --- behaviour ---


async def test_a_dead_first_url_is_skipped_at_start(
    setup: Setup, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    dead = dead_url()
    second = await replica(setup)
    running = worker(setup, [dead, second.url], tmp_path / "home")
    await setup.manager.wait_for("a task fetch", lambda: second.took("/worker/task"))
    assert second.took("/worker/register-worker") and second.took("/worker/sign-on")
    assert running.url_in_use == second.url
    assert running.worker.snapshot().describe() == f"awake: waiting for a task from Manager at {second.url}"
    (switch,) = switches(caplog)
    assert switch.startswith(f"manager={dead} → {second.url} reason=ClientConnectorError")


@pytest.mark.slow
async def test_the_manager_in_use_dies_mid_task_and_the_other_gets_every_update(
    setup: Setup, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    manager = setup.manager
    manager.tasks.append(shell_task("t-1", COUNTING))
    first, second = await replica(setup), await replica(setup)
    running = worker(setup, [first.url, second.url], tmp_path / "home")
    await manager.wait_for("some of the log", lambda: len(manager.log_updates()) >= 1)
    creds = load_credentials(running.home)
    await first.kill()

    await manager.wait_for("completion", lambda: len(manager.status_updates()) == 2)
    started, completed = manager.status_updates()
    assert (started.body["taskStatus"], completed.body["taskStatus"]) == ("active", "completed")
    assert numbered_lines(manager.log_text()) == [f"line {i}" for i in range(1, 31)], (
        "nothing lost or doubled"
    )
    assert second.took("/worker/task/t-1"), "updates after the failover went to the other replica"
    # Same credentials, no new registration, no second sign-on: replicas share the worker's record.
    assert (manager.registered, manager.count("/worker/sign-on")) == (1, 1)
    assert load_credentials(running.home) == creds
    assert running.url_in_use == second.url
    assert any(s.startswith(f"manager={first.url} → {second.url} reason=") for s in switches(caplog))


async def test_a_held_long_poll_that_drops_fails_over(
    setup: Setup, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    setup.manager.hold_fetch = True
    first, second = await replica(setup), await replica(setup)
    running = worker(setup, [first.url, second.url], tmp_path / "home")
    await setup.manager.wait_for("a held task fetch", lambda: first.took("/worker/task"))
    await first.kill()
    await setup.manager.wait_for("the fetch at the other replica", lambda: second.took("/worker/task"))
    (switch,) = switches(caplog)
    assert switch.startswith(f"manager={first.url} → {second.url} reason=ServerDisconnectedError")
    assert running.url_in_use == second.url
    # The same call went on at the other replica: no trouble reported, and the status line follows it.
    assert running.worker.snapshot().describe() == f"awake: waiting for a task from Manager at {second.url}"
    assert setup.manager.count("/worker/sign-on") == 1


async def test_an_http_error_does_not_fail_over(
    setup: Setup, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pacing, "FETCH_FAILED_BACKOFF", SHORT_PAUSE)
    caplog.set_level(logging.INFO)
    manager = setup.manager
    manager.fetch_answers = [500]
    first, second = await replica(setup), await replica(setup)
    running = worker(setup, [first.url, second.url], tmp_path / "home")
    await manager.wait_for(
        "a fetch after the 500", lambda: first.calls.count("POST /api/v3/worker/task") >= 2
    )
    assert second.calls == [], "a Manager that answers, even with 500, is there"
    assert switches(caplog) == []
    assert running.url_in_use == first.url


@pytest.mark.slow
async def test_all_dead_backs_off_says_so_and_recovers(
    setup: Setup, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(signon, "SIGN_ON_RETRY", SHORT_PAUSE)
    caplog.set_level(logging.INFO)
    ports = free_port(), free_port()
    urls = [f"http://127.0.0.1:{port}/" for port in ports]
    running = worker(setup, urls, tmp_path / "home")

    await running.until("word of trouble", lambda: "unreachable" in running.line)
    assert f"any of {urls[0]}, {urls[1]}" in running.line
    assert "none of the 2 Manager URLs answers" in running.line

    second = await replica(setup, ports[1])  # one comes back
    await setup.manager.wait_for("a task fetch", lambda: second.took("/worker/task"))
    await running.until("the switch", lambda: running.url_in_use == second.url)

    await second.kill()  # the one in use goes too: the fetch backs off and the status line says so
    await running.until("word of trouble", lambda: "cannot fetch a task" in running.line)
    assert "none of the 2 Manager URLs answers" in running.line
    first = await replica(setup, ports[0])
    await setup.manager.wait_for("a task fetch at the first", lambda: first.took("/worker/task"))
    await running.until("the switch back", lambda: running.url_in_use == first.url)
    await running.until(
        "the status line", lambda: running.line == f"awake: waiting for a task from Manager at {first.url}"
    )
    assert (setup.manager.registered, setup.manager.count("/worker/sign-on")) == (1, 1)


async def test_a_reloaded_list_is_used_from_its_first_url(setup: Setup, tmp_path: Path) -> None:
    first, second = await replica(setup), await replica(setup)
    running = worker(setup, [first.url, second.url], tmp_path / "home")
    await setup.manager.wait_for("a task fetch", lambda: first.took("/worker/task"))
    # SIGHUP with a new list: as with a new single URL, the worker signs on again, at the new first URL.
    reloaded = dataclasses.replace(running.worker.settings, manager_urls=(second.url, first.url))
    running.worker.update_settings(reloaded)
    running.link.retarget(reloaded)
    await running.until("the new first URL", lambda: running.url_in_use == second.url)
    await setup.manager.wait_for("a sign-on at the new first URL", lambda: second.took("/worker/sign-on"))
    await setup.manager.wait_for("a task fetch there", lambda: second.took("/worker/task"))
    assert setup.manager.registered == 1


def test_a_real_manager_behind_a_dead_first_url(
    short_dir: Path, start_worker: StartWorker, notify_socket: Any
) -> None:
    manager = ManagerProcess(short_dir / "mgr").start()
    try:
        dead = dead_url()
        process = start_worker("-manager", dead, "-manager", manager.url, yaml_text="task_types: [misc]\n")
        process.wait_property("ManagerURL", f's "{manager.url}"', timeout=20)
        job = manager.submit_echo_sleep(seconds=1)
        manager.wait_until("the job to complete", lambda: manager.job(job["id"])["status"] == "completed", 60)
        assert len(manager.workers()) == 1
        status = notify_socket.seen(f"STATUS=awake: waiting for a task from Manager at {manager.url}")
        assert status, notify_socket.seen("STATUS=")
    finally:
        manager.stop()


# --- configuration ---


def test_a_list_of_urls_in_the_file(tmp_path: Path) -> None:
    s = load(tmp_path, "manager_url:\n  - mgr-a:8080\n  - https://mgr-b/flamenco\n")
    assert s.manager_urls == ("http://mgr-a:8080/", "https://mgr-b/flamenco/")
    assert s.manager_url == "http://mgr-a:8080/"
    assert load(tmp_path, "manager_url: mgr:1\n").manager_urls == ("http://mgr:1/",)
    assert load(tmp_path, "manager_url: ''\n").manager_urls == ()


LIST_ERRORS = [
    ("manager_url: []\n", "flamenco-worker.yaml:1: manager_url: must list at least one URL"),
    (
        "worker_name: w\nmanager_url:\n  - a:1\n  - ftp://b/\n",
        "flamenco-worker.yaml:4: manager_url: item 2: must be an http:// or https:// URL, got 'ftp://b/'",
    ),
    ("manager_url:\n  - a:1\n  - ''\n", "flamenco-worker.yaml:3: manager_url: item 2: must not be empty"),
    ("manager_url: [a:1, 7]\n", "flamenco-worker.yaml:1: manager_url: item 2: must be a URL string, not 7"),
    (
        "manager_url:\n  - http://a:1/\n  - b:2\n  - a:1\n",
        "flamenco-worker.yaml:4: manager_url: item 3: http://a:1/ is already item 1",
    ),
]


@pytest.mark.parametrize(("text", "message"), LIST_ERRORS, ids=[c[0] for c in LIST_ERRORS])
def test_bad_lists_name_the_line_and_the_item(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, text)
    assert str(err.value).startswith(f"{tmp_path}/{message}"), str(err.value)


def test_the_flag_repeats_and_replaces_the_files_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no default file is found where the flags stand alone
    text = "manager_url: [file-a:1, file-b:2]\n"
    assert load(tmp_path, text, ["-manager", "x:1", "--manager=y:2"]).manager_urls == (
        "http://x:1/",
        "http://y:2/",
    )
    assert load(tmp_path, text, ["-manager", "x:1"]).manager_urls == ("http://x:1/",)
    assert load(tmp_path, text, ["-manager", ""]).manager_urls == ()  # as before: none
    with pytest.raises(ConfigError, match=r"^flag -manager: item 2: http://x:1/ is already item 1$"):
        load(tmp_path, None, ["-manager", "x:1", "-manager", "http://x:1"])
    with pytest.raises(ConfigError, match=r"^flag -manager: item 1: must not be empty"):
        load(tmp_path, None, ["-manager", "", "-manager", "x:1"])
    assert "Repeat it" in build_parser().format_help()
