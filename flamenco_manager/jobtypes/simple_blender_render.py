"""`simple-blender-render`: render a frame range in chunks, then make a preview video when possible."""

from __future__ import annotations

import datetime
import re
from typing import Any

from flamenco_manager.jobtypes import frames, paths
from flamenco_manager.jobtypes.model import CompiledTask, JobCompileError, SettingsError, command

NAME = "simple-blender-render"

# The settings and their add-on hints (eval expressions, visibility) are Flamenco's; the add-on builds
# its submission form from them.
INFO: dict[str, Any] = {
    "name": NAME,
    "label": "Simple Blender Render",
    "description": "Renders a frame range in chunks and, for video-friendly image formats, a preview video.",
    "settings": [
        {
            "key": "frames",
            "type": "string",
            "required": True,
            "eval": "f'{C.scene.frame_start}-{C.scene.frame_end}'",
            "evalInfo": {"showLinkButton": True, "description": "Use the scene's frame range"},
            "description": "Frames to render, e.g. '47', '1-30' or '3, 5-10, 47-327'",
        },
        {
            "key": "chunk_size",
            "type": "int32",
            "default": 1,
            "description": "How many frames one render task renders",
            "visible": "submission",
        },
        {
            "key": "render_output_root",
            "type": "string",
            "subtype": "dir_path",
            "required": True,
            "visible": "submission",
            "description": "Directory under which the job's render output goes",
        },
        {
            "key": "add_path_components",
            "type": "int32",
            "required": True,
            "default": 0,
            "propargs": {"min": 0, "max": 32},
            "visible": "submission",
            "description": "How many directory names of the blend file's path to repeat in the output path",
        },
        {
            "key": "render_output_path",
            "type": "string",
            "subtype": "file_path",
            "editable": False,
            "eval": "str(Path(abspath(settings.render_output_root),"
            " last_n_dir_parts(settings.add_path_components), jobname, '{timestamp}', '######'))",
            "description": "Where the frames are written; {timestamp} becomes the job's creation time",
        },
        {
            "key": "blendfile",
            "type": "string",
            "required": True,
            "description": "The blend file to render, as the workers see it",
            "visible": "web",
        },
        {
            "key": "fps",
            "type": "float",
            "eval": "C.scene.render.fps / C.scene.render.fps_base",
            "visible": "hidden",
        },
        {
            "key": "format",
            "type": "string",
            "required": True,
            "eval": "C.scene.render.image_settings.file_format",
            "visible": "web",
        },
        {
            "key": "image_file_extension",
            "type": "string",
            "required": True,
            "eval": "C.scene.render.file_extension",
            "visible": "hidden",
            "description": "Extension of the rendered image files",
        },
        {
            "key": "has_previews",
            "type": "bool",
            "required": False,
            "eval": "C.scene.render.image_settings.use_preview",
            "visible": "hidden",
            "description": "Whether Blender also writes JPEG previews next to the images",
        },
        {
            "key": "scene",
            "type": "string",
            "required": True,
            "eval": "C.scene.name",
            "visible": "web",
            "description": "The scene to render",
        },
    ],
}

# Formats that make Blender write a video; chunked rendering needs separate image files.
VIDEO_FORMATS = frozenset({"FFMPEG", "AVI_RAW", "AVI_JPEG"})
# Image formats FFmpeg cannot read: command-line names and the scene's file_format values of OpenEXR.
FFMPEG_INCOMPATIBLE_FORMATS = frozenset({"EXR", "MULTILAYER", "OPEN_EXR", "OPEN_EXR_MULTILAYER"})
# Blender writes its previews of FFmpeg-incompatible images as JPEG.
PREVIEW_EXTENSION = ".jpg"
# Job storage of the add-on's BAT packs adds this to the blend file's name; the video name drops it.
BAT_PACK_SUFFIX = ".flamenco"
# Layout of {timestamp} in output paths (local time), as Flamenco writes it.
TIMESTAMP_FORMAT = "%Y-%m-%d_%H%M%S"

# Forces the render settings chunked rendering depends on, whatever the blend file says: file names get
# their extension, and a requeued task skips the frames that exist instead of rendering them again. The
# text is Flamenco's, statement for statement, so the Blender command lines are the same.
RENDER_SETTINGS_EXPR = "; ".join(
    [
        "import bpy",
        "r = bpy.context.scene.render",
        "r.use_file_extension = True",
        "r.use_overwrite = False",
        "r.use_placeholder = False",
    ]
)
PREVIEW_VIDEO_ARGS = ["-c:v", "h264", "-crf", "20", "-g", "18", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]
PREVIEW_VIDEO_PIXEL_FORMAT = "yuv420p"

