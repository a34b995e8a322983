"""Two Manager replicas behind a real HAProxy (Debian's `haproxy`, a child process on a loopback port): a
worker speaks to one URL, its requests land on both replicas, a held request on one is answered by news
from the other, and when one replica stops the flow goes on through the other.

The replicas are in-process aiohttp servers on real loopback ports, sharing one PostgreSQL database and one
storage path; HAProxy balances round-robin, checks `GET /api/v3/version`, and names the replica that
answered in a response header, so the test knows which one served each request.
"""

from __future__ import annotations

import asyncio
import pathlib
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from aiohttp import web

from flamenco_manager.services import ELECTION_RETRY
from tests.manager.conftest import API, PG_TEMPLATE, Client, Farm, Reply, _spec_checker, eventually
from tests.manager.test_replicas_storage import _replica
from tests.support import postgresql

NO_HAPROXY = "haproxy not installed (Debian package haproxy, installed by make deps)"
pytestmark = [
    pytest.mark.postgresql,
    pytest.mark.timeout(180),
    pytest.mark.skipif(
        shutil.which("haproxy") is None, reason="haproxy not installed (Debian package haproxy)"
    ),
]

# The header HAProxy adds to every answer: the name of the replica that gave it ("a" or "b").
SERVED_BY = "X-Flamenco-Replica"
# HAProxy's health checks: this often, and a replica is out after two failures (a test needs it fast;
# production uses seconds, see the README).
CHECK_INTERVAL_MS = 200
# HAProxy is up and sees both replicas healthy within this.
READY_WITHIN = 20.0
# How long the replicas may hold a long-poll (as in production: below the proxy's server timeout).
LONG_POLL_MAX = 30.0
# A held request answered on news from the other replica within this (a loaded test machine).
PROMPT = 3.0

HAPROXY_CFG = """\
global
    maxconn 256

defaults
    mode http
    timeout connect 2s
    timeout client 90s
    # Held long-polls (Prefer: wait=N, up to the Manager's long_poll_max of 30 s) and the event stream's
    # keep-alive comments (every 15 s) must fit in this.
    timeout server 90s
    # A new connection to a replica per request, so a stopped replica is a refused connection, which
    # HAProxy retries on the other replica.
    option http-server-close
    retries 3
    option redispatch 1

frontend managers
    bind 127.0.0.1:{port}
    default_backend replicas

backend replicas
    balance roundrobin
    option httpchk GET /api/v3/version
    http-check expect status 200
    http-response set-header {served_by} %[srv_name]
    server a 127.0.0.1:{port_a} check inter {inter}ms fall 2 rise 1
    server b 127.0.0.1:{port_b} check inter {inter}ms fall 2 rise 1
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HAProxy:
    def __init__(self, directory: pathlib.Path, port_a: int, port_b: int) -> None:
        self.port = _free_port()
        self.config = directory / "haproxy.cfg"
        self.config.write_text(
            HAPROXY_CFG.format(
                port=self.port, port_a=port_a, port_b=port_b, inter=CHECK_INTERVAL_MS, served_by=SERVED_BY
            )
        )
        checked = subprocess.run(
            ["haproxy", "-c", "-q", "-f", str(self.config)], capture_output=True, text=True, check=False
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        self.log = (directory / "haproxy.log").open("w")
        # -db: stay in the foreground, a child of the test, stopped by it.
        self.process = subprocess.Popen(
            ["haproxy", "-db", "-f", str(self.config)], stdout=self.log, stderr=subprocess.STDOUT
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture
def lb_dir(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    directory = tmp_path / "haproxy"
    directory.mkdir()
    yield directory


@pytest.fixture
async def behind_haproxy(
    tmp_path: pathlib.Path, lb_dir: pathlib.Path, postgres: postgresql.PostgresServer
) -> AsyncIterator[tuple[Farm, Farm, Farm, dict[str, web.AppRunner | None]]]:
    """Replicas A (started first: it runs the farm-wide loops) and B, and a farm whose client speaks to
    HAProxy in front of them."""
    url = postgres.fresh_database(template=PG_TEMPLATE)
    storage = tmp_path / "shared-storage"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with aiohttp.ClientSession() as session:
        a, runner_a = await _replica(tmp_path / "a", url, storage, session, long_poll_max=LONG_POLL_MAX)
        await eventually(lambda: a.manager.runs_farm_loops, within=ELECTION_RETRY + 5)
        b, runner_b = await _replica(tmp_path / "b", url, storage, session, long_poll_max=LONG_POLL_MAX)
        runners: dict[str, web.AppRunner | None] = {"a": runner_a, "b": runner_b}
        proxy = HAProxy(lb_dir, _port_of(a), _port_of(b))
        try:
            lb = Farm(a.manager, Client(session, proxy.url, _spec_checker()))
            await _both_answer(lb, proxy)
            yield a, b, lb, runners
        finally:
            proxy.stop()
            for farm, name in ((a, "a"), (b, "b")):
                runner = runners[name]
                if runner is None:  # the test stopped it
                    continue
                farm.manager.stop_holding()
                await runner.cleanup()
                await farm.manager.stop()
    postgres.drop_database(url)


def _port_of(farm: Farm) -> int:
    return int(farm.client.base.rsplit(":", 1)[1])


async def _both_answer(lb: Farm, proxy: HAProxy) -> None:
    """HAProxy listens and has both replicas in rotation."""
    deadline = time.monotonic() + READY_WITHIN
    seen: set[str] = set()
    while seen != {"a", "b"}:
        assert proxy.process.poll() is None, f"haproxy exited: {proxy.log.name}"
        assert time.monotonic() < deadline, f"haproxy not ready, replicas seen: {seen}"
        try:
            reply = await lb.client.get(f"{API}/version", limit=2)
        except aiohttp.ClientError:
            await asyncio.sleep(0.05)
            continue
        if reply.status == 200 and SERVED_BY in reply.headers:
            seen.add(reply.headers[SERVED_BY])
        else:
            await asyncio.sleep(0.05)


def _farm_named(name: str, a: Farm, b: Farm) -> Farm:
    return a if name == "a" else b


async def _held_on(a: Farm, b: Farm, worker_uuid: str) -> Farm:
    """The replica holding this worker's request."""
    deadline = time.monotonic() + PROMPT
    while True:
        for farm in (a, b):
            worker = farm.manager.store.get_worker(worker_uuid)
            if worker is not None and farm.manager.hub.is_held(worker.id):
                return farm
        assert time.monotonic() < deadline, "the request was not held"
        await asyncio.sleep(0.005)


