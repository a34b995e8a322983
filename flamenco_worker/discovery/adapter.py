"""Discovery as an adapter of the Manager link: it gives the link's client a URL, and takes it back.

Rules this module keeps (it runs only when no `manager_url` is configured):

* At start the remembered Manager (FLAMENCO_HOME, see `remembered`) is pinged first while the finders
  search; the first candidate that answers as a Flamenco Manager becomes the client's URL. Until then
  the status line says the worker is searching, and the search goes on for as long as it takes (SSDP
  repeats with back-off); the worker never gives up and exits.
* When calls stop getting through (`ManagerClient.unreachable()`) for `REDISCOVER_AFTER`, it searches
  again, the URL in use among the candidates: a Manager that moved to another address is followed,
  one that merely restarted is kept.
* Trust: anyone on the LAN can answer a search, so a found Manager is a stranger until the worker signed
  on there. When a found Manager refuses the worker's stored credentials at sign-on, registering anew is
  allowed only there where this worker last signed on through discovery (the remembered URL: the
  operator deleted the worker, or reset that Manager); anywhere else the worker does not register, logs
  an error, forgets that URL for `REFUSED_HOLD`, and searches on. A worker without credentials
  registers with the first Manager it finds: that is what unconfigured means.
* It changes no state of the core: it only sets the detail line and the client's URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from flamenco_worker.discovery import FoundManager, find_manager
from flamenco_worker.discovery.candidates import Candidate
from flamenco_worker.discovery.remembered import Remembered, load_remembered, save_remembered
from flamenco_worker.manager_client import ManagerClient
from flamenco_worker.worker import Worker

log = logging.getLogger(__name__)

#: Calls failing this long mean the Manager is gone from its address; a restart in place takes less.
REDISCOVER_AFTER = 10.0
#: How often a search that found nothing yet updates the status line (the log says it once).
SEARCH_ROUND = 60.0
#: A Manager that refused our credentials is not tried again for this long (it answers every search).
REFUSED_HOLD = 600.0

SEARCHING_WHERE = "searching the LAN for a Manager (SSDP, and this machine)"
SEARCHING = f"{SEARCHING_WHERE}; none answered yet"


class ManagerDiscovery:
    def __init__(self, client: ManagerClient, worker: Worker, home: Path) -> None:
        self._client = client
        self._worker = worker
        self._home = home
        self._remembered = load_remembered(home)
        self._refused: dict[str, float] = {}
        self._wake = asyncio.Event()

    @property
    def remembered(self) -> Remembered | None:
        return self._remembered

    def _configured(self) -> bool:
        return bool(self._worker.settings.manager_urls)

    # --- the loop ---

    async def run(self) -> None:
        """Find a Manager, then watch for it going away; until cancelled."""
        while True:
            if self._configured():
                return  # a reload gave a manager_url: the link follows the configuration now
            if not self._client.url:
                found = await self._search()
                self._use(found)
                continue
            self._wake.clear()
            waiting = asyncio.create_task(self._client.unreachable())
            woken = asyncio.create_task(self._wake.wait())
            try:
                await asyncio.wait({waiting, woken}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiting.cancel()
                woken.cancel()
            if not self._client.url:
                continue  # refused: search at once
            await asyncio.sleep(REDISCOVER_AFTER)
            if self._client.is_unreachable and not self._configured():
                old = self._client.url
                log.warning(
                    "manager=%s unreachable for %.0fs; searching the LAN for it", old, REDISCOVER_AFTER
                )
                self._worker.set_detail(f"Manager at {old} unreachable; searching the LAN for it")
                found = await self._search(current=old)
                if found.url != old:
                    self._use(found)

    async def _search(self, current: str | None = None) -> FoundManager:
        """One continuous search (its back-off is the finders'); the status line tells how long it takes."""
        first: list[Candidate] = []
        if current:
            first.append(Candidate(current, "remembered"))  # the URL in use: kept if it is back
        if self._remembered is not None and self._remembered.url != current:
            first.append(Candidate(self._remembered.url, "remembered"))
        started = time.monotonic()
        if current is None:
            log.info("discovery: no manager_url configured; %s", SEARCHING_WHERE)
            self._worker.set_detail(self._with_refused(SEARCHING))
        search = asyncio.ensure_future(find_manager(first=first, exclude=self._refused_now()))
        try:
            while True:
                try:
                    found = await asyncio.wait_for(asyncio.shield(search), SEARCH_ROUND)
                except TimeoutError:
                    waited = time.monotonic() - started
                    text = f"{SEARCHING_WHERE}; none answered in {waited / 60:.0f} min"
                    if waited < 1.5 * SEARCH_ROUND:
                        log.warning(
                            "discovery: %s; still searching (set manager_url to skip discovery)", text
                        )
                    self._worker.set_detail(self._with_refused(text))
                    continue
                assert found is not None  # no time limit: it returns only with a Manager
                return found
        finally:
            search.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await search

    def _with_refused(self, text: str) -> str:
        refused = sorted(self._refused_now())
        if not refused:
            return text
        return f"{text}; not joining {', '.join(refused)} (refused this worker's credentials)"

    def _refused_now(self) -> set[str]:
        now = time.monotonic()
        self._refused = {url: until for url, until in self._refused.items() if until > now}
        return set(self._refused)

    def _use(self, found: FoundManager) -> None:
        log.info(
            "discovery: found Manager name=%r version=%s at %s source=%s",
            found.name,
            found.version,
            found.url,
            found.source,
        )
        self._worker.set_detail(
            f"found Manager {found.name or ''} at {found.url} ({found.source})".replace("  ", " ")
        )
        self._client.retarget((found.url,))

    # --- SignOnGuard ---

    def may_register_anew(self, url: str) -> bool:
        if self._configured():
            return True
        return self._remembered is not None and self._remembered.url == url

    def refused(self, url: str) -> None:
        self._refused[url] = time.monotonic() + REFUSED_HOLD
        self._worker.set_detail(f"the Manager at {url} refused this worker's credentials; searching on")
        self._client.retarget(())
        self._wake.set()

    def signed_on(self, url: str, worker_id: str) -> None:
        if self._configured():
            return
        remembered = Remembered(url, worker_id, "ssdp")
        if remembered != self._remembered:
            self._remembered = remembered
            path = save_remembered(self._home, remembered)
            if path is not None:
                log.info("discovery: remembering Manager %s in %s", url, path)
