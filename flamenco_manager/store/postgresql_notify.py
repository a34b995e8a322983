"""Carrying the events hub's news between Manager replicas on one PostgreSQL database (LISTEN/NOTIFY).

Each replica has a replica id and one extra autocommit connection, driven by psycopg's asyncio API on the
event loop, that `LISTEN`s on `CHANNEL`. What the hub sends (a message: a JSON-able list) is queued and
sent with `pg_notify` on the store's own connection just before the batch's `COMMIT`, so PostgreSQL
delivers it only once the writes it announces are committed (and not at all if they roll back). News
queued while no batch is open (its writes are already committed) goes out on the next loop turn.

Wire format of one notification: `<replica>|<seq>|<part>/<parts>|<json chunk>`. The queued messages of a
turn are packed into JSON lists of at most `PAYLOAD_LIMIT` bytes (ASCII-escaped, so characters are
bytes); one message bigger than that alone is split into numbered parts that the receiver joins again
(PostgreSQL delivers one transaction's notifications together and in order). The sequence number also
keeps PostgreSQL from folding two identical notifications of one transaction into one.

News is not kept anywhere: what was sent while a replica's listening connection was down (the server
restarted, the session was cut) is lost to it, and news of a batch that a lost store connection took down
was about writes that never happened. So each replica is conservative after a reconnect: once its
listener is back (and its store with it) it calls `missed` (the hub wakes every held worker request to
re-read its state and ends the browsers' event streams, which then fetch afresh); once its store's own
connection is back it drops what it had queued, calls `missed`, and tells the other replicas to do the
same (a `MISSED` message), since news it sent outside a batch may not have gone out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from flamenco_manager.store.interface import StoreError, StoreUnavailable
from flamenco_manager.store.postgresql import CONNECT_TIMEOUT_S, PostgreSQLStore
from flamenco_manager.store.postgresql_errors import first_line

log = logging.getLogger(__name__)

CHANNEL = "flamenco_events"
# PostgreSQL refuses payloads of 8000 bytes or more; this leaves room for the header.
PAYLOAD_LIMIT = 7900
# After losing the listening connection, wait this long before reconnecting: a restarting server is back
# within a second or two, and news is missed for as long as the listener is away.
RECONNECT_DELAY = 0.25
# Each failed try doubles the wait up to this: a server that stays away is not hammered.
RECONNECT_MAX_DELAY = 2.0
# A server restart takes the listener and the store's connection together: catch up once for both.
CATCH_UP_DELAY = 0.2
# The relay's own message kind: "news may have been lost here, re-read everything".
MISSED = "missed"
# Partly received split messages are forgotten beyond this many (a sender died between parts).
MAX_PARTIAL = 64

Message = list[Any]


def _batches(messages: list[Message]) -> list[list[str]]:
    """Each batch a list of parts (one part unless one big message had to be split)."""
    out: list[list[str]] = []
    current: list[str] = []
    size = 2
    for message in messages:
        text = json.dumps(message, separators=(",", ":"), ensure_ascii=True, default=str)
        if len(text) + 2 > PAYLOAD_LIMIT:
            whole = "[" + text + "]"
            out.append([whole[i : i + PAYLOAD_LIMIT] for i in range(0, len(whole), PAYLOAD_LIMIT)])
            continue
        if current and size + len(text) + 1 > PAYLOAD_LIMIT:
            out.append(["[" + ",".join(current) + "]"])
            current, size = [], 2
        current.append(text)
        size += len(text) + 1
    if current:
        out.append(["[" + ",".join(current) + "]"])
    return out


class NotifyRelay:
    """Sends the hub's messages to the other replicas and hands theirs to `deliver`."""

    def __init__(
        self,
        store: PostgreSQLStore,
        deliver: Callable[[Message], None],
        missed: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.deliver = deliver
        self.missed = missed
        self.replica = uuid.uuid4().hex[:12]
        self._seq = 0
        self._pending: list[Message] = []
        self._flush_scheduled = False
        self._partial: dict[tuple[str, str], list[str]] = {}
        self._task: asyncio.Task[None] | None = None
        # The listening connection while LISTEN is in place on it.
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._listening = asyncio.Event()
        # Set by close(): the listener stops even if a cancellation was lost on the way (Python 3.11's
        # asyncio.wait_for, which psycopg's connect uses, can swallow one that coincides with readiness).
        self._closing = False
        # News of this replica may not have reached the others: tell them so at the next chance.
        self._owe_missed = False
        self._send_failed = False
        self._catch_up: asyncio.TimerHandle | None = None
        # Set when the store's connection is back: a listener backing off tries again at once.
        self._nudge = asyncio.Event()
        store.before_commit = self._send_in_batch
        store.on_reconnect.append(self._store_back)

    # Sending.

    def send(self, message: Message) -> None:
        self._pending.append(message)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            try:
                asyncio.get_running_loop().call_soon(self._flush)
            except RuntimeError:
                self._flush()  # no event loop (tools): send at once

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.store.batch_open:
            if self._owe_missed:  # goes out of any batch: try again once this one is committed
                self._schedule_flush()
            return  # the batch's commit sends them, after its writes
        if not self._pending and not self._owe_missed:
            return
        try:
            self._notify(outside_batch=True)
        except (psycopg.Error, StoreError) as exc:
            # The store logs a lost connection itself; when it is back, `_store_back` owns up.
            if isinstance(exc, psycopg.Error):
                self.store.connection_failed(exc)
            if not self._send_failed and not isinstance(exc, StoreUnavailable):
                log.warning("could not send events to the other replicas error=%s", first_line(exc))
            self._send_failed = True
            self._owe_missed = True
            return
        self._send_failed = False

    def _send_in_batch(self) -> None:
        if self._pending:
            self._notify()

    def _notify(self, *, outside_batch: bool = False) -> None:
        messages, self._pending = self._pending, []
        if outside_batch and self._owe_missed:
            # Not inside a batch: a rollback would take it back while we believed it sent.
            messages.insert(0, [MISSED])
            self._owe_missed = False
        payloads: list[str] = []
        for parts in _batches(messages):
            self._seq += 1
            for i, part in enumerate(parts):
                payloads.append(f"{self.replica}|{self._seq}|{i + 1}/{len(parts)}|{part}")
        self.store.conn.execute(
            "SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p", (CHANNEL, payloads)
        ).fetchall()

    # Receiving.

    async def start(self) -> None:
        """Start listening; returns once LISTEN is in place (news sent after this reaches us)."""
        self._task = asyncio.create_task(self._listen(), name="replica-events")
        waiting = asyncio.ensure_future(self._listening.wait())
        done, _ = await asyncio.wait(
            {waiting, self._task}, timeout=CONNECT_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
        waiting.cancel()
        if self._task in done:
            self._task.result()
        elif not done:
            log.warning("not yet listening for the other replicas' events; still trying")

    def _store_back(self) -> None:
        """The store's connection is back: what was queued belonged to lost batches or may not have gone
        out, so drop it, tell the other replicas, and catch up here too."""
        self._pending.clear()
        self._owe_missed = True
        self._schedule_flush()
        self._nudge.set()
        self._catch_up_soon()

    def _catch_up_soon(self) -> None:
        if self.missed is None or self._catch_up is not None or self.closing():
            return
        self._catch_up = asyncio.get_running_loop().call_later(CATCH_UP_DELAY, self._caught_up)

    def _caught_up(self) -> None:
        self._catch_up = None
        if self.missed is None or self.closing():
            return
        if self._conn is None:
            return  # still not listening: news is still being missed, and the listener's return catches up
        log.info("news from other replicas may have been missed; held requests re-read, browsers refetch")
        try:
            self.missed()
        except Exception:
            log.exception("catching up after missed replica events failed")

    def closing(self) -> bool:
        """Whether close() was called (a method, read afresh after every await)."""
        return self._closing

    async def close(self) -> None:
        self.store.before_commit = None
        with contextlib.suppress(ValueError):
            self.store.on_reconnect.remove(self._store_back)
        self._closing = True
        if self._catch_up is not None:
            self._catch_up.cancel()
            self._catch_up = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _listen(self) -> None:
        delay = RECONNECT_DELAY
        lost_at: float | None = None
        while not self.closing():
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.store.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
                )
                if self.closing():  # closed while connecting, and the cancellation did not arrive
                    await conn.close()
                    return
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._conn = conn
                    if lost_at is None:
                        log.info("listening for the other replicas' events replica=%s", self.replica)
                    else:
                        log.info(
                            "replica events connection back replica=%s after_s=%.1f",
                            self.replica,
                            time.monotonic() - lost_at,
                        )
                        lost_at = None
                        await self._after_reconnect()
                    delay = RECONNECT_DELAY
                    self._listening.set()
                    async for notify in conn.notifies():
                        self._received(notify.payload)
            except psycopg.Error as exc:
                self._conn = None
                if lost_at is None:
                    lost_at = time.monotonic()
                    log.warning(
                        "lost the replica events connection, reconnecting replica=%s error=%s",
                        self.replica,
                        first_line(exc),
                    )
                else:
                    log.debug("replica events reconnect failed error=%s", first_line(exc))
                self._nudge.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._nudge.wait()
                delay = min(delay * 2, RECONNECT_MAX_DELAY)

    async def _after_reconnect(self) -> None:
        """News sent while the listener was away is lost: once the store works again (so that what is
        re-read is current), catch up."""
        waiting = asyncio.ensure_future(self.store.wait_connected())
        done, _ = await asyncio.wait({waiting}, timeout=CONNECT_TIMEOUT_S)
        if not done:
            waiting.cancel()
            log.warning("the store is not back yet; catching up anyway replica=%s", self.replica)
        elif not waiting.cancelled() and waiting.exception() is not None:
            log.warning("checking the store failed error=%s", waiting.exception())
        self._catch_up_soon()

    def _received(self, payload: str) -> None:
        try:
            replica, seq, numbering, chunk = payload.split("|", 3)
            part, parts = (int(n) for n in numbering.split("/"))
        except ValueError:
            log.warning("malformed replica event ignored payload=%.80s", payload)
            return
        if replica == self.replica:
            return
        if parts > 1:
            got = self._partial.setdefault((replica, seq), [])
            got.append(chunk)
            if len(got) < parts:
                if len(self._partial) > MAX_PARTIAL:
                    self._partial.pop(next(iter(self._partial)))
                return
            del self._partial[(replica, seq)]
            chunk = "".join(got)
            if part != parts:
                log.warning("replica event parts out of order replica=%s seq=%s", replica, seq)
                return
        try:
            messages = json.loads(chunk)
        except ValueError:
            log.warning("undecodable replica event ignored replica=%s seq=%s", replica, seq)
            return
        for message in messages:
            if message == [MISSED]:
                self._catch_up_soon()
                continue
            try:
                self.deliver(message)
            except Exception:
                log.exception("delivering a replica event failed message=%.80s", message)
