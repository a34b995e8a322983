"""A database locked by another process: 503 with Retry-After, not a stalled Manager."""

from __future__ import annotations

import sqlite3

import pytest

from tests.manager.conftest import API, Farm


@pytest.mark.sqlite_only("another process holds the SQLite file's write lock")
async def test_locked_database_answers_503(farm: Farm) -> None:
    other = sqlite3.connect(farm.manager.config.database, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        reply = await farm.client.post(f"{API}/worker-mgt/tags", {"name": "blocked"}, validate=False)
        assert reply.status == 503
        assert reply.headers["Retry-After"] == "1"
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert (await farm.client.post(f"{API}/worker-mgt/tags", {"name": "free"})).status == 200
