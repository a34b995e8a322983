"""blender-render: argument assembly, and reading steps and saved images from Blender's output."""

from __future__ import annotations

import pathlib
import shutil
from typing import Any

import pytest

from flamenco_worker.execution import Command, CommandError, Executor
from flamenco_worker.execution.commands.blender import BlenderOutput
from tests.worker.execution_fakes import RecordingListener, write_script

#: Blender 4 style lines, then Blender 5 style lines ("<time>  render   | …"), as a render prints them.
BLENDER_LIKE_OUTPUT = r"""Blender 4.2.3 LTS (hash 0123456789ab built 2024-10-14 00:00:00)
Read blend: "/shared/shot.blend"
Fra:1 Mem:12.00M (Peak 12.00M) | Time:00:00.52 | Remaining:00:01.01 | Scene, ViewLayer | Sample 1/16
Saved: '/shared/frames/0001.png'
Time: 00:01.06 (Saving: 00:00.01)

skipping existing frame "/shared/frames/0002.png"
Skipping existing frame "/shared/frames/0003.png"
00:03.906  render           | Fra: 4 | Mem: 6M | Time:00:00.52 | Sample 24/24
00:04.094  render | Saved: '/shared/frames/it's 0004.png'
00:12.187  render           | Time: 00:10.25 (Saving: 00:00.11)
render | Saved: '/shared/frames/0005.exr'
render | Time: 00:01.00 (Saving: 00:00.00)
00:13.001  python           | Saved: '/not/a/render.png'
Blender quit
"""


@pytest.fixture
def fake_blender(tmp_path: pathlib.Path) -> pathlib.Path:
    """A `blender` that prints its arguments, then Blender-like output; FAKE_EXIT sets its exit code."""
    (tmp_path / "output.txt").write_text(BLENDER_LIKE_OUTPUT)
    return write_script(
        tmp_path / "blender",
        "#!/bin/sh\n"
        'for a in "$@"; do printf "arg=%s\\n" "$a"; done\n'
        f"cat '{tmp_path / 'output.txt'}'\n"
        'exit "${FAKE_EXIT:-0}"\n',
    )


async def render(parameters: dict[str, Any], *, steps: int = 0) -> RecordingListener:
    listener = RecordingListener()
    await Executor(listener).run([Command("blender-render", parameters, total_step_count=steps)])
    return listener


def args_of(listener: RecordingListener) -> list[str]:
    return [line.removeprefix("arg=") for line in listener.output() if line.startswith("arg=")]


async def test_argv_assembly(fake_blender: pathlib.Path) -> None:
    listener = await render(
        {
            "exe": str(fake_blender),
            # A leading space and quotes inside quotes, split the way a POSIX shell would.
            "exeArgs": ' --factory-startup --python-expr "import bpy; print(\\"hello world\\")"',
            "argsBefore": ["-b", "--debug-cycles"],
            "blendfile": "/shared/file with spaces.blend",
            "args": ["--render-output", "/frames/######", "--render-frame", "1..3"],
        }
    )
    assert args_of(listener) == [
        "--factory-startup",
        "--python-expr",
        'import bpy; print("hello world")',
        "-b",
        "--debug-cycles",
        "/shared/file with spaces.blend",
        "--render-output",
        "/frames/######",
        "--render-frame",
        "1..3",
    ]
    assert listener.lines[2] == (
        f"    {fake_blender} --factory-startup --python-expr 'import bpy; print(\"hello world\")' -b "
        "--debug-cycles '/shared/file with spaces.blend' --render-output '/frames/######' --render-frame 1..3"
    )


async def test_empty_blendfile_is_left_out(fake_blender: pathlib.Path) -> None:
    listener = await render(
        {"exe": str(fake_blender), "argsBefore": ["-b"], "blendfile": "", "args": ["-f", "1"]}
    )
    assert args_of(listener) == ["-b", "-f", "1"]


