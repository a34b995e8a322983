"""The journal fields in a booted Debian: `journalctl -u UNIT FLAMENCO_TASK=…` tells one task's story.

Both packages installed from the .debs (python3-systemd comes with them), a job run on the node, then
the journal read the way an operator would.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.support.nspawn import missing_tools, wait_for
from tests.system.test_packaging import (  # noqa: F401  (fixtures, used by name)
    MANAGER,
    SETTLE,
    WORKER,
    Node,
    _no_container_survives,
    container,
    debs,
    node,
    root,
    upgrade_debs,
)

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(missing_tools() is not None, reason=missing_tools() or ""),
    # The first test of a session also builds the .debs and the root filesystem (minutes, once).
    pytest.mark.timeout(1800),
]

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d")


def journal_json(on: Node, unit: str, *matches: str) -> list[dict[str, str]]:
    out = on.ct.run("journalctl", "--no-pager", "-o", "json", "-u", unit, *matches).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def messages(entries: list[dict[str, str]]) -> list[str]:
    return [entry["MESSAGE"] for entry in entries]


def test_a_tasks_story_and_a_jobs_records_are_selected_by_their_fields(node: Node) -> None:  # noqa: F811
    ct = node.ct
    code, job = ct.http(
        "POST",
        "/api/v3/jobs",
        {
            "name": "journal",
            "type": "echo-sleep-test",
            "priority": 50,
            "submitter_platform": "linux",
            # "colour" is no setting of this type: the manager warns about it (a warning about the job)
            "settings": {"message": "hi", "sleep_duration_seconds": 0, "sleep_repeats": 1, "colour": "red"},
        },
    )
    assert code == 200, job

    def completed() -> bool:
        return ct.http("GET", f"/api/v3/jobs/{job['id']}")[1].get("status") == "completed"

    wait_for("the job to complete on the node", completed, SETTLE)
    code, listing = ct.http("GET", f"/api/v3/jobs/{job['id']}/tasks")
    tasks = {t["name"].split("-")[0]: t["id"] for t in listing["tasks"]}
    echo, sleep = tasks["echo"], tasks["sleep"]
    # The worker logs the hand-back after its last update; wait until it is in the journal.
    wait_for(
        "the worker's last line about the sleep task",
        lambda: any("ended" in m for m in messages(journal_json(node, WORKER, f"FLAMENCO_TASK={sleep}"))),
        SETTLE,
    )

    story = journal_json(node, WORKER, f"FLAMENCO_TASK={echo}")
    text = messages(story)
    for step in (
        f"task={echo} job={job['id']} fetched",
        f"task={echo} started",
        "command=echo",
        "outcome=completed",
    ):
        assert any(step in m for m in text), (step, text)
    assert text[-1].endswith(f"task={echo} ended"), text
    assert not any(sleep in m for m in text), "another task's records are not in this story"
    for entry in story:
        assert (entry["FLAMENCO_TASK"], entry["FLAMENCO_JOB"]) == (echo, job["id"]), entry
        assert entry["FLAMENCO_WORKER"] == node.worker_id and entry["FLAMENCO_WORKER_NAME"]
        assert (entry["_TRANSPORT"], entry["SYSLOG_IDENTIFIER"]) == ("journal", "flamenco-worker"), entry
        assert entry["_SYSTEMD_UNIT"] == WORKER
        # journald keeps the time; the text has none of its own, nor a priority prefix
        assert not TIMESTAMP.match(entry["MESSAGE"]) and not entry["MESSAGE"].startswith("<"), entry
    # One entry per record: the stream did not get a copy.
    cat = ct.journal(WORKER)
    assert cat.count(f"task={echo} job={job['id']} fetched") == 1
    assert not any(TIMESTAMP.match(line) for line in cat.splitlines())

    job_records = journal_json(node, MANAGER, f"FLAMENCO_JOB={job['id']}")
    text = messages(job_records)
    assert any(f"job submitted job={job['id']}" in m for m in text), text
    assert any(f"job status changed job={job['id']} from=active to=completed" in m for m in text), text
    assert all(entry["FLAMENCO_JOB"] == job["id"] for entry in job_records)
    (warning,) = [e for e in job_records if "settings its type does not define" in e["MESSAGE"]]
    assert warning["PRIORITY"] == "4" and warning["SYSLOG_IDENTIFIER"] == "flamenco-manager"
    info = [e for e in job_records if "job submitted" in e["MESSAGE"]]
    assert info and info[0]["PRIORITY"] == "6"
    # The task update that completed the job names the task and the worker that sent it.
    (done,) = [e for e in job_records if "to=completed" in e["MESSAGE"]]
    assert (done["FLAMENCO_TASK"], done["FLAMENCO_WORKER"]) == (sleep, node.worker_id)
    worker_records = journal_json(node, MANAGER, f"FLAMENCO_WORKER={node.worker_id}")
    assert any(f"worker signed on worker={node.worker_id}" in m for m in messages(worker_records))

    verbose = ct.run(
        "journalctl", "--no-pager", "-o", "verbose", "-u", WORKER, f"FLAMENCO_TASK={echo}"
    ).stdout
    for field in (f"FLAMENCO_TASK={echo}", f"FLAMENCO_JOB={job['id']}", f"FLAMENCO_WORKER={node.worker_id}"):
        assert f"    {field}" in verbose, verbose[:2000]
