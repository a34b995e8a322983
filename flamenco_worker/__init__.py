"""Flamenco-compatible render worker daemon."""

from flamenco_worker.warnings_filter import ignore_library_warnings

__version__ = "0.1.0"

# Before any submodule imports dbus-next (see warnings_filter).
ignore_library_warnings()
