"""How often the worker asks the Manager, and how long it waits after trouble: every interval in one place.

Against a Manager that long-polls (ours) most of these never apply: a held request answers as soon as
there is news. They are the fallback for a stock Flamenco Manager and for a sick or absent one.
"""

from __future__ import annotations

import random

from flamenco_worker.manager_client import ManagerUnreachable, UnexpectedAnswer

#: Sign-on retry while the Manager is unreachable (Flamenco: every 5 s, forever).
SIGN_ON_RETRY = 5.0
#: After a 204 from a Manager that does not long-poll: Flamenco's `durationNoTask`.
NO_TASK_INTERVAL = 20.0
#: Asleep, against a Manager that does not long-poll: Flamenco's `durationSleepCheck`.
ASLEEP_POLL_INTERVAL = 3.0
#: After an unexpected answer (5xx, garbage): long enough not to hammer a sick Manager, short enough to be
#: back at work soon after it recovers (Flamenco waits 1 min).
FETCH_FAILED_BACKOFF = 10.0
#: After no answer at all (Manager down or restarting): refused connections cost nothing, and the
#: farm should be back at work within seconds of a Manager restart.
UNREACHABLE_BACKOFF = 2.0
#: may-i-run period while a task runs, without long-poll (Flamenco's `mayKeepRunningPeriod`).
MAY_I_RUN_INTERVAL = 10.0
#: Pause before retrying an acknowledgement or mirror that did not get through.
STATUS_REPORT_RETRY = 2.0
#: The shortest pause a Retry-After can ask for: a proxy answering "Retry-After: 0" must not make the
#: worker call again in a tight loop.
RETRY_AFTER_MIN = 0.5
#: Random spread on poll intervals so a farm restarted at once does not poll in lockstep (±10 %).
JITTER = 0.1


def jittered(seconds: float) -> float:
    return seconds * random.uniform(1 - JITTER, 1 + JITTER)


def backoff_for(exc: Exception) -> float:
    """The pause after a failed call: short when nothing answered, longer when something answered badly,
    and what a busy Manager asks for (its 503's Retry-After, at most the longer pause)."""
    if isinstance(exc, ManagerUnreachable):
        return UNREACHABLE_BACKOFF
    if isinstance(exc, UnexpectedAnswer) and exc.retry_after is not None:
        return min(max(exc.retry_after, RETRY_AFTER_MIN), FETCH_FAILED_BACKOFF)
    return FETCH_FAILED_BACKOFF
