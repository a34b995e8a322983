"""`flamenco-manager`: flags, logging, serving, signals and systemd notifications."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import inspect
import logging
import pathlib
import re
import resource
import signal
import sys
import time

from aiohttp import web

from flamenco_manager import __version__, buildinfo, logsetup
from flamenco_manager.api import build_app
from flamenco_manager.api.slow_clients import GuardedAppRunner
from flamenco_manager.config import ConfigError, ManagerConfig, database_for_log, load_config, parse_listen
from flamenco_manager.discovery import Announcers, start_announcing
from flamenco_manager.services import Manager, job_types_of
from flamenco_manager.services.job_type_check import check_scripts, read_check_settings, table
from flamenco_manager.store import StoreError, is_postgresql
from flamenco_manager.systemd_notify import Notifier

log = logging.getLogger(__name__)

EX_CONFIG = 78
DEFAULT_CONFIG = "flamenco-manager.yaml"
# In-flight requests get this long to finish at shutdown; held long-polls are answered at once.
SHUTDOWN_GRACE = 5.0
# Middle-generation collector passes between two full ones (CPython's default: 10); see tune_gc().
GC_FULL_THRESHOLD = 1000
# Exit code after a second SIGTERM/SIGINT cut the graceful shutdown short.
EX_FORCED = 1
# -check-scripts: a script failed to load or compile; no JavaScript engine to run them.
EX_SCRIPT_FAILED = 1
EX_NO_ENGINE = 2

EPILOG = """\
exit codes:
  0    stopped by SIGTERM/SIGINT after a graceful shutdown
  1    the listening address could not be opened (often transient: the previous process still
       exiting), a crash, or a second SIGTERM/SIGINT that cut the shutdown short
  78   invalid configuration, flags or database (EX_CONFIG); one line on stderr names the file:line
       and key; systemd should not restart (RestartPreventExitStatus=78)
  -check-scripts: 0 every script loads and compiles, 1 one does not, 2 no JavaScript engine (node)

-check-scripts [DIR] loads every job-type script of scripts_dir (or DIR) and compiles it once, then
         prints one line per script: job type, label, number of settings, and "N tasks" or the error
         with file:line. Settings with a default keep it; the others that are required or computed
         by the add-on (eval) get a placeholder: the first of their choices, else string "1" (a frame
         range), int32 max(1, min), float 24.0, bool false. -check-settings FILE.yaml replaces them:
           simple-blender-render:
             frames: "1-250"
             chunk_size: 10

signals: SIGTERM/SIGINT stop gracefully: held long-polls are answered at once, requests in flight
         get 5 s; a second one stops without waiting for them. SIGHUP reads every job-type script
         again (changed files are also picked up by themselves within a second).

systemd: with NOTIFY_SOCKET set it sends READY=1 once listening and STOPPING=1 at shutdown, and
         RELOADING=1 then READY=1 around a SIGHUP reload; with WATCHDOG_USEC set (WatchdogSec=) also
         WATCHDOG=1 at half that interval from its event loop.
