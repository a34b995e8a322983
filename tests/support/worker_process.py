"""The real `flamenco-worker` process, started the way systemd would (own NOTIFY_SOCKET, own bus)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.dbus_daemon import PrivateBus
from tests.support.notify_socket import NotifySocket
from tests.support.waiting import wait_for

NAME = "org.flamenco.Worker1"
PATH = "/org/flamenco/Worker1"
IFACE = "org.flamenco.Worker1"


@dataclass
class WorkerProcess:
    workdir: Path
    args: list[str]
    bus: PrivateBus | None = None
    notify: NotifySocket | None = None
    env_extra: Mapping[str, str] = field(default_factory=dict)
    #: Send the output to this file instead of a pipe (for chatty or long runs nobody reads live).
    log_path: Path | None = None
    _process: subprocess.Popen[str] | None = field(default=None, init=False)

    @property
    def process(self) -> subprocess.Popen[str]:
        """The started process (AssertionError before `start()`)."""
        assert self._process is not None, "start() the worker first"
        return self._process

    @property
    def started(self) -> bool:
        return self._process is not None

    def start(self) -> WorkerProcess:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DBUS_", "NOTIFY_", "WATCHDOG_", "JOURNAL_", "FLAMENCO_"))
        }
        env["FLAMENCO_HOME"] = str(self.workdir / "home")
        # No LAN searches from tests on the host's network; discovery tests set it in private namespaces.
        env["FLAMENCO_WORKER_DISCOVERY"] = "false"
        if self.bus is not None:
            key = "DBUS_SYSTEM_BUS_ADDRESS" if self.bus.kind == "system" else "DBUS_SESSION_BUS_ADDRESS"
            env[key] = self.bus.address
        if self.notify is not None:
            env["NOTIFY_SOCKET"] = str(self.notify.path)
        env.update(self.env_extra)
        log = open(self.log_path, "a") if self.log_path else None  # noqa: SIM115 - the child's
        self._process = subprocess.Popen(
            [sys.executable, "-m", "flamenco_worker", *self.args],
            cwd=self.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log if log is not None else subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if log is not None:
            log.close()
        return self

    def wait_ready(self, timeout: float = 10) -> None:
        assert self.notify is not None
        self.notify.wait_for("READY=1", timeout)

    def wait_exit(self, timeout: float = 15) -> int:
        return self.process.wait(timeout)

    def output(self) -> str:
        if self.log_path:
            return self.log_path.read_text(errors="replace")
        if self.process.poll() is None:
            raise AssertionError("read the output after the process ended")
        assert self.process.stdout is not None
        return self.process.stdout.read()

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def call(self, method: str, *args: str, check: bool = True, user: str | None = None):
        assert self.bus is not None
        return self.bus.busctl("call", NAME, PATH, IFACE, method, *args, check=check, user=user)

    def get(self, prop: str, user: str | None = None) -> str:
        assert self.bus is not None
        return self.bus.busctl("get-property", NAME, PATH, IFACE, prop, user=user).stdout.strip()

    def wait_property(self, prop: str, expected: str, timeout: float = 5) -> None:
        wait_for(lambda: self.get(prop) == expected, timeout, f"{prop} to be {expected!r}")

    def stop(self) -> None:
        if self.started and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        if self.started and self.process.stdout is not None:
            self.process.stdout.close()
