"""The Manager link: Flamenco v3's worker protocol as the core's task source.

* start: sign on with the stored credentials (register first when there are none), retrying while the
  Manager is unreachable; the Manager's `status_requested` is the first status;
* awake: `POST /worker/task` (long-polled with `Prefer: wait` when the Manager offers it); 423 passes the
  Manager's request to the core; 409 re-acknowledges our status and then signs on again; 403 signs on again;
* asleep: `GET /worker/state`;
* running a task: `may-i-run`, so an immediate request or a cancelled task stops the work at once;
* every status change is acknowledged (`state-changed`; offline/restart by signing off at shutdown);
* local (D-Bus) requests are mirrored onto the Manager's worker-management API first, so the latest
  request wins whoever made it and the web UI shows the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass

from flamenco_worker.config import WorkerSettings
from flamenco_worker.credentials import Credentials, load_credentials, new_secret, save_credentials
from flamenco_worker.manager_client import (
    LONG_POLL_WAIT,
    ManagerClient,
    ManagerUnreachable,
    Unauthorised,
    UnexpectedAnswer,
)
from flamenco_worker.outbox import Outbox
from flamenco_worker.output_upload import OutputUploader
from flamenco_worker.status import Origin, StatusRequest, WorkerStatus
from flamenco_worker.task_run import ManagedTask
from flamenco_worker.uplink import SHUTDOWN_FLUSH_TIMEOUT, Uplink
from flamenco_worker.worker import RequestRefused, Worker

log = logging.getLogger(__name__)

#: Sign-on retry while the Manager is unreachable (Flamenco: every 5 s, forever).
SIGN_ON_RETRY = 5.0
#: After a 204 from a Manager that does not long-poll: Flamenco's `durationNoTask`.
NO_TASK_INTERVAL = 20.0
#: Asleep, against a Manager that does not long-poll: Flamenco's `durationSleepCheck`.
ASLEEP_POLL_INTERVAL = 3.0
#: After an unexpected answer (5xx, garbage): long enough not to hammer a sick Manager.
FETCH_FAILED_BACKOFF = 10.0
#: After no answer at all (Manager down or restarting): refused connections cost nothing, and the
#: farm should be back at work within seconds of a Manager restart.
UNREACHABLE_BACKOFF = 2.0


def backoff_for(exc: Exception) -> float:
    return UNREACHABLE_BACKOFF if isinstance(exc, ManagerUnreachable) else FETCH_FAILED_BACKOFF


#: may-i-run period while a task runs, without long-poll (Flamenco's `mayKeepRunningPeriod`).
MAY_I_RUN_INTERVAL = 10.0
#: Pause before retrying an acknowledgement or mirror that did not get through.
CONTROL_RETRY = 2.0
#: Sign-off must not hold up shutdown for long (Flamenco: 3 s).
SIGN_OFF_TIMEOUT = 3.0
#: Random spread on poll intervals so a farm restarted at once does not poll in lockstep (±10 %).
JITTER = 0.1


def jittered(seconds: float) -> float:
    return seconds * random.uniform(1 - JITTER, 1 + JITTER)


@dataclass(frozen=True, slots=True)
class _Ack:
    status: WorkerStatus


@dataclass(frozen=True, slots=True)
class _Mirror:
    status: WorkerStatus
    lazy: bool


class ManagerLink:
    def __init__(self, settings: WorkerSettings, client: ManagerClient, outbox: Outbox) -> None:
        self._settings = settings
        self._client = client
        self._outbox = outbox
        self.uplink = Uplink(client, outbox)
        self._uploader = OutputUploader(client)
        self._worker: Worker | None = None
        self._creds: Credentials | None = None
        self._signed_on = False
        self._resign = False
        self._conflicts = 0
        self._control: asyncio.Queue[_Ack | _Mirror] = asyncio.Queue()
        self._control_task: asyncio.Task[None] | None = None
        self._running: dict[str, ManagedTask] = {}
        self._problem = ""  # last problem logged, so a retry loop logs once per kind of trouble

    # --- wiring ---

    def attach(self, worker: Worker) -> None:
        self._worker = worker
        worker.on_transition(self._on_transition)
        worker.on_request(self._on_request)
        self.uplink.on_reassigned(self._on_reassigned)

    @property
    def worker(self) -> Worker:
        assert self._worker is not None, "attach() first"
        return self._worker

    def retarget(self, settings: WorkerSettings) -> None:
        """Settings reloaded: a new Manager URL or name means signing on again."""
        if (settings.manager_url, settings.worker_name, settings.restart_exit_code) != (
            self._settings.manager_url,
            self._settings.worker_name,
            self._settings.restart_exit_code,
        ):
            self._client.base_url = settings.manager_url.rstrip("/")
            self._resign = self._signed_on
        self._settings = settings

    # --- start and stop ---

    async def connect(self) -> WorkerStatus:
        """Sign on (registering first if needed); retries until the Manager answers. Returns its request."""
        status = await self._sign_on()
        self._control_task = self._control_task or asyncio.get_running_loop().create_task(
            self._control_loop()
        )
        await self.uplink.flush()  # leftovers from the previous run go first
        return status

    def acknowledge_current(self) -> None:
        """A local request decided the first status before sign-on finished: tell the Manager."""
        self._control.put_nowait(_Ack(self.worker.status))

    async def close(self) -> None:
        if self._control_task is not None:
            self._control_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._control_task
        await self.uplink.flush(SHUTDOWN_FLUSH_TIMEOUT)
        await self.uplink.close()
        await self._uploader.close()
        if self._signed_on:
            try:
                await self._client.sign_off(SIGN_OFF_TIMEOUT)
                log.info("signed off from the Manager at %s", self._settings.manager_url)
            except (ManagerUnreachable, UnexpectedAnswer) as exc:
                log.warning("sign-off failed (%s); the Manager will time this worker out", exc)
        await self._client.close()
        self._outbox.close()

    async def _sign_on(self) -> WorkerStatus:
        url = self._settings.manager_url
        self.worker.set_detail(f"signing on at Manager {url}")
        while True:
            try:
                if self._creds is None:
                    self._creds = load_credentials(self._settings.flamenco_home) or await self._register()
                self._client.set_credentials(self._creds.worker_id, self._creds.worker_secret)
                self.worker.set_worker_id(self._creds.worker_id)
                requested = await self._client.sign_on(
                    self._settings.worker_name, list(self._settings.task_types), self._settings.restartable
                )
            except Unauthorised:
                log.warning(
                    "worker=%s the Manager at %s does not know this worker's credentials; "
                    "REGISTERING AS A NEW WORKER (the old entry can be removed in the web interface)",
                    self._creds.worker_id if self._creds else "?",
                    url,
                )
                self._creds = await self._register()
                continue
            except (ManagerUnreachable, UnexpectedAnswer) as exc:
                self._trouble(f"Manager at {url} unreachable ({exc}); retrying every {SIGN_ON_RETRY:.0f}s")
                await asyncio.sleep(SIGN_ON_RETRY)
                continue
            break
        self._signed_on = True
        self._resign = False
        self._conflicts = 0
        self._clear_trouble(f"signed on at Manager {url} as worker {self._creds.worker_id}")
        try:
            return WorkerStatus(requested)
        except ValueError:
            log.warning("the Manager asked for unknown status %r at sign-on; going asleep", requested)
            return WorkerStatus.ASLEEP

    async def _register(self) -> Credentials:
        secret = new_secret()
        worker_id = await self._client.register(
            self._settings.worker_name, secret, list(self._settings.task_types)
        )
        creds = Credentials(worker_id, secret)
        try:
            path = save_credentials(self._settings.flamenco_home, creds)
        except OSError as exc:
            log.error(
                "worker=%s registered, but its credentials cannot be saved in %s (%s); it keeps them in "
                "memory and will register as a new worker after a restart",
                worker_id,
                self._settings.flamenco_home,
                exc,
            )
            return creds
        log.info(
            "worker=%s registered at Manager %s; credentials in %s",
            worker_id,
            self._settings.manager_url,
            path,
        )
        return creds

    # --- the core's task source ---

    async def next_task(self) -> ManagedTask | None:
        await self._before_call()
        if self.uplink.queued and not await self.uplink.flush():
            # The Manager has not heard how the last task ended; asking now would get that same task
            # back (it is still ours and active over there) and run it twice.
            self._trouble(
                f"{self.uplink.queued} task updates still queued; no new task until they are delivered"
            )
            await asyncio.sleep(jittered(UNREACHABLE_BACKOFF))
            return None
        self.worker.set_detail(f"waiting for a task from Manager at {self._settings.manager_url}")
        try:
            answer = await self._client.fetch_task(wait=LONG_POLL_WAIT)
        except Unauthorised:
            self._resign = True
            return None
        except (ManagerUnreachable, UnexpectedAnswer) as exc:
            self._trouble(f"cannot fetch a task ({exc}); retrying in {backoff_for(exc):.0f}s")
            await asyncio.sleep(jittered(backoff_for(exc)))
            return None
        self._clear_trouble("Manager reachable again")
        if answer.task is not None:
            self._conflicts = 0
            return ManagedTask(
                answer.task,
                self.uplink,
                self._uploader,
                watch=self._watch_task,
                oom_score_adjust=self._settings.oom_score_adjust,
            )
        if answer.status_requested is not None:
            self._conflicts = 0
            await self._follow_manager(answer.status_requested)
            return None
        if answer.conflict is not None:
            await self._recover_from_conflict(answer.conflict)
            return None
        self._conflicts = 0
        if not answer.long_polled:
            await asyncio.sleep(jittered(NO_TASK_INTERVAL))
        return None

    async def watch_asleep(self) -> None:
        await self._before_call()
        self.worker.set_detail("")
        try:
            requested, held = await self._client.state(wait=LONG_POLL_WAIT)
        except Unauthorised:
            self._resign = True
            return
        except (ManagerUnreachable, UnexpectedAnswer) as exc:
            self._trouble(f"cannot ask the Manager for requests ({exc}); retrying in {backoff_for(exc):.0f}s")
            await asyncio.sleep(jittered(backoff_for(exc)))
            return
        self._clear_trouble("Manager reachable again")
        if requested is not None:
            await self._follow_manager(requested)
        elif not held:
            await asyncio.sleep(jittered(ASLEEP_POLL_INTERVAL))

    async def _before_call(self) -> None:
        """Sign on again if needed, then let acknowledgements and mirrors go out before the next question."""
        if self._resign:
            requested = await self._sign_on()
            self._control.put_nowait(_Ack(self.worker.status))
            if requested is not self.worker.status:
                await self._follow_manager(requested)
        await self._control.join()

    async def _follow_manager(self, status: str) -> None:
        try:
            outcome = self.worker.request_status(status, lazy=False, origin=Origin.MANAGER)
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

    async def _recover_from_conflict(self, message: str) -> None:
        # Flamenco workers stay stuck here (the Manager thinks they are not awake, e.g. after a timeout put
        # them in `error`). First say again what we are; if that does not help, sign on afresh.
        self._conflicts += 1
        if self._conflicts == 1:
            log.warning(
                "the Manager refused a task fetch (409: %s); acknowledging status %s again",
                message.strip()[:200],
                self.worker.status,
            )
            self._control.put_nowait(_Ack(self.worker.status))
        else:
            log.warning("the Manager still refuses (409); signing on again")
            self._resign = True
            self._conflicts = 0

    async def _watch_task(self, task: ManagedTask) -> None:
        """While a task runs: may it keep running? An immediate request or a cancelled task stops it."""
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
                if answer.status_change_requested:
                    try:
                        requested, _ = await self._client.state(wait=None)
                    except (ManagerUnreachable, UnexpectedAnswer):
                        requested = None
                    if requested is not None:
                        await self._follow_manager(requested)
                        return
                task.abort(f"the Manager says: {answer.reason or 'stop'}")
                return
        finally:
            self._running.pop(task.task_id, None)

    def _on_reassigned(self, task_id: str) -> None:
        task = self._running.get(task_id)
        if task is not None:
            task.abort("the Manager reassigned the task")

    # --- acknowledgements and mirrors, in order, by one sender ---

    def _on_transition(self, old: WorkerStatus, new: WorkerStatus, request: StatusRequest) -> None:
        if self._signed_on and new in (WorkerStatus.AWAKE, WorkerStatus.ASLEEP):
            self._control.put_nowait(_Ack(new))

    def _on_request(self, request: StatusRequest) -> None:
        if request.origin is Origin.LOCAL and self._creds is not None and self._signed_on:
            self._control.put_nowait(_Mirror(request.status, request.lazy))

    async def _control_loop(self) -> None:
        while True:
            item = await self._control.get()
            try:
                await self._deliver(item)
            finally:
                self._control.task_done()

    async def _deliver(self, item: _Ack | _Mirror) -> None:
        while True:
            try:
                if isinstance(item, _Ack):
                    await self._client.state_changed(str(item.status))
                    log.info("acknowledged status=%s to the Manager", item.status)
                else:
                    assert self._creds is not None
                    code = await self._client.request_own_status(
                        self._creds.worker_id, str(item.status), item.lazy
                    )
                    if code not in (200, 204):
                        log.warning("mirroring local request %s to the Manager: HTTP %d", item.status, code)
                return
            except Unauthorised:
                self._resign = True
                return
            except UnexpectedAnswer as exc:
                log.warning("telling the Manager about status %s failed: %s", item.status, exc)
                return
            except ManagerUnreachable as exc:
                self._trouble(f"Manager unreachable ({exc}); will tell it about status {item.status}")
                await asyncio.sleep(CONTROL_RETRY)

    # --- logging trouble once ---

    def _trouble(self, text: str) -> None:
        kind = text.split("(")[0]
        if kind != self._problem:
            log.warning("%s", text)
            self._problem = kind
        self.worker.set_detail(text)

    def _clear_trouble(self, text: str) -> None:
        if self._problem:
            log.info("%s", text)
            self._problem = ""
        elif text.startswith("signed on"):
            log.info("%s", text)
