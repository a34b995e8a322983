"""What a task asks the worker to run, the listener that hears about it, and the error it fails with."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from flamenco_worker.values import describe_type


@dataclass(frozen=True)
class Command:
    """One entry of an assigned task's `commands` list, after variable expansion."""

    name: str
    parameters: dict[str, Any] = field(default_factory=dict)
    total_step_count: int = 0


class TaskListener(Protocol):
    """Hears what running commands do; implemented by the Manager link. Calls are synchronous and cheap."""

    def log_line(self, line: str) -> None:
        """One line for the task log, without a trailing newline."""

    def step_completed(self) -> None:
        """One more step of the task is done."""

    def output_produced(self, path: pathlib.Path) -> None:
        """A rendered image was written to `path`."""


class CommandError(Exception):
    """A command could not run or failed; str() is the readable reason, naming the command and parameter."""

    def __init__(self, message: str, *, command: str = "", parameter: str = "") -> None:
        super().__init__(message)
        self.command = command
        self.parameter = parameter


def parse_commands(raw: list[dict[str, Any]]) -> list[Command]:
    """Turn the JSON `commands` of an assigned task into Commands; malformed entries raise CommandError."""
    if not isinstance(raw, list):
        raise CommandError(f"task commands must be a list, got {describe_type(raw)}")
    return [_parse_one(index, entry) for index, entry in enumerate(raw)]


def _parse_one(index: int, entry: object) -> Command:
    where = f"command #{index}"
    if not isinstance(entry, Mapping):
        raise CommandError(f"{where} must be an object, got {describe_type(entry)}")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise CommandError(f'{where}: "name" must be a non-empty string, got {name!r}')
    parameters = entry.get("parameters", {})
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, Mapping):
        raise CommandError(
            f'{where} ({name}): "parameters" must be an object, got {describe_type(parameters)}', command=name
        )
    steps = entry.get("total_step_count", 0)
    if steps is None:
        steps = 0
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise CommandError(
            f'{where} ({name}): "total_step_count" must be a whole number ≥ 0, got {steps!r}', command=name
        )
    return Command(name=name, parameters=dict(parameters), total_step_count=steps)
