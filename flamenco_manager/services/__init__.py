"""The Manager's services wired together, with the background loops they need.

`Manager` is the composition root: it builds each service once, starts and stops the background loops,
and holds nothing of its own domain; rules live in the services. The HTTP edge hands each handler only the
services it uses (see `api.keys`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pathlib
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from flamenco_manager.config import ManagerConfig, current_platform
from flamenco_manager.jobtypes.javascript import EngineLimits
from flamenco_manager.services.durability import Durability
from flamenco_manager.services.events import Hub
from flamenco_manager.services.farm_history import FarmHistory
from flamenco_manager.services.farm_status import FarmStatus
from flamenco_manager.services.job_deleter import JobDeleter
from flamenco_manager.services.job_types import JobTypes
from flamenco_manager.services.jobs import Jobs
from flamenco_manager.services.scheduler import Scheduler
from flamenco_manager.services.sleep_scheduler import SleepScheduler
from flamenco_manager.services.statemachine import StateMachine
from flamenco_manager.services.tags import Tags
from flamenco_manager.services.task_updates import TaskUpdates
from flamenco_manager.services.tasklogs import TaskLogs
from flamenco_manager.services.tasks import Tasks
from flamenco_manager.services.thumbnails import Thumbnails
from flamenco_manager.services.timeouts import TimeoutChecker
from flamenco_manager.services.workers import Workers
from flamenco_manager.store import Store, StoreError, StoreUnavailable, is_postgresql, open_store

if TYPE_CHECKING:
    from flamenco_manager.store.postgresql_leader import LeaderLock
    from flamenco_manager.store.postgresql_notify import NotifyRelay

log = logging.getLogger(__name__)

# Last-seen times are written in batches this often; worker timeouts are tens of seconds.
SEEN_FLUSH_INTERVAL = 2.0
# A replica that does not run the farm-wide loops tries to take them over this often; when the running
# replica dies they pause at most this long (worker timeouts and farm-history samples are tens of seconds).
ELECTION_RETRY = 2.0


def _resolve(config: ManagerConfig, path: str) -> pathlib.Path:
    """Relative paths in the configuration are relative to the configuration file's directory."""
    p = pathlib.Path(path)
    if p.is_absolute() or config.source_path is None:
        return p
    return config.source_path.parent / p


def job_types_of(config: ManagerConfig) -> JobTypes:
    """The job-types registry the configuration asks for (not yet loaded: `await start()`)."""
    engine = config.javascript_engine
    if "/" in engine:
        engine = str(_resolve(config, engine))  # a path; a bare name is looked up on PATH
    limits = EngineLimits(time_limit=config.job_script_time_limit, memory_mib=config.job_script_memory_limit)
    return JobTypes(_resolve(config, config.scripts_dir).absolute(), engine=engine, limits=limits)


