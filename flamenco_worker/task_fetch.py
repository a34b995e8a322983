"""Manager → worker: the next task (`POST /worker/task`), and what its answer means.

* No new task while task updates are still queued: the Manager has not heard how the last task ended,
  and asking now would get that same task back and run it twice.
* 200: a task, made into a `ManagedTask` whose log cadence suits the Manager (see `task_report`): live
  when it long-polls, batched as Flamenco's worker does when it does not.
* 204: nothing now; ask again at once after a held request, after `NO_TASK_INTERVAL` otherwise.
* 423: the Manager's request goes to the core (`Worker.request_status`).
* 409: the Manager thinks we are not awake (Flamenco's workers stay stuck here): first acknowledge our
  status again; if it still refuses, sign on afresh.
* 403: the sign-on is lost; the link signs on again before the next call.
* No answer or a bad one: back off (short when nothing answered, longer when something answered badly).
"""

from __future__ import annotations

import asyncio
import logging

from flamenco_worker import journal
from flamenco_worker.manager_client import (
    LONG_POLL_WAIT,
    ManagerClient,
    ManagerUnreachable,
    NoTask,
    NotAwake,
    StatusRequested,
    TaskAnswer,
    TaskAssigned,
    Unauthorised,
    UnexpectedAnswer,
)
from flamenco_worker.output_upload import OutputUploader
from flamenco_worker.pacing import NO_TASK_INTERVAL, UNREACHABLE_BACKOFF, backoff_for, jittered
from flamenco_worker.request_watch import RequestWatch, follow_manager
from flamenco_worker.signon import SignOn
from flamenco_worker.status_sender import StatusSender
from flamenco_worker.task_report import LogCadence, cadence_for
from flamenco_worker.task_run import ManagedTask
from flamenco_worker.task_updates_sender import TaskUpdatesSender
from flamenco_worker.trouble import Trouble, TroubleLog
from flamenco_worker.worker import Worker

log = logging.getLogger(__name__)


class TaskFetcher:
    def __init__(
        self,
        client: ManagerClient,
        worker: Worker,
        *,
        signon: SignOn,
        status: StatusSender,
        updates: TaskUpdatesSender,
        uploader: OutputUploader,
        watch: RequestWatch,
        trouble: TroubleLog,
    ) -> None:
        self._client = client
        self._worker = worker
        self._signon = signon
        self._status = status
        self._updates = updates
        self._uploader = uploader
        self._watch = watch
        self._trouble = trouble
        self._conflicts = 0
        self._cadence: LogCadence | None = None
        self._fetching = False
        client.on_switch(self._on_switch)

    def _waiting(self) -> str:
        return f"waiting for a task from Manager at {self._client.url}"

    def _on_switch(self, _old: str, _new: str, _reason: str) -> None:
        if self._fetching:  # a held fetch moved to another replica: the status line follows it
            self._worker.set_detail(self._waiting())

    async def next_task(self) -> ManagedTask | None:
        if self._updates.queued and not await self._updates.flush():
            self._trouble.report(
                Trouble.UPDATES_QUEUED,
                f"{self._updates.queued} task updates still queued; no new task until they are delivered",
            )
            await asyncio.sleep(jittered(UNREACHABLE_BACKOFF))
            return None
        self._worker.set_detail(self._waiting())
        try:
            answer = await self._fetch()
        except Unauthorised:
            self._signon.lost()
            return None
        except (ManagerUnreachable, UnexpectedAnswer) as exc:
            pause = backoff_for(exc)
            self._trouble.report(Trouble.TASK_FETCH, f"cannot fetch a task ({exc}); retrying in {pause:.0f}s")
            await asyncio.sleep(jittered(pause))
            return None
        self._trouble.clear("Manager reachable again")
        if not isinstance(answer, NotAwake):
            self._conflicts = 0
        match answer:
            case TaskAssigned(task, long_polled):
                log.info(
                    "task=%s job=%s fetched",
                    task.uuid,
                    task.job,
                    extra=journal.about_task(task.uuid, task.job),
                )
                return ManagedTask(
                    task,
                    self._updates,
                    self._uploader,
                    watch=self._watch.running,
                    cadence=self._log_cadence(long_polled),
                    oom_score_adjust=self._worker.settings.oom_score_adjust,
                    environment=self._worker.settings.environment,
                )
            case StatusRequested(status):
                await follow_manager(self._worker, status)
            case NotAwake(message):
                self._recover_from_conflict(message)
            case NoTask(long_polled):
                if not long_polled:
                    await asyncio.sleep(jittered(NO_TASK_INTERVAL))
        return None

    async def _fetch(self) -> TaskAnswer:
        self._fetching = True
        try:
            return await self._client.fetch_task(wait=LONG_POLL_WAIT)
        finally:
            self._fetching = False

    def _log_cadence(self, long_polled: bool) -> LogCadence:
        cadence = cadence_for(long_polled)
        if cadence != self._cadence:
            log.info(
                "the Manager %s long-poll: task logs go out every %.0fs (or per %d KiB)",
                "does" if long_polled else "does not",
                cadence.interval,
                cadence.chunk_bytes // 1024,
            )
            self._cadence = cadence
        return cadence

    def _recover_from_conflict(self, message: str) -> None:
        self._conflicts += 1
        if self._conflicts == 1:
            log.warning(
                "the Manager refused a task fetch (409: %s); acknowledging status %s again",
                message.strip()[:200],
                self._worker.status,
            )
            self._status.acknowledge(self._worker.status)
        else:
            log.warning("the Manager still refuses (409); signing on again")
            self._signon.lost()
            self._conflicts = 0
