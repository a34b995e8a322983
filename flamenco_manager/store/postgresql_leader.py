"""Which Manager replica on a PostgreSQL database runs the farm-wide background loops: the one holding a
session-level advisory lock on its own connection.

The lock belongs to the connection's session: when the replica stops or dies, its session ends and the
lock goes, and another replica's next try takes it. A holder that loses its connection (the server
restarted, or the session was ended) learns it at its next `still_held` and must stop its loops; the
next `try_acquire` connects afresh, so that once the server is back one replica takes the lock again.
While the server is away each replica logs that once, not at every try.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import psycopg

from flamenco_manager.store.postgresql import CONNECT_TIMEOUT_S, PostgreSQLStore
from flamenco_manager.store.postgresql_errors import connection_lost, first_line

log = logging.getLogger(__name__)

# The advisory lock's key ("flbg": farm loops, background); distinct from the migration lock's.
LEADER_LOCK_KEY = 0x666C6267


class LeaderLock:
    """The advisory lock that elects one replica, on a connection of its own."""

    def __init__(self, store: PostgreSQLStore) -> None:
        self.store = store
        self.url = store.url
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self.held = False
        # Tries have been failing since the last success (logged once).
        self._failing = False

    async def try_acquire(self) -> bool:
        """Take the lock if no other session holds it; whether this replica holds it now."""
        kept = self._conn is not None and not self._conn.closed
        try:
            row = await self._try()
        except psycopg.Error as exc:
            stale = kept and connection_lost(exc)
            await self._drop()
            if not stale:
                return self._failed(exc)
            # The connection kept from an earlier try died meanwhile (a server restart): a new one may
            # well take the lock now, rather than one ELECTION_RETRY later.
            try:
                row = await self._try()
            except psycopg.Error as again:
                await self._drop()
                return self._failed(again)
        self._failing = False
        self.held = bool(row and row[0])
        if self.held:
            await self._store_ready()
        return self.held

    async def _store_ready(self) -> None:
        """After a restart the lock may come back before the store's own connection: the loops about to
        start would fail their first round. Wait (bounded) until the store works too."""
        waiting = asyncio.ensure_future(self.store.wait_connected())
        done, _ = await asyncio.wait({waiting}, timeout=CONNECT_TIMEOUT_S)
        if not done:
            waiting.cancel()
        elif not waiting.cancelled() and waiting.exception() is not None:
            log.warning("checking the store failed error=%s", waiting.exception())

    async def _try(self) -> tuple[object, ...] | None:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
            )
        cur = await self._conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK_KEY,))
        return await cur.fetchone()

    def _failed(self, exc: psycopg.Error) -> bool:
        if self._failing:
            log.debug("could not try the background-loops lock error=%s", first_line(exc))
        else:
            log.warning("could not try the background-loops lock, trying on error=%s", first_line(exc))
            self._failing = True
        return False

    async def still_held(self) -> bool:
        """Whether the session that took the lock is still alive (and so still holds it)."""
        if self._conn is None or not self.held:
            return False
        try:
            await self._conn.execute("SELECT 1")
        except psycopg.Error as exc:
            log.warning("lost the connection holding the background-loops lock error=%s", first_line(exc))
            await self._drop()
            return False
        return True

    async def _drop(self) -> None:
        self.held = False
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                await self._conn.close()
            self._conn = None

    async def close(self) -> None:
        """Close the connection: the lock goes with its session."""
        await self._drop()
