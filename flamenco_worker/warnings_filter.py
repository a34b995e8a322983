"""Warnings from libraries that the worker cannot act on, kept out of the journal.

dbus-next 0.2.3 (Debian 12 and 13) decorates two functions in `dbus_next/service.py` with
`typing.no_type_check_decorator`, which Python 3.13 deprecates: importing the module then warns
"'typing.no_type_check_decorator' is deprecated and slated for removal in Python 3.15" at every start
whenever warnings are shown (PYTHONWARNINGS, -X dev, a test run). Only that message from that module is
ignored; every other warning stays visible. The filter must be in place before dbus_next.service is
first imported, so the package's __init__ installs it.
"""

from __future__ import annotations

import warnings

# The exact text Python 3.13's typing module warns with (a regular expression matched at the start).
DBUS_NEXT_NO_TYPE_CHECK_DECORATOR = r"'typing\.no_type_check_decorator' is deprecated"


def ignore_library_warnings() -> None:
    """Install the filters (idempotent: warnings.filterwarnings drops an identical existing entry)."""
    warnings.filterwarnings(
        "ignore",
        message=DBUS_NEXT_NO_TYPE_CHECK_DECORATOR,
        category=DeprecationWarning,
        module=r"dbus_next\.service\Z",
    )
