"""frames-to-video: argument assembly, parameter errors, and a real ffmpeg run on generated frames."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
from typing import Any

import pytest

from flamenco_worker.execution import Command, CommandError, Executor
from flamenco_worker.execution.commands.ffmpeg import format_fps
from flamenco_worker.execution.params import number_argument
from tests.worker.execution_fakes import RecordingListener, write_script

needs_ffmpeg = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="ffmpeg/ffprobe are not installed (no `ffmpeg` or `ffprobe` on PATH)",
)


async def to_video(parameters: dict[str, Any]) -> RecordingListener:
    listener = RecordingListener()
    await Executor(listener).run([Command("frames-to-video", parameters)])
    return listener


async def test_argv_assembly(tmp_path: pathlib.Path) -> None:
    fake = write_script(tmp_path / "ffmpeg", '#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    listener = await to_video(
        {
            "exe": str(fake),
            "exeArgs": "-hide_banner -v 'error'",
            "argsBefore": ["-thread_queue_size", "64"],
            "fps": 29.97,
            "inputGlob": "/shared/frames/*.png",
            "args": ["-c:v", "h264", "-pix_fmt", "yuv420p"],
            "outputFile": "/shared/video/shot 1.mp4",
        }
    )
    assert listener.output() == [
        *("-hide_banner", "-v", "error"),
        *("-thread_queue_size", "64"),
        *("-r", "29.97", "-pattern_type", "glob", "-i", "/shared/frames/*.png"),
        *("-c:v", "h264", "-pix_fmt", "yuv420p"),
        *("-r", "29.97", "/shared/video/shot 1.mp4"),
    ]


async def test_numbers_in_the_arguments_are_written_as_words(tmp_path: pathlib.Path) -> None:
    """A job compiler may put a setting's number in `args` (the preview video's `-r`, fps); Flamenco's worker
    writes it as a word, so this one does too."""
    fake = write_script(tmp_path / "ffmpeg", '#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    listener = await to_video(
        {**GOOD, "exe": str(fake), "fps": 23.976, "argsBefore": [2], "args": ["-r", 23.976, "-g", 18.0, "-y"]}
    )
    assert listener.output() == [
        "2",
        *("-r", "23.976", "-pattern_type", "glob", "-i", "/f/*.png"),
        *("-r", "23.976", "-g", "18", "-y"),
        *("-r", "23.976", "/v/out.mp4"),
    ]


@pytest.mark.parametrize(
    ("number", "word"),
    [
        (24, "24"),
        (24.0, "24"),
        (23.976, "23.976"),
        (-0.5, "-0.5"),
        (120, "120"),
        (999999, "999999"),
        (1e6, "1e+06"),
        (1234567, "1.234567e+06"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
    ],
)
def test_number_arguments_read_as_flamencos_worker_writes_them(number: float, word: str) -> None:
    assert number_argument(number) == word


@pytest.mark.parametrize(("fps", "text"), [(24, "24"), (24.0, "24"), (29.97, "29.97"), (1e-7, "0.0000001")])
def test_fps_is_written_as_plain_decimal(fps: float, text: str) -> None:
    assert format_fps(float(fps)) == text


GOOD = {"exe": "ffmpeg", "fps": 24, "inputGlob": "/f/*.png", "outputFile": "/v/out.mp4"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fps": None}, 'parameter "fps" is missing'),
        ({"fps": 0}, 'parameter "fps" must not be zero'),
        ({"fps": 0.0}, 'parameter "fps" must not be zero'),
        ({"fps": "24"}, 'parameter "fps" must be a number, got a string'),
        ({"fps": float("nan")}, 'parameter "fps" must be a finite number'),
        ({"inputGlob": None}, 'parameter "inputGlob" is missing'),
        ({"outputFile": ""}, 'parameter "outputFile" must not be empty'),
        ({"exe": None}, 'parameter "exe" is missing'),
        ({"args": "-y"}, 'parameter "args" must be a list of strings or numbers, got a string'),
        (
            {"args": ["-y", True]},
            'parameter "args" must be a list of strings or numbers, item 1 is a boolean',
        ),
        (
            {"args": [float("nan")]},
            'parameter "args" must be a list of strings or numbers, item 0 is a number',
        ),
    ],
)
async def test_parameter_errors(change: dict[str, Any], message: str, tmp_path: pathlib.Path) -> None:
    fake = write_script(tmp_path / "ffmpeg", "#!/bin/sh\n")
    parameters = {**GOOD, "exe": str(fake), **change}
    with pytest.raises(CommandError) as caught:
        await to_video({name: value for name, value in parameters.items() if value is not None})
    assert str(caught.value).startswith(f"frames-to-video: {message}")
    assert caught.value.parameter == next(iter(change))


@pytest.fixture
def frames(tmp_path: pathlib.Path) -> pathlib.Path:
    """Four small PNG frames from ffmpeg's test pattern source."""
    folder = tmp_path / "frames"
    folder.mkdir()
    subprocess.run(
        [
            *("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=4"),
            *("-frames:v", "4", str(folder / "frame_%04d.png")),
        ],
        check=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
    )
    return folder


def count_frames(video: pathlib.Path) -> int:
    probe = subprocess.run(
        [
            *("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0"),
            *("-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", str(video)),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return int(probe.stdout.strip())


@needs_ffmpeg
async def test_real_ffmpeg_makes_a_video(frames: pathlib.Path, tmp_path: pathlib.Path) -> None:
    video = tmp_path / "video" / "preview.mkv"
    video.parent.mkdir()
    listener = await to_video(
        {
            "exe": "ffmpeg",
            "exeArgs": "-hide_banner",
            "fps": 24,
            "inputGlob": str(frames / "frame_*.png"),
            "args": ["-c:v", "ffv1"],
            "outputFile": str(video),
        }
    )
    assert count_frames(video) == 4
    assert listener.steps == 1
    assert listener.lines[0] == "going to run:"
    assert "-pattern_type glob -i" in listener.lines[2]


@needs_ffmpeg
async def test_real_ffmpeg_failure(tmp_path: pathlib.Path) -> None:
    listener = RecordingListener()
    parameters = {
        "exe": "ffmpeg",
        "fps": 24,
        "inputGlob": str(tmp_path / "none_*.png"),
        "outputFile": "/x.mkv",
    }
    with pytest.raises(CommandError, match=r"^frames-to-video: command exited abnormally with code \d+$"):
        await Executor(listener).run([Command("frames-to-video", parameters)])
    assert listener.output(), "ffmpeg's complaint is in the task log"
