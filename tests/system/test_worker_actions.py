"""Every Worker Action, both flavours, through the Manager's setstatus and through busctl, idle and busy.

Real processes: the manager (SQLite in a temporary directory), the worker, a private dbus-daemon.
"""

from __future__ import annotations

import pytest

from tests.support.worker_process import WorkerProcess
from tests.system.conftest import Farm

DBUS_METHOD = {"offline": "ShutDown", "restart": "Restart", "asleep": "Sleep"}
EXIT_CODE = {"offline": 0, "restart": 47}
SLEEP_SECONDS = 3


def request(farm: Farm, worker: WorkerProcess, via: str, status: str, lazy: bool) -> None:
    if via == "manager":
        code, body = farm.manager.set_worker_status(farm.worker_id(worker), status, lazy)
        assert code == 204, body
    elif status == "awake":
        worker.call("WakeUp")
    else:
        worker.call(DBUS_METHOD[status], "b", "false" if lazy else "true")


def start_sleep_task(farm: Farm) -> tuple[str, str]:
    """Submit an echo-sleep job and wait until its sleep task runs; returns (job id, sleep task id)."""
    job = farm.manager.submit_echo_sleep(seconds=SLEEP_SECONDS)
    sleep_task = farm.manager.running_sleep_task(job["id"])
    return job["id"], sleep_task["id"]


def assert_request_cleared(farm: Farm, worker: WorkerProcess, final_status: str) -> None:
    view = farm.wait_worker_status(worker, final_status)
    change = view.get("status_change")
    if final_status == "offline":
        # sign-off clears offline/restart; the Manager may remember the previous status for the next start
        assert change is None or change["status"] in ("awake", "asleep"), view
    else:
        assert change is None, view


@pytest.mark.parametrize("via", ["manager", "dbus"])
@pytest.mark.parametrize(
    ("status", "lazy"), [("offline", True), ("offline", False), ("restart", True), ("restart", False)]
)
def test_shut_down_and_restart_idle(farm: Farm, via: str, status: str, lazy: bool) -> None:
    worker = farm.start_worker()
    request(farm, worker, via, status, lazy)
    assert worker.wait_exit(20) == EXIT_CODE[status]
    assert_request_cleared(farm, worker, "offline")


@pytest.mark.parametrize("via", ["manager", "dbus"])
@pytest.mark.parametrize("lazy", [True, False])
def test_sleep_and_wake_up_idle(farm: Farm, via: str, lazy: bool) -> None:
    worker = farm.start_worker()
    request(farm, worker, via, "asleep", lazy)
    assert_request_cleared(farm, worker, "asleep")
    assert worker.get("Status") == 's "asleep"'
    request(farm, worker, via, "awake", False)
    assert_request_cleared(farm, worker, "awake")
    worker.wait_property("Status", 's "awake"')


@pytest.mark.parametrize("via", ["manager", "dbus"])
@pytest.mark.parametrize("status", ["offline", "restart", "asleep"])
def test_after_task_is_finished(farm: Farm, via: str, status: str) -> None:
    worker = farm.start_worker()
    job_id, task_id = start_sleep_task(farm)
    request(farm, worker, via, status, True)
    if via == "dbus":
        worker.wait_property("RequestIsLazy", "b true")
    # the task is left alone and completes; only then does the action happen
    farm.manager.wait_until(
        "the task to complete", lambda: farm.manager.task(task_id)["status"] == "completed"
    )
    if status in EXIT_CODE:
        assert worker.wait_exit(20) == EXIT_CODE[status]
        assert_request_cleared(farm, worker, "offline")
    else:
        assert_request_cleared(farm, worker, "asleep")
    assert farm.manager.job(job_id)["status"] == "completed"
    log = farm.manager.get(f"/api/v3/tasks/{task_id}")
    assert log["status"] == "completed"


@pytest.mark.parametrize("via", ["manager", "dbus"])
@pytest.mark.parametrize("status", ["offline", "restart", "asleep"])
def test_immediately_aborts_and_hands_back(farm: Farm, via: str, status: str) -> None:
    worker = farm.start_worker()
    job_id, task_id = start_sleep_task(farm)
    request(farm, worker, via, status, False)
    # handed back: the task is queued again well before the sleep would have finished
    farm.manager.wait_until(
        "the task to be requeued",
        lambda: farm.manager.task(task_id)["status"] == "queued",
        timeout=SLEEP_SECONDS - 0.5,
    )
    if status in EXIT_CODE:
        assert worker.wait_exit(20) == EXIT_CODE[status]
        assert_request_cleared(farm, worker, "offline")
        worker = farm.start_worker()  # the same worker (same credentials) comes back and finishes the job
    else:
        assert_request_cleared(farm, worker, "asleep")
        assert worker.get("CurrentTask") == 's ""'
        request(farm, worker, via, "awake", False)
    farm.manager.wait_until(
        "the requeued task to complete",
        lambda: farm.manager.task(task_id)["status"] == "completed",
        timeout=30,
    )
    assert farm.manager.job(job_id)["status"] == "completed"


@pytest.mark.parametrize("via", ["manager", "dbus"])
def test_wake_up_on_a_busy_worker_leaves_the_task_alone(farm: Farm, via: str) -> None:
    worker = farm.start_worker()
    _, task_id = start_sleep_task(farm)
    request(farm, worker, via, "awake", False)
    farm.manager.wait_until(
        "the task to complete", lambda: farm.manager.task(task_id)["status"] == "completed"
    )
    assert worker.process.poll() is None
    assert_request_cleared(farm, worker, "awake")


def test_restart_refused_for_a_worker_without_restart_code(farm: Farm) -> None:
    worker = farm.start_worker("plain", "-restart-exit-code", "0")
    wid = farm.worker_id(worker)
    assert farm.manager.worker(wid)["can_restart"] is False
    code, body = farm.manager.set_worker_status(wid, "restart", False)
    assert code == 412, body
    result = worker.call("Restart", "b", "true", check=False)
    assert result.returncode != 0 and "no restart exit code" in result.stderr
    assert worker.process.poll() is None
