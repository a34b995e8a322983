"""The .debs in a booted Debian 12 and Debian 13: install, supervision by systemd, D-Bus control, removal,
upgrade, and JavaScript job types run by Debian's own nodejs under the hardened manager unit.

The packages are built once per session with `make deb` (which also runs lintian) on the host, each
release's root filesystem once per machine (cached), and every test gets a fresh container
(`--volatile=overlay`) with both packages installed from the .debs by apt. Every test that boots a
container runs once per Debian release (`root` is parametrized over nspawn.SUITES; the ids name it,
e.g. `[trixie]`): a module that imports these fixtures gets both releases.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.manager_process import REPO
from tests.support.nspawn import (
    SUITES,
    Container,
    booted,
    build_debs,
    missing_tools,
    release_of,
    rootfs,
    wait_for,
)

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(missing_tools() is not None, reason=missing_tools() or ""),
    # The first test also builds the .debs and the container's root filesystem (minutes, once).
    pytest.mark.timeout(1800),
]

WORKER = "flamenco-worker.service"
MANAGER = "flamenco-manager.service"
DBUS_ARGS = ("org.flamenco.Worker1", "/org/flamenco/Worker1", "org.flamenco.Worker1")
WORKER_YAML = "/etc/flamenco/flamenco-worker.yaml"
UPGRADE_VERSION = "0.1.0+upgrade1"
UNIT_PROPS = ("ActiveState", "SubState", "MainPID", "NRestarts", "ExecMainStatus", "Result")
# Registration, restarts and shutdowns take a second or two here; room for a loaded CI machine.
SETTLE = 30.0
# systemd's Restart= delay in the worker unit, plus margin: after this a restart would have happened.
NO_RESTART_WAIT = 6.0

_names = itertools.count(1)


@pytest.fixture(scope="session", autouse=True)
def _no_container_survives() -> Iterator[None]:
    atexit.register(Container.poweroff_all)
    yield
    Container.poweroff_all()


# pytest makes a fixture definition per module that holds the fixture's name, so a session fixture
# imported into another test module runs once per module: what these build (or how building failed) is
# kept here, once per run.
_built: dict[str, Path | BaseException] = {}


def _once(key: str, build: Callable[[], Path]) -> Path:
    if key not in _built:
        try:
            _built[key] = build()
        except Exception as exc:
            _built[key] = exc
    done = _built[key]
    if isinstance(done, BaseException):
        raise done
    return done


@pytest.fixture(scope="session")
def debs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    def build() -> Path:
        out = tmp_path_factory.mktemp("debs")
        built = build_debs(out)
        assert {p.name.split("_")[0] for p in built} == {"flamenco-worker", "flamenco-manager"}, built
        return out

    return _once("debs", build)


@pytest.fixture(scope="session")
def upgrade_debs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    def build() -> Path:
        out = tmp_path_factory.mktemp("debs-upgrade")
        build_debs(out, version=UPGRADE_VERSION, checks=False)
        return out

    return _once("upgrade_debs", build)


@pytest.fixture(scope="session", params=SUITES)
def root(request: pytest.FixtureRequest) -> Path:
    """The cached root filesystem of one Debian release. Session-scoped and parametrized over SUITES:
    every test that boots a container (through `container`, `node`, or `booted(root, …)`) runs once per
    release, pytest runs one release's tests together, and the test ids name the release."""
    suite: str = request.param
    return _once(f"root-{suite}", lambda: rootfs(suite))


@pytest.fixture(scope="session")
def release(root: Path) -> str:
    """The Debian release (suite name, e.g. "trixie") of this test's root filesystem."""
    return release_of(root)


