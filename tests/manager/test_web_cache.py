"""The web UI's files are revalidated on every load, so an upgraded Manager never serves a stale mix."""

from __future__ import annotations

import pathlib

import aiohttp
import pytest
from aiohttp import web

import flamenco_manager.api
from flamenco_manager.services import Manager
from tests.manager.conftest import bound_port, make_config


async def test_web_files_are_revalidated_and_api_answers_are_left_alone(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site_dir = tmp_path / "web"
    (site_dir / "js").mkdir(parents=True)
    (site_dir / "index.html").write_text("<h1>farm</h1>")
    (site_dir / "js" / "main.js").write_text("export {};")
    monkeypatch.setattr(flamenco_manager.api, "WEB_DIR", site_dir)
    manager = Manager(make_config(tmp_path))
    runner = web.AppRunner(flamenco_manager.api.build_app(manager))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{bound_port(site)}"
    try:
        async with aiohttp.ClientSession() as session:
            for path in ("/", "/js/main.js"):
                async with session.get(base + path) as resp:
                    assert resp.status == 200
                    assert resp.headers["Cache-Control"] == "no-cache"
                    etag = resp.headers["ETag"]
                async with session.get(base + path, headers={"If-None-Match": etag}) as resp:
                    assert resp.status == 304
            async with session.get(base + "/api/v3/version") as resp:
                assert resp.status == 200 and "Cache-Control" not in resp.headers
    finally:
        await runner.cleanup()
        await manager.stop()
