"""Applies workers' sleep schedules at their transitions (start, end, midnight), as Flamenco v3 does.

Only at transitions: a worker woken by hand during its sleep hours stays awake until the next one.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time

from flamenco_manager import journal_fields
from flamenco_manager.model import SleepSchedule, WorkerStatus
from flamenco_manager.services.sleep_schedule import scheduled_status
from flamenco_manager.services.workers import Workers
from flamenco_manager.store import Store

log = logging.getLogger(__name__)

# First check shortly after start, once workers had a moment to sign on (Flamenco's delay).
INITIAL_DELAY = 2.0
# Schedules change state at minute boundaries at the finest, so once a minute is enough.
CHECK_INTERVAL = 60.0


def next_check(schedule: SleepSchedule, now: float) -> float:
    """The earliest of: next local midnight, next start time, next end time."""
    local = datetime.datetime.fromtimestamp(now).astimezone()
    midnight = (local + datetime.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    candidates = [midnight]
    for clock in (schedule.start_time, schedule.end_time):
        if not clock:
            continue
        hour, minute = (int(part) for part in clock.split(":"))
        moment = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if moment <= local:
            moment += datetime.timedelta(days=1)
        candidates.append(moment)
    return min(candidates).timestamp()


class SleepScheduler:
    def __init__(self, store: Store, workers: Workers) -> None:
        self.store = store
        self.workers = workers

    def get(self, worker_id: int) -> SleepSchedule | None:
        return self.store.get_sleep_schedule(worker_id)

    def apply(self, schedule: SleepSchedule, now: float | None = None) -> None:
        """Request the scheduled status (non-lazy: renders can take hours) and plan the next check.

        An inactive schedule asks for `awake`, so switching a schedule off wakes its sleeping worker.
        """
        now = time.time() if now is None else now
        schedule.next_check = next_check(schedule, now)
        with self.store.transaction():
            self.store.set_sleep_schedule(schedule)
        worker = self.store.get_worker_by_id(schedule.worker_id)
        if worker is None or worker.deleted_at is not None or worker.status == WorkerStatus.ERROR:
            return
        wanted = scheduled_status(schedule, now)
        already = (worker.status_requested == wanted and not worker.lazy_status_request) or (
            worker.status == wanted and not worker.status_requested
        )
        if not already:
            log.info(
                "sleep schedule requests a status worker=%s status=%s",
                worker.uuid,
                wanted,
                extra=journal_fields.about(worker=worker.uuid),
            )
            self.workers.request_status(worker, wanted, is_lazy=False)

    def check(self) -> None:
        now = time.time()
        for schedule in self.store.sleep_schedules_due(now):
            self.apply(schedule, now)

    async def run(self) -> None:
        await asyncio.sleep(INITIAL_DELAY)
        while True:
            try:
                self.check()
            except Exception:
                log.exception("sleep schedule check failed; trying again next interval")
            await asyncio.sleep(CHECK_INTERVAL)
