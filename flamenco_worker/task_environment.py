"""The `environment:` setting: variables every task process gets on top of the worker's own environment.

A GPU node running one worker per card gives each its own `CUDA_VISIBLE_DEVICES` this way. Names follow
POSIX (letters, digits, `_`, not starting with a digit); values are strings (quote numbers in YAML).
What systemd meant for the worker alone (NOTIFY_SOCKET, WATCHDOG_*, ...) cannot be set here.
"""

from __future__ import annotations

import re
from typing import Any

from flamenco_worker.execution.process import DAEMON_ONLY_VARIABLES
from flamenco_worker.values import describe

#: The settings' form: (name, value) pairs in the order given, immutable like the rest of the settings.
Environment = tuple[tuple[str, str], ...]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NAME_RULE = "letters, digits and _, not starting with a digit"


class EntryError(ValueError):
    """A problem with one entry of a mapping; `entry` is its key, so the error can name its line."""

    def __init__(self, entry: object, message: str) -> None:
        super().__init__(message)
        self.entry = entry


def check_environment(value: Any) -> Environment:
    if value is None:
        return ()  # `environment:` with nothing under it
    if not isinstance(value, dict):
        raise ValueError(f'must be a mapping of NAME: "value", not {describe(value)}')
    pairs: list[tuple[str, str]] = []
    for name, text in value.items():
        if not isinstance(name, str):
            raise EntryError(name, f"variable names must be strings, not {describe(name)}")
        if not _NAME.fullmatch(name):
            raise EntryError(name, f"{name!r} is not a valid variable name ({NAME_RULE})")
        if name in DAEMON_ONLY_VARIABLES:
            raise EntryError(name, f"{name} belongs to the worker process itself and is never passed on")
        if not isinstance(text, str):
            raise EntryError(name, f"{name}: the value must be a string (quote it), not {describe(text)}")
        if "\0" in text:
            raise EntryError(name, f"{name}: the value must not contain a NUL character")
        pairs.append((name, text))
    return tuple(pairs)


def merge(base: Environment, overlay: Environment) -> Environment:
    """The base file's variables with the overlay's on top (an overlay's variable replaces the base's)."""
    merged = dict(base)
    merged.update(overlay)
    return tuple(merged.items())
