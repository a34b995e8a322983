"""Local actions over a private D-Bus with the real busctl, against the real worker process."""

from __future__ import annotations

import signal

import pytest

from tests.support.dbus_daemon import BusMonitor, PrivateBus
from tests.support.worker_process import IFACE, NAME, PATH
from tests.worker.conftest import StartWorker


def test_introspect_shows_the_interface(start_worker: StartWorker, session_bus: PrivateBus) -> None:
    start_worker()
    out = session_bus.busctl("introspect", NAME, PATH, IFACE).stdout
    for member in ("ShutDown", "Restart", "Sleep", "WakeUp", "CancelRequest"):
        assert f".{member} " in out and "method" in out.split(f".{member} ")[1].splitlines()[0]
    for prop, sig in [
        ("Status", "s"),
        ("RequestedStatus", "s"),
        ("RequestIsLazy", "b"),
        ("Restartable", "b"),
        ("RestartExitCode", "i"),
        ("CurrentTask", "s"),
        ("ManagerURL", "s"),
        ("WorkerID", "s"),
        ("Name", "s"),
        ("Version", "s"),
    ]:
        line = next(ln for ln in out.splitlines() if ln.startswith(f".{prop} "))
        assert line.split()[1:3] == ["property", sig], line
        assert "emits-change" in line


@pytest.mark.parametrize(
    ("args", "yaml_text"),
    [
        (["-restart-exit-code", "47"], None),
        (["-restart-exit-status", "47"], None),
        (["--restart-exit-code=47"], None),
        ([], "restart_exit_code: 47\n"),
    ],
    ids=["flag", "flamenco-docs-alias", "double-dash", "yaml"],
)
def test_restartable_from_flag_alias_and_yaml(start_worker: StartWorker, args, yaml_text) -> None:
    worker = start_worker(*args, yaml_text=yaml_text)
    assert worker.get("Restartable") == "b true"
    assert worker.get("RestartExitCode") == "i 47"


def test_not_restartable_by_default(start_worker: StartWorker) -> None:
    worker = start_worker()
    assert worker.get("Restartable") == "b false"
    assert worker.get("RestartExitCode") == "i 0"


@pytest.mark.parametrize("immediately", ["true", "false"])
def test_restart_exits_with_configured_code(start_worker: StartWorker, immediately: str) -> None:
    worker = start_worker("-restart-exit-code", "47")
    worker.call("Restart", "b", immediately)
    assert worker.wait_exit() == 47


@pytest.mark.parametrize("immediately", ["true", "false"])
def test_shut_down_exits_zero(start_worker: StartWorker, immediately: str) -> None:
    worker = start_worker("-restart-exit-code", "47")
    worker.call("ShutDown", "b", immediately)
    assert worker.wait_exit() == 0


def test_restart_on_non_restartable_worker_is_a_dbus_error(start_worker: StartWorker) -> None:
    worker = start_worker()
    result = worker.call("Restart", "b", "true", check=False)
    assert result.returncode != 0
    assert "no restart exit code configured" in result.stderr
    # busctl prints the message; the error name is checked with --json on a method call reply below
    assert worker.process.poll() is None, "the worker must keep running"
    assert worker.get("Status") == 's "awake"'


def test_error_name_is_specific(start_worker: StartWorker, session_bus: PrivateBus) -> None:
    worker = start_worker()
    with BusMonitor(session_bus, NAME) as monitor:
        monitor.attach(lambda: worker.get("Status"))
        worker.call("Restart", "b", "false", check=False)
        error_name = monitor.wait_message(lambda m: m.get("type") == "error", 5)["error_name"]
    assert error_name == "org.flamenco.Worker1.Error.NotRestartable"


def test_sleep_and_wake_up_change_status_with_properties_changed(
    start_worker: StartWorker, session_bus: PrivateBus
) -> None:
    worker = start_worker()

    def properties_changed(status: str):
        def match(m: dict) -> bool:
            if m.get("member") != "PropertiesChanged":
                return False
            iface, changed, _ = m["payload"]["data"]
            return iface == IFACE and changed.get("Status", {}).get("data") == status

        return match

    with BusMonitor(session_bus, NAME) as monitor:
        monitor.attach(lambda: worker.get("Status"))
        worker.call("Sleep", "b", "false")
        assert worker.get("Status") == 's "asleep"'
        monitor.wait_message(properties_changed("asleep"), 5)
        worker.call("WakeUp")
        assert worker.get("Status") == 's "awake"'
        monitor.wait_message(properties_changed("awake"), 5)
    assert worker.process.poll() is None


def test_cancel_request_reports_whether_anything_was_pending(start_worker: StartWorker) -> None:
    worker = start_worker()
    assert worker.call("CancelRequest").stdout.strip() == "b false"


def test_sigterm_exits_zero_and_says_stopping(start_worker: StartWorker, notify_socket) -> None:
    worker = start_worker()
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit() == 0
    assert notify_socket.seen("STOPPING=1")


def test_sigint_exits_zero(start_worker: StartWorker) -> None:
    worker = start_worker()
    worker.signal(signal.SIGINT)
    assert worker.wait_exit() == 0


def test_worker_runs_without_a_bus(short_dir, notify_socket) -> None:
    from tests.support.worker_process import WorkerProcess

    worker = WorkerProcess(
        short_dir,
        ["-dbus", "session"],
        notify=notify_socket,
        env_extra={"DBUS_SESSION_BUS_ADDRESS": f"unix:path={short_dir}/nobus.sock"},
    ).start()
    try:
        worker.wait_ready()
        worker.signal(signal.SIGTERM)
        assert worker.wait_exit() == 0
        out = worker.output()
        assert out.count("running without local control") == 1, out
    finally:
        worker.stop()


def test_bus_name_taken_by_another_worker(start_worker: StartWorker) -> None:
    first = start_worker()
    second = start_worker()
    assert first.get("Status") == 's "awake"'
    second.signal(signal.SIGTERM)
    assert second.wait_exit() == 0
    assert "owned by another process" in second.output()
