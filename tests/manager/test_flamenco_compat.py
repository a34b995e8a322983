"""Answers exactly as Flamenco v3 gives them, where a client could tell the difference.

Each case names what Flamenco's Manager does (its api_impl handlers); the OpenAPI checker in the
client validates every answer against our document as well.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap
import uuid
from typing import Any

import pytest

from flamenco_manager import __version__, buildinfo
from flamenco_manager.config import ConfigError, load_config
from tests.manager.conftest import API, Farm

# --- may-i-run: all three MayKeepRunning fields, always ----------------------------------------------------


async def test_may_i_run_sends_every_field_when_allowed(farm: Farm) -> None:
    worker = await farm.awake_worker(("misc",))
    await farm.submit_echo()
    task = (await worker.fetch()).body
    answer = (await worker.may_i_run(task["uuid"])).body
    assert answer == {"mayKeepRunning": True, "reason": "", "statusChangeRequested": False}


async def test_may_i_run_unknown_task(farm: Farm) -> None:
    worker = await farm.awake_worker(("misc",))
    answer = (await worker.may_i_run(str(uuid.uuid4()))).body
    assert answer == {"mayKeepRunning": False, "reason": "Task not found", "statusChangeRequested": False}


async def test_may_i_run_other_worker_and_non_runnable_status(farm: Farm) -> None:
    first = await farm.awake_worker(("misc",))
    second = await farm.awake_worker(("misc",))
    job = await farm.submit_echo()
    task = (await first.fetch()).body
    assert (await second.may_i_run(task["uuid"])).body == {
        "mayKeepRunning": False,
        "reason": "task not assigned to this worker",
        "statusChangeRequested": False,
    }
    await first.update(task["uuid"], taskStatus="completed")
    # Flamenco quotes the status with double quotes (Go's %q).
    assert (await first.may_i_run(task["uuid"])).body == {
        "mayKeepRunning": False,
        "reason": 'task is in non-runnable status "completed"',
        "statusChangeRequested": False,
    }
    assert job["id"]


async def test_may_i_run_immediate_status_request(farm: Farm) -> None:
    worker = await farm.awake_worker(("misc",))
    await farm.submit_echo()
    task = (await worker.fetch()).body
    reply = await farm.client.post(
        f"{API}/worker-mgt/workers/{worker.uuid}/setstatus", {"status": "asleep", "is_lazy": False}
    )
    assert reply.status == 204
    assert (await worker.may_i_run(task["uuid"])).body == {
        "mayKeepRunning": False,
        "reason": "worker status change requested",
        "statusChangeRequested": True,
    }


# --- the version handshake -------------------------------------------------------------------------------


async def test_version_presents_the_flamenco_release(farm: Farm) -> None:
    version = (await farm.client.get(f"{API}/version")).body
    assert version["shortversion"] == buildinfo.DEFAULT_FLAMENCO_VERSION == "3.7"
    assert version["version"] == f"3.7 (flamenco-farm {__version__})"
    assert version["name"] == farm.manager.config.manager_name
    assert version["git"] and version["git"] == buildinfo.git_revision()


@pytest.mark.parametrize("config_overrides", [{"flamenco_version": "3.3.1"}])
async def test_version_follows_the_setting(farm: Farm) -> None:
    version = (await farm.client.get(f"{API}/version")).body
    assert version["shortversion"] == "3.3.1"
    assert version["version"].startswith("3.3.1 (flamenco-farm ")


def _config(tmp_path: pathlib.Path, text: str) -> pathlib.Path:
    path = tmp_path / "flamenco-manager.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def test_flamenco_version_setting_is_read_and_checked(tmp_path: pathlib.Path) -> None:
    good = _config(tmp_path, "_meta: {version: 3}\nflamenco_version: '3.6'\n")
    assert load_config(good, explicit=True).flamenco_version == "3.6"
    for wrong in ("'0.1.0'", "'3'", "'latest'", "3.6", "''"):
        path = _config(tmp_path, f"_meta: {{version: 3}}\nflamenco_version: {wrong}\n")
        with pytest.raises(ConfigError) as info:
            load_config(path, explicit=True)
        assert str(info.value).startswith(f"{path}:2: flamenco_version: ")


def test_shipped_configuration_documents_the_setting() -> None:
    shipped = pathlib.Path(__file__).parents[2] / "config" / "flamenco-manager.yaml"
    assert load_config(shipped, explicit=True).flamenco_version == buildinfo.DEFAULT_FLAMENCO_VERSION


def test_git_revision_prefers_the_file_written_at_build_time(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = tmp_path / "pkg" / "GIT_REVISION"
    written.parent.mkdir()
    written.write_text("v0.1.0-3-gabcdef0\n")
    monkeypatch.setattr(buildinfo, "GIT_REVISION_FILE", written)
    buildinfo.git_revision.cache_clear()
    try:
        assert buildinfo.git_revision() == "v0.1.0-3-gabcdef0"
        written.unlink()  # an unpacked tarball: no file, no checkout
        buildinfo.git_revision.cache_clear()
        assert buildinfo.git_revision() == buildinfo.UNKNOWN_REVISION
    finally:
        buildinfo.git_revision.cache_clear()


def test_version_flag_names_both_versions() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "flamenco_manager", "-version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert f"flamenco-manager {__version__}" in out and "Flamenco 3.7" in out


# --- unknown but valid job UUIDs ---------------------------------------------------------------------------


async def test_unknown_job_answers_empty_like_flamenco(farm: Farm) -> None:
    job_id = str(uuid.uuid4())
    tasks = await farm.client.get(f"{API}/jobs/{job_id}/tasks")
    assert tasks.status == 200 and tasks.body == {"tasks": []}
    blocklist = await farm.client.get(f"{API}/jobs/{job_id}/blocklist")
    assert blocklist.status == 200 and blocklist.body == []
    assert (await farm.client.get(f"{API}/jobs/{job_id}/last-rendered")).status == 204
    entry = [{"worker_id": str(uuid.uuid4()), "task_type": "misc"}]
    assert (await farm.client.delete(f"{API}/jobs/{job_id}/blocklist", entry)).status == 204
    # Still a 400 for what is not a UUID, and for a malformed body.
    assert (await farm.client.get(f"{API}/jobs/not-a-uuid/tasks")).status == 400
    assert (await farm.client.delete(f"{API}/jobs/{job_id}/blocklist", [1])).status == 400
    # The job itself is still unknown.
    assert (await farm.client.get(f"{API}/jobs/{job_id}")).status == 404


# --- supported task types: stored as sent, trimmed and lower-cased at sign-on ------------------------------


async def test_task_types_as_flamenco_stores_them(farm: Farm) -> None:
    sent = ["Misc", " blender", "misc", "FFmpeg "]
    reply = await farm.client.post(
        f"{API}/worker/register-worker",
        {"name": "w", "platform": "linux", "secret": "s3cret", "supported_task_types": sent},
    )
    assert reply.status == 200 and reply.body["supported_task_types"] == sent
    worker_id = reply.body["uuid"]
    assert (await farm.worker(worker_id))["supported_task_types"] == sent
    signed = await farm.client.post(
        f"{API}/worker/sign-on",
        {"name": "w", "supported_task_types": sent, "software_version": "3.7"},
        auth=(worker_id, "s3cret"),
    )
    assert signed.status == 200
    assert (await farm.worker(worker_id))["supported_task_types"] == ["misc", "blender", "misc", "ffmpeg"]
    # Scheduling still matches the normalised names.
    await farm.client.post(f"{API}/worker/state-changed", {"status": "awake"}, auth=(worker_id, "s3cret"))
    await farm.submit_echo()
    fetched = await farm.client.post(f"{API}/worker/task", auth=(worker_id, "s3cret"))
    assert fetched.status == 200 and fetched.body["task_type"] == "misc"


# --- wording and strictness ------------------------------------------------------------------------------


async def test_empty_secret_is_accepted_and_still_hashed(farm: Farm) -> None:
    reply = await farm.client.post(
        f"{API}/worker/register-worker",
        {"name": "w", "platform": "linux", "secret": "", "supported_task_types": ["misc"]},
    )
    assert reply.status == 200
    worker = farm.manager.store.get_worker(reply.body["uuid"])
    assert worker is not None and worker.secret_hash.startswith("$2")
    ok = await farm.client.post(
        f"{API}/worker/sign-on",
        {"name": "w", "supported_task_types": ["misc"], "software_version": "3.7"},
        auth=(reply.body["uuid"], ""),
    )
    assert ok.status == 200
    wrong = await farm.client.post(
        f"{API}/worker/sign-on",
        {"name": "w", "supported_task_types": ["misc"], "software_version": "3.7"},
        auth=(reply.body["uuid"], "guess"),
    )
    assert wrong.status == 403


async def test_empty_tag_name_is_accepted(farm: Farm) -> None:
    created = await farm.client.post(f"{API}/worker-mgt/tags", {"name": ""})
    assert created.status == 200 and created.body["name"] == ""
    renamed = await farm.client.put(f"{API}/worker-mgt/tag/{created.body['id']}", {"name": " spaced "})
    assert renamed.status == 204
    assert (await farm.client.get(f"{API}/worker-mgt/tag/{created.body['id']}")).body["name"] == " spaced "


async def test_restart_refusal_names_the_worker_uuid(farm: Farm) -> None:
    worker = await farm.register()
    await worker.sign_on(can_restart=False)
    reply = await farm.client.post(
        f"{API}/worker-mgt/workers/{worker.uuid}/setstatus", {"status": "restart", "is_lazy": True}
    )
    assert reply.status == 412
    assert reply.body["message"] == f'worker "{worker.uuid}" does not know how to restart'


async def test_stale_etag_says_the_settings_are_outdated(farm: Farm) -> None:
    body: dict[str, Any] = {
        "name": "stale",
        "type": "echo-sleep-test",
        "type_etag": "0" * 40,
        "priority": 50,
        "submitter_platform": "linux",
        "settings": {"message": "hi", "sleep_duration_seconds": 0, "sleep_repeats": 1},
    }
    for path in ("/jobs", "/jobs/check"):
        reply = await farm.client.post(f"{API}{path}", body)
        assert reply.status == 412
        message = reply.body["message"]
        assert "settings are outdated" in message and "refresh the job type" in message


async def test_conflict_says_whose_task_it_is(farm: Farm) -> None:
    first = await farm.awake_worker(("misc",))
    second = await farm.awake_worker(("misc",))
    await farm.submit_echo(repeats=1)
    task = (await first.fetch()).body
    reply = await second.update(task["uuid"], activity="x")
    assert reply.status == 409 and reply.body["message"] == f"task {task['uuid']} is not assigned to you"
    # The sleep task waits on the echo task: assigned to nobody yet.
    job_tasks = await farm.tasks(task["job"])
    waiting = next(t for t in job_tasks if t["id"] != task["uuid"])
    reply = await first.update(waiting["id"], activity="x")
    assert reply.status == 409
    assert (
        reply.body["message"] == f"task {waiting['id']} is not assigned to any worker, so not to you either"
    )
