"""Upgrading flamenco-worker in a booted Debian while workers run: a render is never cut short.

Version A is the session's `make deb` build, version B the same source rebuilt as UPGRADE_VERSION (its
worker reports that version on sign-on). The upgrade leaves the running worker alone and asks it over
D-Bus to restart after its current task; systemd starts it again on exit code 47 and B signs on.
"""

from __future__ import annotations

import time

import pytest

from tests.support.nspawn import missing_tools, wait_for
from tests.system import test_packaging
from tests.system.test_packaging import (
    DBUS_ARGS,
    NO_RESTART_WAIT,
    SETTLE,
    UPGRADE_VERSION,
    WORKER,
    WORKER_YAML,
    Node,
)

# test_packaging's fixtures, under their names here so that pytest finds them for this module's tests.
_no_container_survives = test_packaging._no_container_survives
root = test_packaging.root
debs = test_packaging.debs
upgrade_debs = test_packaging.upgrade_debs
container = test_packaging.container
node = test_packaging.node

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(missing_tools() is not None, reason=missing_tools() or ""),
    # The first test may build the .debs and the container's root filesystem (minutes, once).
    pytest.mark.timeout(1800),
]

HELPER = "/usr/libexec/flamenco-worker/restart-after-upgrade"
WORKER_A = "/mnt/debs/flamenco-worker_0.1.0_all.deb"
WORKER_B = f"/mnt/debs-upgrade/flamenco-worker_{UPGRADE_VERSION}_all.deb"
# Long enough for apt to finish the upgrade while the task still runs (the upgrade takes a few seconds).
SLEEP_SECONDS = 25
# What every line of the restart helper starts with (and nothing else in apt's output does).
PREFIX = "flamenco-worker: "


def apt_install(node: Node, deb: str, *options: str) -> str:
    result = node.ct.run("apt-get", "install", "-y", "-q", *options, deb, timeout=180)
    return result.stdout + result.stderr


def helper_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(PREFIX)]


def prop(node: Node, name: str) -> str:
    """A property of the worker's D-Bus object, without busctl's type letter and quotes."""
    out = node.ct.busctl("get-property", *DBUS_ARGS, name).stdout.strip()
    return out.split(" ", 1)[1].strip('"')


def installed_version(node: Node) -> str:
    return node.ct.run("dpkg-query", "-W", "-f", "${Version}", "flamenco-worker").stdout


def start_sleep_task(node: Node) -> str:
    """Submit a job with one long sleep task; return its id once this worker runs it."""
    ct = node.ct
    code, job = ct.http(
        "POST",
        "/api/v3/jobs",
        {
            "name": "render during upgrade",
            "type": "echo-sleep-test",
            "priority": 50,
            "submitter_platform": "linux",
            "settings": {"message": "hi", "sleep_duration_seconds": SLEEP_SECONDS, "sleep_repeats": 1},
        },
    )
    assert code == 200, job

    def running_sleep_task() -> str | None:
        task_id = prop(node, "CurrentTask")  # the job's quick echo task comes first
        if not task_id:
            return None
        _, task = ct.http("GET", f"/api/v3/tasks/{task_id}")
        active = task.get("name", "").startswith("sleep") and task.get("status") == "active"
        return task_id if active else None

    task_id: str = wait_for("the worker to start the sleep task", running_sleep_task, SETTLE)
    return task_id


def task_status(node: Node, task_id: str) -> str:
    code, task = node.ct.http("GET", f"/api/v3/tasks/{task_id}")
    assert code == 200, task
    status: str = task["status"]
    return status


def make_not_restartable(node: Node) -> None:
    ct = node.ct
    ct.write(WORKER_YAML, ct.read(WORKER_YAML).replace("restart_exit_code: 47", "restart_exit_code: 0"))
    ct.run("systemctl", "reload", WORKER)  # SIGHUP applies restart_exit_code
    wait_for("the worker to be not restartable", lambda: prop(node, "Restartable") == "false", SETTLE)


