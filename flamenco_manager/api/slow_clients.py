"""Bounds on slow clients: a request head must arrive within REQUEST_HEAD_TIMEOUT.

aiohttp waits for an incomplete request line or header block as long as the client keeps the connection
open, so a handful of "slow-loris" clients could hold every file descriptor. Here each connection notes
when bytes of a new request head start to arrive; a head still incomplete after the timeout ends the
connection. Bodies are bounded where they are read (see `validation.json_body`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger(__name__)

#: Time for a client to send a request line and its headers; generous for any real client on a LAN.
REQUEST_HEAD_TIMEOUT = 20.0


class GuardedRequestHandler(RequestHandler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._body: Any = None  # the payload of the last request, while its body is still arriving

    def data_received(self, data: bytes) -> None:
        in_body = self._body is not None and not self._body.is_eof()
        before = len(self._messages)
        super().data_received(data)
        if len(self._messages) > before:
            self._body = self._messages[-1][1]
            self._stop_head_timer()
        elif not in_body and self._head_timer is None and data:
            self._head_timer = self._loop.call_later(REQUEST_HEAD_TIMEOUT, self._head_too_slow)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        peer = self.transport.get_extra_info("peername") if self.transport else None
        log.warning(
            "peer=%s sent no complete request head within %.0fs; connection closed",
            peer,
            REQUEST_HEAD_TIMEOUT,
        )
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)


class GuardedServer(web.Server):
    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(self, loop=self._loop, **self._kwargs)


class GuardedAppRunner(web.AppRunner):
    """web.AppRunner whose connections give up on request heads that do not arrive in time."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = GuardedServer  # same state; only the connection factory differs
        return server