@dataclass
class Node:
    """A container with both packages installed and the worker registered at the manager."""

    ct: Container
    worker_id: str

    def unit(self, unit: str = WORKER) -> dict[str, str]:
        return self.ct.show(unit, *UNIT_PROPS)

    def manager_worker(self) -> dict:
        status, body = self.ct.http("GET", f"/api/v3/worker-mgt/workers/{self.worker_id}")
        assert status == 200, body
        return body

    def sign_ons(self) -> int:
        return self.ct.journal(MANAGER).count(f"worker signed on worker={self.worker_id}")

    def busctl_call(self, method: str, *args: str, user: str | None = None, check: bool = True):
        return self.ct.busctl("call", *DBUS_ARGS, method, *args, user=user, check=check)

    def flamenco_processes(self) -> list[str]:
        """Command lines of every process of the user flamenco (the rootfs has no ps/pgrep)."""
        script = (
            "import os, pwd\n"
            "uid = pwd.getpwnam('flamenco').pw_uid\n"
            "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
            "    try:\n"
            "        if os.stat(f'/proc/{pid}').st_uid == uid:\n"
            "            print(open(f'/proc/{pid}/cmdline', 'rb').read().replace(b'\\0', b' ').decode())\n"
            "    except OSError:\n"
            "        pass\n"
        )
        return self.ct.run("python3", "-c", script).stdout.splitlines()

    def set_status(self, status: str, lazy: bool = False) -> None:
        code, body = self.ct.http(
            "POST",
            f"/api/v3/worker-mgt/workers/{self.worker_id}/setstatus",
            {"status": status, "is_lazy": lazy},
        )
        assert code == 204, (code, body)

    def wait_awake(self) -> None:
        wait_for(
            "the worker awake at the manager", lambda: self.manager_worker()["status"] == "awake", SETTLE
        )

    def wait_restarted(self, before: dict[str, str], sign_ons: int) -> dict[str, str]:
        """NRestarts+1, a new MainPID, and the new process signed on at the manager."""
        want = int(before["NRestarts"]) + 1

        def restarted() -> dict[str, str] | None:
            now = self.unit()
            fresh = now["MainPID"] not in ("0", before["MainPID"])
            ok = now["ActiveState"] == "active" and fresh and int(now["NRestarts"]) >= want
            return now if ok else None

        after = wait_for("systemd to start the worker again", restarted, SETTLE)
        assert int(after["NRestarts"]) == want, after
        wait_for("the new worker process to sign on", lambda: self.sign_ons() > sign_ons, SETTLE)
        self.wait_awake()
        return after

    def wait_stopped(self, expected_state: str = "inactive") -> dict[str, str]:
        def stopped() -> dict[str, str] | None:
            u = self.unit()
            return u if u["ActiveState"] == expected_state and u["MainPID"] == "0" else None

        return wait_for(f"the worker unit {expected_state}", stopped, SETTLE)


def install(ct: Container, *debs: str) -> None:
    ct.run("apt-get", "install", "-y", "-q", *debs)


def wait_registered(ct: Container) -> str:
    def registered() -> str | None:
        code, body = ct.http("GET", "/api/v3/worker-mgt/workers")
        awake = [w for w in body["workers"] if w["status"] == "awake"] if code == 200 else []
        return awake[0]["id"] if awake else None

    return wait_for("the worker to register at the manager", registered, SETTLE)


@pytest.fixture
def container(root: Path, debs: Path, upgrade_debs: Path, tmp_path: Path) -> Iterator[Container]:
    binds = [(debs, "/mnt/debs"), (upgrade_debs, "/mnt/debs-upgrade")]
    with booted(root, f"fpk{os.getpid()}n{next(_names)}", binds, tmp_path) as ct:
        yield ct


@pytest.fixture
def node(container: Container) -> Node:
    install(container, "/mnt/debs/flamenco-manager_0.1.0_all.deb", "/mnt/debs/flamenco-worker_0.1.0_all.deb")
    return Node(container, wait_registered(container))


