"""A booted Debian (12 and 13) in systemd-nspawn for packaging tests: cached root filesystems, throw-away
containers.

A root filesystem per Debian release is built once with mmdebstrap and cached (keyed by everything that
goes into it); each container boots it with `--volatile=overlay`, so the cached tree is never changed.
Commands run inside through `nsenter` into the container's PID 1, since without a systemd on the host
neither machinectl nor `systemctl -M` can reach it.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from tests.support import waiting

# The Debian releases the packages are proven on: built once on the host (Debian 12's tools), installed
# on each. The packaging tests run once per release, under these names as test ids.
SUITES = ("bookworm", "trixie")
# What the packages need at run time (so apt installs them without a network), plus what the tests
# drive: man-db (systemd-analyze verify opens the units' Documentation=man: pages), passwd (useradd).
# nodejs is the manager's Recommends (Debian's own: 18.x in 12, 20.x in 13): JavaScript job types run
# under its unit. avahi-daemon (and avahi-browse) is what the packages publish and browse DNS-SD through.
# One list for every release: each name must exist in all of SUITES.
ROOTFS_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "avahi-daemon",
    "avahi-utils",
    "dbus",
    "man-db",
    "nodejs",
    "passwd",
    "polkitd",
    "python3",
    "python3-aiohttp",
    "python3-bcrypt",
    "python3-dbus-next",
    "python3-pil",
    "python3-sdnotify",
    "python3-systemd",
    "python3-yaml",
)
# mmdebstrap leaves /etc/hosts out; an installed Debian has one, and the worker's default
# manager_url names localhost.
ROOTFS_HOOK = (
    'printf "127.0.0.1\\tlocalhost\\n::1\\tlocalhost ip6-localhost ip6-loopback\\n" > "$1/etc/hosts"'
)
# Where built root filesystems are kept between runs; FLAMENCO_ROOTFS_CACHE overrides it.
DEFAULT_CACHE = Path("/var/cache/flamenco-farm-tests")
# mmdebstrap takes ~30 s here; a slow mirror can take minutes.
ROOTFS_BUILD_TIMEOUT = 600.0
# A booted container reaches `running` in well under a second; allow for a loaded CI machine.
BOOT_TIMEOUT = 60.0
# How long a powered-off container may take to exit before it is killed.
POWEROFF_TIMEOUT = 20.0
# Upper bound for any single command run inside a container.
COMMAND_TIMEOUT = 120.0

# linux/prctl.h
PR_SET_PDEATHSIG = 1

T = TypeVar("T")


def missing_tools() -> str | None:
    """Why containers cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "packaging tests boot systemd-nspawn containers and need root"
    for tool in ("systemd-nspawn", "mmdebstrap", "nsenter", "dpkg-buildpackage", "lintian"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (make deps installs it)"
    return None


def wait_for(what: str, check: Callable[[], T | None], timeout: float, interval: float = 0.2) -> T:
    """`tests.support.waiting.wait_for` with the container tests' argument order (what first)."""
    return waiting.wait_for(check, timeout, what, interval)  # type: ignore[return-value]  # truthy: not None


def rootfs(suite: str = SUITES[0], cache: Path | None = None) -> Path:
    """The cached root filesystem of Debian `suite`, built first when missing (one builder per root
    filesystem at a time, others wait)."""
    if suite not in SUITES:
        raise ValueError(f"unknown Debian suite {suite!r}: the packages are proven on {', '.join(SUITES)}")
    cache = cache or Path(os.environ.get("FLAMENCO_ROOTFS_CACHE", DEFAULT_CACHE))
    key = hashlib.sha256(json.dumps([suite, "apt", ROOTFS_PACKAGES, ROOTFS_HOOK]).encode()).hexdigest()[:16]
    target = cache / f"rootfs-{suite}-{key}"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "etc" / "os-release").exists():
            return target
        building = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=cache))
        try:
            building.rmdir()  # mmdebstrap wants to create the directory itself
            subprocess.run(
                [
                    "mmdebstrap",
                    "--quiet",
                    "--variant=apt",
                    "--include=" + ",".join(ROOTFS_PACKAGES),
                    f"--customize-hook={ROOTFS_HOOK}",
                    suite,
                    str(building),
                ],
                check=True,
                timeout=ROOTFS_BUILD_TIMEOUT,
                stdin=subprocess.DEVNULL,
            )
            building.rename(target)
        finally:
            shutil.rmtree(building, ignore_errors=True)
    return target


