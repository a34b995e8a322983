"""Last-rendered images to the Manager: only the newest waits, older ones are dropped (Flamenco's rule)."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Mapping
from pathlib import Path

from flamenco_worker import journal
from flamenco_worker.cancel import cancel_and_wait
from flamenco_worker.manager_client import ManagerClient, ManagerUnreachable

log = logging.getLogger(__name__)

#: The Manager refuses bigger bodies (HTTP 413); do not even try.
MAX_UPLOAD_BYTES = 25 * 1024 * 1024
#: JPEG quality of the re-encoded preview, as the Manager's thumbnails use.
JPEG_QUALITY = 85
#: Formats Pillow can turn into a JPEG preview (EXR and the like are skipped).
CONVERTIBLE = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}


def encode_preview(path: Path) -> tuple[bytes, str] | None:
    """The image as JPEG (or as-is PNG/JPEG without Pillow); None when it cannot be sent."""
    suffix = path.suffix.lower()
    if suffix not in CONVERTIBLE:
        return None
    try:
        # Imported on first use: Pillow costs several MiB that an idle worker should not carry.
        from PIL import Image
    except ImportError:  # Pillow is optional: without it JPEG and PNG files go up as they are
        Image = None
    if Image is None:
        if suffix not in {".png", ".jpg", ".jpeg"}:
            return None
        return path.read_bytes(), "image/png" if suffix == ".png" else "image/jpeg"
    with Image.open(path) as img:
        buffer = io.BytesIO()
        img.convert("RGB").save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue(), "image/jpeg"


class OutputUploader:
    def __init__(self, client: ManagerClient) -> None:
        self._client = client
        self._latest: tuple[str, Path, Mapping[str, str]] | None = None
        self._worker: asyncio.Task[None] | None = None

    def offer(self, task_id: str, path: Path) -> None:
        # replaces whatever was still waiting; its records are about the task that offered it
        self._latest = (task_id, path, journal.scope_fields())
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(
                self._drain(), context=journal.outside_tasks()
            )

    async def _drain(self) -> None:
        while self._latest is not None:
            task_id, path, fields = self._latest
            self._latest = None
            with journal.fields_scope(fields):
                await self._upload(task_id, path)

    async def _upload(self, task_id: str, path: Path) -> None:
        try:
            encoded = await asyncio.to_thread(encode_preview, path)
        except (OSError, ValueError) as exc:
            log.warning("task=%s image=%s cannot be read for a preview: %s", task_id, path, exc)
            return
        if encoded is None:
            log.debug("task=%s image=%s: no preview for this format", task_id, path)
            return
        data, content_type = encoded
        if len(data) > MAX_UPLOAD_BYTES:
            log.warning("task=%s image=%s preview too large (%d bytes); skipped", task_id, path, len(data))
            return
        try:
            status = await self._client.output_produced(task_id, data, content_type)
        except ManagerUnreachable as exc:
            log.info("task=%s preview not sent: %s", task_id, exc)
            return
        if status not in (200, 202, 204):
            log.info("task=%s preview refused by the Manager (HTTP %d)", task_id, status)

    async def close(self) -> None:
        """Stop uploading; a preview still waiting is dropped."""
        if self._worker is not None:
            await cancel_and_wait(self._worker)
