"""Trying every job-type script out before deploying it: `flamenco-manager -check-scripts`.

Each script is loaded as the Manager loads it and compiled once with settings a submission could have:
defaults, placeholders for what the add-on fills in (`script_info.placeholder`), and the values of a
`-check-settings` file, which win.
"""

from __future__ import annotations

import dataclasses
import datetime
import pathlib
import uuid as uuidlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from flamenco_manager.config import ConfigError
from flamenco_manager.jobtypes import JobCompileError
from flamenco_manager.jobtypes.javascript import EngineLimits
from flamenco_manager.jobtypes.script_info import job_type_name, placeholder
from flamenco_manager.jobtypes.script_job import JobContext, JobScriptError
from flamenco_manager.services.job_types import JobTypes, ScriptState


@dataclass(frozen=True)
class CheckRow:
    filename: str
    name: str
    label: str
    settings: int | None
    result: str
    ok: bool


def check_settings(info: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Settings to try a job type with: placeholders for what the add-on would fill in, then `overrides`.

    A setting without a default that is required, or that the add-on computes (`eval`), gets a placeholder
    (see `script_info.placeholder`); the others are left to their defaults or left out.
    """
    settings = {
        s["key"]: placeholder(s)
        for s in info["settings"]
        if "default" not in s and (s.get("required") or "eval" in s)
    }
    settings.update(overrides)
    return settings


async def check_scripts(
    directory: pathlib.Path,
    *,
    engine: str = "",
    limits: EngineLimits | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[list[CheckRow], str | None]:
    """Each script of `directory` loaded and compiled once; the rows and, when there is none, the
    reason there is no engine (then the rows are empty)."""
    registry = JobTypes(directory, engine=engine, limits=limits)
    overrides = overrides or {}
    rows: list[CheckRow] = []
    try:
        await registry.start()
        if registry.engine_problem is not None:
            return [], registry.engine_problem
        for state in registry.states():
            rows.append(await _check_one(registry, state, overrides))
    finally:
        await registry.close()
    return rows, None


async def _check_one(
    registry: JobTypes, state: ScriptState, overrides: Mapping[str, Mapping[str, Any]]
) -> CheckRow:
    name = job_type_name(state.filename)
    if state.script is None or state.problem is not None:
        return CheckRow(state.filename, name, "", None, state.problem or "not loaded", False)
    info = state.script.info
    settings = check_settings(info, overrides.get(name, {}))
    context = JobContext(
        job_uuid=str(uuidlib.uuid4()),
        name=f"check {name}",
        type=name,
        priority=50,
        created=datetime.datetime.now(datetime.UTC),
    )
    row = CheckRow(state.filename, name, info["label"], len(info["settings"]), "", True)
    try:
        compiled = await registry.compile(state.script, {"settings": settings, "metadata": {}}, context)
    except JobScriptError as exc:
        return dataclasses.replace(row, result=str(exc), ok=False)
    except JobCompileError as exc:
        return dataclasses.replace(row, result=f"{state.filename}: {exc}", ok=False)
    count = len(compiled.job.tasks)
    return dataclasses.replace(row, result=f"{count} task{'s' if count != 1 else ''}")


def table(rows: list[CheckRow]) -> str:
    lines = [("TYPE", "LABEL", "SETTINGS", "RESULT")]
    for row in rows:
        count = "-" if row.settings is None else str(row.settings)
        lines.append((row.name, row.label or "-", count, row.result))
    widths = [max(len(line[column]) for line in lines) for column in range(3)]
    return "\n".join(
        f"{name:<{widths[0]}}  {label:<{widths[1]}}  {count:>{widths[2]}}  {result}"
        for name, label, count, result in lines
    )


def read_check_settings(path: pathlib.Path) -> dict[str, Mapping[str, Any]]:
    """-check-settings FILE.yaml: job type name -> settings; ConfigError naming file:line and key."""
    try:
        text = path.read_text(encoding="utf-8")
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, None, None, f"cannot read it: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
        raise ConfigError(path, line, None, f"invalid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, None, None, f"invalid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not isinstance(root, yaml.MappingNode):
        raise ConfigError(path, 1, None, "expected a mapping of job type names to settings")
    for key_node, value_node in root.value:
        if not isinstance(data.get(key_node.value), dict):
            line = value_node.start_mark.line + 1
            raise ConfigError(path, line, str(key_node.value), "expected a mapping of setting keys to values")
    return {str(name): settings for name, settings in data.items()}