async def test_exe_found_on_path(fake_blender: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{fake_blender.parent}:/usr/bin:/bin")
    listener = await render({"exe": "blender", "args": ["-v"]})
    assert listener.lines[2] == f"    {fake_blender} -v"


async def test_steps_and_saved_images_from_output(fake_blender: pathlib.Path) -> None:
    listener = await render({"exe": str(fake_blender), "blendfile": "/shared/shot.blend"}, steps=6)
    # Time: ×3 and skipping ×2; the "| Time:" inside progress lines is not a finished frame.
    assert listener.steps == 5
    assert listener.outputs == [
        pathlib.Path("/shared/frames/0001.png"),
        pathlib.Path("/shared/frames/it's 0004.png"),
        pathlib.Path("/shared/frames/0005.exr"),
    ]
    # Every line still reaches the task log, prefix and all.
    assert "00:12.187  render           | Time: 00:10.25 (Saving: 00:00.11)" in listener.output()


async def test_without_own_step_count_the_end_counts_one_more_step(fake_blender: pathlib.Path) -> None:
    listener = await render({"exe": str(fake_blender)}, steps=0)
    assert listener.steps == 5 + 1


async def test_blender_failing(fake_blender: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_EXIT", "1")
    listener = RecordingListener()
    with pytest.raises(CommandError) as caught:
        await Executor(listener).run([Command("blender-render", {"exe": str(fake_blender)})])
    assert str(caught.value) == "blender-render: command exited abnormally with code 1"
    assert listener.steps == 5, "frames finished before the failure still count"


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({}, 'parameter "exe" is missing'),
        (
            {"exe": "no-such-blender-anywhere"},
            "parameter \"exe\" 'no-such-blender-anywhere' is not found on PATH",
        ),
        ({"exe": "sh", "exeArgs": '--python-expr "unterminated'}, 'parameter "exeArgs" cannot be split'),
        ({"exe": "sh", "exeArgs": ["-b"]}, 'parameter "exeArgs" must be a string, got a list'),
        (
            {"exe": "sh", "argsBefore": "-b"},
            'parameter "argsBefore" must be a list of strings or numbers, got a string',
        ),
        ({"exe": "sh", "blendfile": 1}, 'parameter "blendfile" must be a string, got a number'),
        (
            {"exe": "sh", "args": [None]},
            'parameter "args" must be a list of strings or numbers, item 0 is null',
        ),
    ],
)
async def test_parameter_errors(parameters: dict[str, Any], message: str) -> None:
    listener = RecordingListener()
    with pytest.raises(CommandError) as caught:
        await Executor(listener).run([Command("blender-render", parameters)])
    assert str(caught.value).startswith(f"blender-render: {message}")
    assert listener.lines == [], "nothing runs when a parameter is wrong"


@pytest.mark.parametrize(
    ("line", "steps", "outputs"),
    [
        ("Time: 00:01.06", 1, []),
        (" Time: 00:01.06 (Saving: 00:00.01)", 1, []),
        ("Fra:1 Mem:1M | Time:00:00.52 | Sample 1/16", 0, []),
        ("00:01.000  render | Fra: 1 | Time:00:00.52", 0, []),
        ("Saved: '/a/b.png'", 0, ["/a/b.png"]),
        ("Saved: /old/style/without/quotes.png", 0, []),
        ("01:02.345  render   | Saved: '/a/c d.png'", 0, ["/a/c d.png"]),
        ('01:02.345  render   | skipping existing frame "/a/c.png"', 1, []),
        ("01:02.345  cycles   | Time: 00:01.00", 0, []),
    ],
)
def test_output_line_parsing(line: str, steps: int, outputs: list[str]) -> None:
    listener = RecordingListener()
    BlenderOutput(listener).feed(line)
    assert (listener.steps, [str(path) for path in listener.outputs]) == (steps, outputs)


@pytest.mark.skipif(shutil.which("blender") is None, reason="Blender is not installed (no `blender` on PATH)")
async def test_real_blender_renders_a_frame(tmp_path: pathlib.Path) -> None:
    setup = (
        "import bpy; s = bpy.context.scene; s.render.engine = 'CYCLES'; s.cycles.samples = 1; "
        "s.cycles.device = 'CPU'; s.render.resolution_x = 32; s.render.resolution_y = 32"
    )
    listener = await render(
        {
            "exe": "blender",
            "argsBefore": ["--background", "--factory-startup"],
            "blendfile": "",
            "args": [
                "--python-expr",
                setup,
                "--render-output",
                str(tmp_path / "frame_####"),
                "--render-format",
                "PNG",
                "--render-frame",
                "1",
            ],
        },
        steps=1,
    )
    assert listener.steps == 1
    assert listener.outputs == [tmp_path / "frame_0001.png"]
    assert (tmp_path / "frame_0001.png").stat().st_size > 0
