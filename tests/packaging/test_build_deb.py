"""packaging/build-deb's check of the build dependencies, against control files naming missing packages.

Nothing is installed or removed: the missing package does not exist, and where the script would run
apt-get (as root), an `apt-get` of the test's own, first on PATH, records what it was asked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_DEB = REPO / "packaging" / "build-deb"
MISSING = "flamenco-no-such-package"

pytestmark = pytest.mark.skipif(
    shutil.which("dpkg-checkbuilddeps") is None or shutil.which("dash") is None,
    reason="needs dpkg-checkbuilddeps (dpkg-dev) and dash",
)

CONTROL = f"""\
Source: probe
Build-Depends: debhelper-compat (= 13),
               {MISSING} (>= 1.0),
               {MISSING}-two:native | {MISSING}-alternative,
               python3-all,
               {MISSING}-tests <!nocheck>

Package: probe
Architecture: all
Description: probe
 probe
"""


def _run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    control = tmp_path / "control"
    control.write_text(CONTROL)
    inherited = {k: v for k, v in os.environ.items() if k != "DEB_BUILD_PROFILES"}
    environment = {**inherited, "FLAMENCO_DEB_CONTROL": str(control), **(env or {})}
    # dash: the script must stay POSIX sh whatever /bin/sh is.
    return subprocess.run(
        ["dash", str(BUILD_DEB), *args, str(tmp_path / "out")],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_check_names_the_missing_packages_in_an_apt_get_line(tmp_path: Path) -> None:
    result = _run(tmp_path, "--check-deps")
    assert result.returncode == 1, result.stderr
    sudo = "" if os.geteuid() == 0 else "sudo "
    wanted = f"{MISSING} {MISSING}-two {MISSING}-tests"  # no versions, qualifiers or alternatives
    assert f"  {sudo}apt-get install --no-install-recommends {wanted}\n" in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()  # nothing built


def test_build_profiles_are_honoured(tmp_path: Path) -> None:
    result = _run(tmp_path, "--check-deps", env={"DEB_BUILD_PROFILES": "nocheck"})
    assert result.returncode == 1 and f"{MISSING}-tests" not in result.stderr, result.stderr


def test_the_project_control_file_is_satisfied_here() -> None:
    env = {k: v for k, v in os.environ.items() if k != "FLAMENCO_DEB_CONTROL"}
    result = subprocess.run(
        ["dash", str(BUILD_DEB), "--check-deps"], env=env, capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the install path runs as root")
def test_as_root_the_missing_packages_are_installed_with_apt_get(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "apt-get.calls"
    fake = bin_dir / "apt-get"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    fake.chmod(0o755)
    result = _run(tmp_path, env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert calls.read_text().splitlines() == [
        "update -qq",
        f"install -y -q --no-install-recommends {MISSING} {MISSING}-two {MISSING}-tests",
    ]
    # The stand-in installed nothing, so the script stops instead of building without them.
    assert result.returncode == 1 and "still missing after apt-get" in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runuser") is None, reason="needs root and runuser")
def test_a_user_who_cannot_install_gets_the_sudo_line(tmp_path: Path) -> None:
    # pytest's tmp_path is private to root; the other user reads the control file from /tmp.
    handle, name = tempfile.mkstemp(prefix="fdeb-control-", dir="/tmp")
    os.close(handle)
    control = Path(name)
    control.write_text(CONTROL)
    control.chmod(0o644)
    try:
        result = _run_as_nobody(control, tmp_path / "out")
    finally:
        control.unlink()
    assert result.returncode == 1, result.stderr
    assert f"  sudo apt-get install --no-install-recommends {MISSING} " in result.stderr, result.stderr


def _run_as_nobody(control: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *(
                "runuser",
                "-u",
                "nobody",
                "--",
                "env",
                f"FLAMENCO_DEB_CONTROL={control}",
                "PATH=/usr/bin:/bin",
            ),
            *("dash", str(BUILD_DEB), str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
