"""What a job-type script works on and what it produces: the job object handed to `compileJob(job)` and
the authored job it returns, checked and turned into a `CompiledJob`.

Rules kept here:
- The script sees Flamenco's job object (lower-camel names of Flamenco's fields), settings already
  checked against the job type with defaults filled in.
- What the script changed in `job.settings` and `job.metadata` is stored, as Flamenco stores it; a new
  `job.name` or `job.priority` is honoured when valid. Metadata values it set as numbers or booleans are
  stored as their JavaScript text, as Flamenco turns them into strings.
- Every task needs a non-empty name and type; every command a non-empty name and an object of
  parameters; dependencies must name other tasks of the job and form no cycle (such a job never ends).
  A job without tasks is refused. Each problem is a `JobScriptError` naming the script and the task.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flamenco_manager.jobtypes.model import (
    DEFAULT_TASK_PRIORITY,
    CompiledJob,
    CompiledTask,
    JobCompileError,
    command,
)
from flamenco_manager.jobtypes.settings import INT32_MAX, INT32_MIN, undefined_settings
from flamenco_manager.values import describe, is_text

# Job priorities Flamenco accepts (the SubmittedJob schema's range).
JOB_PRIORITY_RANGE = range(0, 101)


class JobScriptError(JobCompileError):
    """A job-type script failed or produced an unusable job; the message names the script (and line)."""

    def __init__(self, message: str) -> None:
        super().__init__("", message)

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class JobContext:
    """The submission's own fields, as the script sees them on `job`."""

    job_uuid: str
    name: str
    type: str
    priority: int
    created: datetime.datetime
    shaman_checkout_id: str = ""
    worker_tag_uuid: str = ""


@dataclass(frozen=True)
class AuthoredJob:
    compiled: CompiledJob
    name: str
    priority: int


def job_object(context: JobContext, settings: dict[str, Any], metadata: dict[str, str]) -> dict[str, Any]:
    """The `job` given to `compileJob(job)`, in Flamenco's names."""
    return {
        "jobID": context.job_uuid,
        "name": context.name,
        "jobType": context.type,
        "priority": context.priority,
        "status": "under-construction",
        "created": context.created.isoformat(),
        "settings": settings,
        "metadata": metadata,
        "storage": {"shamanCheckoutID": context.shaman_checkout_id},
        "workerTagUUID": context.worker_tag_uuid,
    }


def authored_job(
    authored: Any,
    *,
    filename: str,
    context: JobContext,
    definitions: list[dict[str, Any]],
    submitted_settings: Mapping[str, Any],
) -> AuthoredJob:
    """The authored job as a CompiledJob with its (possibly renamed, re-prioritised) name and priority."""

    def fail(message: str) -> JobScriptError:
        return JobScriptError(f"{filename}: compileJob: {message}")

    if not isinstance(authored, Mapping):
        raise fail(f"the engine returned {describe(authored)} instead of a job")
    settings = authored.get("settings")
    if not isinstance(settings, dict):
        raise fail(f"job.settings must stay an object, not {describe(settings)}")
    metadata = _metadata(authored.get("metadata"), fail)
    name = authored.get("name", context.name)
    if not is_text(name):
        raise fail(f"job.name must be a non-empty string, not {describe(name)}")
    priority = _whole(authored.get("priority", context.priority))
    if priority is None or priority not in JOB_PRIORITY_RANGE:
        raise fail(
            f"job.priority must be a whole number from {JOB_PRIORITY_RANGE[0]} to {JOB_PRIORITY_RANGE[-1]},"
            f" not {describe(authored.get('priority'))}"
        )
    raw_tasks = authored.get("tasks")
    if not isinstance(raw_tasks, list):
        raise fail(f"job.tasks must be a list, not {describe(raw_tasks)}")
    if not raw_tasks:
        raise fail("no tasks were added to the job (job.addTask)")
    tasks = []
    for index, raw in enumerate(raw_tasks):
        try:
            tasks.append(_task(raw, index, len(raw_tasks)))
        except ValueError as exc:
            label = raw.get("name") if isinstance(raw, Mapping) else None
            named = f" {label!r}" if isinstance(label, str) and label else ""
            raise fail(f"task {index + 1}{named}: {exc}") from None
    cycle = _cycle(tasks)
    if cycle is not None:
        names = " -> ".join(repr(tasks[i].name) for i in cycle)
        raise fail(f"task dependencies form a cycle ({names}); such a job would never finish")
    compiled = CompiledJob(
        settings=settings,
        metadata=metadata,
        tasks=tasks,
        undefined_settings=undefined_settings(definitions, submitted_settings),
    )
    return AuthoredJob(compiled=compiled, name=name, priority=priority)


