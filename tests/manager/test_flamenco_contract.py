"""Flamenco's own OpenAPI document is the contract for every endpoint both Managers serve.

The tables below are facts read from Flamenco v3's `pkg/api/flamenco-openapi.yaml` (operations with
their explicit statuses; schemas with their required fields and enums). Our document must keep each of
them, or say why not in an `x-flamenco-deviation` note, and the README lists every such point.
"""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from flamenco_manager.openapi import load_spec

README = pathlib.Path(__file__).parents[2] / "README.md"

# Flamenco's operations: (method, path with Flamenco's parameter names) -> its explicit statuses.
FLAMENCO_OPERATIONS: dict[tuple[str, str], set[str]] = {
    ("get", "/api/v3/version"): {"200"},
    ("get", "/api/v3/configuration"): {"200"},
    ("get", "/api/v3/configuration/variables/{audience}/{platform}"): {"200"},
    ("get", "/api/v3/configuration/shared-storage/{audience}/{platform}"): {"200"},
    ("get", "/api/v3/status"): {"200"},
    ("post", "/api/v3/worker/register-worker"): {"200"},
    ("post", "/api/v3/worker/sign-on"): {"200"},
    ("post", "/api/v3/worker/sign-off"): {"204"},
    ("get", "/api/v3/worker/state"): {"200", "204"},
    ("post", "/api/v3/worker/state-changed"): {"204"},
    ("post", "/api/v3/worker/task"): {"200", "204", "403", "409", "423"},
    ("post", "/api/v3/worker/task/{task_id}"): {"204", "409"},
    ("get", "/api/v3/worker/task/{task_id}/may-i-run"): {"200"},
    ("post", "/api/v3/worker/task/{task_id}/output-produced"): {"202", "411", "413", "415", "429"},
    ("get", "/api/v3/worker-mgt/workers"): {"200"},
    ("get", "/api/v3/worker-mgt/workers/{worker_id}"): {"200"},
    ("delete", "/api/v3/worker-mgt/workers/{worker_id}"): {"204"},
    ("post", "/api/v3/worker-mgt/workers/{worker_id}/setstatus"): {"204"},
    ("post", "/api/v3/worker-mgt/workers/{worker_id}/settags"): {"204"},
    ("get", "/api/v3/worker-mgt/workers/{worker_id}/sleep-schedule"): {"200", "204"},
    ("post", "/api/v3/worker-mgt/workers/{worker_id}/sleep-schedule"): {"204"},
    ("get", "/api/v3/worker-mgt/tags"): {"200"},
    ("post", "/api/v3/worker-mgt/tags"): {"200"},
    ("get", "/api/v3/worker-mgt/tag/{tag_id}"): {"200"},
    ("put", "/api/v3/worker-mgt/tag/{tag_id}"): {"204"},
    ("delete", "/api/v3/worker-mgt/tag/{tag_id}"): {"204"},
    ("get", "/api/v3/jobs/types"): {"200"},
    ("get", "/api/v3/jobs/type/{typeName}"): {"200"},
    ("get", "/api/v3/jobs"): {"200"},
    ("post", "/api/v3/jobs"): {"200", "412"},
    ("delete", "/api/v3/jobs/mass-delete"): {"204", "416"},
    ("post", "/api/v3/jobs/check"): {"204", "412"},
    ("get", "/api/v3/jobs/{job_id}"): {"200"},
    ("delete", "/api/v3/jobs/{job_id}"): {"204"},
    ("get", "/api/v3/jobs/{job_id}/what-would-delete-do"): {"200"},
    ("get", "/api/v3/jobs/{job_id}/last-rendered"): {"200", "204"},
    ("get", "/api/v3/jobs/last-rendered"): {"200", "204"},
    ("post", "/api/v3/jobs/{job_id}/setstatus"): {"204", "422"},
    ("post", "/api/v3/jobs/{job_id}/setpriority"): {"204", "422"},
    ("get", "/api/v3/jobs/{job_id}/tasks"): {"200"},
    ("get", "/api/v3/jobs/{job_id}/blocklist"): {"200"},
    ("delete", "/api/v3/jobs/{job_id}/blocklist"): {"204"},
    ("get", "/api/v3/tasks/{task_id}"): {"200"},
    ("get", "/api/v3/tasks/{task_id}/logtail"): {"200", "204"},
    ("get", "/api/v3/tasks/{task_id}/log"): {"200", "204"},
    ("post", "/api/v3/tasks/{task_id}/setstatus"): {"204", "422"},
}
# Flamenco operations this Manager does not serve (no Shaman, no setup assistant, no config editing).
NOT_SERVED = {
    ("post", "/api/v3/configuration/check/shared-storage"),
    ("get", "/api/v3/configuration/check/blender"),
    ("post", "/api/v3/configuration/check/blender"),
    ("post", "/api/v3/configuration/setup-assistant"),
    ("get", "/api/v3/configuration/file"),
    ("put", "/api/v3/configuration/file"),
    ("post", "/api/v3/shaman/checkout/requirements"),
    ("post", "/api/v3/shaman/checkout/create"),
    ("get", "/api/v3/shaman/files/{checksum}/{filesize}"),
    ("post", "/api/v3/shaman/files/{checksum}/{filesize}"),
}
# Statuses Flamenco documents but its code never sends; the operation carries a note saying so.
NEVER_SENT = {"422"}
# Path parameters named differently: the same URL on the wire.
RENAMED = {"/api/v3/jobs/type/{typeName}": "/api/v3/jobs/type/{type_name}"}

