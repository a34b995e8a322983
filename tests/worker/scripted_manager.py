"""A scripted Flamenco v3 Manager on loopback: real HTTP, answers chosen by the test."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

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
        app.router.add_get("/api/v3/version", self.version)
        return app

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": "3.7", "shortversion": "3.7", "name": "Scripted", "git": "x"})

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
            # A busy Manager's 503 says when to come back, as ours does (`api.errors`).
            headers = {"Retry-After": "1"} if code == 503 else None
            return web.json_response({"message": "scripted"}, status=code, headers=headers)
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
