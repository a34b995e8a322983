"""Structured journal fields on the Manager's log records: which job, task and worker a record is about.

`FLAMENCO_JOB`, `FLAMENCO_TASK` and `FLAMENCO_WORKER` hold the ids (UUIDs) the API uses, so
`journalctl -u flamenco-manager FLAMENCO_JOB=<id>` finds a job's story, and the worker's id is the
same value the worker's own records carry. `FLAMENCO_INSTANCE` names a template instance.

Two ways to attach them:

* a scope: `scope()` around a request (the HTTP edge opens one per request) and `add()` inside it once
  the handler knows whom it serves — every record logged further down, in services too, carries them;
* one record: `extra=about(job=…, task=…, worker=…)` where a service logs about a job, task or worker
  outside any request (timeouts, background work) or about another one than the scope's.

`logsetup` sends the fields to the journal; plain lines keep their key=value text.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from types import MappingProxyType

#: Record attribute holding the fields (set by `FieldsFilter`, or given with `extra=about(…)`).
RECORD_ATTR = "flamenco_fields"

_EMPTY: Mapping[str, str] = MappingProxyType({})
_process_fields: dict[str, str] = {}
_scope: ContextVar[Mapping[str, str]] = ContextVar("flamenco_manager_journal_scope", default=_EMPTY)


def set_instance(name: str | None) -> None:
    """The template instance this process runs as; None or "" clears it."""
    if name:
        _process_fields["FLAMENCO_INSTANCE"] = name
    else:
        _process_fields.pop("FLAMENCO_INSTANCE", None)


def _fields(job: str | None, task: str | None, worker: str | None) -> dict[str, str]:
    named = {"FLAMENCO_JOB": job, "FLAMENCO_TASK": task, "FLAMENCO_WORKER": worker}
    return {key: value for key, value in named.items() if value}


def about(*, job: str | None = None, task: str | None = None, worker: str | None = None) -> dict[str, object]:
    """`extra=` for one record about this job, task and/or worker (ids; None or "" leaves a field out)."""
    return {RECORD_ATTR: _fields(job, task, worker)}


@contextlib.contextmanager
def scope(*, job: str | None = None, task: str | None = None, worker: str | None = None) -> Iterator[None]:
    """Records logged inside (and in asyncio tasks created inside) carry these fields; `add()` inside
    extends them until the scope ends."""
    token = _scope.set(MappingProxyType({**_scope.get(), **_fields(job, task, worker)}))
    try:
        yield
    finally:
        _scope.reset(token)


def add(*, job: str | None = None, task: str | None = None, worker: str | None = None) -> None:
    """Extend the current scope (a request's, opened by the HTTP edge) for the rest of it."""
    _scope.set(MappingProxyType({**_scope.get(), **_fields(job, task, worker)}))


def current_fields() -> dict[str, str]:
    """The fields a record logged here and now gets."""
    return {**_process_fields, **_scope.get()}


class FieldsFilter(logging.Filter):
    """Puts the fields on each record (`record.flamenco_fields`); those given with `extra=` win."""

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
