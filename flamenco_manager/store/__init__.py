"""Persistence. Only this package speaks SQL; services see the `Store` interface and model records."""

from __future__ import annotations

import pathlib

from flamenco_manager.store.interface import Store, StoreError, wrote
from flamenco_manager.store.sqlite import SQLiteStore


def open_store(database: str | pathlib.Path) -> Store:
    """Open (creating and migrating as needed) the database named in the configuration."""
    return SQLiteStore.open(pathlib.Path(database))


__all__ = ["SQLiteStore", "Store", "StoreError", "open_store", "wrote"]
