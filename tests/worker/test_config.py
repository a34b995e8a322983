"""Configuration: precedence, validation, and the one-line errors that exit 78."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from flamenco_worker.config import ConfigError, FlagValues, WorkerSettings, load_settings
from flamenco_worker.flags import parse_command_line
from tests.support.waiting import PipeLines


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "flamenco-worker.yaml"
    path.write_text(text)
    return path


def settings(
    tmp_path: Path, text: str | None, argv: Sequence[str] = (), env: dict[str, str] | None = None
) -> WorkerSettings:
    argv = list(argv)
    if text is not None:
        argv = ["-config", str(write(tmp_path, text)), *argv]
    return load_settings(parse_command_line(argv).flags, env or {"HOME": str(tmp_path)})


def test_defaults_without_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings(FlagValues(), {"HOME": "/home/x"})
    assert s.manager_url == ""
    assert s.task_types == ("blender", "ffmpeg", "file-management", "misc")
    assert s.restart_exit_code == 0 and not s.restartable
    assert s.dbus == "system"
    assert s.flamenco_home == Path("/home/x/.local/share/flamenco")


def test_flamenco_home_from_env_and_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings(FlagValues(), {"FLAMENCO_HOME": "/srv/fh"}).flamenco_home == Path("/srv/fh")
    assert load_settings(FlagValues(), {"XDG_DATA_HOME": "/x"}).flamenco_home == Path("/x/flamenco")


def test_yaml_values(tmp_path: Path) -> None:
    s = settings(
        tmp_path,
        "manager_url: render-mgr:8083\nworker_name: node1\ntask_types: [Blender, ' misc ']\n"
        "restart_exit_code: 47\ndbus: session\nlog_level: debug\n",
    )
    assert s.manager_url == "http://render-mgr:8083/"
    assert s.worker_name == "node1"
    assert s.task_types == ("blender", "misc")
    assert s.restart_exit_code == 47 and s.restartable
    assert (s.dbus, s.log_level) == ("session", "debug")


def test_precedence_defaults_yaml_env_flags(tmp_path: Path) -> None:
    text = "worker_name: from-yaml\nmanager_url: http://yaml:1/\nrestart_exit_code: 42\n"
    assert settings(tmp_path, text).worker_name == "from-yaml"
    assert settings(tmp_path, text, env={"FLAMENCO_WORKER_NAME": "from-env"}).worker_name == "from-env"
    s = settings(
        tmp_path,
        text,
        ["-name", "from-flag", "-manager", "https://flag:2/x", "-restart-exit-code", "47"],
        env={"FLAMENCO_WORKER_NAME": "from-env"},
    )
    assert (s.worker_name, s.manager_url, s.restart_exit_code) == ("from-flag", "https://flag:2/x/", 47)
    assert settings(tmp_path, text, ["-restart-exit-code", "0"]).restartable is False


def test_flag_forms(tmp_path: Path) -> None:
    for argv in (["-manager", "h:1"], ["--manager", "h:1"], ["-manager=h:1"], ["--manager=h:1"]):
        assert settings(tmp_path, "", argv).manager_url == "http://h:1/"
    assert parse_command_line(["-debug"]).flags.log_level == "debug"
    assert parse_command_line(["-quiet"]).flags.log_level == "warning"
    assert parse_command_line(["-quiet", "-debug"]).flags.log_level == "debug"


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    assert settings(tmp_path, "").task_types == ("blender", "ffmpeg", "file-management", "misc")
    assert settings(tmp_path, "# only a comment\n").restart_exit_code == 0


def test_unknown_keys_are_named_in_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        settings(tmp_path, "manager_url: h\nrestart_exit_cod: 47\n")
    assert "restart_exit_cod (line 2)" in caplog.text


CASES = [
    (
        "restart_exit_code: abc\n",
        "flamenco-worker.yaml:1: restart_exit_code: must be a whole number from 2 to 255"
        " (0: not restartable),"
        " not a string ('abc')",
    ),
    (
        "restart_exit_code: 256\n",
        "flamenco-worker.yaml:1: restart_exit_code: must be a whole number from 2 to 255"
        " (0: not restartable),"
        " not 256",
    ),
    ("restart_exit_code: -3\n", "flamenco-worker.yaml:1: restart_exit_code: must be a whole number"),
    (
        "restart_exit_code: true\n",
        "flamenco-worker.yaml:1: restart_exit_code: must be a whole number from 2 to 255"
        " (0: not restartable),"
        " not a boolean (True)",
    ),
    ("restart_exit_code: 4.5\n", "flamenco-worker.yaml:1: restart_exit_code: must be a whole number"),
    (
        "oom_score_adjust: 1001\n",
        "flamenco-worker.yaml:1: oom_score_adjust: must be a whole number from 0 to 1000, not 1001",
    ),
    ("dbus: on\n", "flamenco-worker.yaml:1: dbus: must be one of system, session, off; not a boolean (true)"),
    (
        "# c\nrestart_exit_code: 1\n",
        "flamenco-worker.yaml:2: restart_exit_code: 1 is used by the worker itself",
    ),
    ("restart_exit_code: 78\n", "flamenco-worker.yaml:1: restart_exit_code: 78 is used by the worker itself"),
    ("manager_url: ftp://x/\n", "flamenco-worker.yaml:1: manager_url: must be an http:// or https:// URL"),
    ("manager_url: 'http://h:99999/'\n", "flamenco-worker.yaml:1: manager_url: has an invalid port"),
    ("manager_url: {a: 1}\n", "flamenco-worker.yaml:1: manager_url: must be a URL string, not an object"),
    ("task_types: blender\n", "flamenco-worker.yaml:1: task_types: must be a non-empty list"),
    ("task_types: [blender, 3]\n", "flamenco-worker.yaml:1: task_types: must contain only non-empty strings"),
    ("worker_name: ''\n", "flamenco-worker.yaml:1: worker_name: must be a non-empty string"),
    ("dbus: maybe\n", "flamenco-worker.yaml:1: dbus: must be one of system, session, off"),
    ("log_level: loud\n", "flamenco-worker.yaml:1: log_level: must be one of debug, info, warning, error"),
    ("a: 1\na: 2\n", "flamenco-worker.yaml:2: a: given twice (first on line 1)"),
    (
        "manager_url: h\nmanager_url: h2\n",
        "flamenco-worker.yaml:2: manager_url: given twice (first on line 1)",
    ),
    ("manager_url: [\n", "flamenco-worker.yaml:2: invalid YAML"),
    ("key: value: other\n", "flamenco-worker.yaml:1: invalid YAML"),
    ("- a\n- b\n", "flamenco-worker.yaml:1: the file must be a mapping"),
]


@pytest.mark.parametrize(("text", "message"), CASES, ids=[c[0] for c in CASES])
def test_invalid_yaml_values(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings(tmp_path, text)
    assert str(err.value).startswith(
        str(tmp_path / message.split(":", 1)[0]) + ":" + message.split(":", 1)[1]
    )
    assert "\n" not in str(err.value)


FLAG_CASES = [
    (["-restart-exit-code", "x"], "-restart-exit-code"),
    (
        ["-restart-exit-status", "300"],
        "flag -restart-exit-code: must be a whole number from 2 to 255 (0: not restartable), not 300",
    ),
    (["-restart-exit-code", "x"], "flag -restart-exit-code: must be a whole number from 2 to 255"),
    (["-restart-exit-code", "78"], "flag -restart-exit-code: 78 is used by the worker itself"),
    (["-manager", "gopher://x"], "flag -manager: must be an http:// or https:// URL"),
    (["-dbus", "both"], "command line: flag -dbus: invalid choice: 'both'"),
    (["-bogus"], "unrecognized arguments: -bogus"),
    (["-name", ""], "flag -name: must be a non-empty string"),
    (
        ["-config", "/nonexistent/flamenco-worker.yaml"],
        "/nonexistent/flamenco-worker.yaml: configuration file not found",
    ),
]


@pytest.mark.parametrize(("argv", "message"), FLAG_CASES, ids=[" ".join(a) for a, _ in FLAG_CASES])
def test_invalid_flags(tmp_path: Path, argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings(tmp_path, None, argv)
    assert message in str(err.value)


def run_worker(cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run(
        [sys.executable, "-m", "flamenco_worker", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
    )


@pytest.mark.parametrize(
    ("yaml_text", "argv", "message"),
    [
        (
            "restart_exit_code: 300\n",
            [],
            "flamenco-worker.yaml:1: restart_exit_code: must be a whole number from 2 to 255"
            " (0: not restartable), not 300",
        ),
        ("manager_url: x\n  bad: [\n", [], "flamenco-worker.yaml:2: invalid YAML"),
        ("", ["-restart-exit-code", "1"], "flag -restart-exit-code: 1 is used by the worker itself"),
        ("", ["-dbus"], "flamenco-worker: command line: flag -dbus: expected one argument (see -help)"),
    ],
)
def test_process_exits_78_with_one_clear_line(
    tmp_path: Path, yaml_text: str, argv: list[str], message: str
) -> None:
    (tmp_path / "flamenco-worker.yaml").write_text(yaml_text)
    result = run_worker(tmp_path, *argv)
    assert result.returncode == 78
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("flamenco-worker: ") and message in lines[0]
    assert result.stdout == ""


def test_help_explains_flags_and_exit_codes(tmp_path: Path) -> None:
    result = run_worker(tmp_path, "-help")
    assert result.returncode == 0
    for text in (
        "-manager URL",
        "-restart-exit-code",
        "-restart-exit-status",
        "-config PATH",
        "-dbus",
        "-version",
        "-quiet",
        "-debug",
        "exit codes:",
        "78",
        "SIGHUP",
        "signals:",
        "SIGTERM",
        "0 means not restartable",
    ):
        assert text in " ".join(result.stdout.split()), text


def test_version(tmp_path: Path) -> None:
    result = run_worker(tmp_path, "-version")
    assert result.returncode == 0
    assert result.stdout.startswith("flamenco-worker ")


def test_shipped_example_is_valid_and_complete(caplog: pytest.LogCaptureFixture) -> None:
    example = Path(__file__).resolve().parents[2] / "config" / "flamenco-worker.yaml"
    with caplog.at_level(logging.WARNING):
        s = load_settings(FlagValues(config=example), {})
    assert caplog.text == ""
    assert s.restart_exit_code == 47 and s.manager_url == "" and s.discovery  # empty: find the Manager


@pytest.mark.parametrize(
    "text", ["dbus: off", "dbus: no", "dbus: false", "dbus: 'off'", "dbus: 'No'", "dbus: OFF"]
)
def test_dbus_off_in_any_yaml_spelling_means_off(tmp_path: Path, text: str) -> None:
    # YAML 1.1 reads an unquoted off/no/false as a boolean; the user meant "no D-Bus".
    assert settings(tmp_path, text + "\n").dbus == "off"


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["-restart-exit-code", "47"], "restartable=yes restart_exit_code=47"),
        (["-restart-exit-code", "0"], "restartable=no"),
        ([], "restartable=no"),
    ],
)
def test_start_up_log_says_whether_the_worker_is_restartable(
    tmp_path: Path, argv: list[str], line: str
) -> None:
    # -manager on a closed port: the worker starts, logs and keeps retrying; SIGTERM ends it.
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flamenco_worker",
            "-config",
            "/dev/null",
            "-dbus",
            "off",
            "-manager",
            "127.0.0.1:9",
            *argv,
        ],
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "FLAMENCO_HOME": str(tmp_path / "home"),
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        },
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert worker.stderr is not None
        PipeLines(worker.stderr).wait_line(lambda text: line in text, 15)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=30)


@pytest.mark.parametrize(
    ("yaml_text", "env", "expected"),
    [
        ("", {}, True),
        ("discovery: false\n", {}, False),
        ("discovery: false\n", {"FLAMENCO_WORKER_DISCOVERY": "true"}, True),
    ],
)
def test_discovery_setting_and_its_environment_override(
    tmp_path: Path, yaml_text: str, env: dict[str, str], expected: bool
) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(yaml_text)
    assert load_settings(FlagValues(config=path), env).discovery is expected


@pytest.mark.parametrize(
    ("yaml_text", "env", "problem"),
    [
        ("discovery: maybe\n", {}, "w.yaml:1: discovery: must be true or false"),
        ("", {"FLAMENCO_WORKER_DISCOVERY": "yes"}, "FLAMENCO_WORKER_DISCOVERY: must be true or false"),
    ],
)
def test_bad_discovery_values_are_named(
    tmp_path: Path, yaml_text: str, env: dict[str, str], problem: str
) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as info:
        load_settings(FlagValues(config=path), env)
    assert problem in str(info.value)
