"""What a job compiler produces, and how it reports a submission it cannot compile."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from flamenco_manager.values import several

# Priority of a task when its compiler sets none (Flamenco's default).
DEFAULT_TASK_PRIORITY = 50


class JobCompileError(Exception):
    """A submitted job cannot be compiled; `field` names the offending part (a setting key, `type`, …).

    A compiler raises one for a setting it refuses (`field` is the setting's key), or a `SettingsError`
    when it checks several settings and more than one is wrong.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class SettingsError(JobCompileError):
    """Every refused setting of a submission: `field` is `settings`, `problems` names each by its key."""

    def __init__(self, problems: Sequence[JobCompileError]) -> None:
        if not problems:
            raise ValueError("a SettingsError needs at least one problem")
        self.problems: tuple[JobCompileError, ...] = tuple(
            inner for problem in problems for inner in _each(problem)
        )
        super().__init__("settings", several([str(problem) for problem in self.problems]))


def _each(problem: JobCompileError) -> tuple[JobCompileError, ...]:
    return problem.problems if isinstance(problem, SettingsError) else (problem,)


@dataclass
class CompiledTask:
    name: str
    type: str
    priority: int = DEFAULT_TASK_PRIORITY
    # Each command is {"name", "parameters", "total_step_count"}.
    commands: list[dict[str, Any]] = field(default_factory=list)
    # Indices into CompiledJob.tasks of the tasks that must complete first.
    depends_on: list[int] = field(default_factory=list)

    @property
    def steps_total(self) -> int:
        """Progress steps of the task: each command counts at least one."""
        return sum(max(1, command.get("total_step_count", 0)) for command in self.commands)


@dataclass
class CompiledJob:
    settings: dict[str, Any]
    metadata: dict[str, str]
    tasks: list[CompiledTask]
    # Submitted settings the job type does not define: kept, as Flamenco keeps them, and worth a mention.
    undefined_settings: list[str] = field(default_factory=list)


def command(name: str, parameters: dict[str, Any], total_step_count: int = 0) -> dict[str, Any]:
    """A command as stored with its task and sent to workers."""
    return {"name": name, "parameters": parameters, "total_step_count": total_step_count}
