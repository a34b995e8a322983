"""Waiting for a directory to change, with Linux inotify through libc (no extra dependency).

`DirectoryWatch(path)` watches `path` for anything that may change its listing or its files: a file
created, written, closed after writing, removed, renamed in or out, or its attributes changed, and the
directory itself being removed or renamed. While `path` does not exist (or is not a directory), the nearest
existing parent is watched for the next step towards it, and the watch moves down once it appears; when
the directory goes away, the watch moves back up.

Limits (the caller keeps a slow safety poll for them):
- a script that is a symbolic link to a file elsewhere: a change of the link's target is not seen;
- a network file system changed by another machine: inotify sees only changes made through this kernel;
- a parent of the directory renamed or replaced: the watch stays on the moved directory until `rearm()`.

OSError (ENOSYS, EMFILE for fs.inotify.max_user_instances, ENOSPC for fs.inotify.max_user_watches, EPERM
from a system call filter) when inotify cannot be used, at creation or from `changed()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import logging
import os
import pathlib
import struct

log = logging.getLogger(__name__)

# Event bits of <sys/inotify.h>.
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
# inotify_init1's flags are the open(2) flags of the same name.
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

#: What is watched on the directory itself.
DIRECTORY_EVENTS = (
    IN_CREATE
    | IN_DELETE
    | IN_MODIFY
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_ATTRIB
    | IN_DELETE_SELF
    | IN_MOVE_SELF
)
#: What is watched on a parent while the directory is missing: a name appearing, and the parent going.
PARENT_EVENTS = IN_CREATE | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF
#: The watched directory itself is gone (removed, renamed, unmounted): watch the path again.
GONE = IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_UNMOUNT

_EVENT_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len; then `len` bytes of NUL-padded name
# One read takes every queued event in one go: 64 KiB hold over 2,000 of them.
_READ_SIZE = 64 * 1024


def _load_libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)  # the process's own symbols, libc's among them
    except OSError:
        return None


_libc = _load_libc()


def _call(name: str, *args: object) -> int:
    """libc's `name(*args)`; OSError with the call's errno when it fails or libc lacks it."""
    function = getattr(_libc, name, None) if _libc is not None else None
    if function is None:
        raise OSError(errno.ENOSYS, f"{name} is not available in this C library")
    result = int(function(*args))
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{name}: {os.strerror(code)}")
    return result


class DirectoryWatch:
    """Waits for changes under one directory (see the module's description); create it on the event loop."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = pathlib.Path(os.path.abspath(path))
        self._loop = asyncio.get_running_loop()
        self._fd = _call("inotify_init1", IN_NONBLOCK | IN_CLOEXEC)
        self._wd: int | None = None
        #: The directory watched now: `path` itself, or its nearest existing parent.
        self.watching: pathlib.Path = self.path
        self._changed = asyncio.Event()
        self._error: OSError | None = None
        try:
            self._arm()
        except OSError:
            os.close(self._fd)
            raise
        self._loop.add_reader(self._fd, self._readable)

    @property
    def on_target(self) -> bool:
        """True while the directory itself is watched (it exists)."""
        return self.watching == self.path

    async def changed(self) -> None:
        """Return when something under the directory may have changed since the last return."""
        if self._error is not None:
            raise self._error
        await self._changed.wait()
        self._changed.clear()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        if self._fd < 0:
            return
        self._loop.remove_reader(self._fd)
        os.close(self._fd)  # drops every watch of the instance
        self._fd = -1

    def rearm(self) -> None:
        """Watch `path` (or its nearest existing parent) again, as it resolves now; OSError on failure."""
        self._arm()

    def _arm(self) -> None:
        """Watch `path`, or while it is missing its nearest existing parent."""
        if self._wd is not None:
            # OSError: the kernel dropped it already (the directory was removed).
            with contextlib.suppress(OSError):
                _call("inotify_rm_watch", self._fd, self._wd)
            self._wd = None
        candidate = self.path
        while True:
            mask = DIRECTORY_EVENTS if candidate == self.path else PARENT_EVENTS
            try:
                self._wd = _call("inotify_add_watch", self._fd, os.fsencode(candidate), mask | IN_ONLYDIR)
            except OSError as exc:
                # Missing or not a directory: one step up. Unreadable counts as missing for the target
                # (its parent sees it reappear); anything else (limits, a filter) is for the caller.
                stepping = exc.errno in (errno.ENOENT, errno.ENOTDIR) or (
                    exc.errno == errno.EACCES and candidate == self.path
                )
                if not stepping or candidate.parent == candidate:
                    raise
                candidate = candidate.parent
                continue
            if candidate != self.watching:
                log.debug("watching directory dir=%s for=%s", candidate, self.path)
            self.watching = candidate
            return

    def _next_step(self) -> bytes:
        """The name, in the watched parent, on the way down to `path`."""
        return os.fsencode(self.path.relative_to(self.watching).parts[0])

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            self._fail(exc)
            return
        signal, rearm = False, False
        offset = 0
        while offset + _EVENT_HEADER.size <= len(data):
            wd, mask, _cookie, length = _EVENT_HEADER.unpack_from(data, offset)
            name = data[offset + _EVENT_HEADER.size : offset + _EVENT_HEADER.size + length].rstrip(b"\0")
            offset += _EVENT_HEADER.size + length
            if mask & IN_Q_OVERFLOW:
                signal = rearm = True  # events were lost: look again at everything
            elif wd != self._wd:
                continue  # a watch dropped earlier (its IN_IGNORED)
            elif mask & GONE:
                signal = rearm = True
            elif self.on_target:
                signal = True
            elif name == self._next_step():
                rearm = True  # the next step towards the directory appeared
        if rearm:
            try:
                self._arm()
            except OSError as exc:
                self._fail(exc)
                return
            # Reaching the directory changes what is in it, as far as its reader knows.
            signal = signal or self.on_target
        if signal:
            self._changed.set()

    def _fail(self, exc: OSError) -> None:
        log.debug("directory watch failed dir=%s error=%s", self.path, exc)
        self._error = exc
        self._changed.set()
