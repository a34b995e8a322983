"""Built-in job types: their descriptions for submitters (with etags) and their compilers.

A submission is compiled after two-way variable replacement of its settings and metadata; the
compiler returns the settings as they should be stored (defaults filled in) and the tasks.

The job-types registry (`services.job_types`) holds these beside the studio's JavaScript job types; the
module-level functions below answer for the built-ins alone.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flamenco_manager.jobtypes import echo_sleep_test, simple_blender_render
from flamenco_manager.jobtypes.model import CompiledJob, CompiledTask, JobCompileError, SettingsError
from flamenco_manager.jobtypes.settings import apply_settings, undefined_settings
from flamenco_manager.values import expected

__all__ = [
    "BuiltinJobType",
    "CompiledJob",
    "CompiledTask",
    "JobCompileError",
    "SettingsError",
    "available_job_types",
    "builtin_job_types",
    "check_metadata",
    "check_settings",
    "check_settings_object",
    "compile_builtin",
    "compile_job",
    "etag",
    "get_job_type",
    "require_job_type",
]

Compiler = Callable[[dict[str, Any], datetime.datetime], list[CompiledTask]]


@dataclass(frozen=True)
class BuiltinJobType:
    info: dict[str, Any]  # AvailableJobType JSON, etag included
    compile_tasks: Compiler

    @property
    def name(self) -> str:
        return str(self.info["name"])


def etag(info: Mapping[str, Any]) -> str:
    """SHA-1 of the job type's JSON; submitters send it back so a stale form is noticed."""
    canonical = json.dumps(info, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha1(canonical.encode("utf-8")).hexdigest()


def _register(*modules: Any) -> dict[str, BuiltinJobType]:
    registry: dict[str, BuiltinJobType] = {}
    for module in modules:
        info = {**module.INFO, "etag": etag(module.INFO)}
        registry[module.NAME] = BuiltinJobType(info=info, compile_tasks=module.compile_tasks)
    return registry


_JOB_TYPES = _register(simple_blender_render, echo_sleep_test)


def builtin_job_types() -> dict[str, BuiltinJobType]:
    """The built-in job types by name (a new mapping; the job types themselves are shared, read-only)."""
    return dict(_JOB_TYPES)


def available_job_types() -> list[dict[str, Any]]:
    """Every built-in job type as AvailableJobType JSON, sorted by name."""
    return [copy.deepcopy(_JOB_TYPES[name].info) for name in sorted(_JOB_TYPES)]


def get_job_type(name: str) -> dict[str, Any] | None:
    job_type = _JOB_TYPES.get(name)
    return copy.deepcopy(job_type.info) if job_type is not None else None


def require_job_type(name: object) -> dict[str, Any]:
    """The job type as AvailableJobType JSON; JobCompileError on `type`, listing the known ones, if none."""
    return copy.deepcopy(_known(name).info)


def _known(name: object) -> BuiltinJobType:
    job_type = _JOB_TYPES.get(name) if isinstance(name, str) else None
    if job_type is None:
        known = ", ".join(sorted(_JOB_TYPES))
        raise JobCompileError("type", f"unknown job type {name!r}; known types: {known}")
    return job_type


def compile_job(submitted: Mapping[str, Any], *, created: datetime.datetime) -> CompiledJob:
    """Tasks for a SubmittedJob of a built-in type; JobCompileError names the part that prevents it."""
    return compile_builtin(_known(submitted.get("type")), submitted, created=created)


def compile_builtin(
    job_type: BuiltinJobType, submitted: Mapping[str, Any], *, created: datetime.datetime
) -> CompiledJob:
    """Tasks for a SubmittedJob of `job_type`; JobCompileError names the part that prevents it.

    Every refused setting is named at once in a `SettingsError`: first those of the wrong type or
    missing, then (when all have their types) whatever the job type's compiler refuses.
    """
    raw_settings = check_settings_object(submitted.get("settings"))
    metadata = check_metadata(submitted.get("metadata") or {})
    definitions = job_type.info["settings"]
    settings = check_settings(definitions, raw_settings)
    try:
        tasks = job_type.compile_tasks(settings, created)
    except SettingsError:
        raise
    except JobCompileError as exc:
        raise SettingsError([exc]) from exc
    undefined = undefined_settings(definitions, raw_settings)
    return CompiledJob(settings=settings, metadata=metadata, tasks=tasks, undefined_settings=undefined)


def check_settings_object(raw: Any) -> Mapping[str, Any]:
    """The submitted `settings` as a mapping (absent: empty); JobCompileError when it is something else."""
    raw = raw or {}
    if not isinstance(raw, Mapping):
        raise JobCompileError("settings", expected(dict, raw))
    return raw


def check_settings(definitions: list[dict[str, Any]], raw: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the submitted settings with defaults filled in, every defined one type-checked."""
    return apply_settings(definitions, copy.deepcopy(dict(raw)))


def check_metadata(raw: Any) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        raise JobCompileError("metadata", expected(dict, raw))
    for key, value in raw.items():
        if not isinstance(value, str):
            raise JobCompileError(f"metadata.{key}", expected(str, value))
    return dict(raw)
