"""The job-types registry: the built-in job types and the studio's JavaScript job types from `scripts_dir`.

Rules kept here:
- A script is every regular file (or link to one) directly in `scripts_dir` whose name ends in `.js` and
  that has at least 8 bytes, as Flamenco reads its scripts. Its job type is named after the file
  (`_` becomes `-`); a script of a built-in's name takes the built-in's place while it is there.
- Scripts are described by the engine when they appear or change (never on each request): at start, on
  `reload()` (SIGHUP), and when the watcher sees a file's name, size, mtime or inode change. The watcher
  looks after an inotify event (and every SCRIPTS_SAFETY_POLL_INTERVAL), or every second without inotify.
- A script that stops loading keeps its last good version, and the error is logged with file and line; a
  removed script's job type is gone (a built-in it replaced comes back). One bad script never keeps
  another from loading.
- Without a usable engine the built-ins still work; one line names the skipped scripts and why.
- The engine is a child process, reached asynchronously: no script runs on the event loop.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import pathlib
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from flamenco_manager import jobtypes
from flamenco_manager.dir_watch import DirectoryWatch
from flamenco_manager.jobtypes import BuiltinJobType, CompiledJob, JobCompileError
from flamenco_manager.jobtypes.javascript import (
    EngineLimits,
    EngineMissing,
    ScriptEngine,
    ScriptProblem,
    find_engine,
)
from flamenco_manager.jobtypes.script_info import (
    MIN_SCRIPT_BYTES,
    SCRIPT_SUFFIX,
    JobTypeScriptError,
    job_type_name,
    script_info,
)
from flamenco_manager.jobtypes.script_job import JobContext, JobScriptError, authored_job, job_object

log = logging.getLogger(__name__)

# How often the watcher lists scripts_dir when inotify cannot be used: an edit is live within about a
# second, and listing one small directory per second costs little next to serving a farm.
SCRIPTS_POLL_INTERVAL = 1.0
# How long the scripts must stay quiet after an inotify event before they are read: a `git pull` or a `cp`
# of many scripts writes them within milliseconds, and should cost one reload, not one per file.
SCRIPTS_SETTLE = 0.1
# A stream of changes postpones the reload at most this long: an edit stays live within about a second.
SCRIPTS_SETTLE_MAX = 0.5
# Even with inotify, the directory is listed this often: a script that is a link to a file elsewhere, or a
# directory on a network file system changed by another machine, changes without an event. Rare enough for
# an idle Manager to sleep between looks.
SCRIPTS_SAFETY_POLL_INTERVAL = 30.0
# Scripts larger than this are refused: a job type is a few kilobytes; megabytes are a mistake (or data).
MAX_SCRIPT_BYTES = 4 * 1024 * 1024


class FileStamp(NamedTuple):
    """What the watcher compares to notice a changed script (an editor's save, a `cp`, a `git pull`)."""

    size: int
    mtime_ns: int
    inode: int


@dataclass(frozen=True)
class ScriptJobType:
    info: dict[str, Any]  # AvailableJobType JSON, etag included
    filename: str
    source: str

    @property
    def name(self) -> str:
        return str(self.info["name"])


JobType = BuiltinJobType | ScriptJobType


@dataclass(frozen=True)
class Compiled:
    """A compiled submission: its tasks and what to store, under the name and priority it ends up with."""

    job: CompiledJob
    name: str
    priority: int


@dataclass(frozen=True)
class ScriptState:
    """One script of the directory as the registry sees it (for `-check-scripts`)."""

    filename: str
    script: ScriptJobType | None  # its last good version, if any
    problem: str | None  # why its current version is not in use


def scan(directory: pathlib.Path) -> dict[str, FileStamp] | None:
    """The scripts in `directory` by file name; None when the directory does not exist.

    OSError when it cannot be read (permissions, a failing network file system).
    """
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return None
    found: dict[str, FileStamp] = {}
    for entry in entries:
        if not entry.name.endswith(SCRIPT_SUFFIX):
            continue
        try:
            info = entry.stat()  # follows a link: a link to a regular file counts
        except OSError:
            continue  # a dangling link, such as an editor's lock file
        if stat.S_ISREG(info.st_mode) and info.st_size >= MIN_SCRIPT_BYTES:
            found[entry.name] = FileStamp(info.st_size, info.st_mtime_ns, info.st_ino)
    return found


def _read(path: pathlib.Path) -> str:
    """The script's text; JobTypeScriptError when it cannot be read as UTF-8 text of a sane size."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_SCRIPT_BYTES + 1)
    except OSError as exc:
        raise JobTypeScriptError(path.name, f"cannot read it: {exc.strerror or exc}") from None
    if len(raw) > MAX_SCRIPT_BYTES:
        raise JobTypeScriptError(path.name, f"larger than {MAX_SCRIPT_BYTES // (1024 * 1024)} MiB")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise JobTypeScriptError(f"{path.name}:{line}", "not valid UTF-8 text") from None


class JobTypes:
    """Every job type a submitter can use, by name; compiles submissions of any of them."""

    def __init__(
        self,
        scripts_dir: pathlib.Path | None,
        *,
        engine: str = "",
        limits: EngineLimits | None = None,
    ) -> None:
        self.scripts_dir = scripts_dir
        self.configured_engine = engine
        self.limits = limits or EngineLimits()
        #: Why scripts are skipped for want of an engine; None while there is one (or no script needs it).
        self.engine_problem: str | None = None
        self._builtins = jobtypes.builtin_job_types()
        self._types: dict[str, JobType] = dict(self._builtins)
        self._scripts: dict[str, ScriptJobType] = {}  # last good version, by file name
        self._problems: dict[str, str] = {}  # why a file's current version is not in use
        self._shadowed: dict[str, str] = {}  # file name -> the file whose job type of the same name wins
        self._seen: dict[str, FileStamp] = {}
        self._engine: ScriptEngine | None = None
        self._lock = asyncio.Lock()
        self._dir_problem: str | None = None  # what was last logged about the directory
        self._missing_logged: tuple[str, tuple[str, ...]] | None = None

    # Reading the registry.

    def available(self) -> list[dict[str, Any]]:
        """Every job type as AvailableJobType JSON, sorted by name."""
        return [copy.deepcopy(self._types[name].info) for name in sorted(self._types)]

    def get(self, name: str) -> dict[str, Any] | None:
        job_type = self._types.get(name)
        return copy.deepcopy(job_type.info) if job_type is not None else None

    def require(self, name: object) -> JobType:
        """The job type; JobCompileError on `type`, listing the known ones, if there is none of that name."""
        job_type = self._types.get(name) if isinstance(name, str) else None
        if job_type is None:
            known = ", ".join(sorted(self._types))
            raise JobCompileError("type", f"unknown job type {name!r}; known types: {known}")
        return job_type

    def states(self) -> list[ScriptState]:
        """Every script seen in the directory, by file name."""
        return [
            ScriptState(name, self._scripts.get(name), self._problems.get(name) or self._shadow_note(name))
            for name in sorted(self._seen)
        ]

    def _shadow_note(self, filename: str) -> str | None:
        winner = self._shadowed.get(filename)
        return (
            f"{filename}: ignored, {winner} defines the job type {job_type_name(filename)!r}"
            if winner
            else None
        )

    # Loading.

    async def start(self) -> None:
        await self.reload(force=True)

    async def reload(self, *, force: bool = False) -> bool:
        """Load new and changed scripts (every script when `force`), drop removed ones; True on changes."""
        if self.scripts_dir is None:
            return False
        async with self._lock:
            if force:
                self._missing_logged = None  # an asked-for reload says again what it still cannot do
            try:
                listing = await asyncio.to_thread(scan, self.scripts_dir)
            except OSError as exc:
                # Nothing is dropped for a directory that cannot be read now; the next look may succeed.
                self._note_directory(f"cannot be read ({exc.strerror or exc})", logging.ERROR)
                return False
            self._note_directory("does not exist" if listing is None else "", logging.INFO)
            listing = listing or {}
            removed = sorted(set(self._seen) - set(listing))
            stale = sorted(name for name, found in listing.items() if force or self._seen.get(name) != found)
            for filename in removed:
                del self._seen[filename]
                self._problems.pop(filename, None)
                if self._scripts.pop(filename, None) is not None:
                    log.info("job type script removed script=%s", filename)
            if stale:
                engine = await self._ensure_engine(sorted(listing))
                for filename in stale:
                    self._seen[filename] = listing[filename]
                    if engine is not None:
                        await self._load(engine, filename)
            if removed or stale:
                self._rebuild()
            return bool(removed or stale)

    async def watch(self) -> None:
        """Reload whenever a script changes; runs until cancelled.

        inotify tells when the directory changes, so an idle Manager does not wake up for it; without
        inotify (or past its limits) the directory is listed every SCRIPTS_POLL_INTERVAL instead.
        """
        if self.scripts_dir is None:
            return
        try:
            watch = DirectoryWatch(self.scripts_dir)
        except OSError as exc:
            self._log_polling(exc)
        else:
            try:
                await self._watch_events(watch)
            except OSError as exc:
                self._log_polling(exc)
            finally:
                watch.close()
        while True:
            await asyncio.sleep(SCRIPTS_POLL_INTERVAL)
            await self._reload_logged()

    async def _watch_events(self, watch: DirectoryWatch) -> None:
        """Reload after each settled burst of events, and every SCRIPTS_SAFETY_POLL_INTERVAL; OSError when
        inotify fails."""
        await self._reload_logged()  # what changed between start() and the watch's beginning
        loop = asyncio.get_running_loop()
        while True:
            try:
                async with asyncio.timeout(SCRIPTS_SAFETY_POLL_INTERVAL):
                    await watch.changed()
            except TimeoutError:
                watch.rearm()  # a parent renamed or replaced meanwhile sends no event to the watch
            else:
                settle_until = loop.time() + SCRIPTS_SETTLE_MAX
                while (left := settle_until - loop.time()) > 0:
                    try:
                        async with asyncio.timeout(min(SCRIPTS_SETTLE, left)):
                            await watch.changed()
                    except TimeoutError:
                        break
            await self._reload_logged()

    async def _reload_logged(self) -> None:
        try:
            await self.reload()
        except Exception:
            log.exception("checking the job type scripts failed dir=%s", self.scripts_dir)

    def _log_polling(self, exc: OSError) -> None:
        log.warning(
            "cannot watch the job type scripts with inotify, listing them every %g s instead "
            "(see fs.inotify.max_user_watches and max_user_instances) dir=%s error=%s",
            SCRIPTS_POLL_INTERVAL,
            self.scripts_dir,
            exc.strerror or exc,
        )

    def _note_directory(self, problem: str, level: int) -> None:
        """Log what is wrong with the directory (empty: nothing) once, when it changes."""
        if problem == self._dir_problem:
            return
        if problem:
            log.log(level, "no job type scripts: the directory %s dir=%s", problem, self.scripts_dir)
        elif self._dir_problem is not None:
            log.info("job type scripts directory is back dir=%s", self.scripts_dir)
        self._dir_problem = problem

    async def _ensure_engine(self, scripts: list[str]) -> ScriptEngine | None:
        if self._engine is not None:
            return self._engine
        try:
            executable = await asyncio.to_thread(find_engine, self.configured_engine or None)
            engine = ScriptEngine(executable, self.limits)
            await engine.start()
        except (EngineMissing, OSError) as exc:
            self.engine_problem = str(exc)
            logged = (self.engine_problem, tuple(scripts))
            if logged != self._missing_logged:
                log.error(
                    "JavaScript job types skipped, no usable JavaScript engine (%s) scripts=%s",
                    self.engine_problem,
                    ",".join(scripts),
                )
                self._missing_logged = logged
            return None
        self._engine, self.engine_problem, self._missing_logged = engine, None, None
        log.info("JavaScript engine started engine=%s version=%s", executable, engine.version)
        return engine

    async def _load(self, engine: ScriptEngine, filename: str) -> None:
        assert self.scripts_dir is not None
        try:
            source = await asyncio.to_thread(_read, self.scripts_dir / filename)
            loaded = script_info(filename, await engine.describe(filename, source))
        except (ScriptProblem, JobTypeScriptError) as exc:
            self._problems[filename] = str(exc)
            kept = self._scripts.get(filename)
            log.error(
                "job type script not loaded%s script=%s error=%s",
                ", its previous version stays in use" if kept else "",
                filename,
                exc,
            )
            return
        if loaded.dropped:
            log.warning(
                "job type script declares keys Flamenco does not know; they are ignored script=%s keys=%s",
                filename,
                ",".join(loaded.dropped),
            )
        previous = self._scripts.get(filename)
        self._scripts[filename] = ScriptJobType(info=loaded.info, filename=filename, source=source)
        self._problems.pop(filename, None)
        if previous is None or previous.info != loaded.info or previous.source != source:
            log.info(
                "job type %s name=%s script=%s settings=%d etag=%s",
                "reloaded" if previous else "loaded",
                loaded.info["name"],
                filename,
                len(loaded.info["settings"]),
                loaded.info["etag"],
            )

    def _rebuild(self) -> None:
        types: dict[str, JobType] = dict(self._builtins)
        owners: dict[str, str] = {}
        self._shadowed = {}
        for filename in sorted(self._scripts):
            script = self._scripts[filename]
            if script.name in owners:
                self._shadowed[filename] = owners[script.name]
                log.warning(
                    "two scripts define one job type, the first one is used name=%s used=%s ignored=%s",
                    script.name,
                    owners[script.name],
                    filename,
                )
                continue
            owners[script.name] = filename
            if script.name in self._builtins:
                log.info("job type script replaces the built-in name=%s script=%s", script.name, filename)
            types[script.name] = script
        self._types = types

    # Compiling.

    async def compile(self, job_type: JobType, submitted: Mapping[str, Any], context: JobContext) -> Compiled:
        """The submission compiled by its job type; JobCompileError (or a subclass) when it cannot be.

        `submitted` has the SubmittedJob's `settings` and `metadata` after variable replacement.
        """
        if isinstance(job_type, BuiltinJobType):
            compiled = await asyncio.to_thread(
                jobtypes.compile_builtin, job_type, submitted, created=context.created
            )
            return Compiled(compiled, context.name, context.priority)
        raw_settings = jobtypes.check_settings_object(submitted.get("settings"))
        metadata = jobtypes.check_metadata(submitted.get("metadata") or {})
        definitions = job_type.info["settings"]
        settings = jobtypes.check_settings(definitions, raw_settings)
        engine = self._engine
        if engine is None:
            raise JobScriptError(f"{job_type.filename}: no JavaScript engine to run it")
        try:
            authored = await engine.compile(
                job_type.filename, job_type.source, job_object(context, settings, metadata)
            )
        except ScriptProblem as problem:
            _log_output(job_type, problem.output)
            log.warning(
                "job script refused the job job_type=%s script=%s error=%s",
                job_type.name,
                job_type.filename,
                problem,
            )
            raise JobScriptError(str(problem)) from None
        if isinstance(authored, Mapping):
            _log_output(job_type, authored.get("output") or ())
        result = await asyncio.to_thread(
            authored_job,
            authored,
            filename=job_type.filename,
            context=context,
            definitions=definitions,
            submitted_settings=raw_settings,
        )
        return Compiled(result.compiled, result.name, result.priority)

    async def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            await engine.close()


def _log_output(job_type: ScriptJobType, output: Iterable[Any]) -> None:
    """What the script printed (info) or alerted (warning), one log line each."""
    for item in output:
        level = getattr(item, "level", None) or (item.get("level") if isinstance(item, Mapping) else None)
        text = getattr(item, "text", None) or (item.get("text") if isinstance(item, Mapping) else "")
        log.log(
            logging.WARNING if level == "warning" else logging.INFO,
            "job script %s job_type=%s script=%s: %s",
            "alert" if level == "warning" else "print",
            job_type.name,
            job_type.filename,
            text,
        )
