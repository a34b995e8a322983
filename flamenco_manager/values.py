"""How the manager names a wrong value in an error: its kind in plain words, and a short rendering.

One place for every layer (configuration, job compilation, request validation), so a user reads the same
words wherever a value is refused.
"""

from __future__ import annotations

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
