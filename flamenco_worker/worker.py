"""The worker core: one state machine that every adapter (D-Bus, Manager link, signals, systemd) goes through.

`Worker.request_status()` is the only way to change what the worker does. The core decides:

* a new request replaces a pending one; asking for the current status cancels a pending request;
* `restart` is refused unless a restart exit code is configured;
* with no task running, a request takes effect at once (lazy or not);
* with a task running, a *lazy* request waits for the task to end and no new task is taken meanwhile;
  an *immediate* one aborts the task first (it is handed back; the Manager requeues it).

`offline` and `restart` end `run()`, which returns the process exit code. Cancelling `run()` kills the
running task and waits (bounded by TASK_ABORT_TIMEOUT) for it to hand itself back before propagating.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from flamenco_worker import __version__, journal
from flamenco_worker.cancel import cancel_and_wait
from flamenco_worker.config import WorkerSettings
from flamenco_worker.status import FINAL, REQUESTABLE, ExitCode, Origin, StatusRequest, WorkerStatus

log = logging.getLogger(__name__)

#: How long an aborted task may take to stop before the core stops waiting for it. Longer than the
#: runner's own SIGTERM→SIGKILL grace, so a well-behaved abort always completes first.
TASK_ABORT_TIMEOUT = 15.0
#: Pause after the task source failed unexpectedly, so a broken source cannot spin the loop.
TASK_SOURCE_ERROR_BACKOFF = 5.0

T = TypeVar("T")


class TaskHandle(Protocol):
    """A task as the core sees it; the Manager link makes these."""

    @property
    def task_id(self) -> str: ...

    @property
    def title(self) -> str: ...

    @property
    def job_id(self) -> str:
        """The job the task belongs to ("" when unknown); its records carry it."""
        ...

    async def run(self) -> None:
        """Run to the end, or until aborted; reporting to the Manager is the task's own business."""

    def abort(self, reason: str, *, force: bool = False) -> None:
        """Ask the task to stop and hand itself back; `force` kills at once. Idempotent."""


class TaskSource(Protocol):
    """Where work and remote requests come from (the Manager link). Both calls are cancelled on a status
    change; a remote status request is passed in through `Worker.request_status()`."""

    async def next_task(self) -> TaskHandle | None:
        """Awake: wait for the next task; None means "nothing now, ask again"."""

    async def watch_asleep(self) -> None:
        """Asleep: wait for the Manager to ask for another status."""


class RequestRefused(Exception):
    """A status request the core will not take; `name` becomes the D-Bus error name's last part."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything adapters show, read from the core's one state."""

    status: WorkerStatus
    pending: StatusRequest | None
    task_id: str
    task_title: str
    restart_exit_code: int
    manager_url: str
    worker_id: str
    name: str
    version: str
    detail: str

    @property
    def restartable(self) -> bool:
        return self.restart_exit_code != 0

    def describe(self) -> str:
        """One line for an operator (systemd's STATUS=)."""
        if self.status is WorkerStatus.OFFLINE:
            text = "shutting down"
        elif self.status is WorkerStatus.RESTART:
            text = f"restarting (exit code {self.restart_exit_code})"
        elif self.task_id:
            text = f"{self.status}: running task {self.task_title or self.task_id}"
        elif self.detail:
            text = f"{self.status}: {self.detail}"
        else:
            text = str(self.status)
        if self.pending is not None:
            text += f"; {self.pending.describe()}"
        return text


Listener = Callable[[], None]
TransitionListener = Callable[[WorkerStatus, WorkerStatus, StatusRequest], None]
RequestListener = Callable[[StatusRequest], None]


