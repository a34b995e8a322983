"""Flamenco-style command-line flags (`-manager URL`; `--manager URL` and `-manager=URL` work too)."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

from flamenco_worker import __version__
from flamenco_worker.config import DBUS_CHOICES, RESTART_CODE_RANGE, ConfigError, FlagValues

EPILOG = """\
precedence: built-in defaults < flamenco-worker.yaml < flamenco-worker.d/NAME.yaml (with -instance NAME)
            < environment (FLAMENCO_WORKER_NAME, FLAMENCO_HOME, FLAMENCO_WORKER_DISCOVERY) < flags.

exit codes:
  0    shut down: requested by the Manager or over D-Bus, or SIGTERM/SIGINT (the task is handed back)
  N    restart requested: N is restart_exit_code / -restart-exit-code (47 by convention; with
       systemd's RestartForceExitStatus=N the service manager starts the worker again)
  1    crash (unexpected error; see the log)
  78   invalid configuration or flags (EX_CONFIG); one line on stderr names the file:line and key
  75   -flush could not deliver every queued task update (EX_TEMPFAIL)
  -find-manager: 0 a Manager was found (its URL is printed), 1 none answered in time

signals: SIGTERM/SIGINT abort the running task, hand it back and exit 0 (a second one exits at once,
         without handing the task back); SIGHUP re-reads the configuration file.
"""


# argparse names a flag by all its spellings ("argument -dbus/--dbus: …"); the first one is enough.
_ALIASES = re.compile(r"argument (-[\w-]+)(?:/-[\w-]+)+")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]  # raises instead of exiting 2
        text = _ALIASES.sub(r"flag \1", message)
        raise ConfigError(f"command line: {text} (see -help)")


@dataclass(frozen=True, slots=True)
class CommandLine:
    flags: FlagValues
    show_version: bool = False
    flush: bool = False
    find_manager: bool = False
    find_manager_timeout: float = 60.0


def _exit_code(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        low, high = RESTART_CODE_RANGE
        raise argparse.ArgumentTypeError(
            f"must be a whole number from {low} to {high} (0: not restartable), not {text!r}"
        ) from None


#: `-find-manager` gives up after this long (Flamenco: 1 min).
FIND_MANAGER_TIMEOUT = 60.0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"must be a number of seconds from 0 to 3600, not {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="flamenco-worker",
        description="Flamenco render worker: runs tasks from a Flamenco Manager; controllable over D-Bus.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
        add_help=False,
    )
    add = parser.add_argument
    add("-help", "--help", "-h", action="help", help="show this help and exit")
    add("-version", "--version", action="store_true", help="print the version and exit")
    add(
        "-config",
        "--config",
        metavar="PATH",
        type=Path,
        help="configuration file (default: flamenco-worker.yaml in the working directory; "
        "a missing default file means built-in defaults)",
    )
    add(
        "-manager",
        "--manager",
        metavar="URL",
        action="append",
        help="Manager URL; the scheme may be left out (http is assumed), e.g. render-mgr:8080. "
        "Repeat it for replicas of one Manager: the worker uses the first that answers and moves on to "
        "the next when the connection fails; the flags replace manager_url's list",
    )
    add(
        "-restart-exit-code",
        "--restart-exit-code",
        "-restart-exit-status",
        "--restart-exit-status",
        dest="restart_exit_code",
        metavar="N",
        type=_exit_code,
        help="exit code for 'Restart', 2-255 except 78 (47 by convention); makes the worker restartable. "
        "0 means not restartable (Restart requests are refused), as when it is not set",
    )
    add(
        "-name",
        "--name",
        metavar="NAME",
        help="worker name (default: worker_name, FLAMENCO_WORKER_NAME, hostname)",
    )
    add(
        "-instance",
        "--instance",
        metavar="NAME",
        help="run as instance NAME of several workers on this machine: read flamenco-worker.d/NAME.yaml "
        "beside the configuration file on top of it, own the bus name org.flamenco.Worker1.NAME "
        "(escaped), default name <hostname>-NAME",
    )
    add("-dbus", "--dbus", choices=DBUS_CHOICES, help="bus for local control (default: system)")
    add(
        "-flush",
        "--flush",
        action="store_true",
        help="deliver queued task updates to the Manager, sign off and exit (75 if some remain)",
    )
    add(
        "-find-manager",
        "--find-manager",
        action="store_true",
        help="search the LAN for a Manager (UPnP/SSDP), print its URL and exit: 0 found, 1 none",
    )
    add(
        "-find-manager-timeout",
        "--find-manager-timeout",
        metavar="SECONDS",
        type=_seconds,
        default=FIND_MANAGER_TIMEOUT,
        help=f"how long -find-manager searches (default {FIND_MANAGER_TIMEOUT:.0f})",
    )
    add("-quiet", "--quiet", action="store_true", help="log warnings and errors only")
    add("-debug", "--debug", action="store_true", help="log debug messages too")
    return parser


def parse_command_line(argv: list[str]) -> CommandLine:
    """Parse argv (without the program name); raises ConfigError on a bad flag."""
    ns = build_parser().parse_args(argv)
    log_level = "debug" if ns.debug else "warning" if ns.quiet else None
    flags = FlagValues(
        config=ns.config,
        manager=tuple(ns.manager) if ns.manager is not None else None,
        restart_exit_code=ns.restart_exit_code,
        name=ns.name,
        dbus=ns.dbus,
        log_level=log_level,
        instance=ns.instance,
    )
    return CommandLine(
        flags=flags,
        show_version=ns.version,
        flush=ns.flush,
        find_manager=ns.find_manager,
        find_manager_timeout=ns.find_manager_timeout,
    )


def version_text() -> str:
    return f"flamenco-worker {__version__}"
