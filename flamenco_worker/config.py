"""Worker settings: defaults < flamenco-worker.yaml < the instance's overlay < environment < flags,
validated once, then frozen.

Every problem becomes a `ConfigError` whose text names the place: `FILE:LINE: KEY: problem` for the YAML
file, `flag -NAME: problem` for the command line, `environment NAME: problem` for the environment.
"""

from __future__ import annotations

import logging
import os
import socket
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flamenco_worker import instance as instances
from flamenco_worker.status import RESERVED_EXIT_CODES
from flamenco_worker.task_environment import EntryError, Environment, check_environment, merge
from flamenco_worker.values import describe, describe_type

log = logging.getLogger(__name__)

DEFAULT_CONFIG_NAME = "flamenco-worker.yaml"
DEFAULT_TASK_TYPES = ("blender", "ffmpeg", "file-management", "misc")
DBUS_CHOICES = ("system", "session", "off")
#: YAML 1.1 reads an unquoted `off` (and `no`, `false`) as a boolean; for `dbus` they all mean "off".
_DBUS_OFF_SPELLINGS = (False, "no", "false")
#: Exit codes a restart code may use: 0 is success, 1 and 78 are the worker's own; 255 is the largest.
RESTART_CODE_RANGE = (2, 255)
LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(Exception):
    """Invalid configuration; the text is one line that says what and where."""


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    #: Where the Manager listens, in order of preference: replicas of one Manager (they share the
    #: workers' credentials); the worker uses the first that answers and fails over to the next.
    manager_urls: tuple[str, ...] = ()
    worker_name: str = field(default_factory=socket.gethostname)
    task_types: tuple[str, ...] = DEFAULT_TASK_TYPES
    restart_exit_code: int = 0
    dbus: str = "system"
    log_level: str = "info"
    oom_score_adjust: int | None = None
    flamenco_home: Path = field(default_factory=lambda: default_flamenco_home(os.environ))
    config_path: Path = Path(DEFAULT_CONFIG_NAME)
    #: `-instance NAME` (one of several workers on this machine, see instance.py); "" for the plain worker.
    instance: str = ""
    #: Variables task processes get on top of the worker's environment (`environment:`).
    environment: Environment = ()
    #: Without a manager_url: search the LAN for a Manager (true), or wait idle without one (false).
    discovery: bool = True

    @property
    def restartable(self) -> bool:
        return self.restart_exit_code != 0

    @property
    def manager_url(self) -> str:
        """The first configured Manager URL ("" when none); the one in use is the Manager link's to say."""
        return self.manager_urls[0] if self.manager_urls else ""


def default_flamenco_home(env: Mapping[str, str]) -> Path:
    """FLAMENCO_HOME, else the XDG data directory's `flamenco` folder."""
    if env.get("FLAMENCO_HOME"):
        return Path(env["FLAMENCO_HOME"])
    data_home = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "share")
    return Path(data_home) / "flamenco"


# --- value checks: each returns the normalised value or raises ValueError with the problem ---


def check_manager_url(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a URL string, not {describe(value)}")
    text = value.strip()
    if not text:
        return ""
    if "://" not in text:
        text = "http://" + text  # Flamenco accepts `host` and `host:port`
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
    if not parts.hostname:
        raise ValueError(f"has no host name: {value!r}")
    try:
        parts.port  # noqa: B018 - urllib validates the port lazily
    except ValueError:
        raise ValueError(f"has an invalid port: {value!r}") from None
    if parts.query or parts.fragment:
        raise ValueError(f"must not have a query or fragment: {value!r}")
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def check_manager_urls(value: Any) -> tuple[str, ...]:
    """One URL (a string; "" means none) or a non-empty list of distinct ones; list entries name their
    place (`item N`, from 1) so the error can name its line."""
    if not isinstance(value, list):
        url = check_manager_url(value)
        return (url,) if url else ()
    if not value:
        raise ValueError("must list at least one URL (or be left out)")
    urls: list[str] = []
    for index, item in enumerate(value):
        try:
            url = check_manager_url(item)
        except ValueError as exc:
            raise EntryError(index, f"item {index + 1}: {exc}") from None
        if not url:
            raise EntryError(index, f"item {index + 1}: must not be empty")
        if url in urls:
            raise EntryError(index, f"item {index + 1}: {url} is already item {urls.index(url) + 1}")
        urls.append(url)
    return tuple(urls)


def check_worker_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string, not {describe(value)}")
    return value.strip()


def check_task_types(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"must be a non-empty list of task type names, not {describe(value)}")
    names: list[str] = []
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"must contain only non-empty strings, not {describe(item)}")
        name = item.strip().lower()  # the Manager lowercases and trims them too
        if name not in names:
            names.append(name)
    return tuple(names)