def test_each_package_holds_only_its_own_python_package(debs: Path) -> None:
    contents = {
        deb.name.split("_")[0]: subprocess.run(
            ["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True
        ).stdout
        for deb in debs.glob("*_0.1.0_all.deb")
    }
    listing = {
        name: subprocess.run(["tar", "-t"], input=tar, capture_output=True, check=True).stdout.decode()
        for name, tar in contents.items()
    }
    worker, manager = listing["flamenco-worker"], listing["flamenco-manager"]
    assert "dist-packages/flamenco_worker/cli.py" in worker and "flamenco_manager" not in worker
    assert "dist-packages/flamenco_manager/cli.py" in manager and "flamenco_worker" not in manager
    assert "demo.py" not in manager
    assert "flamenco_manager/store/migrations/0001_initial.sqlite.sql" in manager
    assert "flamenco_manager/openapi/flamenco-openapi.json" in manager
    web = Path(__file__).resolve().parents[2] / "flamenco_manager" / "web" / "index.html"
    if web.exists():
        assert "flamenco_manager/web/index.html" in manager
    for path in (
        "etc/flamenco/flamenco-worker.yaml",
        "etc/default/flamenco-worker",
        "usr/share/dbus-1/system.d/org.flamenco.Worker1.conf",
        "usr/share/man/man1/flamenco-worker.1.gz",
        "lib/systemd/system/flamenco-worker.service",
        "usr/lib/sysusers.d/flamenco-worker.conf",
    ):
        assert f"./{path}\n" in worker, path
    for path in (
        "etc/flamenco/flamenco-manager.yaml",
        "usr/share/man/man1/flamenco-manager.1.gz",
        "lib/systemd/system/flamenco-manager.service",
        "usr/lib/sysusers.d/flamenco-manager.conf",
    ):
        assert f"./{path}\n" in manager, path


def test_the_worker_alone_on_a_fresh_system_runs_and_obeys_the_group(container: Container) -> None:
    ct = container
    install(ct, "/mnt/debs/flamenco-worker_0.1.0_all.deb")
    assert ct.show(WORKER, "ActiveState")["ActiveState"] == "active"
    assert ct.run("getent", "group", "flamenco").stdout.startswith("flamenco:")
    # The account did not exist yet when the bus first read the policy; the worker still owns its name.
    assert ct.busctl("status", "org.flamenco.Worker1", check=False).returncode == 0, ct.journal(WORKER)
    text = ct.busctl("get-property", *DBUS_ARGS, "StatusText").stdout
    # The package leaves manager_url empty: with no Manager anywhere the worker keeps searching.
    assert "searching the LAN for a Manager" in text, text
    ct.run("useradd", "--no-create-home", "--groups", "flamenco", "operator1")
    ct.busctl("call", *DBUS_ARGS, "Sleep", "b", "false", user="operator1")
    wait_for(
        "the worker asleep",
        lambda: ct.busctl("get-property", *DBUS_ARGS, "Status").stdout.strip() == 's "asleep"',
        SETTLE,
    )


def test_installed_units_run_verify_cleanly_and_show_the_status_line(node: Node) -> None:
    ct = node.ct
    for unit in (WORKER, MANAGER):
        assert node.unit(unit)["ActiveState"] == "active", unit
    verify = ct.run("systemd-analyze", "verify", WORKER, MANAGER, check=False)
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")
    exposure = {}
    for unit in (WORKER, MANAGER):
        out = ct.run("systemd-analyze", "security", "--offline=yes", f"/lib/systemd/system/{unit}").stdout
        level = re.search(r"Overall exposure level for \S+: ([\d.]+)", out)
        assert level is not None, out
        exposure[unit] = float(level.group(1))
    assert exposure[WORKER] <= 5.0 and exposure[MANAGER] <= exposure[WORKER], exposure

    status = ct.run("systemctl", "status", "--no-pager", WORKER).stdout
    assert 'Status: "awake: waiting for a task from Manager at http://localhost:8080/"' in status, status
    assert ct.busctl("get-property", *DBUS_ARGS, "WorkerID").stdout.strip() == f's "{node.worker_id}"'
    assert ct.show(WORKER, "User", "Environment")["User"] == "flamenco"
    assert ct.exists("/var/lib/flamenco-worker/flamenco-worker-credentials.yaml")
    assert ct.exists("/var/lib/flamenco-manager/flamenco-manager.sqlite")
    # The package carries the revision it was built from (the build writes it; there is no git inside).
    built_from = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty", "--tags"], capture_output=True, text=True
    ).stdout.strip()
    _, version = ct.http("GET", "/api/v3/version")
    assert version["git"] == built_from and version["shortversion"].startswith("3."), version

    # systemctl reload is SIGHUP: the configuration is re-read in the same process.
    pid = node.unit()["MainPID"]
    ct.run("systemctl", "reload", WORKER)
    wait_for(
        "the worker to log the reload",
        lambda: f"reload: config={WORKER_YAML} applied" in ct.journal(WORKER),
        SETTLE,
    )
    assert node.unit()["MainPID"] == pid


def test_restart_over_dbus_as_root(node: Node) -> None:
    before, sign_ons = node.unit(), node.sign_ons()
    assert node.busctl_call("Restart", "b", "true").returncode == 0
    after = node.wait_restarted(before, sign_ons)
    assert after["Result"] == "success"


def test_restart_from_the_manager(node: Node) -> None:
    before, sign_ons = node.unit(), node.sign_ons()
    node.set_status("restart")
    node.wait_restarted(before, sign_ons)


