"""Manager settings: defaults, overlaid by `flamenco-manager.yaml` (Flamenco v3's keys), frozen.

Errors name the file, the line of the offending YAML node and the key, on one line.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import pathlib
import re
import sys
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from flamenco_manager.buildinfo import DEFAULT_FLAMENCO_VERSION, FLAMENCO_VERSION_SHAPE
from flamenco_manager.values import describe
from flamenco_manager.variables import VariableError, Variables

log = logging.getLogger(__name__)

# The only configuration layout Flamenco v3 (and we) read; older layouts need migrating by hand.
CONFIG_VERSION = 3

DEFAULT_MANAGER_NAME = "Flamenco"
DEFAULT_DATABASE = "flamenco-manager.sqlite"
DEFAULT_LISTEN_PORT = 8080
DEFAULT_LOCAL_STORAGE = "./flamenco-manager-storage"
# An active task untouched this long is failed (Flamenco's default; running tasks are touched every 10 s).
DEFAULT_TASK_TIMEOUT = 10 * 60.0
# A worker unseen this long goes to `error` (Flamenco's default; an idle awake worker polls every 20 s).
DEFAULT_WORKER_TIMEOUT = 60.0
# Failures of one worker on one job and task type before it is blocklisted there (Flamenco's default).
DEFAULT_BLOCKLIST_THRESHOLD = 3
# Distinct workers failing a task before it is hard-failed (Flamenco's default).
DEFAULT_TASK_FAIL_AFTER_SOFTFAIL_COUNT = 3
# Longest a `Prefer: wait=N` request is held; below common proxy idle timeouts (60 s) with margin.
DEFAULT_LONG_POLL_MAX = 30.0
# How often the timeout checker runs once started (Flamenco checks every minute).
DEFAULT_TIMEOUT_CHECK_INTERVAL = 60.0
# Delay before the first timeout check, so workers can reconnect after a Manager restart (Flamenco: 5 min).
DEFAULT_TIMEOUT_INITIAL_DELAY = 5 * 60.0
# How often the web UI's farm overview takes a sample: its charts span an hour, so 10 s gives 360 points
# (six per minute, enough for a per-minute completion count) for two or three small queries each.
DEFAULT_FARM_HISTORY_INTERVAL = 10.0

HIGHEST_PORT = 65535

# Job-type scripts live here, beside the configuration file (/etc/flamenco/scripts for the package).
DEFAULT_SCRIPTS_DIR = "scripts"
# A script's describe or compile is stopped after this long: Flamenco's scripts take milliseconds, and a
# submission waits for it (the add-on's request times out, and other compiles queue behind it).
DEFAULT_JOB_SCRIPT_TIME_LIMIT = 5.0
# Longest time limit accepted: compiles run one at a time, so a longer one stalls every submission.
MAX_JOB_SCRIPT_TIME_LIMIT = 10 * 60.0
# Memory of one script run, in MiB: a 50,000-task job's objects fit in well under 100 MiB.
DEFAULT_JOB_SCRIPT_MEMORY_LIMIT = 256
# The engine needs a few MiB of its own; above a machine's worth is a typo.
JOB_SCRIPT_MEMORY_LIMIT_RANGE = range(16, 64 * 1024 + 1)

# Keys of Flamenco's Manager configuration that this Manager reads.
_DURATION_KEYS = (
    "task_timeout",
    "worker_timeout",
    "long_poll_max",
    "timeout_check_interval",
    "timeout_initial_delay",
    "job_script_time_limit",
    "farm_history_interval",
)
_USED_KEYS = frozenset(
    {
        "_meta",
        "manager_name",
        "database",
        "listen",
        "local_manager_storage_path",
        "shared_storage_path",
        "blocklist_threshold",
        "task_fail_after_softfail_count",
        "variables",
        "api_token",
        "api_token_file",
        "flamenco_version",
        "scripts_dir",
        "job_script_memory_limit",
        "javascript_engine",
        "autodiscoverable",
        *_DURATION_KEYS,
    }
)
# Shortest access token accepted: anything shorter can be guessed over a LAN in reasonable time.
API_TOKEN_MIN_LENGTH = 16
_TOKEN_SHAPE = re.compile(rf"[A-Za-z0-9._~+/=-]{{{API_TOKEN_MIN_LENGTH},}}")
# Keys of Flamenco's configuration for features this Manager does not have; accepted without comment.
_IGNORED_FLAMENCO_KEYS = frozenset({"database_check_period", "shaman", "mqtt"})


def _default_variables() -> Variables:
    return Variables.from_config(None, shared_storage_path="", manager_platform=current_platform())


@dataclass(frozen=True)
class ManagerConfig:
    """Every Manager setting, validated; durations in seconds."""

    manager_name: str = DEFAULT_MANAGER_NAME
    database: str = DEFAULT_DATABASE
    listen_host: str = ""
    listen_port: int = DEFAULT_LISTEN_PORT
    local_manager_storage_path: str = DEFAULT_LOCAL_STORAGE
    shared_storage_path: str = ""
    task_timeout: float = DEFAULT_TASK_TIMEOUT
    worker_timeout: float = DEFAULT_WORKER_TIMEOUT
    blocklist_threshold: int = DEFAULT_BLOCKLIST_THRESHOLD
    task_fail_after_softfail_count: int = DEFAULT_TASK_FAIL_AFTER_SOFTFAIL_COUNT
    long_poll_max: float = DEFAULT_LONG_POLL_MAX
    timeout_check_interval: float = DEFAULT_TIMEOUT_CHECK_INTERVAL
    timeout_initial_delay: float = DEFAULT_TIMEOUT_INITIAL_DELAY
    variables: Variables = field(default_factory=_default_variables)
    source_path: pathlib.Path | None = None
    # Ours: when set, every endpoint but the worker protocol needs `Authorization: Bearer <token>`.
    api_token: str = field(default="", repr=False)
    # Ours: the Flamenco release answered as `shortversion`, which the Blender add-on must match.
    flamenco_version: str = DEFAULT_FLAMENCO_VERSION
    # Ours: job-type scripts (relative: to the configuration file's directory), their limits, and the
    # JavaScript engine (`node`) that runs them; empty: found on PATH or in the virtualenv.
    scripts_dir: str = DEFAULT_SCRIPTS_DIR
    job_script_time_limit: float = DEFAULT_JOB_SCRIPT_TIME_LIMIT
    job_script_memory_limit: int = DEFAULT_JOB_SCRIPT_MEMORY_LIMIT
    javascript_engine: str = ""
    # Hidden, for tests and benchmarks only (not in the README's list): seconds between farm-overview
    # samples, so a test sees charts move within seconds instead of minutes.
    farm_history_interval: float = DEFAULT_FARM_HISTORY_INTERVAL
    # Flamenco's key: announce this Manager on the LAN (UPnP/SSDP) so workers find it unconfigured.
    autodiscoverable: bool = True

    @property
    def listen(self) -> str:
        """The listen address in `HOST:PORT` notation, as written in the file."""
        host = f"[{self.listen_host}]" if ":" in self.listen_host else self.listen_host
        return f"{host}:{self.listen_port}"


class ConfigError(Exception):
    """An unusable configuration; its text is one line: `FILE:LINE: KEY: problem`."""

    def __init__(self, file: pathlib.Path | str, line: int | None, key: str | None, problem: str) -> None:
        self.file = str(file)
        self.line = line
        self.key = key
        self.problem = problem
        location = self.file if line is None else f"{self.file}:{line}"
        text = f"{location}: {problem}" if key is None else f"{location}: {key}: {problem}"
        super().__init__(" ".join(text.split()))


_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# The URL schemes of a PostgreSQL `database:`; a value without `SCHEME://` is a SQLite file.
POSTGRESQL_SCHEMES = ("postgresql", "postgres")


def database_url_problem(database: str) -> str | None:
    """What is wrong with a `database:` URL, or None (a SQLite file path, or a usable PostgreSQL URL).

    Checked here, when the file is read, so a typo is one clear line naming the key instead of a
    driver's message from deep inside the first connection.
    """
    match = _URL_SCHEME.match(database)
    if match is None:
        return None
    scheme = match.group(1)
    if scheme not in POSTGRESQL_SCHEMES:
        return (
            f"{scheme}:// is not a database this Manager speaks: give postgresql://USER@HOST/DBNAME"
            " or the path of a SQLite file"
        )
    try:
        parts = urllib.parse.urlsplit(database)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        return f"not a valid PostgreSQL URL ({exc})"
    dbname = urllib.parse.unquote(parts.path.lstrip("/"))
    if not dbname or "/" in dbname:
        return "a PostgreSQL URL names one database: postgresql://USER@HOST/DBNAME"
    if parts.fragment:
        return "a PostgreSQL URL has no #fragment"
    try:
        urllib.parse.parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        return f"the PostgreSQL URL's parameters are not KEY=VALUE pairs joined by '&': {parts.query!r}"
    return None


def database_for_log(database: str) -> str:
    """The `database:` setting fit for a log line: a URL's password left out."""
    if _URL_SCHEME.match(database) is None:
        return database
    parts = urllib.parse.urlsplit(database)
    if parts.password is None:
        return database
    user = f"{parts.username}@" if parts.username else ""
    host = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit(parts._replace(netloc=user + host))


