from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import reliability
from tests.support.dbus_daemon import PrivateBus, short_tempdir
from tests.support.notify_socket import NotifySocket

SYSTEM_TESTS = Path(__file__).resolve().parent / "system"
#: The tests that run job-type scripts in a real Node.js engine (a child process per test module).
ENGINE_TESTS = (
    Path(__file__).resolve().parent / "manager" / "javascript",
    Path(__file__).resolve().parent / "manager" / "test_builtin_matches_script.py",
)
#: Per-test timeout of the long fault runs (`make reliability`): they scale up sizes and durations tenfold
#: and more, so the default (pyproject's `timeout`) and the short runs' markers do not apply.
LONG_RUN_TIMEOUT = 4 * 3600


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        # By path: a `pytestmark` in a conftest.py marks nothing, so `-m "not system"` would still run them.
        if item.path.is_relative_to(SYSTEM_TESTS):
            item.add_marker(pytest.mark.system)
        if any(item.path.is_relative_to(path) for path in ENGINE_TESTS):
            item.add_marker(pytest.mark.javascript)
        if reliability.LONG and item.get_closest_marker("reliability") is not None:
            item.add_marker(pytest.mark.timeout(LONG_RUN_TIMEOUT), append=False)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = short_tempdir("fw-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def session_bus(short_dir: Path) -> Iterator[PrivateBus]:
    bus = PrivateBus(short_dir).start()
    yield bus
    bus.stop()


@pytest.fixture
def notify_socket(short_dir: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(short_dir / "notify.sock")
    yield sock
    sock.close()


@pytest.fixture
def fault(request: pytest.FixtureRequest):
    """`fault("name", "what is checked")` returns a row; set `.figure` to what was measured."""

    def record(name: str, checked: str) -> reliability.Row:
        row = reliability.Row(name, checked)
        reliability.ROWS.append(row)
        request.node.reliability_row = row
        return row

    return record


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    row = getattr(item, "reliability_row", None)
    if row is not None and report.when == "call":
        row.result = "pass" if report.passed else report.outcome


def pytest_terminal_summary(terminalreporter) -> None:
    if reliability.ROWS:
        mode = "long" if reliability.LONG else "short"
        terminalreporter.section(f"reliability summary ({mode} run)")
        for line in reliability.table():
            terminalreporter.write_line(line)
