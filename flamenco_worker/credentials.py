"""The worker's identity at the Manager: `flamenco-worker-credentials.yaml` in FLAMENCO_HOME (mode 0600)."""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from flamenco_worker.config import ConfigError, parse_yaml

FILENAME = "flamenco-worker-credentials.yaml"
SECRET_BYTES = 32  # 64 hex characters, as Flamenco workers use


@dataclass(frozen=True, slots=True)
class Credentials:
    worker_id: str
    worker_secret: str

    def __repr__(self) -> str:  # never let the secret reach a log line
        return f"Credentials(worker_id={self.worker_id!r}, worker_secret=<hidden>)"


def new_secret() -> str:
    return secrets.token_hex(SECRET_BYTES)


def credentials_path(home: Path) -> Path:
    return home / FILENAME


def load_credentials(home: Path) -> Credentials | None:
    """None when there is no file yet; ConfigError (naming the file) when it is unreadable or malformed."""
    path = credentials_path(home)
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None  # never registered (or FLAMENCO_HOME cannot exist; saving will say so loudly)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read credentials: {exc}") from None
    try:
        _, data = parse_yaml(path, text)
    except ConfigError as exc:
        raise ConfigError(f"{exc}; delete the file to register as a new worker") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected worker_id and worker_secret; delete the file to register anew")
    return Credentials(_text(data, "worker_id", path), _text(data, "worker_secret", path))


def _text(data: dict[object, object], key: str, path: Path) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{path}: {key}: missing or not a string; delete the file to register anew")
    return value


def save_credentials(home: Path, creds: Credentials) -> Path:
    """Write atomically: a 0600 temporary file beside the target, fsync, rename over it."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = credentials_path(home)
    tmp = path.with_name(path.name + "~")
    text = (
        "# NOTE: this file is written by the Flamenco worker; deleting it makes the worker register anew.\n"
        f"# Written {time.strftime('%Y-%m-%d %H:%M:%S %z')}\n"
        + yaml.safe_dump({"worker_id": creds.worker_id, "worker_secret": creds.worker_secret}, sort_keys=True)
    )
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path