_FIELD = re.compile(r"\{([^}]+)\}")


def compile_tasks(settings: dict[str, Any], created: datetime.datetime) -> list[CompiledTask]:
    """Render tasks (and maybe a preview-video task); updates `render_output_path` in `settings`.

    The settings it checks itself are checked together, so one refusal names every one that is wrong.
    """
    problems: list[JobCompileError] = []
    frame_intervals: list[frames.Interval] = []
    try:
        frame_intervals = frames.parse_frames(settings["frames"])
    except ValueError as exc:
        problems.append(JobCompileError("frames", str(exc)))
    if settings["chunk_size"] < 1:
        problems.append(JobCompileError("chunk_size", f"must be at least 1, not {settings['chunk_size']}"))
    render_output = ""
    try:
        render_output = _render_output_path(settings, created)
    except JobCompileError as exc:
        problems.append(exc)
    if settings["format"] in VIDEO_FORMATS:
        problems.append(
            JobCompileError("format", f"this job type renders images, not video ({settings['format']})")
        )
    if problems:
        raise SettingsError(problems)
    settings["render_output_path"] = render_output
    render_dir = paths.dirname(render_output)

    tasks = [
        _render_task(settings, render_dir, render_output, chunk)
        for chunk in frames.chunk_frames(frame_intervals, settings["chunk_size"])
    ]
    video_task = _preview_video_task(settings, render_dir, frame_intervals)
    if video_task is not None:
        video_task.depends_on = list(range(len(tasks)))
        tasks.append(video_task)
    return tasks


def _render_output_path(settings: dict[str, Any], created: datetime.datetime) -> str:
    path = settings.get("render_output_path")
    if not isinstance(path, str) or not path:
        raise JobCompileError("render_output_path", "required setting is missing")
    timestamp = created.astimezone().strftime(TIMESTAMP_FORMAT)
    return _FIELD.sub(lambda m: timestamp if m.group(1) == "timestamp" else m.group(0), path)


def _render_task(
    settings: dict[str, Any], render_dir: str, render_output: str, chunk: list[frames.Interval]
) -> CompiledTask:
    # Only a named scene is passed; without one Blender renders the file's active scene.
    scene_args = ["--scene", settings["scene"]] if settings.get("scene") else []
    parameters = {
        "exe": "{blender}",
        "exeArgs": "{blenderArgs}",
        "argsBefore": [],
        "blendfile": settings["blendfile"],
        "args": [
            *scene_args,
            "--python-expr",
            RENDER_SETTINGS_EXPR,
            "--render-output",
            paths.join(render_dir, paths.basename(render_output)),
            "--render-format",
            settings["format"],
            "--render-frame",
            frames.blender_frames(chunk),
        ],
    }
    return CompiledTask(
        name=f"render-{frames.chunk_text(chunk)}",
        type="blender",
        commands=[command("blender-render", parameters, frames.frame_count(chunk))],
    )


def _preview_video_task(
    settings: dict[str, Any], render_dir: str, frame_intervals: list[frames.Interval]
) -> CompiledTask | None:
    needs_previews = settings["format"] in FFMPEG_INCOMPATIBLE_FORMATS
    if needs_previews and not settings.get("has_previews"):
        return None
    fps = settings.get("fps")
    if not fps:
        return None
    # The video is named after the frames as written; a list of ranges becomes first-last.
    frames_text = settings["frames"]
    if "," in frames_text:
        frames_text = f"{frame_intervals[0][0]}-{frame_intervals[-1][1]}"
    video_stem = paths.stem(settings["blendfile"]).replace(BAT_PACK_SUFFIX, "", 1)
    extension = PREVIEW_EXTENSION if needs_previews else settings["image_file_extension"]
    parameters = {
        "exe": "ffmpeg",
        "fps": fps,
        "inputGlob": paths.join(render_dir, f"*{extension}"),
        "outputFile": paths.join(render_dir, f"{video_stem}-{frames_text}.mp4"),
        # The frame rate goes in as the number it is; the worker writes it out as a word.
        "args": [*PREVIEW_VIDEO_ARGS, "-pix_fmt", PREVIEW_VIDEO_PIXEL_FORMAT, "-r", fps, "-y"],
    }
    return CompiledTask(
        name="preview-video", type="ffmpeg", commands=[command("frames-to-video", parameters)]
    )
