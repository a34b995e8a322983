"""The events hub: the one way news travels, to SSE subscribers and to held long-poll requests."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

# An SSE subscriber that falls this far behind is dropped; it reconnects and re-fetches over REST.
SUBSCRIBER_QUEUE_SIZE = 2000
# Task-waiting workers woken per event-loop turn when new work appears. Waking a thousand at once made
# a thousand schedule attempts in one turn (~0.25 s during which nothing else was answered).
WAKE_BATCH = 64

TOPICS = (
    "/lifecycle",
    "/status",
    "/jobs",
    "/task",
    "/tasklog",
    "/workers",
    "/workertags",
    "/last-rendered",
    "/farm-history",  # ours: one sample of the farm overview at a time
)
# Topics every replica publishes for itself, never relayed: its own start and stop, and the farm
# status, which each replica derives again when told that statuses changed.
LOCAL_TOPICS = frozenset({"/lifecycle", "/status"})

# What a relay carries between replicas: a JSON-able list, its first item the kind of news.
RelayMessage = list[Any]


@dataclass(slots=True)
class Event:
    topic: str
    payload: dict[str, Any]
    job_id: str | None = None
    task_id: str | None = None


@dataclass(eq=False)
class Subscription:
    topics: frozenset[str]
    job_id: str | None
    task_id: str | None
    queue: asyncio.Queue[Event | None] = field(default_factory=lambda: asyncio.Queue(SUBSCRIBER_QUEUE_SIZE))
    dropped: bool = False

    def wants(self, event: Event) -> bool:
        if event.topic not in self.topics:
            return False
        if self.job_id is not None and event.job_id is not None and event.job_id != self.job_id:
            return False
        return not (self.task_id is not None and event.task_id is not None and event.task_id != self.task_id)


class Hub:
    """Publish/subscribe for browsers, plus wake-ups for long-polling workers.

    With several Manager replicas on one database, `relay` (set by the Manager) carries what is
    published and every wake-up to the other replicas, which hand it to `receive`.
    """

    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()
        self._topic_listeners: collections.Counter[str] = collections.Counter()
        self._worker_waiters: dict[int, set[asyncio.Future[None]]] = {}
        # Oldest first, with the sequence number each waiter registered under.
        self._work_waiters: dict[asyncio.Future[None], int] = {}
        self._work_seq = 0
        self._wake_upto = 0
        self._draining = False
        self.status_hooks: list[Callable[[], None]] = []
        # Called when another replica marked jobs for deletion (the replica that deletes jobs looks).
        self.deletion_hooks: list[Callable[[], None]] = []
        self.closing = False
        self.relay: Callable[[RelayMessage], None] | None = None

    # Event stream.

    def subscribe(self, topics: frozenset[str], job_id: str | None, task_id: str | None) -> Subscription:
        sub = Subscription(topics, job_id, task_id)
        self._subscriptions.add(sub)
        self._topic_listeners.update(topics)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subscriptions:
            self._subscriptions.discard(sub)
            self._topic_listeners.subtract(sub.topics)

    def has_listeners(self, topic: str) -> bool:
        """Whether an event on this topic may reach anyone: a subscriber here or, with a relay, possibly one
        on another replica (which this replica cannot see). Callers skip building events when it is False."""
        if self.relay is not None and topic not in LOCAL_TOPICS:
            return True
        return self._topic_listeners[topic] > 0

    def backlog(self) -> int:
        """Events waiting in the fullest subscriber's queue (those beyond SUBSCRIBER_QUEUE_SIZE drop it)."""
        return max((sub.queue.qsize() for sub in self._subscriptions), default=0)

    def publish(
        self,
        topic: str,
        payload: dict[str, Any] | Callable[[], dict[str, Any]],
        *,
        job_id: str | None = None,
        task_id: str | None = None,
    ) -> None:
        """Deliver an event; a callable payload is only built when someone listens to the topic (here, or
        on another replica: then always)."""
        if self.relay is not None and topic not in LOCAL_TOPICS:
            built = payload() if callable(payload) else payload
            self.relay(["publish", topic, built, job_id, task_id])
            self._publish_here(topic, built, job_id, task_id)
        else:
            self._publish_here(topic, payload, job_id, task_id)

    def _publish_here(
        self,
        topic: str,
        payload: dict[str, Any] | Callable[[], dict[str, Any]],
        job_id: str | None,
        task_id: str | None,
    ) -> None:
        if self._topic_listeners[topic] <= 0:
            return
        event = Event(topic, payload() if callable(payload) else payload, job_id, task_id)
        for sub in list(self._subscriptions):
            if not sub.wants(event):
                continue
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("event subscriber too slow, dropping it topic=%s", topic)
                sub.dropped = True
                self.unsubscribe(sub)
                sub.queue.get_nowait()
                sub.queue.put_nowait(None)

    def close_all(self) -> None:
        for sub in list(self._subscriptions):
            self.unsubscribe(sub)
            with contextlib.suppress(asyncio.QueueFull):
                sub.queue.put_nowait(None)

    def status_changed(self) -> None:
        """A job or worker changed status; things derived from all statuses (farm status) recompute."""
        if self.relay is not None:
            self.relay(["status"])
        self._status_changed_here()

    def _status_changed_here(self) -> None:
        for hook in self.status_hooks:
            hook()

    def jobs_marked_for_deletion(self) -> None:
        """Tell the other replicas that jobs were marked for deletion (the one that deletes them looks soon).
        Not acted on here: the replica that marked them knows which they are."""
        if self.relay is not None:
            self.relay(["deletions"])

    # Long-poll wake-ups.

    def waiter(self, worker_id: int, *, work: bool) -> asyncio.Future[None]:
        """A future resolved when something concerns this worker (and, with `work`, when new work may be
        schedulable). Resolved at once while the Manager is closing."""
        fut = asyncio.get_running_loop().create_future()
        if self.closing:
            fut.set_result(None)
            return fut
        self._worker_waiters.setdefault(worker_id, set()).add(fut)
        if work:
            self._work_seq += 1
            self._work_waiters[fut] = self._work_seq
        fut.add_done_callback(lambda f: self._forget(worker_id, f))
        return fut

    def _forget(self, worker_id: int, fut: asyncio.Future[None]) -> None:
        self._work_waiters.pop(fut, None)
        waiters = self._worker_waiters.get(worker_id)
        if waiters is not None:
            waiters.discard(fut)
            if not waiters:
                del self._worker_waiters[worker_id]

    def wake_worker(self, worker_id: int) -> None:
        if self.relay is not None:
            self.relay(["wake", worker_id])
        self._wake_worker_here(worker_id)

    def _wake_worker_here(self, worker_id: int) -> None:
        for fut in list(self._worker_waiters.get(worker_id, ())):
            if not fut.done():
                fut.set_result(None)

    def wake_all_workers(self) -> None:
        """Wake every held request now (at shutdown together with `closing`, which answers them)."""
        for worker_id in list(self._worker_waiters):
            self._wake_worker_here(worker_id)

    def news_missed(self) -> None:
        """News may have been lost (the database connection carrying it between replicas was down): every
        held worker request re-reads its state now, every event stream ends so that its browser reconnects
        and fetches afresh, and what derives from all statuses is computed again. Here only."""
        if self.closing:
            return
        self.wake_all_workers()
        self.close_all()
        self._status_changed_here()

    def work_available(self) -> None:
        """Wake every worker waiting for a task now, oldest first, WAKE_BATCH per loop turn."""
        if self.relay is not None:
            self.relay(["work"])
        self._work_available_here()

    def _work_available_here(self) -> None:
        self._wake_upto = self._work_seq
        if not self._draining:
            self._draining = True
            self._drain()

    def _drain(self) -> None:
        woken = 0
        for fut, seq in list(self._work_waiters.items()):
            if seq > self._wake_upto:
                break  # registered after the news (e.g. woken, found nothing, waiting again)
            if woken == WAKE_BATCH:
                asyncio.get_running_loop().call_soon(self._drain)
                return
            if not fut.done():
                fut.set_result(None)
                woken += 1
        self._draining = False

    def is_held(self, worker_id: int) -> bool:
        """Whether this worker has a request held open right now (it counts as seen)."""
        return worker_id in self._worker_waiters

    def held_workers(self) -> set[int]:
        """Workers with a request held open right now; they count as seen."""
        return {worker_id for worker_id, waiters in self._worker_waiters.items() if waiters}

    # News from other replicas.

    def receive(self, message: RelayMessage) -> None:
        """Act on what another replica's hub relayed, here only (never relayed again)."""
        match message:
            case ["publish", str(topic), dict(payload), job_id, task_id]:
                self._publish_here(topic, payload, job_id, task_id)
            case ["wake", int(worker_id)]:
                self._wake_worker_here(worker_id)
            case ["work"]:
                self._work_available_here()
            case ["status"]:
                self._status_changed_here()
            case ["deletions"]:
                for hook in self.deletion_hooks:
                    hook()
            case _:
                log.warning("unknown relayed event ignored kind=%.40s", message[:1])
