"""Last-rendered images: a small latest-first queue turning uploads into three JPEG thumbnails.

Each replica processes the uploads it received, into the storage path the replicas share; which job has the
latest image is in the database, and the `/last-rendered` event is relayed, so every replica answers for
every job. Two replicas may write one job's thumbnails at once (two workers of the job on different
replicas): each writes its own temporary files and renames them into place, so a reader sees whole images.
"""

from __future__ import annotations

import asyncio
import collections
import io
import logging
import os
import pathlib
import secrets
from dataclasses import dataclass

from flamenco_manager import journal_fields
from flamenco_manager.model import Job
from flamenco_manager.services.events import Hub
from flamenco_manager.services.tasklogs import job_dir
from flamenco_manager.store import Store, StoreError

try:
    from PIL import Image
except ImportError:  # Pillow is optional: without it uploads are accepted and dropped.
    Image = None

# What a bad upload or a full disk raises while decoding and writing: OSError (unreadable or truncated
# image, disk errors), ValueError and SyntaxError (malformed image data inside Pillow's decoders), and
# Pillow's refusal of an image too large to decode safely. Anything else is a bug and surfaces.
IMAGE_ERRORS: tuple[type[Exception], ...] = (OSError, ValueError, SyntaxError) + (
    (Image.DecompressionBombError,) if Image is not None else ()
)

log = logging.getLogger(__name__)

# Jobs with an image waiting for processing; a full queue answers 429 (Flamenco's size). Per job only
# the latest image waits: a newer upload for the same job replaces the queued one.
QUEUE_SIZE = 3
# Largest accepted upload (Flamenco's limit): a 4K 16-bit PNG fits comfortably.
MAX_UPLOAD_BYTES = 25 * 1024 * 1024
JPEG_QUALITY = 85
# (file name, maximum width, maximum height), as Flamenco writes them.
THUMBNAILS = (
    ("last-rendered.jpg", 1920, 1080),
    ("last-rendered-small.jpg", 600, 338),
    ("last-rendered-tiny.jpg", 200, 112),
)
ACCEPTED_TYPES = ("image/jpeg", "image/png")


@dataclass(slots=True)
class Upload:
    job: Job
    data: bytes


class QueueFull(Exception):
    pass


def thumbnail_info(storage: pathlib.Path, job_uuid: str) -> dict | None:
    directory = job_dir(storage, job_uuid)
    suffixes = [name for name, _, _ in THUMBNAILS]
    if not all((directory / name).exists() for name in suffixes):
        return None
    return {"base": "/job-files/" + directory.relative_to(storage).as_posix(), "suffixes": suffixes}


def _write_thumbnails(directory: pathlib.Path, data: bytes) -> None:
    assert Image is not None
    directory.mkdir(parents=True, exist_ok=True)
    with Image.open(io.BytesIO(data)) as opened:
        image = opened.convert("RGB")
    written: list[tuple[pathlib.Path, pathlib.Path]] = []
    # Temporary names of this writer's own: another replica may be writing this job's images right now.
    unique = f"{os.getpid()}-{secrets.token_hex(4)}"
    try:
        for name, width, height in THUMBNAILS:
            thumb = image.copy()
            thumb.thumbnail((width, height), Image.LANCZOS)
            tmp = directory / f".{name}.{unique}.tmp"
            written.append((tmp, directory / name))
            thumb.save(tmp, "JPEG", quality=JPEG_QUALITY)
    except BaseException:
        for tmp, _ in written:
            tmp.unlink(missing_ok=True)
        raise
    # Renamed together at the end, so readers see the previous set or the new one (of this Manager), not
    # a half-written file.
    for tmp, final in written:
        os.replace(tmp, final)


class Thumbnails:
    def __init__(self, store: Store, hub: Hub, storage: pathlib.Path) -> None:
        self.store = store
        self.hub = hub
        self.storage = storage
        self._pending: collections.OrderedDict[int, Upload] = collections.OrderedDict()
        self._wakeup = asyncio.Event()
        if Image is None:
            log.warning("Pillow is not installed: last-rendered thumbnails are disabled")

    def full(self, job: Job) -> bool:
        return job.id not in self._pending and len(self._pending) >= QUEUE_SIZE

    def submit(self, job: Job, data: bytes) -> None:
        if self.full(job):
            raise QueueFull("too many images waiting to be processed")
        self._pending[job.id] = Upload(job, data)
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            _, upload = self._pending.popitem(last=False)
            if Image is None:
                continue
            directory = job_dir(self.storage, upload.job.uuid)
            try:
                await asyncio.to_thread(_write_thumbnails, directory, upload.data)
            except IMAGE_ERRORS as exc:
                log.warning(
                    "could not make thumbnails job=%s dir=%s bytes=%d error=%s: %s",
                    upload.job.uuid,
                    directory,
                    len(upload.data),
                    type(exc).__name__,
                    exc,
                    extra=journal_fields.about(job=upload.job.uuid),
                )
                continue
            try:
                with self.store.transaction():
                    if self.store.get_job_by_id(upload.job.id) is None:
                        continue  # the job was deleted meanwhile
                    self.store.set_last_rendered(upload.job.id)
            except StoreError as exc:
                log.error(
                    "could not record the last-rendered image job=%s error=%s",
                    upload.job.uuid,
                    exc,
                    extra=journal_fields.about(job=upload.job.uuid),
                )
                continue
            info = thumbnail_info(self.storage, upload.job.uuid)
            self.hub.publish(
                "/last-rendered", {"job_id": upload.job.uuid, "thumbnail": info}, job_id=upload.job.uuid
            )
