"""Worker → Manager: what status the worker is in, and which local requests it took — in order, by one sender.

* Every change to `awake` or `asleep` is acknowledged (`POST /worker/state-changed`); `offline` and
  `restart` are acknowledged by signing off at shutdown, as Flamenco's worker does.
* A local (D-Bus) request is mirrored onto the Manager's worker-management API, so the latest request
  wins whoever made it and the web interface shows the truth.
* One queue, one sender: the Manager hears things in the order they happened. While it cannot be
  reached the sender retries the same item; a refusal (4xx/5xx) is logged and the item dropped; a 403
  marks the sign-on as lost.
* `join()` lets the link wait until everything queued was said before it asks for more work.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from flamenco_worker import journal
from flamenco_worker.cancel import cancel_and_wait
from flamenco_worker.manager_client import ManagerClient, ManagerUnreachable, Unauthorised, UnexpectedAnswer
from flamenco_worker.pacing import STATUS_REPORT_RETRY
from flamenco_worker.signon import SignOn
from flamenco_worker.status import StatusRequest, WorkerStatus
from flamenco_worker.trouble import Trouble, TroubleLog

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    status: WorkerStatus


@dataclass(frozen=True, slots=True)
class Mirror:
    worker_id: str
    request: StatusRequest


class StatusSender:
    def __init__(self, client: ManagerClient, signon: SignOn, trouble: TroubleLog) -> None:
        self._client = client
        self._signon = signon
        self._trouble = trouble
        self._queue: asyncio.Queue[Acknowledgement | Mirror] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None

    def acknowledge(self, status: WorkerStatus) -> None:
        self._queue.put_nowait(Acknowledgement(status))
        self._start()

    def mirror(self, request: StatusRequest) -> None:
        worker_id = self._signon.worker_id
        if worker_id is not None:
            self._queue.put_nowait(Mirror(worker_id, request))
            self._start()

    async def join(self) -> None:
        """Wait until everything queued so far has been said (or given up on)."""
        await self._queue.join()

    async def close(self) -> None:
        """Stop sending; what is still queued is not said (sign-off tells the Manager the rest)."""
        if self._sender is not None:
            await cancel_and_wait(self._sender)

    def _start(self) -> None:
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(
                self._send_forever(), context=journal.outside_tasks()
            )

    async def _send_forever(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                await self._deliver(item)
            finally:
                self._queue.task_done()

    async def _deliver(self, item: Acknowledgement | Mirror) -> None:
        while True:
            try:
                await self._say(item)
                return
            except Unauthorised:
                self._signon.lost()
                return
            except UnexpectedAnswer as exc:
                log.warning("telling the Manager about %s failed: %s", _what(item), exc)
                return
            except ManagerUnreachable as exc:
                self._trouble.report(
                    Trouble.STATUS_REPORT, f"Manager unreachable ({exc}); will tell it about {_what(item)}"
                )
                await asyncio.sleep(STATUS_REPORT_RETRY)

    async def _say(self, item: Acknowledgement | Mirror) -> None:
        match item:
            case Acknowledgement(status):
                await self._client.state_changed(str(status))
                log.info("acknowledged status=%s to the Manager", status)
            case Mirror(worker_id, request):
                code = await self._client.request_own_status(worker_id, str(request.status), request.lazy)
                if code not in (200, 204):
                    log.warning("mirroring local request %s to the Manager: HTTP %d", request.status, code)


def _what(item: Acknowledgement | Mirror) -> str:
    match item:
        case Acknowledgement(status):
            return f"status {status}"
        case Mirror(_, request):
            return f"the local request for {request.status}"