async def _stop_replica(farm: Farm, runners: dict[str, web.AppRunner | None], name: str) -> None:
    runner = runners[name]
    assert runner is not None
    farm.manager.stop_holding()
    await runner.cleanup()
    await farm.manager.stop()
    runners[name] = None  # stopped: the fixture leaves it


async def test_worker_flow_through_haproxy_survives_a_replica_stopping(
    behind_haproxy: tuple[Farm, Farm, Farm, dict[str, web.AppRunner | None]],
) -> None:
    a, b, lb, runners = behind_haproxy
    served: list[str] = []

    def note(reply: Reply) -> None:
        served.append(reply.headers[SERVED_BY])

    worker = await lb.register()
    assert await worker.sign_on(can_restart=True) == "awake"
    await worker.ack("awake")
    job = await lb.submit_echo(repeats=1)
    reply = await worker.fetch()
    assert reply.status == 200, reply.body
    note(reply)
    task_id = reply.body["uuid"]
    for n in range(4):
        reply = await worker.update(task_id, log=f"log line {n}\n")
        assert reply.status == 204, reply.body
        note(reply)
    assert set(served) == {"a", "b"}, served  # round-robin: both replicas took the worker's requests

    # A state request held on one replica, the status asked for through the other.
    held = asyncio.create_task(worker.state(wait=20))
    holder = await _held_on(a, b, worker.uuid)
    reply = await lb.client.post(
        f"{API}/worker-mgt/workers/{worker.uuid}/setstatus", {"status": "asleep", "is_lazy": False}
    )
    assert reply.status == 204, reply.body
    assert _farm_named(reply.headers[SERVED_BY], a, b) is not holder, "both went to the same replica"
    answer = await asyncio.wait_for(held, PROMPT)
    assert answer.status == 200 and answer.body == {"status_requested": "asleep"}
    assert _farm_named(answer.headers[SERVED_BY], a, b) is holder
    await worker.ack("asleep")
    reply = await lb.client.post(
        f"{API}/worker-mgt/workers/{worker.uuid}/setstatus", {"status": "awake", "is_lazy": False}
    )
    assert reply.status == 204, reply.body
    assert (await worker.state()).body == {"status_requested": "awake"}
    await worker.ack("awake")
    # Going to sleep handed the task back; the awake worker gets it again.
    reply = await worker.fetch()
    assert reply.status == 200 and reply.body["uuid"] == task_id, reply.body

    # A long-poll held on replica A when it stops is answered; then everything goes through B.
    may_run = asyncio.create_task(worker.may_i_run(task_id, wait=20))
    while await _held_on(a, b, worker.uuid) is not a:
        # It went to B: ask again until one is held on A (round-robin alternates).
        may_run.cancel()
        await asyncio.gather(may_run, return_exceptions=True)
        may_run = asyncio.create_task(worker.may_i_run(task_id, wait=20))
    await _stop_replica(a, runners, "a")
    reply = await asyncio.wait_for(may_run, PROMPT)
    assert reply.status == 200 and reply.body["mayKeepRunning"] is True, reply.body

    served.clear()
    for n in range(4, 8):
        reply = await worker.update(task_id, log=f"log line {n}\n")
        assert reply.status == 204, reply.body
        note(reply)
    reply = await worker.update(task_id, taskStatus="completed", activity="echoed")
    assert reply.status == 204, reply.body
    note(reply)
    nxt = await worker.fetch()
    assert nxt.status == 200, nxt.body
    note(nxt)
    assert nxt.body["job"] == job["id"] and nxt.body["uuid"] != task_id
    assert set(served) == {"b"}, served
    # The log written through both replicas is whole, read through the one left.
    tail = await lb.client.get(f"{API}/tasks/{task_id}/logtail")
    assert tail.status == 200
    positions = [tail.body.index(f"log line {n}\n") for n in range(8)]
    assert positions == sorted(positions)
    # B takes over the farm-wide loops.
    await eventually(lambda: b.manager.runs_farm_loops, within=ELECTION_RETRY * 2 + PROMPT)


@pytest.mark.slow
async def test_a_long_poll_held_longer_than_25_seconds_passes_haproxy(
    behind_haproxy: tuple[Farm, Farm, Farm, dict[str, web.AppRunner | None]],
) -> None:
    _, _, lb, _ = behind_haproxy
    worker = await lb.awake_worker()
    started = time.monotonic()
    reply = await worker.state(wait=26)
    assert reply.status == 204, reply.body  # nothing to say: answered by the replica, not the proxy
    assert time.monotonic() - started >= 25
    assert reply.headers["Preference-Applied"] == "wait=26"
