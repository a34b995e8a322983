"""Worker ↔ Manager handshake: registration, sign-on and sign-off, with the credentials they use.

* Start: sign on with the credentials in FLAMENCO_HOME, registering first when there are none; while the
  Manager cannot be reached, retry every `SIGN_ON_RETRY` seconds, forever. The Manager's
  `status_requested` is the answer.
* A 403/401 at sign-on means the Manager does not know these credentials (worker deleted, another
  Manager): register as a new worker, save the new credentials, sign on with them.
* A Manager found by discovery (not configured) is a stranger until signed on: when it refuses stored
  credentials, the `SignOnGuard` decides whether registering anew there is allowed; when not, the guard
  is told (discovery forgets that URL and searches on) and the sign-on waits for the next URL.
* A 403 anywhere else only marks the sign-on as lost (`lost()`); the link signs on again before its next
  call — and registers anew if that sign-on is refused as well.
* A reload that changes the Manager URLs, the name or the restart code also means signing on again.
* Several URLs are replicas of one Manager: the client fails over between them (`manager_client`) with
  the same credentials, and the worker does not sign on again after a failover, just as it does not
  after its one Manager restarted. A replica that timed the worker out answers 409 to the next task
  fetch, and `task_fetch` recovers as it does from any 409 (acknowledge, then sign on again).
* A damaged credentials file raises ConfigError (the daemon exits 78); credentials that cannot be saved
  are kept in memory, and the next start registers anew.
* Sign-off happens at shutdown only when signed on, and never holds it up for long.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from flamenco_worker.config import WorkerSettings
from flamenco_worker.credentials import (
    Credentials,
    credentials_path,
    load_credentials,
    new_secret,
    save_credentials,
)
from flamenco_worker.manager_client import ManagerClient, ManagerUnreachable, Unauthorised, UnexpectedAnswer
from flamenco_worker.pacing import SIGN_ON_RETRY
from flamenco_worker.status import WorkerStatus
from flamenco_worker.trouble import Trouble, TroubleLog
from flamenco_worker.worker import Worker

log = logging.getLogger(__name__)


class SignOnGuard(Protocol):
    """What discovery decides about Managers it found (see `flamenco_worker.discovery.adapter`)."""

    def may_register_anew(self, url: str) -> bool: ...

    def refused(self, url: str) -> None: ...

    def signed_on(self, url: str, worker_id: str) -> None: ...


#: Sign-off must not hold up shutdown for long (Flamenco: 3 s).
SIGN_OFF_TIMEOUT = 3.0


def _identity(settings: WorkerSettings) -> tuple[tuple[str, ...], str, int]:
    """What the Manager learns at sign-on; a change means signing on again."""
    return settings.manager_urls, settings.worker_name, settings.restart_exit_code


class SignOn:
    def __init__(self, client: ManagerClient, worker: Worker, trouble: TroubleLog) -> None:
        self._client = client
        self._worker = worker
        self._trouble = trouble
        self._identity = _identity(worker.settings)
        self._creds: Credentials | None = None
        self._signed_on = False
        self._needed = True
        self._guard: SignOnGuard | None = None

    def guard_with(self, guard: SignOnGuard | None) -> None:
        self._guard = guard

    @property
    def signed_on(self) -> bool:
        return self._signed_on

    @property
    def needed(self) -> bool:
        """True until the first sign-on, and again after `lost()` or a retarget."""
        return self._needed

    @property
    def worker_id(self) -> str | None:
        return self._creds.worker_id if self._creds is not None else None

    def lost(self) -> None:
        """The Manager refused our credentials on some call: sign on again before the next one."""
        self._needed = True

    def retarget(self, settings: WorkerSettings) -> None:
        """Settings reloaded: new Manager URLs, name or restart code mean signing on again (URLs: at the
        first of the new list that answers)."""
        if _identity(settings) != self._identity:
            self._identity = _identity(settings)
            if settings.manager_urls:
                self._client.retarget(settings.manager_urls)
            self._needed = True

    async def sign_on(self) -> WorkerStatus:
        """Sign on (registering first if needed); retries until the Manager answers. Returns its request."""
        await self._client.url_known()  # discovery may still be searching (it owns the status line then)
        self._worker.set_detail(f"signing on at Manager {self._client.where}")
        while True:
            settings = self._worker.settings  # a reload may change the Manager while we retry
            await self._client.url_known()  # after a refusal, discovery searches on
            try:
                if self._creds is None:
                    self._creds = load_credentials(settings.flamenco_home) or await self._register()
                self._client.set_credentials(self._creds.worker_id, self._creds.worker_secret)
                self._worker.set_worker_id(self._creds.worker_id)
                requested = await self._client.sign_on(
                    settings.worker_name, list(settings.task_types), settings.restartable
                )
            except Unauthorised:
                guard = self._guard
                if guard is not None and not guard.may_register_anew(self._client.url):
                    log.error(
                        "worker=%s the Manager found at %s does not know this worker's credentials; "
                        "NOT registering there (it may be a stranger); searching on. To move this worker "
                        "to that Manager, set manager_url or delete %s",
                        self.worker_id or "?",
                        self._client.url,
                        credentials_path(settings.flamenco_home),
                    )
                    guard.refused(self._client.url)
                    continue
                log.warning(
                    "worker=%s the Manager at %s does not know this worker's credentials; "
                    "REGISTERING AS A NEW WORKER (the old entry can be removed in the web interface)",
                    self.worker_id or "?",
                    self._client.url,
                )
                self._creds = await self._register()
                continue
            except (ManagerUnreachable, UnexpectedAnswer) as exc:
                where = self._client.where
                text = f"Manager at {where} unreachable ({exc}); retrying every {SIGN_ON_RETRY:.0f}s"
                self._trouble.report(Trouble.SIGN_ON, text)
                await asyncio.sleep(SIGN_ON_RETRY)
                continue
            break
        self._signed_on = True
        self._needed = False
        self._trouble.clear()
        if self._guard is not None:  # remembered before the log line says so
            self._guard.signed_on(self._client.url, self._creds.worker_id)
        log.info("signed on at Manager %s as worker %s", self._client.url, self._creds.worker_id)
        try:
            return WorkerStatus(requested)
        except ValueError:
            log.warning("the Manager asked for unknown status %r at sign-on; going asleep", requested)
            return WorkerStatus.ASLEEP

    async def _register(self) -> Credentials:
        settings = self._worker.settings
        secret = new_secret()
        worker_id = await self._client.register(settings.worker_name, secret, list(settings.task_types))
        creds = Credentials(worker_id, secret)
        try:
            path = save_credentials(settings.flamenco_home, creds)
        except OSError as exc:
            log.error(
                "worker=%s registered, but its credentials cannot be saved in %s (%s); it keeps them in "
                "memory and will register as a new worker after a restart",
                worker_id,
                settings.flamenco_home,
                exc,
            )
            return creds
        log.info("worker=%s registered at Manager %s; credentials in %s", worker_id, self._client.url, path)
        return creds

    async def sign_off(self) -> None:
        """Tell the Manager we leave (it requeues our tasks); only when signed on, bounded in time."""
        if not self._signed_on:
            return
        self._signed_on = False
        try:
            await self._client.sign_off(SIGN_OFF_TIMEOUT)
            log.info("signed off from the Manager at %s", self._client.url)
        except (ManagerUnreachable, UnexpectedAnswer) as exc:
            log.warning("sign-off failed (%s); the Manager will time this worker out", exc)
