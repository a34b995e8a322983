"""`@durable`: the answer to a request that changed something waits until the change is on disk.

Services write through the store, which commits once per event-loop turn (group commit), and worker log
lines go to files through writer threads. A 2xx answer tells the client it may forget what it sent (a
worker drops the update from its outbox), so it must not leave before the commit. Each handler that writes
carries this decorator, right under its route, so the route table shows which requests write and every
return path of the handler (held long-polls answer from several places) waits the same way; a call before
each `return` could be missed on one of them. Handlers that only read are not held up.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

from flamenco_manager.api.keys import DURABILITY, need

R = TypeVar("R", bound=web.StreamResponse)

_DURABLE: set[Callable[..., object]] = set()


def durable(handler: Callable[[web.Request], Awaitable[R]]) -> Callable[[web.Request], Awaitable[R]]:
    @functools.wraps(handler)
    async def answer_once_durable(request: web.Request) -> R:
        response = await handler(request)
        await need(request, DURABILITY).settled()
        return response

    _DURABLE.add(answer_once_durable)
    return answer_once_durable


def is_durable(handler: Callable[..., object]) -> bool:
    """Whether a route's handler waits for its writes before answering."""
    return handler in _DURABLE
