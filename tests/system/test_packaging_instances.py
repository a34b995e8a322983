"""Several workers on one machine, in a booted Debian: `flamenco-worker@gpu0` and `@gpu1` from the packaged
template unit, each with its own overlay file, name, state, bus name and task environment, restarted one
at a time over D-Bus and from the Manager.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.support.nspawn import Container, missing_tools, wait_for
from tests.system.test_packaging import (  # noqa: F401 - fixtures, used by name
    MANAGER,
    SCRIPTS_DIR,
    SETTLE,
    UNIT_PROPS,
    WORKER,
    _no_container_survives,
    container,
    debs,
    install,
    root,
    upgrade_debs,
)

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(missing_tools() is not None, reason=missing_tools() or ""),
    # The first test of a session also builds the .debs and the root filesystem (minutes, once).
    pytest.mark.timeout(1800),
]

INSTANCES = ("gpu0", "gpu1")
OVERLAY_DIR = "/etc/flamenco/flamenco-worker.d"
PATH_IFACE = ("/org/flamenco/Worker1", "org.flamenco.Worker1")
PROBE_TYPE = "gpu-probe"
PROBE_SCRIPT = "gpu_probe.js"
# A job type with one task of its own type, which only gpu1's overlay lists: it runs there and nowhere else.
PROBE_JS = f"""\
const JOB_TYPE = {{
    label: "GPU probe",
    settings: [{{ key: "message", type: "string", default: "probe" }}],
}};

