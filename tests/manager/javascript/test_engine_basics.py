"""describe() and compile() on realistic job-type scripts, through a real Node child."""

from __future__ import annotations

import re

import pytest

from flamenco_manager.jobtypes.javascript import ScriptEngine, ScriptOutput, ScriptProblem

from .conftest import make_job, script

RENDER_SETTINGS = {
    "frames": "1-10",
    "chunk_size": 3,
    "render_output_path": "/render/shot/######",
    "blendfile": "/projects/shot.flamenco.blend",
    "fps": 24,
}
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


async def test_describe_returns_job_type(engine: ScriptEngine) -> None:
    described = await engine.describe("render_frames.js", script("render_frames.js"))
    assert described["label"] == "Render Frames"
    assert [s["key"] for s in described["settings"]] == [
        "frames",
        "chunk_size",
        "render_output_path",
        "blendfile",
        "fps",
    ]
    assert described["settings"][1] == {
        "key": "chunk_size",
        "type": "int32",
        "default": 1,
        "propargs": {"min": 1, "max": 100},
    }


async def test_compile_authors_tasks_commands_and_dependencies(engine: ScriptEngine) -> None:
    job = await engine.compile("render_frames.js", script("render_frames.js"), make_job(RENDER_SETTINGS))
    names = [t["name"] for t in job["tasks"]]
    assert names == ["render-1-3", "render-4-6", "render-7-9", "render-10", "preview-video"]
    first = job["tasks"][0]
    assert UUID_RE.match(first["uuid"])
    assert len({t["uuid"] for t in job["tasks"]}) == 5
    assert first["type"] == "blender" and first["priority"] == 50 and first["dependencies"] == []
    assert first["commands"] == [
        {
            "name": "blender-render",
            "parameters": {
                "exe": "{blender}",
                "argsBefore": ["-b", "-y"],
                "blendfile": "/projects/shot.flamenco.blend",
                "args": ["--render-output", "/render/shot/######", "--render-frame", "1..3"],
            },
            "totalStepCount": 0,
        }
    ]
    video = job["tasks"][4]
    assert video["dependencies"] == [0, 1, 2, 3]
    assert video["commands"][0]["parameters"]["fps"] == 24
    assert job["name"] == "shot-010" and job["priority"] == 50
    assert job["settings"] == RENDER_SETTINGS and job["metadata"] == {"project": "sprite"}
    assert job["output"][0] == {"level": "info", "text": "Render Frames job submitted"}


async def test_thrown_string_becomes_problem_with_line(engine: ScriptEngine) -> None:
    settings = dict(RENDER_SETTINGS, render_output_path="")
    with pytest.raises(ScriptProblem) as caught:
        await engine.compile("render_frames.js", script("render_frames.js"), make_job(settings))
    problem = caught.value
    assert problem.message == "no render_output_path setting!"
    assert problem.filename == "render_frames.js"
    assert problem.line == 20
    assert str(problem) == "render_frames.js:20: no render_output_path setting!"
    assert problem.output[0] == ScriptOutput("info", "Render Frames job submitted")


async def test_prelude_error_reports_the_calling_line(engine: ScriptEngine) -> None:
    settings = dict(RENDER_SETTINGS, frames="10-1")
    with pytest.raises(ScriptProblem) as caught:
        await engine.compile("render_frames.js", script("render_frames.js"), make_job(settings))
    assert str(caught.value) == 'render_frames.js:35: invalid range "10-1": empty range'
