"""The one library warning the worker silences: dbus-next's use of typing.no_type_check_decorator,
which Python 3.13 (Debian 13) deprecates, and nothing else.

Each case runs a fresh interpreter with every warning shown (-W default), as a journal would get them
with PYTHONWARNINGS set, and raises the warning as typing does: attributed to dbus_next/service.py.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.manager_process import REPO

pytestmark = pytest.mark.timeout(60)

WARN = (
    "import warnings\n"
    "warnings.warn_explicit({message!r}, {category}, '/usr/lib/python3/dist-packages/dbus_next/service.py',"
    " 87, module={module!r})\n"
)
PYTHON_313_TEXT = "'typing.no_type_check_decorator' is deprecated and slated for removal in Python 3.15"


def warnings_printed(
    prelude: str, message: str, category: str = "DeprecationWarning", module: str = "dbus_next.service"
) -> str:
    code = prelude + WARN.format(message=message, category=category, module=module)
    result = subprocess.run(
        [sys.executable, "-W", "default", "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stderr


def test_dbus_next_deprecation_is_ignored_once_the_worker_package_is_imported() -> None:
    assert f"DeprecationWarning: {PYTHON_313_TEXT}" in warnings_printed("", PYTHON_313_TEXT)
    # (importing dbus_next on the host may print gi's ImportWarning; only this message counts)
    assert PYTHON_313_TEXT not in warnings_printed("import flamenco_worker.dbus_service\n", PYTHON_313_TEXT)


@pytest.mark.parametrize(
    ("message", "category", "module"),
    [
        ("something else is deprecated", "DeprecationWarning", "dbus_next.service"),
        (PYTHON_313_TEXT, "DeprecationWarning", "flamenco_worker.dbus_service"),
        (PYTHON_313_TEXT, "RuntimeWarning", "dbus_next.service"),
    ],
)
def test_other_warnings_still_show(message: str, category: str, module: str) -> None:
    assert f"{category}: {message}" in warnings_printed("import flamenco_worker\n", message, category, module)
