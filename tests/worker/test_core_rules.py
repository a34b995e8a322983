"""The core's request rules, with a cancellable stand-in task (no I/O)."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from flamenco_worker.config import WorkerSettings
from flamenco_worker.status import Origin, WorkerStatus
from flamenco_worker.worker import RequestRefused, Worker

AWAKE, ASLEEP, OFFLINE, RESTART = (
    WorkerStatus.AWAKE,
    WorkerStatus.ASLEEP,
    WorkerStatus.OFFLINE,
    WorkerStatus.RESTART,
)


class StandInTask:
    """Runs until finished or aborted; records how it ended."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.title = f"stand-in {task_id}"
        self.job_id = ""
        self.started = asyncio.Event()
        self._finish = asyncio.Event()
        self.aborted: str | None = None
        self.completed = False

    async def run(self) -> None:
        self.started.set()
        await self._finish.wait()
        self.completed = self.aborted is None

    def abort_reason(self) -> str | None:
        """`aborted`, read afresh (a test that checked it before a request must not have it narrowed)."""
        return self.aborted

    def finish(self) -> None:
        self._finish.set()

    def abort(self, reason: str, *, force: bool = False) -> None:
        if self.aborted is None:
            self.aborted = reason
        self._finish.set()


class QueueSource:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[StandInTask] = asyncio.Queue()
        self.fetches = 0
        self.asleep_watches = 0

    async def next_task(self) -> StandInTask:
        self.fetches += 1
        return await self.queue.get()

    async def watch_asleep(self) -> None:
        self.asleep_watches += 1
        await asyncio.Event().wait()


class Harness:
    def __init__(self, *, restart_exit_code: int = 47) -> None:
        self.source = QueueSource()
        settings = WorkerSettings(worker_name="t", restart_exit_code=restart_exit_code)
        self.worker = Worker(settings, task_source=self.source)
        self.transitions: list[tuple[WorkerStatus, WorkerStatus]] = []
        self.worker.on_transition(lambda old, new, _req: self.transitions.append((old, new)))
        self.runner: asyncio.Task[int] | None = None

    async def start(self, status: WorkerStatus = AWAKE) -> None:
        self.worker.request_status(status, lazy=False, origin=Origin.STARTUP)
        self.runner = asyncio.create_task(self.worker.run())
        await asyncio.sleep(0)

    @property
    def core(self) -> asyncio.Task[int]:
        """The core's run(), once started."""
        assert self.runner is not None, "start() first"
        return self.runner

    async def busy(self, task_id: str = "t1") -> StandInTask:
        task = StandInTask(task_id)
        await self.source.queue.put(task)
        await asyncio.wait_for(task.started.wait(), 1)
        return task

    async def settle(self) -> None:
        for _ in range(10):
            await asyncio.sleep(0)

    async def stop(self) -> None:
        if self.runner and not self.runner.done():
            self.runner.cancel()
            with pytest.raises(asyncio.CancelledError):
                await self.runner


@pytest.fixture
async def harness():
    h = Harness()
    yield h
    await h.stop()


REQUESTS = [AWAKE, ASLEEP, OFFLINE, RESTART]


@pytest.mark.parametrize(
    ("start", "wanted", "lazy"), list(itertools.product([AWAKE, ASLEEP], REQUESTS, [True, False]))
)
async def test_idle_worker_applies_every_request_at_once(harness: Harness, start, wanted, lazy) -> None:
    await harness.start(start)
    outcome = harness.worker.request_status(wanted, lazy=lazy, origin=Origin.LOCAL)
    assert harness.worker.status is wanted
    assert harness.worker.pending is None
    if wanted is start:
        assert outcome == f"already {start}"
    await harness.settle()
    if wanted is OFFLINE:
        assert await harness.core == 0
    elif wanted is RESTART:
        assert await harness.core == 47
    else:
        assert not harness.core.done()


