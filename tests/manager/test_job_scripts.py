"""JavaScript job types in a real Manager process over HTTP: loading, listing, overriding, compiling,
errors, reloading (file change, SIGHUP), a missing engine, an endless script, and -check-scripts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flamenco_manager.openapi import load_spec
from tests.manager.openapi_check import assert_response_valid
from tests.support.dbus_daemon import PrivateBus
from tests.support.manager_process import ManagerProcess, NotifiedManager, write_config
from tests.support.notify_socket import NotifySocket
from tests.support.waiting import wait_for
from tests.support.worker_process import WorkerProcess

FIXTURES = Path(__file__).resolve().parent / "job_scripts_fixtures"
STUDIO_RENDER = FIXTURES / "studio_render.js"
ECHO_JS = FIXTURES / "echo_js.js"
# Time limit of a script run in these tests: an endless loop is stopped quickly, a real compile fits.
TEST_TIME_LIMIT = "2s"
# How quickly the Manager must answer while a script runs: half the time limit (a Manager whose event loop
# waited for the script would take the whole limit), with room for a loaded test machine.
RESPONSIVE_WITHIN = 1.0

# Real Manager processes, each with its node child (and a real worker in one test): several processes.
pytestmark = [
    pytest.mark.skipif(shutil.which("node") is None, reason="Node.js (node) is not installed"),
    pytest.mark.system,
]

RENDER_SETTINGS = {
    "frames": "1-10",
    "chunk_size": 3,
    "render_output_root": "/render/shot",
    "render_output_path": "/render/shot/frames/######",
    "blendfile": "/render/shot.blend",
    "fps": 25.0,
    "format": "PNG",
}


def submission(type_name: str = "studio-render", **settings: Any) -> dict[str, Any]:
    return {
        "name": "shot 1",
        "type": type_name,
        "priority": 50,
        "submitter_platform": "linux",
        "settings": {**RENDER_SETTINGS, **settings},
    }


def write_script(directory: Path, name: str, text: str) -> Path:
    """A script written whole under a temporary name and renamed into place, as an editor or cp -a would."""
    path = directory / name
    part = directory / f".{name}.part"
    part.write_text(text)
    part.rename(path)
    return path


@pytest.fixture
def start_manager(tmp_path: Path) -> Iterator[Callable[..., ManagerProcess]]:
    """Start a Manager whose scripts_dir holds the given scripts: `start_manager({"a.js": text})`."""
    managers: list[ManagerProcess] = []

    def start(scripts: dict[str, str] | None = None, extra: str = "") -> ManagerProcess:
        scripts_dir = tmp_path / "scripts"
        scripts_dir.mkdir(exist_ok=True)
        for name, text in (scripts or {}).items():
            write_script(scripts_dir, name, text)
        manager = ManagerProcess(
            tmp_path / f"m{len(managers)}",
            extra_yaml=f"scripts_dir: {scripts_dir}\njob_script_time_limit: {TEST_TIME_LIMIT}\n{extra}",
        )
        managers.append(manager)
        return manager.start()

    yield start
    for manager in managers:
        manager.stop()


def types_by_name(manager: ManagerProcess) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in manager.get("/api/v3/jobs/types")["job_types"]}


def declared_settings() -> list[dict[str, Any]]:
    """studio_render.js's settings as the script declares them."""
    return [
        {
            "key": "frames",
            "type": "string",
            "required": True,
            "eval": "f'{C.scene.frame_start}-{C.scene.frame_end}'",
            "description": "Frame range to render, e.g. '47', '1-30', '3, 5-10, 47-327'",
        },
        {
            "key": "chunk_size",
            "type": "int32",
            "default": 1,
            "propargs": {"min": 1, "max": 1000},
            "description": "Number of frames to render in one Blender render task",
        },
        {
            "key": "render_output_root",
            "type": "string",
            "subtype": "dir_path",
            "required": True,
            "visible": "submission",
            "description": "Base directory of where render output is stored",
        },
        {
            "key": "render_output_path",
            "type": "string",
            "subtype": "file_path",
            "editable": False,
            "eval": "str(Path(abspath(settings.render_output_root), jobname, '######'))",
            "evalInfo": {"showLinkButton": True, "description": "Where the frames go"},
            "description": "Final file path of where render output will be saved",
        },
        {
            "key": "blendfile",
            "type": "string",
            "required": True,
            "visible": "web",
            "description": "Path of the Blend file",
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
            "choices": ["PNG", "OPEN_EXR", "JPEG"],
            "visible": "web",
        },
        {"key": "has_previews", "type": "bool", "required": False, "visible": "hidden", "default": False},
    ]


