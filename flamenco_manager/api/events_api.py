"""`GET /api/v3/events`: Server-Sent Events carrying the payloads of Flamenco v3's web-interface events.

Flamenco v3 itself pushes these over socket.io; a plain SSE stream carries the same topics and bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from aiohttp import web

from flamenco_manager.api.errors import HTTPError
from flamenco_manager.api.keys import HUB, need
from flamenco_manager.services.events import TOPICS

routes = web.RouteTableDef()

# A comment line this often keeps proxies from closing an idle stream and reveals dead clients.
KEEPALIVE_INTERVAL = 15.0
# How long a browser waits before reconnecting after the stream ends.
RECONNECT_MS = 1000


def _topics(raw: str | None) -> frozenset[str]:
    if not raw:
        return frozenset(TOPICS)
    wanted = set()
    for name in raw.split(","):
        name = name.strip()
        topic = name if name.startswith("/") else f"/{name}"
        if topic not in TOPICS:
            raise HTTPError(400, f"topics: unknown topic {name!r}; known: {', '.join(TOPICS)}")
        wanted.add(topic)
    return frozenset(wanted)


@routes.get("/api/v3/events")
async def events(request: web.Request) -> web.StreamResponse:
    hub = need(request, HUB)
    topics = _topics(request.query.get("topics"))
    sub = hub.subscribe(topics, request.query.get("job") or None, request.query.get("task") or None)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    try:
        await response.prepare(request)
        await response.write(
            f"retry: {RECONNECT_MS}\n: subscribed to {','.join(sorted(topics))}\n\n".encode()
        )
        while True:
            try:
                event = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_INTERVAL)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if event is None:
                break
            data = json.dumps(event.payload, separators=(",", ":"))
            await response.write(f"event: {event.topic}\ndata: {data}\n\n".encode())
    except ConnectionResetError:
        return response
    finally:
        hub.unsubscribe(sub)
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response
