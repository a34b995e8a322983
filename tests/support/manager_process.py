"""The real `flamenco-manager` process on a loopback port with its own SQLite file, and a small API client.

`ManagerProcess` is a farm's manager: its own directory and log file, ready once it answers HTTP.
`NotifiedManager` tests the process contract itself: a given configuration file, its own NOTIFY_SOCKET
(ready at READY=1), stdout and stderr captured for the test to read.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from tests.support.notify_socket import NotifySocket
from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
# Straight to loopback, whatever http_proxy says (Debian's package builds point it at a dead port).
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# Start-up of the Manager process on a loaded machine; far above the ≈0.3 s it takes.
START_TIMEOUT = 15.0


def free_port() -> int:
    """A loopback port nobody listens on right now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(directory: Path, **extra: str) -> Path:
    """A minimal flamenco-manager.yaml in `directory`, with `extra` keys appended verbatim."""
    lines = [
        "_meta:",
        "  version: 3",
        f"database: {directory / 'manager.sqlite'}",
        f"local_manager_storage_path: {directory / 'storage'}",
        f"shared_storage_path: {directory / 'shared'}",
        *(f"{key}: {value}" for key, value in extra.items()),
    ]
    path = directory / "flamenco-manager.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


class NotifiedManager:
    """`flamenco-manager -config CONFIG` on a free port, started and ready (READY=1) on construction.

    `env={"JOURNAL_STREAM": …}` (any value) means "stderr is the journal": the variable is pointed at the
    stderr pipe's device:inode, as systemd does, so the manager's journald detection sees a real match.
    """

    def __init__(self, config: Path, *, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._sockdir = Path(tempfile.mkdtemp(prefix="fm-", dir="/tmp"))
        self.notify = NotifySocket(self._sockdir / "n")
        environment = {**os.environ, "NOTIFY_SOCKET": str(self.notify.path), **(env or {})}
        read_end, write_end = os.pipe()
        if "JOURNAL_STREAM" in environment:
            info = os.fstat(write_end)
            environment["JOURNAL_STREAM"] = f"{info.st_dev}:{info.st_ino}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flamenco_manager", "-config", str(config), "-listen", self.listen],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=write_end,
            text=True,
        )
        os.close(write_end)
        # Our own pipe stands in for Popen's, so communicate() reads stderr as usual.
        self.proc.stderr = open(read_end, encoding="utf-8", errors="replace")  # noqa: SIM115 - Popen's
        self.notify.wait_for("READY=1", timeout=START_TIMEOUT)

    @property
    def listen(self) -> str:
        return f"127.0.0.1:{self.port}"

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> tuple[int, str]:
        self.proc.send_signal(sig)
        _, stderr = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, stderr

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=10)
        self.notify.close()
        self._sockdir.rmdir()


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

    def start(self, timeout: float = 15) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "flamenco-manager.yaml").write_text(self.config_yaml())
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
        try:
            wait_for(self._answers, timeout, "the manager to answer HTTP")
        except (AssertionError, RuntimeError) as exc:
            self.kill()  # a manager that never answered is not left behind for the caller to find
            raise AssertionError(f"{exc}; its log: {self.log()[-2000:]}") from None
        return self

    def config_yaml(self) -> str:
        """The configuration file: a SQLite database and storage in the work directory."""
        return (
            "_meta: {version: 3}\n"
            f"listen: 127.0.0.1:{self.port}\n"
            f"database: {self.workdir / 'flamenco-manager.sqlite'}\n"
            f"local_manager_storage_path: {self.workdir / 'storage'}\n"
            f"shared_storage_path: {self.workdir / 'shared'}\n" + self.extra_yaml
        )

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"manager exited with {self.process.returncode}: {self.log()[-2000:]}")
        try:
            self.get("/api/v3/version")
        except (OSError, urllib.error.URLError):
            return False
        return True

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
            with _DIRECT.open(req, timeout=10) as resp:
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
        return wait_for(check, timeout, what, interval)