class Worker:
    def __init__(self, settings: WorkerSettings, *, task_source: TaskSource | None = None) -> None:
        self._settings = settings
        self._task_source = task_source
        self._status = WorkerStatus.STARTING
        self._pending: StatusRequest | None = None
        self._task: TaskHandle | None = None
        self._abort_requested = asyncio.Event()
        self._changed = asyncio.Event()
        self._exit_code: int | None = None
        self._worker_id = ""
        self._manager_url = ""
        self._detail = ""
        self._listeners: list[Listener] = []
        self._transition_listeners: list[TransitionListener] = []
        self._request_listeners: list[RequestListener] = []

    # --- reading ---

    @property
    def settings(self) -> WorkerSettings:
        return self._settings

    @property
    def status(self) -> WorkerStatus:
        return self._status

    @property
    def pending(self) -> StatusRequest | None:
        return self._pending

    @property
    def exit_code(self) -> int | None:
        return self._exit_code

    def snapshot(self) -> Snapshot:
        task = self._task
        return Snapshot(
            status=self._status,
            pending=self._pending,
            task_id=task.task_id if task else "",
            task_title=task.title if task else "",
            restart_exit_code=self._settings.restart_exit_code,
            manager_url=self._manager_url or self._settings.manager_url,
            worker_id=self._worker_id,
            name=self._settings.worker_name,
            version=__version__,
            detail=self._detail,
        )

    def subscribe(self, listener: Listener) -> None:
        """Called after every change; listeners read `snapshot()` and must not block."""
        self._listeners.append(listener)

    def on_transition(self, listener: TransitionListener) -> None:
        """Called with (old, new, request) each time the status changes."""
        self._transition_listeners.append(listener)

    def on_request(self, listener: RequestListener) -> None:
        """Called with every accepted request that changes something (one for the current status cancels
        a pending request; without one pending it is a no-op and not passed on)."""
        self._request_listeners.append(listener)

    # --- the one way in ---

    def request_status(self, status: WorkerStatus | str, *, lazy: bool, origin: Origin) -> str:
        """Take a status request from any origin; returns what happened, raises RequestRefused."""
        try:
            wanted = WorkerStatus(status)
        except ValueError:
            raise RequestRefused("InvalidStatus", f"unknown worker status {status!r}") from None
        if self._status in FINAL:
            raise RequestRefused("ShuttingDown", f"the worker is already going {self._status}")
        if wanted not in REQUESTABLE:
            choices = ", ".join(sorted(REQUESTABLE))
            raise RequestRefused(
                "InvalidStatus", f"status {wanted} cannot be requested; use one of {choices}"
            )
        if wanted is WorkerStatus.RESTART and not self._settings.restartable:
            raise RequestRefused(
                "NotRestartable",
                "this worker has no restart exit code configured (restart_exit_code / -restart-exit-code)",
            )

        request = StatusRequest(wanted, lazy, origin)
        if wanted is self._status and self._pending is None:
            return f"already {wanted}"  # changes nothing, so nobody needs to hear about it
        for listener in list(self._request_listeners):
            listener(request)
        if wanted is self._status:
            dropped, self._pending = self._pending, None
            assert dropped is not None
            log.info("status=%s origin=%s cancelled pending request: %s", wanted, origin, dropped.describe())
            self._notify()
            return f"cancelled pending request ({dropped.describe()})"

        self._pending = request
        if self._task is None:
            self._apply(request)
            return f"now {wanted}"
        log.info("status=%s task=%s request waits: %s", self._status, self._task.task_id, request.describe())
        if not lazy:
            self._abort_task(request.describe())
        self._notify()
        return f"{wanted} requested; {'after the current task' if lazy else 'aborting the current task'}"

    def cancel_request(self, origin: Origin) -> bool:
        """Drop the pending request, if any: the same as requesting the current status."""
        if self._pending is None or self._status in FINAL:
            return False
        self.request_status(self._status, lazy=False, origin=origin)
        return True

    # --- facts reported by adapters (not state: they change nothing the worker does) ---

    def set_detail(self, text: str) -> None:
        """What the Manager link is doing right now, e.g. "waiting for Manager at http://…"."""
        if text != self._detail:
            self._detail = text
            self._notify()

    def set_worker_id(self, worker_id: str) -> None:
        if worker_id != self._worker_id:
            self._worker_id = worker_id
            self._notify()

    def set_manager_url(self, url: str) -> None:
        """The Manager URL in use (one of several replicas); until told, the first configured one."""
        if url != self._manager_url:
            self._manager_url = url
            self._notify()

    def update_settings(self, settings: WorkerSettings) -> None:
        """Apply a reloaded configuration; a pending restart that is no longer possible is dropped."""
        self._settings = settings
        pending = self._pending
        if pending is not None and pending.status is WorkerStatus.RESTART and not settings.restartable:
            log.warning(
                "restart_exit_code removed by reload: dropping pending request (%s)", pending.describe()
            )
            self._pending = None
        self._notify()

    def force_stop(self) -> None:
        """Last resort before exiting at once: kill the running task without waiting."""
        if self._task is not None:
            self._task.abort("forced exit", force=True)

    # --- running ---

    async def run(self) -> int:
        """Serve until `offline` or `restart` is reached; returns the process exit code."""
        handlers: dict[WorkerStatus, Callable[[], Awaitable[object]]] = {
            WorkerStatus.AWAKE: self._run_awake,
            WorkerStatus.ASLEEP: self._run_asleep,
        }
        while self._exit_code is None:
            self._changed.clear()
            handler = handlers.get(self._status, self._changed.wait)  # starting: wait for the first request
            await handler()
        return self._exit_code

    async def _run_asleep(self) -> None:
        source = self._task_source
        while not self._changed.is_set():
            if source is None:
                await self._changed.wait()
                return
            try:
                await self._until_changed(source.watch_asleep())
            except Exception:
                log.exception("status=asleep watching for requests failed unexpectedly")
                await self._until_changed(asyncio.sleep(TASK_SOURCE_ERROR_BACKOFF))

    async def _run_awake(self) -> None:
        source = self._task_source
        if source is None:
            await self._changed.wait()
            return
        while not self._changed.is_set():
            try:
                task = await self._until_changed(source.next_task())
            except Exception:
                log.exception("status=awake fetching a task failed unexpectedly")
                await self._until_changed(asyncio.sleep(TASK_SOURCE_ERROR_BACKOFF))
                continue
            if task is None:
                continue
            if self._changed.is_set():
                log.info(
                    "task=%s not started: status changed to %s",
                    task.task_id,
                    self._status,
                    extra=journal.about_task(task.task_id, task.job_id),
                )
                return
            await self._run_task(task)
            if self._pending is not None:
                self._apply(self._pending)

    async def _until_changed(self, awaitable: Awaitable[T]) -> T | None:
        """Await `awaitable` unless the status changes first (then cancel it and return None)."""
        work = asyncio.ensure_future(awaitable)
        changed = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait({work, changed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            changed.cancel()
            if not work.done():
                await cancel_and_wait(work)
        return work.result() if not work.cancelled() else None

    async def _run_task(self, task: TaskHandle) -> None:
        # Everything logged while the task is handled, here and in the task's own asyncio tasks, is
        # about it (journal fields FLAMENCO_TASK and FLAMENCO_JOB).
        with journal.task_scope(task.task_id, task.job_id):
            await self._handle_task(task)

    async def _handle_task(self, task: TaskHandle) -> None:
        self._task = task
        self._abort_requested.clear()
        log.info("task=%s started: %s", task.task_id, task.title)
        self._notify()
        runner = asyncio.ensure_future(task.run())
        aborted = asyncio.ensure_future(self._abort_requested.wait())
        try:
            await asyncio.wait({runner, aborted}, return_when=asyncio.FIRST_COMPLETED)
            if not runner.done():
                done, _ = await asyncio.wait({runner}, timeout=TASK_ABORT_TIMEOUT)
                if not done:
                    log.error(
                        "task=%s did not stop within %.0fs of the abort; abandoning it",
                        task.task_id,
                        TASK_ABORT_TIMEOUT,
                    )
                    task.abort("abort timed out", force=True)
                    await cancel_and_wait(runner, TASK_ABORT_TIMEOUT)
        except asyncio.CancelledError:
            # The core itself is stopped: kill the task, and let it hand itself back before going on.
            task.abort("worker stopping", force=True)
            if not await cancel_and_wait(runner, TASK_ABORT_TIMEOUT):
                log.error("task=%s still running %.0fs after it was killed", task.task_id, TASK_ABORT_TIMEOUT)
            raise
        finally:
            aborted.cancel()
            self._task = None
            log.info("task=%s ended", task.task_id)
            self._notify()
        if runner.done() and not runner.cancelled() and (exc := runner.exception()) is not None:
            log.error("task=%s failed inside the worker", task.task_id, exc_info=exc)

    def _abort_task(self, reason: str) -> None:
        if self._task is not None and not self._abort_requested.is_set():
            log.info("task=%s aborting: %s", self._task.task_id, reason)
            self._abort_requested.set()
            self._task.abort(reason)

    def _apply(self, request: StatusRequest) -> None:
        old = self._status
        self._pending = None
        self._status = request.status
        if request.status is WorkerStatus.OFFLINE:
            self._exit_code = int(ExitCode.OK)
        elif request.status is WorkerStatus.RESTART:
            self._exit_code = self._settings.restart_exit_code
        log.info("status=%s previous=%s origin=%s lazy=%s", request.status, old, request.origin, request.lazy)
        self._changed.set()
        for listener in list(self._transition_listeners):
            listener(old, request.status, request)
        self._notify()

    def _notify(self) -> None:
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:
                log.exception("status listener failed")
