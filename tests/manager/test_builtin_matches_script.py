"""The built-in job types compile exactly what the same job types, written as job-type scripts, compile.

`flamenco_job_scripts/` holds simple-blender-render and echo-sleep-test as Flamenco v3 job-type scripts
(a `JOB_TYPE` and `compileJob(job)`), written from Flamenco's documented behaviour. Every submission below
goes through the Python built-in (`compile_job`) and through the script in the JavaScript engine; both
results are mapped to one shape and compared as canonical JSON text, so a `24.0` where the script gives
`24`, or `"24"` for `24`, is a difference. A submission one side refuses, the other must refuse too.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import json
import pathlib
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from flamenco_manager.jobtypes import JobCompileError, compile_job, get_job_type, javascript
from flamenco_manager.jobtypes.settings import apply_settings

SCRIPTS = pathlib.Path(__file__).parent / "flamenco_job_scripts"
# Late in the UTC day, so a local {timestamp} east of Greenwich falls on the next day.
CREATED = datetime.datetime(2026, 3, 5, 23, 47, 9, 123456, tzinfo=datetime.UTC)
# {timestamp} is local time on both sides; a zone 5:45 ahead of UTC shows any slip of the day, hour or minute.
LOCAL_ZONE = "Asia/Kathmandu"
LOCAL_TIMESTAMP = "2026-03-06_053209"
REFUSED = {"refused": True}

RENDER_SETTINGS: dict[str, Any] = {
    "frames": "1-10",
    "chunk_size": 3,
    "render_output_root": "/render/out",
    "add_path_components": 0,
    "render_output_path": "/render/out/shot/{timestamp}/######",
    "blendfile": "/render/jobs/shot.flamenco.blend",
    "fps": 24.0,
    "format": "PNG",
    "image_file_extension": ".png",
    "has_previews": False,
    "scene": "Scene",
}

# Image formats by the scene's file_format, with the extension Blender gives their files.
IMAGE_FORMATS = {
    "PNG": ".png",
    "JPEG": ".jpg",
    "BMP": ".bmp",
    "TIFF": ".tif",
    "TARGA": ".tga",
    "TARGA_RAW": ".tga",
    "WEBP": ".webp",
    "JPEG2000": ".jp2",
    "IRIS": ".rgb",
    "CINEON": ".cin",
    "DPX": ".dpx",
    "HDR": ".hdr",
    "OPEN_EXR": ".exr",
    "OPEN_EXR_MULTILAYER": ".exr",
    "EXR": ".exr",
    "MULTILAYER": ".exr",
}
VIDEO_FORMATS = ["FFMPEG", "AVI_RAW", "AVI_JPEG"]


def _render_cases() -> list[tuple[str, dict[str, Any]]]:
    cases: list[tuple[str, dict[str, Any]]] = []

    def add(case_id: str, **changes: Any) -> None:
        settings = {**RENDER_SETTINGS, **changes}
        cases.append((case_id, {key: value for key, value in settings.items() if value is not None}))

    for frames in [
        "1-10",
        "1,3,5-7",
        "10-1",
        " 1..4 ",
        "5",
        "1-3,2-6",
        "1..2",
        "7,3,5",
        "1 - 4, 9",
        "+5",
        "05",
    ]:
        for chunk_size in [1, 2, 3, 50]:
            add(f"frames={frames!r}-chunk={chunk_size}", frames=frames, chunk_size=chunk_size)
    for frames in ["", "abc", "1-", "1,,2", "1-2-3", "1:4", "-5"]:
        add(f"bad-frames={frames!r}", frames=frames)
    add("chunk=0", chunk_size=0)
    add("chunk=3.0", chunk_size=3.0)
    for video in VIDEO_FORMATS:
        add(f"format={video}", format=video, image_file_extension=".mp4")
    for image, extension in IMAGE_FORMATS.items():
        for previews in [False, True]:
            add(
                f"format={image}-previews={previews}",
                format=image,
                image_file_extension=extension,
                has_previews=previews,
            )
    add("format=OPEN_EXR-previews-missing", format="OPEN_EXR", image_file_extension=".exr", has_previews=None)
    for fps in [23.976, 24, 24.0, 25, 29.97, 0, None]:
        add(f"fps={fps!r}", fps=fps)
    add(
        "fps=23.976-exr-previews",
        fps=23.976,
        format="OPEN_EXR",
        image_file_extension=".exr",
        has_previews=True,
    )
    for blendfile in [
        "/render/jobs/shot.blend",
        "/render/jobs/shot.flamenco.blend",
        "/render/jobs/a.flamenco.b.flamenco.blend",
        "shot.flamenco.blend",
        "/render/jobs/shot",
        "/render/jobs/.blend",
        "R:\\sf\\jobs\\scene123.flamenco.blend",
        "C:\\jobs\\",
    ]:
        add(f"blendfile={blendfile!r}", blendfile=blendfile)
    for output in [
        "/render/out/######",
        "/render/out/{timestamp}/{timestamp}-######",
        "{jobs}/out/{timestamp}/{unknown}/######",
        "/render//out/./shot/../{timestamp}/######",
        "######",
        "/######",
        "R:\\sprites\\farm_output\\{timestamp}\\######",
        "R:/mixed\\separators/{timestamp}\\######",
        "\\\\NAS\\share\\out\\{timestamp}\\######",
        "//NAS/share/out/######",
        "/render/out/",
        "C:\\######",
        "../shot/./######",
        "\\\\?\\UNC\\pc\\share\\######",
        "/x/{timestamp}{timestamp}/{}/{ timestamp }/######",
        "",
    ]:
        add(f"output={output!r}", render_output_path=output)
    add(
        "windows-job",
        blendfile="R:\\sf\\jobs\\scene123.blend",
        render_output_path="R:\\sprites\\farm_output\\promo\\{timestamp}\\######",
        frames="0-12,34-56,78-90",
        chunk_size=20,
    )
    for scene in ["Scene", "Scène 2", "  "]:
        add(f"scene={scene!r}", scene=scene)
    add("undefined-settings-kept", extract_audio=True, notes="keep", weight=2.0, ratio=0.5, nested={"n": 3.0})
    return cases


def _echo_cases() -> list[tuple[str, dict[str, Any]]]:
    return [
        ("defaults", {"message": "hello"}),
        *[
            (
                f"repeats={repeats}",
                {"message": "prespavati", "sleep_duration_seconds": 3, "sleep_repeats": repeats},
            )
            for repeats in [0, 1, 5]
        ],
        ("duration=0", {"message": "m", "sleep_duration_seconds": 0, "sleep_repeats": 2}),
        ("whole-floats", {"message": "m", "sleep_duration_seconds": 2.0, "sleep_repeats": 2.0}),
        ("message-missing", {"sleep_repeats": 1}),
    ]


CASES = [("simple-blender-render", case_id, settings) for case_id, settings in _render_cases()] + [
    ("echo-sleep-test", case_id, settings) for case_id, settings in _echo_cases()
]


def submission(job_type: str, settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "3Д рендеринг",
        "type": job_type,
        "priority": 50,
        "submitter_platform": "linux",
        "settings": copy.deepcopy(settings),
        "metadata": {"project": "Sprite Fright", "user.name": "Sybren"},
    }


def job_for_script(submitted: dict[str, Any], definitions: list[dict[str, Any]]) -> dict[str, Any]:
    """The job a script's compileJob receives: the submission, with the job type's defaults filled in."""
    settings = copy.deepcopy(submitted["settings"])
    for definition in definitions:
        if "default" in definition and definition["key"] not in settings:
            settings[definition["key"]] = definition["default"]
    return {
        "jobID": str(uuid.uuid4()),
        "name": submitted["name"],
        "jobType": submitted["type"],
        "priority": submitted["priority"],
        "status": "under-construction",
        "created": CREATED.isoformat(),
        "settings": settings,
        "metadata": dict(submitted["metadata"]),
        "storage": {"shamanCheckoutID": ""},
        "workerTagUUID": "",
    }


def builtin_result(submitted: dict[str, Any]) -> dict[str, Any]:
    """What the built-in compiles, in the shape both sides are compared in."""
    try:
        job = compile_job(submitted, created=CREATED)
    except JobCompileError:
        return REFUSED
    tasks = [
        {
            "name": task.name,
            "type": task.type,
            "priority": task.priority,
            "commands": [
                {"name": c["name"], "parameters": c["parameters"], "totalStepCount": c["total_step_count"]}
                for c in task.commands
            ],
            "dependencies": task.depends_on,
        }
        for task in job.tasks
    ]
    return {"settings": job.settings, "tasks": tasks}


def script_result(authored: dict[str, Any]) -> dict[str, Any]:
    """What a script authored (as the engine returns it), in the same shape."""
    tasks = [
        {
            "name": task["name"],
            "type": task["type"],
            "priority": task["priority"],
            "commands": [
                {"name": c["name"], "parameters": c["parameters"], "totalStepCount": c["totalStepCount"]}
                for c in task["commands"]
            ],
            "dependencies": task["dependencies"],
        }
        for task in authored["tasks"]
    ]
    return {"settings": authored["settings"], "tasks": tasks}


def canonical(result: dict[str, Any]) -> str:
    return json.dumps(result, sort_keys=True, ensure_ascii=False, indent=1)


def compile_script(engine: EngineThread, job_type: str, submitted: dict[str, Any]) -> dict[str, Any]:
    filename = job_type.replace("-", "_") + ".js"
    source = (SCRIPTS / filename).read_text(encoding="utf-8")
    described = engine.describe(filename, source)
    try:
        # The Manager checks a submission against the job type's settings before any compiler runs.
        apply_settings(described["settings"], submitted["settings"])
    except JobCompileError:
        return REFUSED
    try:
        authored = engine.run(
            engine.engine.compile(filename, source, job_for_script(submitted, described["settings"]))
        )
    except javascript.ScriptProblem:
        return REFUSED
    return script_result(authored)


def zone_known(name: str) -> bool:
    return pathlib.Path("/usr/share/zoneinfo", name).is_file()


T = TypeVar("T")
# Longest one engine call of these tests may take (a compile takes milliseconds).
ENGINE_CALL_TIMEOUT = 30.0


class EngineThread:
    """One engine for the whole module, on an event loop of its own thread, so the many cases share one
    node child with any pytest-asyncio release (Debian 12's has no module-scoped event loops)."""

    def __init__(self, engine: javascript.ScriptEngine) -> None:
        self.engine = engine
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="script-engine", daemon=True)
        self.thread.start()
        self.described: dict[str, dict[str, Any]] = {}

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(ENGINE_CALL_TIMEOUT)

    def describe(self, filename: str, source: str) -> dict[str, Any]:
        if filename not in self.described:
            self.described[filename] = self.run(self.engine.describe(filename, source))
        return self.described[filename]

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(ENGINE_CALL_TIMEOUT)
        self.loop.close()


