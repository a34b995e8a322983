"""The `ffmpeg` task type: frames-to-video."""

from __future__ import annotations

from decimal import Decimal

from flamenco_worker.execution.context import CommandContext


async def frames_to_video(ctx: CommandContext) -> None:
    """Run `exe exeArgs argsBefore -r fps -pattern_type glob -i <glob> args -r fps outputFile`."""
    await ctx.run_process(frames_to_video_argv(ctx))


def frames_to_video_argv(ctx: CommandContext) -> list[str]:
    params = ctx.params
    exe = params.executable("exe")
    exe_args = params.split_string("exeArgs")
    fps = params.number("fps")
    if fps == 0:
        raise params.error("fps", "must not be zero")
    input_glob = params.string("inputGlob")
    output_file = params.string("outputFile")
    args_before = params.argument_list("argsBefore")
    args = params.argument_list("args")
    rate = format_fps(fps)
    return [
        exe,
        *exe_args,
        *args_before,
        *("-r", rate, "-pattern_type", "glob", "-i", input_glob),
        *args,
        *("-r", rate, output_file),
    ]


def format_fps(fps: float) -> str:
    """Shortest plain decimal: 24.0 → "24", 29.97 → "29.97", never exponent notation."""
    text = format(Decimal(repr(fps)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text
