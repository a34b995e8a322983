"""Manager → worker: the Manager's requests to change what the worker does, while it is not fetching tasks.

* Asleep: `GET /worker/state`, held by a Manager that long-polls, every few seconds otherwise.
* Running a task: `may-i-run`. A "no" for a status change fetches the requested status and passes it to
  the core (which aborts the task when the request is immediate); any other "no" (task cancelled, taken
  away) aborts the task. A failed question counts as "yes", as in Flamenco.
* A queued task update that learns the task was reassigned aborts the running task as well.
* Every request goes to the core through `Worker.request_status()`; the core decides.
"""

from __future__ import annotations

import asyncio
import logging

from flamenco_worker.manager_client import (
    LONG_POLL_WAIT,
    ManagerClient,
    ManagerUnreachable,
    Unauthorised,
    UnexpectedAnswer,
)
from flamenco_worker.pacing import (
    ASLEEP_POLL_INTERVAL,
    FETCH_FAILED_BACKOFF,
    MAY_I_RUN_INTERVAL,
    backoff_for,
    jittered,
)
from flamenco_worker.signon import SignOn
from flamenco_worker.status import Origin
from flamenco_worker.task_run import ManagedTask
from flamenco_worker.trouble import Trouble, TroubleLog
from flamenco_worker.worker import RequestRefused, Worker

log = logging.getLogger(__name__)


async def follow_manager(worker: Worker, status: str) -> None:
    """Pass the Manager's request to the core; a refused one is asked about again after a pause."""
    try:
        outcome = worker.request_status(status, lazy=False, origin=Origin.MANAGER)
    except RequestRefused as exc:
        log.error(
            "the Manager asked for status %s, refused: %s; asking again in %.0fs",
            status,
            exc,
            FETCH_FAILED_BACKOFF,
        )
        await asyncio.sleep(FETCH_FAILED_BACKOFF)
        return
    log.info("origin=manager status=%s: %s", status, outcome)


class RequestWatch:
    def __init__(self, client: ManagerClient, worker: Worker, signon: SignOn, trouble: TroubleLog) -> None:
        self._client = client
        self._worker = worker
        self._signon = signon
        self._trouble = trouble
        self._running: dict[str, ManagedTask] = {}

    async def asleep(self) -> None:
        """One question while asleep: is there a request? Returns after it was answered and followed."""
        self._worker.set_detail("")
        try:
            answer = await self._client.state(wait=LONG_POLL_WAIT)
        except Unauthorised:
            self._signon.lost()
            return
        except (ManagerUnreachable, UnexpectedAnswer) as exc:
            pause = backoff_for(exc)
            text = f"cannot ask the Manager for requests ({exc}); retrying in {pause:.0f}s"
            self._trouble.report(Trouble.REQUEST_WATCH, text)
            await asyncio.sleep(jittered(pause))
            return
        self._trouble.clear("Manager reachable again")
        if answer.requested is not None:
            await follow_manager(self._worker, answer.requested)
        elif not answer.long_polled:
            await asyncio.sleep(jittered(ASLEEP_POLL_INTERVAL))

    async def running(self, task: ManagedTask) -> None:
        """While a task runs: may it keep running? Ends when the task is stopped or the watch cancelled."""
        self._running[task.task_id] = task
        try:
            while True:
                try:
                    answer = await self._client.may_i_run(task.task_id, wait=LONG_POLL_WAIT)
                except (ManagerUnreachable, UnexpectedAnswer) as exc:
                    log.debug("task=%s may-i-run failed (%s); assuming yes", task.task_id, exc)
                    await asyncio.sleep(MAY_I_RUN_INTERVAL)
                    continue
                if answer.may_keep_running:
                    if not answer.long_polled:
                        await asyncio.sleep(MAY_I_RUN_INTERVAL)
                    continue
                if answer.status_change_requested and await self._follow_requested_status():
                    return
                task.abort(f"the Manager says: {answer.reason or 'stop'}")
                return
        finally:
            self._running.pop(task.task_id, None)

    async def _follow_requested_status(self) -> bool:
        try:
            answer = await self._client.state(wait=None)
        except (ManagerUnreachable, UnexpectedAnswer):
            return False
        if answer.requested is None:
            return False
        await follow_manager(self._worker, answer.requested)
        return True

    def task_taken_away(self, task_id: str) -> None:
        """A queued update learned the task is no longer ours (409): stop it if it still runs."""
        task = self._running.get(task_id)
        if task is not None:
            task.abort("the Manager reassigned the task")
