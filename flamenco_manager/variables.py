"""Configuration variables: `{name}` expansion for workers and two-way path replacement.

A variable has one value per (audience, platform). One-way use replaces `{name}` in a task's command
parameters with the value for the worker's platform. Two-way variables also work backwards: at
submission a path that starts with a two-way value becomes `{name}…`, and when a task goes to a
worker on another platform a path that starts with the Manager's value gets the worker's value.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

AUDIENCE_ALL = "all"
AUDIENCE_WORKERS = "workers"
AUDIENCE_USERS = "users"
# The audiences a caller may ask for; `all` only appears in definitions and applies to both.
CONCRETE_AUDIENCES = (AUDIENCE_WORKERS, AUDIENCE_USERS)
PLATFORM_ALL = "all"
# The submitter_platform that means "the Manager's own platform".
SUBMITTER_IS_MANAGER = "manager"

# Name of the implicit one-way variable pointing at the job storage; a configured one is dropped.
IMPLICIT_JOBS_VARIABLE = "jobs"

# Defaults present unless the configuration defines a variable of the same name.
DEFAULT_VARIABLES: dict[str, Any] = {
    "blender": {
        "values": [
            {"platform": "linux", "value": "blender"},
            {"platform": "windows", "value": "blender.exe"},
            {"platform": "darwin", "value": "blender"},
        ]
    },
    "blenderArgs": {"values": [{"platform": PLATFORM_ALL, "value": "-b -y"}]},
}

_VALUE_KEYS = frozenset({"value", "platform", "platforms", "audience"})
_VARIABLE_KEYS = frozenset({"values", "is_twoway"})
_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")


class VariableError(ValueError):
    """A variable definition is invalid; `path` locates it inside the `variables` mapping."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        self.path = path
        self.key = _dotted(path)
        self.message = message
        super().__init__(f"{self.key}: {message}")


def _dotted(path: tuple[str | int, ...]) -> str:
    text = "variables"
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


@dataclass(frozen=True)
class VariableValue:
    """One value of a variable, seen by one audience on one platform (either may be `all`)."""

    audience: str
    platform: str
    value: str


@dataclass(frozen=True)
class Variable:
    name: str
    is_twoway: bool
    values: tuple[VariableValue, ...]

    def value_for(self, audience: str, platform: str) -> str | None:
        """The value for this audience and platform; a specific platform or audience beats `all`."""
        best: tuple[int, int] | None = None
        chosen: str | None = None
        for candidate in self.values:
            if candidate.platform not in (platform, PLATFORM_ALL):
                continue
            if candidate.audience not in (audience, AUDIENCE_ALL):
                continue
            rank = (int(candidate.platform != PLATFORM_ALL), int(candidate.audience != AUDIENCE_ALL))
            if best is None or rank > best:
                best, chosen = rank, candidate.value
        return chosen