def test_scripts_are_listed_beside_the_builtins_with_their_settings_as_declared(start_manager) -> None:
    manager = start_manager({"studio_render.js": STUDIO_RENDER.read_text(), "tiny.js": "// x\n"})
    types = types_by_name(manager)
    assert {"echo-sleep-test", "simple-blender-render", "studio-render"} <= set(types)
    assert "tiny" not in types  # under 8 bytes: not a script
    listed = manager.get("/api/v3/jobs/types")["job_types"]
    assert [t["name"] for t in listed] == sorted(t["name"] for t in listed)
    studio = types["studio-render"]
    assert studio["label"] == "Studio Render"
    assert studio["description"] == "Render a frame range in chunks, then make a preview video"
    assert studio["settings"] == declared_settings()
    assert [list(s) for s in studio["settings"]] == [list(s) for s in declared_settings()]  # declared order
    status, one = manager.request("GET", "/api/v3/jobs/type/studio-render")
    assert status == 200 and one == studio
    spec = load_spec()
    assert_response_valid(spec, "get", "/api/v3/jobs/types", 200, {"job_types": listed})
    assert_response_valid(spec, "get", "/api/v3/jobs/type/{type_name}", 200, studio)


def test_a_js_job_compiles_and_its_tasks_are_stored(start_manager) -> None:
    manager = start_manager({"studio_render.js": STUDIO_RENDER.read_text()})
    status, job = manager.request("POST", "/api/v3/jobs", submission())
    assert status == 200, job
    assert job["metadata"] == {"render_output": "/render/shot/frames"}  # the script's metadata is kept
    assert job["settings"]["has_previews"] is False  # the declared default was filled in
    tasks = manager.tasks(job["id"])
    names = [t["name"] for t in tasks]
    assert len(names) == 5 and names[:3] == ["render-1-3", "render-4-6", "render-7-9"]
    assert names[3].startswith("render-10") and names[4] == "preview-video"
    render = manager.task(tasks[0]["id"])
    assert render["task_type"] == "blender"
    assert render["commands"][0]["name"] == "blender-render"
    assert render["commands"][0]["parameters"]["args"][-1] == "1..3"
    video = manager.task(tasks[-1]["id"])
    assert video["task_type"] == "ffmpeg"
    assert video["commands"][0]["parameters"]["fps"] == 25
    assert "print job_type=studio-render script=studio_render.js: compiled 4 render tasks" in manager.log()


def test_the_script_may_rename_its_job(start_manager) -> None:
    manager = start_manager({"echo_js.js": ECHO_JS.read_text()})
    status, job = manager.request(
        "POST",
        "/api/v3/jobs",
        {
            "name": "hello",
            "type": "echo-js",
            "priority": 50,
            "submitter_platform": "linux",
            "settings": {"message": "hi"},
        },
    )
    assert status == 200, job
    assert job["name"] == "hello (echo)"
    assert [t["name"] for t in manager.tasks(job["id"])] == ["echo", "sleep-1", "sleep-2"]


def test_script_errors_are_400_naming_script_and_line(start_manager) -> None:
    manager = start_manager({"studio_render.js": STUDIO_RENDER.read_text()})
    status, body = manager.request("POST", "/api/v3/jobs", submission(chunk_size=600))
    assert status == 400, body
    assert "studio_render.js:28: chunk_size 600 is more than this studio allows" in body["message"]
    status, body = manager.request("POST", "/api/v3/jobs", submission(frames="10-1"))
    assert status == 400 and 'studio_render.js:32: invalid range "10-1": empty range' in body["message"], body
    # Settings are checked against the declared types before the script runs.
    status, body = manager.request("POST", "/api/v3/jobs/check", submission(chunk_size="three"))
    assert status == 400 and "chunk_size" in body["message"], body
    assert manager.request("POST", "/api/v3/jobs/check", submission())[0] == 204


def test_a_script_replaces_a_builtin_until_it_is_removed(start_manager) -> None:
    text = STUDIO_RENDER.read_text().replace('"Studio Render"', '"Our Blender Render"')
    manager = start_manager({"simple_blender_render.js": text})
    builtin_label = "Simple Blender Render"
    assert types_by_name(manager)["simple-blender-render"]["label"] == "Our Blender Render"
    status, job = manager.request("POST", "/api/v3/jobs", submission("simple-blender-render"))
    assert status == 200, job
    assert manager.tasks(job["id"])[-1]["name"] == "preview-video"
    (manager.workdir.parent / "scripts" / "simple_blender_render.js").unlink()
    manager.wait_until(
        "the built-in back",
        lambda: types_by_name(manager)["simple-blender-render"]["label"] == builtin_label,
        timeout=10,
    )