def test_a_changed_restart_code_with_the_readme_drop_in(node: Node) -> None:
    ct = node.ct
    ct.write(WORKER_YAML, ct.read(WORKER_YAML).replace("restart_exit_code: 47", "restart_exit_code: 42"))
    ct.run("mkdir", "-p", "/etc/systemd/system/flamenco-worker.service.d")
    ct.write(
        "/etc/systemd/system/flamenco-worker.service.d/restart-code.conf",
        "[Service]\nRestartForceExitStatus=\nRestartForceExitStatus=42\n"
        "SuccessExitStatus=\nSuccessExitStatus=42\n",
    )
    ct.run("systemctl", "daemon-reload")
    ct.run("systemctl", "restart", WORKER)
    node.wait_awake()
    assert ct.busctl("get-property", *DBUS_ARGS, "RestartExitCode").stdout.split()[-1] == "42"

    before, sign_ons = node.unit(), node.sign_ons()
    node.busctl_call("Restart", "b", "false")
    after = node.wait_restarted(before, sign_ons)
    assert after["Result"] == "success"
    # Without the drop-in, 42 would still be restarted (on-failure) but logged as a failure.
    assert "Failed with result" not in ct.journal(WORKER)


def test_shut_down_over_dbus_while_idle(node: Node) -> None:
    before = node.unit()
    node.busctl_call("ShutDown", "b", "false")
    after = node.wait_stopped()
    assert (after["SubState"], after["ExecMainStatus"], after["Result"]) == ("dead", "0", "success")
    assert after["NRestarts"] == before["NRestarts"]
    assert "inactive (dead)" in node.ct.run("systemctl", "status", WORKER, check=False).stdout


def test_shut_down_from_the_manager(node: Node) -> None:
    before = node.unit()
    node.set_status("offline")
    after = node.wait_stopped()
    assert (after["SubState"], after["ExecMainStatus"], after["Result"]) == ("dead", "0", "success")
    assert after["NRestarts"] == before["NRestarts"]
    wait_for(
        "the manager to see the worker offline", lambda: node.manager_worker()["status"] == "offline", SETTLE
    )


def test_stop_during_a_task_hands_it_back(node: Node) -> None:
    ct = node.ct
    code, job = ct.http(
        "POST",
        "/api/v3/jobs",
        {
            "name": "t",
            "type": "echo-sleep-test",
            "priority": 50,
            "submitter_platform": "linux",
            "settings": {"message": "hi", "sleep_duration_seconds": 30, "sleep_repeats": 1},
        },
    )
    assert code == 200, job

    def running_task() -> str | None:
        # the job's quick echo task comes first; wait for the 30 s sleep task to be running
        out = ct.busctl("get-property", *DBUS_ARGS, "CurrentTask").stdout.strip()
        task_id = out.removeprefix("s ").strip('"')
        if not task_id:
            return None
        _, task = ct.http("GET", f"/api/v3/tasks/{task_id}")
        return (
            task_id if task.get("name", "").startswith("sleep") and task.get("status") == "active" else None
        )

    task_id = wait_for("the worker to start the sleep task", running_task, SETTLE)
    code, task = ct.http("GET", f"/api/v3/tasks/{task_id}")
    assert task["status"] == "active", task

    ct.run("systemctl", "stop", WORKER, timeout=90)
    after = node.unit()
    assert (after["ActiveState"], after["ExecMainStatus"], after["Result"]) == ("inactive", "0", "success")
    code, task = ct.http("GET", f"/api/v3/tasks/{task_id}")
    assert (code, task["status"]) == (200, "queued"), task
    assert [cmd for cmd in node.flamenco_processes() if "flamenco-manager" not in cmd] == []


def test_kill_9_is_restarted(node: Node) -> None:
    before, sign_ons = node.unit(), node.sign_ons()
    node.ct.run("systemctl", "kill", "--kill-who=main", "-s", "SIGKILL", WORKER)
    node.wait_restarted(before, sign_ons)


