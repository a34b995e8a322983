"""The whole Manager link (sign-on, fetch, task updates, sign-off) against a scripted Manager on loopback.

Two kinds of Manager: one that long-polls (answers `Prefer: wait` with `Preference-Applied`, as ours
does) and a stock one that does not; the worker sends its task log at a different cadence to each.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from flamenco_worker.config import WorkerSettings
from flamenco_worker.credentials import load_credentials
from flamenco_worker.link import ManagerLink
from flamenco_worker.status import Origin, WorkerStatus
from flamenco_worker.worker import Worker

#: How long a scripted hold lasts: enough to tell a held request from a quick one, short enough for tests.
HOLD = 0.3
#: Longest wait for something the worker should do; far above what any of it takes.
WAIT_LIMIT = 20.0


@dataclass
class Update:
    at: float
    task_id: str
    body: dict[str, Any]


@dataclass
class ScriptedManager:
    """Flamenco v3's worker endpoints; `long_poll` says whether it honours `Prefer: wait`."""

    long_poll: bool
    tasks: list[dict[str, Any]] = field(default_factory=list)
    updates: list[Update] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    fetch_answers: list[int] = field(default_factory=list)  # scripted statuses for the next task fetches
    sign_on_answers: list[int] = field(default_factory=list)  # scripted statuses for the next sign-ons
    registered: int = 0
    signed_off: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application()
        base = "/api/v3/worker"
        app.router.add_post(f"{base}/register-worker", self.register)
        app.router.add_post(f"{base}/sign-on", self.sign_on)
        app.router.add_post(f"{base}/sign-off", self.sign_off)
        app.router.add_post(f"{base}/state-changed", self.no_content)
        app.router.add_get(f"{base}/state", self.held_no_content)
        app.router.add_post(f"{base}/task", self.fetch)
        app.router.add_post(f"{base}/task/{{task_id}}", self.update)
        app.router.add_get(f"{base}/task/{{task_id}}/may-i-run", self.may_i_run)
        app.router.add_post(f"{base}/task/{{task_id}}/output-produced", self.no_content)
        return app

    async def start(self) -> str:
        self.runner = web.AppRunner(self.app())
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # aiohttp keeps it private
        return f"http://127.0.0.1:{port}/"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def _note(self, request: web.Request) -> None:
        self.calls.append(f"{request.method} {request.path}")
        self.changed.set()

    async def _hold(self, request: web.Request) -> dict[str, str]:
        """A long-polling Manager holds the request a moment and says so; a stock one answers at once."""
        if not self.long_poll or "Prefer" not in request.headers:
            return {}
        await asyncio.sleep(HOLD)
        return {"Preference-Applied": "wait=1"}

    async def register(self, request: web.Request) -> web.Response:
        self._note(request)
        self.registered += 1
        return web.json_response({"uuid": f"worker-{self.registered}"})

    async def sign_on(self, request: web.Request) -> web.Response:
        self._note(request)
        code = self.sign_on_answers.pop(0) if self.sign_on_answers else 200
        if code != 200:
            return web.json_response({"message": "unknown worker"}, status=code)
        return web.json_response({"status_requested": "awake"})

    async def sign_off(self, request: web.Request) -> web.Response:
        self._note(request)
        self.signed_off.set()
        return web.Response(status=204)

    async def no_content(self, request: web.Request) -> web.Response:
        self._note(request)
        return web.Response(status=204)

    async def held_no_content(self, request: web.Request) -> web.Response:
        self._note(request)
        return web.Response(status=204, headers=await self._hold(request))

    async def fetch(self, request: web.Request) -> web.Response:
        self._note(request)
        code = self.fetch_answers.pop(0) if self.fetch_answers else 0
        if code:
            return web.json_response({"message": "scripted"}, status=code)
        if self.tasks:
            headers = {"Preference-Applied": "wait=1"} if self.long_poll else {}
            return web.json_response(self.tasks.pop(0), headers=headers)
        return web.Response(status=204, headers=await self._hold(request))

    async def update(self, request: web.Request) -> web.Response:
        self._note(request)
        now = asyncio.get_running_loop().time()
        self.updates.append(Update(now, request.match_info["task_id"], await request.json()))
        return web.Response(status=204)

    async def may_i_run(self, request: web.Request) -> web.Response:
        self._note(request)
        return web.json_response({"mayKeepRunning": True}, headers=await self._hold(request))

    # reading what arrived
    def log_updates(self) -> list[Update]:
        return [u for u in self.updates if "log" in u.body and "taskStatus" not in u.body]

    def status_updates(self) -> list[Update]:
        return [u for u in self.updates if "taskStatus" in u.body]

    def log_text(self) -> str:
        return "".join(u.body.get("log", "") for u in self.updates)

    async def wait_for(self, what: str, check: Callable[[], bool]) -> None:
        try:
            async with asyncio.timeout(WAIT_LIMIT):
                while not check():
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            raise AssertionError(f"no {what} within {WAIT_LIMIT:.0f}s; calls: {self.calls[-8:]}") from None


def shell_task(uuid: str, script: str) -> dict[str, Any]:
    return {
        "uuid": uuid,
        "job": "job-1",
        "name": f"shell {uuid}",
        "task_type": "misc",
        "commands": [{"name": "exec", "parameters": {"exe": "sh", "args": ["-c", script]}}],
    }


