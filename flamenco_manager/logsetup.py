"""Logging: key=value lines; journald-friendly (priority prefix, no timestamp) under systemd."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TextIO

# syslog priorities journald reads from a `<N>` line prefix.
_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = max((lvl for lvl in _PRIORITY if lvl <= record.levelno), default=logging.DEBUG)
        # every line of a multi-line record (a traceback) carries the priority, or journald files the
        # continuation lines at the default level
        return "\n".join(f"<{_PRIORITY[level]}>{line}" for line in super().format(record).splitlines())


class MalformedRequestFilter(logging.Filter):
    """aiohttp logs a client's malformed HTTP (it already answered 400) as an error with a traceback;
    that is the client's problem, so it becomes one warning line naming the peer's mistake."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and type(exc).__module__ == "aiohttp.http_exceptions":
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args, record.exc_info, record.exc_text = (
                "malformed HTTP request refused (400): %s",
                (getattr(exc, "message", exc),),
                None,
                None,
            )
        return True


def stderr_is_journal(env: Mapping[str, str] = os.environ, stream: TextIO | None = None) -> bool:
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


def setup(*, quiet: bool, debug: bool) -> None:
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    if stderr_is_journal():
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access log is one line per request: useful when debugging, noise otherwise.
    logging.getLogger("aiohttp.access").setLevel(logging.DEBUG if debug else logging.WARNING)
    logging.getLogger("aiohttp.server").addFilter(MalformedRequestFilter())