def test_a_stopped_worker_is_killed_by_the_watchdog_and_restarted(node: Node) -> None:
    ct = node.ct
    # The packaged WatchdogSec is a minute; a drop-in shortens it so that the test does not wait for it.
    ct.run("mkdir", "-p", "/etc/systemd/system/flamenco-worker.service.d")
    ct.write("/etc/systemd/system/flamenco-worker.service.d/watchdog.conf", "[Service]\nWatchdogSec=3s\n")
    ct.run("systemctl", "daemon-reload")
    ct.run("systemctl", "restart", WORKER)
    node.wait_awake()
    time.sleep(4)  # more than one watchdog period: the pings keep a healthy worker alive
    before, sign_ons = node.unit(), node.sign_ons()
    assert before["Result"] == "success"

    ct.run("systemctl", "kill", "--kill-who=main", "-s", "SIGSTOP", WORKER)
    node.wait_restarted(before, sign_ons)
    assert "Watchdog timeout" in ct.journal(WORKER)


def test_a_stopped_manager_is_killed_by_the_watchdog_and_restarted(node: Node) -> None:
    ct = node.ct
    assert ct.show(MANAGER, "WatchdogUSec")["WatchdogUSec"] == "30s"
    # As for the worker: a drop-in shortens the packaged 30 s so the test does not wait for it.
    ct.run("mkdir", "-p", "/etc/systemd/system/flamenco-manager.service.d")
    ct.write("/etc/systemd/system/flamenco-manager.service.d/watchdog.conf", "[Service]\nWatchdogSec=3s\n")
    ct.run("systemctl", "daemon-reload")
    ct.run("systemctl", "restart", MANAGER)
    started = ct.show(MANAGER, "ActiveEnterTimestampMonotonic")["ActiveEnterTimestampMonotonic"]

    def pinged_past_one_period() -> dict[str, str] | None:
        # systemd stamps every WATCHDOG=1 it receives; a stamp more than 3 s after start means the pings,
        # not luck, kept the manager alive through a whole watchdog period.
        now = ct.show(MANAGER, "WatchdogTimestampMonotonic", *UNIT_PROPS)
        return now if int(now["WatchdogTimestampMonotonic"]) > int(started) + 3_000_000 else None

    before = wait_for("the manager's pings to outlast a watchdog period", pinged_past_one_period, SETTLE)
    assert (before["ActiveState"], before["Result"]) == ("active", "success"), before

    ct.run("systemctl", "kill", "--kill-who=main", "-s", "SIGSTOP", MANAGER)

    def restarted() -> dict[str, str] | None:
        now = node.unit(MANAGER)
        fresh = now["MainPID"] not in ("0", before["MainPID"])
        grown = int(now["NRestarts"]) > int(before["NRestarts"])
        return now if now["ActiveState"] == "active" and fresh and grown else None

    after = wait_for("systemd to kill the stopped manager and start it again", restarted, SETTLE)
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1, after
    journal = ct.journal(MANAGER)
    assert "Watchdog timeout" in journal and "Failed with result 'watchdog'" in journal, journal[-3000:]

    def answers() -> bool:
        try:
            return ct.http("GET", "/api/v3/version")[0] == 200
        except AssertionError:  # not listening yet: the request inside the container failed
            return False

    wait_for("the restarted manager to answer HTTP", answers, SETTLE)


def test_broken_configuration_fails_with_78_without_a_restart_loop(node: Node) -> None:
    ct = node.ct
    ct.write(WORKER_YAML, "manager_url: [unclosed\nrestart_exit_code: 47\n")
    ct.run("systemctl", "restart", WORKER, check=False)
    failed = wait_for(
        "the worker unit failed", lambda: u if (u := node.unit())["ActiveState"] == "failed" else None, SETTLE
    )
    assert failed["ExecMainStatus"] == "78", failed
    time.sleep(NO_RESTART_WAIT)
    later = node.unit()
    assert (later["ActiveState"], later["NRestarts"]) == ("failed", failed["NRestarts"]), later
    journal = ct.journal(WORKER)
    assert f"configuration error: {WORKER_YAML}:" in journal, journal


def test_dbus_policy_for_users_in_and_outside_the_group(node: Node) -> None:
    ct = node.ct
    ct.run("useradd", "--no-create-home", "outsider")
    ct.run("useradd", "--no-create-home", "--groups", "flamenco", "operator1")

    denied = node.busctl_call("ShutDown", "b", "false", user="outsider", check=False)
    assert denied.returncode != 0 and "Access denied" in denied.stderr + denied.stdout, denied
    status = ct.busctl("get-property", *DBUS_ARGS, "Status", user="outsider").stdout.strip()
    assert status == 's "awake"'
    assert node.unit()["ActiveState"] == "active"

    node.busctl_call("ShutDown", "b", "false", user="operator1")
    after = node.wait_stopped()
    assert after["ExecMainStatus"] == "0"