"""


class ListenError(Exception):
    """The listening socket could not be opened (address in use, no permission, …)."""


# argparse names a flag by all its spellings ("argument -config/--config: …"); one is enough.
_ALIASES = re.compile(r"argument (-[\w-]+)(?:/-[\w-]+)+")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]  # raises instead of exiting 2
        text = _ALIASES.sub(r"flag \1", message)
        raise ConfigError("command line", None, None, f"{text} (see -help)")


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Flamenco-style single-dash flags (`--flag` works too); -help exits through SystemExit(0)."""
    parser = _Parser(
        prog="flamenco-manager",
        description="Flamenco v3-compatible render farm manager",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
        add_help=False,
    )
    parser.add_argument("-help", "--help", "-h", action="help", help="show this help and exit")
    parser.add_argument(
        "-config", "--config", default=None, metavar="PATH", help=f"default: ./{DEFAULT_CONFIG}"
    )
    parser.add_argument("-listen", "--listen", default=None, metavar="HOST:PORT", help="overrides the file")
    parser.add_argument("-version", "--version", action="store_true", help="print the version and exit")
    parser.add_argument("-quiet", "--quiet", action="store_true", help="log only warnings and errors")
    parser.add_argument("-debug", "--debug", action="store_true", help="log debug messages")
    parser.add_argument(
        "-check-scripts",
        "--check-scripts",
        nargs="?",
        const="",
        default=None,
        metavar="DIR",
        help="load and compile every job-type script (of scripts_dir, or DIR), print a table, exit",
    )
    parser.add_argument(
        "-check-settings",
        "--check-settings",
        default=None,
        metavar="FILE",
        help="YAML: job type name -> settings that -check-scripts compiles with",
    )
    parser.add_argument(
        "-migrate-from-sqlite",
        "--migrate-from-sqlite",
        default=None,
        metavar="FILE",
        help="copy the SQLite database FILE into the empty PostgreSQL database of `database:`, exit",
    )
    args = parser.parse_args(argv)
    if args.check_settings is not None and args.check_scripts is None:
        parser.error("flag -check-settings: only with -check-scripts")
    return args


def configure(args: argparse.Namespace) -> ManagerConfig:
    path = pathlib.Path(args.config or DEFAULT_CONFIG)
    config = load_config(path, explicit=args.config is not None)
    if args.listen is not None:
        try:
            host, port = parse_listen(args.listen)
        except ValueError as exc:
            raise ConfigError("command line", None, "-listen", str(exc)) from None
        config = dataclasses.replace(config, listen_host=host, listen_port=port)
    return config


