"""Persistence. Only this package speaks SQL; services see the `Store` interface and model records."""

from __future__ import annotations

import pathlib

from flamenco_manager.store.interface import (
    Store,
    StoreBusy,
    StoreConflict,
    StoreError,
    StoreReads,
    StoreUnavailable,
)
from flamenco_manager.store.sqlite import SQLiteStore

# What `database:` starts with when it names a PostgreSQL database rather than a SQLite file.
POSTGRESQL_SCHEMES = ("postgresql://", "postgres://")


def is_postgresql(database: str | pathlib.Path) -> bool:
    """Whether the configured `database` is a PostgreSQL URL (anything else is a SQLite file)."""
    return isinstance(database, str) and database.startswith(POSTGRESQL_SCHEMES)


def open_store(database: str | pathlib.Path) -> Store:
    """Open (creating and migrating as needed) the database named in the configuration.

    The return type is what makes the type checker hold each backend to the `Store` protocol: a method
    missing or with another signature is an error here, not a surprise at run time. The PostgreSQL
    backend (and its driver) is imported only when configured: SQLite farms do not need psycopg.
    """
    if is_postgresql(database):
        from flamenco_manager.store.postgresql import PostgreSQLStore

        return PostgreSQLStore.open(str(database))
    return SQLiteStore.open(pathlib.Path(database))


__all__ = [
    "SQLiteStore",
    "Store",
    "StoreBusy",
    "StoreConflict",
    "StoreError",
    "StoreReads",
    "StoreUnavailable",
    "is_postgresql",
    "open_store",
]
