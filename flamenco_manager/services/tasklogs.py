"""Task log files under local storage, and their broadcast as `/tasklog` events.

Appends are handed to writer threads (a task's chunks always to the same one, so they stay in order):
creating a file costs close to a millisecond on a journaling file system, which the event loop must not
wait for, and several threads overlap those waits. Writers keep recently used files open.

Manager replicas share one storage path (`local_manager_storage_path` on every replica naming the same
directory, e.g. an NFS export), so any replica answers for any task's log:
- A worker's chunks are in the file (handed to the OS) before its request is answered (`written`), so a
  read on another replica after that answer sees them. The Manager's own lines are not waited for and reach
  the file a moment later. `sync` waits for this process's writers only.
- With `shared` set (the Manager sets it when replicas may exist), writers close their files whenever they
  run out of work and before an answer is released: an NFS client writes its cached data back at `close`,
  and another client's next `open` sees it (close-to-open consistency). Readers open files, never trust a
  cached size. A single Manager keeps files open, as that is cheaper.
- A worker that fails over mid-task makes two replicas append to one log. `O_APPEND` keeps each chunk whole
  on a local file system; NFS emulates appends (the client looks up the size, then writes there), so two
  replicas' chunks written in the same instant to one NFS file can overwrite each other. Only then.
- Before a job's directory is removed the writers close its files (`release`): an NFS client that removes a
  file it still has open renames it to `.nfs…` instead, which keeps the directory from being removed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import logging
import os
import pathlib
import queue
import threading

from flamenco_manager.services.events import Hub

log = logging.getLogger(__name__)

# What `/tasks/{id}/logtail` returns: the end of the log, like Flamenco.
LOG_TAIL_BYTES = 2048
# Log files each writer keeps open; a task's lines arrive close together, so a hundred is plenty.
OPEN_FILES = 100
# Writer threads: file creation waits on the file-system journal and two overlap much of it; more
# threads mostly add GIL hand-offs to the event loop's thread.
WRITER_THREADS = 2


def job_dir(storage: pathlib.Path, job_uuid: str) -> pathlib.Path:
    return storage / f"job-{job_uuid[:4]}" / job_uuid


class _Marker:
    """Queued after log chunks in one or more writers; resolves its future once all of them reached it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int) -> None:
        self.loop = loop
        self.fut: asyncio.Future[None] = loop.create_future()
        self._left = count

    def reached(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is already closed at shutdown
            self.loop.call_soon_threadsafe(self.one_done)

    def one_done(self, _: object = None) -> None:
        self._left -= 1
        if self._left == 0 and not self.fut.done():
            self.fut.set_result(None)


class _Release:
    """Queued to a writer: close every open file, then set `done`."""

    def __init__(self) -> None:
        self.done = threading.Event()


class _Writer(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="task-log-writer", daemon=True)
        self.queue: queue.SimpleQueue[tuple[str, bytes] | threading.Event | _Marker | _Release | None] = (
            queue.SimpleQueue()
        )
        self._open: collections.OrderedDict[str, int] = collections.OrderedDict()
        # Close files when out of work and before answers are released (see the module docstring).
        self.close_when_idle = False

    def run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                break
            if isinstance(item, _Release):
                self._close_all()
                item.done.set()
            elif isinstance(item, threading.Event):
                item.set()
            elif isinstance(item, _Marker):
                if self.close_when_idle:
                    self._close_all()
                item.reached()
            else:
                path, data = item
                try:
                    os.write(self._fd(path), data)
                except OSError as exc:
                    log.warning("cannot write task log path=%s error=%s", path, exc)
            if self.close_when_idle and self._open and self.queue.empty():
                self._close_all()
        self._close_all()

    def _close_all(self) -> None:
        for fd in self._open.values():
            try:
                os.close(fd)
            except OSError as exc:  # NFS reports a failed write-back at close
                log.warning("cannot write task log error=%s", exc)
        self._open.clear()

    def _fd(self, path: str) -> int:
        fd = self._open.get(path)
        if fd is not None:
            self._open.move_to_end(path)
            return fd
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._open[path] = fd
        while len(self._open) > OPEN_FILES:
            _, old = self._open.popitem(last=False)
            os.close(old)
        return fd


class TaskLogs:
    def __init__(self, storage: pathlib.Path, hub: Hub) -> None:
        self.storage = storage
        self._root = str(storage)
        self.hub = hub
        self._writers = [_Writer() for _ in range(WRITER_THREADS)]
        for writer in self._writers:
            writer.start()
        self._dirty: set[int] = set()
        self._marker: asyncio.Future[None] | None = None

    @property
    def shared(self) -> bool:
        """Whether other Manager replicas may read and write these files too."""
        return self._writers[0].close_when_idle

    @shared.setter
    def shared(self, value: bool) -> None:
        for writer in self._writers:
            writer.close_when_idle = value

    def path(self, job_uuid: str, task_uuid: str) -> pathlib.Path:
        return job_dir(self.storage, job_uuid) / f"task-{task_uuid}.txt"

    def relative_url(self, job_uuid: str, task_uuid: str) -> str:
        return "/job-files/" + self.path(job_uuid, task_uuid).relative_to(self.storage).as_posix()

    def append(self, job_uuid: str, task_uuid: str, text: str, *, from_worker: bool = False) -> None:
        """Append a chunk (a trailing newline is added if missing).

        A worker drops a chunk from its outbox once the Manager acknowledged it, so answers to requests
        that carried worker chunks wait for them to be written (`written`); the Manager's own lines do
        not hold answers up.
        """
        if not text:
            return
        if not text.endswith("\n"):
            text += "\n"
        # A plain string path: building pathlib paths showed up in profiles of this hot path.
        path = f"{self._root}/job-{job_uuid[:4]}/{job_uuid}/task-{task_uuid}.txt"
        shard = hash(task_uuid) % WRITER_THREADS
        self._writers[shard].queue.put((path, text.encode("utf-8", "replace")))
        if from_worker:
            self._dirty.add(shard)
        self.hub.publish("/tasklog", {"task_id": task_uuid, "log": text}, job_id=job_uuid, task_id=task_uuid)

    def manager_line(self, job_uuid: str, task_uuid: str, message: str) -> None:
        """A line written by the Manager itself, prefixed with an RFC 3339 timestamp."""
        now = datetime.datetime.now(datetime.UTC).astimezone().isoformat(timespec="seconds")
        self.append(job_uuid, task_uuid, f"{now} {message}")

    def written(self) -> asyncio.Future[None] | None:
        """A future resolved once everything appended so far is in the files (in the OS, so a killed
        process keeps it), or None when nothing is outstanding. Answers wait for it, like for commits."""
        if self._dirty:
            previous = self._marker if self._marker is not None and not self._marker.done() else None
            marker = _Marker(asyncio.get_running_loop(), len(self._dirty) + (previous is not None))
            for shard in self._dirty:
                self._writers[shard].queue.put(marker)
            if previous is not None:
                previous.add_done_callback(marker.one_done)
            self._dirty.clear()
            self._marker = marker.fut
        if self._marker is not None and not self._marker.done():
            return self._marker
        return None

    def sync(self) -> None:
        """Block until everything this process appended so far is in the files (call off the event loop)."""
        events = [threading.Event() for _ in self._writers]
        for writer, done in zip(self._writers, events, strict=True):
            writer.queue.put(done)
        for done in events:
            done.wait()

    def release(self) -> None:
        """Like `sync`, and the writers close every file they keep open: before directories are removed."""
        releases = [_Release() for _ in self._writers]
        for writer, release in zip(self._writers, releases, strict=True):
            writer.queue.put(release)
        for release in releases:
            release.done.wait()

    def size(self, job_uuid: str, task_uuid: str) -> int:
        self.sync()
        # Opened, not stat'ed: an NFS client's cached attributes may predate another replica's writes,
        # an open checks them with the server.
        try:
            fd = os.open(self.path(job_uuid, task_uuid), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return 0
        try:
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def tail(self, job_uuid: str, task_uuid: str) -> bytes:
        self.sync()
        path = self.path(job_uuid, task_uuid)
        try:
            with path.open("rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - LOG_TAIL_BYTES))
                return f.read()
        except FileNotFoundError:
            return b""

    def close(self) -> None:
        for writer in self._writers:
            writer.queue.put(None)
        for writer in self._writers:
            writer.join()
