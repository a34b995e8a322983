"""Last-rendered thumbnails: a bad image is logged with its job and skipped; a bug is not swallowed."""

from __future__ import annotations

import asyncio
import io
import logging
import pathlib

import pytest

from flamenco_manager.model import Job
from flamenco_manager.services import thumbnails
from flamenco_manager.services.thumbnails import Thumbnails
from tests.manager.conftest import Farm, eventually

pytest.importorskip("PIL")


async def _job(farm: Farm) -> Job:
    job = farm.manager.store.get_job((await farm.submit_echo())["id"])
    assert job is not None
    return job


def _png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 30)).save(buffer, "PNG")
    return buffer.getvalue()


async def test_a_broken_image_is_logged_with_its_job_and_the_queue_goes_on(
    farm: Farm, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="flamenco_manager.services.thumbnails")
    broken = await _job(farm)
    good = await _job(farm)
    thumbs = farm.manager.thumbnails
    thumbs.submit(broken, b"\x89PNG\r\n\x1a\n this is not a PNG")
    thumbs.submit(good, _png())
    await eventually(lambda: thumbnails.thumbnail_info(thumbs.storage, good.uuid) is not None)
    assert thumbnails.thumbnail_info(thumbs.storage, broken.uuid) is None
    warning = next(r.getMessage() for r in caplog.records if "could not make thumbnails" in r.getMessage())
    assert f"job={broken.uuid}" in warning and "UnidentifiedImageError" in warning, warning


async def test_a_bug_while_making_thumbnails_surfaces(
    farm: Farm, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_code(directory: pathlib.Path, data: bytes) -> None:
        raise KeyError("a programming error")

    monkeypatch.setattr(thumbnails, "_write_thumbnails", broken_code)
    own = Thumbnails(farm.manager.store, farm.manager.hub, tmp_path)
    own.submit(await _job(farm), _png())
    with pytest.raises(KeyError, match="a programming error"):
        await asyncio.wait_for(own.run(), 10)
