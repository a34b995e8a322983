"""Built-in job types: their descriptions, etags, settings validation and compiled tasks."""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import time
from typing import Any

import pytest

from flamenco_manager.jobtypes import (
    CompiledTask,
    JobCompileError,
    SettingsError,
    available_job_types,
    compile_job,
    get_job_type,
    paths,
)
from flamenco_manager.jobtypes.frames import (
    MAX_FRAME_COUNT,
    MAX_FRAME_NUMBER,
    blender_frames,
    chunk_frames,
    chunk_text,
    parse_frames,
)
from flamenco_manager.jobtypes.settings import js_numbers

CREATED = datetime.datetime(2024, 3, 5, 14, 7, 9, tzinfo=datetime.UTC)
OUTPUT_DIR = "/render/shot/2024-03-05_140709"
# Flamenco's forced render settings, statement for statement.
RENDER_EXPR = (
    "import bpy; r = bpy.context.scene.render; r.use_file_extension = True; "
    "r.use_overwrite = False; r.use_placeholder = False"
)


@pytest.fixture(autouse=True)
def utc_local_time(monkeypatch: pytest.MonkeyPatch) -> Any:
    """{timestamp} is local time; pin the zone so expected paths are literal."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def render_job(**settings: Any) -> dict[str, Any]:
    base = {
        "frames": "1-10",
        "chunk_size": 5,
        "render_output_root": "/render",
        "add_path_components": 0,
        "render_output_path": "/render/shot/{timestamp}/######",
        "blendfile": "/shared/shot.flamenco.blend",
        "fps": 24.0,
        "format": "PNG",
        "image_file_extension": ".png",
        "has_previews": False,
        "scene": "Scene",
    }
    base.update(settings)
    return {
        "name": "shot",
        "type": "simple-blender-render",
        "priority": 50,
        "submitter_platform": "linux",
        "settings": {k: v for k, v in base.items() if v is not None},
        "metadata": {"project": "Sprite Fright"},
    }


def compile_error(submitted: dict[str, Any]) -> JobCompileError:
    with pytest.raises(JobCompileError) as info:
        compile_job(submitted, created=CREATED)
    return info.value


def settings_problems(submitted: dict[str, Any]) -> list[tuple[str, str]]:
    """The refused settings of a submission as (key, message), in the order they are reported."""
    error = compile_error(submitted)
    assert isinstance(error, SettingsError) and error.field == "settings", error
    return [(problem.field, problem.message) for problem in error.problems]


# --- job type descriptions ---------------------------------------------------------------------------------


def test_available_job_types_sorted_with_etags() -> None:
    types = available_job_types()
    assert [t["name"] for t in types] == ["echo-sleep-test", "simple-blender-render"]
    for job_type in types:
        without_etag = {k: v for k, v in job_type.items() if k != "etag"}
        canonical = json.dumps(without_etag, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert job_type["etag"] == hashlib.sha1(canonical.encode()).hexdigest()
        assert set(job_type) >= {"name", "label", "settings", "etag"}
        assert get_job_type(job_type["name"]) == job_type


def test_job_type_copies_are_independent() -> None:
    first = get_job_type("echo-sleep-test")
    assert first is not None
    first["settings"].clear()
    again = get_job_type("echo-sleep-test")
    assert again is not None
    assert again["settings"]
    assert get_job_type("no-such-type") is None


SIMPLE_BLENDER_RENDER_SETTINGS = [
    # key, type, subtype, required, default, visible
    ("frames", "string", None, True, None, None),
    ("chunk_size", "int32", None, None, 1, "submission"),
    ("render_output_root", "string", "dir_path", True, None, "submission"),
    ("add_path_components", "int32", None, True, 0, "submission"),
    ("render_output_path", "string", "file_path", None, None, None),
    ("blendfile", "string", None, True, None, "web"),
    ("fps", "float", None, None, None, "hidden"),
    ("format", "string", None, True, None, "web"),
    ("image_file_extension", "string", None, True, None, "hidden"),
    ("has_previews", "bool", None, False, None, "hidden"),
    ("scene", "string", None, True, None, "web"),
]


def test_simple_blender_render_settings_match_flamenco() -> None:
    job_type = get_job_type("simple-blender-render")
    assert job_type is not None
    actual = [
        (s["key"], s["type"], s.get("subtype"), s.get("required"), s.get("default"), s.get("visible"))
        for s in job_type["settings"]
    ]
    assert actual == SIMPLE_BLENDER_RENDER_SETTINGS
    by_key = {s["key"]: s for s in job_type["settings"]}
    assert by_key["add_path_components"]["propargs"] == {"min": 0, "max": 32}
    assert by_key["render_output_path"]["editable"] is False
    assert "{timestamp}" in by_key["render_output_path"]["eval"]
    assert by_key["frames"]["evalInfo"]["showLinkButton"] is True
    assert by_key["fps"]["eval"] == "C.scene.render.fps / C.scene.render.fps_base"


def test_echo_sleep_test_settings() -> None:
    job_type = get_job_type("echo-sleep-test")
    assert job_type is not None
    actual = [(s["key"], s["type"], s.get("required"), s.get("default")) for s in job_type["settings"]]
    assert actual == [
        ("message", "string", True, None),
        ("sleep_duration_seconds", "int32", None, 1),
        ("sleep_repeats", "int32", None, 1),
    ]


# --- simple-blender-render ---------------------------------------------------------------------------------


def render_command(frames: str, steps: int) -> dict[str, Any]:
    return {
        "name": "blender-render",
        "parameters": {
            "exe": "{blender}",
            "exeArgs": "{blenderArgs}",
            "argsBefore": [],
            "blendfile": "/shared/shot.flamenco.blend",
            "args": [
                "--scene",
                "Scene",
                "--python-expr",
                RENDER_EXPR,
                "--render-output",
                f"{OUTPUT_DIR}/######",
                "--render-format",
                "PNG",
                "--render-frame",
                frames,
            ],
        },
        "total_step_count": steps,
    }


def test_simple_blender_render_compiles_chunks_and_preview_video() -> None:
    submitted = render_job()
    before = copy.deepcopy(submitted)
    job = compile_job(submitted, created=CREATED)
    assert submitted == before, "the submission must not be modified"
    assert job.tasks == [
        CompiledTask("render-1-5", "blender", 50, [render_command("1..5", 5)], []),
        CompiledTask("render-6-10", "blender", 50, [render_command("6..10", 5)], []),
        CompiledTask(
            "preview-video",
            "ffmpeg",
            50,
            [
                {
                    "name": "frames-to-video",
                    "parameters": {
                        "exe": "ffmpeg",
                        "fps": 24,
                        "inputGlob": f"{OUTPUT_DIR}/*.png",
                        "outputFile": f"{OUTPUT_DIR}/shot-1-10.mp4",
                        "args": [
                            *("-c:v", "h264", "-crf", "20", "-g", "18"),
                            *("-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-pix_fmt", "yuv420p"),
                            *("-r", 24, "-y"),
                        ],
                    },
                    "total_step_count": 0,
                }
            ],
            [0, 1],
        ),
    ]
    assert job.settings["render_output_path"] == f"{OUTPUT_DIR}/######"
    assert job.settings["fps"] == 24 and isinstance(job.settings["fps"], int), "stored as JSON 24, not 24.0"
    assert job.metadata == {"project": "Sprite Fright"}
    assert [task.steps_total for task in job.tasks] == [5, 5, 1]


def test_defaults_are_filled_in() -> None:
    job = compile_job(render_job(chunk_size=None, add_path_components=None), created=CREATED)
    assert (job.settings["chunk_size"], job.settings["add_path_components"]) == (1, 0)
    assert [t.name for t in job.tasks[:3]] == ["render-1", "render-2", "render-3"]
    assert len(job.tasks) == 11


def test_unknown_settings_are_kept() -> None:
    job = compile_job(render_job(studio_note="keep me"), created=CREATED)
    assert job.settings["studio_note"] == "keep me"


@pytest.mark.parametrize(
    ("frames", "chunk_size", "names", "render_frames"),
    [
        ("1-10,20", 5, ["render-1-5", "render-6-10", "render-20"], ["1..5", "6..10", "20"]),
        ("1..4", 3, ["render-1-3", "render-4"], ["1..3", "4"]),
        ("3, 5-7, 47", 2, ["render-3,5", "render-6,7", "render-47"], ["3,5", "6,7", "47"]),
        ("1-5,3-8", 10, ["render-1-8"], ["1..8"]),
        ("20,1-2", 2, ["render-1,2", "render-20"], ["1,2", "20"]),
        ("1-3,5-6,8", 10, ["render-1-3,5,6,8"], ["1..3,5,6,8"]),
        (" 1 .. 3 , +5 ", 10, ["render-1-3,5"], ["1..3,5"]),
        ("0", 1, ["render-0"], ["0"]),
    ],
)
def test_frame_chunking(frames: str, chunk_size: int, names: list[str], render_frames: list[str]) -> None:
    job = compile_job(render_job(frames=frames, chunk_size=chunk_size, fps=None), created=CREATED)
    assert [t.name for t in job.tasks] == names
    assert [t.commands[0]["parameters"]["args"][-1] for t in job.tasks] == render_frames


def test_preview_video_of_a_frame_list_is_named_first_to_last() -> None:
    job = compile_job(render_job(frames="3,5-7,47"), created=CREATED)
    video = job.tasks[-1]
    assert video.name == "preview-video"
    assert video.commands[0]["parameters"]["outputFile"] == f"{OUTPUT_DIR}/shot-3-47.mp4"
    assert video.depends_on == list(range(len(job.tasks) - 1))


@pytest.mark.parametrize(
    ("settings", "video_glob"),
    [
        ({"format": "JPEG", "image_file_extension": ".jpg"}, "*.jpg"),
        ({"format": "OPEN_EXR", "image_file_extension": ".exr"}, None),
        ({"format": "OPEN_EXR", "image_file_extension": ".exr", "has_previews": True}, "*.jpg"),
        ({"format": "OPEN_EXR_MULTILAYER", "image_file_extension": ".exr", "has_previews": True}, "*.jpg"),
        ({"format": "EXR", "image_file_extension": ".exr"}, None),
        ({"fps": None}, None),
        ({"fps": 0}, None),
    ],
)
def test_preview_video_only_for_ffmpeg_readable_output(
    settings: dict[str, Any], video_glob: str | None
) -> None:
    job = compile_job(render_job(**settings), created=CREATED)
    videos = [t for t in job.tasks if t.type == "ffmpeg"]
    if video_glob is None:
        assert videos == []
    else:
        assert [v.commands[0]["parameters"]["inputGlob"] for v in videos] == [f"{OUTPUT_DIR}/{video_glob}"]


@pytest.mark.parametrize(("fps", "expected"), [(23.976, 23.976), (24.0, 24), (25, 25), (29.97, 29.97)])
def test_fps_is_passed_as_a_number(fps: float, expected: float) -> None:
    """The frame rate is a number in the parameters and in the ffmpeg arguments; whole ones are integers."""
    job = compile_job(render_job(fps=fps), created=CREATED)
    parameters = job.tasks[-1].commands[0]["parameters"]
    args = parameters["args"]
    assert json.dumps([parameters["fps"], args[args.index("-r") + 1]]) == json.dumps([expected, expected])


def test_preview_video_is_named_after_the_frames_as_written() -> None:
    job = compile_job(render_job(frames=" 1..4 "), created=CREATED)
    assert job.tasks[-1].commands[0]["parameters"]["outputFile"] == f"{OUTPUT_DIR}/shot- 1..4 .mp4"


def test_a_scene_is_passed_only_when_named() -> None:
    job = compile_job(render_job(), created=CREATED)
    assert job.tasks[0].commands[0]["parameters"]["args"][:2] == ["--scene", "Scene"]


def test_windows_paths_come_out_with_forward_slashes() -> None:
    """Render output and video paths are built with `/`; the blend file is passed on as written."""
    job = compile_job(
        render_job(
            render_output_path="C:\\renders\\{timestamp}\\######",
            blendfile="C:\\projects\\shot.blend",
        ),
        created=CREATED,
    )
    parameters = job.tasks[0].commands[0]["parameters"]
    assert parameters["blendfile"] == "C:\\projects\\shot.blend"
    args = parameters["args"]
    assert args[args.index("--render-output") + 1] == "C:/renders/2024-03-05_140709/######"
    assert job.settings["render_output_path"] == "C:\\renders\\2024-03-05_140709\\######"
    video = job.tasks[-1].commands[0]["parameters"]
    assert video["outputFile"] == "C:/renders/2024-03-05_140709/shot-1-10.mp4"
    assert video["inputGlob"] == "C:/renders/2024-03-05_140709/*.png"


def test_output_paths_are_tidied() -> None:
    job = compile_job(
        render_job(render_output_path="/render//out/./x/../{timestamp}/######"), created=CREATED
    )
    args = job.tasks[0].commands[0]["parameters"]["args"]
    assert args[args.index("--render-output") + 1] == "/render/out/2024-03-05_140709/######"
    assert job.settings["render_output_path"] == "/render//out/./x/../2024-03-05_140709/######"


def test_other_fields_in_output_path_are_left_alone() -> None:
    job = compile_job(
        render_job(render_output_path="{jobs}/out/{timestamp}/{unknown}/######"), created=CREATED
    )
    assert job.settings["render_output_path"] == "{jobs}/out/2024-03-05_140709/{unknown}/######"


@pytest.mark.parametrize(
    ("settings", "field", "message"),
    [
        ({"format": "FFMPEG"}, "format", "this job type renders images, not video (FFMPEG)"),
        ({"format": "AVI_JPEG"}, "format", "this job type renders images, not video (AVI_JPEG)"),
        ({"scene": None}, "scene", "required setting is missing"),
        ({"blendfile": ""}, "blendfile", "required setting is empty"),
        ({"render_output_path": None}, "render_output_path", "required setting is missing"),
        ({"chunk_size": "5"}, "chunk_size", "expected a whole number, not a string ('5')"),
        ({"chunk_size": 2.5}, "chunk_size", "expected a whole number, not a number (2.5)"),
        ({"chunk_size": True}, "chunk_size", "expected a whole number, not a boolean (True)"),
        ({"chunk_size": 0}, "chunk_size", "must be at least 1, not 0"),
        ({"chunk_size": 2**31}, "chunk_size", "2147483648 does not fit in a 32-bit integer"),
        ({"add_path_components": 33}, "add_path_components", "33 is above the maximum 32"),
        ({"add_path_components": -1}, "add_path_components", "-1 is below the minimum 0"),
        ({"fps": "24"}, "fps", "expected a number, not a string ('24')"),
        ({"has_previews": "yes"}, "has_previews", "expected true or false, not a string ('yes')"),
        ({"frames": 10}, "frames", "expected a string, not a number (10)"),
        ({"frames": "10-1"}, "frames", "range '10-1' runs backwards; write it as 1-10"),
        ({"frames": "abc"}, "frames", "cannot read 'abc'; use e.g. '1-250', '1..250' or '1-10,20'"),
        ({"frames": "1-"}, "frames", "cannot read '1-'; use e.g. '1-250', '1..250' or '1-10,20'"),
        ({"frames": "-5"}, "frames", "cannot read '-5'; use e.g. '1-250', '1..250' or '1-10,20'"),
        ({"frames": "1:4"}, "frames", "cannot read '1:4'; use e.g. '1-250', '1..250' or '1-10,20'"),
        ({"frames": "1-2-3"}, "frames", "cannot read '1-2-3'; use e.g. '1-250', '1..250' or '1-10,20'"),
        ({"frames": "5..1"}, "frames", "range '5..1' runs backwards; write it as 1-5"),
        # Flamenco would drop a backwards part of a list without a word; refusing it names the typo.
        ({"frames": "1-3,10-1"}, "frames", "range '10-1' runs backwards; write it as 1-10"),
        ({"frames": "1,,2"}, "frames", "cannot read ''; use e.g. '1-250', '1..250' or '1-10,20'"),
        ({"frames": " "}, "frames", "required setting is empty"),
        (
            {"frames": "1-100000000"},
            "frames",
            f"frame 100000000 is beyond Blender's last frame {MAX_FRAME_NUMBER}",
        ),
        (
            {"frames": "1-200000"},
            "frames",
            f"200000 frames is more than the {MAX_FRAME_COUNT} one job may render",
        ),
    ],
)
def test_invalid_settings_name_the_setting(settings: dict[str, Any], field: str, message: str) -> None:
    error = compile_error(render_job(**settings))
    assert isinstance(error, SettingsError)
    assert [(p.field, p.message) for p in error.problems] == [(field, message)]
    assert str(error) == f"settings: {field}: {message}"


def test_every_wrongly_typed_setting_is_named_at_once() -> None:
    settings = render_job(frames=None, chunk_size="ten", fps="fast", has_previews="no")
    assert settings_problems(settings) == [
        ("frames", "required setting is missing"),
        ("chunk_size", "expected a whole number, not a string ('ten')"),
        ("fps", "expected a number, not a string ('fast')"),
        ("has_previews", "expected true or false, not a string ('no')"),
    ]
    message = str(compile_error(settings))
    assert message.startswith("settings: 4 problems: frames: required setting is missing; ")


def test_every_setting_the_compiler_refuses_is_named_at_once() -> None:
    submitted = render_job(frames="10-1", chunk_size=0, format="FFMPEG")
    assert settings_problems(submitted) == [
        ("frames", "range '10-1' runs backwards; write it as 1-10"),
        ("chunk_size", "must be at least 1, not 0"),
        ("format", "this job type renders images, not video (FFMPEG)"),
    ]


def test_settings_the_type_does_not_define_are_kept_and_listed() -> None:
    job = compile_job(render_job(frame_step=2, fps=25.0, notes="x"), created=CREATED)
    assert job.undefined_settings == ["frame_step", "notes"]  # fps is defined, though hidden
    assert job.settings["frame_step"] == 2 and job.settings["notes"] == "x"
    assert compile_job(render_job(), created=CREATED).undefined_settings == []


@pytest.mark.parametrize(
    ("submitted", "field", "message"),
    [
        ({"type": "no-such-type"}, "type", "unknown job type 'no-such-type'; known types: "),
        ({}, "type", "unknown job type None; known types: "),
        ({"type": "echo-sleep-test", "settings": ["x"]}, "settings", "expected an object"),
        (
            {"type": "echo-sleep-test", "settings": {"message": "hi"}, "metadata": {"a": 1}},
            "metadata.a",
            "a string",
        ),
        (
            {"type": "echo-sleep-test", "settings": {"message": "hi"}, "metadata": "x"},
            "metadata",
            "an object",
        ),
    ],
)
def test_invalid_submissions(submitted: dict[str, Any], field: str, message: str) -> None:
    error = compile_error(submitted)
    assert error.field == field
    assert message in error.message


# --- frames helpers ----------------------------------------------------------------------------------------


def test_frame_cap_counts_merged_frames() -> None:
    assert parse_frames(f"1-{MAX_FRAME_COUNT},1-{MAX_FRAME_COUNT}") == [(1, MAX_FRAME_COUNT)]


@pytest.mark.parametrize(
    ("frames", "chunk_size", "texts", "for_blender"),
    [
        ("1-10", 3, ["1-3", "4-6", "7-9", "10"], ["1..3", "4..6", "7..9", "10"]),
        ("1-10", 2, ["1,2", "3,4", "5,6", "7,8", "9,10"], ["1,2", "3,4", "5,6", "7,8", "9,10"]),
        (
            "0-12,34-56,78-90",
            20,
            ["0-12,34-40", "41-56,78-81", "82-90"],
            ["0..12,34..40", "41..56,78..81", "82..90"],
        ),
        ("1,3,5-7", 50, ["1,3,5-7"], ["1,3,5..7"]),
    ],
)
def test_chunks_are_written_as_flamenco_writes_them(
    frames: str, chunk_size: int, texts: list[str], for_blender: list[str]
) -> None:
    chunks = chunk_frames(parse_frames(frames), chunk_size)
    assert [chunk_text(chunk) for chunk in chunks] == texts
    assert [blender_frames(chunk) for chunk in chunks] == for_blender


@pytest.mark.parametrize(
    ("function", "path", "expected"),
    [
        (paths.dirname, "", "."),
        (paths.dirname, "file.png", "."),
        (paths.dirname, "/file", "/"),
        (paths.dirname, "C:\\file", "C:"),
        (paths.dirname, "\\\\NAS\\share\\out\\####", "//NAS/share/out"),
        (paths.dirname, "/a//b", "/a/"),
        (paths.basename, "", "."),
        (paths.basename, "///", "/"),
        (paths.basename, "C:\\dir\\", "dir"),
        (paths.stem, "/jobs/shot.flamenco.blend", "shot.flamenco"),
        (paths.stem, "/jobs/.blend", ""),
        (paths.stem, "C:\\jobs\\shot", "shot"),
    ],
)
def test_path_parts(function: Any, path: str, expected: str) -> None:
    assert function(path) == expected


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (("",), ""),
        (("", "a", "", "b", ""), "a/b"),
        (("/render//out/./x/..", "######"), "/render/out/######"),
        (("//NAS/share", "x"), "/NAS/share/x"),
        (("\\\\NAS\\share", "x"), "//NAS/share/x"),
        (("C:\\a\\..", "b"), "C:/a/../b"),
        (("/", "..", "x"), "/x"),
    ],
)
def test_path_join_tidies_like_flamenco(parts: tuple[str, ...], expected: str) -> None:
    assert paths.join(*parts) == expected


def test_whole_numbers_are_integers_everywhere_in_settings() -> None:
    assert json.dumps(js_numbers({"a": 24.0, "b": [2.0, 0.5], "c": {"d": -0.0}, "e": 1e21, "f": True})) == (
        '{"a": 24, "b": [2, 0.5], "c": {"d": 0}, "e": 1e+21, "f": true}'
    )
    job = compile_job(render_job(frame_step=2.0, chunk_size=5.0), created=CREATED)
    assert json.dumps([job.settings["frame_step"], job.settings["chunk_size"]]) == "[2, 5]"


def test_chunks_cover_every_frame_once() -> None:
    intervals = parse_frames("1-7,10,12-13")
    chunks = chunk_frames(intervals, 3)
    frames = [f for chunk in chunks for first, last in chunk for f in range(first, last + 1)]
    assert frames == [1, 2, 3, 4, 5, 6, 7, 10, 12, 13]
    assert all(sum(last - first + 1 for first, last in chunk) <= 3 for chunk in chunks)


# --- echo-sleep-test ---------------------------------------------------------------------------------------


def test_echo_sleep_test_defaults() -> None:
    job = compile_job({"type": "echo-sleep-test", "settings": {"message": "hello"}}, created=CREATED)
    assert job.settings == {"message": "hello", "sleep_duration_seconds": 1, "sleep_repeats": 1}
    assert job.metadata == {}
    assert job.tasks == [
        CompiledTask(
            "echo", "misc", 50, [{"name": "echo", "parameters": {"message": "hello"}, "total_step_count": 0}]
        ),
        CompiledTask(
            "sleep",
            "misc",
            50,
            [{"name": "sleep", "parameters": {"duration_in_seconds": 1}, "total_step_count": 0}],
            [0],
        ),
    ]


def test_echo_sleep_test_repeats() -> None:
    settings = {"message": "m", "sleep_duration_seconds": 3, "sleep_repeats": 4}
    job = compile_job({"type": "echo-sleep-test", "settings": settings}, created=CREATED)
    assert [t.name for t in job.tasks] == ["echo", "sleep", "sleep", "sleep", "sleep"]
    assert all(t.depends_on == [0] and t.type == "misc" for t in job.tasks[1:])
    assert {t.commands[0]["parameters"]["duration_in_seconds"] for t in job.tasks[1:]} == {3}
    job.tasks[1].commands[0]["parameters"]["duration_in_seconds"] = 99
    assert job.tasks[2].commands[0]["parameters"]["duration_in_seconds"] == 3


@pytest.mark.parametrize("repeats", [0, -1])
def test_echo_sleep_test_no_repeats_is_only_the_echo(repeats: int) -> None:
    settings = {"message": "m", "sleep_repeats": repeats}
    job = compile_job({"type": "echo-sleep-test", "settings": settings}, created=CREATED)
    assert [t.name for t in job.tasks] == ["echo"]


def test_echo_sleep_test_limits_are_not_part_of_the_form() -> None:
    """Flamenco's form has no bounds for these settings; the limits are checked when compiling."""
    job_type = get_job_type("echo-sleep-test")
    assert job_type is not None
    assert all("propargs" not in setting for setting in job_type["settings"])


@pytest.mark.parametrize(
    ("settings", "field", "message"),
    [
        ({}, "message", "required setting is missing"),
        ({"message": 5}, "message", "expected a string, not a number (5)"),
        ({"message": "m", "sleep_repeats": 10**6}, "sleep_repeats", "1000000 is above the maximum 10000"),
        (
            {"message": "m", "sleep_duration_seconds": -2},
            "sleep_duration_seconds",
            "-2 is not between 0 and 86400",
        ),
        (
            {"message": "m", "sleep_duration_seconds": "1"},
            "sleep_duration_seconds",
            "expected a whole number",
        ),
    ],
)
def test_echo_sleep_test_invalid(settings: dict[str, Any], field: str, message: str) -> None:
    [(key, text)] = settings_problems({"type": "echo-sleep-test", "settings": settings})
    assert key == field
    assert text.startswith(message)
