"""Worker sleep schedules: validation, and the status a schedule asks for at a moment (Flamenco v3's rules:
asleep inside [start, end) on the listed days, local time, awake otherwise)."""

from __future__ import annotations

import datetime
import re

from flamenco_manager.model import SleepSchedule, WorkerStatus
from flamenco_manager.services.errors import Invalid

DAY_CODES = ("mo", "tu", "we", "th", "fr", "sa", "su")
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def _parse_time(field: str, value: str) -> str:
    value = value.strip()
    if not value:
        return ""
    match = _TIME.match(value)
    if not match:
        raise Invalid(field, f"{value!r} is not a time of day as HH:MM")
    return f"{int(match.group(1)):02d}:{match.group(2)}"


def normalise(
    worker_id: int, *, is_active: bool, days_of_week: str, start_time: str, end_time: str
) -> SleepSchedule:
    """A `WorkerSleepSchedule` made canonical: HH:MM times (swapped if reversed), 2-letter days."""
    days = []
    for token in days_of_week.lower().split():
        code = token[:2]
        if code not in DAY_CODES:
            raise Invalid("days_of_week", f"{token!r} is not a day (use mo tu we th fr sa su)")
        if code not in days:
            days.append(code)
    start = _parse_time("start_time", start_time)
    end = _parse_time("end_time", end_time)
    if start and end and end < start:
        start, end = end, start
    return SleepSchedule(worker_id, is_active, " ".join(days), start, end, None)


def scheduled_status(schedule: SleepSchedule | None, now: float) -> str:
    """The status the schedule wants at `now` (local time): asleep inside [start, end), else awake."""
    if schedule is None or not schedule.is_active:
        return WorkerStatus.AWAKE
    local = datetime.datetime.fromtimestamp(now)
    if schedule.days_of_week and DAY_CODES[local.weekday()] not in schedule.days_of_week.split():
        return WorkerStatus.AWAKE
    clock = local.strftime("%H:%M")
    start = schedule.start_time or "00:00"
    end = schedule.end_time or "24:00"
    return WorkerStatus.ASLEEP if start <= clock < end else WorkerStatus.AWAKE


def as_json(schedule: SleepSchedule) -> dict:
    return {
        "is_active": schedule.is_active,
        "days_of_week": schedule.days_of_week,
        "start_time": schedule.start_time,
        "end_time": schedule.end_time,
    }
