"""Variables: defaults, one-way expansion for workers, two-way replacement, audiences and validation."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from flamenco_manager.variables import VariableError, Variables

STORAGE = {
    "storage": {
        "is_twoway": True,
        "values": [
            {"platform": "linux", "value": "/media/shared/"},
            {"platform": "windows", "value": "S:\\"},
            {"platform": "darwin", "value": "/Volumes/shared"},
        ],
    }
}


def make(raw: Any = None, *, manager_platform: str = "linux", shared: str = "/srv/flamenco") -> Variables:
    return Variables.from_config(raw, shared_storage_path=shared, manager_platform=manager_platform)


def params(value: Any) -> list[dict[str, Any]]:
    return [{"name": "exec", "parameters": {"p": value}, "total_step_count": 0}]


def expand(variables: Variables, value: Any, platform: str) -> Any:
    return variables.expand_for_worker(params(value), platform)[0]["parameters"]["p"]


# --- defaults and the implicit jobs variable ---------------------------------------------------------------


def test_defaults() -> None:
    variables = make()
    assert variables.for_audience("workers", "linux") == {
        "blender": {"value": "blender", "is_twoway": False},
        "blenderArgs": {"value": "-b -y", "is_twoway": False},
        "jobs": {"value": "/srv/flamenco", "is_twoway": False},
    }
    assert variables.for_audience("users", "windows")["blender"]["value"] == "blender.exe"
    assert variables.for_audience("workers", "darwin")["blender"]["value"] == "blender"


def test_configured_blender_replaces_only_that_default() -> None:
    variables = make({"blender": {"values": [{"platform": "linux", "value": "/opt/blender/blender"}]}})
    linux = variables.for_audience("workers", "linux")
    assert linux["blender"]["value"] == "/opt/blender/blender"
    assert linux["blenderArgs"]["value"] == "-b -y"
    assert "blender" not in variables.for_audience("workers", "windows")


def test_configured_jobs_variable_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="flamenco_manager.variables"):
        variables = make({"jobs": {"values": [{"platform": "all", "value": "/elsewhere"}]}})
    assert variables.for_audience("workers", "linux")["jobs"]["value"] == "/srv/flamenco"
    assert "variable=jobs" in caplog.text


# --- one-way expansion for workers -------------------------------------------------------------------------


def stock_render_command() -> list[dict[str, Any]]:
    return [
        {
            "name": "blender-render",
            "parameters": {
                "exe": "{blender}",
                "exeArgs": "{blenderArgs}",
                "argsBefore": [],
                "blendfile": "{jobs}/shot/shot.blend",
                "args": ["--render-output", "{jobs}/shot/out/######", "--render-frame", "1..5"],
            },
            "total_step_count": 5,
        }
    ]


def test_stock_render_task_reaches_linux_worker_runnable() -> None:
    commands = stock_render_command()
    expanded = make().expand_for_worker(commands, "linux")
    assert expanded[0]["parameters"] == {
        "exe": "blender",
        "exeArgs": "-b -y",
        "argsBefore": [],
        "blendfile": "/srv/flamenco/shot/shot.blend",
        "args": ["--render-output", "/srv/flamenco/shot/out/######", "--render-frame", "1..5"],
    }
    assert expanded[0]["total_step_count"] == 5
    assert commands == stock_render_command(), "the input must not be modified"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("{blender}", "blender.exe"),
        ("{unknown} stays", "{unknown} stays"),
        ("{blender} {blenderArgs}", "blender.exe -b -y"),
        (["{blender}", 3, None, "x"], ["blender.exe", 3, None, "x"]),
        (42, 42),
        ({"nested": "{blender}"}, {"nested": "{blender}"}),
        ("{{blender}}", "{blender.exe}"),
    ],
)
def test_expansion_of_parameter_shapes(value: Any, expected: Any) -> None:
    assert expand(make(), value, "windows") == expected


def test_specific_platform_beats_all() -> None:
    variables = make(
        {
            "render": {
                "values": [
                    {"platform": "all", "value": "/render"},
                    {"platforms": ["windows", "Darwin"], "value": "R:"},
                ]
            }
        }
    )
    assert expand(variables, "{render}", "linux") == "/render"
    assert expand(variables, "{render}", "windows") == "R:"
    assert expand(variables, "{render}", "darwin") == "R:"


def test_audience_specific_values() -> None:
    variables = make(
        {
            "tool": {
                "values": [
                    {"platform": "linux", "value": "/for/all"},
                    {"platform": "linux", "audience": "workers", "value": "/for/workers"},
                ]
            }
        }
    )
    assert expand(variables, "{tool}", "linux") == "/for/workers"
    assert variables.for_audience("users", "linux")["tool"]["value"] == "/for/all"
    assert variables.for_audience("workers", "linux")["tool"]["value"] == "/for/workers"


def test_variable_without_value_for_platform_is_left_alone() -> None:
    variables = make({"winonly": {"values": [{"platform": "windows", "value": "W:"}]}})
    assert expand(variables, "{winonly}/x", "linux") == "{winonly}/x"
    assert "winonly" not in variables.for_audience("workers", "linux")


# --- two-way -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "platform", "expected"),
    [
        # Manager (linux) paths are rewritten for workers elsewhere, with their separators.
        ("/media/shared/shot/frame.png", "windows", "S:\\shot\\frame.png"),
        ("/media/shared", "windows", "S:"),
        ("/media/shared/shot", "darwin", "/Volumes/shared/shot"),
        ("/media/shared/shot", "linux", "/media/shared/shot"),
        # Only whole path components match.
        ("/media/shared2/x", "windows", "/media/shared2/x"),
        # Not at the start: not a path of this variable.
        ("--out=/media/shared/x", "windows", "--out=/media/shared/x"),
        # Placeholders of two-way variables give paths in the worker's notation.
        ("{storage}/shot/frame.png", "windows", "S:\\shot\\frame.png"),
        ("{storage}\\shot\\frame.png", "linux", "/media/shared/shot/frame.png"),
        # One-way values are not paths to convert.
        ("{blenderArgs} a/b", "windows", "-b -y a/b"),
    ],
)
def test_two_way_for_workers(value: str, platform: str, expected: str) -> None:
    assert expand(make(STORAGE), value, platform) == expected


def test_two_way_in_string_lists() -> None:
    assert expand(make(STORAGE), ["--render-output", "/media/shared/out/####"], "windows") == [
        "--render-output",
        "S:\\out\\####",
    ]


def test_two_way_values_lose_trailing_separators() -> None:
    assert make(STORAGE).for_audience("users", "linux")["storage"] == {
        "value": "/media/shared",
        "is_twoway": True,
    }
    assert make(STORAGE).for_audience("users", "windows")["storage"]["value"] == "S:"


def test_longest_two_way_value_wins() -> None:
    raw = {
        **STORAGE,
        "renders": {
            "is_twoway": True,
            "values": [
                {"platform": "linux", "value": "/media/shared/renders"},
                {"platform": "windows", "value": "R:"},
            ],
        },
    }
    variables = make(raw)
    assert expand(variables, "/media/shared/renders/a", "windows") == "R:\\a"
    assert variables.replace_two_way_at_submission({"p": "/media/shared/renders/a"}, "linux") == {
        "p": "{renders}/a"
    }


@pytest.mark.parametrize(
    ("settings", "platform", "expected"),
    [
        ({"blendfile": "/media/shared/p/shot.blend"}, "linux", {"blendfile": "{storage}/p/shot.blend"}),
        ({"blendfile": "/MEDIA/Shared/p/shot.blend"}, "linux", {"blendfile": "{storage}/p/shot.blend"}),
        ({"blendfile": "s:\\p\\shot.blend"}, "windows", {"blendfile": "{storage}\\p\\shot.blend"}),
        ({"blendfile": "S:\\p\\shot.blend"}, "linux", {"blendfile": "S:\\p\\shot.blend"}),
        ({"blendfile": "/media/shared/p"}, "manager", {"blendfile": "{storage}/p"}),
        ({"blendfile": "/media/shared"}, "Linux", {"blendfile": "{storage}"}),
        ({"blendfile": "/media/sharedx"}, "linux", {"blendfile": "/media/sharedx"}),
        (
            {"chunk_size": 3, "has_previews": True, "f": None},
            "linux",
            {"chunk_size": 3, "has_previews": True, "f": None},
        ),
    ],
)
def test_two_way_at_submission(settings: dict[str, Any], platform: str, expected: dict[str, Any]) -> None:
    variables = make(STORAGE)
    assert variables.replace_two_way_at_submission(settings, platform) == expected


def test_submission_ignores_one_way_variables() -> None:
    variables = make({"proj": {"values": [{"platform": "linux", "value": "/proj"}]}})
    assert variables.replace_two_way_at_submission({"x": "/proj/a"}, "linux") == {"x": "/proj/a"}


def test_windows_manager_swaps_for_linux_workers() -> None:
    variables = make(STORAGE, manager_platform="windows")
    assert expand(variables, "S:\\shot\\a.png", "linux") == "/media/shared/shot/a.png"
    assert expand(variables, "S:\\shot\\a.png", "windows") == "S:\\shot\\a.png"


def test_expand_string_for_an_audience() -> None:
    variables = make(STORAGE)
    assert variables.expand_string("{storage}/projects", "users", "windows") == "S:\\projects"
    assert variables.expand_string("/media/shared/projects", "users", "darwin") == "/Volumes/shared/projects"
    with pytest.raises(ValueError, match="unknown audience"):
        variables.expand_string("x", "everyone", "linux")


# --- for_audience ------------------------------------------------------------------------------------------


def test_for_audience_rejects_unknown_audience() -> None:
    with pytest.raises(ValueError, match="unknown audience 'all'"):
        make().for_audience("all", "linux")


# --- validation --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "path", "message"),
    [
        ([], (), "expected a mapping of variable name to definition"),
        ({"x": "value"}, ("x",), "expected a mapping with 'values' (and optionally 'is_twoway')"),
        ({"x": {"values": []}}, ("x", "values"), "expected a non-empty list of values"),
        ({"x": {"value": "a"}}, ("x", "value"), "unknown field; expected 'values' or 'is_twoway'"),
        ({"x": {"is_twoway": "yes", "values": [{}]}}, ("x", "is_twoway"), "expected true or false"),
        (
            {"x": {"values": ["a"]}},
            ("x", "values", 0),
            "expected a mapping with 'value' and 'platform' or 'platforms'",
        ),
        ({"x": {"values": [{"platform": "linux"}]}}, ("x", "values", 0, "value"), "expected a string"),
        ({"x": {"values": [{"value": "a"}]}}, ("x", "values", 0), "missing 'platform' or 'platforms'"),
        (
            {"x": {"values": [{"value": "a", "platform": "linux", "platforms": ["windows"]}]}},
            ("x", "values", 0, "platforms"),
            "give either 'platform' or 'platforms', not both",
        ),
        (
            {"x": {"values": [{"value": "a", "platforms": "linux"}]}},
            ("x", "values", 0, "platforms"),
            "expected a non-empty list of platform names",
        ),
        (
            {"x": {"values": [{"value": "a", "platform": ""}]}},
            ("x", "values", 0, "platform"),
            "platform names must be non-empty strings",
        ),
        (
            {"x": {"values": [{"value": "a", "platform": "linux", "audience": "artists"}]}},
            ("x", "values", 0, "audience"),
            "expected one of all, workers, users, not 'artists'",
        ),
        ({"a{b": {"values": []}}, ("a{b",), "variable names must be non-empty and free of braces"),
    ],
)
def test_validation_names_variable_and_field(raw: Any, path: tuple[Any, ...], message: str) -> None:
    with pytest.raises(VariableError) as info:
        make(raw)
    assert (info.value.path, info.value.message) == (path, message)
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith("variables")
