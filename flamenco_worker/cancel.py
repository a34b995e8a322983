"""Stopping a child asyncio task without losing the caller's own cancellation.

`task.cancel()` followed by `with suppress(CancelledError): await task` swallows a cancellation aimed at
the *caller* as well, when one arrives during that await. Waiting with `asyncio.wait()` instead never
raises the child's CancelledError, so only the caller's own cancellation can interrupt it, and it always
propagates.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)


async def cancel_and_wait(task: asyncio.Future[Any], time_limit: float | None = None) -> bool:
    """Cancel `task` and wait until it has finished; False when it is still running after `time_limit`.

    An exception the task ended with (other than its cancellation) is logged, not raised: the caller
    is tearing it down and has nothing left to do with its result."""
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=time_limit)
    if not done:
        return False
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("background task ended with an error while being stopped", exc_info=exc)
    return True
