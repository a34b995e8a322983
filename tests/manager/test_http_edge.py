"""The HTTP edge's own answers: unknown API paths, and clients that vanish while sending a body."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.manager.conftest import API, Farm, eventually


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", f"{API}/no/such/thing", 404),
        ("POST", "/api/nothing", 404),
        ("DELETE", f"{API}/jobs/types/extra", 404),
        ("PATCH", f"{API}/version", 405),
    ],
)
async def test_unknown_api_paths_answer_a_json_error(farm: Farm, method: str, path: str, status: int) -> None:
    async with farm.client.session.request(method, farm.client.base + path) as resp:
        assert resp.status == status
        assert resp.content_type == "application/json"
        body = await resp.json()
    expected = "no such endpoint" if status == 404 else "Method Not Allowed"
    assert body == {"code": status, "message": f"{expected}: {method} {path}"}
    if status == 405:
        assert set(resp.headers["Allow"].split(",")) == {"GET", "HEAD"}


async def test_web_files_are_still_served_beside_the_api(farm: Farm) -> None:
    async with farm.client.session.get(farm.client.base + "/") as resp:
        assert resp.status == 200 and resp.content_type == "text/html"


async def test_client_gone_mid_body_is_one_warning(farm: Farm, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = urlsplit(farm.client.base)
    assert url.hostname is not None and url.port is not None
    _, writer = await asyncio.open_connection(url.hostname, url.port)
    head = (
        f"POST {API}/worker-mgt/tags HTTP/1.1\r\nHost: {url.netloc}\r\n"
        "Content-Type: application/json\r\nContent-Length: 200\r\n\r\n"
    )
    writer.write(head.encode() + b'{"name": "half a bo')
    await writer.drain()
    await asyncio.sleep(0.2)  # let the handler start reading the body before the peer goes away
    writer.close()
    await writer.wait_closed()

    def disconnect_lines() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "disconnected" in r.getMessage()]

    await eventually(lambda: disconnect_lines())
    # The Manager still answers, and nothing was written.
    tags = await farm.client.get(f"{API}/worker-mgt/tags")
    assert tags.body["tags"] == []
    [line] = disconnect_lines()
    assert line.levelno == logging.WARNING
    assert "method=POST" in line.getMessage() and f"path={API}/worker-mgt/tags" in line.getMessage()
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert all(r.exc_info is None for r in caplog.records if r.levelno >= logging.WARNING)


async def test_answers_keep_coming_after_a_vanished_client(farm: Farm) -> None:
    url = urlsplit(farm.client.base)
    assert url.hostname is not None and url.port is not None
    for _ in range(3):
        _, writer = await asyncio.open_connection(url.hostname, url.port)
        head = f"PUT {API}/worker-mgt/tag/x HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\n"
        writer.write(head.encode() + b"{")
        writer.close()
    async with aiohttp.ClientSession() as session, session.get(farm.client.base + f"{API}/version") as resp:
        assert resp.status == 200