@pytest.fixture(scope="module")
def engine() -> Iterator[EngineThread]:
    """The engine for the module, started (like the Python side) in LOCAL_ZONE when the zone is known."""
    try:
        executable = javascript.find_engine()
    except javascript.EngineMissing as missing:
        pytest.skip(f"no JavaScript engine (node) on this machine: {missing}")
    with pytest.MonkeyPatch.context() as patch:
        if zone_known(LOCAL_ZONE):
            patch.setenv("TZ", LOCAL_ZONE)
        time.tzset()
        runner = EngineThread(javascript.ScriptEngine(executable))
        try:
            runner.run(runner.engine.start())
            yield runner
        finally:
            runner.run(runner.engine.close())
            runner.stop()
    time.tzset()


@pytest.mark.parametrize(
    ("job_type", "settings"),
    [pytest.param(job_type, settings, id=f"{job_type}:{case_id}") for job_type, case_id, settings in CASES],
)
def test_builtin_compiles_what_the_script_compiles(
    engine: EngineThread, job_type: str, settings: dict[str, Any]
) -> None:
    submitted = submission(job_type, settings)
    from_script = compile_script(engine, job_type, submitted)
    from_builtin = builtin_result(submitted)
    assert canonical(from_builtin) == canonical(from_script)


@pytest.mark.parametrize("job_type", ["simple-blender-render", "echo-sleep-test"])
def test_builtin_describes_what_the_script_describes(engine: EngineThread, job_type: str) -> None:
    filename = job_type.replace("-", "_") + ".js"
    described = engine.run(engine.engine.describe(filename, (SCRIPTS / filename).read_text(encoding="utf-8")))
    info = get_job_type(job_type)
    assert info is not None
    builtin = {key: value for key, value in info.items() if key not in {"name", "etag"}}
    assert canonical(builtin) == canonical(described)


@pytest.mark.skipif(
    not zone_known(LOCAL_ZONE), reason=f"the time zone {LOCAL_ZONE} is not installed (tzdata)"
)
def test_timestamp_is_local_time(engine: EngineThread) -> None:
    """Both sides write {timestamp} in the zone the Manager runs in, not in UTC."""
    submitted = submission(
        "simple-blender-render", {**RENDER_SETTINGS, "render_output_path": "/out/{timestamp}/#"}
    )
    for result in [
        builtin_result(submitted),
        compile_script(engine, "simple-blender-render", submitted),
    ]:
        assert result["settings"]["render_output_path"] == f"/out/{LOCAL_TIMESTAMP}/#"


def test_the_cases_cover_both_outcomes() -> None:
    """The comparison means something only if the cases include refused and compiled submissions."""
    outcomes = [builtin_result(submission(job_type, settings)) == REFUSED for job_type, _, settings in CASES]
    assert any(outcomes) and not all(outcomes)
    compiled = [builtin_result(submission(job_type, settings)) for job_type, _, settings in CASES]
    videos = [r for r in compiled if r != REFUSED and any(t["name"] == "preview-video" for t in r["tasks"])]
    assert videos, "some cases must make a preview video"
