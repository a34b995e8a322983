"""The `blender` task type: blender-render, with progress and output read from Blender's log lines."""

from __future__ import annotations

import pathlib
import re

from flamenco_worker.execution.context import CommandContext
from flamenco_worker.execution.model import TaskListener

#: Blender 5 prefixes its log lines with a timestamp and a padded category: "00:12.187  render   | …".
_BLENDER5_PREFIX = re.compile(r"^(?:\S+\s+)?render\s*\|\s?")
#: "Saved: '<file>'"; the path runs to the last quote, so quotes inside it survive.
_SAVED = re.compile(r"^Saved: '(?P<path>.+)'")
#: One frame rendered: "Time: 00:01.06 (Saving: 00:00.01)", not the "| Time:" inside progress lines.
#: Older Blender versions indented it by a space.
_FRAME_TIME = re.compile(r"^\s*Time: ")
#: One frame skipped because its output file already exists (no-overwrite renders); Blender writes
#: it in lower case, Flamenco's documentation capitalised.
_SKIPPED = re.compile(r"^[Ss]kipping existing frame")


async def blender_render(ctx: CommandContext) -> None:
    """Run `exe exeArgs… argsBefore… [blendfile] args…` and report frames and saved images."""
    await ctx.run_process(blender_argv(ctx), BlenderOutput(ctx.listener).feed)


def blender_argv(ctx: CommandContext) -> list[str]:
    params = ctx.params
    exe = params.executable("exe")
    exe_args = params.split_string("exeArgs")
    args_before = params.argument_list("argsBefore")
    blendfile = params.optional_string("blendfile")
    args = params.argument_list("args")
    return [exe, *exe_args, *args_before, *([blendfile] if blendfile else []), *args]


class BlenderOutput:
    """Reads Blender's output lines (with or without the Blender 5 prefix) into steps and produced images."""

    def __init__(self, listener: TaskListener) -> None:
        self._listener = listener

    def feed(self, line: str) -> None:
        # Most lines are progress chatter; three substring tests are far cheaper than the patterns.
        if "Time: " not in line and "Saved: " not in line and "kipping existing" not in line:
            return
        if self._interpret(line):
            return
        prefix = _BLENDER5_PREFIX.match(line)
        if prefix is not None:
            self._interpret(line[prefix.end() :])

    def _interpret(self, message: str) -> bool:
        if _FRAME_TIME.match(message) or _SKIPPED.match(message):
            self._listener.step_completed()
            return True
        saved = _SAVED.match(message)
        if saved is not None:
            self._listener.output_produced(pathlib.Path(saved["path"]))
            return True
        return False