def test_an_upgrade_during_a_task_restarts_the_worker_once_the_task_is_done(node: Node) -> None:
    ct = node.ct
    task_id = start_sleep_task(node)
    before, sign_ons = node.unit(), node.sign_ons()

    output = apt_install(node, WORKER_B)

    assert installed_version(node) == UPGRADE_VERSION
    assert helper_lines(output) == [
        f"{PREFIX}{WORKER} restarts into the new version after its current task {task_id}"
        " (the render is not interrupted)"
    ], output
    # The upgrade stopped nothing: the same process still runs the same task, a restart is pending.
    now = node.unit()
    assert (now["ActiveState"], now["MainPID"], now["NRestarts"]) == (
        "active",
        before["MainPID"],
        before["NRestarts"],
    ), now
    assert (prop(node, "CurrentTask"), prop(node, "RequestedStatus")) == (task_id, "restart")
    assert prop(node, "Version") == "0.1.0"
    assert task_status(node, task_id) == "active"

    # The task runs to its end; then the worker exits 47 and systemd starts version B.
    wait_for(
        "the task to complete", lambda: task_status(node, task_id) == "completed", SLEEP_SECONDS + SETTLE
    )
    after = node.wait_restarted(before, sign_ons)
    assert after["Result"] == "success", after
    assert node.manager_worker()["version"] == UPGRADE_VERSION
    assert prop(node, "Version") == UPGRADE_VERSION
    journal = ct.journal(WORKER)
    ended, exited = journal.find(f"task={task_id} ended"), journal.find("exiting with code 47")
    assert 0 <= ended < exited, journal[-3000:]
    # Not handed back or requeued at any point: the old worker finished it, nothing was aborted.
    assert task_status(node, task_id) == "completed"
    assert f"task={task_id} aborting" not in journal, journal[-3000:]
    code, log_tail = ct.http("GET", f"/api/v3/tasks/{task_id}/logtail")
    assert code == 200 and "queued by Manager" not in log_tail, log_tail


def test_an_idle_worker_restarts_at_once_and_a_stopped_one_is_only_started(node: Node) -> None:
    ct = node.ct
    before, sign_ons = node.unit(), node.sign_ons()
    output = apt_install(node, WORKER_B)
    assert helper_lines(output) == [f"{PREFIX}{WORKER} was idle: restarting it into the new version now"]
    # apt returned once the worker ran again (as with debhelper's restart, on which scripts may rely).
    now = node.unit()
    assert now["ActiveState"] == "active" and now["MainPID"] != before["MainPID"], now
    node.wait_restarted(before, sign_ons)
    assert node.manager_worker()["version"] == UPGRADE_VERSION

    # A stopped (enabled) worker is started by the package, on the new version already; the helper
    # leaves it alone and says nothing. (Going back to A is an upgrade to dpkg's maintainer scripts too.)
    ct.run("systemctl", "stop", WORKER)
    sign_ons = node.sign_ons()
    output = apt_install(node, WORKER_A, "--allow-downgrades")
    assert helper_lines(output) == [], output
    started = node.unit()
    assert started["ActiveState"] == "active", started
    wait_for("the started worker to sign on", lambda: node.sign_ons() > sign_ons, SETTLE)
    time.sleep(NO_RESTART_WAIT)
    later = node.unit()
    assert (later["MainPID"], later["NRestarts"]) == (started["MainPID"], started["NRestarts"]), later
    assert node.manager_worker()["version"] == "0.1.0"


