"""Built-in job types: their descriptions for submitters (with etags) and their compilers.

A submission is compiled after two-way variable replacement of its settings and metadata; the
compiler returns the settings as they should be stored (defaults filled in) and the tasks.
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
    "CompiledJob",
    "CompiledTask",
    "JobCompileError",
    "SettingsError",
    "available_job_types",
    "compile_job",
    "get_job_type",
    "require_job_type",
]

Compiler = Callable[[dict[str, Any], datetime.datetime], list[CompiledTask]]


@dataclass(frozen=True)
class _JobType:
    info: dict[str, Any]  # AvailableJobType JSON, etag included
    compile_tasks: Compiler


def _etag(info: Mapping[str, Any]) -> str:
    """SHA-1 of the job type's JSON; submitters send it back so a stale form is noticed."""
    canonical = json.dumps(info, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha1(canonical.encode("utf-8")).hexdigest()


def _register(*modules: Any) -> dict[str, _JobType]:
    registry: dict[str, _JobType] = {}
    for module in modules:
        info = {**module.INFO, "etag": _etag(module.INFO)}
        registry[module.NAME] = _JobType(info=info, compile_tasks=module.compile_tasks)
    return registry


_JOB_TYPES = _register(simple_blender_render, echo_sleep_test)


def available_job_types() -> list[dict[str, Any]]:
    """Every job type as AvailableJobType JSON, sorted by name."""
    return [copy.deepcopy(_JOB_TYPES[name].info) for name in sorted(_JOB_TYPES)]


def get_job_type(name: str) -> dict[str, Any] | None:
    job_type = _JOB_TYPES.get(name)
    return copy.deepcopy(job_type.info) if job_type is not None else None


def require_job_type(name: object) -> dict[str, Any]:
    """The job type as AvailableJobType JSON; JobCompileError on `type`, listing the known ones, if none."""
    return copy.deepcopy(_known(name).info)


def _known(name: object) -> _JobType:
    job_type = _JOB_TYPES.get(name) if isinstance(name, str) else None
    if job_type is None:
        known = ", ".join(sorted(_JOB_TYPES))
        raise JobCompileError("type", f"unknown job type {name!r}; known types: {known}")
    return job_type


def compile_job(submitted: Mapping[str, Any], *, created: datetime.datetime) -> CompiledJob:
    """Tasks for a SubmittedJob; JobCompileError names the part that prevents it.

    Every refused setting is named at once in a `SettingsError`: first those of the wrong type or
    missing, then (when all have their types) whatever the job type's compiler refuses.
    """
    job_type = _known(submitted.get("type"))
    raw_settings = submitted.get("settings") or {}
    if not isinstance(raw_settings, Mapping):
        raise JobCompileError("settings", expected(dict, raw_settings))
    metadata = _metadata(submitted.get("metadata") or {})
    definitions = job_type.info["settings"]
    settings = apply_settings(definitions, copy.deepcopy(dict(raw_settings)))
    try:
        tasks = job_type.compile_tasks(settings, created)
    except SettingsError:
        raise
    except JobCompileError as exc:
        raise SettingsError([exc]) from exc
    undefined = undefined_settings(definitions, raw_settings)
    return CompiledJob(settings=settings, metadata=metadata, tasks=tasks, undefined_settings=undefined)


def _metadata(raw: Any) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        raise JobCompileError("metadata", expected(dict, raw))
    for key, value in raw.items():
        if not isinstance(value, str):
            raise JobCompileError(f"metadata.{key}", expected(str, value))
    return dict(raw)