def test_remove_purge_and_reinstall(node: Node) -> None:
    ct = node.ct
    ct.run("apt-get", "remove", "-y", "-q", "flamenco-worker")
    assert ct.run("systemctl", "is-active", WORKER, check=False).stdout.strip() == "inactive"
    assert [cmd for cmd in node.flamenco_processes() if "flamenco-worker" in cmd] == []
    assert ct.exists(WORKER_YAML), "remove keeps the configuration"

    ct.run("apt-get", "purge", "-y", "-q", "flamenco-worker")
    for path in (WORKER_YAML, "/etc/default/flamenco-worker", "/var/lib/flamenco-worker"):
        assert not ct.exists(path), path
    assert ct.exists("/etc/flamenco/flamenco-manager.yaml")

    install(ct, "/mnt/debs/flamenco-worker_0.1.0_all.deb")
    assert node.unit()["ActiveState"] == "active"
    assert ct.exists(WORKER_YAML)
    wait_for(
        "the reinstalled worker to register",
        lambda: (
            len(
                [
                    w
                    for w in ct.http("GET", "/api/v3/worker-mgt/workers")[1]["workers"]
                    if w["status"] == "awake"
                ]
            )
            == 1
        ),
        SETTLE,
    )


def test_upgrade_keeps_a_modified_conffile(node: Node) -> None:
    ct = node.ct
    ct.write(WORKER_YAML, ct.read(WORKER_YAML) + "worker_name: kept-by-upgrade\n")
    install(
        ct,
        f"/mnt/debs-upgrade/flamenco-manager_{UPGRADE_VERSION}_all.deb",
        f"/mnt/debs-upgrade/flamenco-worker_{UPGRADE_VERSION}_all.deb",
    )
    versions = ct.run("dpkg-query", "-W", "-f", "${Version}\n", "flamenco-worker", "flamenco-manager").stdout
    assert versions.split() == [UPGRADE_VERSION, UPGRADE_VERSION]
    assert ct.read(WORKER_YAML).endswith("worker_name: kept-by-upgrade\n")
    assert not ct.exists(WORKER_YAML + ".dpkg-new") and not ct.exists(WORKER_YAML + ".dpkg-dist")
    assert node.unit()["ActiveState"] == "active" and node.unit(MANAGER)["ActiveState"] == "active"
    wait_for(
        "the upgraded worker under its configured name",
        lambda: (w := node.manager_worker())["name"] == "kept-by-upgrade" and w["status"] == "awake",
        SETTLE,
    )


# --- JavaScript job types under the packaged unit, with Debian's own nodejs -------------------------

SCRIPTS_DIR = "/etc/flamenco/scripts"
TURNTABLE = "turntable_render.js"
# A studio's job type as an administrator would drop it into /etc/flamenco/scripts.
TURNTABLE_JS = """\
// Turntable renders of an asset: Blender renders the orbit in chunks of frames, then a preview video.
const JOB_TYPE = {
    label: "Turntable Render",
    description: "Render an asset turntable in chunks of frames, then a preview video",
    settings: [
        { key: "frames", type: "string", required: true, visible: "submission",
          eval: "f'{C.scene.frame_start}-{C.scene.frame_end}'",
          description: "Frames of the orbit, e.g. '1-120'" },
        { key: "chunk_size", type: "int32", default: 4, propargs: { min: 1, max: 100 },
          description: "Frames one Blender task renders" },
        { key: "blendfile", type: "string", required: true, visible: "web",
          description: "Path of the asset's Blend file" },
        { key: "render_output_path", type: "string", subtype: "file_path", editable: false,
          eval: "str(Path(abspath('//'), 'turntable', jobname, '######'))",
          description: "Where the frames go" },
        { key: "fps", type: "float", visible: "hidden",
          eval: "C.scene.render.fps / C.scene.render.fps_base" },
    ],
};

function compileJob(job) {
    const settings = job.settings;
    if (settings.chunk_size > 50) {
        throw "a turntable chunk of more than 50 frames holds a worker too long";
    }
    const outputDir = path.dirname(settings.render_output_path);
    const video = author.Task("preview-video", "ffmpeg");
    for (const chunk of frameChunker(settings.frames, settings.chunk_size)) {
        const task = author.Task(`render-${chunk}`, "blender");
        task.addCommand(author.Command("blender-render", {
            exe: "{blender}",
            exeArgs: "{blenderArgs}",
            argsBefore: [],
            blendfile: settings.blendfile,
            args: ["--render-output", settings.render_output_path,
                   "--render-frame", chunk.replace("-", "..")],
        }, 0));
        job.addTask(task);
        video.addDependency(task);
    }
    video.addCommand(author.Command("frames-to-video", {
        exe: "ffmpeg",
        fps: settings.fps || 24,
        inputGlob: path.join(outputDir, "*.png"),
        outputFile: path.join(outputDir, "turntable.mp4"),
        args: ["-c:v", "h264"],
    }, 0));
    job.addTask(video);
    print("turntable:", frameCount(settings.frames), "frames for", job.name);
}
"""
# Debian's own nodejs per release.
NODEJS_MAJOR = {"bookworm": "v18.", "trixie": "v20."}
TURNTABLE_SETTINGS = {
    "frames": "1-10",
    "chunk_size": 4,
    "blendfile": "/srv/flamenco/assets/chair.blend",
    "render_output_path": "/srv/flamenco/render/chair/######",
    "fps": 24.0,
}


