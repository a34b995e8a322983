"""`flamenco-manager`: flags, logging, serving, signals and systemd notifications."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import pathlib
import signal
import sys

import sdnotify
from aiohttp import web

from flamenco_manager import __version__, buildinfo, logsetup
from flamenco_manager.api import build_app
from flamenco_manager.api.slow_clients import GuardedAppRunner
from flamenco_manager.config import ConfigError, ManagerConfig, load_config, parse_listen
from flamenco_manager.services import Manager
from flamenco_manager.store import StoreError

log = logging.getLogger(__name__)

EX_CONFIG = 78
DEFAULT_CONFIG = "flamenco-manager.yaml"
# In-flight requests get this long to finish at shutdown; held long-polls are answered at once.
SHUTDOWN_GRACE = 5.0


class ListenError(Exception):
    """The listening socket could not be opened (address in use, no permission, …)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        raise ConfigError("command line", None, None, message)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = _Parser(prog="flamenco-manager", description="Flamenco v3-compatible render farm manager")
    parser.add_argument(
        "-config", "--config", default=None, metavar="PATH", help=f"default: ./{DEFAULT_CONFIG}"
    )
    parser.add_argument("-listen", "--listen", default=None, metavar="HOST:PORT", help="overrides the file")
    parser.add_argument("-version", "--version", action="store_true", help="print the version and exit")
    parser.add_argument("-quiet", "--quiet", action="store_true", help="log only warnings and errors")
    parser.add_argument("-debug", "--debug", action="store_true", help="log debug messages")
    return parser.parse_args(argv)


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


class _Notifier:
    """sd_notify when running under systemd; silent otherwise."""

    def __init__(self) -> None:
        self._notifier = sdnotify.SystemdNotifier()

    def __call__(self, state: str) -> None:
        self._notifier.notify(state)


async def serve(config: ManagerConfig, *, debug: bool = False) -> int:
    manager = Manager(config)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    notify = _Notifier()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second signal: stopping without waiting signal=%s", signal.Signals(signum).name)
            raise SystemExit(1)
        log.info("stopping signal=%s", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)

    app = build_app(manager)
    # The access log costs ~25 µs per request even when filtered out, so it only exists with -debug.
    access_log = logging.getLogger("aiohttp.access") if debug else None
    runner = GuardedAppRunner(app, access_log=access_log)
    await runner.setup()
    try:
        await manager.start()
        site = web.TCPSite(
            runner,
            config.listen_host or None,
            config.listen_port,
            shutdown_timeout=SHUTDOWN_GRACE,
            reuse_address=True,
        )
        try:
            await site.start()
        except OSError as exc:
            raise ListenError(f"cannot listen on {config.listen}: {exc.strerror or exc}") from exc
        log.info("listening listen=%s database=%s version=%s", config.listen, config.database, __version__)
        notify("READY=1")
        notify(f"STATUS=listening on {config.listen}")
        await stop.wait()
        notify("STOPPING=1")
        manager.stop_holding()
    finally:
        await runner.cleanup()
        await manager.stop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse_args(argv)
        if args.version:
            print(buildinfo.version_line())
            return 0
        logsetup.setup(quiet=args.quiet, debug=args.debug)
        config = configure(args)
    except ConfigError as exc:
        print(f"flamenco-manager: {exc}", file=sys.stderr)
        return EX_CONFIG
    try:
        return asyncio.run(serve(config, debug=args.debug))
    except StoreError as exc:
        print(f"flamenco-manager: {exc}", file=sys.stderr)
        return EX_CONFIG
    except ListenError as exc:
        # Not 78: an address in use is often transient (the previous process still exiting).
        print(f"flamenco-manager: {exc}", file=sys.stderr)
        return 1


def run() -> None:
    sys.exit(main())