@pytest.mark.parametrize("wanted", [ASLEEP, OFFLINE, RESTART])
async def test_busy_worker_lazy_request_waits_for_task_and_takes_no_new_one(harness: Harness, wanted) -> None:
    await harness.start()
    task = await harness.busy()
    harness.worker.request_status(wanted, lazy=True, origin=Origin.MANAGER)
    assert harness.worker.status is AWAKE
    assert harness.worker.pending is not None and harness.worker.pending.status is wanted
    next_task = StandInTask("t2")
    await harness.source.queue.put(next_task)
    await harness.settle()
    assert task.aborted is None
    task.finish()
    await harness.settle()
    assert task.completed
    assert harness.worker.status is wanted
    assert not next_task.started.is_set(), "a new task was taken while a lazy request was pending"
    if wanted in (OFFLINE, RESTART):
        assert await harness.core == (0 if wanted is OFFLINE else 47)


@pytest.mark.parametrize("wanted", [ASLEEP, OFFLINE, RESTART])
async def test_busy_worker_immediate_request_aborts_task_first(harness: Harness, wanted) -> None:
    await harness.start()
    task = await harness.busy()
    harness.worker.request_status(wanted, lazy=False, origin=Origin.LOCAL)
    assert task.aborted is not None and str(wanted) in task.aborted
    await harness.settle()
    assert not task.completed
    assert harness.worker.status is wanted
    assert harness.transitions[-1] == (AWAKE, wanted)


@pytest.mark.parametrize("lazy", [True, False])
async def test_busy_worker_requesting_current_status_is_a_no_op(harness: Harness, lazy) -> None:
    await harness.start()
    task = await harness.busy()
    assert harness.worker.request_status(AWAKE, lazy=lazy, origin=Origin.LOCAL) == "already awake"
    await harness.settle()
    assert task.aborted is None and harness.worker.status is AWAKE


async def test_requesting_current_status_cancels_pending_request(harness: Harness) -> None:
    await harness.start()
    task = await harness.busy()
    harness.worker.request_status(OFFLINE, lazy=True, origin=Origin.MANAGER)
    outcome = harness.worker.request_status(AWAKE, lazy=True, origin=Origin.LOCAL)
    assert outcome.startswith("cancelled pending request")
    assert harness.worker.pending is None
    task.finish()
    second = await harness.busy("t2")
    assert harness.worker.status is AWAKE and harness.worker.snapshot().task_id == "t2"
    second.finish()


async def test_new_request_replaces_pending_one(harness: Harness) -> None:
    await harness.start()
    task = await harness.busy()
    harness.worker.request_status(ASLEEP, lazy=True, origin=Origin.MANAGER)
    harness.worker.request_status(RESTART, lazy=True, origin=Origin.LOCAL)
    pending = harness.worker.pending
    assert pending is not None and (pending.status, pending.origin) == (RESTART, Origin.LOCAL)
    task.finish()
    assert await harness.core == 47
    assert harness.transitions == [(WorkerStatus.STARTING, AWAKE), (AWAKE, RESTART)]


async def test_immediate_request_upgrades_a_pending_lazy_one(harness: Harness) -> None:
    await harness.start()
    task = await harness.busy()
    harness.worker.request_status(OFFLINE, lazy=True, origin=Origin.MANAGER)
    assert task.aborted is None
    harness.worker.request_status(OFFLINE, lazy=False, origin=Origin.SIGNAL)
    assert task.abort_reason() is not None
    assert await harness.core == 0


async def test_cancel_request(harness: Harness) -> None:
    await harness.start()
    assert harness.worker.cancel_request(Origin.LOCAL) is False
    task = await harness.busy()
    harness.worker.request_status(ASLEEP, lazy=True, origin=Origin.LOCAL)
    assert harness.worker.cancel_request(Origin.LOCAL) is True
    assert harness.worker.pending is None
    task.finish()


@pytest.mark.parametrize("busy", [True, False])
async def test_restart_refused_without_restart_code(busy: bool) -> None:
    h = Harness(restart_exit_code=0)
    await h.start()
    task = await h.busy() if busy else None
    with pytest.raises(RequestRefused) as refused:
        h.worker.request_status(RESTART, lazy=True, origin=Origin.LOCAL)
    assert refused.value.name == "NotRestartable"
    assert h.worker.status is AWAKE and h.worker.pending is None
    if task:
        assert task.aborted is None
        task.finish()
    await h.stop()


