"""A real Manager on a loopback port with a real database, and a client that speaks to it.

`farm` runs each test against both stores: a SQLite file (`[sqlite]`) and a fresh database on a private
PostgreSQL server (`[postgresql]`, marked `postgresql`: `make unit` leaves those out, `make test` runs
them). A test about SQLite itself (its files, locks or statement trace) carries `sqlite_only`.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import importlib
import pathlib
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from flamenco_manager.api import build_app
from flamenco_manager.cli import GRACE_ON_RUNNER
from flamenco_manager.config import ManagerConfig
from flamenco_manager.services import Manager
from flamenco_manager.store import open_store
from tests.support import postgresql

API = "/api/v3"

# A valid simple-blender-render submission, for tests that change one part of it.
RENDER: dict[str, Any] = {
    "name": "shot",
    "type": "simple-blender-render",
    "priority": 50,
    "submitter_platform": "linux",
    "settings": {
        "frames": "1-10",
        "chunk_size": 2,
        "render_output_root": "/render/shot",
        "add_path_components": 0,
        "render_output_path": "/render/shot/######",
        "blendfile": "/render/shot.blend",
        "fps": 24.0,
        "format": "PNG",
        "image_file_extension": ".png",
        "has_previews": False,
        "scene": "Scene",
    },
}


def _spec_checker() -> Any:
    """The OpenAPI response checker, once the document and its checker exist."""
    try:
        check = importlib.import_module("tests.manager.openapi_check")
        from flamenco_manager.openapi import load_spec
    except ImportError:
        return None
    return check.assert_response_valid, load_spec()


def basic_auth(user: str, password: str) -> dict[str, str]:
    """HTTP Basic credentials as a header (aiohttp's BasicAuth helper is deprecated in newer releases)."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@dataclasses.dataclass
class Reply:
    status: int
    headers: Any
    body: Any

    def json(self) -> Any:
        return self.body


class Client:
    """HTTP client for tests; every JSON answer is checked against the OpenAPI document."""

    def __init__(self, session: aiohttp.ClientSession, base: str, checker: Any) -> None:
        self.session = session
        self.base = base
        self.checker = checker
        self._templates: list[tuple[re.Pattern[str], str]] | None = None

    def _template_of(self, path: str) -> str | None:
        if self.checker is None:
            return None
        if self._templates is None:
            spec = self.checker[1]
            self._templates = []
            for template in spec.get("paths", {}):
                full = template if template.startswith(API) else API + template
                regex = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(full)) + "$"
                self._templates.append((re.compile(regex), template))
            # A literal path segment beats a parameter: /jobs/last-rendered is not /jobs/{job_id}.
            self._templates.sort(key=lambda item: item[1].count("{"))
        for pattern, template in self._templates:
            if pattern.match(path):
                return template
        return None

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        auth: tuple[str, str] | None = None,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
        validate: bool = True,
        limit: float = 30.0,
    ) -> Reply:
        if auth:
            headers = {**(headers or {}), **basic_auth(*auth)}
        async with self.session.request(
            method,
            self.base + path,
            json=json,
            headers=headers,
            data=data,
            timeout=aiohttp.ClientTimeout(total=limit),
        ) as resp:
            raw = await resp.read()
            body: Any = raw
            if resp.content_type == "application/json" and raw:
                body = await resp.json()
            elif resp.content_type.startswith("text/"):
                body = raw.decode()
            reply = Reply(resp.status, resp.headers, body)
        template = self._template_of(path.split("?")[0]) if validate else None
        if template is not None:
            check, spec = self.checker
            check(spec, method.lower(), template, reply.status, reply.body if reply.body != b"" else None)
        return reply

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, json: Any = None, **kw: Any) -> Reply:
        return await self.request("POST", path, json=json, **kw)

    async def delete(self, path: str, json: Any = None, **kw: Any) -> Reply:
        return await self.request("DELETE", path, json=json, **kw)

    async def put(self, path: str, json: Any = None, **kw: Any) -> Reply:
        return await self.request("PUT", path, json=json, **kw)


