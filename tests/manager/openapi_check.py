"""Checks HTTP answers against the Manager's OpenAPI document (its 3.0 schemas as JSON Schema Draft 4)."""

from __future__ import annotations

import datetime
import re
import uuid
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs in the test needs; only used here

# How many schema violations one failure message lists; the first few are enough to find the cause.
MAX_REPORTED_ERRORS = 5

_JSON = "application/json"
_DATE_TIME = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")
_INT32 = (-(2**31), 2**31 - 1)

_formats = jsonschema.FormatChecker(formats=())


@_formats.checks("uuid", raises=ValueError)
def _is_uuid(value: object) -> bool:
    return not isinstance(value, str) or str(uuid.UUID(value)) == value.lower()


@_formats.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _DATE_TIME.fullmatch(value):
        return False
    datetime.datetime.fromisoformat(value.replace("z", "Z"))
    return True


@_formats.checks("int32")
def _is_int32(value: object) -> bool:
    return not isinstance(value, int) or _INT32[0] <= value <= _INT32[1]


def assert_response_valid(
    spec: dict[str, Any], method: str, path_template: str, status: int, body: object
) -> None:
    """Raise AssertionError unless `body` is what the document promises for this operation and status.

    `body` is the decoded JSON, or None for an answer without a body; non-JSON answers are not checked.
    """
    where = f"{method.upper()} {path_template} → {status}"
    operation = spec.get("paths", {}).get(path_template, {}).get(method.lower())
    if operation is None:
        raise AssertionError(f"{where}: the OpenAPI document has no such operation")
    responses = operation.get("responses", {})
    response = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX") or responses.get("default")
    if response is None:
        raise AssertionError(f"{where}: status not documented (documented: {', '.join(sorted(responses))})")
    response = _resolve(spec, response)
    content = response.get("content") or {}
    if not content:
        if body not in (None, b"", ""):
            raise AssertionError(f"{where}: documented without a body, but got {body!r:.200}")
        return
    if _JSON not in content:
        return
    if body is None:
        raise AssertionError(f"{where}: documented with a JSON body, but got none")
    schema = content[_JSON].get("schema")
    if schema is None:
        return
    errors = _validator(spec, schema).iter_errors(body)
    ordered = sorted(errors, key=lambda e: (list(map(str, e.absolute_path)), e.message))
    if ordered:
        lines = [
            f"{_instance_path(e.absolute_path)}: {e.message:.300}" for e in ordered[:MAX_REPORTED_ERRORS]
        ]
        more = len(ordered) - MAX_REPORTED_ERRORS
        if more > 0:
            lines.append(f"… and {more} more")
        raise AssertionError(f"{where}: body does not match the schema:\n  " + "\n  ".join(lines))


def resolve_ref(spec: dict[str, Any], ref: str) -> Any:
    """The object a local `#/…` reference points at; AssertionError when it points nowhere."""
    if not ref.startswith("#/"):
        raise AssertionError(f"only local references are supported, not {ref!r}")
    node: Any = spec
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            raise AssertionError(f"reference {ref!r} does not resolve")
        node = node[part]
    return node


def _resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = resolve_ref(spec, node["$ref"])
    return node


def to_json_schema(node: Any) -> Any:
    """An OpenAPI 3.0 schema as Draft 4 JSON Schema: `nullable: true` becomes an allowed null."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: to_json_schema(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") is True:
        if isinstance(converted.get("type"), str):
            converted["type"] = [converted["type"], "null"]
            if "enum" in converted:
                converted["enum"] = [*converted["enum"], None]
        else:
            converted = {"anyOf": [converted, {"type": "null"}]}
    return converted


def _validator(spec: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Draft4Validator:
    # `#/components/...` references resolve against this root, so the components travel along.
    root = {"allOf": [to_json_schema(schema)], "components": to_json_schema(spec.get("components", {}))}
    return jsonschema.Draft4Validator(root, format_checker=_formats)


def _instance_path(path: Any) -> str:
    text = "body"
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text
