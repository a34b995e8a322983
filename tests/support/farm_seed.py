"""Fill a Manager with many workers and jobs over its public API, for UI and scale tests."""

from __future__ import annotations

import base64
import json
import secrets
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.support.manager_process import ManagerProcess

# Parallel requests while seeding; the Manager answers them on one loop, this only hides latency.
SEED_THREADS = 8
# How the seeded workers spread over statuses (the rest stay awake).
SEEDED_STATUS_EVERY = {"asleep": 5, "offline": 7, "error": 19}


def _post(url: str, body: Any, auth: tuple[str, str] | None = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers=headers)
    with urllib.request.urlopen(req, timeout=30) as resp:
        raw = resp.read()
        return json.loads(raw) if raw else None


def seed_worker(manager: ManagerProcess, index: int) -> str:
    """Register a worker, sign it on and move it to a status; returns its id. No process runs it."""
    base = manager.url.rstrip("/") + "/api/v3/worker"
    secret = secrets.token_hex(16)
    name = f"render-{index:03d}"
    types = ["blender", "ffmpeg", "file-management", "misc"]
    worker_id = _post(
        f"{base}/register-worker",
        {"secret": secret, "platform": "linux", "supported_task_types": types, "name": name},
    )["uuid"]
    auth = (worker_id, secret)
    _post(
        f"{base}/sign-on",
        {
            "name": name,
            "supported_task_types": types,
            "software_version": "3.7",
            "can_restart": index % 2 == 0,
        },
        auth,
    )
    status = next((s for s, every in SEEDED_STATUS_EVERY.items() if index % every == 0), "awake")
    _post(f"{base}/state-changed", {"status": status}, auth)
    return worker_id


def seed_job(manager: ManagerProcess, index: int) -> str:
    status, body = manager.request(
        "POST",
        "/api/v3/jobs",
        {
            "name": f"shot-{index:04d} lighting pass",
            "type": "echo-sleep-test",
            "priority": 30 + index % 50,
            "submitter_platform": "linux",
            "settings": {"message": f"frame batch {index}", "sleep_duration_seconds": 1, "sleep_repeats": 2},
            "metadata": {"project": "Sprite Fright", "user.name": "seed"},
        },
    )
    if status != 200:
        raise AssertionError(f"job submission: {status} {body}")
    return body["id"]


def seed(manager: ManagerProcess, workers: int, jobs: int) -> tuple[list[str], list[str]]:
    with ThreadPoolExecutor(SEED_THREADS) as pool:
        worker_ids = list(pool.map(lambda i: seed_worker(manager, i), range(workers)))
        job_ids = list(pool.map(lambda i: seed_job(manager, i), range(jobs)))
    return worker_ids, job_ids