@dataclass(frozen=True)
class Variables:
    """All variables of a Manager, including the defaults and the implicit `jobs`."""

    variables: tuple[Variable, ...]
    manager_platform: str = "linux"

    @classmethod
    def from_config(
        cls,
        raw: Mapping[str, Any] | None,
        *,
        shared_storage_path: str,
        manager_platform: str = "linux",
    ) -> Variables:
        """Build from the `variables:` mapping of the YAML file (None when absent)."""
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise VariableError((), "expected a mapping of variable name to definition")
        merged: dict[str, Any] = dict(DEFAULT_VARIABLES)
        for name, definition in raw.items():
            if not isinstance(name, str) or not name or "{" in name or "}" in name:
                raise VariableError((str(name),), "variable names must be non-empty and free of braces")
            if name == IMPLICIT_JOBS_VARIABLE:
                log.warning("variable=%s is implicit (the job storage path); configured value ignored", name)
                continue
            merged[name] = definition
        parsed = [_parse_variable(name, definition) for name, definition in merged.items()]
        parsed.append(
            Variable(
                name=IMPLICIT_JOBS_VARIABLE,
                is_twoway=False,
                values=(VariableValue(AUDIENCE_ALL, PLATFORM_ALL, shared_storage_path),),
            )
        )
        return cls(variables=tuple(parsed), manager_platform=manager_platform.lower())

    def for_audience(self, audience: str, platform: str) -> dict[str, dict[str, Any]]:
        """`{name: {"value", "is_twoway"}}` for every variable that has a value there."""
        _check_audience(audience)
        platform = platform.lower()
        result: dict[str, dict[str, Any]] = {}
        for variable in self.variables:
            value = variable.value_for(audience, platform)
            if value is not None:
                result[variable.name] = {"value": value, "is_twoway": variable.is_twoway}
        return result

    def expand_for_worker(self, commands: list[dict[str, Any]], worker_platform: str) -> list[dict[str, Any]]:
        """A copy of `commands` with variables expanded in string and string-list parameters."""
        expander = _Expander(self, AUDIENCE_WORKERS, worker_platform.lower())
        expanded: list[dict[str, Any]] = []
        for command in commands:
            new_command = copy.deepcopy(command)
            parameters = new_command.get("parameters")
            if isinstance(parameters, dict):
                new_command["parameters"] = {key: expander.expand_any(v) for key, v in parameters.items()}
            expanded.append(new_command)
        return expanded

    def expand_string(self, text: str, audience: str, platform: str) -> str:
        """Expand one string for an audience and platform, as done for command parameters."""
        _check_audience(audience)
        return _Expander(self, audience, platform.lower()).expand(text)

    def replace_two_way_at_submission(
        self, obj: Mapping[str, Any], submitter_platform: str
    ) -> dict[str, Any]:
        """A copy of a settings or metadata dict with two-way prefixes turned into `{name}`.

        Matching ignores case; the longest matching value wins.
        """
        platform = submitter_platform.lower()
        if platform == SUBMITTER_IS_MANAGER:
            platform = self.manager_platform
        prefixes = sorted(
            (
                (value, variable.name)
                for variable in self.variables
                if variable.is_twoway
                and (value := variable.value_for(AUDIENCE_USERS, platform)) is not None
                and value != ""
            ),
            key=lambda item: len(item[0]),
            reverse=True,
        )
        result: dict[str, Any] = {}
        for key, value in obj.items():
            if isinstance(value, str):
                for prefix, name in prefixes:
                    if _has_path_prefix(value, prefix):
                        value = "{" + name + "}" + value[len(prefix) :]
                        break
            result[key] = value
        return result


