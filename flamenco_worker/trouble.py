"""Trouble talking to the Manager, told once per kind: retry loops must not flood the journal.

Each part of the Manager link names the kind of trouble it has (`Trouble`); a retry that hits the same
kind again only updates the worker's detail line (D-Bus, systemd STATUS=), a new kind is logged as a
warning, and the first success after trouble is logged once.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


class Trouble(enum.Enum):
    SIGN_ON = "the Manager cannot be reached to sign on"
    TASK_FETCH = "no task can be fetched"
    REQUEST_WATCH = "the Manager cannot be asked for requests"
    UPDATES_QUEUED = "task updates are still queued"
    STATUS_REPORT = "the Manager cannot be told the worker's status"


class TroubleLog:
    def __init__(self, set_detail: Callable[[str], None]) -> None:
        self._set_detail = set_detail
        self._current: Trouble | None = None

    def report(self, kind: Trouble, text: str) -> None:
        """Log `text` unless this kind of trouble is already known; show it as the detail line either way."""
        if kind is not self._current:
            log.warning("%s", text)
            self._current = kind
        self._set_detail(text)

    def clear(self, recovered: str | None = None) -> None:
        """A call got through: log `recovered` if there was trouble before (None: the caller logs)."""
        if self._current is not None and recovered is not None:
            log.info("%s (after: %s)", recovered, self._current.value)
        self._current = None