@pytest.mark.parametrize("status", ["error", "starting", "testing", "bogus"])
async def test_unrequestable_statuses_refused(harness: Harness, status: str) -> None:
    await harness.start()
    with pytest.raises(RequestRefused) as refused:
        harness.worker.request_status(status, lazy=False, origin=Origin.LOCAL)
    assert refused.value.name == "InvalidStatus"
    assert harness.worker.status is AWAKE


async def test_requests_refused_once_shutting_down(harness: Harness) -> None:
    await harness.start()
    harness.worker.request_status(OFFLINE, lazy=False, origin=Origin.LOCAL)
    with pytest.raises(RequestRefused) as refused:
        harness.worker.request_status(AWAKE, lazy=False, origin=Origin.LOCAL)
    assert refused.value.name == "ShuttingDown"
    assert await harness.core == 0


async def test_asleep_worker_fetches_no_tasks(harness: Harness) -> None:
    await harness.start(ASLEEP)
    await harness.settle()
    assert harness.source.fetches == 0
    assert harness.source.asleep_watches == 1
    harness.worker.request_status(AWAKE, lazy=False, origin=Origin.LOCAL)
    await harness.settle()
    assert harness.source.fetches == 1


async def test_reload_dropping_restart_code_drops_pending_restart(harness: Harness) -> None:
    await harness.start()
    task = await harness.busy()
    harness.worker.request_status(RESTART, lazy=True, origin=Origin.LOCAL)
    harness.worker.update_settings(WorkerSettings(worker_name="t", restart_exit_code=0))
    assert harness.worker.pending is None
    assert not harness.worker.snapshot().restartable
    task.finish()
    await harness.settle()
    assert harness.worker.status is AWAKE


async def test_status_line_says_who_asked_and_when(harness: Harness) -> None:
    await harness.start()
    await harness.busy()
    harness.worker.request_status(RESTART, lazy=True, origin=Origin.LOCAL)
    line = harness.worker.snapshot().describe()
    assert line == "awake: running task stand-in t1; restart requested over D-Bus, after the current task"


async def test_stuck_task_is_abandoned_after_abort_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("flamenco_worker.worker.TASK_ABORT_TIMEOUT", 0.05)

    class Stubborn(StandInTask):
        def abort(self, reason: str, *, force: bool = False) -> None:
            self.aborted = reason if force else None  # ignores a polite abort

    h = Harness()
    await h.start()
    task = Stubborn("s1")
    await h.source.queue.put(task)
    await asyncio.wait_for(task.started.wait(), 1)
    h.worker.request_status(OFFLINE, lazy=False, origin=Origin.SIGNAL)
    assert await asyncio.wait_for(h.core, 2) == 0
    assert task.aborted == "abort timed out"


async def test_request_listeners_hear_changes_only(harness: Harness) -> None:
    heard: list[tuple[str, bool]] = []
    harness.worker.on_request(lambda r: heard.append((str(r.status), r.lazy)))
    await harness.start()
    heard.clear()
    harness.worker.request_status(AWAKE, lazy=False, origin=Origin.LOCAL)  # no-op: not passed on
    task = await harness.busy()
    harness.worker.request_status(ASLEEP, lazy=True, origin=Origin.LOCAL)
    harness.worker.request_status(AWAKE, lazy=False, origin=Origin.LOCAL)  # cancels the pending request
    assert heard == [("asleep", True), ("awake", False)]
    task.finish()


async def test_cancelling_the_core_waits_for_the_task_to_hand_itself_back() -> None:
    class SlowToStop(StandInTask):
        """Needs a few loop turns to hand the task back once cancelled (as sending its last log does)."""

        handed_back = False

        async def run(self) -> None:
            self.started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                for _ in range(5):
                    await asyncio.sleep(0)
                self.handed_back = True
                raise

    h = Harness()
    await h.start()
    task = SlowToStop("s1")
    await h.source.queue.put(task)
    await asyncio.wait_for(task.started.wait(), 1)
    await h.stop()  # cancels the core's run() and expects its CancelledError
    assert task.aborted == "worker stopping"
    assert task.handed_back, "the core returned before its task had stopped"