class RunningWorker:
    """The core and the link as the daemon wires them, without D-Bus, signals or systemd."""

    def __init__(self, url: str, home: Path) -> None:
        settings = WorkerSettings(
            manager_url=url, worker_name="linked", task_types=("misc",), dbus="off", flamenco_home=home
        )
        self.link = ManagerLink(settings)
        self.worker = Worker(settings, task_source=self.link)
        self.link.attach(self.worker)
        self.core: asyncio.Task[int] | None = None

    async def start(self) -> None:
        requested = await self.link.connect()
        self.worker.request_status(requested, lazy=False, origin=Origin.MANAGER)
        self.core = asyncio.create_task(self.worker.run())

    async def stop(self) -> None:
        if self.core is not None and not self.core.done():
            self.worker.request_status(WorkerStatus.OFFLINE, lazy=False, origin=Origin.LOCAL)
            assert await asyncio.wait_for(self.core, 20) == 0
        await self.link.close()


Farm = Callable[[ScriptedManager], Awaitable[RunningWorker]]


@pytest.fixture
async def farm(tmp_path: Path) -> AsyncIterator[Farm]:
    """Start a scripted Manager and a worker signed on to it; both are stopped after the test."""
    started: list[tuple[ScriptedManager, RunningWorker]] = []

    async def make(manager: ScriptedManager) -> RunningWorker:
        worker = RunningWorker(await manager.start(), tmp_path / "home")
        started.append((manager, worker))
        await worker.start()
        return worker

    yield make
    for manager, worker in started:
        await worker.stop()
        await manager.stop()


#: A task that writes 25 lines over about 2.5 s.
SLOW_LINES = "for i in $(seq 1 25); do echo line $i; sleep 0.1; done"


def numbered_lines(log_text: str) -> list[str]:
    return [ln.split("> ", 1)[1] for ln in log_text.splitlines() if "> line" in ln]


async def test_long_polling_manager_gets_the_log_every_second(farm: Farm) -> None:
    manager = ScriptedManager(long_poll=True, tasks=[shell_task("t-live", SLOW_LINES)])
    await farm(manager)
    await manager.wait_for("completion", lambda: len(manager.status_updates()) == 2)
    started, completed = manager.status_updates()
    assert (started.body["taskStatus"], completed.body["taskStatus"]) == ("active", "completed")
    during = [u for u in manager.log_updates() if u.at < completed.at]
    assert len(during) >= 2, "the log should go out at least every second while the task runs"
    first_gap = during[0].at - started.at
    assert first_gap < 1.5, f"first log update {first_gap:.2f}s after the start"
    assert numbered_lines(manager.log_text()) == [f"line {i}" for i in range(1, 26)]


async def test_stock_manager_gets_the_log_batched_as_flamenco_does(farm: Farm) -> None:
    manager = ScriptedManager(long_poll=False, tasks=[shell_task("t-batched", SLOW_LINES)])
    await farm(manager)
    await manager.wait_for("completion", lambda: len(manager.status_updates()) == 2)
    started, completed = manager.status_updates()
    logs = manager.log_updates()
    # The start goes out at once; the whole log of a short task follows in one update, right before the
    # completion, in order.
    assert started is manager.updates[0]
    assert len(logs) == 1, f"expected one batched log update, got {len(logs)}"
    assert manager.updates.index(logs[0]) == manager.updates.index(completed) - 1
    assert logs[0].at - started.at > 2.0, "the batch waited for the end of the task"
    assert numbered_lines(logs[0].body["log"]) == [f"line {i}" for i in range(1, 26)]


async def test_stock_manager_gets_more_than_10_kib_of_log_at_once(farm: Farm) -> None:
    burst = "i=0; while [ $i -lt 200 ]; do printf '%0100d\\n' $i; i=$((i+1)); done; sleep 3"
    manager = ScriptedManager(long_poll=False, tasks=[shell_task("t-burst", burst)])
    await farm(manager)
    await manager.wait_for("the burst", lambda: len(manager.log_updates()) >= 1)
    assert len(manager.status_updates()) == 1, "the burst should go out while the task still runs"
    first = manager.log_updates()[0]
    assert len(first.body["log"]) > 10 * 1024
    assert first.at - manager.updates[0].at < 2.0
    await manager.wait_for("completion", lambda: len(manager.status_updates()) == 2)


async def test_a_refused_worker_signs_on_again_and_registers_anew(farm: Farm, tmp_path: Path) -> None:
    manager = ScriptedManager(long_poll=True)
    manager.fetch_answers = [403]  # the Manager no longer knows this worker…
    manager.sign_on_answers = [200, 403]  # …so signing on again is refused as well
    await farm(manager)
    sign_on = "POST /api/v3/worker/sign-on"
    await manager.wait_for("a third sign-on", lambda: manager.calls.count(sign_on) == 3)
    assert manager.registered == 2
    creds = load_credentials(tmp_path / "home")
    assert creds is not None and creds.worker_id == "worker-2"
    await manager.wait_for("a task fetch after it", lambda: manager.calls[-1] == "POST /api/v3/worker/task")


async def test_sign_off_happens_even_when_the_outbox_file_is_damaged(tmp_path: Path) -> None:
    manager = ScriptedManager(long_poll=True)
    worker = RunningWorker(await manager.start(), tmp_path / "home")
    try:
        await worker.link.connect()
        for path in (tmp_path / "home").glob("flamenco-worker.sqlite*"):
            path.write_bytes(b"not a database" * 1000)
        await worker.link.close()
        assert manager.signed_off.is_set()
    finally:
        await manager.stop()
