"""Worker statuses, status requests and the process exit-code contract."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class WorkerStatus(enum.StrEnum):
    """Flamenco v3's `WorkerStatus` values (the wire names)."""

    STARTING = "starting"
    AWAKE = "awake"
    ASLEEP = "asleep"
    ERROR = "error"  # only ever set by the Manager's timeout checker
    TESTING = "testing"  # in Flamenco's enum, unused since v3
    OFFLINE = "offline"
    RESTART = "restart"


#: Statuses a worker can be asked to go to; the others are Manager-side bookkeeping.
REQUESTABLE = frozenset({WorkerStatus.AWAKE, WorkerStatus.ASLEEP, WorkerStatus.OFFLINE, WorkerStatus.RESTART})

#: Statuses in which the process is on its way out.
FINAL = frozenset({WorkerStatus.OFFLINE, WorkerStatus.RESTART})


class Origin(enum.StrEnum):
    """Who asked for a status change."""

    MANAGER = "manager"
    LOCAL = "local"  # D-Bus
    SIGNAL = "signal"
    STARTUP = "startup"  # the worker's own first step out of `starting`

    @property
    def phrase(self) -> str:
        """How an operator reads it: "restart requested over D-Bus"."""
        return _ORIGIN_PHRASES[self]


_ORIGIN_PHRASES = {
    Origin.MANAGER: "by the Manager",
    Origin.LOCAL: "over D-Bus",
    Origin.SIGNAL: "by signal",
    Origin.STARTUP: "at startup",
}


@dataclass(frozen=True, slots=True)
class StatusRequest:
    status: WorkerStatus
    lazy: bool
    origin: Origin

    def describe(self) -> str:
        when = "after the current task" if self.lazy else "immediately"
        return f"{self.status} requested {self.origin.phrase}, {when}"


class ExitCode(enum.IntEnum):
    """Exit codes of the worker process; the restart code is configured, see `config`."""

    OK = 0  # Shut Down, SIGTERM/SIGINT, -help, -version
    CRASH = 1  # an unexpected exception
    CONFIG = 78  # EX_CONFIG from sysexits.h: invalid configuration or flags; systemd must not restart


#: Codes a restart_exit_code may not use, because they already mean something else.
RESERVED_EXIT_CODES = frozenset({int(ExitCode.CRASH), int(ExitCode.CONFIG)})
