"""The Executor and the task's command list: parsing, order, steps, first failure, cancellation."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flamenco_worker.execution import Command, CommandError, Executor, parse_commands
from tests.worker.execution_fakes import RecordingListener


def test_parse_commands_reads_assigned_task_json() -> None:
    raw: list[dict[str, Any]] = [
        {"name": "echo", "parameters": {"message": "hi"}, "total_step_count": 0},
        {"name": "blender-render", "parameters": {"exe": "blender"}, "total_step_count": 3},
        {"name": "sleep", "parameters": {"duration_in_seconds": 1}},
    ]
    assert parse_commands(raw) == [
        Command("echo", {"message": "hi"}, 0),
        Command("blender-render", {"exe": "blender"}, 3),
        Command("sleep", {"duration_in_seconds": 1}, 0),
    ]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"commands": []}, "task commands must be a list"),
        (["echo"], "command #0 must be an object"),
        ([{"parameters": {}}], 'command #0: "name" must be a non-empty string'),
        ([{"name": "echo"}, {"name": ""}], 'command #1: "name" must be a non-empty string'),
        ([{"name": "echo", "parameters": ["x"]}], 'command #0 (echo): "parameters" must be an object'),
        ([{"name": "echo", "total_step_count": -1}], 'command #0 (echo): "total_step_count" must be'),
        ([{"name": "echo", "total_step_count": True}], '"total_step_count" must be a whole number'),
        ([{"name": "echo", "total_step_count": 1.5}], '"total_step_count" must be a whole number'),
    ],
)
def test_parse_commands_refuses_malformed_entries(raw: object, message: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse_commands(raw)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_commands_are_frozen() -> None:
    with pytest.raises(AttributeError):
        Command("echo").name = "sleep"  # type: ignore[misc]


async def test_commands_run_in_order_and_count_steps() -> None:
    listener = RecordingListener()
    await Executor(listener).run(
        commands=[
            Command("echo", {"message": "first"}),
            Command("exec", {"exe": "echo", "args": ["second"]}, total_step_count=5),
            Command("echo", {"message": "third"}),
        ]
    )
    assert [line for line in listener.lines if "echo" in line or ">" in line] == [
        'echo: "first"',
        "    /usr/bin/echo second",
        f"pid={listener.pids().pop()} > second",
        'echo: "third"',
    ]
    # The command with its own step count reports no step when it ends; the other two count one each.
    assert listener.steps == 2


async def test_unknown_command_fails_and_skips_the_rest() -> None:
    listener = RecordingListener()
    with pytest.raises(CommandError) as caught:
        await Executor(listener).run(
            [
                Command("echo", {"message": "ran"}),
                Command("render-faster"),
                Command("echo", {"message": "skipped"}),
            ]
        )
    assert str(caught.value) == 'unknown command "render-faster"'
    assert caught.value.command == "render-faster"
    assert listener.lines == ['echo: "ran"']
    assert listener.steps == 1


async def test_failure_in_the_middle_skips_the_rest() -> None:
    listener = RecordingListener()
    with pytest.raises(CommandError, match="exec: command exited abnormally with code 1"):
        await Executor(listener).run(
            [Command("exec", {"exe": "false"}), Command("echo", {"message": "skipped"})]
        )
    assert not any("skipped" in line for line in listener.lines)
    assert listener.steps == 0


async def test_cancelling_run_aborts_and_skips_the_rest() -> None:
    listener = RecordingListener()
    running = asyncio.create_task(
        Executor(listener).run(
            [Command("sleep", {"duration_in_seconds": 30}), Command("echo", {"message": "skipped"})]
        )
    )
    await asyncio.sleep(0.05)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert listener.lines == []
    assert listener.steps == 0