@pytest.fixture
def manager_with_node(root: Path, debs: Path, tmp_path: Path) -> Iterator[Container]:
    """A container with only the manager package installed (its Recommends, nodejs, is in the rootfs)."""
    with booted(root, f"fpk{os.getpid()}n{next(_names)}", [(debs, "/mnt/debs")], tmp_path) as ct:
        install(ct, "/mnt/debs/flamenco-manager_0.1.0_all.deb")
        yield ct


def unit_processes(ct: Container, unit: str) -> dict[str, dict[str, str]]:
    """pid -> {comm, seccomp} of every process in the unit's cgroup (the rootfs has no ps)."""
    script = (
        "import json, os, sys\n"
        "out = {}\n"
        "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "    try:\n"
        "        if not open(f'/proc/{pid}/cgroup').read().rstrip().endswith('/' + sys.argv[1]):\n"
        "            continue\n"
        "        status = open(f'/proc/{pid}/status').read().splitlines()\n"
        "    except OSError:\n"
        "        continue\n"
        "    fields = dict(line.split(':', 1) for line in status)\n"
        "    out[pid] = {'comm': fields['Name'].strip(), 'seccomp': fields['Seccomp'].strip()}\n"
        "print(json.dumps(out))\n"
    )
    processes: dict[str, dict[str, str]] = json.loads(ct.run("python3", "-c", script, unit).stdout)
    return processes


