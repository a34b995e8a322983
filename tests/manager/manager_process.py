"""The Manager as its own process, for tests of the process contract and crash safety."""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile

from tests.support.notify_socket import NotifySocket

# Start-up of the Manager process on a loaded machine; far above the ≈0.3 s it takes.
START_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(directory: pathlib.Path, **extra: str) -> pathlib.Path:
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


class ManagerProcess:
    def __init__(self, config: pathlib.Path, *, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._sockdir = pathlib.Path(tempfile.mkdtemp(prefix="fm-", dir="/tmp"))
        self.notify = NotifySocket(self._sockdir / "n")
        environment = {**os.environ, "NOTIFY_SOCKET": str(self.notify.path), **(env or {})}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flamenco_manager",
                "-config",
                str(config),
                "-listen",
                f"127.0.0.1:{self.port}",
            ],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.notify.wait_for("READY=1", timeout=START_TIMEOUT)

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