# Flamenco's schemas: name -> (required fields, enum).
FLAMENCO_SCHEMAS: dict[str, tuple[set[str], list[str] | None]] = {
    "FlamencoVersion": ({"version", "shortversion", "name", "git"}, None),
    "FarmStatusReport": ({"status"}, None),
    "FarmStatus": (set(), ["active", "idle", "waiting", "asleep", "inoperative", "unknown", "starting"]),
    "ManagerConfiguration": ({"storageLocation", "shamanEnabled", "isFirstRun"}, None),
    "ManagerVariable": ({"name", "is_twoway", "value"}, None),
    "ManagerVariableAudience": (set(), ["workers", "users"]),
    "SharedStorageLocation": ({"location", "audience", "platform", "shamanEnabled"}, None),
    "WorkerRegistration": ({"secret", "platform", "supported_task_types", "name"}, None),
    "RegisteredWorker": (
        {"uuid", "name", "address", "status", "platform", "current_task", "software", "supported_task_types"},
        None,
    ),
    "WorkerStatus": (set(), ["starting", "awake", "asleep", "error", "testing", "offline", "restart"]),
    "WorkerSignOn": ({"name", "supported_task_types", "software_version"}, None),
    "WorkerStateChange": ({"status_requested"}, None),
    "WorkerStateChanged": ({"status"}, None),
    "AssignedTask": (
        {"uuid", "job", "name", "status", "priority", "job_priority", "job_type", "task_type", "commands"},
        None,
    ),
    "MayKeepRunning": ({"mayKeepRunning", "reason", "statusChangeRequested"}, None),
    "TaskStatus": (set(), ["active", "canceled", "completed", "failed", "queued", "soft-failed", "paused"]),
    "Command": ({"name", "parameters"}, None),
    "AvailableJobTypes": ({"job_types"}, None),
    "AvailableJobType": ({"name", "label", "settings", "etag"}, None),
    "AvailableJobSetting": ({"key", "type"}, None),
    "AvailableJobSettingType": (set(), ["string", "int32", "float", "bool"]),
    "AvailableJobSettingSubtype": (set(), ["file_path", "dir_path", "file_name", "hashed_file_path"]),
    "AvailableJobSettingVisibility": (set(), ["visible", "hidden", "submission", "web"]),
    "SubmittedJob": ({"name", "type", "priority", "submitter_platform"}, None),
    "JobDeletionInfo": ({"shaman_checkout"}, None),
    "JobsQueryResult": ({"jobs"}, None),
    "Task": (
        {
            "id",
            "created",
            "updated",
            "job_id",
            "name",
            "status",
            "priority",
            "task_type",
            "activity",
            "commands",
        },
        None,
    ),
    "TaskWorker": ({"id", "name", "address"}, None),
    "JobTasksSummary": ({"jobs"}, None),
    "TaskSummary": ({"id", "name", "status", "priority", "task_type", "updated"}, None),
    "TaskLogInfo": ({"task_id", "job_id", "url", "size"}, None),
    "JobLastRenderedImageInfo": ({"base", "suffixes"}, None),
    "JobBlocklistEntry": ({"worker_id", "task_type"}, None),
    "JobStatusChange": ({"status", "reason"}, None),
    "JobPriorityChange": ({"priority"}, None),
    "TaskStatusChange": ({"status", "reason"}, None),
    "Error": ({"code", "message"}, None),
    "SecurityError": ({"message"}, None),
    "EventJobUpdate": ({"id", "updated", "status", "type", "priority", "refresh_tasks"}, None),
    "EventTaskUpdate": ({"id", "job_id", "name", "updated", "status", "activity"}, None),
    "EventTaskLogUpdate": ({"task_id", "log"}, None),
    "EventLastRenderedUpdate": ({"job_id", "task_id", "thumbnail"}, None),
    "EventWorkerUpdate": ({"id", "name", "updated", "status", "version", "can_restart"}, None),
    "EventWorkerTagUpdate": ({"tag"}, None),
    "EventLifeCycle": ({"type"}, None),
    "LifeCycleEventType": (set(), ["manager-startup", "manager-shutdown"]),
    "WorkerList": ({"workers"}, None),
    "WorkerSummary": ({"id", "name", "status", "version", "can_restart"}, None),
    "WorkerStatusChangeRequest": ({"status", "is_lazy"}, None),
    "WorkerSleepSchedule": ({"is_active", "days_of_week", "start_time", "end_time"}, None),
    "WorkerTag": ({"name"}, None),
    "WorkerTagChangeRequest": ({"tag_ids"}, None),
}
# Required fields Flamenco's document names but never defines nor sends: our schema carries a note.
UNDEFINED_REQUIRED = {
    "JobTasksSummary": {"jobs"},
    "RegisteredWorker": {"current_task"},
    "ManagerVariable": {"name"},
    "EventLastRenderedUpdate": {"task_id"},
}
# Flamenco added enum values after the document above was written; ours has the newer set.
NEWER_ENUM_VALUES = {"JobStatus": {"pause-requested"}}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return load_spec()


