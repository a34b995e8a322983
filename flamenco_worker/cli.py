"""`flamenco-worker`: parse flags, load settings, run the daemon, return the exit code."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Mapping

from flamenco_worker.config import ConfigError, WorkerSettings, load_settings
from flamenco_worker.daemon import Daemon, flush_and_sign_off
from flamenco_worker.discovery import find_manager
from flamenco_worker.flags import parse_command_line, version_text
from flamenco_worker.logs import set_level, setup_logging
from flamenco_worker.outbox import OutboxError
from flamenco_worker.status import ExitCode

log = logging.getLogger("flamenco_worker")


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    env = os.environ if env is None else env
    try:
        command_line = parse_command_line(argv)
    except ConfigError as exc:
        print(f"flamenco-worker: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    except SystemExit as exc:  # -help
        return int(exc.code or 0)
    if command_line.show_version:
        print(version_text())
        return ExitCode.OK

    setup_logging(command_line.flags.log_level or "info")
    try:
        settings = load_settings(command_line.flags, env)
    except ConfigError as exc:
        print(f"flamenco-worker: configuration error: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    set_level(settings.log_level)

    try:
        if command_line.find_manager:
            return asyncio.run(print_found_manager(command_line.find_manager_timeout))
        if command_line.flush:
            return asyncio.run(flush_and_sign_off(settings))
        log_restartability(settings)
        return asyncio.run(Daemon(settings, command_line.flags, env).run())
    except ConfigError as exc:
        print(f"flamenco-worker: configuration error: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    except OutboxError as exc:
        log.error("cannot keep task updates safe: %s", exc)
        return ExitCode.CRASH
    except Exception:
        log.exception("the worker crashed")
        return ExitCode.CRASH


async def print_found_manager(within: float) -> int:
    """`-find-manager`: search the LAN, print the first Manager that answers; 0 found, 1 none."""
    found = await find_manager(within=within)
    if found is None:
        print(f"flamenco-worker: no Flamenco Manager answered within {within:g}s", file=sys.stderr)
        return 1
    print(found.url)
    log.info(
        "found Manager name=%r version=%s at %s (%s)", found.name, found.version, found.url, found.source
    )
    return ExitCode.OK


def log_restartability(settings: WorkerSettings) -> None:
    if settings.restartable:
        log.info("restartable=yes restart_exit_code=%d", settings.restart_exit_code)
    else:
        log.info("restartable=no: Restart requests are refused (restart_exit_code is not set, or 0)")


def run() -> None:
    sys.exit(main())
