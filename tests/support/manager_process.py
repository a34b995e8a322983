"""The real `flamenco-manager` process on a loopback port with its own SQLite file, and a small API client."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ManagerProcess:
    workdir: Path
    port: int = field(default_factory=free_port)
    extra_yaml: str = ""
    #: Sent as `Authorization: Bearer` by the API helpers (put `api_token:` in extra_yaml to require it).
    api_token: str = ""
    process: subprocess.Popen[str] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, timeout: float = 15) -> ManagerProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "flamenco-manager.yaml").write_text(
            "_meta: {version: 3}\n"
            f"listen: 127.0.0.1:{self.port}\n"
            f"database: {self.workdir / 'flamenco-manager.sqlite'}\n"
            f"local_manager_storage_path: {self.workdir / 'storage'}\n"
            f"shared_storage_path: {self.workdir / 'shared'}\n" + self.extra_yaml
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "JOURNAL_", "WATCHDOG_"))}
        env["PYTHONPATH"] = str(REPO)
        log = open(self.workdir / "manager.log", "a")  # noqa: SIM115 - the child writes to it for its lifetime
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flamenco_manager",
                "-config",
                str(self.workdir / "flamenco-manager.yaml"),
            ],
            cwd=self.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"manager exited with {self.process.returncode}: {self.log()[-2000:]}")
            try:
                self.get("/api/v3/version")
                return self
            except (OSError, urllib.error.URLError):
                time.sleep(0.05)
        raise RuntimeError(f"manager did not answer within {timeout}s: {self.log()[-2000:]}")

    def log(self) -> str:
        path = self.workdir / "manager.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    # --- API ---

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        sent = {"Content-Type": "application/json"} if data else {}
        if self.api_token:
            sent["Authorization"] = f"Bearer {self.api_token}"
        sent.update(headers or {})
        req = urllib.request.Request(self.url.rstrip("/") + path, data=data, method=method, headers=sent)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                return err.code, json.loads(raw) if raw else None
            except ValueError:
                return err.code, raw.decode(errors="replace")

    def get(self, path: str) -> Any:
        status, body = self.request("GET", path)
        if status != 200:
            raise AssertionError(f"GET {path}: {status} {body}")
        return body

    def submit_echo_sleep(self, seconds: int = 1, repeats: int = 1, name: str = "test job") -> dict[str, Any]:
        status, body = self.request(
            "POST",
            "/api/v3/jobs",
            {
                "name": name,
                "type": "echo-sleep-test",
                "priority": 50,
                "submitter_platform": "linux",
                "settings": {"message": "hello", "sleep_duration_seconds": seconds, "sleep_repeats": repeats},
            },
        )
        if status != 200:
            raise AssertionError(f"job submission: {status} {body}")
        return body

    def tasks(self, job_id: str) -> list[dict[str, Any]]:
        return self.get(f"/api/v3/jobs/{job_id}/tasks")["tasks"]

    def running_sleep_task(self, job_id: str, timeout: float = 20) -> dict[str, Any]:
        """An echo-sleep job's sleep task, once a worker runs it."""
        return self.wait_until(
            "a sleep task to run",
            lambda: next(
                (t for t in self.tasks(job_id) if t["name"].startswith("sleep") and t["status"] == "active"),
                None,
            ),
            timeout,
        )

    def task(self, task_id: str) -> dict[str, Any]:
        return self.get(f"/api/v3/tasks/{task_id}")

    def job(self, job_id: str) -> dict[str, Any]:
        return self.get(f"/api/v3/jobs/{job_id}")

    def worker(self, worker_id: str) -> dict[str, Any]:
        return self.get(f"/api/v3/worker-mgt/workers/{worker_id}")

    def workers(self) -> list[dict[str, Any]]:
        return self.get("/api/v3/worker-mgt/workers")["workers"]

    def set_worker_status(self, worker_id: str, status: str, lazy: bool) -> tuple[int, Any]:
        return self.request(
            "POST", f"/api/v3/worker-mgt/workers/{worker_id}/setstatus", {"status": status, "is_lazy": lazy}
        )

    def wait_until(self, what: str, check, timeout: float = 20, interval: float = 0.05):
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = check()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"timed out waiting for {what}; last seen: {last!r}")