async def serve(config: ManagerConfig, *, debug: bool = False) -> int:
    manager = Manager(config)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    forced = asyncio.Event()
    notify = Notifier()

    def on_signal(signum: int) -> None:
        # Only flags are set here; serve() does the work (first signal graceful, second forced).
        if stop.is_set():
            log.warning("second signal: stopping without waiting signal=%s", signal.Signals(signum).name)
            forced.set()
            return
        log.info("stopping signal=%s (send it again to stop without waiting)", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    reload_wanted = asyncio.Event()
    # SIGHUP only asks; _reload_when_asked() does the reading, one reload at a time.
    loop.add_signal_handler(signal.SIGHUP, reload_wanted.set)
    reloader: asyncio.Task[None] | None = None
    announcers: Announcers | None = None

    app = build_app(manager)
    # The access log costs ~25 µs per request even when filtered out, so it only exists with -debug.
    access_log = logging.getLogger("aiohttp.access") if debug else None
    runner = _make_runner(app, access_log)
    await runner.setup()
    try:
        await manager.start()
        site = _make_site(runner, config)
        try:
            await site.start()
        except OSError as exc:
            raise ListenError(f"cannot listen on {config.listen}: {exc.strerror or exc}") from exc
        log.info(
            "listening listen=%s database=%s version=%s",
            config.listen,
            database_for_log(config.database),
            __version__,
        )
        if config.autodiscoverable:
            announcers = await start_announcing(config, _bound_port(runner, config))
        tune_gc()
        notify.send("READY=1", f"STATUS=listening on {config.listen}")
        notify.start_watchdog()
        reloader = asyncio.create_task(_reload_when_asked(manager, reload_wanted, notify), name="reloader")
        await stop.wait()
        notify.send("STOPPING=1")
        manager.stop_holding()
    finally:
        if announcers is not None:
            await announcers.close()  # byebye before the HTTP side goes
        if reloader is not None:
            reloader.cancel()  # awaited after the HTTP side is closed, which starts at once as before
        await _cleanup_unless_forced(runner, forced)
        if reloader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await reloader
        await manager.stop()
        await notify.close()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
    if forced.is_set():
        log.warning("stopped without waiting for requests in flight")
        return EX_FORCED
    log.info("stopped")
    return 0


async def _reload_when_asked(manager: Manager, wanted: asyncio.Event, notify: Notifier) -> None:
    """Reload the job-type scripts on each SIGHUP, telling systemd (RELOADING=1 … READY=1)."""
    while True:
        await wanted.wait()
        wanted.clear()
        # MONOTONIC_USEC: systemd ≥ 253 wants it with RELOADING=1 to match the reload to its request.
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        notify.send("RELOADING=1", f"MONOTONIC_USEC={now_usec}", "STATUS=reloading job type scripts")
        try:
            await manager.reload_job_types()
        except Exception:
            log.exception("reloading the job type scripts failed")
        notify.send("READY=1", f"STATUS=listening on {manager.config.listen}")


async def _cleanup_unless_forced(runner: web.AppRunner, forced: asyncio.Event) -> None:
    """Close the HTTP side gracefully, or cut that short when a second signal arrives meanwhile."""
    cleanup = asyncio.ensure_future(runner.cleanup())
    force = asyncio.ensure_future(forced.wait())
    try:
        await asyncio.wait({cleanup, force}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        force.cancel()
        if not cleanup.done():
            cleanup.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await cleanup


#: aiohttp ≥ 3.9 takes the shutdown grace on the runner and deprecates it on the site; 3.8 (Debian 12)
#: only knows the site's. Each is given where the installed aiohttp expects it.
GRACE_ON_RUNNER = "shutdown_timeout" in inspect.signature(web.BaseRunner.__init__).parameters


def _make_runner(app: web.Application, access_log: logging.Logger | None) -> web.AppRunner:
    if GRACE_ON_RUNNER:
        return GuardedAppRunner(app, access_log=access_log, shutdown_timeout=SHUTDOWN_GRACE)
    return GuardedAppRunner(app, access_log=access_log)


def _bound_port(runner: web.AppRunner, config: ManagerConfig) -> int:
    """The port the site listens on: the configured one, or the one the kernel chose for port 0."""
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2 and isinstance(address[1], int):
            return address[1]
    return config.listen_port


def _make_site(runner: web.AppRunner, config: ManagerConfig) -> web.TCPSite:
    # reuse_address: a port left in TIME_WAIT by the previous run can be listened on again at once.
    host = config.listen_host or None
    if GRACE_ON_RUNNER:
        return web.TCPSite(runner, host, config.listen_port, reuse_address=True)
    return web.TCPSite(runner, host, config.listen_port, reuse_address=True, shutdown_timeout=SHUTDOWN_GRACE)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse_args(argv)
    except ConfigError as exc:
        print(f"flamenco-manager: {exc}", file=sys.stderr)
        return EX_CONFIG
    except SystemExit as exc:  # -help
        return int(exc.code or 0)
    try:
        if args.version:
            print(buildinfo.version_line())
            return 0
        # -check-scripts prints its own table; the log then says only what went wrong beyond it.
        logsetup.setup(quiet=args.quiet or args.check_scripts is not None, debug=args.debug)
        config = configure(args)
    except ConfigError as exc:
        print(f"flamenco-manager: {exc}", file=sys.stderr)
        return EX_CONFIG
    if args.check_scripts is not None:
        return _check_scripts(config, args)
    if args.migrate_from_sqlite is not None:
        return _migrate_from_sqlite(config, pathlib.Path(args.migrate_from_sqlite))
    raise_open_files_limit()
    try:
        return asyncio.run(serve(config, debug=args.debug))
    except StoreError as exc:
        print(f"flamenco-manager: {exc}", file=sys.stderr)
        return EX_CONFIG
    except ListenError as exc:
        # Not 78: an address in use is often transient (the previous process still exiting).
        print(f"flamenco-manager: {exc}", file=sys.stderr)
        return 1


def tune_gc() -> None:
    """Keep the cyclic garbage collector's full passes rare; called once the Manager is set up.

    Every connected worker keeps about a hundred objects alive (its connection, its held request), so
    10,000 workers make about a million, and a full pass over them holds the event loop for 0.6-1.4 s.
    With CPython's default thresholds one ran every 10-20 s at that size, each one delaying every
    answer in flight. Objects from start-up (modules, job types, the API document) are frozen out of
    the passes for good; full passes wait for GC_FULL_THRESHOLD passes of the middle generation
    instead of 10, which makes them minutes apart. Young-generation passes stay as they are: cheap.
    """
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, GC_FULL_THRESHOLD)
    log.info(
        "garbage collector tuned frozen_objects=%d thresholds=%s", gc.get_freeze_count(), gc.get_threshold()
    )


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard limit; returns the soft limit now in force.

    Every connected worker holds one socket (its long-poll) and Debian's default soft limit is 1024,
    so a Manager started by hand would refuse connections from about the thousandth worker on. The
    systemd unit sets the limit itself (LimitNOFILE=); this covers every other way of starting it.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            # An unlimited hard limit is above the kernel's fs.nr_open; the soft limit then stays.
            log.warning("could not raise the open files limit soft=%d hard=%d error=%s", soft, hard, exc)
    log.info("open files limit soft=%s hard=%s", _limit(soft), _limit(hard))
    return soft


def _limit(value: int) -> str:
    return "unlimited" if value == resource.RLIM_INFINITY else str(value)


def _migrate_from_sqlite(config: ManagerConfig, sqlite_path: pathlib.Path) -> int:
    """Copy a farm's SQLite database into the configured PostgreSQL one; print the rows per table."""
    if not is_postgresql(config.database):
        print(
            "flamenco-manager: -migrate-from-sqlite: `database:` must name a PostgreSQL database"
            f" (postgresql://USER@HOST/DBNAME), not {config.database}",
            file=sys.stderr,
        )
        return EX_CONFIG
    from flamenco_manager.store.postgresql_copy import copy_from_sqlite  # needs psycopg

    try:
        counts = copy_from_sqlite(sqlite_path, config.database)
    except StoreError as exc:
        print(f"flamenco-manager: {exc}", file=sys.stderr)
        return EX_CONFIG
    for name, rows in counts.items():
        print(f"{name:<24} {rows:>10} rows")
    print(f"copied {sqlite_path} into {database_for_log(config.database)}; every table's row count matches")
    return 0


def run() -> None:
    sys.exit(main())


def _check_scripts(config: ManagerConfig, args: argparse.Namespace) -> int:
    """`-check-scripts`: every script loaded and compiled once, a table on stdout, an exit code."""
    try:
        overrides = read_check_settings(pathlib.Path(args.check_settings)) if args.check_settings else {}
        registry = job_types_of(config)
        directory = pathlib.Path(args.check_scripts) if args.check_scripts else registry.scripts_dir
        assert directory is not None
        if args.check_scripts and not directory.is_dir():
            raise ConfigError("command line", None, "-check-scripts", f"{directory} is not a directory")
    except ConfigError as exc:
        print(f"flamenco-manager: {exc}", file=sys.stderr)
        return EX_CONFIG
    rows, engine_problem = asyncio.run(
        check_scripts(
            directory, engine=registry.configured_engine, limits=registry.limits, overrides=overrides
        )
    )
    if engine_problem is not None:
        print(f"flamenco-manager: no usable JavaScript engine: {engine_problem}", file=sys.stderr)
        return EX_NO_ENGINE
    if not rows:
        print(f"no job type scripts in {directory}")
        return 0
    print(table(rows))
    failed = sum(not row.ok for row in rows)
    print(f"{len(rows)} scripts, {failed} failed" if failed else f"{len(rows)} scripts, all compiled")
    return EX_SCRIPT_FAILED if failed else 0
