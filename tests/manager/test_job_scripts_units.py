"""The parts of JavaScript job types that need no engine: a JOB_TYPE checked into AvailableJobType JSON,
and an authored job checked into a CompiledJob."""

from __future__ import annotations

import datetime
import logging
import pathlib
from typing import Any

import pytest

from flamenco_manager.config import ConfigError, load_config
from flamenco_manager.jobtypes import etag
from flamenco_manager.jobtypes.script_info import JobTypeScriptError, job_type_name, placeholder, script_info
from flamenco_manager.jobtypes.script_job import JobContext, JobScriptError, authored_job, job_object
from flamenco_manager.services import job_types_of
from flamenco_manager.services.job_type_check import check_settings, read_check_settings
from flamenco_manager.services.job_types import FileStamp, JobTypes, scan

CONTEXT = JobContext(
    job_uuid="6f2f3c55-3a0a-4b8e-9d53-8f0c4f3d2a11",
    name="shot",
    type="studio-render",
    priority=50,
    created=datetime.datetime(2026, 11, 30, 9, 12, 13, 123456, tzinfo=datetime.UTC),
)


def test_job_type_names_follow_the_file_name() -> None:
    assert job_type_name("simple_blender_render.js") == "simple-blender-render"
    assert job_type_name("cycles-optix_gpu.js") == "cycles-optix-gpu"


def test_job_type_info_keeps_known_fields_in_declared_order_and_names_unknown_ones() -> None:
    described = {
        "label": "Render",
        "description": "d",
        "icon": "x",
        "settings": [
            {"type": "int32", "key": "chunk", "default": 2, "requierd": True, "propargs": {"min": 1}},
            {"key": "frames", "type": "string", "required": True, "eval": "'1-10'", "label": "Frames"},
        ],
    }
    loaded = script_info("render.js", described)
    assert loaded.info["name"] == "render"
    assert loaded.info["settings"] == [
        {"type": "int32", "key": "chunk", "default": 2, "propargs": {"min": 1}},
        {"key": "frames", "type": "string", "required": True, "eval": "'1-10'", "label": "Frames"},
    ]
    assert list(loaded.info["settings"][0]) == ["type", "key", "default", "propargs"]
    assert loaded.dropped == ("JOB_TYPE.icon", "settings[0] (chunk).requierd")
    without_etag = {k: v for k, v in loaded.info.items() if k != "etag"}
    assert loaded.info["etag"] == etag(without_etag)


@pytest.mark.parametrize(
    ("described", "expected"),
    [
        ([], "JOB_TYPE: must be an object"),
        ({"settings": []}, "JOB_TYPE: label must be a non-empty string, not null"),
        ({"label": "x", "settings": {}}, "settings must be a list"),
        ({"label": "x", "settings": [{"type": "string"}]}, "settings[0]: key must be a non-empty string"),
        ({"label": "x", "settings": [{"key": "a"}]}, "settings[0] (a): type must be one of string, int32"),
        ({"label": "x", "settings": [{"key": "a", "type": "int64"}]}, "not a string ('int64')"),
        (
            {"label": "x", "settings": [{"key": "a", "type": "int32", "default": "1"}]},
            "default must be a value of type int32",
        ),
        (
            {"label": "x", "settings": [{"key": "a", "type": "string", "visible": "always"}]},
            "visible must be one of",
        ),
        (
            {"label": "x", "settings": [{"key": "a", "type": "string", "subtype": "path"}]},
            "subtype must be one of",
        ),
        (
            {"label": "x", "settings": [{"key": "a", "type": "bool"}, {"key": "a", "type": "bool"}]},
            "declared twice",
        ),
        (
            {"label": "x", "settings": [{"key": "a", "type": "string", "evalInfo": {"showLinkButton": 1}}]},
            "evalInfo",
        ),
    ],
)
def test_an_unusable_job_type_names_the_file_and_the_problem(described: Any, expected: str) -> None:
    with pytest.raises(JobTypeScriptError) as caught:
        script_info("studio.js", described)
    assert str(caught.value).startswith("studio.js: JOB_TYPE")
    assert expected in str(caught.value)