def check_restart_exit_code(value: Any) -> int:
    """2–255 except 78; 0 means "not restartable" (as when the key is absent)."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    low, high = RESTART_CODE_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not (value == 0 or 1 <= value <= high):
        raise ValueError(
            f"must be a whole number from {low} to {high} (0: not restartable), not {describe(value)}"
        )
    if value in RESERVED_EXIT_CODES:
        reserved = ", ".join(str(c) for c in sorted(RESERVED_EXIT_CODES))
        raise ValueError(f"{value} is used by the worker itself ({reserved} are reserved); 47 is customary")
    return value


def check_oom_score_adjust(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1000:
        raise ValueError(f"must be a whole number from 0 to 1000, not {describe(value)}")
    return value


def _choice(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or value.strip().lower() not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}; not {describe(value)}")
        return value.strip().lower()

    return check


def check_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, not {describe_type(value)}")
    return value


def check_dbus(value: Any) -> str:
    """system, session or off; `off`, `no` and `false` (YAML's booleans, or as text) all mean off."""
    if value in _DBUS_OFF_SPELLINGS or (isinstance(value, str) and value.strip().lower() in ("no", "false")):
        return "off"
    if isinstance(value, bool):
        raise ValueError(f"must be one of {', '.join(DBUS_CHOICES)}; not {describe_type(value)} (true)")
    return _choice(DBUS_CHOICES)(value)


#: YAML key → (settings field, check). Keys are Flamenco's, plus `dbus` and `log_level` (ours).
#: `oom_score_adjust` (Linux): the value task processes get, so the kernel kills a runaway render first.
YAML_KEYS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "manager_url": ("manager_urls", check_manager_urls),
    "worker_name": ("worker_name", check_worker_name),
    "task_types": ("task_types", check_task_types),
    "restart_exit_code": ("restart_exit_code", check_restart_exit_code),
    "dbus": ("dbus", check_dbus),
    "log_level": ("log_level", _choice(LOG_LEVELS)),
    "oom_score_adjust": ("oom_score_adjust", check_oom_score_adjust),
    "environment": ("environment", check_environment),
    "discovery": ("discovery", check_bool),
}


# --- the YAML file ---


def parse_yaml(path: Path, text: str) -> tuple[yaml.Node | None, Any]:
    """The worker's one YAML reader: the node tree (for line numbers) and the values.

    Malformed YAML is a ConfigError naming `FILE:LINE`.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    return node, data


def read_yaml(path: Path, *, explicit: bool) -> dict[str, Any]:
    """The file's recognised values, checked. Missing file: {} unless it was named explicitly."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"{path}: configuration file not found") from None
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read configuration file: {exc}") from None

    node, data = parse_yaml(path, text)
    if node is None or data is None:
        return {}  # an empty file means defaults, as in Flamenco
    if not isinstance(node, yaml.MappingNode) or not isinstance(data, dict):
        raise ConfigError(f"{path}:{node.start_mark.line + 1}: the file must be a mapping of key: value")

    values: dict[str, Any] = {}
    seen: dict[str, int] = {}
    unknown: list[str] = []
    for key_node, _value in node.value:
        line = key_node.start_mark.line + 1
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
        if key in seen:
            raise ConfigError(f"{path}:{line}: {key}: given twice (first on line {seen[key]})")
        seen[key] = line
        if key not in YAML_KEYS:
            unknown.append(f"{key} (line {line})")
            continue
        field_name, check = YAML_KEYS[key]
        try:
            values[field_name] = check(data[key])
        except EntryError as exc:
            entry_line = _entry_line(_value, exc.entry) or line
            raise ConfigError(f"{path}:{entry_line}: {key}: {exc}") from None
        except ValueError as exc:
            raise ConfigError(f"{path}:{line}: {key}: {exc}") from None
    if unknown:
        log.warning("config=%s unknown keys ignored: %s", path, ", ".join(unknown))
    return values


