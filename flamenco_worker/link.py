"""The Manager link: Flamenco v3's worker protocol as the core's task source, built from one-way parts.

| Module | Direction | Does |
|---|---|---|
| `signon` | both ways | register, sign on (retrying), sign off; credentials |
| `task_fetch` | Manager → worker | the next task; 423 → the core; 409 recovery |
| `request_watch` | Manager → worker | requests while asleep (`state`) and while running (`may-i-run`) |
| `status_sender` | worker → Manager | acknowledgements of our status, mirrors of local requests |
| `task_updates_sender` | worker → Manager | task updates, through the outbox when needed |
| `task_report` | worker → Manager | one task's log and progress, batched to suit the Manager |
| `output_upload` | worker → Manager | last-rendered previews |

Rules this module keeps:

* It creates the HTTP client, the outbox and the senders, and closes them in `close()`: the queues and
  the status sender stop, task updates get a bounded last flush, then the worker signs off, then the
  client and the outbox close. Each step runs even when an earlier one failed, so sign-off always
  happens.
* No question goes to the Manager before the first sign-on finished; a lost sign-on is redone before the
  next question; acknowledgements and mirrors are out before the next question.
* Every status change goes through `Worker.request_status()`; this link only passes requests on and
  reports facts (`set_detail`, `set_worker_id`, `set_manager_url`).
* Several Manager URLs are replicas of one Manager: the client fails over between them on connection
  errors (see `manager_client`); credentials, the outbox and the running task stay as they are, since
  every part talks through that one client. The URL in use is reported to the core (D-Bus
  `ManagerURL`, the status line).
* Without a configured URL the client starts with none; discovery (`flamenco_worker.discovery.adapter`)
  gives it the URL of the Manager it found, and sign-on waits for that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from flamenco_worker.config import WorkerSettings
from flamenco_worker.manager_client import ManagerClient
from flamenco_worker.outbox import Outbox
from flamenco_worker.output_upload import OutputUploader
from flamenco_worker.request_watch import RequestWatch, follow_manager
from flamenco_worker.signon import SignOn
from flamenco_worker.status import Origin, StatusRequest, WorkerStatus
from flamenco_worker.status_sender import StatusSender
from flamenco_worker.task_fetch import TaskFetcher
from flamenco_worker.task_run import ManagedTask
from flamenco_worker.task_updates_sender import TaskUpdatesSender
from flamenco_worker.trouble import TroubleLog
from flamenco_worker.worker import Worker

log = logging.getLogger(__name__)

#: How long shutdown may spend delivering queued updates before leaving them for the next start.
SHUTDOWN_FLUSH_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class _Parts:
    """The parts that need the core; made by `attach()`."""

    worker: Worker
    signon: SignOn
    status: StatusSender
    watch: RequestWatch
    fetcher: TaskFetcher


class ManagerLink:
    def __init__(self, settings: WorkerSettings) -> None:
        self._outbox = Outbox(settings.flamenco_home)
        self._client = ManagerClient(settings.manager_urls)
        self.updates = TaskUpdatesSender(self._client, self._outbox)
        self._uploader = OutputUploader(self._client)
        self._parts: _Parts | None = None
        self._connected = asyncio.Event()

    # --- wiring ---

    def attach(self, worker: Worker) -> None:
        trouble = TroubleLog(worker.set_detail)
        self._client.on_switch(lambda _old, new, _reason: worker.set_manager_url(new))
        signon = SignOn(self._client, worker, trouble)
        status = StatusSender(self._client, signon, trouble)
        watch = RequestWatch(self._client, worker, signon, trouble)
        fetcher = TaskFetcher(
            self._client,
            worker,
            signon=signon,
            status=status,
            updates=self.updates,
            uploader=self._uploader,
            watch=watch,
            trouble=trouble,
        )
        self._parts = _Parts(worker, signon, status, watch, fetcher)
        worker.on_transition(self._on_transition)
        worker.on_request(self._on_request)
        self.updates.on_reassigned(watch.task_taken_away)

    @property
    def client(self) -> ManagerClient:
        """The one HTTP client every part talks through (discovery gives it its URL)."""
        return self._client

    @property
    def parts(self) -> _Parts:
        assert self._parts is not None, "attach() first"
        return self._parts

    def retarget(self, settings: WorkerSettings) -> None:
        """Settings reloaded: new Manager URLs or a new name mean signing on again."""
        self.parts.signon.retarget(settings)

    # --- start and stop ---

    async def connect(self) -> WorkerStatus:
        """Sign on (registering first if needed); retries until the Manager answers. Returns its request."""
        status = await self.parts.signon.sign_on()
        self._connected.set()
        await self.updates.flush()  # leftovers from the previous run go first
        return status

    def acknowledge_current(self) -> None:
        """A local request decided the first status before sign-on finished: tell the Manager."""
        self.parts.status.acknowledge(self.parts.worker.status)

    async def close(self) -> None:
        """Stop everything this link started and close what it created; sign-off is never skipped."""
        async with contextlib.AsyncExitStack() as steps:  # runs the steps below from the bottom up
            steps.callback(self._outbox.close)
            steps.push_async_callback(self._client.close)
            if self._parts is not None:
                steps.push_async_callback(self._parts.signon.sign_off)
            steps.push_async_callback(self._uploader.close)
            steps.push_async_callback(self.updates.close)
            if self._connected.is_set():  # without credentials the Manager would refuse (and we drop) them
                steps.push_async_callback(self.updates.flush, SHUTDOWN_FLUSH_TIMEOUT)
            if self._parts is not None:
                steps.push_async_callback(self._parts.status.close)

    # --- the core's task source ---

    async def next_task(self) -> ManagedTask | None:
        await self._before_call()
        return await self.parts.fetcher.next_task()

    async def watch_asleep(self) -> None:
        await self._before_call()
        await self.parts.watch.asleep()

    async def _before_call(self) -> None:
        """Wait for the first sign-on; sign on again if it was lost; let acknowledgements go out first."""
        parts = self.parts
        await self._connected.wait()
        if parts.signon.needed:
            requested = await parts.signon.sign_on()
            parts.status.acknowledge(parts.worker.status)
            if requested is not parts.worker.status:
                await follow_manager(parts.worker, requested)
        await parts.status.join()

    # --- what the core tells the Manager ---

    def _on_transition(self, old: WorkerStatus, new: WorkerStatus, request: StatusRequest) -> None:
        if self.parts.signon.signed_on and new in (WorkerStatus.AWAKE, WorkerStatus.ASLEEP):
            self.parts.status.acknowledge(new)

    def _on_request(self, request: StatusRequest) -> None:
        if request.origin is Origin.LOCAL and self.parts.signon.signed_on:
            self.parts.status.mirror(request)
