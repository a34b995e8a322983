"""Finding a Manager on the LAN when no `manager_url` is configured: finders yield candidates, pings decide.

A *finder* is an async generator `find(stop)` yielding `Candidate`s as it learns them, returning when
`stop` is set (or when it has nothing to do). `find_manager()` runs every finder in `FINDERS` at once,
pings `GET /api/v3/version` at each new candidate, and returns the first that answers as a Flamenco
Manager. Candidates given up front (the remembered Manager) are pinged first, at once.

Anyone on the LAN can answer a search: discovery only finds candidates. What a worker with credentials
does when a found Manager does not know them is decided in `adapter` (see there).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass

import aiohttp

from flamenco_worker import __version__
from flamenco_worker.discovery import avahi, local, ssdp
from flamenco_worker.discovery.candidates import Candidate

log = logging.getLogger(__name__)

Finder = Callable[[asyncio.Event], AsyncIterator[Candidate]]

#: Every way of finding a Manager, run together.
FINDERS: list[Finder] = [local.find, ssdp.find, avahi.find]

#: A Manager on the LAN answers its version within milliseconds; this bounds a stranger that does not.
PING_TIMEOUT = 3.0


@dataclass(frozen=True, slots=True)
class FoundManager:
    url: str
    source: str
    name: str
    version: str


async def ping(session: aiohttp.ClientSession, candidate: Candidate) -> FoundManager | None:
    """The Manager answering `GET /api/v3/version` at the candidate's URL, or None."""
    url = candidate.url.rstrip("/") + "/api/v3/version"
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=PING_TIMEOUT)) as response:
            if response.status != 200:
                log.debug("discovery: %s answered HTTP %d", url, response.status)
                return None
            body = await response.read()
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
        log.debug("discovery: %s does not answer (%s)", url, exc)
        return None
    try:
        info = json.loads(body)
    except ValueError:
        return None
    if not isinstance(info, dict) or not isinstance(info.get("version"), str):
        return None
    return FoundManager(candidate.url, candidate.source, str(info.get("name", "")), info["version"])


async def _merged(finders: Iterable[Finder], stop: asyncio.Event) -> AsyncIterator[Candidate]:
    """Candidates of all finders as they come; ends when all finders ended."""
    queue: asyncio.Queue[Candidate | None] = asyncio.Queue()

    async def drain(finder: Finder) -> None:
        try:
            async for candidate in finder(stop):
                queue.put_nowait(candidate)
        except Exception:
            log.exception("discovery: a finder failed")
        finally:
            queue.put_nowait(None)

    tasks = [asyncio.create_task(drain(finder)) for finder in finders]
    try:
        running = len(tasks)
        while running:
            item = await queue.get()
            if item is None:
                running -= 1
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def find_manager(
    *,
    first: Iterable[Candidate] = (),
    exclude: Iterable[str] = (),
    within: float | None = None,
    finders: Iterable[Finder] | None = None,
) -> FoundManager | None:
    """The first candidate that answers as a Flamenco Manager; None when `within` seconds pass first."""
    excluded = set(exclude)
    stop = asyncio.Event()
    result: asyncio.Future[FoundManager] = asyncio.get_running_loop().create_future()
    pings: set[asyncio.Task[None]] = set()
    tried: set[str] = set()

    async with aiohttp.ClientSession(
        headers={"User-Agent": f"Flamenco-Worker/{__version__} (python)"}
    ) as session:

        async def check(candidate: Candidate) -> None:
            found = await ping(session, candidate)
            if found is not None and not result.done():
                result.set_result(found)

        def consider(candidate: Candidate) -> None:
            if candidate.url in excluded or candidate.url in tried:
                return
            tried.add(candidate.url)
            log.debug("discovery: candidate %s (%s)", candidate.url, candidate.source)
            task = asyncio.create_task(check(candidate))
            pings.add(task)

            def done(finished: asyncio.Task[None]) -> None:
                pings.discard(finished)
                tried.discard(candidate.url)  # a later search round may offer it again

            task.add_done_callback(done)

        async def search() -> None:
            async for candidate in _merged(FINDERS if finders is None else finders, stop):
                consider(candidate)

        for candidate in first:
            consider(candidate)
        searching = asyncio.create_task(search())
        try:
            return await asyncio.wait_for(asyncio.shield(result), within)
        except TimeoutError:
            return None
        finally:
            stop.set()
            searching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await searching
            for task in list(pings):
                task.cancel()
            await asyncio.gather(*pings, return_exceptions=True)
