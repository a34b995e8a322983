"""psycopg's exceptions turned into the store's own (`StoreBusy`, `StoreConflict`, `StoreError`,
`StoreUnavailable`)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ParamSpec, Protocol, TypeVar, runtime_checkable

import psycopg
import psycopg.errors

from flamenco_manager.store.interface import StoreBusy, StoreConflict, StoreError, StoreUnavailable

P = ParamSpec("P")
R = TypeVar("R")
C = TypeVar("C", bound=type)

# Waiting for another session's lock, losing a serialization race or a deadlock: nothing of the unit
# was written and trying again shortly may well succeed.
_BUSY = (
    psycopg.errors.LockNotAvailable,
    psycopg.errors.SerializationFailure,
    psycopg.errors.DeadlockDetected,
    psycopg.errors.QueryCanceled,
)


# SQLSTATE classes and codes that end the session: a connection exception (08), the server shutting down,
# crashing or still starting (57P01-57P03). libpq's own failures on a dead socket carry no SQLSTATE.
_LOST_CLASSES = ("08",)
_LOST_CODES = frozenset({"57P01", "57P02", "57P03"})


def connection_lost(exc: psycopg.Error, conn: psycopg.BaseConnection[Any] | None = None) -> bool:
    """Whether `exc` means the session is gone (a server restart, a cut connection), not a bad statement."""
    if conn is not None and conn.closed:
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    return state is None or state.startswith(_LOST_CLASSES) or state in _LOST_CODES


def first_line(exc: BaseException) -> str:
    """An error's first line, for one-line log records (libpq's messages run over several)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def translate(exc: psycopg.Error) -> StoreError:
    """The store error that says what `exc` means for the caller."""
    text = str(exc).strip() or type(exc).__name__
    if connection_lost(exc):
        return StoreUnavailable(f"database connection lost: {first_line(exc)}")
    if isinstance(exc, psycopg.IntegrityError):
        return StoreConflict(text)
    if isinstance(exc, _BUSY):
        return StoreBusy(text)
    return StoreError(text)


@runtime_checkable
class WatchesConnection(Protocol):
    """A store that wants to hear of errors that may mean its session is gone (to reconnect)."""

    def connection_failed(self, exc: psycopg.Error) -> None: ...


def translated(fn: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except psycopg.Error as exc:
            error = translate(exc)
            if isinstance(error, StoreUnavailable) and args and isinstance(args[0], WatchesConnection):
                args[0].connection_failed(exc)
            raise error from exc

    return wrapper


def translating(cls: C) -> C:
    """Wrap every public query method of a class so that it raises store errors only."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and inspect.isfunction(member):
            setattr(cls, name, translated(member))
    return cls
