"""SQLite's exceptions turned into the store's own (`StoreBusy`, `StoreConflict`, `StoreError`)."""

from __future__ import annotations

import functools
import inspect
import sqlite3
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from flamenco_manager.store.interface import StoreBusy, StoreConflict, StoreError

P = ParamSpec("P")
R = TypeVar("R")
C = TypeVar("C", bound=type)


def translate(exc: sqlite3.Error) -> StoreError:
    """The store error that says what `exc` means for the caller."""
    if isinstance(exc, sqlite3.IntegrityError):
        return StoreConflict(str(exc))
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return StoreBusy(text)
    return StoreError(text)


def translated(fn: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    return wrapper


def translating(cls: C) -> C:
    """Wrap every public query method of a class so that it raises store errors only."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and inspect.isfunction(member):
            setattr(cls, name, translated(member))
    return cls