def test_javascript_job_types_run_under_the_hardened_unit_with_debians_nodejs(
    manager_with_node: Container, release: str
) -> None:
    ct = manager_with_node
    node_version = ct.run("node", "--version").stdout.strip()
    want = NODEJS_MAJOR[release]
    assert node_version.startswith(want), f"{release}'s nodejs is {want}x, the rootfs holds {node_version}"
    before = ct.show(MANAGER, *UNIT_PROPS)
    assert before["ActiveState"] == "active", before

    ct.write(f"{SCRIPTS_DIR}/{TURNTABLE}", TURNTABLE_JS)
    ct.run("systemctl", "reload", MANAGER)
    journal = wait_for(
        "the manager to load the script after the reload",
        lambda: (
            j
            if f"job type loaded name=turntable-render script={TURNTABLE}" in (j := ct.journal(MANAGER))
            else None
        ),
        SETTLE,
    )
    assert f"reloading the job type scripts dir={SCRIPTS_DIR}" in journal, journal[-3000:]
    assert "Reloaded flamenco-manager.service" in journal and "Reload failed" not in journal, journal[-3000:]

    code, body = ct.http("GET", "/api/v3/jobs/types")
    assert code == 200, body
    types = {t["name"]: t for t in body["job_types"]}
    turntable = types.get("turntable-render")
    assert turntable is not None, sorted(types)
    assert turntable["label"] == "Turntable Render"
    settings = {s["key"]: s for s in turntable["settings"]}
    assert list(settings) == ["frames", "chunk_size", "blendfile", "render_output_path", "fps"]
    assert [settings[k].get("visible") for k in ("frames", "blendfile", "fps")] == [
        "submission",
        "web",
        "hidden",
    ]
    assert "simple-blender-render" in types, "the built-ins stay beside the script"

    job = {
        "name": "chair turntable",
        "type": "turntable-render",
        "priority": 50,
        "submitter_platform": "linux",
        "settings": TURNTABLE_SETTINGS,
    }
    code, created = ct.http("POST", "/api/v3/jobs", job)
    assert code == 200, created
    code, tasks = ct.http("GET", f"/api/v3/jobs/{created['id']}/tasks")
    assert code == 200, tasks
    names = [t["name"] for t in tasks["tasks"]]
    # frameChunker writes a chunk of two frames as "9,10", as Flamenco's does
    assert sorted(names) == sorted(["render-1-4", "render-5-8", "render-9,10", "preview-video"]), names

    # A thrown string reaches the submitter as a 400 naming the script and, located by node's debugger
    # inside the sandbox, its line.
    message = "a turntable chunk of more than 50 frames holds a worker too long"
    line = next(n for n, text in enumerate(TURNTABLE_JS.splitlines(), 1) if message in text)
    too_big = {**job, "settings": {**TURNTABLE_SETTINGS, "chunk_size": 80}}
    code, refused = ct.http("POST", "/api/v3/jobs", too_big)
    assert (code, refused["message"]) == (400, f"{TURNTABLE}:{line}: {message}"), refused

    # node ran inside the unit, under its seccomp filter, and neither it nor the manager fell over.
    processes = unit_processes(ct, MANAGER)
    nodes = [p for p in processes.values() if p["comm"].startswith("node")]
    assert len(nodes) == 1 and nodes[0]["seccomp"] == "2", processes
    after = ct.show(MANAGER, *UNIT_PROPS)
    assert (after["ActiveState"], after["MainPID"], after["NRestarts"]) == ("active", before["MainPID"], "0")
    assert ct.run("systemctl", "is-active", MANAGER).stdout.strip() == "active"
    journal = ct.journal(MANAGER)
    assert journal.count("script engine started") == 1, journal[-3000:]
    for trouble in ("script engine stderr", "Traceback", "did not start", "JavaScript job types skipped"):
        assert trouble not in journal, journal[-3000:]

    # An administrator checks the directory before reloading, as the README there says.
    check = ct.run(
        "flamenco-manager",
        "-config",
        "/etc/flamenco/flamenco-manager.yaml",
        "-check-scripts",
        SCRIPTS_DIR,
        user="flamenco",
        check=False,
    )
    assert check.returncode == 0, (check.stdout, check.stderr)
    row = next((text for text in check.stdout.splitlines() if "turntable-render" in text), "")
    # the frames' placeholder is "1": one render task and the video
    assert "Turntable Render" in row and row.endswith("2 tasks"), check.stdout
    assert "all compiled" in check.stdout, check.stdout


def test_a_unit_with_memory_deny_write_execute_skips_the_scripts_and_keeps_the_builtins(
    manager_with_node: Container,
) -> None:
    """What the README promises to whoever adds MemoryDenyWriteExecute=yes: node cannot start, the
    scripts are skipped with one clear line, and the manager and its built-in job types carry on."""
    ct = manager_with_node
    ct.run("mkdir", "-p", "/etc/systemd/system/flamenco-manager.service.d")
    ct.write(
        "/etc/systemd/system/flamenco-manager.service.d/mdwe.conf", "[Service]\nMemoryDenyWriteExecute=yes\n"
    )
    ct.run("systemctl", "daemon-reload")
    ct.run("systemctl", "restart", MANAGER)
    before = ct.show(MANAGER, *UNIT_PROPS)
    assert before["ActiveState"] == "active", before

    ct.write(f"{SCRIPTS_DIR}/{TURNTABLE}", TURNTABLE_JS)
    ct.run("systemctl", "reload", MANAGER)
    skipped = "JavaScript job types skipped, no usable JavaScript engine"
    journal = wait_for(
        "the manager to skip the scripts",
        lambda: j if skipped in (j := ct.journal(MANAGER)) else None,
        SETTLE,
    )
    line = next(text for text in journal.splitlines() if skipped in text)
    assert "did not start" in line and line.endswith(f"scripts={TURNTABLE}"), line

    code, body = ct.http("GET", "/api/v3/jobs/types")
    assert code == 200, body
    names = {t["name"] for t in body["job_types"]}
    assert "turntable-render" not in names and "simple-blender-render" in names, names
    after = ct.show(MANAGER, *UNIT_PROPS)
    assert (after["ActiveState"], after["MainPID"]) == ("active", before["MainPID"]), after
