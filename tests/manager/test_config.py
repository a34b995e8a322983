"""Manager configuration: defaults, Flamenco's YAML keys, Go durations and one-line errors."""

from __future__ import annotations

import logging
import pathlib
import textwrap

import pytest

from flamenco_manager.config import (
    ConfigError,
    ManagerConfig,
    database_for_log,
    load_config,
    parse_duration,
    parse_listen,
)


def write(tmp_path: pathlib.Path, text: str, name: str = "flamenco-manager.yaml") -> pathlib.Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load_error(path: pathlib.Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, explicit=True)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- defaults and missing files ----------------------------------------------------------------------------


def test_missing_file_gives_defaults_when_not_explicit(tmp_path: pathlib.Path) -> None:
    config = load_config(tmp_path / "absent.yaml", explicit=False)
    assert config == ManagerConfig()
    assert config.source_path is None


def test_missing_file_is_an_error_when_explicit(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "absent.yaml"
    assert load_error(path) == f"{path}: configuration file not found"


def test_unreadable_path_is_an_error_even_when_not_explicit(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read configuration"):
        load_config(tmp_path, explicit=False)


def test_defaults_match_flamenco() -> None:
    config = ManagerConfig()
    assert config.manager_name == "Flamenco"
    assert config.database == "flamenco-manager.sqlite"
    assert (config.listen_host, config.listen_port, config.listen) == ("", 8080, ":8080")
    assert config.local_manager_storage_path == "./flamenco-manager-storage"
    assert config.shared_storage_path == ""
    assert config.task_timeout == 600.0
    assert config.worker_timeout == 60.0
    assert config.blocklist_threshold == 3
    assert config.task_fail_after_softfail_count == 3
    assert config.long_poll_max == 30.0
    assert config.timeout_check_interval == 60.0
    assert config.timeout_initial_delay == 300.0
    assert config.variables.for_audience("workers", "linux")["blender"] == {
        "value": "blender",
        "is_twoway": False,
    }


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n"])
def test_empty_file_gives_defaults(tmp_path: pathlib.Path, text: str) -> None:
    path = write(tmp_path, text)
    config = load_config(path, explicit=True)
    assert config == ManagerConfig(source_path=path)


# --- a full file -------------------------------------------------------------------------------------------


def test_full_file(tmp_path: pathlib.Path) -> None:
    path = write(
        tmp_path,
        """
        _meta:
          version: 3
        manager_name: Studio Farm
        database: /var/lib/flamenco/manager.sqlite
        database_check_period: 10m
        listen: 192.168.1.5:8081
        autodiscoverable: false
        local_manager_storage_path: /var/lib/flamenco/storage
        shared_storage_path: /srv/shared
        shaman:
          enabled: false
          garbageCollect:
            period: 24h
            maxAge: 744h
        task_timeout: 5m
        worker_timeout: 1m30s
        blocklist_threshold: 5
        task_fail_after_softfail_count: 2
        long_poll_max: 20s
        timeout_check_interval: 500ms
        timeout_initial_delay: 0
        mqtt:
          client:
            broker: tcp://localhost:1883
        variables:
          blender:
            values:
              - platform: linux
                value: /opt/blender/blender
        """,
    )
    config = load_config(path, explicit=True)
    assert config == ManagerConfig(
        manager_name="Studio Farm",
        database="/var/lib/flamenco/manager.sqlite",
        listen_host="192.168.1.5",
        listen_port=8081,
        local_manager_storage_path="/var/lib/flamenco/storage",
        shared_storage_path="/srv/shared",
        task_timeout=300.0,
        worker_timeout=90.0,
        blocklist_threshold=5,
        task_fail_after_softfail_count=2,
        long_poll_max=20.0,
        timeout_check_interval=0.5,
        timeout_initial_delay=0.0,
        autodiscoverable=False,
        variables=config.variables,
        source_path=path,
    )
    workers = config.variables.for_audience("workers", "linux")
    assert workers["blender"]["value"] == "/opt/blender/blender"
    assert workers["blenderArgs"]["value"] == "-b -y"
    assert workers["jobs"] == {"value": "/srv/shared", "is_twoway": False}


def test_null_values_keep_the_defaults(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "_meta: {version: 3}\nmanager_name:\ntask_timeout:\nvariables:\n")
    assert load_config(path, explicit=True) == ManagerConfig(source_path=path)


def test_task_timeout_zero_disables(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "_meta: {version: 3}\ntask_timeout: 0\nworker_timeout: 0s\n")
    config = load_config(path, explicit=True)
    assert (config.task_timeout, config.worker_timeout) == (0.0, 0.0)


def test_unknown_keys_are_logged_with_their_lines(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, "_meta: {version: 3}\nlisten_port: 80\nshaman: {enabled: true}\nfrobnicate: yes\n")
    with caplog.at_level(logging.WARNING, logger="flamenco_manager.config"):
        load_config(path, explicit=True)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"file={path} unknown keys ignored: listen_port (line 2), frobnicate (line 4)"]


def test_known_flamenco_keys_are_accepted_silently(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(
        tmp_path,
        "_meta: {version: 3}\nautodiscoverable: true\ndatabase_check_period: 1h\nmqtt: {}\nshaman: {}\n",
    )
    with caplog.at_level(logging.WARNING):
        load_config(path, explicit=True)
    assert caplog.records == []


# --- errors: file:line: key: problem ------------------------------------------------------------------------

ERROR_CASES = [
    # (file content, expected "LINE: KEY: problem" after the file name)
    ("manager_name: x\n", "1: _meta: missing; add '_meta: {version: 3}'"),
    ("_meta: {version: 2}\n", "1: _meta.version: configuration version 2 is not supported; expected 3"),
    (
        "manager_name: x\n_meta:\n  version: '3'\n",
        "3: _meta.version: configuration version '3' is not supported; expected 3",
    ),
    ("_meta: 3\n", "1: _meta: expected a mapping like {version: 3}, not a number (3)"),
    ("_meta: {}\n", "1: _meta.version: configuration version None is not supported; expected 3"),
    ("_meta: {version: 3}\nmanager_name: 12\n", "2: manager_name: expected a string, not a number (12)"),
    ("_meta: {version: 3}\ndatabase: ''\n", "2: database: must not be empty"),
    (
        "_meta: {version: 3}\ndatabase: mysql://farm@db/flamenco\n",
        "2: database: mysql:// is not a database this Manager speaks:"
        " give postgresql://USER@HOST/DBNAME or the path of a SQLite file",
    ),
    (
        "_meta: {version: 3}\ndatabase: postgresql://farm@db/\n",
        "2: database: a PostgreSQL URL names one database: postgresql://USER@HOST/DBNAME",
    ),
    (
        "_meta: {version: 3}\ndatabase: postgresql://farm@db:fivefour/flamenco\n",
        "2: database: not a valid PostgreSQL URL (Port could not be cast to integer value as 'fivefour')",
    ),
    ("_meta: {version: 3}\nlisten: 8080\n", "2: listen: expected a string like ':8080', not a number (8080)"),
    (
        "_meta: {version: 3}\nlisten: ':70000'\n",
        "2: listen: invalid listen address ':70000': expected HOST:PORT or :PORT;"
        " port 70000 is outside 1-65535",
    ),
    (
        "_meta: {version: 3}\n\nlisten: localhost\n",
        "3: listen: invalid listen address 'localhost': expected HOST:PORT or :PORT",
    ),
    (
        "_meta: {version: 3}\ntask_timeout: 10 minutes\n",
        "2: task_timeout: invalid duration '10 minutes'; use Go notation such as '1m30s', '500ms' or '2h'",
    ),
    ("_meta: {version: 3}\nworker_timeout: -1m\n", "2: worker_timeout: must not be negative, not '-1m'"),
    (
        "_meta: {version: 3}\nlong_poll_max: 30\n",
        "2: long_poll_max: expected a duration such as '1m30s', not a number (30)",
    ),
    (
        "_meta: {version: 3}\ntimeout_check_interval: 0s\n",
        "2: timeout_check_interval: must be longer than zero",
    ),
    ("_meta: {version: 3}\nblocklist_threshold: 0\n", "2: blocklist_threshold: must be at least 1, not 0"),
    (
        "_meta: {version: 3}\ntask_fail_after_softfail_count: true\n",
        "2: task_fail_after_softfail_count: expected a whole number, not a boolean (True)",
    ),
    (
        "_meta: {version: 3}\nblocklist_threshold: 2.5\n",
        "2: blocklist_threshold: expected a whole number, not a number (2.5)",
    ),
    ("_meta: {version: 3}\nmanager_name: a\nmanager_name: b\n", "3: manager_name: duplicate key"),
    ("- just\n- a list\n", "1: expected a mapping of settings at the top level"),
    ("_meta: {version: 3\n", "2: invalid YAML: expected ',' or '}', but got '<stream end>'"),
    (
        "_meta:\n  version: 3\n bad: indent\n",
        "3: invalid YAML: expected <block end>, but found '<block mapping start>'",
    ),
    (
        "_meta: {version: 3}\nvariables:\n  blender:\n    values:\n"
        "      - platform: linux\n        valu: x\n",
        "6: variables.blender.values[0].valu: unknown field; expected value, platform, platforms, audience",
    ),
    (
        "_meta: {version: 3}\nvariables:\n  storage:\n    is_twoway: yes\n    values:\n      - value: /srv\n",
        "6: variables.storage.values[0]: missing 'platform' or 'platforms'",
    ),
    (
        "_meta: {version: 3}\nvariables:\n  storage:\n    values:\n      - platform: linux\n"
        "        audience: everyone\n        value: /srv\n",
        "6: variables.storage.values[0].audience: expected one of all, workers, users, not 'everyone'",
    ),
    (
        "_meta: {version: 3}\nvariables: [a]\n",
        "2: variables: expected a mapping of variable name to definition",
    ),
]


@pytest.mark.parametrize(("text", "expected"), ERROR_CASES)
def test_errors_name_file_line_and_key(tmp_path: pathlib.Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    assert load_error(path) == f"{path}:{expected}"


def test_invalid_utf8_names_the_line(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "flamenco-manager.yaml"
    path.write_bytes(b"_meta: {version: 3}\nmanager_name: caf\xe9\n")
    assert load_error(path) == f"{path}:2: not valid UTF-8 text"


def test_config_error_attributes(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "_meta: {version: 3}\nblocklist_threshold: -2\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, explicit=False)
    assert (info.value.file, info.value.line, info.value.key) == (str(path), 2, "blocklist_threshold")


# --- durations ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("2h", 7200.0),
        ("1h2m3s", 3723.0),
        ("1.5h", 5400.0),
        (".5s", 0.5),
        ("250us", 0.00025),
        ("100µs", 0.0001),
        ("10ns", 1e-8),
        ("-1m", -60.0),
        ("+3s", 3.0),
        (" 10m ", 600.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "1d", "m", "1m 30s", "1..5s", "s1", "1M", "ten seconds"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


# --- listen ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        (":8080", ("", 8080)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
        ("localhost:1", ("localhost", 1)),
        ("manager.example.com:65535", ("manager.example.com", 65535)),
        ("[::1]:8080", ("::1", 8080)),
        ("[::]:9000", ("::", 9000)),
    ],
)
def test_parse_listen(text: str, parsed: tuple[str, int]) -> None:
    assert parse_listen(text) == parsed


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("8080", "expected HOST:PORT or :PORT$"),
        (":0", "port 0 is outside 1-65535"),
        (":65536", "port 65536 is outside 1-65535"),
        (":http", "port 'http' is not a number"),
        (":", "port '' is not a number"),
        ("::1:8080", "put an IPv6 address in brackets"),
        ("[nonsense]:8080", "'nonsense' is not an IPv6 address"),
        ("bad_host:80", "'bad_host' is not a valid host name or address"),
        ("300.1.1.1:80", "'300.1.1.1' is not a valid host name or address"),
    ],
)
def test_parse_listen_rejects(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_listen(text)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://farm@db.example/flamenco",
        "postgresql:///flamenco?host=/run/postgresql",
        "postgres://farm:secret@10.0.0.5:5433/flamenco?sslmode=require",
    ],
)
def test_a_postgresql_url_is_taken_as_given(tmp_path: pathlib.Path, url: str) -> None:
    path = tmp_path / "flamenco-manager.yaml"
    path.write_text(f"_meta: {{version: 3}}\ndatabase: '{url}'\n")
    assert load_config(path, explicit=True).database == url


def test_the_logged_database_hides_a_password() -> None:
    assert database_for_log("postgres://farm:secret@db:5433/flamenco") == "postgres://farm@db:5433/flamenco"
    assert database_for_log("/var/lib/flamenco/manager.sqlite") == "/var/lib/flamenco/manager.sqlite"