def release_of(root: Path) -> str:
    """The Debian suite name (VERSION_CODENAME) of a root filesystem."""
    for line in (root / "etc" / "os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip().strip('"')
    raise ValueError(f"{root}/etc/os-release names no VERSION_CODENAME")


def _terminate_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies (prctl PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class Container:
    """One booted, throw-away container; use as a context manager so it is always powered off."""

    _live: ClassVar[weakref.WeakSet[Container]] = weakref.WeakSet()

    def __init__(
        self, root: Path, name: str, binds: Sequence[tuple[Path, str]] = (), log: Path | None = None
    ):
        self.root = root
        self.name = name
        self.binds = binds
        self.log_path = log or Path(tempfile.gettempdir()) / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.leader = 0

    def __enter__(self) -> Container:
        self.boot()
        return self

    def __exit__(self, *exc: object) -> None:
        self.poweroff()

    def boot(self) -> None:
        args = [
            "systemd-nspawn",
            "--quiet",
            f"--directory={self.root}",
            f"--machine={self.name}",
            "--register=no",
            "--keep-unit",
            "--volatile=overlay",
            # Own loopback: the packaged manager's port 8080 stays inside, containers cannot collide.
            "--private-network",
            *(f"--bind-ro={host}:{inside}" for host, inside in self.binds),
            "--boot",
            "--console=passive",
        ]
        with open(self.log_path, "wb") as log:
            # A session of its own, so that killing it never reaches the test runner; and SIGTERM (which
            # nspawn answers by powering the container off) should the test runner die without cleaning up.
            self.process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_terminate_with_parent,
            )
        Container._live.add(self)
        try:
            self.leader = wait_for("the container's systemd", self._find_leader, BOOT_TIMEOUT, 0.05)
            wait_for("systemd in the container to finish booting", self._booted, BOOT_TIMEOUT, 0.1)
        except BaseException:
            self.poweroff()
            raise

    def _find_leader(self) -> int | None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"systemd-nspawn exited with {self.process.returncode}: {self.boot_log()}")
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        with contextlib.suppress(OSError):
            for pid in children.read_text().split():
                if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                    return int(pid)
        return None

    def _booted(self) -> bool:
        state = self.run("systemctl", "is-system-running", check=False, timeout=10).stdout.strip()
        if state in ("degraded", "maintenance"):
            failed = self.run("systemctl", "--failed", "--no-legend", check=False).stdout
            raise AssertionError(f"container booted {state}: {failed}")
        return state == "running"

    def boot_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def run(
        self,
        *argv: str,
        check: bool = True,
        timeout: float = COMMAND_TIMEOUT,
        user: str | None = None,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside (as `user` when given) and capture its output."""
        inner = ["runuser", "-u", user, "--", *argv] if user else list(argv)
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "DEBIAN_FRONTEND": "noninteractive",
            "SYSTEMD_PAGER": "",
            "SYSTEMD_COLORS": "0",
        }
        enter = ["nsenter", "-t", str(self.leader), "-a", "--", "env", "-i"]
        result = subprocess.run(
            [*enter, *(f"{k}={v}" for k, v in env.items()), *inner],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{shlex.join(inner)} exited with {result.returncode}\n"
                f"stdout: {result.stdout[-3000:]}\nstderr: {result.stderr[-3000:]}"
            )
        return result

    def sh(self, script: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.run("sh", "-ec", script, **kwargs)

    def write(self, path: str, text: str) -> None:
        self.run("sh", "-ec", 'cat > "$1"', "sh", path, input=text)

    def read(self, path: str) -> str:
        return self.run("cat", path).stdout

    def exists(self, path: str) -> bool:
        return self.run("test", "-e", path, check=False).returncode == 0

    def poweroff(self) -> None:
        """Power off and reap the container; SIGTERM/SIGKILL to nspawn when it does not go in time."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        if self.leader:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self.run("systemctl", "--no-block", "poweroff", check=False, timeout=10)
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, sig)
            try:
                process.wait(POWEROFF_TIMEOUT)
                break
            except subprocess.TimeoutExpired:
                continue
        Container._live.discard(self)

    @classmethod
    def poweroff_all(cls) -> None:
        """Last resort (at exit): no container may outlive the test run."""
        for container in list(cls._live):
            container.poweroff()

    # --- systemd -------------------------------------------------------------------------------

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.run("systemctl", "show", unit, "-p", ",".join(props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, unit: str) -> str:
        return self.run("journalctl", "--no-pager", "-o", "cat", "-u", unit, check=False).stdout

    def busctl(
        self, *args: str, user: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.run("busctl", "--system", *args, user=user, check=check)

    # --- HTTP from inside (the manager listens on the container's own loopback) ---------------

    def http(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        script = (
            "import json, sys, urllib.error, urllib.request\n"
            "method, url, data = sys.argv[1], sys.argv[2], sys.argv[3].encode() or None\n"
            "req = urllib.request.Request(url, data=data, method=method,\n"
            "    headers={'Content-Type': 'application/json'} if data else {})\n"
            "try:\n"
            "    with urllib.request.urlopen(req, timeout=10) as r: status, raw = r.status, r.read()\n"
            "except urllib.error.HTTPError as e: status, raw = e.code, e.read()\n"
            "print(json.dumps([status, raw.decode()]))\n"
        )
        data = json.dumps(body) if body is not None else ""
        url = "http://localhost:8080" + path
        out = self.run("python3", "-c", script, method, url, data).stdout
        status, raw = json.loads(out)
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw


def build_debs(out: Path, *, version: str | None = None, checks: bool = True) -> list[Path]:
    """Build both .debs into `out`: with `make deb` normally, or as another `version` without checks."""
    repo = Path(__file__).resolve().parents[2]
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if version is None:
        argv = ["make", "--no-print-directory", "-C", str(repo), "deb", f"DEB_OUT={out}"]
    else:
        argv = [str(repo / "packaging" / "build-deb"), "--version", version]
        if not checks:
            argv.append("--no-lintian")
        argv.append(str(out))
    if not checks:
        env["DEB_BUILD_OPTIONS"] = "nocheck"
    result = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL
    )
    if result.returncode != 0:
        raise AssertionError(
            f"building the packages failed:\n{result.stdout[-6000:]}\n{result.stderr[-4000:]}"
        )
    return sorted(out.glob("*.deb"))


@contextlib.contextmanager
def booted(root: Path, name: str, binds: Sequence[tuple[Path, str]], log_dir: Path) -> Iterator[Container]:
    container = Container(root, name, binds, log_dir / f"{name}.log")
    with container:
        yield container
