"""What differs between the Debian releases the packages are proven on: each container runs the release
its test id names, the packages' dependencies resolve there, and no start of either daemon writes a
Python warning into the journal, not even with deprecation warnings shown (Debian 13's Python 3.13
deprecates what dbus-next 0.2.3 uses; see flamenco_worker/warnings_filter.py).

Every test here runs once per release through the fixtures of test_packaging.
"""

from __future__ import annotations

import pytest

from tests.support.nspawn import Container, wait_for
from tests.system import test_packaging as packaging
from tests.system.test_packaging import MANAGER, SETTLE, WORKER, Node

# The fixtures of test_packaging (pytest finds fixtures among a module's names): once per release.
_no_container_survives = packaging._no_container_survives
release = packaging.release
root = packaging.root
debs = packaging.debs
upgrade_debs = packaging.upgrade_debs
container = packaging.container
node = packaging.node

pytestmark = [pytest.mark.system, pytest.mark.timeout(1800)]

# The Python each release ships (the packages are built for "python3 >= 3.11").
PYTHON = {"bookworm": "Python 3.11.", "trixie": "Python 3.13."}


def test_the_container_runs_the_release_of_its_test_id(node: Node, release: str) -> None:
    ct = node.ct
    os_release = dict(line.split("=", 1) for line in ct.read("/etc/os-release").splitlines() if "=" in line)
    assert os_release["VERSION_CODENAME"] == release, os_release
    assert ct.run("python3", "--version").stdout.startswith(PYTHON[release])
    # Both packages were installed by apt from the host-built .debs: every dependency resolved.
    status = ct.run(
        "dpkg-query", "-W", "-f", "${Package}=${Status}\n", "flamenco-worker", "flamenco-manager"
    ).stdout
    installed = dict(line.split("=", 1) for line in status.splitlines())
    assert installed == dict.fromkeys(("flamenco-worker", "flamenco-manager"), "install ok installed")
    assert ct.run("apt-get", "check", "-q").returncode == 0


def invocation_journal(ct: Container, unit: str) -> str:
    """What the unit's current run (its processes, not systemd) wrote to the journal."""
    invocation = ct.show(unit, "InvocationID")["InvocationID"]
    assert invocation, unit
    return ct.run("journalctl", "--no-pager", "-o", "cat", f"_SYSTEMD_INVOCATION_ID={invocation}").stdout


def warning_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "Warning" in line]


def test_no_start_writes_a_python_warning_to_the_journal(node: Node) -> None:
    ct = node.ct
    # As installed: Python's default filters.
    for unit in (WORKER, MANAGER):
        journal = invocation_journal(ct, unit)
        assert journal and warning_lines(journal) == [], (unit, journal)

    # Deprecation warnings shown, as an administrator hunting a problem (or a newer Python) would run
    # them: the class dbus-next's on Python 3.13 belongs to. (Showing every class also prints, on Debian
    # 12, python3-gi's ImportWarning when dbus-next imports it, and ResourceWarnings at exit.)
    for unit in (WORKER, MANAGER):
        ct.run("mkdir", "-p", f"/etc/systemd/system/{unit}.d")
        ct.write(
            f"/etc/systemd/system/{unit}.d/warnings.conf",
            "[Service]\nEnvironment=PYTHONWARNINGS=default::DeprecationWarning\n",
        )
    ct.run("systemctl", "daemon-reload")
    # One after the other: the manager (Type=notify) listens before the worker signs on.
    ct.run("systemctl", "restart", MANAGER)
    ct.run("systemctl", "restart", WORKER)
    for unit in (WORKER, MANAGER):
        env = ct.run("systemctl", "show", "-p", "Environment", unit).stdout
        assert "PYTHONWARNINGS=default::DeprecationWarning" in env, env
    node.wait_awake()
    # The worker's imports (dbus-next among them) come before it signs on, the manager's before it listens.
    worker = wait_for(
        "the restarted worker to sign on",
        lambda: j if "signed on at Manager" in (j := invocation_journal(ct, WORKER)) else None,
        SETTLE,
    )
    manager = invocation_journal(ct, MANAGER)
    assert "listening listen=" in manager, manager
    assert warning_lines(worker) == [], worker
    assert warning_lines(manager) == [], manager
