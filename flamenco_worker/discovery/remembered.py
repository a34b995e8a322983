"""The Manager this worker last signed on at through discovery, kept in FLAMENCO_HOME for the next start.

`FLAMENCO_HOME/discovered-manager.json`: `{"url": …, "worker_id": …, "source": …}`, written atomically
(temporary file, fsync, rename). A missing or unreadable file just means nothing is remembered: the
worker searches, so a damaged file never stops it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

FILE_NAME = "discovered-manager.json"


@dataclass(frozen=True, slots=True)
class Remembered:
    url: str
    worker_id: str
    source: str


def remembered_path(home: Path) -> Path:
    return home / FILE_NAME


def load_remembered(home: Path) -> Remembered | None:
    path = remembered_path(home)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("file=%s unreadable (%s); searching for a Manager instead", path, exc)
        return None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("url", "worker_id")):
        log.warning("file=%s is not a remembered Manager; searching for one instead", path)
        return None
    return Remembered(data["url"], data["worker_id"], str(data.get("source", "")))


def save_remembered(home: Path, remembered: Remembered) -> Path | None:
    """Write atomically; None (after a warning) when FLAMENCO_HOME cannot be written."""
    path = remembered_path(home)
    tmp = path.with_name(path.name + "~")
    text = json.dumps(
        {"url": remembered.url, "worker_id": remembered.worker_id, "source": remembered.source}, indent=1
    )
    try:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, text.encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("file=%s cannot be written (%s); the next start searches anew", path, exc)
        return None
    return path
