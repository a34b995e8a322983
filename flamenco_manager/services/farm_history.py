"""The last hour of the farm, sampled, for the web UI's overview (`GET /api/v3/farm-history`, events).

The rules this module keeps:
- One sample every `interval` seconds (the configuration's `farm_history_interval`, 10 s by default): workers
  per status, working workers, queued and active tasks, active and queued jobs, and the tasks that became
  `completed` since the previous sample.
- Completions come from the state machine's own counter (every task status change passes through it), never
  from counting rows; the other figures are three small GROUP BY queries over the workers, the jobs and the
  per-job task counts, whatever the size of the farm.
- Samples live in the Manager's memory only: a page reload keeps them, a Manager restart starts afresh.
- A sample older than `HISTORY_SPAN` is dropped when a new one is taken (by its time, not by a count, so a
  loop that stalled does not keep an older hour).
- Each new sample is published on `/farm-history`, so open overviews draw it without polling.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flamenco_manager import payloads
from flamenco_manager.model import JobStatus, TaskStatus, WorkerStatus
from flamenco_manager.services.events import Hub
from flamenco_manager.services.statemachine import StateMachine
from flamenco_manager.store import Store

log = logging.getLogger(__name__)

# The overview shows the last hour: long enough to see a night's trend start, short enough to keep in memory.
HISTORY_SPAN = 3600.0
TOPIC = "/farm-history"


@dataclass(frozen=True, slots=True)
class Sample:
    time: float
    workers: dict[str, int]
    workers_working: int
    tasks_queued: int
    tasks_active: int
    tasks_completed: int
    jobs_active: int
    jobs_queued: int

    def as_json(self) -> dict[str, Any]:
        return {
            "time": payloads.timestamp(self.time),
            "workers": dict(self.workers),
            "workers_working": self.workers_working,
            "tasks_queued": self.tasks_queued,
            "tasks_active": self.tasks_active,
            "tasks_completed": self.tasks_completed,
            "jobs_active": self.jobs_active,
            "jobs_queued": self.jobs_queued,
        }


class FarmHistory:
    def __init__(
        self,
        store: Store,
        hub: Hub,
        machine: StateMachine,
        *,
        interval: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.hub = hub
        self.machine = machine
        self.interval = interval
        self.clock = clock
        # Bounded as well, in case the clock jumps back and times stop being in order.
        self._samples: collections.deque[Sample] = collections.deque(maxlen=self.capacity)
        self._completed_before = machine.tasks_completed

    @property
    def capacity(self) -> int:
        """Samples in one span, plus one: the sample exactly an hour old is still shown."""
        return math.ceil(HISTORY_SPAN / self.interval) + 1

    def samples(self) -> list[Sample]:
        """The samples of the last hour, oldest first."""
        return list(self._samples)

    def sample(self) -> Sample:
        """Take one sample now, drop those older than the span, and announce the new one."""
        now = self.clock()
        workers = {s.value: 0 for s in WorkerStatus}
        workers.update(self.store.count_workers_by_status())
        tasks = self.store.count_tasks_by_status((TaskStatus.QUEUED, TaskStatus.ACTIVE))
        jobs = self.store.count_jobs_by_status()
        completed_total = self.machine.tasks_completed
        active = tasks.get(TaskStatus.ACTIVE, 0)
        sample = Sample(
            time=now,
            workers=workers,
            # A worker runs one task at a time; an active task of a worker that just left is not a worker.
            workers_working=min(active, workers[WorkerStatus.AWAKE]),
            tasks_queued=tasks.get(TaskStatus.QUEUED, 0),
            tasks_active=active,
            tasks_completed=completed_total - self._completed_before,
            jobs_active=jobs.get(JobStatus.ACTIVE, 0),
            jobs_queued=jobs.get(JobStatus.QUEUED, 0),
        )
        self._completed_before = completed_total
        while self._samples and self._samples[0].time < now - HISTORY_SPAN:
            self._samples.popleft()
        self._samples.append(sample)
        self.hub.publish(TOPIC, sample.as_json)
        return sample

    async def run(self) -> None:
        """Sample every `interval` on a steady beat (a slow sample does not shift the later ones)."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            try:
                self.sample()
            except Exception:
                log.exception("farm history sample failed; trying again next interval")
            due += self.interval
            now = loop.time()
            if due < now:  # the loop was held up for longer than an interval: carry on from now
                due = now + self.interval
            await asyncio.sleep(due - now)
