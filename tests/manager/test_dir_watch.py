"""The scripts directory watched with real inotify on temporary directories: what wakes the watch, a
directory missing, removed or renamed, one reload for many files, no wake-up while nothing changes, and
the one-second listing when inotify cannot be used."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import logging
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from flamenco_manager import dir_watch
from flamenco_manager.dir_watch import DirectoryWatch
from flamenco_manager.services import job_types as job_types_module
from flamenco_manager.services.job_types import SCRIPTS_SETTLE_MAX, JobTypes

# Wait for an event that is due at once: generous against a loaded test machine.
EVENT_TIMEOUT = 5.0
# How long a watch must stay silent to count as not woken: events arrive within milliseconds.
QUIET = 0.3
# The idle window: an idle watcher polling every second would reload three times in it.
IDLE_WINDOW = 3.0
SCRIPT = "const JOB_TYPE = {label: 'x'};\n"


def write_script(directory: Path, name: str, text: str = SCRIPT) -> Path:
    """Written whole under a temporary name and renamed into place, as an editor or `git pull` does."""
    part = directory / f".{name}.part"
    part.write_text(text)
    return part.rename(directory / name)


async def woken(watch: DirectoryWatch) -> None:
    await asyncio.wait_for(watch.changed(), EVENT_TIMEOUT)


async def quiet(watch: DirectoryWatch) -> bool:
    """True when the watch does not wake within QUIET."""
    try:
        await asyncio.wait_for(watch.changed(), QUIET)
    except TimeoutError:
        return True
    return False


async def drain(watch: DirectoryWatch) -> None:
    """Take every event of the last change, so the next wait sees only what comes next."""
    while not await quiet(watch):
        pass


@pytest.fixture
async def watches() -> AsyncIterator[Callable[[Path], DirectoryWatch]]:
    made: list[DirectoryWatch] = []

    def make(path: Path) -> DirectoryWatch:
        made.append(DirectoryWatch(path))
        return made[-1]

    yield make
    for watch in made:
        watch.close()


def _create(d: Path) -> None:
    write_script(d, "new.js")


def _modify(d: Path) -> None:
    with (d / "a.js").open("a") as file:
        file.write("// more\n")


def _delete(d: Path) -> None:
    (d / "a.js").unlink()


def _rename_over(d: Path) -> None:
    write_script(d, "a.js", SCRIPT + "// saved\n")


def _rename_away(d: Path) -> None:
    (d / "a.js").rename(d / "a.js.bak")


def _chmod(d: Path) -> None:
    (d / "a.js").chmod(0o600)


def _cp(d: Path) -> None:
    shutil.copy(d / "a.js", d / "b.js")


@pytest.mark.parametrize(
    "change", [_create, _modify, _delete, _rename_over, _rename_away, _chmod, _cp], ids=lambda f: f.__name__
)
async def test_a_change_of_a_script_wakes_the_watch(
    tmp_path: Path, watches: Callable[[Path], DirectoryWatch], change: Callable[[Path], None]
) -> None:
    write_script(tmp_path, "a.js")
    watch = watches(tmp_path)
    assert await quiet(watch)
    change(tmp_path)
    await woken(watch)


async def test_reading_the_scripts_does_not_wake_the_watch(
    tmp_path: Path, watches: Callable[[Path], DirectoryWatch]
) -> None:
    write_script(tmp_path, "a.js")
    watch = watches(tmp_path)
    assert (tmp_path / "a.js").read_text() == SCRIPT
    assert list(os.scandir(tmp_path))
    assert await quiet(watch)


async def test_a_missing_directory_is_watched_from_its_parent_until_it_appears(
    tmp_path: Path, watches: Callable[[Path], DirectoryWatch]
) -> None:
    scripts = tmp_path / "etc" / "flamenco" / "scripts"
    watch = watches(scripts)
    assert watch.watching == tmp_path and not watch.on_target
    (tmp_path / "unrelated").mkdir()
    assert await quiet(watch)
    (tmp_path / "etc").mkdir()
    assert await quiet(watch)  # one step closer, nothing to read yet
    assert watch.watching == tmp_path / "etc"
    (tmp_path / "etc" / "flamenco").mkdir()
    (tmp_path / "etc" / "flamenco" / "scripts").mkdir()
    await woken(watch)
    assert watch.watching == scripts
    await drain(watch)
    write_script(scripts, "a.js")
    await woken(watch)


async def test_a_directory_moved_into_place_is_picked_up(
    tmp_path: Path, watches: Callable[[Path], DirectoryWatch]
) -> None:
    watch = watches(tmp_path / "scripts")
    staged = tmp_path / "staged"
    staged.mkdir()
    write_script(staged, "a.js")
    assert await quiet(watch)
    staged.rename(tmp_path / "scripts")
    await woken(watch)
    assert watch.on_target


async def test_a_removed_directory_is_watched_again_once_recreated(
    tmp_path: Path, watches: Callable[[Path], DirectoryWatch]
) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    write_script(scripts, "a.js")
    watch = watches(scripts)
    shutil.rmtree(scripts)
    await woken(watch)
    await drain(watch)
    assert watch.watching == tmp_path
    scripts.mkdir()
    await woken(watch)
    assert watch.on_target
    await drain(watch)
    write_script(scripts, "b.js")
    await woken(watch)


async def test_a_renamed_directory_is_left_and_its_successor_watched(
    tmp_path: Path, watches: Callable[[Path], DirectoryWatch]
) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    watch = watches(scripts)
    scripts.rename(tmp_path / "old")
    await woken(watch)
    await drain(watch)
    assert watch.watching == tmp_path
    write_script(tmp_path / "old", "a.js")  # the old directory is no longer of interest
    assert await quiet(watch)
    scripts.mkdir()
    await woken(watch)
    await drain(watch)
    write_script(scripts, "a.js")
    await woken(watch)


async def test_rearm_follows_a_renamed_parent(
    tmp_path: Path, watches: Callable[[Path], DirectoryWatch]
) -> None:
    scripts = tmp_path / "etc" / "scripts"
    scripts.mkdir(parents=True)
    watch = watches(scripts)
    (tmp_path / "etc").rename(tmp_path / "etc.old")  # no event reaches the watch of `scripts`
    watch.rearm()
    assert watch.watching == tmp_path
    scripts.mkdir(parents=True)
    await woken(watch)
    assert watch.on_target


class FailingLibc:
    """libc as a kernel without inotify (or past its limits, or behind a system call filter) answers."""

    def __init__(self, failing: str, code: int) -> None:
        self.failing, self.code = failing, code
        self.real = dir_watch._libc

    def __getattr__(self, name: str) -> Callable[..., int]:
        if name != self.failing:
            return getattr(self.real, name)

        def fail(*_args: object) -> int:
            ctypes.set_errno(self.code)
            return -1

        return fail


@pytest.mark.parametrize(
    ("failing", "code"),
    [("inotify_init1", errno.ENOSYS), ("inotify_init1", errno.EMFILE), ("inotify_add_watch", errno.ENOSPC)],
)
async def test_inotify_failing_is_an_oserror_naming_the_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str, code: int
) -> None:
    monkeypatch.setattr(dir_watch, "_libc", FailingLibc(failing, code))
    with pytest.raises(OSError) as caught:
        DirectoryWatch(tmp_path)
    assert caught.value.errno == code


# The watcher of the job-type registry.


class CountedJobTypes(JobTypes):
    """A registry without an engine (none is needed to see the files) that counts its reloads."""

    def __init__(self, scripts_dir: Path) -> None:
        super().__init__(scripts_dir, engine="/nonexistent")
        self.reloads = 0
        self.reloaded = asyncio.Event()

    async def reload(self, *, force: bool = False) -> bool:
        self.reloads += 1
        try:
            return await super().reload(force=force)
        finally:
            self.reloaded.set()

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        """Wait, reload after reload, until `condition()` holds."""
        try:
            async with asyncio.timeout(EVENT_TIMEOUT):
                while not condition():
                    self.reloaded.clear()
                    await self.reloaded.wait()
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}; seen: {self.seen()}") from None

    async def next_reload(self) -> None:
        self.reloaded.clear()
        await asyncio.wait_for(self.reloaded.wait(), EVENT_TIMEOUT)

    def seen(self) -> list[str]:
        return [state.filename for state in self.states()]


@contextlib.asynccontextmanager
async def running(scripts_dir: Path) -> AsyncIterator[CountedJobTypes]:
    """A registry of `scripts_dir` that is started, its watcher running and past its first look."""
    registry = CountedJobTypes(scripts_dir)
    await registry.start()
    registry.reloads = 0
    registry.reloaded.clear()
    task = asyncio.create_task(registry.watch())
    try:
        await asyncio.wait_for(registry.reloaded.wait(), EVENT_TIMEOUT)  # the look once the watch is set
        yield registry
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await registry.close()


@pytest.fixture
async def watched(tmp_path: Path) -> AsyncIterator[CountedJobTypes]:
    async with running(tmp_path / "scripts") as registry:
        yield registry


async def test_an_idle_watcher_does_not_wake_up(
    tmp_path: Path, watched: CountedJobTypes, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "scripts").mkdir()
    await watched.next_reload()  # the directory appearing is a change
    write_script(tmp_path / "scripts", "a.js")
    await watched.until(lambda: watched.seen() == ["a.js"], "the new script")
    await asyncio.sleep(SCRIPTS_SETTLE_MAX)
    before = watched.reloads
    scans = 0
    real_scan = job_types_module.scan

    def counted_scan(directory: Path) -> dict[str, job_types_module.FileStamp] | None:
        nonlocal scans
        scans += 1
        return real_scan(directory)

    monkeypatch.setattr(job_types_module, "scan", counted_scan)
    await asyncio.sleep(IDLE_WINDOW)  # the window in which nothing may happen
    assert (watched.reloads - before, scans) == (0, 0)


async def test_an_edit_is_live_within_a_second(tmp_path: Path, watched: CountedJobTypes) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    await watched.next_reload()
    write_script(scripts, "a.js")
    loop = asyncio.get_running_loop()
    began = loop.time()
    await watched.until(lambda: watched.seen() == ["a.js"], "the new script")
    assert loop.time() - began < 1.0 + QUIET  # the settle time and a loaded machine's slack


async def test_many_files_at_once_are_one_reload(tmp_path: Path, watched: CountedJobTypes) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    await watched.next_reload()
    await asyncio.sleep(SCRIPTS_SETTLE_MAX)
    before = watched.reloads
    names = [f"shot_{n:02}.js" for n in range(20)]
    for name in names:  # as `git pull` writes them: one after the other, a few milliseconds apart
        write_script(scripts, name)
        await asyncio.sleep(0.003)
    await watched.until(lambda: watched.seen() == names, "all 20 scripts")
    await asyncio.sleep(SCRIPTS_SETTLE_MAX + QUIET)  # a second reload would have come by now
    assert watched.reloads - before == 1


async def test_a_missing_directory_created_later_is_read(tmp_path: Path, watched: CountedJobTypes) -> None:
    staged = tmp_path / "staged"
    staged.mkdir()
    write_script(staged, "a.js")
    staged.rename(tmp_path / "scripts")
    await watched.until(lambda: watched.seen() == ["a.js"], "the script of the new directory")
    shutil.rmtree(tmp_path / "scripts")
    await watched.until(lambda: watched.seen() == [], "the scripts gone with their directory")
    (tmp_path / "scripts").mkdir()
    write_script(tmp_path / "scripts", "b.js")
    await watched.until(lambda: watched.seen() == ["b.js"], "the script of the recreated directory")


async def test_without_inotify_the_watcher_lists_the_directory_every_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(dir_watch, "_libc", FailingLibc("inotify_init1", errno.ENOSYS))
    monkeypatch.setattr(job_types_module, "SCRIPTS_POLL_INTERVAL", 0.05)
    caplog.set_level(logging.WARNING, logger="flamenco_manager.services.job_types")
    registry = CountedJobTypes(tmp_path / "scripts")
    task = asyncio.create_task(registry.watch())
    try:
        await registry.until(lambda: registry.reloads >= 3, "three looks")
        (tmp_path / "scripts").mkdir()
        write_script(tmp_path / "scripts", "a.js")
        await registry.until(lambda: registry.seen() == ["a.js"], "the script, seen by listing")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await registry.close()
    lines = [r.getMessage() for r in caplog.records if "cannot watch" in r.getMessage()]
    assert len(lines) == 1 and "listing them every 0.05 s" in lines[0], lines


# A safety look in the tests: short against EVENT_TIMEOUT, long against a reload.
TEST_SAFETY_POLL = 0.3


async def test_a_linked_scripts_change_is_seen_by_the_safety_look(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(job_types_module, "SCRIPTS_SAFETY_POLL_INTERVAL", TEST_SAFETY_POLL)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = write_script(elsewhere, "a.js")
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "a.js").symlink_to(target)
    async with running(scripts) as registry:
        first = registry.states()[0]
        assert first.filename == "a.js"
        stamp = registry._seen["a.js"]
        with target.open("a") as file:  # no event reaches the watch of `scripts`
            file.write("// a longer script\n")
        await registry.until(lambda: registry._seen["a.js"] != stamp, "the linked script's new size")


async def test_the_safety_look_follows_a_renamed_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(job_types_module, "SCRIPTS_SAFETY_POLL_INTERVAL", TEST_SAFETY_POLL)
    scripts = tmp_path / "etc" / "scripts"
    scripts.mkdir(parents=True)
    async with running(scripts) as registry:
        (tmp_path / "etc").rename(tmp_path / "etc.old")
        scripts.mkdir(parents=True)
        await registry.until(lambda: registry.reloads > 1, "a safety look")
        # From the next wait on, only an event can bring the new script in time.
        monkeypatch.setattr(job_types_module, "SCRIPTS_SAFETY_POLL_INTERVAL", 30.0)
        await registry.next_reload()
        write_script(scripts, "a.js")
        await registry.until(lambda: registry.seen() == ["a.js"], "the script in the new directory")
