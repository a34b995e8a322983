"""packaging/build-deb: its check of the build dependencies, and what the flamenco-manager .deb holds.

The check runs against control files naming missing packages. Nothing is installed or removed: the
missing package does not exist, and where the script would run apt-get (as root), an `apt-get` of the
test's own, first on PATH, records what it was asked. The .deb is built once for the module (without
its test step, with lintian) when every build dependency is there, and skipped otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_DEB = REPO / "packaging" / "build-deb"
MISSING = "flamenco-no-such-package"
# Building both packages without their test step, lintian included: about a minute on two busy cores.
BUILD_TIMEOUT = 900


# For the tests that look at the manager .deb: the first of them builds it (dpkg-buildpackage and
# lintian, seconds of work), so `make unit` leaves them to `make test`.
def builds_the_deb(test: Callable[..., None]) -> Callable[..., None]:
    return pytest.mark.slow(pytest.mark.timeout(BUILD_TIMEOUT + 60)(test))


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


# --- what the built flamenco-manager package holds ---------------------------------------------------------

MANAGER_UNIT = "lib/systemd/system/flamenco-manager.service"
SCRIPTS_README = "etc/flamenco/scripts/README"


@dataclass(frozen=True)
class ManagerDeb:
    """The flamenco-manager .deb: control fields, conffiles, (mode, owner) by path, and its unpacked tree."""

    fields: dict[str, str]
    conffiles: list[str]
    entries: dict[str, tuple[str, str]]
    root: Path

    def text(self, path: str) -> str:
        return (self.root / path).read_text()


@pytest.fixture(scope="module")
def manager_deb(tmp_path_factory: pytest.TempPathFactory) -> ManagerDeb:
    for tool in ("dpkg-buildpackage", "lintian", "dpkg-deb"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is missing")
    env = {k: v for k, v in os.environ.items() if k not in ("FLAMENCO_DEB_CONTROL", "DEB_BUILD_PROFILES")}
    # Building installs nothing here: without every build dependency the test has nothing to look at.
    check = subprocess.run(
        ["dash", str(BUILD_DEB), "--check-deps"], env=env, capture_output=True, text=True, timeout=60
    )
    if check.returncode != 0:
        pytest.skip(f"build dependencies missing: {check.stderr.strip()}")
    out = tmp_path_factory.mktemp("debs")
    # The package's own test step is the unit suite, run elsewhere; lintian still checks the result.
    env["DEB_BUILD_OPTIONS"] = "nocheck"
    built = subprocess.run(
        ["dash", str(BUILD_DEB), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert built.returncode == 0, f"{built.stdout[-6000:]}\n{built.stderr[-4000:]}"
    (deb,) = out.glob("flamenco-manager_*_all.deb")
    root = out / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, timeout=60)
    control = out / "control"
    subprocess.run(["dpkg-deb", "-e", str(deb), str(control)], check=True, timeout=60)
    fields = _control_fields((control / "control").read_text())
    conffiles = (control / "conffiles").read_text().split()
    listing = subprocess.run(
        ["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    entries = {}
    for line in listing.splitlines():
        mode, owner, _size, _date, _time, path = line.split(maxsplit=5)
        entries[path.removeprefix("./").rstrip("/")] = (mode, owner)
    return ManagerDeb(fields, conffiles, entries, root)


def _control_fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if line.startswith((" ", "\t")):
            fields[key] += "\n" + line.strip()
        else:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def _relations(field: str) -> set[str]:
    return {part.split()[0] for part in field.replace("|", ",").split(",") if part.strip()}


@builds_the_deb
def test_nodejs_is_recommended_not_required(manager_deb: ManagerDeb) -> None:
    assert "nodejs" in _relations(manager_deb.fields["Recommends"])
    assert "nodejs" not in _relations(manager_deb.fields["Depends"])
    description = " ".join(manager_deb.fields["Description"].split())
    assert "built-in job types work without it" in description, description


@builds_the_deb
def test_scripts_directory_with_its_readme_as_a_conffile(manager_deb: ManagerDeb) -> None:
    # root's, readable by everyone: the manager's user reads the scripts and cannot change them
    assert manager_deb.entries["etc/flamenco/scripts"] == ("drwxr-xr-x", "root/root")
    assert manager_deb.entries[SCRIPTS_README] == ("-rw-r--r--", "root/root")
    assert f"/{SCRIPTS_README}" in manager_deb.conffiles, manager_deb.conffiles
    readme = manager_deb.text(SCRIPTS_README)
    for words in ("*.js", '"my-render"', "systemctl reload flamenco-manager", "-check-scripts", "nodejs"):
        assert words in readme, words


@builds_the_deb
def test_the_unit_reloads_with_sighup(manager_deb: ManagerDeb) -> None:
    unit = manager_deb.text(MANAGER_UNIT).splitlines()
    # the shell's builtin kill: procps (/bin/kill) is not in every Debian 12
    assert "ExecReload=/bin/sh -c 'kill -HUP $$MAINPID'" in unit
    # node's JIT needs memory it makes executable; NODE_OPTIONS would not reach it (clean environment)
    assert "MemoryDenyWriteExecute=yes" not in unit


@builds_the_deb
def test_the_javascript_job_types_are_shipped(manager_deb: ManagerDeb) -> None:
    scripts = sorted((REPO / "flamenco_manager" / "jobtypes" / "javascript").glob("*.js"))
    for script in scripts:
        path = f"usr/lib/python3/dist-packages/flamenco_manager/jobtypes/javascript/{script.name}"
        assert manager_deb.entries.get(path) == ("-rw-r--r--", "root/root"), path
        assert manager_deb.text(path) == script.read_text(), path