def _entry_line(node: yaml.Node, entry: object) -> int | None:
    """The line of `entry`'s key inside a mapping node, or of item number `entry` in a list, if there."""
    if isinstance(node, yaml.SequenceNode) and isinstance(entry, int):
        return int(node.value[entry].start_mark.line) + 1 if 0 <= entry < len(node.value) else None
    if not isinstance(node, yaml.MappingNode):
        return None
    loader = yaml.SafeLoader("")
    try:
        for key_node, _value in node.value:
            if loader.construct_object(key_node, deep=True) == entry:
                return int(key_node.start_mark.line) + 1
    except yaml.YAMLError:
        return None
    finally:
        loader.dispose()
    return None


# --- putting it together ---


@dataclass(frozen=True, slots=True)
class FlagValues:
    """What the command line said; None means "not given"."""

    config: Path | None = None
    #: `-manager URL`, once per URL (several: replicas, in order of preference).
    manager: tuple[str, ...] | None = None
    restart_exit_code: int | None = None
    name: str | None = None
    dbus: str | None = None
    log_level: str | None = None
    instance: str | None = None


def load_settings(flags: FlagValues, env: Mapping[str, str]) -> WorkerSettings:
    config_path = flags.config or Path(DEFAULT_CONFIG_NAME)
    values: dict[str, Any] = {"config_path": config_path, "flamenco_home": default_flamenco_home(env)}
    values.update(read_yaml(config_path, explicit=flags.config is not None))
    if flags.instance is not None:
        values.update(_instance_values(flags.instance, config_path, values, env))

    if env.get("FLAMENCO_WORKER_NAME"):
        try:
            values["worker_name"] = check_worker_name(env["FLAMENCO_WORKER_NAME"])
        except ValueError as exc:
            raise ConfigError(f"environment FLAMENCO_WORKER_NAME: {exc}") from None

    if env.get("FLAMENCO_WORKER_DISCOVERY"):
        text = env["FLAMENCO_WORKER_DISCOVERY"].strip().lower()
        if text not in ("true", "false"):
            raise ConfigError(f"environment FLAMENCO_WORKER_DISCOVERY: must be true or false, not {text!r}")
        values["discovery"] = text == "true"

    if flags.manager is not None:
        # One flag reads as the key's string (an empty one means none); repeated, as its list.
        given = flags.manager[0] if len(flags.manager) == 1 else list(flags.manager)
        values["manager_urls"] = _flag("manager", check_manager_urls, given)
    if flags.restart_exit_code is not None:
        values["restart_exit_code"] = _flag(
            "restart-exit-code", check_restart_exit_code, flags.restart_exit_code
        )
    if flags.name is not None:
        values["worker_name"] = _flag("name", check_worker_name, flags.name)
    if flags.dbus is not None:
        values["dbus"] = _flag("dbus", check_dbus, flags.dbus)
    if flags.log_level is not None:
        values["log_level"] = flags.log_level
    return WorkerSettings(**values)


def _instance_values(
    name: str, config_path: Path, base: Mapping[str, Any], env: Mapping[str, str]
) -> dict[str, Any]:
    """What `-instance NAME` changes: its overlay file on top of the base, its own name and home."""
    instance = _flag("instance", instances.check_instance_name, name)
    overlay = read_yaml(instances.overlay_path(config_path, instance), explicit=False)
    values: dict[str, Any] = {"instance": instance, **overlay}
    if "environment" in overlay:
        values["environment"] = merge(base.get("environment", ()), overlay["environment"])
    if "worker_name" not in base and "worker_name" not in overlay:
        values["worker_name"] = instances.default_worker_name(instance)
    if not env.get("FLAMENCO_HOME"):
        values["flamenco_home"] = instances.instance_home(base["flamenco_home"], instance)
    return values


def _flag(name: str, check: Callable[[Any], Any], value: Any) -> Any:
    try:
        return check(value)
    except ValueError as exc:
        raise ConfigError(f"flag -{name}: {exc}") from None
