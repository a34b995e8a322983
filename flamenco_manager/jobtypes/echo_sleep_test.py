"""`echo-sleep-test`: echo a message, then sleep a few times; for trying out a farm without Blender."""

from __future__ import annotations

import datetime
from typing import Any

from flamenco_manager.jobtypes.model import CompiledTask, JobCompileError, SettingsError, command

NAME = "echo-sleep-test"

# More sleep tasks than this in a test job is a typo; it would only fill the database.
MAX_SLEEP_REPEATS = 10_000
# A day; longer sleeps would trip the task timeout long before and test nothing useful.
MAX_SLEEP_DURATION_SECONDS = 24 * 60 * 60

# The settings (keys, types, defaults) are Flamenco's; the limits above are checked when compiling, so the
# submission form stays the one Flamenco's add-on expects.
INFO: dict[str, Any] = {
    "name": NAME,
    "label": "Echo Sleep Test",
    "description": "Echoes a message, then runs sleep tasks; exercises workers without Blender.",
    "settings": [
        {"key": "message", "type": "string", "required": True, "description": "Text the echo task logs"},
        {
            "key": "sleep_duration_seconds",
            "type": "int32",
            "default": 1,
            "description": "How long each sleep task sleeps",
        },
        {
            "key": "sleep_repeats",
            "type": "int32",
            "default": 1,
            "description": "How many sleep tasks follow the echo task",
        },
    ],
}


def compile_tasks(settings: dict[str, Any], created: datetime.datetime) -> list[CompiledTask]:
    """One echo task, then `sleep_repeats` sleep tasks (none when it is 0 or less) that each wait for it."""
    problems: list[JobCompileError] = []
    duration = settings["sleep_duration_seconds"]
    if not 0 <= duration <= MAX_SLEEP_DURATION_SECONDS:
        problems.append(
            JobCompileError(
                "sleep_duration_seconds", f"{duration} is not between 0 and {MAX_SLEEP_DURATION_SECONDS}"
            )
        )
    if settings["sleep_repeats"] > MAX_SLEEP_REPEATS:
        problems.append(
            JobCompileError(
                "sleep_repeats", f"{settings['sleep_repeats']} is above the maximum {MAX_SLEEP_REPEATS}"
            )
        )
    if problems:
        raise SettingsError(problems)
    tasks = [
        CompiledTask(name="echo", type="misc", commands=[command("echo", {"message": settings["message"]})])
    ]
    for _ in range(settings["sleep_repeats"]):
        sleep = command("sleep", {"duration_in_seconds": duration})
        tasks.append(CompiledTask(name="sleep", type="misc", commands=[sleep], depends_on=[0]))
    return tasks
