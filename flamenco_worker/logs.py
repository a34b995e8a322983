"""Logging setup: plain timestamps on a terminal, syslog priorities and no timestamps under journald."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TextIO

#: Python level → syslog priority, as journald reads a `<N>` line prefix.
_SYSLOG_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class JournalFormatter(logging.Formatter):
    """`<6>flamenco_worker.worker: status=awake …` — journald adds time, host and unit itself."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _SYSLOG_PRIORITY.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
        text = super().format(record)
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines())


def under_journald(env: Mapping[str, str] = os.environ, stream: TextIO | None = None) -> bool:
    """True when stderr is the journal stream systemd connected, not merely inherited JOURNAL_STREAM.

    systemd.exec(5): JOURNAL_STREAM is `DEVICE:INODE` of that stream; a process whose stderr was
    redirected elsewhere (a pipe, a file, a terminal) still inherits the variable.
    """
    device, _, inode = env.get("JOURNAL_STREAM", "").partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        info = os.fstat((stream or sys.stderr).fileno())
    except (OSError, ValueError):  # closed, or no file descriptor behind the stream
        return False
    return info.st_dev == int(device) and info.st_ino == int(inode)


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if under_journald():
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    set_level(level)


def set_level(level: str) -> None:
    logging.getLogger().setLevel(level.upper())
    # The D-Bus library logs every message at debug level; keep it at info unless asked.
    logging.getLogger("dbus_next").setLevel(logging.INFO if level != "debug" else logging.DEBUG)
