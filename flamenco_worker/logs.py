"""Logging setup: plain timestamps on a terminal; under journald, native entries with fields (`journal`),
or priority-prefixed lines without timestamps when python3-systemd is missing."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import TextIO

from flamenco_worker.journal import NativeJournalHandler, Sender, load_sender, syslog_priority

log = logging.getLogger(__name__)

#: What a record's text is under journald (which adds time, host and unit itself).
JOURNAL_FORMAT = "%(name)s: %(message)s"
#: Where journald takes native entries (sd_journal_sendv writes there and nowhere else).
JOURNAL_SOCKET = "/run/systemd/journal/socket"
#: What a record's line is anywhere else.
PLAIN_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class JournalFormatter(logging.Formatter):
    """`<6>flamenco_worker.worker: status=awake …` — journald adds time, host and unit itself."""

    def format(self, record: logging.LogRecord) -> str:
        priority = syslog_priority(record.levelno)
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


def make_handler(
    env: Mapping[str, str] = os.environ,
    stream: TextIO | None = None,
    load: Callable[[], Sender | str] = load_sender,
    journal_socket: str = JOURNAL_SOCKET,
) -> tuple[logging.Handler, str]:
    """The root handler, and a note for the debug log when the native protocol is unavailable.

    Native journal entries when stderr is the journal and python3-systemd is there; priority-prefixed
    lines when stderr is the journal without it; timestamped lines otherwise."""
    plain = logging.StreamHandler(stream or sys.stderr)
    if not under_journald(env, stream):
        plain.setFormatter(logging.Formatter(PLAIN_FORMAT))
        return plain, ""
    plain.setFormatter(JournalFormatter(JOURNAL_FORMAT))
    if not os.path.exists(journal_socket):
        # libsystemd drops entries silently when the socket is missing; the stream still reaches journald
        return (
            plain,
            f"no journal socket at {journal_socket}: journal entries are plain lines, without fields",
        )
    send = load()
    if isinstance(send, str):
        return plain, send
    native = NativeJournalHandler(send, fallback=plain)
    native.setFormatter(logging.Formatter(JOURNAL_FORMAT))
    return native, ""


def setup_logging(level: str) -> None:
    handler, note = make_handler()
    logging.getLogger().handlers[:] = [handler]
    set_level(level)
    if note:
        log.debug("%s", note)


def set_level(level: str) -> None:
    logging.getLogger().setLevel(level.upper())
    # The D-Bus library logs every message at debug level; keep it at info unless asked.
    logging.getLogger("dbus_next").setLevel(logging.INFO if level != "debug" else logging.DEBUG)
