"""The web UI hook: static files from flamenco_manager/web/ at `/` when that directory exists."""

from __future__ import annotations

import pathlib

import aiohttp
import pytest
from aiohttp import web

import flamenco_manager.api
from flamenco_manager.services import Manager
from tests.manager.conftest import bound_port, make_config


async def test_static_web_directory_is_served(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site_dir = tmp_path / "web"
    site_dir.mkdir()
    (site_dir / "index.html").write_text("<h1>farm</h1>")
    (site_dir / "app.js").write_text("console.log('farm')")
    monkeypatch.setattr(flamenco_manager.api, "WEB_DIR", site_dir)
    manager = Manager(make_config(tmp_path))
    runner = web.AppRunner(flamenco_manager.api.build_app(manager))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = bound_port(site)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/") as resp:
                assert resp.status == 200 and "farm" in await resp.text()
            async with session.get(f"http://127.0.0.1:{port}/app.js") as resp:
                assert resp.status == 200
            async with session.get(f"http://127.0.0.1:{port}/api/v3/version") as resp:
                assert resp.status == 200
    finally:
        await runner.cleanup()
        await manager.stop()