@dataclasses.dataclass
class FakeWorker:
    """A worker as the Go worker would drive the protocol."""

    client: Client
    uuid: str
    secret: str
    name: str
    types: list[str]

    @property
    def auth(self) -> tuple[str, str]:
        return (self.uuid, self.secret)

    async def sign_on(self, *, can_restart: bool = False) -> str:
        reply = await self.client.post(
            f"{API}/worker/sign-on",
            {
                "name": self.name,
                "supported_task_types": self.types,
                "software_version": "3.9",
                "can_restart": can_restart,
            },
            auth=self.auth,
        )
        assert reply.status == 200, reply.body
        return reply.body["status_requested"]

    async def ack(self, status: str) -> None:
        reply = await self.client.post(f"{API}/worker/state-changed", {"status": status}, auth=self.auth)
        assert reply.status == 204, reply.body

    async def fetch(self, *, wait: int | None = None) -> Reply:
        headers = {"Prefer": f"wait={wait}"} if wait is not None else None
        return await self.client.post(f"{API}/worker/task", auth=self.auth, headers=headers)

    async def update(self, task_id: str, **body: Any) -> Reply:
        return await self.client.post(f"{API}/worker/task/{task_id}", body, auth=self.auth)

    async def may_i_run(self, task_id: str, *, wait: int | None = None) -> Reply:
        headers = {"Prefer": f"wait={wait}"} if wait is not None else None
        return await self.client.get(
            f"{API}/worker/task/{task_id}/may-i-run", auth=self.auth, headers=headers
        )

    async def state(self, *, wait: int | None = None) -> Reply:
        headers = {"Prefer": f"wait={wait}"} if wait is not None else None
        return await self.client.get(f"{API}/worker/state", auth=self.auth, headers=headers)

    async def sign_off(self) -> None:
        reply = await self.client.post(f"{API}/worker/sign-off", auth=self.auth)
        assert reply.status == 204, reply.body


class Farm:
    def __init__(self, manager: Manager, client: Client) -> None:
        self.manager = manager
        self.client = client
        self._count = 0

    async def register(
        self,
        types: tuple[str, ...] = ("misc", "blender", "ffmpeg"),
        *,
        platform: str = "linux",
        name: str | None = None,
    ) -> FakeWorker:
        self._count += 1
        name = name or f"worker-{self._count}"
        secret = secrets.token_hex(32)
        reply = await self.client.post(
            f"{API}/worker/register-worker",
            {"name": name, "platform": platform, "secret": secret, "supported_task_types": list(types)},
        )
        assert reply.status == 200, reply.body
        return FakeWorker(self.client, reply.body["uuid"], secret, name, list(types))

    async def awake_worker(
        self, types: tuple[str, ...] = ("misc", "blender", "ffmpeg"), **kw: Any
    ) -> FakeWorker:
        worker = await self.register(types, **kw)
        assert await worker.sign_on(can_restart=True) == "awake"
        await worker.ack("awake")
        return worker

    async def submit_echo(self, *, repeats: int = 1, priority: int = 50, **extra: Any) -> dict:
        body = {
            "name": f"echo job {priority}",
            "type": "echo-sleep-test",
            "priority": priority,
            "submitter_platform": "linux",
            "settings": {"message": "hello", "sleep_duration_seconds": 0, "sleep_repeats": repeats},
            **extra,
        }
        reply = await self.client.post(f"{API}/jobs", body)
        assert reply.status == 200, reply.body
        return reply.body

    async def job(self, job_id: str) -> dict:
        reply = await self.client.get(f"{API}/jobs/{job_id}")
        assert reply.status == 200, reply.body
        return reply.body

    async def task(self, task_id: str) -> dict:
        reply = await self.client.get(f"{API}/tasks/{task_id}")
        assert reply.status == 200, reply.body
        return reply.body

    async def tasks(self, job_id: str) -> list[dict]:
        reply = await self.client.get(f"{API}/jobs/{job_id}/tasks")
        assert reply.status == 200, reply.body
        return reply.body["tasks"]

    async def worker(self, worker_id: str) -> dict:
        reply = await self.client.get(f"{API}/worker-mgt/workers/{worker_id}")
        assert reply.status == 200, reply.body
        return reply.body


