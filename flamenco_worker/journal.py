"""Structured journal fields on the worker's log records, and the journal's native protocol.

Every record carries what is known of this worker: `FLAMENCO_WORKER` (the id the Manager gave it at
registration — stable across renames, and the same value the Manager's own records carry, so one
query matches both units), `FLAMENCO_WORKER_NAME` and, for a template instance, `FLAMENCO_INSTANCE`.
Records logged while a task is handled also carry `FLAMENCO_TASK` and `FLAMENCO_JOB`: `task_scope()`
sets them once for everything that runs inside it (asyncio tasks started inside copy the scope), and
`about_task()` names a task on a single record logged outside any scope.

Under systemd with stderr connected to the journal, `NativeJournalHandler` sends each record as one
journal entry with these fields (python3-systemd); without that library the plain lines of `logs`
are written instead.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import logging
import sys
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the core imports this module: at run time the import would be circular
    from flamenco_worker.worker import Worker

#: The program name journald files the stream lines under today (ExecStart's basename).
SYSLOG_IDENTIFIER = "flamenco-worker"
#: Record attribute holding the journal fields (set by `FieldsFilter`, or given with `extra=`).
RECORD_ATTR = "flamenco_fields"

#: Python level → syslog priority, as journald reads it.
_SYSLOG_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}

_EMPTY: Mapping[str, str] = MappingProxyType({})
_process_fields: dict[str, str] = {}
_scope: ContextVar[Mapping[str, str]] = ContextVar("flamenco_worker_journal_scope", default=_EMPTY)

#: journal.send's signature, as far as the handler uses it.
Sender = Callable[..., Any]


def syslog_priority(levelno: int) -> int:
    """The syslog priority of a Python level; levels between the named ones round down."""
    level = max((known for known in _SYSLOG_PRIORITY if known <= levelno), default=logging.DEBUG)
    return _SYSLOG_PRIORITY[level]


def _set(name: str, value: str | None) -> None:
    if value:
        _process_fields[name] = value
    else:
        _process_fields.pop(name, None)


def set_instance(name: str | None) -> None:
    """The template instance this process runs as (`flamenco-worker@NAME`); None or "" clears it."""
    _set("FLAMENCO_INSTANCE", name)


def set_worker(*, worker_id: str | None = None, name: str | None = None) -> None:
    """What identifies this worker on every record from now on; a None argument leaves that field."""
    if worker_id is not None:
        _set("FLAMENCO_WORKER", worker_id)
    if name is not None:
        _set("FLAMENCO_WORKER_NAME", name)


def follow_worker(worker: Worker) -> None:
    """Keep `FLAMENCO_WORKER` and `FLAMENCO_WORKER_NAME` current: the id once the worker is registered,
    the name after a reload renames it."""

    def refresh() -> None:
        snapshot = worker.snapshot()
        set_worker(worker_id=snapshot.worker_id, name=snapshot.name)

    worker.subscribe(refresh)
    refresh()


def _task_fields(task_id: str, job_id: str = "") -> dict[str, str]:
    fields = {"FLAMENCO_TASK": task_id}
    if job_id:
        fields["FLAMENCO_JOB"] = job_id
    return fields


@contextlib.contextmanager
def fields_scope(fields: Mapping[str, str]) -> Iterator[None]:
    """Records logged inside (and in asyncio tasks created inside) carry these fields too."""
    token = _scope.set(MappingProxyType({**_scope.get(), **fields}))
    try:
        yield
    finally:
        _scope.reset(token)


def task_scope(task_id: str, job_id: str = "") -> contextlib.AbstractContextManager[None]:
    """Records logged inside (and in asyncio tasks created inside) are about this task."""
    return fields_scope(_task_fields(task_id, job_id))


def scope_fields() -> Mapping[str, str]:
    """The current scope's fields, to carry work over to a later, unscoped place (a queue)."""
    return _scope.get()


def outside_tasks() -> contextvars.Context:
    """A context for a long-lived asyncio task that may be started inside a task's scope but outlives
    it (a retry loop, a sender): its records are about no task unless it says so."""
    context = contextvars.copy_context()
    context.run(_scope.set, _EMPTY)
    return context


def about_task(task_id: str, job_id: str = "") -> dict[str, object]:
    """`extra=` for one record about a task, logged outside its scope."""
    return {RECORD_ATTR: _task_fields(task_id, job_id)}


def current_fields() -> dict[str, str]:
    """The fields a record logged here and now gets (process-wide ones, then the task scope's)."""
    return {**_process_fields, **_scope.get()}


class FieldsFilter(logging.Filter):
    """Puts the journal fields on each record (`record.flamenco_fields`); `extra=` fields win."""

    def filter(self, record: logging.LogRecord) -> bool:
        given = getattr(record, RECORD_ATTR, None)
        fields = current_fields()
        if isinstance(given, Mapping):
            fields.update(given)
        setattr(record, RECORD_ATTR, fields)
        return True


def fields_of(record: logging.LogRecord) -> dict[str, str]:
    fields = getattr(record, RECORD_ATTR, None)
    return dict(fields) if isinstance(fields, Mapping) else {}


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
    """One journal entry per record: MESSAGE is the formatted text, plus PRIORITY and the fields.

    If the journal cannot be reached (its socket gone), the record goes to `fallback` as a plain line.
    """

    def __init__(self, send: Sender, fallback: logging.Handler) -> None:
        super().__init__()
        self._send = send
        self._fallback = fallback
        self.addFilter(FieldsFilter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            fields = {
                "PRIORITY": str(syslog_priority(record.levelno)),
                "SYSLOG_IDENTIFIER": SYSLOG_IDENTIFIER,
                "LOGGER": record.name,
                **fields_of(record),
            }
            self._send(
                message,
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


def stderr_fallback(formatter: logging.Formatter) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    return handler
