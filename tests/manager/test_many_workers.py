"""What keeps a Manager with thousands of connected workers cheap: work per event is about the workers
concerned, never a pass over every held request; and the open-files limit is raised at start."""

from __future__ import annotations

import asyncio
import os
import pathlib
import re
import resource
import signal
import subprocess
import sys
import tempfile
from _collections_abc import dict_items, dict_keys, dict_values
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from flamenco_manager.cli import GC_FULL_THRESHOLD
from flamenco_manager.services import SEEN_FLUSH_INTERVAL, Manager
from tests.manager.conftest import API, FakeWorker, Farm, eventually
from tests.support.manager_process import REPO, START_TIMEOUT, free_port, write_config
from tests.support.notify_socket import NotifySocket

# Workers holding GET /worker/state in these tests: enough that a pass over all of them is not a fluke.
HELD = 12
# The soft limit the child Manager is started with: far below its hard limit.
LOW_SOFT_LIMIT = 256


class CountingDict(dict[Any, Any]):
    """A dict that counts the passes made over it."""

    passes = 0

    def __iter__(self) -> Iterator[Any]:
        self.passes += 1
        return super().__iter__()

    def keys(self) -> dict_keys[Any, Any]:
        self.passes += 1
        return super().keys()

    def values(self) -> dict_values[Any, Any]:
        self.passes += 1
        return super().values()

    def items(self) -> dict_items[Any, Any]:
        self.passes += 1
        return super().items()


async def _holding(farm: Farm) -> tuple[list[FakeWorker], list[asyncio.Task[Any]], list[int]]:
    """HELD awake workers, each holding GET /worker/state."""
    manager = farm.manager
    workers = [await farm.awake_worker() for _ in range(HELD)]
    ids = []
    for w in workers:
        stored = manager.store.get_worker(w.uuid)
        assert stored is not None
        ids.append(stored.id)
    polls = [asyncio.create_task(w.state(wait=10)) for w in workers]
    await eventually(lambda: set(ids) <= manager.hub.held_workers())
    return workers, polls, ids


