"""The file-management commands: make-directory, move-directory and copy-file."""

from __future__ import annotations

import asyncio
import datetime
import os
import pathlib
from typing import Any

import pytest

from flamenco_worker.execution import Command, Executor
from flamenco_worker.execution.commands import files
from tests.worker.execution_fakes import RecordingListener, fails, run


def stamp_of(path: pathlib.Path, when: datetime.datetime) -> None:
    os.utime(path, (when.timestamp(), when.timestamp()))


async def test_make_directory_with_parents(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "a" / "b" / "c"
    listener = await run("make-directory", {"path": str(target)})
    assert target.is_dir()
    assert listener.lines == [f"make-directory: directory {str(target)!r} exists"]
    await run("make-directory", {"path": str(target)})  # existing directory: fine


async def test_make_directory_mode_is_0775_before_umask(tmp_path: pathlib.Path) -> None:
    old = os.umask(0)
    try:
        await run("make-directory", {"path": str(tmp_path / "open")})
    finally:
        os.umask(old)
    assert (tmp_path / "open").stat().st_mode & 0o777 == 0o775


async def test_make_directory_errors(tmp_path: pathlib.Path) -> None:
    (tmp_path / "file").write_text("x")
    error = await fails("make-directory", {"path": str(tmp_path / "file")})
    assert str(error).startswith(f"make-directory: cannot create directory {str(tmp_path / 'file')!r}: ")
    assert str(await fails("make-directory", {})) == 'make-directory: parameter "path" is missing'


async def test_move_directory_to_a_new_place(tmp_path: pathlib.Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "frame.png").write_text("png")
    await run("move-directory", {"src": str(tmp_path / "src"), "dest": str(tmp_path / "dest")})
    assert (tmp_path / "dest" / "frame.png").read_text() == "png"
    assert not (tmp_path / "src").exists()


async def test_move_directory_renames_existing_dest_aside_with_its_mtime(tmp_path: pathlib.Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    (src / "new").write_text("new")
    dest.mkdir()
    (dest / "old").write_text("old")
    stamp_of(dest, datetime.datetime(2024, 3, 5, 7, 8, 9))
    listener = await run("move-directory", {"src": str(src), "dest": str(dest)})
    aside = tmp_path / "dest-2024-03-05_070809"
    assert (aside / "old").read_text() == "old"
    assert (dest / "new").read_text() == "new"
    assert listener.lines[0] == f"move-directory: existing {str(dest)!r} renamed to {str(aside)!r}"


async def test_move_directory_aside_name_made_unique(tmp_path: pathlib.Path) -> None:
    when = datetime.datetime(2023, 12, 31, 23, 59, 58)
    (tmp_path / "dest-2023-12-31_235958").mkdir()
    (tmp_path / "dest-2023-12-31_235958-001").mkdir()
    for name in ("src", "dest"):
        (tmp_path / name).mkdir()
    stamp_of(tmp_path / "dest", when)
    await run("move-directory", {"src": str(tmp_path / "src"), "dest": str(tmp_path / "dest") + "/"})
    assert (tmp_path / "dest-2023-12-31_235958-002").is_dir()
    assert (tmp_path / "dest").is_dir()


async def test_move_directory_errors(tmp_path: pathlib.Path) -> None:
    error = await fails("move-directory", {"src": str(tmp_path / "nope"), "dest": str(tmp_path / "d")})
    assert (
        str(error)
        == f'move-directory: parameter "src" names {str(tmp_path / "nope")!r}, which does not exist'
    )
    assert error.parameter == "src"
    (tmp_path / "src").mkdir()
    error = await fails("move-directory", {"src": str(tmp_path / "src")})
    assert str(error) == 'move-directory: parameter "dest" is missing'
    error = await fails(
        "move-directory", {"src": str(tmp_path / "src"), "dest": str(tmp_path / "x" / "y" / "z")}
    )
    assert str(error).startswith("move-directory: cannot move ")


async def test_copy_file_creates_parents(tmp_path: pathlib.Path) -> None:
    src = tmp_path / "in.bin"
    data = os.urandom(3 * files.COPY_CHUNK_BYTES + 17)
    src.write_bytes(data)
    dest = tmp_path / "deep" / "er" / "out.bin"
    listener = await run("copy-file", {"src": str(src), "dest": str(dest)})
    assert dest.read_bytes() == data
    assert listener.lines == [f"copy-file: copied {str(src)!r} to {str(dest)!r} ({len(data)} bytes)"]


async def test_copy_file_refuses_an_existing_destination(tmp_path: pathlib.Path) -> None:
    (tmp_path / "in").write_text("new")
    (tmp_path / "out").write_text("precious")
    error = await fails("copy-file", {"src": str(tmp_path / "in"), "dest": str(tmp_path / "out")})
    assert "refusing to overwrite it" in str(error)
    assert error.parameter == "dest"
    assert (tmp_path / "out").read_text() == "precious"


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        (
            {"src": "relative/in", "dest": "/tmp/x"},
            "parameter \"src\" must be an absolute path, got 'relative/in'",
        ),
        ({"src": "/etc/hostname", "dest": "out"}, "parameter \"dest\" must be an absolute path, got 'out'"),
        (
            {"src": "/", "dest": "/tmp/never-made"},
            "parameter \"src\" names '/', which is not an existing regular file",
        ),
        ({"dest": "/tmp/x"}, 'parameter "src" is missing'),
    ],
)
async def test_copy_file_parameter_errors(parameters: dict[str, Any], message: str) -> None:
    assert str(await fails("copy-file", parameters)) == f"copy-file: {message}"


async def test_copy_file_abort_removes_the_partial_copy(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "COPY_CHUNK_BYTES", 1)
    src = tmp_path / "in"
    src.write_bytes(b"x" * 20_000_000)  # byte by byte this takes many seconds: cancelled long before the end
    dest = tmp_path / "out"
    copying = asyncio.create_task(
        Executor(RecordingListener()).run([Command("copy-file", {"src": str(src), "dest": str(dest)})])
    )
    for _ in range(1000):
        if dest.exists():
            break
        await asyncio.sleep(0.005)
    assert dest.exists(), "the copy should be under way"
    copying.cancel()
    with pytest.raises(asyncio.CancelledError):
        await copying
    assert not dest.exists()
