"""The `file-management` task type: make-directory, move-directory and copy-file.

Filesystem work runs in a thread: shared storage can be slow, and the event loop must keep answering.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import pathlib
import threading

from flamenco_worker.execution.context import CommandContext
from flamenco_worker.execution.model import CommandError

log = logging.getLogger(__name__)

#: Mode of directories made by make-directory (before the umask), as Flamenco's worker makes them.
MAKE_DIRECTORY_MODE = 0o775
#: Mode of parent directories copy-file creates (before the umask), as Flamenco's worker makes them.
COPY_PARENT_MODE = 0o750
#: Copy chunk size: large enough for fast copies, small enough that an abort stops a copy quickly.
COPY_CHUNK_BYTES = 1024 * 1024
#: How many "-NNN" suffixes move-directory tries when a renamed-aside name is taken already.
MAX_ASIDE_SUFFIX = 999


async def make_directory(ctx: CommandContext) -> None:
    path = ctx.params.string("path")
    try:
        await asyncio.to_thread(os.makedirs, path, MAKE_DIRECTORY_MODE, True)
    except OSError as err:
        raise _fs_error(ctx, f"cannot create directory {path!r}", err) from err
    ctx.log(f"{ctx.name}: directory {path!r} exists")


async def move_directory(ctx: CommandContext) -> None:
    """Rename `src` to `dest`; an existing `dest` is first renamed aside, stamped with its mtime."""
    params = ctx.params
    src = pathlib.Path(params.string("src"))
    dest = pathlib.Path(params.string("dest"))
    if not await asyncio.to_thread(os.path.lexists, src):
        raise params.error("src", f"names {str(src)!r}, which does not exist")
    try:
        aside = await asyncio.to_thread(_move_aside, dest)
        if aside is not None:
            ctx.log(f"{ctx.name}: existing {str(dest)!r} renamed to {str(aside)!r}")
        await asyncio.to_thread(os.rename, src, dest)
    except OSError as err:
        raise _fs_error(ctx, f"cannot move {str(src)!r} to {str(dest)!r}", err) from err
    ctx.log(f"{ctx.name}: moved {str(src)!r} to {str(dest)!r}")


def _move_aside(path: pathlib.Path) -> pathlib.Path | None:
    """Rename an existing `path` to `path-YYYY-MM-DD_HHMMSS` (its mtime, local time), made unique."""
    try:
        mtime = path.lstat().st_mtime
    except FileNotFoundError:
        return None
    stamp = datetime.datetime.fromtimestamp(mtime).strftime("%Y-%m-%d_%H%M%S")
    base = f"{path}-{stamp}"
    for candidate in (base, *(f"{base}-{n:03d}" for n in range(1, MAX_ASIDE_SUFFIX + 1))):
        aside = pathlib.Path(candidate)
        if not os.path.lexists(aside):
            os.rename(path, aside)
            return aside
    raise FileExistsError(
        f"no free name left beside {str(path)!r} (tried {base}-001 … -{MAX_ASIDE_SUFFIX:03d})"
    )


async def copy_file(ctx: CommandContext) -> None:
    """Copy the bytes of an existing regular file `src` to a new file `dest`, making its parents."""
    params = ctx.params
    src = params.absolute_path("src")
    dest = params.absolute_path("dest")
    if not await asyncio.to_thread(os.path.isfile, src):
        raise params.error("src", f"names {src!r}, which is not an existing regular file")
    if await asyncio.to_thread(os.path.lexists, dest):
        raise params.error("dest", f"names {dest!r}, which exists already; refusing to overwrite it")
    stop = threading.Event()
    copying = asyncio.ensure_future(asyncio.to_thread(_copy_bytes, src, dest, stop))
    try:
        size = await asyncio.shield(copying)
    except asyncio.CancelledError:
        stop.set()
        # Let the thread notice and remove its partial file before the abort goes on.
        await asyncio.wait({copying})
        if not copying.cancelled():
            copying.exception()  # retrieved: the thread's "stopped" is the expected outcome here
        raise
    except OSError as err:
        raise _fs_error(ctx, f"cannot copy {src!r} to {dest!r}", err) from err
    ctx.log(f"{ctx.name}: copied {src!r} to {dest!r} ({size} bytes)")


class _CopyStopped(Exception):
    """The copy was asked to stop part-way."""


def _copy_bytes(src: str, dest: str, stop: threading.Event) -> int:
    os.makedirs(os.path.dirname(dest), COPY_PARENT_MODE, exist_ok=True)
    copied = 0
    # "xb": never replace a file that appeared since the check above.
    with open(src, "rb") as reader, open(dest, "xb") as writer:
        try:
            while chunk := reader.read(COPY_CHUNK_BYTES):
                if stop.is_set():
                    raise _CopyStopped
                writer.write(chunk)
                copied += len(chunk)
        except BaseException:
            writer.close()
            os.unlink(dest)
            raise
    return copied


def _fs_error(ctx: CommandContext, what: str, err: OSError) -> CommandError:
    log.info("command=%s failed: %s: %s", ctx.name, what, err)
    return CommandError(f"{ctx.name}: {what}: {err.strerror or err}", command=ctx.name)