def test_a_script_added_while_the_manager_runs_is_offered_within_moments(start_manager) -> None:
    manager = start_manager({})
    assert "echo-js" not in types_by_name(manager)
    write_script(manager.workdir.parent / "scripts", "echo_js.js", ECHO_JS.read_text())
    manager.wait_until("the new job type", lambda: "echo-js" in types_by_name(manager), timeout=10)
    assert manager.request("POST", "/api/v3/jobs/check", submission("echo-js", message="hi"))[0] == 204


def test_a_stale_etag_is_refused_after_a_reload_by_file_change(start_manager) -> None:
    manager = start_manager({"studio_render.js": STUDIO_RENDER.read_text()})
    old = types_by_name(manager)["studio-render"]["etag"]
    assert manager.request("POST", "/api/v3/jobs/check", {**submission(), "type_etag": old})[0] == 204
    scripts = manager.workdir.parent / "scripts"
    write_script(
        scripts, "studio_render.js", STUDIO_RENDER.read_text().replace("Studio Render", "Studio Render 2")
    )
    new = manager.wait_until(
        "the changed job type",
        lambda: (t := types_by_name(manager)["studio-render"])["etag"] != old and t["etag"],
        timeout=10,
    )
    status, body = manager.request("POST", "/api/v3/jobs", {**submission(), "type_etag": old})
    assert status == 412, body
    assert manager.request("POST", "/api/v3/jobs", {**submission(), "type_etag": new})[0] == 200


def test_a_broken_script_keeps_its_last_good_version_and_spoils_no_other(start_manager) -> None:
    manager = start_manager(
        {
            "studio_render.js": STUDIO_RENDER.read_text(),
            "broken.js": "const JOB_TYPE = {label: 'x',\n oops(\n",
        }
    )
    types = types_by_name(manager)
    assert "studio-render" in types and "broken" not in types
    assert "script=broken.js" in manager.log()
    etag = types["studio-render"]["etag"]
    scripts = manager.workdir.parent / "scripts"
    write_script(scripts, "studio_render.js", "const JOB_TYPE = {label: 'half-saved',\n")
    manager.wait_until(
        "the load error",
        lambda: "its previous version stays in use script=studio_render.js" in manager.log(),
        10,
    )
    assert types_by_name(manager)["studio-render"]["etag"] == etag
    assert manager.request("POST", "/api/v3/jobs", submission())[0] == 200


def test_without_an_engine_the_builtins_work_and_one_line_names_the_skipped_scripts(start_manager) -> None:
    manager = start_manager(
        {"studio_render.js": STUDIO_RENDER.read_text(), "echo_js.js": ECHO_JS.read_text()},
        extra="javascript_engine: /nonexistent\n",
    )
    types = types_by_name(manager)
    assert {"echo-sleep-test", "simple-blender-render"} <= set(types)
    assert "studio-render" not in types and "echo-js" not in types
    lines = [line for line in manager.log().splitlines() if "JavaScript job types skipped" in line]
    assert len(lines) == 1 and "scripts=echo_js.js,studio_render.js" in lines[0], manager.log()
    assert "/nonexistent" in lines[0]
    manager.submit_echo_sleep()


def test_the_manager_answers_while_a_script_loops_forever(start_manager) -> None:
    endless = "const JOB_TYPE = {label: 'Endless'};\nfunction compileJob(job) {\n  while (true) {}\n}\n"
    manager = start_manager({"endless.js": endless})
    answer: list[tuple[int, Any]] = []
    body = {"name": "x", "type": "endless", "priority": 50, "submitter_platform": "linux"}
    submitter = threading.Thread(target=lambda: answer.append(manager.request("POST", "/api/v3/jobs", body)))
    submitter.start()
    # While the script runs (the submission is unanswered), the Manager answers other requests at once.
    latencies: list[float] = []
    while submitter.is_alive():
        began = time.monotonic()
        manager.get("/api/v3/version")
        latencies.append(time.monotonic() - began)
    submitter.join(timeout=30)
    assert len(latencies) >= 3, latencies
    assert max(latencies) < RESPONSIVE_WITHIN, latencies
    status, error = answer[0]
    assert status == 400 and "endless.js" in error["message"], error
    assert "stopped after 2 s (time limit)" in error["message"], error


def _get_json(url: str) -> Any:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        return json.loads(response.read())


