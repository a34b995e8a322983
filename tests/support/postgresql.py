"""A private PostgreSQL server for the tests: Debian's binaries, a cluster in a temporary directory.

PostgreSQL refuses to run as root, and the tests run as root here and in CI: the cluster then belongs to
`nobody` and `initdb`, `pg_ctl` run through `runuser`. The server listens on a unix socket in its own
directory only (no TCP port to collide with), trusts local connections, and trades durability for speed
(`fsync=off`): a test cluster is thrown away. Tests get a fresh database each, copied from a migrated
template, which costs a few milliseconds.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator

# Debian's server binaries (package postgresql-15; a newer release's directory is taken when present).
PG_ROOT = pathlib.Path("/usr/lib/postgresql")
# A cluster starts in well under a second; a loaded machine gets this long.
START_TIMEOUT = 60
# The user that owns the cluster when the tests run as root.
UNPRIVILEGED = "nobody"


def server_binaries() -> pathlib.Path | None:
    """The `bin` directory of the newest installed PostgreSQL server, or None."""
    if not PG_ROOT.is_dir():
        return None
    found = sorted(
        (p for p in PG_ROOT.iterdir() if (p / "bin" / "initdb").exists() and p.name.isdigit()),
        key=lambda p: int(p.name),
    )
    return found[-1] / "bin" if found else None


def _driver_present() -> bool:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return False
    return True


def unavailable() -> str | None:
    """Why a test server cannot run here, or None when it can."""
    if server_binaries() is None:
        return "PostgreSQL server binaries not installed (Debian package postgresql)"
    if not _driver_present():
        return "psycopg 3 not installed (Debian package python3-psycopg)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser to drop to an unprivileged user"
    return None


class PostgresServer:
    """A running cluster; `url(dbname)` names one of its databases."""

    def __init__(self, root: pathlib.Path, bindir: pathlib.Path) -> None:
        self.root = root
        self.bindir = bindir
        self.data = root / "data"
        self.socket_dir = root / "socket"
        self.user = UNPRIVILEGED if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        self._started = False

    def _run(self, *argv: str) -> None:
        command = list(argv)
        if os.geteuid() == 0:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=START_TIMEOUT, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stdout}{done.stderr}")

    def start(self) -> None:
        self.socket_dir.mkdir()
        if os.geteuid() == 0:
            entry = pwd.getpwnam(self.user)
            for path in (self.root, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        self._pg_ctl("start")
        self._started = True

    def _pg_ctl(self, action: str, *extra: str) -> None:
        options = f"-c listen_addresses='' -c unix_socket_directories={self.socket_dir} -c fsync=off"
        options += " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        # The log file keeps the server's output away from pg_ctl's pipes, which would never close.
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "server.log"),
            "-o",
            options,
            *extra,
            "-w",
            "-t",
            str(START_TIMEOUT),
            action,
        )

    def restart(self, *, down_for: float = 0.0) -> None:
        """Restart the server as an operator would (`pg_ctl restart -m fast`): every session ends (its
        client finds the connection dropped) and the server comes back on the same socket and settings.
        With `down_for`, it stays stopped that many seconds in between (an outage, not a blip)."""
        if not down_for:
            self._pg_ctl("restart", "-m", "fast")
            return
        self._pg_ctl("stop", "-m", "fast")
        time.sleep(down_for)
        self._pg_ctl("start")

    def stop(self) -> None:
        if self._started:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
            self._started = False

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@/{dbname}?host={self.socket_dir}"

    def admin(self, sql: str) -> None:
        """Run one statement outside a transaction (CREATE DATABASE, say) in the `postgres` database."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql)

    def fresh_database(self, template: str | None = None) -> str:
        """The URL of a new empty database (or a copy of `template`)."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        clause = f" TEMPLATE {template}" if template else ""
        self.admin(f"CREATE DATABASE {name}{clause}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database `fresh_database` made, whoever is still connected to it."""
        name = url.rsplit("/", 1)[1].split("?", 1)[0]
        self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A started cluster, stopped and removed on exit."""
    bindir = server_binaries()
    assert bindir is not None, unavailable()
    root = pathlib.Path(tempfile.mkdtemp(prefix="flamenco-pg-"))
    server = PostgresServer(root, bindir)
    try:
        server.start()
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)
