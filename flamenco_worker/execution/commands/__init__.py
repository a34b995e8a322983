"""The registry of built-in commands, by the names Flamenco's job types use."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType

from flamenco_worker.execution.commands import blender, ffmpeg, files, misc
from flamenco_worker.execution.context import CommandContext
from flamenco_worker.execution.model import CommandError

CommandFunc = Callable[[CommandContext], Awaitable[None]]

COMMANDS: Mapping[str, CommandFunc] = MappingProxyType(
    {
        "blender-render": blender.blender_render,
        "frames-to-video": ffmpeg.frames_to_video,
        "exec": misc.exec_command,
        "echo": misc.echo,
        "sleep": misc.sleep,
        "make-directory": files.make_directory,
        "move-directory": files.move_directory,
        "copy-file": files.copy_file,
    }
)


def lookup(name: str) -> CommandFunc:
    try:
        return COMMANDS[name]
    except KeyError:
        raise CommandError(f'unknown command "{name}"', command=name) from None
