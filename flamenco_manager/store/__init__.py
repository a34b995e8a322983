"""Persistence. Only this package speaks SQL; services see the `Store` interface and model records."""

from __future__ import annotations

import pathlib

from flamenco_manager.store.interface import Store, StoreBusy, StoreConflict, StoreError, StoreReads
from flamenco_manager.store.sqlite import SQLiteStore


def open_store(database: str | pathlib.Path) -> Store:
    """Open (creating and migrating as needed) the database named in the configuration.

    The return type is what makes the type checker hold `SQLiteStore` to the `Store` protocol: a method
    missing or with another signature is an error here, not a surprise at run time.
    """
    return SQLiteStore.open(pathlib.Path(database))


__all__ = ["SQLiteStore", "Store", "StoreBusy", "StoreConflict", "StoreError", "StoreReads", "open_store"]
