"""How the manager names a wrong value in an error: its kind in plain words, and a short rendering.

One place for every layer (configuration, job compilation, request validation), so a user reads the same
words wherever a value is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeGuard

#: Longest rendering of a wrong value inside an error line, so the line stays readable.
SHOWN_VALUE_MAX = 40

_KINDS: dict[type, str] = {
    bool: "a boolean",
    int: "a number",
    float: "a number",
    str: "a string",
    list: "a list",
    tuple: "a list",
    dict: "an object",
}

# What is asked for: an int setting or field takes whole numbers only, a float one any number.
_EXPECTED: dict[type, str] = {
    bool: "true or false",
    int: "a whole number",
    float: "a number",
    str: "a string",
    list: "a list",
    tuple: "a list",
    dict: "an object",
}


def describe_type(value: object) -> str:
    """`a number`, `a string`, `a list`, `an object`, `a boolean`, `null` — what a user wrote, not Python."""
    if value is None:
        return "null"
    return _KINDS.get(type(value), f"a {type(value).__name__}")


def describe(value: object) -> str:
    """The kind and a short rendering of the value: `a number (300)`, `a string ('abc')`."""
    if value is None:
        return "null"
    shown = repr(value)
    if len(shown) > SHOWN_VALUE_MAX:
        shown = shown[: SHOWN_VALUE_MAX - 1] + "…"
    return f"{describe_type(value)} ({shown})"


def describe_kind(kind: type) -> str:
    """The kind a value should have, in the same words: `a whole number`, `an object`, `true or false`."""
    return _EXPECTED.get(kind, f"a {kind.__name__}")


def expected(kind: type, value: object) -> str:
    """`expected a whole number, not a string ('ten')`: the one wording of a value of the wrong kind."""
    return f"expected {describe_kind(kind)}, not {describe(value)}"


def several(problems: Sequence[str], count: int | None = None) -> str:
    """Problems as one line: `3 problems: a; b; c`, a lone one as it is.

    `count` is the total when some of `problems` already name several (`settings: 2 problems: …`).
    """
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems) if count is None else count} problems: {'; '.join(problems)}"


def is_text(value: object) -> TypeGuard[str]:
    """A string with something besides white space in it: a name, a key, a label."""
    return isinstance(value, str) and bool(value.strip())
