"""This machine as a candidate: a Manager on Flamenco's default port here, found without any network.

A render node that is also the Manager's machine (or a workstation running both packages) finds it even
when no LAN interface is up, where multicast has nowhere to go. Asked again with back-off while nothing
answers; a refused connection on loopback costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from flamenco_worker.discovery.candidates import Candidate

#: Flamenco Manager's default port.
LOCAL_URL = "http://localhost:8080/"
#: First repeat while nothing answers here: a Manager installed together with the worker starts within a
#: second or two of it.
FIRST_INTERVAL = 1.0
#: Longest pause between two asks; a worker started before its local Manager signs on within this.
MAX_INTERVAL = 5.0


async def find(stop: asyncio.Event) -> AsyncIterator[Candidate]:
    interval = FIRST_INTERVAL
    while not stop.is_set():
        yield Candidate(LOCAL_URL, "local")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
        interval = min(interval * 2, MAX_INTERVAL)
