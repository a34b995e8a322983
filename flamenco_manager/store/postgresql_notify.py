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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from flamenco_manager.store.postgresql import CONNECT_TIMEOUT_S, PostgreSQLStore

log = logging.getLogger(__name__)

CHANNEL = "flamenco_events"
# PostgreSQL refuses payloads of 8000 bytes or more; this leaves room for the header.
PAYLOAD_LIMIT = 7900
# After losing the listening connection, wait this long before reconnecting (the server may be restarting).
RECONNECT_DELAY = 1.0
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

    def __init__(self, store: PostgreSQLStore, deliver: Callable[[Message], None]) -> None:
        self.store = store
        self.deliver = deliver
        self.replica = uuid.uuid4().hex[:12]
        self._seq = 0
        self._pending: list[Message] = []
        self._flush_scheduled = False
        self._partial: dict[tuple[str, str], list[str]] = {}
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        # Set by close(): the listener stops even if a cancellation was lost on the way (Python 3.11's
        # asyncio.wait_for, which psycopg's connect uses, can swallow one that coincides with readiness).
        self._closing = False
        store.before_commit = self._send_in_batch

    # Sending.

    def send(self, message: Message) -> None:
        self._pending.append(message)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            try:
                asyncio.get_running_loop().call_soon(self._flush)
            except RuntimeError:
                self._flush()  # no event loop (tools): send at once

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.store.batch_open:
            return  # the batch's commit sends them, after its writes
        if not self._pending:
            return
        try:
            self._notify()
        except psycopg.Error as exc:
            log.warning("could not send events to the other replicas error=%s", exc)

    def _send_in_batch(self) -> None:
        if self._pending:
            self._notify()

    def _notify(self) -> None:
        messages, self._pending = self._pending, []
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

    def closing(self) -> bool:
        """Whether close() was called (a method, read afresh after every await)."""
        return self._closing

    async def close(self) -> None:
        self.store.before_commit = None
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _listen(self) -> None:
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
                    log.info("listening for the other replicas' events replica=%s", self.replica)
                    self._listening.set()
                    async for notify in conn.notifies():
                        self._received(notify.payload)
            except psycopg.Error as exc:
                log.warning("lost the replica events connection, reconnecting error=%s", exc)
                await asyncio.sleep(RECONNECT_DELAY)

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
            try:
                self.deliver(message)
            except Exception:
                log.exception("delivering a replica event failed message=%.80s", message)
