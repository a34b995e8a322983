"""The `misc` task type: exec, echo and sleep."""

from __future__ import annotations

import asyncio
import json

from flamenco_worker.execution.context import CommandContext


async def exec_command(ctx: CommandContext) -> None:
    """Run a program directly, without a shell; only exit code 0 succeeds."""
    params = ctx.params
    exe = params.executable("exe")
    args = params.argument_list("args")
    await ctx.run_process([exe, *args])


async def echo(ctx: CommandContext) -> None:
    message = ctx.params.required("message")
    text = message if isinstance(message, str) else json.dumps(message, ensure_ascii=False)
    ctx.log(f"echo: {json.dumps(text, ensure_ascii=False)}")


async def sleep(ctx: CommandContext) -> None:
    params = ctx.params
    duration = params.number("duration_in_seconds")
    if duration < 0:
        raise params.error("duration_in_seconds", f"must not be negative, got {duration:g}")
    # Whole seconds, as Flamenco's worker sleeps: the fraction is dropped.
    seconds = int(duration)
    await asyncio.sleep(seconds)
    ctx.log(f"slept {seconds}s")
