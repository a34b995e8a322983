"""The worker's stop signals against a real manager: first graceful (task handed back), second forced."""

from __future__ import annotations

import signal

from tests.support.waiting import wait_for
from tests.system.conftest import Farm

# A stop signal ends the worker within this; the task's sleep (60 s) would take far longer.
STOP_TIMEOUT = 20.0


def test_sigterm_hands_the_running_task_back_before_exiting(farm: Farm) -> None:
    worker = farm.start_worker("w1")
    job = farm.manager.submit_echo_sleep(seconds=60)
    task = farm.manager.running_sleep_task(job["id"])
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(STOP_TIMEOUT) == 0
    assert farm.manager.task(task["id"])["status"] != "active"


def test_a_second_sigterm_exits_at_once_without_handing_the_task_back(farm: Farm) -> None:
    worker = farm.start_worker("w1", log_to_file=True)
    job = farm.manager.submit_echo_sleep(seconds=60)
    task = farm.manager.running_sleep_task(job["id"])
    manager = farm.manager.process
    assert manager is not None
    # A manager that does not answer: the graceful shutdown waits on its hand-back request.
    manager.send_signal(signal.SIGSTOP)
    try:
        worker.signal(signal.SIGTERM)
        wait_for(lambda: "signal=SIGTERM: shutting down" in worker.output(), 10, "the first SIGTERM")
        assert worker.process.poll() is None
        worker.signal(signal.SIGTERM)
        assert worker.wait_exit(STOP_TIMEOUT) == 0
    finally:
        manager.send_signal(signal.SIGCONT)
    assert "again: exiting at once without handing back the task" in worker.output()
    assert farm.manager.task(task["id"])["status"] == "active"  # not handed back
