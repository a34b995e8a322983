"""A private dbus-daemon for tests: session-type (anyone may do anything) or system-type (real policy)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.waiting import PipeLines, wait_for

#: dbus-daemon prints its address once it listens; that takes milliseconds, far less on an idle machine.
BUS_START_TIMEOUT = 10.0
#: How long one probe waits for the monitor to show it before the next probe is sent.
MONITOR_PROBE_WAIT = 0.2

SESSION_CONF = """<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""

# The parts of Debian's system.conf that only make sense for the machine's own bus are dropped.
_SYSTEM_DROP = (
    "<user>",
    "<fork/>",
    "<pidfile>",
    "<syslog/>",
    "<servicehelper>",
    "<standard_system_servicedirs/>",
    "<include",
    "<includedir",
)


def short_tempdir(prefix: str) -> Path:
    """A world-traversable directory with a short path (unix socket paths must stay under 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


def system_conf(socket: Path, policy_dir: Path) -> str:
    lines = []
    for line in Path("/usr/share/dbus-1/system.conf").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith(_SYSTEM_DROP):
            continue
        if stripped.startswith("<listen>"):
            line = f"  <listen>unix:path={socket}</listen>"
        lines.append(line)
    text = "\n".join(lines)
    return text.replace("</busconfig>", f"  <includedir>{policy_dir}</includedir>\n</busconfig>")


@dataclass
class PrivateBus:
    directory: Path
    kind: str = "session"
    policies: Iterable[Path] = ()
    process: subprocess.Popen[str] | None = field(default=None, init=False)

    @property
    def socket(self) -> Path:
        return self.directory / f"{self.kind}.sock"

    @property
    def address(self) -> str:
        return f"unix:path={self.socket}"

    def start(self) -> PrivateBus:
        conf = self.directory / f"{self.kind}.conf"
        if self.kind == "session":
            conf.write_text(SESSION_CONF.format(socket=self.socket))
        else:
            policy_dir = self.directory / "system.d"
            policy_dir.mkdir(exist_ok=True)
            for policy in self.policies:
                shutil.copy(policy, policy_dir / policy.name)
            conf.write_text(system_conf(self.socket, policy_dir))
        self.process = subprocess.Popen(
            ["dbus-daemon", "--nofork", f"--config-file={conf}", "--print-address=1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        try:
            line = PipeLines(self.process.stdout).readline(BUS_START_TIMEOUT) or ""  # once the bus listens
        except AssertionError:
            line = ""
        if not line.startswith("unix:"):
            self.stop()
            raise RuntimeError(f"dbus-daemon did not start (said {line!r})")
        os.chmod(self.socket, 0o777)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(5)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()

    def busctl(
        self, *args: str, user: str | None = None, check: bool = True, timeout: float = 10
    ) -> subprocess.CompletedProcess[str]:
        cmd = ["busctl", f"--address={self.address}", *args]
        if user is not None:
            cmd = ["runuser", "-u", user, "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip()}")
        return result


class BusMonitor:
    """`busctl monitor NAME --json=short` on a private bus: messages as dicts, each read with a deadline."""

    def __init__(self, bus: PrivateBus, name: str) -> None:
        self.process = subprocess.Popen(
            ["busctl", f"--address={bus.address}", "monitor", name, "--json=short"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.process.stdout is not None
        self._lines = PipeLines(self.process.stdout)

    def attach(self, probe: Callable[[], object], timeout: float = 10) -> None:
        """Return once the monitor shows traffic that `probe()` causes: from then on nothing is missed."""

        def probe_seen() -> bool:
            probe()
            try:
                return self._lines.readline(MONITOR_PROBE_WAIT) is not None
            except AssertionError:
                return False

        wait_for(probe_seen, timeout, "busctl monitor to attach")

    def wait_message(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        """The next message for which `predicate` holds; others are skipped."""
        line = self._lines.wait_line(lambda text: bool(text.strip()) and predicate(json.loads(text)), timeout)
        message: dict[str, Any] = json.loads(line)
        return message

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(5)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> BusMonitor:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