def test_placeholders_for_settings_the_add_on_would_fill_in() -> None:
    info = {
        "settings": [
            {"key": "frames", "type": "string", "required": True},
            {"key": "count", "type": "int32", "required": True, "propargs": {"min": 4}},
            {"key": "fps", "type": "float", "eval": "24"},
            {"key": "flag", "type": "bool", "required": True},
            {"key": "format", "type": "string", "required": True, "choices": ["EXR", "PNG"]},
            {"key": "chunk", "type": "int32", "required": True, "default": 7},
            {"key": "optional", "type": "string"},
        ]
    }
    assert check_settings(info, {"frames": "1-100"}) == {
        "frames": "1-100",
        "count": 4,
        "fps": 24.0,
        "flag": False,
        "format": "EXR",
    }
    assert placeholder({"key": "n", "type": "int32"}) == 1


def authored(**changes: Any) -> dict[str, Any]:
    job = {
        "name": "shot",
        "priority": 50,
        "settings": {"frames": "1-2"},
        "metadata": {"user": "ann"},
        "tasks": [
            {
                "name": "render",
                "type": "blender",
                "priority": 50,
                "commands": [{"name": "blender-render", "parameters": {"a": 1}, "totalStepCount": 2}],
                "dependencies": [],
            },
            {
                "name": "video",
                "type": "ffmpeg",
                "commands": [{"name": "frames-to-video", "parameters": {}}],
                "dependencies": [0],
            },
        ],
        "output": [],
    }
    job.update(changes)
    return job


def convert(job: Any) -> Any:
    return authored_job(job, filename="studio.js", context=CONTEXT, definitions=[], submitted_settings={})


def test_an_authored_job_becomes_a_compiled_job() -> None:
    result = convert(
        authored(name="shot (v2)", priority=70, metadata={"user": "ann", "frames": 24, "ok": True})
    )
    assert result.name == "shot (v2)" and result.priority == 70
    assert result.compiled.metadata == {"user": "ann", "frames": "24", "ok": "true"}
    render, video = result.compiled.tasks
    assert render.commands == [{"name": "blender-render", "parameters": {"a": 1}, "total_step_count": 2}]
    assert render.steps_total == 2 and video.depends_on == [0] and video.priority == 50


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"tasks": []}, "no tasks were added"),
        ({"name": ""}, "job.name must be a non-empty string"),
        ({"priority": 101}, "job.priority must be a whole number from 0 to 100"),
        ({"settings": None}, "job.settings must stay an object"),
        ({"metadata": {"a": {"b": 1}}}, "job.metadata.a must be a string"),
        ({"tasks": [{"name": "", "type": "misc"}]}, "task 1: name must be a non-empty string"),
        ({"tasks": [{"name": "t", "type": None}]}, "task 1 't': type must be a non-empty string"),
        ({"tasks": [{"name": "t", "type": "misc", "commands": [{"parameters": {}}]}]}, "command 1: name"),
        (
            {"tasks": [{"name": "t", "type": "misc", "commands": [{"name": "echo", "parameters": [1]}]}]},
            "command 1 (echo): parameters must be an object",
        ),
        (
            {"tasks": [{"name": "t", "type": "misc", "dependencies": [3]}]},
            "depends on 3, which is not a task",
        ),
        ({"tasks": [{"name": "t", "type": "misc", "dependencies": [0]}]}, "depends on itself"),
        (
            {
                "tasks": [
                    {"name": "a", "type": "misc", "dependencies": [1]},
                    {"name": "b", "type": "misc", "dependencies": [0]},
                ]
            },
            "cycle ('a' -> 'b' -> 'a')",
        ),
    ],
)
def test_an_unusable_authored_job_names_the_script_and_the_task(
    changes: dict[str, Any], expected: str
) -> None:
    with pytest.raises(JobScriptError) as caught:
        convert(authored(**changes))
    assert str(caught.value).startswith("studio.js: compileJob: ")
    assert expected in str(caught.value)


def test_the_job_object_uses_flamencos_names() -> None:
    job = job_object(CONTEXT, {"frames": "1"}, {"user": "ann"})
    assert job == {
        "jobID": CONTEXT.job_uuid,
        "name": "shot",
        "jobType": "studio-render",
        "priority": 50,
        "status": "under-construction",
        "created": "2026-11-30T09:12:13.123456+00:00",
        "settings": {"frames": "1"},
        "metadata": {"user": "ann"},
        "storage": {"shamanCheckoutID": ""},
        "workerTagUUID": "",
    }


