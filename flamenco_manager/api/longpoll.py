"""`Prefer: wait=N` (RFC 7240) for the three worker endpoints that can hold a request."""

from __future__ import annotations

import asyncio
import math

from aiohttp import web


def requested_wait(request: web.Request) -> float | None:
    """Seconds asked for with `Prefer: wait=N`, or None when the preference is absent or malformed."""
    for header in request.headers.getall("Prefer", ()):
        for preference in header.split(","):
            token, _, rest = preference.partition("=")
            if token.strip().lower() != "wait":
                continue
            value = rest.split(";", 1)[0].strip().strip('"')
            if value.isdigit():
                return float(value)
    return None


class Hold:
    """How long a request may still be held; sets `Preference-Applied` on the answer."""

    def __init__(self, request: web.Request, long_poll_max: float) -> None:
        asked = requested_wait(request)
        self.applied = None if asked is None else min(asked, long_poll_max)
        self._loop = asyncio.get_running_loop()
        self.deadline = self._loop.time() + (self.applied or 0.0)

    def remaining(self) -> float:
        return self.deadline - self._loop.time()

    async def wait(self, fut: asyncio.Future[None]) -> None:
        """Wait until `fut` resolves or the hold expires."""
        remaining = self.remaining()
        if remaining <= 0 or fut.done():
            fut.cancel()
            return
        timer = self._loop.call_later(remaining, _resolve, fut)
        try:
            await fut
        finally:
            timer.cancel()

    def decorate(self, response: web.StreamResponse) -> web.StreamResponse:
        if self.applied is not None:
            response.headers["Preference-Applied"] = f"wait={math.floor(self.applied)}"
        return response


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