def current_platform() -> str:
    """This machine's platform in Flamenco's (Go) naming: linux, windows, darwin, …"""
    name = sys.platform  # a variable: the type checker would otherwise fold the test for its own platform
    for prefix, flamenco_name in (("win", "windows"), ("linux", "linux")):
        if name.startswith(prefix):
            return flamenco_name
    return name


# Go's time.ParseDuration units, in seconds.
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_WHOLE = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+")


def parse_duration(text: str) -> float:
    """Seconds in a Go duration such as `1m30s`, `500ms`, `2h` or `0`; ValueError otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"expected a duration string like '1m30s', not {text!r}")
    stripped = text.strip()
    if stripped in ("0", "+0", "-0"):
        return 0.0
    if not _DURATION_WHOLE.fullmatch(stripped):
        raise ValueError(f"invalid duration {text!r}; use Go notation such as '1m30s', '500ms' or '2h'")
    sign = -1.0 if stripped.startswith("-") else 1.0
    total = sum(float(number) * _DURATION_UNITS[unit] for number, unit in _DURATION_PART.findall(stripped))
    return sign * total


_HOSTNAME_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def parse_listen(text: str) -> tuple[str, int]:
    """Split `HOST:PORT` or `:PORT` (IPv6 hosts in brackets); host "" means all interfaces."""
    usage = f"invalid listen address {text!r}: expected HOST:PORT or :PORT"
    if not isinstance(text, str) or ":" not in text:
        raise ValueError(usage)
    host, _, port_text = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{usage}; {host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError(f"{usage}; put an IPv6 address in brackets, e.g. [::1]:8080")
    elif host and not _is_host_name_or_ipv4(host):
        raise ValueError(f"{usage}; {host!r} is not a valid host name or address")
    if not port_text.isascii() or not port_text.isdigit():
        raise ValueError(f"{usage}; port {port_text!r} is not a number")
    port = int(port_text)
    if not 1 <= port <= HIGHEST_PORT:
        raise ValueError(f"{usage}; port {port} is outside 1-{HIGHEST_PORT}")
    return host, port


def _is_host_name_or_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        pass
    else:
        return True
    if host.replace(".", "").isdigit():
        return False  # looks like an address but is not a valid one
    labels = host.rstrip(".").split(".")
    return len(host) <= 253 and all(_HOSTNAME_LABEL.fullmatch(label) for label in labels)


def load_config(path: pathlib.Path, *, explicit: bool) -> ManagerConfig:
    """Read `path`; a missing file gives the defaults unless the caller named the file explicitly."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if explicit:
            raise ConfigError(path, None, None, "configuration file not found") from None
        log.info("file=%s not found, using default settings", path)
        return ManagerConfig()
    except OSError as exc:
        raise ConfigError(path, None, None, f"cannot read configuration: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(path, line, None, "not valid UTF-8 text") from None
    return _Loader(path, text).load()


class _Loader:
    """One parse of one file: the YAML node tree (for positions) and its Python values."""

    def __init__(self, path: pathlib.Path, text: str) -> None:
        self.path = path
        self.root, self.data = self._parse(text)

    def _parse(self, text: str) -> tuple[yaml.Node | None, Any]:
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            self._check_duplicate_keys(root)
            data = loader.construct_document(root) if root is not None else None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            raise ConfigError(self.path, line, None, f"invalid YAML: {exc.problem or exc.context}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(self.path, None, None, f"invalid YAML: {exc}") from None
        finally:
            loader.dispose()
        return root, data

    def _check_duplicate_keys(self, node: yaml.Node | None) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    if key_node.value in seen:
                        raise ConfigError(self.path, _line(key_node), key_node.value, "duplicate key")
                    seen.add(key_node.value)
                self._check_duplicate_keys(value_node)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                self._check_duplicate_keys(item)

    def node_at(self, *keys: str | int) -> yaml.Node | None:
        """The deepest node along `keys`; the parent when a key is absent."""
        node = self.root
        for key in keys:
            child: yaml.Node | None = None
            if isinstance(node, yaml.MappingNode):
                child = next((v for k, v in node.value if getattr(k, "value", None) == str(key)), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
                child = node.value[key]
            if child is None:
                break
            node = child
        return node

    def error(self, key: str, problem: str, *node_keys: str | int) -> ConfigError:
        return ConfigError(self.path, _line(self.node_at(*(node_keys or (key,)))), key, problem)

    def load(self) -> ManagerConfig:
        if self.data is None:
            return ManagerConfig(source_path=self.path)
        if not isinstance(self.data, dict):
            raise ConfigError(
                self.path, _line(self.root), None, "expected a mapping of settings at the top level"
            )
        self._check_meta()
        self._warn_unknown_keys()
        values: dict[str, Any] = {}
        for key in ("manager_name", "database", "local_manager_storage_path", "shared_storage_path"):
            value = self._get(key, str, "a string")
            if value is not None:
                if value == "" and key != "shared_storage_path":
                    raise self.error(key, "must not be empty")
                values[key] = value
        problem = database_url_problem(values.get("database", ""))
        if problem is not None:
            raise self.error("database", problem)
        listen = self._get("listen", str, "a string like ':8080'")
        if listen is not None:
            try:
                values["listen_host"], values["listen_port"] = parse_listen(listen)
            except ValueError as exc:
                raise self.error("listen", str(exc)) from None
        for key in _DURATION_KEYS:
            seconds = self._duration(key)
            if seconds is not None:
                values[key] = seconds
        if values.get("timeout_check_interval", DEFAULT_TIMEOUT_CHECK_INTERVAL) <= 0:
            raise self.error("timeout_check_interval", "must be longer than zero")
        if values.get("farm_history_interval", DEFAULT_FARM_HISTORY_INTERVAL) <= 0:
            raise self.error("farm_history_interval", "must be longer than zero")
        limit = values.get("job_script_time_limit", DEFAULT_JOB_SCRIPT_TIME_LIMIT)
        if not 0 < limit <= MAX_JOB_SCRIPT_TIME_LIMIT:
            raise self.error(
                "job_script_time_limit",
                f"must be longer than zero and at most {MAX_JOB_SCRIPT_TIME_LIMIT / 60:g}m,"
                f" not {self.data['job_script_time_limit']!r}",
            )
        values.update(self._scripts())
        for key in ("blocklist_threshold", "task_fail_after_softfail_count"):
            count = self._get(key, _is_int, "a whole number")
            if count is not None:
                if count < 1:
                    raise self.error(key, f"must be at least 1, not {count}")
                values[key] = count
        flamenco_version = self._get("flamenco_version", str, "a string")
        if flamenco_version is not None:
            if not FLAMENCO_VERSION_SHAPE.fullmatch(flamenco_version):
                raise self.error(
                    "flamenco_version",
                    f"{describe(flamenco_version)} is not a Flamenco 3 release like 3.7 or 3.3.1",
                )
            values["flamenco_version"] = flamenco_version
        autodiscoverable = self._get("autodiscoverable", lambda v: isinstance(v, bool), "true or false")
        if autodiscoverable is not None:
            values["autodiscoverable"] = autodiscoverable
        values["variables"] = self._variables(values.get("shared_storage_path", ""))
        token = self._api_token()
        if token:
            values["api_token"] = token
        return ManagerConfig(source_path=self.path, **values)

    def _scripts(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        scripts_dir = self._get("scripts_dir", str, "a directory path")
        if scripts_dir is not None:
            if not scripts_dir.strip():
                raise self.error("scripts_dir", "must not be empty")
            values["scripts_dir"] = scripts_dir
        memory = self._get("job_script_memory_limit", _is_int, "a whole number of MiB")
        if memory is not None:
            low, high = JOB_SCRIPT_MEMORY_LIMIT_RANGE[0], JOB_SCRIPT_MEMORY_LIMIT_RANGE[-1]
            if memory not in JOB_SCRIPT_MEMORY_LIMIT_RANGE:
                raise self.error("job_script_memory_limit", f"must be {low} to {high} MiB, not {memory}")
            values["job_script_memory_limit"] = memory
        engine = self._get("javascript_engine", str, "the path of node (or empty)")
        if engine is not None:
            values["javascript_engine"] = engine.strip()
        return values

    def _api_token(self) -> str:
        literal = self._get("api_token", str, "a string")
        path = self._get("api_token_file", str, "a file path")
        if literal is not None and path is not None:
            raise self.error("api_token_file", "give api_token or api_token_file, not both")
        key, token = "api_token", literal
        if path is not None:
            key = "api_token_file"
            file = pathlib.Path(path)
            if not file.is_absolute() and self.path is not None:
                file = pathlib.Path(self.path).parent / file
            try:
                token = file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise self.error(key, f"cannot read the token from {file}: {exc}") from None
        if token is None:
            return ""
        if not _TOKEN_SHAPE.fullmatch(token):
            raise self.error(
                key,
                f"the token must be at least {API_TOKEN_MIN_LENGTH} characters of A-Z a-z 0-9 . _ ~ + / = -"
                " (it travels in HTTP headers and a cookie)",
            )
        return token

    def _check_meta(self) -> None:
        meta = self.data.get("_meta")
        if meta is None:
            raise ConfigError(
                self.path, _line(self.root), "_meta", f"missing; add '_meta: {{version: {CONFIG_VERSION}}}'"
            )
        if not isinstance(meta, dict):
            raise self.error(
                "_meta", f"expected a mapping like {{version: {CONFIG_VERSION}}}, not {describe(meta)}"
            )
        version = meta.get("version")
        if not _is_int(version) or version != CONFIG_VERSION:
            raise self.error(
                "_meta.version",
                f"configuration version {version!r} is not supported; expected {CONFIG_VERSION}",
                "_meta",
                "version",
            )

    def _warn_unknown_keys(self) -> None:
        unknown = [
            str(key) for key in self.data if key not in _USED_KEYS and key not in _IGNORED_FLAMENCO_KEYS
        ]
        if unknown:
            located = ", ".join(f"{key} (line {_line(self.node_at(key))})" for key in unknown)
            log.warning("file=%s unknown keys ignored: %s", self.path, located)

    def _get(self, key: str, accepts: type | Callable[[Any], bool], expected: str) -> Any:
        """The value of a top-level key; None when absent or null (the default then applies)."""
        value = self.data.get(key)
        if value is None:
            return None
        ok = isinstance(value, accepts) if isinstance(accepts, type) else accepts(value)
        if not ok:
            raise self.error(key, f"expected {expected}, not {describe(value)}")
        return value

    def _duration(self, key: str) -> float | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool) and value == 0:
            return 0.0
        if not isinstance(value, str):
            raise self.error(key, f"expected a duration such as '1m30s', not {describe(value)}")
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise self.error(key, str(exc)) from None
        if seconds < 0 or not math.isfinite(seconds):
            raise self.error(key, f"must not be negative, not {value!r}")
        return seconds

    def _variables(self, shared_storage_path: str) -> Variables:
        raw = self.data.get("variables")
        try:
            return Variables.from_config(
                raw, shared_storage_path=shared_storage_path, manager_platform=current_platform()
            )
        except VariableError as exc:
            raise ConfigError(
                self.path, _line(self.node_at("variables", *exc.path)), exc.key, exc.message
            ) from None


def _line(node: yaml.Node | None) -> int:
    return node.start_mark.line + 1 if node is not None else 1


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
