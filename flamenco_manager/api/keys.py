"""What the handlers use, one typed application key per service (`web.AppKey`).

`build_app` stores each service under its key; a handler asks for exactly the ones it needs with
`need(request, JOBS)`. aiohttp releases before 3.9 (Debian bookworm ships 3.8) have no `web.AppKey`; there
a small key class of our own takes its place, so the same code runs, unwarned, on old and new releases.
"""

from __future__ import annotations

import pathlib
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from aiohttp import web

from flamenco_manager.config import ManagerConfig
from flamenco_manager.services.durability import Durability
from flamenco_manager.services.events import Hub
from flamenco_manager.services.farm_history import FarmHistory
from flamenco_manager.services.farm_status import FarmStatus
from flamenco_manager.services.job_deleter import JobDeleter
from flamenco_manager.services.jobs import Jobs
from flamenco_manager.services.scheduler import Scheduler
from flamenco_manager.services.sleep_scheduler import SleepScheduler
from flamenco_manager.services.tags import Tags
from flamenco_manager.services.task_updates import TaskUpdates
from flamenco_manager.services.tasklogs import TaskLogs
from flamenco_manager.services.tasks import Tasks
from flamenco_manager.services.thumbnails import Thumbnails
from flamenco_manager.services.workers import Workers
from flamenco_manager.store import StoreReads

T = TypeVar("T")


class _Key(Generic[T]):
    """An application key carrying the type of its value (aiohttp < 3.9)."""

    __slots__ = ("_name",)

    def __init__(self, name: str, t: type[T] | None = None) -> None:
        self._name = name

    def __repr__(self) -> str:
        return f"<AppKey({self._name})>"


if TYPE_CHECKING:
    AppKey = _Key
else:
    AppKey = getattr(web, "AppKey", _Key)


def _slots(app: web.Application) -> MutableMapping[Any, Any]:
    # Typed loosely on purpose: aiohttp < 3.9 declares its keys as `str`, newer ones as `str | AppKey`.
    return app


def provide(app: web.Application, key: _Key[T], value: T) -> None:
    _slots(app)[key] = value


def need(request: web.Request, key: _Key[T]) -> T:
    """The value stored under `key` in the request's application."""
    value: T = _slots(request.app)[key]
    return value


CONFIG = AppKey("config", ManagerConfig)
#: Reads for big answers (lists built off the event loop); every write goes through a service.
STORE = AppKey("store", StoreReads)
STORAGE = AppKey("storage", pathlib.Path)
HUB = AppKey("hub", Hub)
DURABILITY = AppKey("durability", Durability)
JOBS = AppKey("jobs", Jobs)
JOB_DELETER = AppKey("job_deleter", JobDeleter)
TASKS = AppKey("tasks", Tasks)
TAGS = AppKey("tags", Tags)
WORKERS = AppKey("workers", Workers)
SCHEDULER = AppKey("scheduler", Scheduler)
TASK_UPDATES = AppKey("task_updates", TaskUpdates)
SLEEP_SCHEDULER = AppKey("sleep_scheduler", SleepScheduler)
THUMBNAILS = AppKey("thumbnails", Thumbnails)
FARM_STATUS = AppKey("farm_status", FarmStatus)
FARM_HISTORY = AppKey("farm_history", FarmHistory)
TASK_LOGS = AppKey("task_logs", TaskLogs)
