"""Slow-loris clients: an incomplete request head ends the connection; slow bodies and keep-alive do not."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from flamenco_manager.api import slow_clients
from flamenco_manager.api.slow_clients import GuardedAppRunner


@pytest.fixture
async def server(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(slow_clients, "REQUEST_HEAD_TIMEOUT", 0.3)

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read())

    app = web.Application()
    app.router.add_post("/echo", echo)

    async def ping(request: web.Request) -> web.Response:
        return web.Response(text="pong")

    app.router.add_get("/ping", ping)
    runner = GuardedAppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield port
    await runner.cleanup()


async def talk(port: int, chunks: list[tuple[bytes, float]], wait: float = 2.0) -> bytes:
    """Send the chunks with pauses; what came back (b"" when the server hung up without answering)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for data, pause in chunks:
            writer.write(data)
            await writer.drain()
            await asyncio.sleep(pause)
    except (ConnectionResetError, BrokenPipeError):
        writer.close()
        return b""
    try:
        return await asyncio.wait_for(reader.read(), wait)
    finally:
        writer.close()


async def test_incomplete_head_is_cut_off(server: int) -> None:
    started = asyncio.get_running_loop().time()
    answer = await talk(server, [(b"GET /ping HTTP/1.1\r\nHost: x\r\n", 0)], wait=5)
    assert answer == b""  # closed without an answer
    assert asyncio.get_running_loop().time() - started < 3


async def test_dripping_head_is_cut_off_too(server: int) -> None:
    drip = [(b"GET /ping HTTP/1.1\r\n", 0.1)] + [(b"X-A: b\r\n", 0.1) for _ in range(10)]
    answer = await talk(server, drip, wait=5)
    assert not answer.startswith(b"HTTP/1.1 200")


async def test_normal_requests_slow_bodies_and_keep_alive_are_untouched(server: int) -> None:
    body = b"x" * 100
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
    # the body trickles in for longer than the head timeout, then a second request follows on the same
    # connection after an idle pause longer than the head timeout
    chunks = [(head, 0.2)] + [(body[i : i + 20], 0.15) for i in range(0, 100, 20)]
    chunks += [(b"", 0.5), (b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 0)]
    answer = await talk(server, chunks)
    assert answer.count(b"HTTP/1.1 200 OK") == 2
    assert body in answer and answer.endswith(b"pong")


async def test_a_whole_head_in_one_go_is_answered(server: int) -> None:
    answer = await talk(server, [(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 0)])
    assert answer.startswith(b"HTTP/1.1 200 OK")


async def test_stalled_json_body_gets_408(monkeypatch: pytest.MonkeyPatch, farm) -> None:
    from flamenco_manager.api import validation

    monkeypatch.setattr(validation, "BODY_READ_TIMEOUT", 0.3)
    port = int(farm.client.base.rsplit(":", 1)[1].split("/")[0])
    head = (
        b"POST /api/v3/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head + b'{"name":')  # and then nothing more
    await writer.drain()
    try:
        answer = await asyncio.wait_for(reader.read(4096), 5)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert b'"code": 408' in answer and b"body: not received within" in answer