def test_scripts_are_regular_js_files_of_at_least_8_bytes(tmp_path: pathlib.Path) -> None:
    (tmp_path / "good_one.js").write_text("// a job type\n")
    (tmp_path / "tiny.js").write_text("//\n")
    (tmp_path / "notes.txt").write_text("not a script at all\n")
    (tmp_path / "folder.js").mkdir()
    (tmp_path / "linked.js").symlink_to(tmp_path / "good_one.js")
    (tmp_path / ".#lock.js").symlink_to("user@host.1234")  # an editor's lock: a dangling link
    found = scan(tmp_path)
    assert found is not None and sorted(found) == ["good_one.js", "linked.js"]
    assert isinstance(found["good_one.js"], FileStamp)
    assert scan(tmp_path / "missing") is None


def test_script_settings_in_the_configuration(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "flamenco-manager.yaml"
    path.write_text("_meta: {version: 3}\n")
    defaults = load_config(path, explicit=True)
    assert (defaults.scripts_dir, defaults.job_script_time_limit, defaults.job_script_memory_limit) == (
        "scripts",
        5.0,
        256,
    )
    assert job_types_of(defaults).scripts_dir == tmp_path / "scripts"  # beside the configuration file
    path.write_text(
        "_meta: {version: 3}\nscripts_dir: job-types\njob_script_time_limit: 1500ms\n"
        "job_script_memory_limit: 512\njavascript_engine: bin/node\n"
    )
    config = load_config(path, explicit=True)
    registry = job_types_of(config)
    assert registry.scripts_dir == tmp_path / "job-types"
    assert registry.configured_engine == str(tmp_path / "bin" / "node")
    assert (registry.limits.time_limit, registry.limits.memory_mib) == (1.5, 512)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("job_script_time_limit: 0", ":2: job_script_time_limit: must be longer than zero"),
        ("job_script_time_limit: 1h", ":2: job_script_time_limit: must be longer than zero and at most 10m"),
        ("job_script_time_limit: soon", ":2: job_script_time_limit: invalid duration"),
        ("job_script_memory_limit: 8", ":2: job_script_memory_limit: must be 16 to 65536 MiB, not 8"),
        ("job_script_memory_limit: 1.5", ":2: job_script_memory_limit: expected a whole number of MiB"),
        ("scripts_dir: ''", ":2: scripts_dir: must not be empty"),
        ("javascript_engine: [node]", ":2: javascript_engine: expected the path of node"),
    ],
)
def test_bad_script_settings_name_file_line_and_key(tmp_path: pathlib.Path, line: str, expected: str) -> None:
    path = tmp_path / "flamenco-manager.yaml"
    path.write_text(f"_meta: {{version: 3}}\n{line}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, explicit=True)
    assert f"{path}{expected}" in str(caught.value)


async def test_a_missing_scripts_directory_means_the_builtins_and_one_line(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = JobTypes(tmp_path / "scripts")
    caplog.set_level(logging.INFO, logger="flamenco_manager.services.job_types")
    await registry.start()
    await registry.reload()
    assert [t["name"] for t in registry.available()] == ["echo-sleep-test", "simple-blender-render"]
    lines = [r.getMessage() for r in caplog.records if "directory does not exist" in r.getMessage()]
    assert len(lines) == 1 and str(tmp_path / "scripts") in lines[0]
    (tmp_path / "scripts").mkdir()
    await registry.reload()
    assert any("directory is back" in r.getMessage() for r in caplog.records)
    await registry.close()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("studio-render: [1, 2]\n", "settings.yaml:1: studio-render: expected a mapping of setting keys"),
        ("- frames\n", "settings.yaml:1: expected a mapping of job type names to settings"),
        ("studio-render: {frames: '1-10'\n", "settings.yaml:2: invalid YAML"),
    ],
)
def test_check_settings_files_name_file_line_and_key(
    tmp_path: pathlib.Path, text: str, expected: str
) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        read_check_settings(path)
    assert expected in str(caught.value)


def test_check_settings_file_gives_settings_per_job_type(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("studio-render:\n  frames: 1-10\n  chunk_size: 5\necho-js: {message: hi}\n")
    assert read_check_settings(path) == {
        "studio-render": {"frames": "1-10", "chunk_size": 5},
        "echo-js": {"message": "hi"},
    }
