"""Task log files under local storage, and their broadcast as `/tasklog` events."""

from __future__ import annotations

import datetime
import os
import pathlib

from flamenco_manager.services.events import Hub

# What `/tasks/{id}/logtail` returns: the end of the log, like Flamenco.
LOG_TAIL_BYTES = 2048


def job_dir(storage: pathlib.Path, job_uuid: str) -> pathlib.Path:
    return storage / f"job-{job_uuid[:4]}" / job_uuid


class TaskLogs:
    def __init__(self, storage: pathlib.Path, hub: Hub) -> None:
        self.storage = storage
        self.hub = hub

    def path(self, job_uuid: str, task_uuid: str) -> pathlib.Path:
        return job_dir(self.storage, job_uuid) / f"task-{task_uuid}.txt"

    def relative_url(self, job_uuid: str, task_uuid: str) -> str:
        return "/job-files/" + self.path(job_uuid, task_uuid).relative_to(self.storage).as_posix()

    def append(self, job_uuid: str, task_uuid: str, text: str) -> None:
        """Append a chunk as sent by a worker (a trailing newline is added if missing)."""
        if not text:
            return
        if not text.endswith("\n"):
            text += "\n"
        path = self.path(job_uuid, task_uuid)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, text.encode("utf-8", "replace"))
        finally:
            os.close(fd)
        self.hub.publish("/tasklog", {"task_id": task_uuid, "log": text}, job_id=job_uuid, task_id=task_uuid)

    def manager_line(self, job_uuid: str, task_uuid: str, message: str) -> None:
        """A line written by the Manager itself, prefixed with an RFC 3339 timestamp."""
        now = datetime.datetime.now(datetime.UTC).astimezone().isoformat(timespec="seconds")
        self.append(job_uuid, task_uuid, f"{now} {message}")

    def size(self, job_uuid: str, task_uuid: str) -> int:
        try:
            return self.path(job_uuid, task_uuid).stat().st_size
        except FileNotFoundError:
            return 0

    def tail(self, job_uuid: str, task_uuid: str) -> bytes:
        path = self.path(job_uuid, task_uuid)
        try:
            with path.open("rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - LOG_TAIL_BYTES))
                return f.read()
        except FileNotFoundError:
            return b""
