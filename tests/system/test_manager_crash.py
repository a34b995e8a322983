"""Manager kill -9 under load: real workers long-polling, tasks flowing; nothing lost, nothing run twice."""

from __future__ import annotations

import datetime
import itertools
import re
import time
from collections import defaultdict
from pathlib import Path

import pytest

from tests.reliability import scale
from tests.support.manager_process import ManagerProcess
from tests.support.worker_process import WorkerProcess

pytestmark = [pytest.mark.system, pytest.mark.reliability]

LINE = re.compile(r"^(\S+ \S+) INFO\s+flamenco_worker\.worker: task=(\S+) (started|ended)")


def parse_time(text: str) -> float:
    return datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def seen_after(worker: dict, moment: float) -> bool:
    last = worker.get("last_seen")
    if not last:
        return False
    return datetime.datetime.fromisoformat(last.replace("Z", "+00:00")).timestamp() > moment


def test_manager_kill_9_under_load(short_dir: Path, fault) -> None:
    n = int(scale(20, 200))
    row = fault(
        f"manager kill -9 under load ({n} workers)",
        "no task lost or run by two workers at once; all workers back",
    )
    manager = ManagerProcess(short_dir / "mgr").start()
    workers: list[WorkerProcess] = []
    try:
        for i in range(n):
            workdir = short_dir / f"w{i}"
            workdir.mkdir()
            workers.append(
                WorkerProcess(
                    workdir,
                    ["-dbus", "off", "-manager", manager.url, "-name", f"load-{i}", "-config", "/dev/null"],
                    log_path=workdir / "out.log",
                ).start()
            )
        manager.wait_until(
            "all workers awake",
            lambda: sum(w["status"] == "awake" for w in manager.workers()) == n,
            timeout=scale(60, 300),
            interval=0.2,
        )
        jobs = [
            manager.submit_echo_sleep(seconds=1, repeats=int(scale(20, 60)), name=f"load {j}")["id"]
            for j in range(int(scale(3, 10)))
        ]
        manager.wait_until(  # tasks are flowing
            "a completed task",
            lambda: any(t["status"] == "completed" for t in manager.tasks(jobs[0])),
            timeout=scale(60, 300),
            interval=0.2,
        )
        manager.kill()
        restarted = time.time()
        manager.start()
        manager.wait_until(
            "every worker back in touch",
            lambda: all(seen_after(w, restarted) for w in manager.workers()),
            timeout=30,
            interval=0.1,
        )
        back_after = time.time() - restarted
        assert all(w["status"] == "awake" for w in manager.workers())
        for job_id in jobs:
            manager.wait_until(
                f"job {job_id} completed",
                lambda job_id=job_id: manager.job(job_id)["status"] == "completed",
                timeout=scale(120, 600),
                interval=0.5,
            )
        tasks = [t for job_id in jobs for t in manager.tasks(job_id)]
        assert all(t["status"] == "completed" for t in tasks)
    finally:
        for w in workers:
            w.stop()
        manager.kill()

    # from the workers' own logs: when did each worker run each task?
    runs: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    for index, w in enumerate(workers):
        open_runs: dict[str, float] = {}
        for line in w.output().splitlines():
            m = LINE.match(line)
            if not m:
                continue
            at, task_id, what = parse_time(m.group(1)), m.group(2), m.group(3)
            if what == "started":
                open_runs[task_id] = at
            elif task_id in open_runs:
                runs[task_id].append((open_runs.pop(task_id), at, index))
    overlaps = 0
    for spans in runs.values():
        spans.sort()
        for (_, end_a, who_a), (start_b, _, who_b) in itertools.pairwise(spans):
            if who_a != who_b and start_b < end_a:
                overlaps += 1
    assert overlaps == 0, f"{overlaps} tasks ran on two workers at the same time"
    assert len(runs) == len(tasks)
    assert back_after <= 10, f"workers back after {back_after:.1f} s"
    row.figure = (
        f"{len(tasks)} tasks completed, 0 overlaps, all {n} workers back {back_after:.1f} s after restart"
    )
