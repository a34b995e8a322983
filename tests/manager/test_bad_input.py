"""Bad submissions and oversized bodies: a 400/413 naming the problem, and nothing stored."""

from __future__ import annotations

import pytest

from tests.manager.conftest import API, RENDER, Farm


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"frames": "1-100000000"}, "frames"),
        ({"frames": "10-1"}, "frames"),
        ({"frames": "one to ten"}, "frames"),
        ({"frames": ""}, "frames"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"chunk_size": "two"}, "chunk_size"),
        ({"fps": "fast"}, "fps"),
        ({"format": "FFMPEG"}, "format"),
        ({"scene": None}, "scene"),
        ({"has_previews": "yes"}, "has_previews"),
    ],
)
async def test_render_submission_refused_with_the_setting_named(
    farm: Farm, settings: dict, field: str
) -> None:
    body = {**RENDER, "settings": {**RENDER["settings"], **settings}}
    body["settings"] = {k: v for k, v in body["settings"].items() if v is not None}
    reply = await farm.client.post(f"{API}/jobs", body)
    assert reply.status == 400, reply.body
    assert field in reply.body["message"], reply.body
    assert (await farm.client.get(f"{API}/jobs")).body["jobs"] == []


async def test_huge_body_is_413(farm: Farm) -> None:
    body = b'{"name": "' + b"x" * (27 * 1024 * 1024) + b'"}'
    reply = await farm.client.request(
        "POST", f"{API}/jobs", data=body, headers={"Content-Type": "application/json"}, validate=False
    )
    assert reply.status == 413
    assert reply.body["code"] == 413 and reply.body["message"]
    assert (await farm.client.get(f"{API}/jobs")).body["jobs"] == []


@pytest.mark.parametrize("raw", [b"{", b"[]", b"null", b'{"name": "\\ud800"}', b"\xff\xfe"])
async def test_malformed_json_is_400(farm: Farm, raw: bytes) -> None:
    reply = await farm.client.request(
        "POST", f"{API}/jobs", data=raw, headers={"Content-Type": "application/json"}, validate=False
    )
    assert reply.status == 400, reply.body
    assert reply.body["code"] == 400 and reply.body["message"]
