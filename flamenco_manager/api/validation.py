"""Request parsing: the one place that checks the shape of what clients send; every failure names the field.

Handlers turn bodies into typed values with these helpers before calling a service; services check rules
(ranges, known names, states), not JSON types. `Fields` reads a body whose every wrong field should be
named in one answer. Kinds of values are named by `flamenco_manager.values`, as everywhere else.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any, Literal, TypeVar, overload

from aiohttp import web

from flamenco_manager.api.errors import HTTPError
from flamenco_manager.services.errors import Invalid
from flamenco_manager.values import expected

T = TypeVar("T")

#: Longest a client may take to send a JSON body; a stalled upload must not hold a handler forever.
BODY_READ_TIMEOUT = 60.0


async def json_body(request: web.Request, kind: type = dict) -> Any:
    try:
        async with asyncio.timeout(BODY_READ_TIMEOUT):
            raw = await request.read()
    except TimeoutError:
        raise HTTPError(408, f"body: not received within {BODY_READ_TIMEOUT:.0f}s") from None
    try:
        # Bytes straight to json.loads: aiohttp's text() parses the Content-Type charset at some cost.
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HTTPError(400, f"body: not valid JSON ({exc})") from exc
    if not isinstance(body, kind):
        raise HTTPError(400, f"body: {expected(kind, body)}")
    bad = _invalid_text(body, "")
    if bad is not None:
        raise Invalid(bad or "body", "contains a lone UTF-16 surrogate (\\ud800-\\udfff), which is not text")
    return body


def _invalid_text(value: Any, path: str) -> str | None:
    """The path of the first string JSON allowed but UTF-8 cannot hold (lone surrogates), if any."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if _invalid_text(key, path) is not None:
                return path or "body"
            found = _invalid_text(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _invalid_text(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


@overload
def field(body: dict, name: str, kind: type[T]) -> T: ...
@overload
def field(body: dict, name: str, kind: type[T], *, required: Literal[False], default: T) -> T: ...
@overload
def field(body: dict, name: str, kind: type[T], *, required: bool) -> T | None: ...
def field(
    body: dict, name: str, kind: type[T], *, required: bool = True, default: T | None = None
) -> T | None:
    """`body[name]` checked to be a `kind` (a bool is not an int); absent or null: required, or `default`."""
    if name not in body or body[name] is None:
        if required:
            raise Invalid(name, "is required")
        return default
    value = body[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise Invalid(name, expected(kind, value))
    return value


class Fields:
    """Reads the fields of one body, gathering every shape problem so that one answer names them all.

    A read that fails notes the problem and gives the default; `check()` raises the problems together.
    """

    def __init__(self, body: dict) -> None:
        self.body = body
        self.problems: list[Invalid] = []

    def get(self, name: str, kind: type[T], default: T, *, required: bool = False) -> T:
        """`body[name]` as `field` checks it; absent or null gives `default` (a problem when `required`)."""
        try:
            value = field(self.body, name, kind, required=required)
        except Invalid as exc:
            self.problems.append(exc)
            return default
        return default if value is None else value

    def string_map(self, name: str) -> dict[str, str]:
        """An object of string values, each wrong value named (`metadata.frame: expected a string, …`)."""
        value: dict[str, Any] = self.get(name, dict, {})
        wrong = [(key, item) for key, item in value.items() if not isinstance(item, str)]
        for key, item in wrong:
            self.problem(f"{name}.{key}", expected(str, item))
        return {} if wrong else value

    def problem(self, name: str, message: str) -> None:
        self.problems.append(Invalid(name, message))

    def check(self) -> None:
        if self.problems:
            raise Invalid.together(self.problems)


def string_list(body: dict, name: str, *, what: str = "a list of strings") -> list[str]:
    value = field(body, name, list)
    if not all(isinstance(item, str) for item in value):
        raise Invalid(name, f"must be {what}")
    return value


@overload
def enum_field(body: dict, name: str, allowed: frozenset[str]) -> str: ...
@overload
def enum_field(body: dict, name: str, allowed: frozenset[str], *, required: Literal[False]) -> str | None: ...
def enum_field(body: dict, name: str, allowed: frozenset[str], *, required: bool = True) -> str | None:
    value = field(body, name, str, required=required)
    if value is not None and value not in allowed:
        raise Invalid(name, f"{value!r} is not one of {', '.join(sorted(allowed))}")
    return value


def path_uuid(request: web.Request, name: str) -> str:
    raw = request.match_info[name]
    try:
        return str(uuid.UUID(raw))
    except ValueError as exc:
        raise Invalid(name, f"{raw!r} is not a UUID") from exc
