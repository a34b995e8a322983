"""Several workers on one machine: `-instance NAME`, its overlay file, the `environment:` key, the escaped
bus name, and real workers owning their own names on a private bus (busctl against each)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from dbus_next.validators import is_bus_name_valid

from flamenco_worker import instance as instances
from flamenco_worker.config import ConfigError, WorkerSettings, load_settings
from flamenco_worker.dbus_service import BUS_NAME
from flamenco_worker.execution import process
from flamenco_worker.flags import build_parser, parse_command_line
from flamenco_worker.link import ManagerLink
from flamenco_worker.status import Origin, WorkerStatus
from flamenco_worker.worker import Worker
from tests.support.dbus_daemon import PrivateBus, short_tempdir
from tests.support.notify_socket import NotifySocket
from tests.support.worker_process import IFACE, PATH, WorkerProcess
from tests.worker.execution_fakes import RecordingListener
from tests.worker.scripted_manager import ScriptedManager, shell_task

POLICY = Path(__file__).resolve().parents[2] / "config" / "dbus" / "org.flamenco.Worker1.conf"
HOST = socket.gethostname()
ELEMENT = re.compile(r"[A-Za-z_-][A-Za-z0-9_-]*")
#: The package's test step may run where there is no D-Bus at all (a build machine).
needs_bus = pytest.mark.skipif(
    shutil.which("dbus-daemon") is None or shutil.which("busctl") is None,
    reason="needs dbus-daemon and busctl",
)


# --- escaping the instance name into a bus name -------------------------------------------------


@pytest.mark.parametrize(
    ("name", "element"),
    [
        ("gpu0", "gpu0"),
        ("0", "_30"),
        ("render.node", "render_2enode"),
        ("a_b", "a_5fb"),
        ("cuda-1", "cuda-1"),
        ("1gpu", "_31gpu"),
        ("gpu:1", "gpu_3a1"),
        ("é", "_c3_a9"),
    ],
)
def test_escaping_examples(name: str, element: str) -> None:
    assert instances.escape_bus_element(name) == element
    assert instances.unescape_bus_element(element) == name
    assert instances.bus_name(BUS_NAME, name) == f"org.flamenco.Worker1.{element}"


def test_escaping_round_trips_and_always_makes_a_valid_bus_name() -> None:
    alphabet = "aZ09-_.:@+ é\\x"
    names = {a + b + c for a in alphabet for b in alphabet for c in alphabet} | {"gpu0", "0", "_", "__"}
    for name in names:
        element = instances.escape_bus_element(name)
        assert ELEMENT.fullmatch(element), (name, element)
        assert is_bus_name_valid(instances.bus_name(BUS_NAME, name)), (name, element)
        assert instances.unescape_bus_element(element) == name


@pytest.mark.parametrize("element", ["_zz", "_3", "0", "_41", "a_2", "_ff", "", "_5F"])
def test_unescaping_refuses_what_the_rule_never_makes(element: str) -> None:
    with pytest.raises(ValueError):
        instances.unescape_bus_element(element)


def test_the_plain_worker_keeps_the_plain_name() -> None:
    assert instances.bus_name(BUS_NAME, "") == "org.flamenco.Worker1"
    assert instances.BASE_BUS_NAME == BUS_NAME


# --- settings: the overlay file, the default name and home ----------------------------------------


def load(
    tmp_path: Path,
    base: str | None,
    overlay: str | None = None,
    argv: Sequence[str] = ("-instance", "gpu0"),
    env: dict[str, str] | None = None,
) -> WorkerSettings:
    config = tmp_path / "flamenco-worker.yaml"
    if base is not None:
        config.write_text(base)
    if overlay is not None:
        (tmp_path / "flamenco-worker.d").mkdir(exist_ok=True)
        (tmp_path / "flamenco-worker.d" / "gpu0.yaml").write_text(overlay)
    flags = parse_command_line(["-config", str(config), *argv]).flags
    return load_settings(flags, env if env is not None else {"HOME": str(tmp_path)})


def test_the_overlay_goes_on_top_of_the_base_file(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        "manager_url: mgr:8080\ntask_types: [blender, misc]\nrestart_exit_code: 47\n"
        "environment:\n  OCIO: /srv/ocio.cfg\n  CUDA_VISIBLE_DEVICES: '0,1'\n",
        "task_types: [blender]\nrestart_exit_code: 42\nenvironment:\n  CUDA_VISIBLE_DEVICES: '1'\n",
    )
    assert s.instance == "gpu0"
    assert s.manager_url == "http://mgr:8080/"  # from the base file
    assert s.task_types == ("blender",)
    assert s.restart_exit_code == 42
    assert dict(s.environment) == {"OCIO": "/srv/ocio.cfg", "CUDA_VISIBLE_DEVICES": "1"}
    assert s.worker_name == f"{HOST}-gpu0"


def test_a_missing_overlay_means_the_base_file_alone(tmp_path: Path) -> None:
    s = load(tmp_path, "manager_url: mgr:8080\nenvironment:\n  A: x\n")
    assert (s.instance, s.manager_url, s.environment) == ("gpu0", "http://mgr:8080/", (("A", "x"),))
    assert s.worker_name == f"{HOST}-gpu0"


def test_the_default_name_yields_to_every_explicit_one(tmp_path: Path) -> None:
    assert load(tmp_path, "worker_name: base\n").worker_name == "base"
    assert load(tmp_path, "worker_name: base\n", "worker_name: mine\n").worker_name == "mine"
    env = {"HOME": str(tmp_path), "FLAMENCO_WORKER_NAME": "from-env"}
    assert load(tmp_path, "", env=env).worker_name == "from-env"
    assert load(tmp_path, "", argv=["-instance", "gpu0", "-name", "flag"]).worker_name == "flag"


def test_an_instance_keeps_its_own_home(tmp_path: Path) -> None:
    s = load(tmp_path, "", env={"HOME": str(tmp_path)})
    assert s.flamenco_home == tmp_path / ".local" / "share" / "flamenco" / "gpu0"
    given = load(tmp_path, "", env={"FLAMENCO_HOME": "/var/lib/flamenco-worker/gpu0"})
    assert given.flamenco_home == Path("/var/lib/flamenco-worker/gpu0")


def test_without_instance_nothing_changes(tmp_path: Path) -> None:
    (tmp_path / "flamenco-worker.d").mkdir()
    (tmp_path / "flamenco-worker.d" / "gpu0.yaml").write_text("worker_name: never\n")
    s = load(tmp_path, "", argv=[])
    assert (s.instance, s.worker_name, s.environment) == ("", HOST, ())
    assert s.flamenco_home == tmp_path / ".local" / "share" / "flamenco"


def test_the_overlay_is_found_beside_a_relative_default_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "flamenco-worker.d").mkdir()
    (tmp_path / "flamenco-worker.d" / "gpu0.yaml").write_text("worker_name: here\n")
    flags = parse_command_line(["-instance", "gpu0"]).flags
    assert load_settings(flags, {"HOME": str(tmp_path)}).worker_name == "here"


@pytest.mark.parametrize(
    ("overlay", "line", "problem"),
    [
        ("worker_name: ok\nmanager_url: [unclosed\n", 3, "invalid YAML"),
        ("worker_name: ok\nrestart_exit_code: 78\n", 2, "restart_exit_code: 78 is used by the worker"),
        ("- a list\n", 1, "must be a mapping"),
    ],
    ids=["yaml", "value", "not-a-mapping"],
)
def test_a_broken_overlay_names_its_file_and_line(
    tmp_path: Path, overlay: str, line: int, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "worker_name: base\n", overlay)
    text = str(caught.value)
    assert text.startswith(f"{tmp_path}/flamenco-worker.d/gpu0.yaml:{line}: "), text
    assert problem in text


@pytest.mark.parametrize(
    "name", ["", "a/b", ".", "..", "two words", "tab\there", "x" * 240], ids=lambda n: repr(n)[:12]
)
def test_a_bad_instance_name_is_a_flag_error(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match=r"^flag -instance: "):
        load(tmp_path, "", argv=["-instance", name])


def test_help_lists_the_flag() -> None:
    text = build_parser().format_help()
    assert "-instance NAME" in text and "flamenco-worker.d/NAME.yaml" in text


def run_cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLAMENCO_", "DBUS_", "NOTIFY_"))}
    return subprocess.run(
        [sys.executable, "-m", "flamenco_worker", *argv],
        cwd=cwd,
        env={**env, "HOME": str(cwd)},
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def test_a_broken_overlay_exits_78_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "flamenco-worker.yaml").write_text("restart_exit_code: 47\n")
    (tmp_path / "flamenco-worker.d").mkdir()
    (tmp_path / "flamenco-worker.d" / "gpu1.yaml").write_text("environment:\n  CUDA_VISIBLE_DEVICES: 1\n")
    result = run_cli("-instance", "gpu1", "-dbus", "off", cwd=tmp_path)
    assert result.returncode == 78, result.stderr
    assert result.stderr.splitlines()[-1] == (
        "flamenco-worker: configuration error: flamenco-worker.d/gpu1.yaml:2: environment: "
        "CUDA_VISIBLE_DEVICES: the value must be a string (quote it), not 1"
    )


# --- the environment: key -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("environment: [A, B]\n", 1, "must be a mapping of NAME"),
        ("environment: x\n", 1, "must be a mapping of NAME"),
        ("environment:\n  A: x\n  B: 3\n", 3, "B: the value must be a string (quote it), not 3"),
        ("environment:\n  A: x\n  B: [1]\n", 3, "B: the value must be a string"),
        ("environment:\n  A: x\n\n  A=B: y\n", 4, "'A=B' is not a valid variable name"),
        ("environment:\n  1A: y\n", 2, "'1A' is not a valid variable name"),
        ("environment:\n  A: x\n  1: y\n", 3, "variable names must be strings, not 1"),
        ("environment:\n  NOTIFY_SOCKET: /x\n", 2, "NOTIFY_SOCKET belongs to the worker process itself"),
        ('environment:\n  A: "a\\0b"\n', 2, "must not contain a NUL"),
    ],
    ids=["list", "string", "number", "list-value", "equals", "digit", "int-key", "daemon-only", "nul"],
)
def test_bad_environment_values_name_the_line(tmp_path: Path, text: str, line: int, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, argv=[])
    message = str(caught.value)
    assert message.startswith(f"{tmp_path}/flamenco-worker.yaml:{line}: environment: "), message
    assert problem in message


def test_an_empty_environment_key_is_no_variables(tmp_path: Path) -> None:
    assert load(tmp_path, "environment:\n", argv=[]).environment == ()


def test_child_environment_adds_the_settings_on_top() -> None:
    env = {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "0,1", "NOTIFY_SOCKET": "/run/x"}
    child = process.child_environment(env, (("CUDA_VISIBLE_DEVICES", "1"), ("OCIO", "/o")))
    assert child == {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "1", "OCIO": "/o"}


async def test_a_real_child_process_sees_the_variables() -> None:
    from flamenco_worker.execution import Command, Executor

    listener = RecordingListener()
    script = 'echo "cuda=$CUDA_VISIBLE_DEVICES ocio=$OCIO"'
    command = Command("exec", {"exe": "/bin/sh", "args": ["-c", script]})
    await Executor(listener, environment=(("CUDA_VISIBLE_DEVICES", "1"), ("OCIO", "/o"))).run([command])
    assert listener.output() == ["cuda=1 ocio=/o"]


async def test_a_task_from_the_manager_runs_with_the_instances_environment(tmp_path: Path) -> None:
    """From the overlay file through the task fetch to the child: the whole path a GPU setting takes."""
    manager = ScriptedManager(long_poll=True, tasks=[shell_task("t-env", 'echo "gpu=$CUDA_VISIBLE_DEVICES"')])
    url = await manager.start()
    try:
        settings = load(
            tmp_path,
            f"manager_url: {url}\ntask_types: [misc]\ndbus: off\n",
            "environment:\n  CUDA_VISIBLE_DEVICES: '1'\n",
        )
        link = ManagerLink(settings)
        worker = Worker(settings, task_source=link)
        link.attach(worker)
        worker.request_status(await link.connect(), lazy=False, origin=Origin.MANAGER)
        core = asyncio.create_task(worker.run())
        try:
            await manager.wait_for("completion", lambda: len(manager.status_updates()) == 2)
        finally:
            worker.request_status(WorkerStatus.OFFLINE, lazy=False, origin=Origin.LOCAL)
            assert await asyncio.wait_for(core, 20) == 0
            await link.close()
        assert "> gpu=1\n" in manager.log_text(), manager.log_text()
        assert manager.status_updates()[-1].body["taskStatus"] == "completed"
    finally:
        await manager.stop()


# --- real workers on a private bus: each owns its own name ----------------------------------------


class Instance:
    """A real worker process started with `-instance NAME`, its own home and notify socket."""

    def __init__(self, name: str, bus: PrivateBus, *args: str) -> None:
        self.name = name
        self.bus = bus
        self.dir = short_tempdir("fwi-")
        self.notify = NotifySocket(self.dir / "n.sock")
        self.proc = WorkerProcess(
            self.dir,
            ["-dbus", bus.kind, "-instance", name, "-restart-exit-code", "47", *args],
            bus=bus,
            notify=self.notify,
        )
        self.bus_name = instances.bus_name(BUS_NAME, name)

    def start(self) -> Instance:
        self.proc.start()
        self.proc.wait_ready()
        return self

    def get(self, prop: str, user: str | None = None) -> str:
        out = self.bus.busctl("get-property", self.bus_name, PATH, IFACE, prop, user=user).stdout
        return out.strip()

    def call(self, method: str, *args: str, user: str | None = None, check: bool = True):
        return self.bus.busctl("call", self.bus_name, PATH, IFACE, method, *args, user=user, check=check)

    def close(self) -> None:
        self.proc.stop()
        self.notify.close()
        subprocess.run(["rm", "-rf", str(self.dir)], check=False)


@pytest.fixture
def instance_factory() -> Iterator[list[Instance]]:
    made: list[Instance] = []
    yield made
    for inst in made:
        inst.close()


def bus_names(bus: PrivateBus) -> list[str]:
    out = bus.busctl("list", "--acquired", "--no-legend").stdout
    return sorted(line.split()[0] for line in out.splitlines() if line.startswith("org.flamenco"))


@needs_bus
def test_an_instance_owns_its_own_name(session_bus: PrivateBus, instance_factory: list[Instance]) -> None:
    gpu0 = Instance("gpu0", session_bus)
    instance_factory.append(gpu0.start())
    assert bus_names(session_bus) == ["org.flamenco.Worker1.gpu0"]
    assert gpu0.get("Name") == f's "{HOST}-gpu0"'
    assert gpu0.get("Status") == 's "awake"'
    out = session_bus.busctl("introspect", gpu0.bus_name, PATH, IFACE).stdout
    assert ".Restart " in out


@needs_bus
def test_two_instances_on_one_bus_and_a_restart_ends_only_its_own(
    session_bus: PrivateBus, instance_factory: list[Instance]
) -> None:
    gpu0 = Instance("gpu0", session_bus)
    zero = Instance("0", session_bus)  # escaped: a bus-name element must not start with a digit
    instance_factory.extend([gpu0.start(), zero.start()])
    assert bus_names(session_bus) == ["org.flamenco.Worker1._30", "org.flamenco.Worker1.gpu0"]
    assert zero.get("Name") == f's "{HOST}-0"'

    gpu0.call("Sleep", "b", "false")
    assert gpu0.get("Status") == 's "asleep"'
    assert zero.get("Status") == 's "awake"'

    zero.call("Restart", "b", "true")
    assert zero.proc.wait_exit() == 47
    assert gpu0.proc.process.poll() is None
    assert bus_names(session_bus) == ["org.flamenco.Worker1.gpu0"]
    assert gpu0.get("Status") == 's "asleep"'


@needs_bus
def test_a_plain_worker_and_an_instance_side_by_side(
    session_bus: PrivateBus, instance_factory: list[Instance], start_worker
) -> None:
    start_worker()
    instance_factory.append(Instance("gpu1", session_bus).start())
    assert bus_names(session_bus) == ["org.flamenco.Worker1", "org.flamenco.Worker1.gpu1"]


@needs_bus
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run busctl as another user")
def test_the_packaged_policy_covers_instance_names(instance_factory: list[Instance]) -> None:
    directory = short_tempdir("fwp-")
    bus = PrivateBus(directory, kind="system", policies=[POLICY]).start()
    try:
        gpu0 = Instance("render.node", bus)
        instance_factory.append(gpu0.start())  # as root: may own the name below org.flamenco.Worker1
        assert bus_names(bus) == ["org.flamenco.Worker1.render_2enode"]
        assert gpu0.get("Status", user="nobody") == 's "awake"'
        denied = gpu0.call("ShutDown", "b", "false", user="nobody", check=False)
        assert denied.returncode != 0 and "Access denied" in denied.stderr, denied.stderr
        gpu0.call("ShutDown", "b", "false")
        assert gpu0.proc.wait_exit() == 0
    finally:
        bus.stop()
        subprocess.run(["rm", "-rf", str(directory)], check=False)
