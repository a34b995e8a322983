"""The Manager's OpenAPI document is sound and complete, and the response checker catches wrong bodies."""

from __future__ import annotations

import json
import pathlib
import re
from collections.abc import Iterator
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs among the test needs
import pytest

from flamenco_manager import jobtypes
from flamenco_manager.openapi import load_spec, spec_bytes
from flamenco_manager.variables import Variables
from tests.manager.openapi_check import assert_response_valid, resolve_ref, to_json_schema

SPEC_PATH = pathlib.Path(__file__).parents[2] / "flamenco_manager" / "openapi" / "flamenco-openapi.json"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
UUID_A = "5f0c3c55-3e2a-4c1b-9f7e-1b2c3d4e5f60"
UUID_B = "0b9d2a3e-8f7c-4d6e-a5b4-c3d2e1f0a9b8"
WHEN = "2024-03-05T14:07:09.123+01:00"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return load_spec()


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


# --- the document as a document ----------------------------------------------------------------------------


def test_load_spec_is_cached_and_matches_the_file(spec: dict[str, Any]) -> None:
    assert load_spec() is spec
    assert spec == json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    assert spec_bytes() == SPEC_PATH.read_bytes()


def test_top_level_structure(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.0.")
    assert spec["info"]["title"] and spec["info"]["version"]
    assert spec["components"]["securitySchemes"]["worker_auth"] == {
        "type": "http",
        "scheme": "basic",
        "description": spec["components"]["securitySchemes"]["worker_auth"]["description"],
    }
    # open by default, or an access token when the Manager is configured with one
    assert spec["security"] == [{}, {"api_token": []}]
    assert spec["components"]["securitySchemes"]["api_token"]["scheme"] == "bearer"


def test_every_ref_resolves(spec: dict[str, Any]) -> None:
    found = list(refs(spec))
    assert len(found) > 100
    for ref in found:
        resolve_ref(spec, ref)


def test_every_schema_is_valid_draft4_after_conversion(spec: dict[str, Any]) -> None:
    for name, schema in spec["components"]["schemas"].items():
        try:
            jsonschema.Draft4Validator.check_schema(to_json_schema(schema))
        except jsonschema.SchemaError as exc:
            pytest.fail(f"schema {name}: {exc.message}")


def test_every_operation_is_complete(spec: dict[str, Any]) -> None:
    seen_ids: set[str] = set()
    for path, method, operation in operations(spec):
        where = f"{method.upper()} {path}"
        assert path.startswith("/api/v3/"), where
        assert operation.get("operationId"), where
        assert operation["operationId"] not in seen_ids, f"{where}: duplicate operationId"
        seen_ids.add(operation["operationId"])
        assert operation.get("summary"), where
        assert operation.get("responses"), f"{where}: no responses"
        for status, response in operation["responses"].items():
            assert re.fullmatch(r"[1-5]\d\d|default", status), f"{where}: status {status}"
            assert response.get("description"), f"{where} {status}: no description"
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert declared == set(re.findall(r"\{([^}]+)\}", path)), f"{where}: path parameters"
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "path":
                assert parameter["required"] is True, f"{where}: {parameter['name']}"


def test_only_worker_endpoints_need_worker_auth(spec: dict[str, Any]) -> None:
    for path, method, operation in operations(spec):
        protected = path.startswith("/api/v3/worker/") and not path.endswith("/register-worker")
        assert (operation.get("security") == [{"worker_auth": []}]) == protected, f"{method} {path}"
        if protected:
            assert operation["responses"]["403"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/SecurityError"
            }


ENDPOINTS = [
    # Worker protocol.
    ("post", "/api/v3/worker/register-worker", {"200", "400"}),
    ("post", "/api/v3/worker/sign-on", {"200", "403"}),
    ("post", "/api/v3/worker/sign-off", {"204", "403"}),
    ("get", "/api/v3/worker/state", {"200", "204", "403"}),
    ("post", "/api/v3/worker/state-changed", {"204", "403"}),
    ("post", "/api/v3/worker/task", {"200", "204", "403", "409", "423"}),
    ("post", "/api/v3/worker/task/{task_id}", {"204", "400", "404", "409"}),
    ("get", "/api/v3/worker/task/{task_id}/may-i-run", {"200", "400"}),
    ("post", "/api/v3/worker/task/{task_id}/output-produced", {"202", "404", "411", "413", "429"}),
    # Worker management.
    ("get", "/api/v3/worker-mgt/workers", {"200"}),
    ("get", "/api/v3/worker-mgt/workers/{worker_id}", {"200", "400", "404"}),
    ("delete", "/api/v3/worker-mgt/workers/{worker_id}", {"204", "404"}),
    ("post", "/api/v3/worker-mgt/workers/{worker_id}/setstatus", {"204", "400", "404", "412"}),
    ("post", "/api/v3/worker-mgt/workers/setstatus", {"200", "400"}),  # ours
    ("post", "/api/v3/worker-mgt/workers/{worker_id}/settags", {"204"}),
    ("get", "/api/v3/worker-mgt/workers/{worker_id}/sleep-schedule", {"200", "204", "404"}),
    ("post", "/api/v3/worker-mgt/workers/{worker_id}/sleep-schedule", {"204"}),
    ("get", "/api/v3/worker-mgt/tags", {"200"}),
    ("post", "/api/v3/worker-mgt/tags", {"200"}),
    ("get", "/api/v3/worker-mgt/tag/{tag_id}", {"200", "404"}),
    ("put", "/api/v3/worker-mgt/tag/{tag_id}", {"204", "404"}),
    ("delete", "/api/v3/worker-mgt/tag/{tag_id}", {"204", "404"}),
    # Jobs and tasks.
    ("get", "/api/v3/jobs/types", {"200"}),
    ("get", "/api/v3/jobs/type/{type_name}", {"200", "404"}),
    ("post", "/api/v3/jobs", {"200", "400", "412"}),
    ("post", "/api/v3/jobs/check", {"204", "400", "412"}),
    ("delete", "/api/v3/jobs/mass-delete", {"204", "416"}),
    ("get", "/api/v3/jobs", {"200"}),
    ("get", "/api/v3/jobs/{job_id}", {"200", "404"}),
    ("delete", "/api/v3/jobs/{job_id}", {"204", "404"}),
    ("delete", "/api/v3/jobs/mass-delete", {"204", "400", "416"}),
    ("get", "/api/v3/jobs/{job_id}/tasks", {"200", "400"}),
    ("post", "/api/v3/jobs/{job_id}/setstatus", {"204", "404"}),
    ("post", "/api/v3/jobs/{job_id}/setpriority", {"204", "404"}),
    ("get", "/api/v3/jobs/{job_id}/blocklist", {"200", "400"}),
    ("delete", "/api/v3/jobs/{job_id}/blocklist", {"204", "400"}),
    ("post", "/api/v3/jobs/{job_id}/settag", {"204", "404", "406"}),
    ("get", "/api/v3/jobs/{job_id}/what-would-delete-do", {"200", "404"}),
    ("get", "/api/v3/jobs/last-rendered", {"200", "204"}),
    ("get", "/api/v3/jobs/{job_id}/last-rendered", {"200", "204", "400"}),
    ("get", "/api/v3/tasks/{task_id}", {"200", "404"}),
    ("post", "/api/v3/tasks/{task_id}/setstatus", {"204", "404"}),
    ("get", "/api/v3/tasks/{task_id}/log", {"200", "204", "404"}),
    ("get", "/api/v3/tasks/{task_id}/logtail", {"200", "204", "404"}),
    # Meta and events.
    ("get", "/api/v3/version", {"200"}),
    ("get", "/api/v3/configuration", {"200"}),
    ("get", "/api/v3/configuration/shared-storage/{audience}/{platform}", {"200"}),
    ("get", "/api/v3/configuration/variables/{audience}/{platform}", {"200"}),
    ("get", "/api/v3/status", {"200"}),
    ("get", "/api/v3/farm-history", {"200"}),
    ("get", "/api/v3/openapi3.json", {"200"}),
    ("get", "/api/v3/events", {"200"}),
]


@pytest.mark.parametrize(("method", "path", "statuses"), ENDPOINTS)
def test_endpoints_are_described(spec: dict[str, Any], method: str, path: str, statuses: set[str]) -> None:
    operation = spec["paths"].get(path, {}).get(method)
    assert operation is not None, f"{method.upper()} {path} missing"
    assert statuses <= set(operation["responses"]), sorted(statuses - set(operation["responses"]))
    assert "default" in operation["responses"]


def test_no_undescribed_extra_endpoints(spec: dict[str, Any]) -> None:
    described = {(method, path) for path, method, _ in operations(spec)}
    assert described == {(method, path) for method, path, _ in ENDPOINTS}


@pytest.mark.parametrize(
    "path", ["/api/v3/worker/state", "/api/v3/worker/task", "/api/v3/worker/task/{task_id}/may-i-run"]
)
def test_long_poll_endpoints_take_prefer(spec: dict[str, Any], path: str) -> None:
    operation = next(op for p, _, op in operations(spec) if p == path)
    assert any(p["in"] == "header" and p["name"] == "Prefer" for p in operation["parameters"])


SCHEMA_NAMES = [
    "WorkerStatus",
    "AssignedTask",
    "Command",
    "TaskUpdate",
    "WorkerStateChange",
    "WorkerStateChanged",
    "WorkerSignOn",
    "WorkerRegistration",
    "RegisteredWorker",
    "SecurityError",
    "Error",
    "Job",
    "SubmittedJob",
    "JobsQueryResult",
    "JobTasksSummary",
    "TaskSummary",
    "Task",
    "AvailableJobType",
    "AvailableJobTypes",
    "AvailableJobSetting",
    "WorkerSummary",
    "Worker",
    "WorkerList",
    "WorkerStatusChangeRequest",
    "WorkerTag",
    "WorkerTagList",
    "WorkerTagChangeRequest",
    "WorkerSleepSchedule",
    "MayKeepRunning",
    "FlamencoVersion",
    "TaskLogInfo",
    "JobStatus",
    "TaskStatus",
    "JobStatusChange",
    "TaskStatusChange",
    "JobPriorityChange",
    "JobBlocklist",
    "SharedStorageLocation",
    "ManagerVariables",
    "FarmStatusReport",
    "EventLifeCycle",
    "EventJobUpdate",
    "EventTaskUpdate",
    "EventTaskLogUpdate",
    "EventWorkerUpdate",
    "EventWorkerTagUpdate",
    "EventLastRenderedUpdate",
    "JobLastRenderedImageInfo",
    "ManagerConfiguration",
    "JobDeletionInfo",
    "JobMassDeletionSelection",
]


def test_flamenco_schema_names(spec: dict[str, Any]) -> None:
    missing = [name for name in SCHEMA_NAMES if name not in spec["components"]["schemas"]]
    assert missing == []


def test_flamenco_enums_and_camel_case_fields(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    assert schemas["WorkerStatus"]["enum"] == [
        "starting",
        "awake",
        "asleep",
        "error",
        "testing",
        "offline",
        "restart",
    ]
    assert set(schemas["TaskStatus"]["enum"]) == {
        "active",
        "canceled",
        "completed",
        "failed",
        "queued",
        "soft-failed",
        "paused",
    }
    assert set(schemas["JobStatus"]["enum"]) == {
        "active",
        "canceled",
        "completed",
        "failed",
        "paused",
        "pause-requested",
        "queued",
        "cancel-requested",
        "requeueing",
        "under-construction",
    }
    assert set(schemas["TaskUpdate"]["properties"]) == {"taskStatus", "activity", "log", "steps_completed"}
    assert set(schemas["MayKeepRunning"]["properties"]) == {
        "mayKeepRunning",
        "reason",
        "statusChangeRequested",
    }
    assert schemas["Error"]["required"] == ["code", "message"]


# --- the checker -------------------------------------------------------------------------------------------

GOOD_BODIES = [
    (
        "post",
        "/api/v3/worker/register-worker",
        200,
        {
            "uuid": UUID_A,
            "name": "w1",
            "address": "127.0.0.1",
            "status": "",
            "platform": "linux",
            "software": "",
            "supported_task_types": ["blender", "misc"],
        },
    ),
    ("post", "/api/v3/worker/sign-on", 200, {"status_requested": "awake"}),
    ("post", "/api/v3/worker/sign-off", 204, None),
    ("get", "/api/v3/worker/state", 204, None),
    ("post", "/api/v3/worker/task", 423, {"status_requested": "asleep"}),
    ("post", "/api/v3/worker/task", 409, {"code": 409, "message": 'worker is in state "asleep"'}),
    ("post", "/api/v3/worker/task", 403, {"message": "security requirements failed"}),
    (
        "post",
        "/api/v3/worker/task",
        200,
        {
            "uuid": UUID_A,
            "job": UUID_B,
            "name": "render-1-5",
            "status": "active",
            "priority": 50,
            "job_priority": 50,
            "job_type": "simple-blender-render",
            "task_type": "blender",
            "commands": [{"name": "blender-render", "parameters": {"exe": "blender"}, "total_step_count": 5}],
            "steps_completed": 0,
            "steps_total": 5,
        },
    ),
    (
        "get",
        "/api/v3/worker/task/{task_id}/may-i-run",
        200,
        {"mayKeepRunning": True, "reason": "", "statusChangeRequested": False},
    ),
    (
        "get",
        "/api/v3/worker-mgt/workers/{worker_id}",
        200,
        {
            "id": UUID_A,
            "name": "w1",
            "status": "awake",
            "status_change": {"status": "asleep", "is_lazy": True},
            "last_seen": WHEN,
            "version": "3.9",
            "can_restart": True,
            "ip_address": "10.0.0.2",
            "platform": "linux",
            "supported_task_types": ["blender"],
            "tags": [{"id": UUID_B, "name": "gpu"}],
            "task": {
                "id": UUID_B,
                "name": "echo",
                "status": "active",
                "index_in_job": 1,
                "priority": 50,
                "task_type": "misc",
                "updated": WHEN,
                "steps_completed": 0,
                "steps_total": 1,
                "job_id": UUID_A,
            },
        },
    ),
    (
        "get",
        "/api/v3/jobs",
        200,
        {
            "jobs": [
                {
                    "id": UUID_A,
                    "name": "shot",
                    "type": "echo-sleep-test",
                    "priority": 50,
                    "submitter_platform": "linux",
                    "settings": {"message": "hi"},
                    "metadata": {"user": "me"},
                    "created": WHEN,
                    "updated": WHEN,
                    "status": "queued",
                    "activity": "",
                    "steps_completed": 0,
                    "steps_total": 2,
                }
            ]
        },
    ),
    ("get", "/api/v3/tasks/{task_id}/logtail", 200, "last lines\n"),
    ("get", "/api/v3/worker-mgt/workers", 599, {"code": 599, "message": "anything documented by default"}),
]


@pytest.mark.parametrize(("method", "path", "status", "body"), GOOD_BODIES)
def test_good_bodies_pass(spec: dict[str, Any], method: str, path: str, status: int, body: object) -> None:
    assert_response_valid(spec, method, path, status, body)


def test_job_types_and_variables_match_the_document(spec: dict[str, Any]) -> None:
    assert_response_valid(
        spec, "get", "/api/v3/jobs/types", 200, {"job_types": jobtypes.available_job_types()}
    )
    for job_type in jobtypes.available_job_types():
        assert_response_valid(spec, "get", "/api/v3/jobs/type/{type_name}", 200, job_type)
    variables = Variables.from_config(None, shared_storage_path="/srv/flamenco")
    body = variables.for_audience("workers", "linux")
    assert_response_valid(spec, "get", "/api/v3/configuration/variables/{audience}/{platform}", 200, body)


BAD_BODIES = [
    (
        "post",
        "/api/v3/worker/task",
        200,
        {
            "uuid": UUID_A,
            "job": UUID_B,
            "name": "x",
            "status": "running",
            "priority": 50,
            "job_priority": 50,
            "job_type": "t",
            "task_type": "misc",
            "commands": [{"name": "echo"}],
            "steps_completed": 0,
            "steps_total": 1,
        },
        ["body.commands[0]: 'parameters' is a required property", "body.status: 'running' is not one of"],
    ),
    (
        "get",
        "/api/v3/worker/task/{task_id}/may-i-run",
        200,
        {"may_keep_running": True},
        ["body: 'mayKeepRunning' is a required property"],
    ),
    (
        "get",
        "/api/v3/worker/state",
        200,
        {"status_requested": 3},
        ["body.status_requested: 3 is not of type"],
    ),
    (
        "get",
        "/api/v3/worker-mgt/workers",
        200,
        {"workers": [{"id": "w-1"}]},
        ["body.workers[0].id: 'w-1' is not a"],
    ),
    ("get", "/api/v3/jobs/{job_id}", 200, {"id": UUID_A}, ["body: 'created' is a required property"]),
    (
        "get",
        "/api/v3/jobs/{job_id}/tasks",
        200,
        {
            "tasks": [
                {
                    "id": UUID_A,
                    "name": "t",
                    "status": "queued",
                    "index_in_job": 1,
                    "priority": 2**31,
                    "task_type": "misc",
                    "updated": "yesterday",
                    "steps_completed": 0,
                    "steps_total": 1,
                }
            ]
        },
        [
            "body.tasks[0].priority: 2147483648 is not a 'int32'",
            "body.tasks[0].updated: 'yesterday' is not a",
        ],
    ),
    ("post", "/api/v3/worker/task", 403, {"code": 403}, ["body: 'message' is a required property"]),
    ("post", "/api/v3/worker/task", 409, None, ["documented with a JSON body, but got none"]),
    ("post", "/api/v3/worker/sign-off", 204, {"unexpected": True}, ["documented without a body"]),
    (
        "get",
        "/api/v3/worker-mgt/workers",
        500,
        {"message": "no code"},
        ["body: 'code' is a required property"],
    ),
    ("get", "/api/v3/no-such-path", 200, {}, ["the OpenAPI document has no such operation"]),
    ("patch", "/api/v3/jobs", 200, {}, ["the OpenAPI document has no such operation"]),
]


@pytest.mark.parametrize(("method", "path", "status", "body", "expected"), BAD_BODIES)
def test_wrong_bodies_are_caught(
    spec: dict[str, Any], method: str, path: str, status: int, body: object, expected: list[str]
) -> None:
    with pytest.raises(AssertionError) as info:
        assert_response_valid(spec, method, path, status, body)
    message = str(info.value)
    assert message.startswith(f"{method.upper()} {path} → {status}: ")
    for fragment in expected:
        assert fragment in message


NULLABLE_SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "paths": {
        "/thing": {
            "get": {
                "responses": {
                    "200": {"$ref": "#/components/responses/Thing"},
                    "404": {"description": "nothing"},
                }
            }
        }
    },
    "components": {
        "responses": {
            "Thing": {
                "description": "a thing",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}},
            }
        },
        "schemas": {
            "Colour": {"type": "string", "enum": ["red", "blue"]},
            "Thing": {
                "type": "object",
                "required": ["name", "colour", "parent"],
                "properties": {
                    "name": {"type": "string", "nullable": True},
                    "colour": {"type": "string", "enum": ["red", "blue"], "nullable": True},
                    "parent": {"allOf": [{"$ref": "#/components/schemas/Colour"}], "nullable": True},
                    "count": {"type": "integer"},
                },
            },
        },
    },
}


def test_nullable_and_response_refs() -> None:
    assert_response_valid(NULLABLE_SPEC, "get", "/thing", 200, {"name": None, "colour": None, "parent": None})
    assert_response_valid(
        NULLABLE_SPEC, "get", "/thing", 200, {"name": "a", "colour": "red", "parent": "blue"}
    )
    with pytest.raises(AssertionError, match=r"body.count: None is not of type 'integer'"):
        assert_response_valid(
            NULLABLE_SPEC, "get", "/thing", 200, {"name": None, "colour": None, "parent": None, "count": None}
        )
    with pytest.raises(AssertionError, match=r"body.colour: 'green' is not one of"):
        assert_response_valid(
            NULLABLE_SPEC, "get", "/thing", 200, {"name": "a", "colour": "green", "parent": None}
        )
    with pytest.raises(AssertionError, match=r"status not documented \(documented: 200, 404\)"):
        assert_response_valid(NULLABLE_SPEC, "get", "/thing", 500, None)


def test_unresolvable_reference_is_reported() -> None:
    with pytest.raises(AssertionError, match="reference '#/components/schemas/Nope' does not resolve"):
        resolve_ref(NULLABLE_SPEC, "#/components/schemas/Nope")