def _required(spec: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    if "$ref" in schema:
        return _required(spec, spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]])
    found = set(schema.get("required", []))
    for part in schema.get("allOf", []):
        found |= _required(spec, part)
    return found


@pytest.mark.parametrize(("method", "path"), sorted(FLAMENCO_OPERATIONS))
def test_every_shared_operation_keeps_flamencos_statuses(
    spec: dict[str, Any], method: str, path: str
) -> None:
    ours = spec["paths"].get(RENAMED.get(path, path), {}).get(method)
    assert ours is not None, f"{method.upper()} {path} is in Flamenco's document but not in ours"
    statuses = set(ours["responses"])
    missing = FLAMENCO_OPERATIONS[(method, path)] - statuses
    if missing <= NEVER_SENT and missing:
        assert "422" in ours["x-flamenco-deviation"], f"{method.upper()} {path}: no note on {missing}"
    else:
        assert not missing, f"{method.upper()} {path}: Flamenco documents {sorted(missing)}"
    assert "default" in statuses


def test_operations_not_served_are_listed(spec: dict[str, Any]) -> None:
    listed = set(spec["x-flamenco-compatibility"]["not-served"])
    assert listed == {f"{method.upper()} {path}" for method, path in NOT_SERVED}
    for method, path in NOT_SERVED:
        assert method not in spec["paths"].get(path, {})


@pytest.mark.parametrize("name", sorted(FLAMENCO_SCHEMAS))
def test_every_shared_schema_keeps_flamencos_fields(spec: dict[str, Any], name: str) -> None:
    ours = spec["components"]["schemas"][name]
    required, enum = FLAMENCO_SCHEMAS[name]
    dropped = required - _required(spec, ours)
    if dropped:
        assert dropped == UNDEFINED_REQUIRED.get(name), f"{name}: Flamenco requires {sorted(dropped)}"
        assert "never defines" in ours["x-flamenco-deviation"], name
    if enum is not None:
        assert set(ours["enum"]) - NEWER_ENUM_VALUES.get(name, set()) == set(enum), name


def test_job_status_enum_matches_flamencos_newer_set(spec: dict[str, Any]) -> None:
    assert "pause-requested" in spec["components"]["schemas"]["JobStatus"]["enum"]


def test_every_noted_deviation_is_in_the_readme(spec: dict[str, Any]) -> None:
    readme = README.read_text(encoding="utf-8")
    section = readme.split("## Compatibility with Flamenco", 1)[1].split("\n## ", 1)[0]
    for name, schema in spec["components"]["schemas"].items():
        if "x-flamenco-deviation" in schema:
            assert f"`{name}`" in section, f"README does not mention {name}"
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            noted = "x-flamenco-deviation" in operation or any(
                "x-flamenco-deviation" in r for r in operation.get("responses", {}).values()
            )
            if noted:
                assert f"{method.upper()} {path}" in section, f"README does not mention {method} {path}"
