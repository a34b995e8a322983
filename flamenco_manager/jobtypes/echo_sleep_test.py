"""`echo-sleep-test`: echo a message, then sleep a few times; for trying out a farm without Blender."""

from __future__ import annotations

import datetime
from typing import Any

from flamenco_manager.jobtypes.model import CompiledTask, command

NAME = "echo-sleep-test"

# More sleep tasks than this in a test job is a typo; it would only fill the database.
MAX_SLEEP_REPEATS = 10_000
# A day; longer sleeps would trip the task timeout long before and test nothing useful.
MAX_SLEEP_DURATION_SECONDS = 24 * 60 * 60

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
            "propargs": {"min": 0, "max": MAX_SLEEP_DURATION_SECONDS},
            "description": "How long each sleep task sleeps",
        },
        {
            "key": "sleep_repeats",
            "type": "int32",
            "default": 1,
            "propargs": {"min": 0, "max": MAX_SLEEP_REPEATS},
            "description": "How many sleep tasks follow the echo task",
        },
    ],
}


def compile_tasks(settings: dict[str, Any], created: datetime.datetime) -> list[CompiledTask]:
    """One echo task, then `sleep_repeats` sleep tasks that each wait for it."""
    tasks = [
        CompiledTask(name="echo", type="misc", commands=[command("echo", {"message": settings["message"]})])
    ]
    for _ in range(settings["sleep_repeats"]):
        sleep = command("sleep", {"duration_in_seconds": settings["sleep_duration_seconds"]})
        tasks.append(CompiledTask(name="sleep", type="misc", commands=[sleep], depends_on=[0]))
    return tasks