def bound_port(site: web.TCPSite) -> int:
    """The port a TCPSite started on port 0 was given."""
    server = site._server
    assert isinstance(server, asyncio.Server)
    return server.sockets[0].getsockname()[1]


def make_config(tmp_path: pathlib.Path, **overrides: Any) -> ManagerConfig:
    base = ManagerConfig(
        database=str(tmp_path / "manager.sqlite"),
        local_manager_storage_path=str(tmp_path / "storage"),
        shared_storage_path=str(tmp_path / "shared"),
        long_poll_max=10.0,
        timeout_initial_delay=3600.0,
    )
    return dataclasses.replace(base, **overrides)


#: A test's in-process manager closes its connections at teardown within this.
TEST_SHUTDOWN_GRACE = 1.0


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    return {}


#: The migrated database every PostgreSQL test's own database is copied from.
PG_TEMPLATE = "flamenco_template"


def migrated_postgres() -> Iterator[postgresql.PostgresServer]:
    """A private PostgreSQL server with a migrated template database (skips when there is none)."""
    reason = postgresql.unavailable()
    if reason is not None:
        pytest.skip(reason)
    with postgresql.postgres_server() as server:
        server.admin(f"CREATE DATABASE {PG_TEMPLATE}")
        open_store(server.url(PG_TEMPLATE)).close()
        yield server


@pytest.fixture(scope="session")
def postgres() -> Iterator[postgresql.PostgresServer]:
    """A private PostgreSQL server for the session."""
    yield from migrated_postgres()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def backend(request: pytest.FixtureRequest) -> str:
    """The store the test's Manager uses."""
    if request.param == "postgresql" and request.node.get_closest_marker("sqlite_only") is not None:
        pytest.skip(f"SQLite only: {request.node.get_closest_marker('sqlite_only').args[0]}")
    return str(request.param)


@pytest.fixture
def database(backend: str, tmp_path: pathlib.Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """The `database:` setting of the test's Manager: a SQLite file, or a fresh PostgreSQL database."""
    if backend == "sqlite":
        yield str(tmp_path / "manager.sqlite")
        return
    server: postgresql.PostgresServer = request.getfixturevalue("postgres")
    url = server.fresh_database(template=PG_TEMPLATE)
    yield url
    server.drop_database(url)


async def serve(manager: Manager, session: aiohttp.ClientSession) -> tuple[Farm, web.AppRunner]:
    """Start `manager` behind real HTTP on a free loopback port; the caller cleans up the runner and
    stops the manager."""
    # The shutdown grace where the installed aiohttp wants it (the runner from 3.9, the site before).
    app = build_app(manager)
    if GRACE_ON_RUNNER:
        runner = web.AppRunner(app, shutdown_timeout=TEST_SHUTDOWN_GRACE)
    else:
        runner = web.AppRunner(app)
    await runner.setup()
    await manager.start()
    if GRACE_ON_RUNNER:
        site = web.TCPSite(runner, "127.0.0.1", 0)
    else:
        site = web.TCPSite(runner, "127.0.0.1", 0, shutdown_timeout=TEST_SHUTDOWN_GRACE)
    await site.start()
    client = Client(session, f"http://127.0.0.1:{bound_port(site)}", _spec_checker())
    return Farm(manager, client), runner


@pytest.fixture
async def farm(
    tmp_path: pathlib.Path, database: str, config_overrides: dict[str, Any]
) -> AsyncIterator[Farm]:
    manager = Manager(make_config(tmp_path, **{"database": database, **config_overrides}))
    async with aiohttp.ClientSession() as session:
        served, runner = await serve(manager, session)
        yield served
        manager.stop_holding()
    await runner.cleanup()
    await manager.stop()


async def eventually(predicate: Any, within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)
