"""What a submitter reads when the Manager refuses a job: every problem named in one `Error` answer.

Over real HTTP against the in-process Manager; every answer is checked against the OpenAPI document.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.manager.conftest import API, RENDER, Farm

JOBS_LOGGER = "flamenco_manager.services.jobs"
ENDPOINTS = ("jobs", "jobs/check")

ECHO: dict[str, Any] = {
    "name": "echo",
    "type": "echo-sleep-test",
    "priority": 50,
    "submitter_platform": "linux",
    "settings": {"message": "hi"},
}


def render(**settings: Any) -> dict[str, Any]:
    """The render submission with settings changed; a None value leaves the setting out."""
    merged = {**RENDER["settings"], **settings}
    return {**RENDER, "settings": {k: v for k, v in merged.items() if v is not None}}


async def refused(farm: Farm, endpoint: str, body: dict[str, Any]) -> str:
    """The message of the 400 answer, after checking its shape and that nothing was stored."""
    reply = await farm.client.post(f"{API}/{endpoint}", body)
    assert reply.status == 400, reply.body
    assert set(reply.body) == {"code", "message"} and reply.body["code"] == 400, reply.body
    assert (await farm.client.get(f"{API}/jobs")).body["jobs"] == []
    return reply.body["message"]


def undefined_settings_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == JOBS_LOGGER and r.getMessage().startswith("job has settings its type does not define")
    ]


# --- unknown job type --------------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_unknown_job_type_lists_the_known_ones(farm: Farm, endpoint: str) -> None:
    message = await refused(farm, endpoint, {**RENDER, "type": "simple-blender-rendr"})
    assert message == (
        "type: unknown job type 'simple-blender-rendr'; known types: echo-sleep-test, simple-blender-render"
    )


async def test_unknown_job_type_is_named_with_the_other_field_problems(farm: Farm) -> None:
    message = await refused(farm, "jobs", {**ECHO, "type": "echo", "priority": -1})
    assert message == (
        "2 problems: priority: must be between 0 and 100, not -1;"
        " type: unknown job type 'echo'; known types: echo-sleep-test, simple-blender-render"
    )


# --- settings ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_every_bad_or_missing_setting_is_named_at_once(farm: Farm, endpoint: str) -> None:
    message = await refused(farm, endpoint, render(frames=None, chunk_size="ten", fps="fast"))
    assert message == (
        "settings: 3 problems: frames: required setting is missing;"
        " chunk_size: expected a whole number, not a string ('ten');"
        " fps: expected a number, not a string ('fast')"
    )


async def test_a_lone_bad_setting_is_named_under_settings(farm: Farm) -> None:
    message = await refused(farm, "jobs", {**ECHO, "settings": {}})
    assert message == "settings: message: required setting is missing"


async def test_settings_the_job_type_refuses_itself_are_named_at_once(farm: Farm) -> None:
    message = await refused(farm, "jobs", render(frames="10-1", chunk_size=0, format="FFMPEG"))
    assert message == (
        "settings: 3 problems: frames: range '10-1' runs backwards; write it as 1-10;"
        " chunk_size: must be at least 1, not 0;"
        " format: this job type renders images, not video (FFMPEG)"
    )


# --- the submission's own fields ---------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_every_bad_field_is_named_at_once(farm: Farm, endpoint: str) -> None:
    body = {**ECHO, "name": "", "priority": 101, "initial_status": "completed"}
    message = await refused(farm, endpoint, body)
    assert message == (
        "3 problems: name: must not be empty; priority: must be between 0 and 100, not 101;"
        " initial_status: must be one of queued, paused, not 'completed'"
    )


async def test_field_and_setting_problems_come_together_settings_last(farm: Farm) -> None:
    body = {
        **render(frames=None, fps="fast"),
        "name": " ",
        "worker_tag": "5f0c1a7e-0000-4000-8000-000000000000",
    }
    message = await refused(farm, "jobs", body)
    assert message == (
        "4 problems: name: must not be empty;"
        " worker_tag: no worker tag with id 5f0c1a7e-0000-4000-8000-000000000000;"
        " settings: 2 problems: frames: required setting is missing;"
        " fps: expected a number, not a string ('fast')"
    )


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_every_field_of_the_wrong_json_type_is_named_at_once(farm: Farm, endpoint: str) -> None:
    # The body's shape is reported first: its rules (here the empty type) wait until it is right.
    body = {k: v for k, v in ECHO.items() if k != "name"}
    body.update(type="", priority="high", settings=["message", "hi"], metadata={"frame": 3, "user": "ann"})
    message = await refused(farm, endpoint, body)
    assert message == (
        "4 problems: name: is required; priority: expected a whole number, not a string ('high');"
        " settings: expected an object, not a list (['message', 'hi']);"
        " metadata.frame: expected a string, not a number (3)"
    )


async def test_a_lone_json_type_problem_reads_as_itself(farm: Farm) -> None:
    message = await refused(farm, "jobs", {**ECHO, "settings": "message=hi"})
    assert message == "settings: expected an object, not a string ('message=hi')"
    message = await refused(farm, "jobs", {**ECHO, "storage": {"shaman_checkout_id": 7}})
    assert message == "storage.shaman_checkout_id: expected a string, not a number (7)"


# --- a stale job type --------------------------------------------------------------------------------------


async def test_stale_etag_is_412_before_settings_are_checked(farm: Farm) -> None:
    stale = {**ECHO, "settings": {"message": 5}, "type_etag": "0" * 40}
    for endpoint in ENDPOINTS:
        reply = await farm.client.post(f"{API}/{endpoint}", stale)
        assert reply.status == 412, reply.body
        assert "refresh the job type" in reply.body["message"]
    message = await refused(farm, "jobs", {**stale, "name": ""})
    assert message == "name: must not be empty"


# --- settings the job type does not define -----------------------------------------------------------------


async def test_undefined_setting_is_accepted_and_named(farm: Farm, caplog: pytest.LogCaptureFixture) -> None:
    body = {**ECHO, "settings": {"message": "hi", "sleep_repeatz": 3}}
    with caplog.at_level(logging.WARNING, logger=JOBS_LOGGER):
        reply = await farm.client.post(f"{API}/jobs", body)
    assert reply.status == 200, reply.body
    job = reply.body
    assert job["settings"]["sleep_repeatz"] == 3 and job["settings"]["sleep_repeats"] == 1
    expected = "Settings not defined by job type echo-sleep-test: sleep_repeatz"
    assert job["activity"] == expected
    assert (await farm.job(job["id"]))["activity"] == expected
    assert undefined_settings_warnings(caplog) == [
        f"job has settings its type does not define job={job['id']} name='echo' type=echo-sleep-test"
        " settings=sleep_repeatz"
    ]


async def test_check_names_undefined_settings_in_the_log(
    farm: Farm, caplog: pytest.LogCaptureFixture
) -> None:
    body = {**ECHO, "settings": {"message": "hi", "sleep_repeatz": 3, "colour": "red"}}
    with caplog.at_level(logging.WARNING, logger=JOBS_LOGGER):
        reply = await farm.client.post(f"{API}/jobs/check", body)
    assert reply.status == 204, reply.body
    assert undefined_settings_warnings(caplog) == [
        "job has settings its type does not define job=- name='echo' type=echo-sleep-test"
        " settings=sleep_repeatz,colour"
    ]


async def test_hidden_settings_are_defined_ones(farm: Farm, caplog: pytest.LogCaptureFixture) -> None:
    # fps, image_file_extension and has_previews are `visible: hidden`; the add-on sends them all the same.
    with caplog.at_level(logging.WARNING, logger=JOBS_LOGGER):
        reply = await farm.client.post(f"{API}/jobs", render())
    assert reply.status == 200, reply.body
    assert reply.body["activity"] == ""
    assert undefined_settings_warnings(caplog) == []
