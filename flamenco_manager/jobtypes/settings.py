"""Checking submitted job settings against a job type's setting definitions, filling defaults."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from flamenco_manager.jobtypes.model import JobCompileError, SettingsError
from flamenco_manager.values import expected

# Bounds of Flamenco's `int32` setting type.
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
# From this size on JavaScript writes a whole number in exponent notation (`1e+21`), so it stays a float.
JS_PLAIN_INTEGER_LIMIT = 1e21


def apply_settings(definitions: list[dict[str, Any]], submitted: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `submitted` with defaults filled in and every defined setting type-checked.

    Every refused setting is named in one `SettingsError`, in the order the job type defines them.
    Settings the job type does not define are kept as they are (submitters may add their own). Numbers
    are stored as Flamenco stores them: a whole number is an integer (`24`, not `24.0`) wherever it is.
    """
    settings = {key: js_numbers(value) for key, value in submitted.items()}
    problems: list[JobCompileError] = []
    for definition in definitions:
        key = definition["key"]
        value = settings.get(key)
        if value is None:
            if "default" in definition:
                settings[key] = definition["default"]
                continue
            if definition.get("required"):
                problems.append(JobCompileError(key, "required setting is missing"))
            settings.pop(key, None)
            continue
        try:
            settings[key] = _check_value(definition, value)
        except JobCompileError as exc:
            problems.append(exc)
    if problems:
        raise SettingsError(problems)
    return settings


def undefined_settings(definitions: list[dict[str, Any]], submitted: Mapping[str, Any]) -> list[str]:
    """Keys of `submitted` no definition has, hidden ones included, in the order they were sent."""
    defined = {definition["key"] for definition in definitions}
    return [str(key) for key in submitted if key not in defined]


def _check_value(definition: dict[str, Any], value: Any) -> Any:
    key = definition["key"]
    kind = definition["type"]
    if kind == "string":
        if not isinstance(value, str):
            raise JobCompileError(key, expected(str, value))
        if definition.get("required") and not value.strip():
            raise JobCompileError(key, "required setting is empty")
    elif kind == "int32":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise JobCompileError(key, expected(int, value))
        if not INT32_MIN <= value <= INT32_MAX:
            raise JobCompileError(key, f"{value} does not fit in a 32-bit integer")
    elif kind == "float":
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            raise JobCompileError(key, expected(float, value))
    elif kind == "bool" and not isinstance(value, bool):
        raise JobCompileError(key, expected(bool, value))
    choices = definition.get("choices")
    if choices and value not in choices:
        raise JobCompileError(key, f"{value!r} is not one of {', '.join(map(str, choices))}")
    bounds = definition.get("propargs") or {}
    if "min" in bounds and value < bounds["min"]:
        raise JobCompileError(key, f"{value} is below the minimum {bounds['min']}")
    if "max" in bounds and value > bounds["max"]:
        raise JobCompileError(key, f"{value} is above the maximum {bounds['max']}")
    return value


def js_numbers(value: Any) -> Any:
    """`value` with every whole float an int, as a JavaScript job compiler and Flamenco's JSON give it.

    JSON from JavaScript (and Go) writes the number 24.0 as `24`; stored settings and compiled commands
    must read the same whichever compiler made them.
    """
    if isinstance(value, float):
        if value.is_integer() and abs(value) < JS_PLAIN_INTEGER_LIMIT:
            return int(value)
        return value
    if isinstance(value, Mapping):
        return {key: js_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [js_numbers(item) for item in value]
    return value