def test_a_worker_that_cannot_restart_is_left_running_with_a_note(node: Node) -> None:
    ct = node.ct
    make_not_restartable(node)
    before = node.unit()

    output = apt_install(node, WORKER_B)

    assert helper_lines(output) == [
        f"{PREFIX}{WORKER} keeps running the previous version: it cannot restart itself"
        f" (restart_exit_code is not set); restart it when it is not rendering: systemctl restart {WORKER},"
        " or set restart_exit_code: 47 in its configuration so that upgrades restart it after its task"
    ], output
    time.sleep(NO_RESTART_WAIT)
    later = node.unit()
    assert (later["ActiveState"], later["MainPID"], later["NRestarts"]) == (
        "active",
        before["MainPID"],
        before["NRestarts"],
    ), later
    assert prop(node, "Version") == "0.1.0"

    # The administrator makes it restartable again and runs the helper by hand.
    ct.write(WORKER_YAML, ct.read(WORKER_YAML).replace("restart_exit_code: 0", "restart_exit_code: 47"))
    ct.run("systemctl", "reload", WORKER)
    wait_for("the worker to be restartable", lambda: prop(node, "Restartable") == "true", SETTLE)
    sign_ons = node.sign_ons()
    by_hand = ct.run(HELPER)
    assert by_hand.stdout == f"{PREFIX}{WORKER} was idle: restarting it into the new version now\n"
    node.wait_restarted(before, sign_ons)
    assert node.manager_worker()["version"] == UPGRADE_VERSION


def test_a_worker_off_the_bus_is_left_running_with_a_note(node: Node) -> None:
    ct = node.ct
    ct.write("/etc/default/flamenco-worker", 'FLAMENCO_WORKER_ARGS="-dbus off"\n')
    ct.run("systemctl", "restart", WORKER)
    node.wait_awake()
    assert ct.busctl("status", DBUS_ARGS[0], check=False).returncode != 0
    before = node.unit()

    output = apt_install(node, WORKER_B)

    assert helper_lines(output) == [
        f"{PREFIX}{WORKER} keeps running the previous version: it is not on the system D-Bus"
        " (dbus: off, or no bus), so it cannot be asked to restart after its task;"
        f" restart it when it is not rendering: systemctl restart {WORKER}"
    ], output
    time.sleep(NO_RESTART_WAIT)
    later = node.unit()
    assert (later["ActiveState"], later["MainPID"]) == ("active", before["MainPID"]), later
    assert node.manager_worker()["version"] == "0.1.0"
    # By hand it says the same, and its exit status tells a script that a worker was left behind.
    by_hand = ct.run(HELPER, check=False)
    assert (by_hand.returncode, helper_lines(by_hand.stdout)) == (1, helper_lines(output))


def test_a_template_instance_is_found_by_its_unit_and_restarted_after_its_task(node: Node) -> None:
    """`flamenco-worker@NAME.service` units are found too, and matched to whichever worker name on the
    bus their process owns. The instance here is the packaged unit copied as a template, run instead of
    the plain unit (so it takes the plain bus name and state); what counts is that the helper finds it."""
    ct = node.ct
    instance = "flamenco-worker@render\\x2da.service"  # systemd's escaping of "render-a"
    ct.run("systemctl", "disable", "--now", WORKER)
    template = ct.read(f"/lib/systemd/system/{WORKER}").replace(
        "Description=Flamenco render farm worker", "Description=Flamenco render farm worker %i"
    )
    ct.write("/etc/systemd/system/flamenco-worker@.service", template)
    ct.run("systemctl", "daemon-reload")
    ct.run("systemctl", "start", instance)
    assert ct.run(HELPER, "--list").stdout == f"{instance}\n"
    task_id = start_sleep_task(node)
    before = ct.show(instance, "MainPID", "NRestarts")

    output = apt_install(node, WORKER_B)

    assert helper_lines(output) == [
        f"{PREFIX}{instance} restarts into the new version after its current task {task_id}"
        " (the render is not interrupted)"
    ], output
    assert ct.show(instance, "MainPID")["MainPID"] == before["MainPID"]
    assert node.unit()["ActiveState"] == "inactive", "the disabled plain unit stays down"
    wait_for(
        "the task to complete", lambda: task_status(node, task_id) == "completed", SLEEP_SECONDS + SETTLE
    )

    def restarted() -> bool:
        now = ct.show(instance, "ActiveState", "MainPID", "NRestarts")
        fresh = now["MainPID"] not in ("0", before["MainPID"])
        return (
            now["ActiveState"] == "active" and fresh and int(now["NRestarts"]) == int(before["NRestarts"]) + 1
        )

    wait_for("systemd to start the instance again", restarted, SETTLE)
    wait_for("version B to sign on", lambda: node.manager_worker()["version"] == UPGRADE_VERSION, SETTLE)
