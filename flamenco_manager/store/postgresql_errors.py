"""psycopg's exceptions turned into the store's own (`StoreBusy`, `StoreConflict`, `StoreError`)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import psycopg
import psycopg.errors

from flamenco_manager.store.interface import StoreBusy, StoreConflict, StoreError

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


def translate(exc: psycopg.Error) -> StoreError:
    """The store error that says what `exc` means for the caller."""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, psycopg.IntegrityError):
        return StoreConflict(text)
    if isinstance(exc, _BUSY):
        return StoreBusy(text)
    return StoreError(text)


def translated(fn: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except psycopg.Error as exc:
            raise translate(exc) from exc

    return wrapper


def translating(cls: C) -> C:
    """Wrap every public query method of a class so that it raises store errors only."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and inspect.isfunction(member):
            setattr(cls, name, translated(member))
    return cls