class Manager:
    def __init__(self, config: ManagerConfig, store: Store | None = None) -> None:
        self.config = config
        self.platform = current_platform()
        self.storage = _resolve(config, config.local_manager_storage_path).absolute()
        try:
            self.storage.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"local_manager_storage_path {self.storage}: {exc.strerror or exc}") from exc
        if store is None:
            database = config.database
            store = open_store(database if is_postgresql(database) else _resolve(config, database))
        self.store = store
        self.hub = Hub()
        self.logs = TaskLogs(self.storage, self.hub)
        self.machine = StateMachine(self.store, self.hub, self.logs)
        self.workers = Workers(self.store, self.hub, self.machine)
        self.scheduler = Scheduler(self.store, self.machine, self.logs)
        self.task_updates = TaskUpdates(
            self.store,
            self.hub,
            self.machine,
            self.logs,
            blocklist_threshold=config.blocklist_threshold,
            fail_after_softfail_count=config.task_fail_after_softfail_count,
        )
        self.job_types = job_types_of(config)
        self.jobs = Jobs(self.store, self.hub, self.machine, config.variables, self.platform, self.job_types)
        self.job_deleter = JobDeleter(self.store, self.hub, self.machine, self.logs, self.storage)
        self.timeouts = TimeoutChecker(
            self.store,
            self.workers,
            self.machine,
            self.logs,
            task_timeout=config.task_timeout,
            worker_timeout=config.worker_timeout,
            initial_delay=config.timeout_initial_delay,
            interval=config.timeout_check_interval,
        )
        self.sleep_scheduler = SleepScheduler(self.store, self.workers)
        self.thumbnails = Thumbnails(self.store, self.hub, self.storage)
        self.farm_status = FarmStatus(self.store, self.hub)
        self.farm_history = FarmHistory(
            self.store, self.hub, self.machine, interval=config.farm_history_interval
        )
        self.tags = Tags(self.store, self.hub)
        self.tasks = Tasks(self.store, self.machine, self.logs)
        self.durability = Durability(self.store, self.logs)
        self.hub.status_hooks.append(self.farm_status.changed_soon)
        self._loops: list[asyncio.Task[Any]] = []
        self._relay: NotifyRelay | None = None
        self._leader: LeaderLock | None = None
        self._stopping = False
        self._farm_loops: list[asyncio.Task[Any]] = []
        # Whether this Manager runs the farm-wide loops (timeouts, sleep schedules, farm history, job
        # removal): always on SQLite; on PostgreSQL, only the replica holding the database's advisory lock.
        self.runs_farm_loops = False

    async def _start_relay(self) -> None:
        """On PostgreSQL, other replicas may share the database: carry the hub's news to and from them."""
        if not is_postgresql(self.config.database):
            return
        from flamenco_manager.store.postgresql import PostgreSQLStore
        from flamenco_manager.store.postgresql_notify import NotifyRelay

        if isinstance(self.store, PostgreSQLStore):
            self._relay = NotifyRelay(self.store, self.hub.receive, self.hub.news_missed)
            self.hub.relay = self._relay.send
            # The replicas share the storage path: task log files are written so the others see them.
            self.logs.shared = True
            await self._relay.start()

    async def start(self) -> None:
        self.store.start()
        await self._start_relay()
        fixed = self.machine.check_stuck()
        if fixed:
            log.info("repaired jobs stuck in a transitional status count=%d", fixed)
        self._spawn(self.thumbnails.run(), "thumbnails")
        self._spawn(self.farm_status.run(), "farm-status")
        if self._relay is None:
            self._start_farm_loops()
        else:
            from flamenco_manager.store.postgresql_leader import LeaderLock

            self._leader = LeaderLock(self._relay.store)
            self._spawn(self._elect(self._leader), "farm-loops-election")
        self._spawn(self._flush_seen_when_pending(), "seen-flush")
        self._spawn(self.job_deleter.announce(), "job-deletion-announcer")
        await self.job_types.start()
        self._spawn(self.job_types.watch(), "job-type-scripts")
        self.hub.publish("/lifecycle", {"type": "manager-startup"})

    def _start_farm_loops(self) -> None:
        """The loops that act for the whole farm, which one Manager per database runs (job removal too: two
        replicas removing the same jobs would race)."""
        self.runs_farm_loops = True
        for coro, name in (
            (self.timeouts.run(), "timeouts"),
            (self.sleep_scheduler.run(), "sleep-scheduler"),
            (self.farm_history.run(), "farm-history"),
            (self.job_deleter.run(), "job-deleter"),
        ):
            self._farm_loops.append(asyncio.create_task(coro, name=name))

    async def _stop_farm_loops(self) -> None:
        self.runs_farm_loops = False
        loops, self._farm_loops = self._farm_loops, []
        for loop in loops:
            loop.cancel()
        for loop in loops:
            with contextlib.suppress(asyncio.CancelledError):
                await loop

    async def _elect(self, leader: LeaderLock) -> None:
        """Run the farm-wide loops while this replica holds the lock; try to take it every ELECTION_RETRY."""
        try:
            while not self._stopping:
                if leader.held:
                    if not await leader.still_held():
                        log.warning("no longer running the farm-wide background loops")
                        await self._stop_farm_loops()
                elif await leader.try_acquire():
                    log.info("running the farm-wide background loops on this replica")
                    self._start_farm_loops()
                await asyncio.sleep(ELECTION_RETRY)
        finally:
            await self._stop_farm_loops()
            await leader.close()

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        self._loops.append(asyncio.create_task(coro, name=name))

    async def _flush_seen_when_pending(self) -> None:
        """Write last-seen times SEEN_FLUSH_INTERVAL after the first unwritten one; asleep otherwise."""
        pending = self.workers.seen_pending
        while True:
            await pending.wait()
            await asyncio.sleep(SEEN_FLUSH_INTERVAL)
            pending.clear()
            try:
                self.workers.flush_seen()
            except StoreUnavailable:
                pass  # the database is away; the store logs its loss and its return once each
            except Exception:
                log.exception("background job failed job=flush_seen")

    async def reload_job_types(self) -> None:
        """Read every job-type script again (SIGHUP); a script that fails keeps its last good version."""
        log.info("reloading the job type scripts dir=%s", self.job_types.scripts_dir)
        await self.job_types.reload(force=True)

    def stop_holding(self) -> None:
        """Answer held long-polls now and hold no new ones: the first step of a shutdown."""
        self.hub.publish("/lifecycle", {"type": "manager-shutdown"})
        self.hub.closing = True
        self.hub.wake_all_workers()
        self.hub.close_all()

    async def stop(self) -> None:
        """Stop the loops, write what is pending, close the database."""
        # Loops that reconnect to the database also end by this flag: Python 3.11's asyncio.wait_for
        # (in psycopg's connect) can swallow a cancellation that coincides with the socket being ready.
        self._stopping = True
        for loop in self._loops:
            loop.cancel()
        for loop in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        self._loops.clear()
        await self._stop_farm_loops()
        await self.job_types.close()
        self.farm_status.close()
        self.hub.close_all()
        if self._relay is not None:
            self.hub.relay = None
            await self._relay.close()
            self._relay = None
        try:
            self.workers.flush_seen(held=True)
        finally:
            self.logs.close()
            self.store.close()
