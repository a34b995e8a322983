"""The worker's stop signals against a real manager: first graceful (task handed back), second forced."""

from __future__ import annotations

import signal
import time

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
    farm.manager.running_sleep_task(job["id"])
    worker.signal(signal.SIGSTOP)  # both signals pending together: the second arrives mid-shutdown
    worker.signal(signal.SIGTERM)
    worker.signal(signal.SIGCONT)
    worker.signal(signal.SIGTERM)
    began = time.monotonic()
    assert worker.wait_exit(STOP_TIMEOUT) == 0
    assert time.monotonic() - began < STOP_TIMEOUT
    assert "again: exiting at once without handing back the task" in worker.output()