def test_sighup_reloads_the_scripts_and_tells_systemd(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    original = STUDIO_RENDER.read_text()
    path = write_script(scripts, "studio_render.js", original)
    manager = NotifiedManager(write_config(tmp_path, scripts_dir=str(scripts)))
    try:
        url = f"{manager.url}/api/v3/jobs/type/studio-render"
        assert _get_json(url)["label"] == "Studio Render"
        # Same size, same inode, same mtime: a change the watcher cannot see, so only SIGHUP reloads it.
        before = path.stat()
        changed = original.replace("Studio Render", "Studio Rendez")
        with path.open("r+") as file:
            file.write(changed)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert path.stat().st_ino == before.st_ino and path.stat().st_size == before.st_size
        manager.proc.send_signal(signal.SIGHUP)
        manager.notify.wait_for("RELOADING=1", timeout=10)
        manager.notify.wait_for("READY=1", timeout=10)
        assert _get_json(url)["label"] == "Studio Rendez"
        code, stderr = manager.terminate()
        assert code == 0, stderr
        assert "reloading the job type scripts" in stderr
    finally:
        manager.close()


def _check(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flamenco_manager", "-check-scripts", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_scripts_prints_a_table_and_exits_by_the_result(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    write_script(scripts, "studio_render.js", STUDIO_RENDER.read_text())
    write_script(scripts, "echo_js.js", ECHO_JS.read_text())
    (tmp_path / "flamenco-manager.yaml").write_text("_meta: {version: 3}\n")
    good = _check(cwd=tmp_path)  # scripts_dir: `scripts` beside the configuration file
    assert good.returncode == 0, good.stdout + good.stderr
    rows = {line.split()[0]: line for line in good.stdout.splitlines()[1:]}
    assert "Echo (JavaScript)" in rows["echo-js"] and rows["echo-js"].endswith("  2  3 tasks")
    # frames "1" (the placeholder) in chunks of 1: one render task and the video
    assert "Studio Render" in rows["studio-render"] and rows["studio-render"].endswith("  8  2 tasks")

    (tmp_path / "settings.yaml").write_text("studio-render:\n  frames: 1-100\n  chunk_size: 10\n")
    overridden = _check("-check-settings", "settings.yaml", cwd=tmp_path)
    assert overridden.returncode == 0 and "11 tasks" in overridden.stdout, overridden.stdout

    write_script(
        scripts,
        "broken.js",
        "const JOB_TYPE = {label: 'Broken'};\nfunction compileJob(job) {\n  nope();\n}\n",
    )
    bad = _check(str(scripts), cwd=tmp_path)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    broken = next(line for line in bad.stdout.splitlines() if line.startswith("broken "))
    assert "broken.js:3:" in broken and "nope" in broken

    (tmp_path / "no-engine.yaml").write_text("_meta: {version: 3}\njavascript_engine: /nonexistent\n")
    missing = _check("-config", "no-engine.yaml", cwd=tmp_path)
    assert missing.returncode == 2 and "/nonexistent" in missing.stderr, missing.stderr

    (tmp_path / "elsewhere.yaml").write_text("_meta: {version: 3}\nscripts_dir: /nonexistent/scripts\n")
    none = _check("-config", "elsewhere.yaml", cwd=tmp_path)
    assert none.returncode == 0 and "no job type scripts in /nonexistent/scripts" in none.stdout, none


@pytest.mark.system
def test_a_real_worker_runs_the_tasks_of_a_js_job(
    start_manager, short_dir: Path, session_bus: PrivateBus
) -> None:
    manager = start_manager({"echo_js.js": ECHO_JS.read_text()})
    worker = WorkerProcess(
        short_dir / "w1",
        ["-dbus", "session", "-manager", manager.url, "-name", "w1"],
        bus=session_bus,
        notify=NotifySocket(short_dir / "n1.sock"),
    )
    (short_dir / "w1").mkdir()
    worker.start()
    try:
        worker.wait_ready()
        status, job = manager.request(
            "POST",
            "/api/v3/jobs",
            {
                "name": "run me",
                "type": "echo-js",
                "priority": 50,
                "submitter_platform": "linux",
                "settings": {"message": "hello from JavaScript", "sleeps": 2},
            },
        )
        assert status == 200, job
        done = manager.wait_until(
            "the job to complete", lambda: (j := manager.job(job["id"]))["status"] == "completed" and j, 30
        )
        assert done["name"] == "run me (echo)"
        assert all(t["status"] == "completed" for t in manager.tasks(job["id"]))
        echo = manager.tasks(job["id"])[0]
        code, info = manager.request("GET", f"/api/v3/tasks/{echo['id']}/log")
        assert code == 200, info
        log = (manager.workdir / "storage" / info["url"].split("/job-files/", 1)[1]).read_text()
        assert "hello from JavaScript" in log
    finally:
        worker.stop()
    wait_for(lambda: worker.process.poll() is not None, 10, "the worker to stop")
