"""Reading a command's parameters with errors that name the command and the parameter."""

from __future__ import annotations

import math
import os
import shlex
import shutil
from decimal import Decimal
from typing import Any

from flamenco_worker.execution.model import Command, CommandError
from flamenco_worker.values import describe_type

_MISSING = object()
# Flamenco's worker writes a number argument in exponent form from this many integer digits on (`1e+06`).
_EXPONENT_FROM = 6
# ... and below this power of ten (`1e-05`).
_EXPONENT_BELOW = -4


def number_argument(value: float) -> str:
    """A JSON number as a command-line word, the way Flamenco's (Go) worker formats it: the shortest digits
    that read back as the same float, `24` for 24.0, exponent form outside 1e-4 ≤ |x| < 1e6."""
    digits_tuple = Decimal(repr(float(value))).as_tuple()
    digits = "".join(map(str, digits_tuple.digits)).rstrip("0") or "0"
    sign = "-" if digits_tuple.sign else ""
    if digits == "0":
        return sign + "0"
    exponent = int(digits_tuple.exponent) + len(digits_tuple.digits) - 1  # of the first digit
    if exponent < _EXPONENT_BELOW or exponent >= _EXPONENT_FROM:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    fixed = format(Decimal(f"{digits[0]}.{digits[1:]}e{exponent}"), "f")
    return sign + (fixed.rstrip("0").rstrip(".") if "." in fixed else fixed)


class Parameters:
    """Typed access to `command.parameters`; every problem raises CommandError naming both."""

    def __init__(self, command: Command) -> None:
        self._command = command.name
        self._values = command.parameters

    def error(self, name: str, problem: str) -> CommandError:
        return CommandError(
            f'{self._command}: parameter "{name}" {problem}', command=self._command, parameter=name
        )

    def required(self, name: str) -> Any:
        value = self._values.get(name, _MISSING)
        if value is _MISSING or value is None:
            raise self.error(name, "is missing")
        return value

    def string(self, name: str) -> str:
        """A required, non-empty string."""
        value = self.required(name)
        if not isinstance(value, str):
            raise self.error(name, f"must be a string, got {describe_type(value)}")
        if not value:
            raise self.error(name, "must not be empty")
        return value

    def optional_string(self, name: str) -> str:
        """A string that may be absent or empty ("" then)."""
        value = self._values.get(name)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self.error(name, f"must be a string, got {describe_type(value)}")
        return value

    def argument_list(self, name: str) -> list[str]:
        """Command-line arguments: a list of strings and numbers (a number is written as Flamenco's worker
        writes it: `24`, `23.976`); absent means empty."""
        value = self._values.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(name, f"must be a list of strings or numbers, got {describe_type(value)}")
        arguments: list[str] = []
        for index, item in enumerate(value):
            if isinstance(item, str):
                arguments.append(item)
            elif isinstance(item, int | float) and not isinstance(item, bool) and math.isfinite(item):
                arguments.append(number_argument(item))
            else:
                raise self.error(
                    name, f"must be a list of strings or numbers, item {index} is {describe_type(item)}"
                )
        return arguments

    def split_string(self, name: str) -> list[str]:
        """An optional string of shell-style words (quotes allowed), split into arguments."""
        text = self.optional_string(name)
        try:
            return shlex.split(text)
        except ValueError as err:
            raise self.error(name, f"cannot be split into arguments: {err}") from None

    def number(self, name: str) -> float:
        """A required finite number (JSON int or float; booleans are not numbers)."""
        value = self.required(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(name, f"must be a number, got {describe_type(value)}")
        if not math.isfinite(value):
            raise self.error(name, f"must be a finite number, got {value}")
        return float(value)

    def absolute_path(self, name: str) -> str:
        value = self.string(name)
        if not os.path.isabs(value):
            raise self.error(name, f"must be an absolute path, got {value!r}")
        return value

    def executable(self, name: str) -> str:
        """A required program: a path to an executable file, or a name found on PATH; returns its path."""
        value = self.string(name)
        if os.sep in value:
            if os.path.isfile(value) and os.access(value, os.X_OK):
                return value
            raise self.error(name, f"{value!r} is not an executable file")
        found = shutil.which(value)
        if found is None:
            raise self.error(name, f"{value!r} is not found on PATH")
        return found
