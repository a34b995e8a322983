"""The misc commands: exec, echo and sleep, success and error paths."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

import pytest

from flamenco_worker.execution import Command, Executor
from tests.worker.execution_fakes import RecordingListener, fails, run, write_script


async def test_exec_runs_without_a_shell(tmp_path: pathlib.Path) -> None:
    script = write_script(
        tmp_path / "show-args", '#!/bin/sh\nfor a in "$@"; do printf "[%s]\\n" "$a"; done\n'
    )
    listener = await run("exec", {"exe": str(script), "args": ["a b", "$HOME", "*", "'q'"]})
    assert listener.output() == ["[a b]", "[$HOME]", "[*]", "['q']"]
    assert listener.lines[2] == f"    {script} 'a b' '$HOME' '*' ''\"'\"'q'\"'\"''"


async def test_exec_finds_a_bare_name_on_path() -> None:
    listener = await run("exec", {"exe": "true"})
    assert listener.lines == ["going to run:", "", "    /usr/bin/true"]


@pytest.mark.parametrize(
    ("parameters", "parameter", "message"),
    [
        ({}, "exe", 'exec: parameter "exe" is missing'),
        ({"exe": ""}, "exe", 'exec: parameter "exe" must not be empty'),
        ({"exe": 42}, "exe", 'exec: parameter "exe" must be a string, got a number'),
        ({"exe": "no-such-program-here"}, "exe", "\"exe\" 'no-such-program-here' is not found on PATH"),
        ({"exe": "/nonexistent/blender"}, "exe", "\"exe\" '/nonexistent/blender' is not an executable file"),
        ({"exe": "true", "args": "-v"}, "args", '"args" must be a list of strings or numbers, got a string'),
        (
            {"exe": "true", "args": ["-v", None]},
            "args",
            '"args" must be a list of strings or numbers, item 1 is null',
        ),
    ],
)
async def test_exec_parameter_errors(parameters: dict[str, Any], parameter: str, message: str) -> None:
    error = await fails("exec", parameters)
    assert message in str(error)
    assert (error.command, error.parameter) == ("exec", parameter)


async def test_exec_refuses_a_file_without_execute_permission(tmp_path: pathlib.Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("#!/bin/sh\n")
    error = await fails("exec", {"exe": str(plain)})
    assert str(error) == f'exec: parameter "exe" {str(plain)!r} is not an executable file'


async def test_exec_non_zero_exit() -> None:
    error = await fails("exec", {"exe": "sh", "args": ["-c", "exit 42"]})
    assert str(error) == "exec: command exited abnormally with code 42"


@pytest.mark.parametrize(
    ("message", "logged"),
    [
        ("hello", 'echo: "hello"'),
        ('say "hi"', 'echo: "say \\"hi\\""'),
        ("", 'echo: ""'),
        (7, 'echo: "7"'),
        (["a", 1], 'echo: "[\\"a\\", 1]"'),
    ],
)
async def test_echo_logs_the_message(message: object, logged: str) -> None:
    listener = await run("echo", {"message": message})
    assert listener.lines == [logged]


async def test_echo_without_message() -> None:
    assert str(await fails("echo", {})) == 'echo: parameter "message" is missing'


async def test_sleep_drops_the_fraction_and_logs() -> None:
    listener = await run("sleep", {"duration_in_seconds": 0.9})
    assert listener.lines == ["slept 0s"]
    listener = await run("sleep", {"duration_in_seconds": 1.2})
    assert listener.lines == ["slept 1s"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, 'sleep: parameter "duration_in_seconds" must not be negative, got -1'),
        ("5", 'sleep: parameter "duration_in_seconds" must be a number, got a string'),
        (True, 'sleep: parameter "duration_in_seconds" must be a number, got a boolean'),
        (None, 'sleep: parameter "duration_in_seconds" is missing'),
    ],
)
async def test_sleep_parameter_errors(value: object, message: str) -> None:
    assert str(await fails("sleep", {"duration_in_seconds": value})) == message


async def test_sleep_is_cancellable() -> None:
    listener = RecordingListener()
    sleeping = asyncio.create_task(Executor(listener).run([Command("sleep", {"duration_in_seconds": 60})]))
    await asyncio.sleep(0.05)
    sleeping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sleeping
    assert listener.lines == []