def _metadata(raw: Any, fail: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise fail(f"job.metadata must stay an object, not {describe(raw)}")
    metadata: dict[str, str] = {}
    for key, value in raw.items():
        text = js_text(value)
        if text is None:
            raise fail(f"job.metadata.{key} must be a string, not {describe(value)}")
        metadata[str(key)] = text
    return metadata


def js_text(value: Any) -> str | None:
    """A string, number or boolean as JavaScript's String() writes it; None for anything else."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
    return None


def _whole(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) else None


def _task(raw: Any, index: int, count: int) -> CompiledTask:
    if not isinstance(raw, Mapping):
        raise ValueError(f"must be an object, not {describe(raw)}")
    name, kind = raw.get("name"), raw.get("type")
    if not is_text(name):
        raise ValueError(f"name must be a non-empty string, not {describe(name)}")
    if not is_text(kind):
        raise ValueError(f"type must be a non-empty string, not {describe(kind)}")
    priority = _whole(raw.get("priority", DEFAULT_TASK_PRIORITY))
    if priority is None or not INT32_MIN <= priority <= INT32_MAX:
        raise ValueError(f"priority must be a whole number, not {describe(raw.get('priority'))}")
    raw_commands = raw.get("commands") or []
    if not isinstance(raw_commands, list):
        raise ValueError(f"commands must be a list, not {describe(raw_commands)}")
    commands = [_command(cmd, number) for number, cmd in enumerate(raw_commands, 1)]
    raw_deps = raw.get("dependencies") or []
    if not isinstance(raw_deps, list):
        raise ValueError(f"dependencies must be a list, not {describe(raw_deps)}")
    depends_on: list[int] = []
    for dep in raw_deps:
        position = _whole(dep)
        if position is None or not 0 <= position < count:
            raise ValueError(f"depends on {dep!r}, which is not a task of this job")
        if position == index:
            raise ValueError("depends on itself")
        if position not in depends_on:
            depends_on.append(position)
    return CompiledTask(name=name, type=kind, priority=priority, commands=commands, depends_on=depends_on)


def _command(raw: Any, number: int) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise ValueError(f"command {number} must be an object, not {describe(raw)}")
    name = raw.get("name")
    if not is_text(name):
        raise ValueError(f"command {number}: name must be a non-empty string, not {describe(name)}")
    parameters = raw.get("parameters")
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise ValueError(
            f"command {number} ({name}): parameters must be an object, not {describe(parameters)}"
        )
    steps = _whole(raw.get("totalStepCount") or 0)
    if steps is None or not 0 <= steps <= INT32_MAX:
        raise ValueError(
            f"command {number} ({name}): totalStepCount must be a whole number of at least 0,"
            f" not {describe(raw.get('totalStepCount'))}"
        )
    return command(name, parameters, steps)


def _cycle(tasks: list[CompiledTask]) -> list[int] | None:
    """Indices of tasks forming a dependency cycle (first one repeated at the end), or None."""
    state = [0] * len(tasks)  # 0 unseen, 1 on the current path, 2 done
    for start in range(len(tasks)):
        if state[start]:
            continue
        path: list[int] = []
        stack: list[tuple[int, int]] = [(start, 0)]
        state[start] = 1
        path.append(start)
        while stack:
            node, next_dep = stack[-1]
            deps = tasks[node].depends_on
            if next_dep < len(deps):
                stack[-1] = (node, next_dep + 1)
                dep = deps[next_dep]
                if state[dep] == 1:
                    return [*path[path.index(dep) :], dep]
                if state[dep] == 0:
                    state[dep] = 1
                    path.append(dep)
                    stack.append((dep, 0))
            else:
                state[node] = 2
                path.pop()
                stack.pop()
    return None
