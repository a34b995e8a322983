"""Logging: key=value lines; under systemd, native journal entries carrying `journal_fields`
(python3-systemd), or priority-prefixed lines without timestamps when that library is missing."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from flamenco_manager.journal_fields import FieldsFilter, fields_of

log = logging.getLogger(__name__)

#: The program name journald files the stream lines under today (ExecStart's basename).
SYSLOG_IDENTIFIER = "flamenco-manager"
#: What a record's text is under journald (which adds time, host and unit itself).
JOURNAL_FORMAT = "%(name)s: %(message)s"
#: Where journald takes native entries (sd_journal_sendv writes there and nowhere else).
JOURNAL_SOCKET = "/run/systemd/journal/socket"
#: What a record's line is anywhere else.
PLAIN_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

#: journal.send's signature, as far as the handler uses it.
Sender = Callable[..., Any]

# syslog priorities journald reads from a `<N>` line prefix.
_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


def syslog_priority(levelno: int) -> int:
    """The syslog priority of a Python level; levels between the named ones round down."""
    return _PRIORITY[max((lvl for lvl in _PRIORITY if lvl <= levelno), default=logging.DEBUG)]


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        priority = syslog_priority(record.levelno)
        # every line of a multi-line record (a traceback) carries the priority, or journald files the
        # continuation lines at the default level
        return "\n".join(f"<{priority}>{line}" for line in super().format(record).splitlines())


def load_sender() -> Sender | str:
    """python3-systemd's `journal.send`, or why it cannot be had (for one debug line)."""
    try:
        # By name: the library ships no type information, and only `send` is used.
        journal = importlib.import_module("systemd.journal")
    except ImportError as exc:  # e.g. a PyPI virtualenv: building systemd-python needs libsystemd-dev
        return f"python3-systemd is not installed ({exc}): journal entries are plain lines, without fields"
    send: Sender = journal.send
    return send


class NativeJournalHandler(logging.Handler):
    """One journal entry per record: MESSAGE is the formatted text (a traceback stays in the same
    entry), plus PRIORITY and the record's fields. If the journal cannot be reached (its socket
    gone), the record goes to `fallback` as a plain line."""

    def __init__(self, send: Sender, fallback: logging.Handler) -> None:
        super().__init__()
        self._send = send
        self._fallback = fallback
        self.addFilter(FieldsFilter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = {
                "PRIORITY": str(syslog_priority(record.levelno)),
                "SYSLOG_IDENTIFIER": SYSLOG_IDENTIFIER,
                "LOGGER": record.name,
                **fields_of(record),
            }
            self._send(
                self.format(record),
                CODE_FILE=record.pathname,
                CODE_LINE=record.lineno,
                CODE_FUNC=record.funcName,
                **fields,
            )
        except OSError:
            self._fallback.handle(record)
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self._fallback.close()
        super().close()


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
    if not stderr_is_journal(env, stream):
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


def setup(*, quiet: bool, debug: bool) -> None:
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    handler, note = make_handler()
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if note:
        log.debug("%s", note)
    # aiohttp's access log is one line per request: useful when debugging, noise otherwise.
    logging.getLogger("aiohttp.access").setLevel(logging.DEBUG if debug else logging.WARNING)
    logging.getLogger("aiohttp.server").addFilter(MalformedRequestFilter())