def _record_seen_writes(manager: Manager, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    written: list[int] = []
    original = manager.store.mark_workers_seen

    def recording(seen: Iterable[tuple[int, float]]) -> None:
        items = list(seen)
        written.extend(worker_id for worker_id, _ in items)
        original(items)

    monkeypatch.setattr(manager.store, "mark_workers_seen", recording)
    return written


async def test_periodic_seen_flush_writes_no_held_worker(farm: Farm, monkeypatch: pytest.MonkeyPatch) -> None:
    manager = farm.manager
    workers, polls, ids = await _holding(farm)
    manager.workers.flush_seen()  # what the holds' arrival left pending
    written = _record_seen_writes(manager, monkeypatch)

    manager.workers.flush_seen()
    assert written == []
    # Held means seen: the web interface says so, and the timeout checker leaves them alone.
    stored = manager.store.get_worker(workers[0].uuid)
    assert stored is not None
    assert manager.workers.last_seen(stored) is not None
    manager.timeouts.worker_timeout = 0.001
    manager.timeouts.check()
    assert (await farm.worker(workers[0].uuid))["status"] == "awake"

    # Answered, the worker is seen then, and that is written.
    await farm.client.post(
        f"{API}/worker-mgt/workers/{workers[0].uuid}/setstatus", {"status": "asleep", "is_lazy": False}
    )
    assert (await polls[0]).status == 200
    manager.workers.flush_seen()
    assert written == [ids[0]]
    for poll in polls[1:]:
        poll.cancel()


async def test_setstatus_answers_one_held_poll_without_a_pass_over_the_others(farm: Farm) -> None:
    manager = farm.manager
    workers, polls, ids = await _holding(farm)
    hub = manager.hub
    counting = CountingDict(hub._worker_waiters)
    hub._worker_waiters = counting

    reply = await farm.client.post(
        f"{API}/worker-mgt/workers/{workers[3].uuid}/setstatus", {"status": "asleep", "is_lazy": False}
    )
    assert reply.status == 204
    assert (await asyncio.wait_for(polls[3], 5)).body == {"status_requested": "asleep"}
    # The periodic work beside it: the last-seen flush and the timeout check.
    manager.workers.flush_seen()
    manager.timeouts.check()

    assert counting.passes == 0
    assert [p.done() for p in polls].count(True) == 1
    assert set(ids) - hub.held_workers() == {ids[3]}
    for poll in polls:
        poll.cancel()


def _soft_and_hard(pid: int) -> tuple[str, str]:
    for line in pathlib.Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return soft, hard
    raise AssertionError("no open files limit in /proc/PID/limits")


def test_manager_raises_its_open_files_limit_and_tunes_gc_at_start(tmp_path: pathlib.Path) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= LOW_SOFT_LIMIT:
        pytest.skip(f"the hard open files limit ({hard}) leaves nothing to raise")

    def low_soft_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (LOW_SOFT_LIMIT, hard))

    sockdir = pathlib.Path(tempfile.mkdtemp(prefix="fm-", dir="/tmp"))
    notify = NotifySocket(sockdir / "n")
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "flamenco_manager", "-config", str(write_config(tmp_path))]
    proc = subprocess.Popen(
        [*command, "-listen", f"127.0.0.1:{free_port()}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=low_soft_limit,
    )
    try:
        notify.wait_for("READY=1", timeout=START_TIMEOUT)
        soft_now, hard_now = _soft_and_hard(proc.pid)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
        notify.close()
        sockdir.rmdir()
    assert soft_now == hard_now
    expected = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
    assert re.search(rf"open files limit soft={expected} hard={expected}", stderr), stderr
    # Full collector passes over every connection's objects are made rare, start-up's objects frozen.
    tuned = re.search(
        r"garbage collector tuned frozen_objects=(\d+) thresholds=\((\d+), (\d+), (\d+)\)", stderr
    )
    assert tuned is not None, stderr
    assert int(tuned[1]) > 0 and int(tuned[4]) == GC_FULL_THRESHOLD


async def test_worker_list_is_built_off_the_event_loop(farm: Farm, monkeypatch: pytest.MonkeyPatch) -> None:
    manager = farm.manager
    workers, polls, _ = await _holding(farm)
    asleep = await farm.register()

    def on_the_loop() -> None:
        raise AssertionError("the worker list was read on the event loop's connection")

    # The loop's own connection must not be the one that reads every worker.
    monkeypatch.setattr(manager.store, "list_workers", on_the_loop)
    reply = await farm.client.get(f"{API}/worker-mgt/workers")
    assert reply.status == 200
    listed = {w["id"]: w for w in reply.body["workers"]}
    assert set(listed) == {w.uuid for w in workers} | {asleep.uuid}
    assert all(listed[w.uuid]["status"] == "awake" for w in workers)
    assert listed[asleep.uuid]["status"] == "offline"
    assert all("last_seen" in listed[w.uuid] for w in workers)
    for poll in polls:
        poll.cancel()


async def test_the_seen_flush_sleeps_until_a_worker_is_seen(
    farm: Farm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing to write, nothing wakes: the flush runs SEEN_FLUSH_INTERVAL after a worker was seen."""
    manager = farm.manager
    worker = await farm.awake_worker()
    await eventually(lambda: not manager.workers.seen_pending.is_set(), within=SEEN_FLUSH_INTERVAL * 3)
    # Idle, the loop waits for news instead of sleeping out an interval (it used to flush every one).
    loop_task = next(t for t in manager._loops if t.get_name() == "seen-flush")
    await eventually(lambda: _suspended_in(loop_task) == "Event.wait")
    written = _record_seen_writes(manager, monkeypatch)
    reply = await worker.state()
    assert reply.status == 204, reply.body  # nothing asked of it
    assert manager.workers.seen_pending.is_set()
    stored = manager.store.get_worker(worker.uuid)
    assert stored is not None
    await eventually(lambda: written == [stored.id], within=SEEN_FLUSH_INTERVAL * 3)
    await eventually(lambda: _suspended_in(loop_task) == "Event.wait")


def _suspended_in(task: asyncio.Task[Any]) -> str:
    """The innermost coroutine the task is suspended in."""
    coro: Any = task.get_coro()
    while getattr(coro, "cr_await", None) is not None and hasattr(coro.cr_await, "cr_code"):
        coro = coro.cr_await
    return str(coro.__qualname__)