function compileJob(job) {{
    const task = author.Task("probe", "{PROBE_TYPE}");
    task.addCommand(author.Command("exec", {{
        exe: "/bin/sh",
        args: ["-c", "echo probe-cuda=$CUDA_VISIBLE_DEVICES"],
    }}, 0));
    job.addTask(task);
}}
"""
OVERLAYS = {
    "gpu0": 'environment:\n  CUDA_VISIBLE_DEVICES: "0"\n',
    "gpu1": (
        f"task_types: [blender, ffmpeg, file-management, misc, {PROBE_TYPE}]\n"
        'environment:\n  CUDA_VISIBLE_DEVICES: "1"\n'
    ),
}


def unit(instance: str) -> str:
    return f"flamenco-worker@{instance}.service"


class Farm:
    """The container with the Manager, the plain worker and the two instances."""

    def __init__(self, ct: Container) -> None:
        self.ct = ct
        self.host = ct.run("python3", "-c", "import socket; print(socket.gethostname())").stdout.strip()
        self.ids: dict[str, str] = {}

    def workers(self) -> dict[str, dict]:
        code, body = self.ct.http("GET", "/api/v3/worker-mgt/workers")
        assert code == 200, body
        return {w["name"]: w for w in body["workers"]}

    def wait_awake(self, instance: str) -> str:
        name = f"{self.host}-{instance}"

        def awake() -> str | None:
            worker = self.workers().get(name)
            return worker["id"] if worker and worker["status"] == "awake" else None

        return wait_for(f"{name} awake at the manager", awake, SETTLE)

    def unit(self, instance: str) -> dict[str, str]:
        return self.ct.show(unit(instance), *UNIT_PROPS)

    def sign_ons(self, instance: str) -> int:
        return self.ct.journal(MANAGER).count(f"worker signed on worker={self.ids[instance]}")

    def bus_names(self) -> list[str]:
        out = self.ct.busctl("list", "--acquired", "--no-legend").stdout
        return sorted(line.split()[0] for line in out.splitlines() if line.startswith("org.flamenco"))

    def wait_restarted(self, instance: str, before: dict[str, str], sign_ons: int) -> dict[str, str]:
        def restarted() -> dict[str, str] | None:
            now = self.unit(instance)
            fresh = now["MainPID"] not in ("0", before["MainPID"])
            return now if now["ActiveState"] == "active" and fresh else None

        after = wait_for(f"systemd to start {instance} again", restarted, SETTLE)
        assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1, after
        wait_for(f"{instance} to sign on again", lambda: self.sign_ons(instance) > sign_ons, SETTLE)
        self.wait_awake(instance)
        return after

    def restart_only(self, instance: str, restart: Callable[[], object]) -> None:
        """Call `restart()`; `instance` comes back as a new process, the other one is left alone."""
        other = next(i for i in INSTANCES if i != instance)
        before, other_before, sign_ons = self.unit(instance), self.unit(other), self.sign_ons(instance)
        restart()
        after = self.wait_restarted(instance, before, sign_ons)
        assert after["Result"] == "success", after
        other_after = self.unit(other)
        assert (other_after["MainPID"], other_after["NRestarts"]) == (
            other_before["MainPID"],
            other_before["NRestarts"],
        )
        assert self.workers()[f"{self.host}-{other}"]["status"] == "awake"


def test_two_instances_of_the_template_unit_work_side_by_side(container: Container) -> None:  # noqa: F811
    ct = container
    install(ct, "/mnt/debs/flamenco-manager_0.1.0_all.deb", "/mnt/debs/flamenco-worker_0.1.0_all.deb")
    farm = Farm(ct)
    # The package enables and starts the plain worker only; the template waits for the administrator.
    assert ct.run("systemctl", "is-enabled", "flamenco-worker@.service", check=False).stdout.strip() == (
        "disabled"
    )
    for instance, text in OVERLAYS.items():
        ct.run("mkdir", "-p", OVERLAY_DIR)
        ct.write(f"{OVERLAY_DIR}/{instance}.yaml", text)
    ct.run("systemctl", "start", *(unit(i) for i in INSTANCES))

    # Two workers registered separately, with their own credentials in their own state directories.
    for instance in INSTANCES:
        farm.ids[instance] = farm.wait_awake(instance)
    assert farm.ids["gpu0"] != farm.ids["gpu1"]
    for instance in INSTANCES:
        creds = ct.read(f"/var/lib/flamenco-worker/{instance}/flamenco-worker-credentials.yaml")
        assert farm.ids[instance] in creds, creds
        env = ct.show(unit(instance), "Environment", "User", "WorkingDirectory")
        assert f"FLAMENCO_HOME=/var/lib/flamenco-worker/{instance}" in env["Environment"], env
        assert (env["User"], env["WorkingDirectory"]) == ("flamenco", f"/var/lib/flamenco-worker/{instance}")
    verify = ct.run("systemd-analyze", "verify", unit("gpu0"), check=False)
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")

    # Every worker on the machine has its own bus name; the plain one keeps org.flamenco.Worker1.
    assert farm.bus_names() == [
        "org.flamenco.Worker1",
        "org.flamenco.Worker1.gpu0",
        "org.flamenco.Worker1.gpu1",
    ]
    for instance in INSTANCES:
        name = ct.busctl("get-property", f"org.flamenco.Worker1.{instance}", *PATH_IFACE, "Name").stdout
        assert name.strip() == f's "{farm.host}-{instance}"'
        journal = ct.journal(unit(instance))
        assert f"worker={farm.host}-{instance} instance={instance} ready" in journal, journal[-2000:]
        assert f"name=org.flamenco.Worker1.{instance} object=" in journal, journal[-2000:]
        status = ct.run("systemctl", "status", "--no-pager", unit(instance)).stdout
        assert f"Flamenco render farm worker (instance {instance})" in status, status
        assert 'Status: "awake: waiting for a task' in status, status

    # A task only gpu1 takes sees gpu1's CUDA_VISIBLE_DEVICES.
    ct.run("mkdir", "-p", SCRIPTS_DIR)
    ct.write(f"{SCRIPTS_DIR}/{PROBE_SCRIPT}", PROBE_JS)
    ct.run("systemctl", "reload", MANAGER)
    wait_for(
        "the manager to load the probe job type",
        lambda: f"name={PROBE_TYPE} script={PROBE_SCRIPT}" in ct.journal(MANAGER),
        SETTLE,
    )
    job = {"name": "probe", "type": PROBE_TYPE, "priority": 50, "submitter_platform": "linux", "settings": {}}
    code, created = ct.http("POST", "/api/v3/jobs", job)
    assert code == 200, created

    def probe_done() -> dict | None:
        _, tasks = ct.http("GET", f"/api/v3/jobs/{created['id']}/tasks")
        task = tasks["tasks"][0]
        return task if task["status"] in ("completed", "failed") else None

    task = wait_for("the probe task to finish", probe_done, SETTLE)
    _, full = ct.http("GET", f"/api/v3/tasks/{task['id']}")
    assert (full["status"], full["worker"]["id"]) == ("completed", farm.ids["gpu1"]), json.dumps(full)
    code, log = ct.http("GET", f"/api/v3/tasks/{task['id']}/logtail")
    assert code == 200 and "> probe-cuda=1\n" in log, log
    # The task's story in the journal names the instance that ran it.
    story = ct.run(
        "journalctl", "-u", unit("gpu1"), f"FLAMENCO_TASK={task['id']}", "FLAMENCO_INSTANCE=gpu1", "-o", "cat"
    ).stdout
    assert f"task={task['id']}" in story, story

    # Restart over D-Bus to gpu0's own name restarts gpu0 alone; from the Manager, gpu1 alone.
    farm.restart_only(
        "gpu0",
        lambda: ct.busctl("call", "org.flamenco.Worker1.gpu0", *PATH_IFACE, "Restart", "b", "true"),
    )

    def restart_gpu1_from_the_manager() -> None:
        request = {"status": "restart", "is_lazy": False}
        code, body = ct.http("POST", f"/api/v3/worker-mgt/workers/{farm.ids['gpu1']}/setstatus", request)
        assert code == 204, body

    farm.restart_only("gpu1", restart_gpu1_from_the_manager)
    assert farm.bus_names() == [
        "org.flamenco.Worker1",
        "org.flamenco.Worker1.gpu0",
        "org.flamenco.Worker1.gpu1",
    ]
    assert ct.show(WORKER, "ActiveState")["ActiveState"] == "active"

    # Removing the package stops the instances too (they are the administrator's, not debhelper's).
    ct.run("apt-get", "remove", "-y", "-q", "flamenco-worker")
    for instance in INSTANCES:
        assert ct.show(unit(instance), "ActiveState")["ActiveState"] == "inactive"
    assert farm.bus_names() == []