class _Expander:
    """Expansion of strings for one (audience, platform), with the lookups done once."""

    def __init__(self, variables: Variables, audience: str, platform: str) -> None:
        self.platform = platform
        self.twoway_names = frozenset(v.name for v in variables.variables if v.is_twoway)
        self.values: dict[str, str] = {}
        for variable in variables.variables:
            value = variable.value_for(audience, platform)
            if value is not None:
                self.values[variable.name] = value
        # (Manager-platform value, target value) of two-way variables, longest first.
        self.swaps: list[tuple[str, str]] = []
        if platform != variables.manager_platform:
            for variable in variables.variables:
                if not variable.is_twoway:
                    continue
                manager_value = variable.value_for(audience, variables.manager_platform)
                target_value = self.values.get(variable.name)
                if manager_value and target_value is not None:
                    self.swaps.append((manager_value, target_value))
            self.swaps.sort(key=lambda swap: len(swap[0]), reverse=True)

    def expand_any(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.expand(value)
        if isinstance(value, list):
            return [self.expand(item) if isinstance(item, str) else item for item in value]
        return value

    def expand(self, text: str) -> str:
        # A string starting with a two-way variable is a path: give it the worker's separators, so that
        # `{storage}\\shot` submitted from Windows still works on Linux.
        leading = _PLACEHOLDER.match(text)
        is_path = leading is not None and leading.group(1) in self.twoway_names
        text = _PLACEHOLDER.sub(lambda m: self.values.get(m.group(1), m.group(0)), text)
        for manager_value, target_value in self.swaps:
            if _has_path_prefix(text, manager_value):
                text = target_value + text[len(manager_value) :]
                is_path = True
                break
        return to_platform_separators(text, self.platform) if is_path else text


def _has_path_prefix(text: str, prefix: str) -> bool:
    """True when `text` is `prefix` or continues it with a path separator (ignoring case)."""
    if len(text) < len(prefix) or text[: len(prefix)].casefold() != prefix.casefold():
        return False
    if len(text) == len(prefix) or prefix[-1:] in ("/", "\\"):
        return True
    return text[len(prefix)] in ("/", "\\")


def to_platform_separators(path: str, platform: str) -> str:
    """Use the path separator of `platform` throughout `path`."""
    if platform == "windows":
        return path.replace("/", "\\")
    return path.replace("\\", "/")


def _trim_trailing_separator(value: str) -> str:
    trimmed = value.rstrip("/\\")
    return trimmed if trimmed else value


def _check_audience(audience: str) -> None:
    if audience not in CONCRETE_AUDIENCES:
        raise ValueError(f"unknown audience {audience!r}; expected one of {', '.join(CONCRETE_AUDIENCES)}")


def _parse_variable(name: str, definition: Any) -> Variable:
    if not isinstance(definition, Mapping):
        raise VariableError((name,), "expected a mapping with 'values' (and optionally 'is_twoway')")
    unknown = sorted(str(key) for key in definition if key not in _VARIABLE_KEYS)
    if unknown:
        raise VariableError((name, unknown[0]), "unknown field; expected 'values' or 'is_twoway'")
    is_twoway = definition.get("is_twoway", False)
    if not isinstance(is_twoway, bool):
        raise VariableError((name, "is_twoway"), "expected true or false")
    raw_values = definition.get("values")
    if not isinstance(raw_values, list) or not raw_values:
        raise VariableError((name, "values"), "expected a non-empty list of values")
    values: list[VariableValue] = []
    for index, raw_value in enumerate(raw_values):
        values.extend(_parse_value((name, "values", index), raw_value, is_twoway))
    return Variable(name=name, is_twoway=is_twoway, values=tuple(values))


def _parse_value(path: tuple[str | int, ...], raw: Any, is_twoway: bool) -> Iterable[VariableValue]:
    if not isinstance(raw, Mapping):
        raise VariableError(path, "expected a mapping with 'value' and 'platform' or 'platforms'")
    unknown = sorted(str(key) for key in raw if key not in _VALUE_KEYS)
    if unknown:
        raise VariableError(
            (*path, unknown[0]), "unknown field; expected value, platform, platforms, audience"
        )
    value = raw.get("value")
    if not isinstance(value, str):
        raise VariableError((*path, "value"), "expected a string")
    if is_twoway:
        value = _trim_trailing_separator(value)
    audience = raw.get("audience", AUDIENCE_ALL)
    if audience == "":
        audience = AUDIENCE_ALL
    if audience not in (AUDIENCE_ALL, *CONCRETE_AUDIENCES):
        raise VariableError((*path, "audience"), f"expected one of all, workers, users, not {audience!r}")
    if "platform" in raw and "platforms" in raw:
        raise VariableError((*path, "platforms"), "give either 'platform' or 'platforms', not both")
    if "platform" in raw:
        platforms = [raw["platform"]]
        field = "platform"
    elif "platforms" in raw:
        platforms = raw["platforms"]
        field = "platforms"
        if not isinstance(platforms, list) or not platforms:
            raise VariableError((*path, field), "expected a non-empty list of platform names")
    else:
        raise VariableError(path, "missing 'platform' or 'platforms'")
    for platform in platforms:
        if not isinstance(platform, str) or not platform.strip():
            raise VariableError((*path, field), "platform names must be non-empty strings")
    return [VariableValue(audience, platform.strip().lower(), value) for platform in platforms]
