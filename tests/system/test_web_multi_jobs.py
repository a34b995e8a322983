"""The Jobs tab with several jobs at once: multi-select and its actions, mass delete, a job's blocklist.

A real Manager serves the page; jobs are submitted through its API. Screenshots land in
test-artifacts/web-ui/.
"""

from __future__ import annotations

import base64
import datetime
import json
import math
import secrets
import time
import urllib.request
from typing import Any

import pytest

from tests.support.browser import screenshot
from tests.support.manager_process import ManagerProcess
from tests.system.test_web_ui import LIVE, Opener, browser, expect, job_row, manager, open_ui, toast

__all__ = ["browser", "manager", "open_ui"]  # fixtures used by the tests below

pytestmark = pytest.mark.system


def submit(manager: ManagerProcess, name: str) -> str:
    return manager.submit_echo_sleep(seconds=1, repeats=1, name=name)["id"]


def multi_button(page: Any, action: str) -> Any:
    return page.locator(f'.multi-selection button[data-action="{action}"]')


def test_select_several_jobs_and_act_on_the_ones_that_allow_it(
    manager: ManagerProcess, open_ui: Opener
) -> None:
    # no workers: the jobs stay queued; one is paused (with nothing running it pauses at once)
    ids = [submit(manager, f"batch {i}") for i in range(4)]
    paused = ids[0]
    status, _ = manager.request("POST", f"/api/v3/jobs/{paused}/setstatus", {"status": "pause-requested"})
    assert status == 204
    manager.wait_until("the job to pause", lambda: manager.job(paused)["status"] == "paused")
    page, console = open_ui(manager, f"#/jobs/{ids[3]}")
    details = page.locator(".details-pane")
    expect(details.locator(".job-head h2")).to_have_text("batch 3", timeout=LIVE)

    # Ctrl-click adds a job: the pane summarises, the address no longer names one job
    job_row(page, ids[2]).click(modifiers=["Control"])
    multi = page.locator(".multi-selection")
    expect(multi.locator("h2")).to_have_text("2 jobs selected")
    expect(details.locator(".job-head")).to_be_hidden()
    assert page.evaluate("location.hash") == "#/jobs"
    # Shift-click selects the range from the last clicked job, in the order shown
    order = page.locator(".jobs-grid .grid-row").evaluate_all("rows => rows.map(r => r.dataset.id)")
    a, b = sorted((order.index(ids[2]), order.index(ids[0])))
    span = order[a : b + 1]
    job_row(page, ids[0]).click(modifiers=["Shift"])
    expect(page.locator(".jobs-grid .grid-row[aria-selected=true]")).to_have_count(len(span))
    assert (
        page.locator(".jobs-grid .grid-row[aria-selected=true]").evaluate_all(
            "rows => rows.map(r => r.dataset.id)"
        )
        == span
    )
    expect(page.locator(".select-all")).to_have_js_property("indeterminate", len(span) < 4)
    # "select all shown" takes the rest: four jobs, one of them paused
    page.locator(".select-all").check()
    expect(multi.locator("h2")).to_have_text("4 jobs selected")
    expect(page.locator(".jobs-grid .grid-row[aria-selected=true]")).to_have_count(4)
    expect(multi_button(page, "pause")).to_have_text("Pause 3 of 4")
    expect(multi_button(page, "requeue")).to_have_text("Requeue 1 of 4")
    expect(multi_button(page, "cancel")).to_have_text("Cancel 4")
    expect(multi_button(page, "delete")).to_have_text("Delete 4…")
    screenshot(page, "jobs-multi-selected")

    # one job refuses: its failure is named, the others are done
    refused = ids[1]
    page.route(
        f"**/api/v3/jobs/{refused}/setstatus",
        lambda route: route.fulfill(
            status=422, content_type="application/json", body=json.dumps({"code": 422, "message": "not now"})
        ),
    )
    console.allow(r"status of 422")
    multi_button(page, "pause").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_contain_text("Pause 3 jobs?")
    expect(dialog).to_contain_text("1 job of the selection cannot be paused now")
    page.locator("#confirm-ok").click()
    expect(toast(page, "Job batch 1: pause refused: not now.")).to_be_visible(timeout=LIVE)
    expect(toast(page, "Pause: 2 jobs requested, 1 refused.")).to_be_visible(timeout=LIVE)
    for job_id in (ids[2], ids[3]):
        expect(job_row(page, job_id).locator(".status-text")).to_have_text("paused", timeout=LIVE)
    assert manager.job(refused)["status"] == "queued"
    # the buttons follow the live statuses of the selection
    expect(multi_button(page, "requeue")).to_have_text("Requeue 3 of 4", timeout=LIVE)
    page.unroute(f"**/api/v3/jobs/{refused}/setstatus")

    # "select all shown" follows the name filter; clearing it lets go of every job
    page.locator(".select-all").uncheck()
    expect(page.locator(".jobs-grid .grid-row[aria-selected=true]")).to_have_count(0)
    expect(multi).to_be_hidden()
    page.get_by_label("Filter jobs by name").fill("batch 1")
    expect(page.locator(".count-label")).to_have_text("1 of 4 jobs")
    page.locator(".select-all").check()
    expect(page.locator(".jobs-grid .grid-row[aria-selected=true]")).to_have_count(1)
    expect(details.locator(".job-head h2")).to_have_text("batch 1", timeout=LIVE)
    assert page.evaluate("location.hash") == f"#/jobs/{refused}"
    page.get_by_label("Filter jobs by name").fill("")

    # Ctrl-click toggles; a plain click is a single selection with its deep link again
    job_row(page, ids[0]).click(modifiers=["Control"])
    job_row(page, ids[2]).click(modifiers=["Control"])
    expect(multi.locator("h2")).to_have_text("3 jobs selected")
    job_row(page, ids[2]).click(modifiers=["Control"])
    expect(multi.locator("h2")).to_have_text("2 jobs selected")
    expect(page.locator(".select-all")).to_have_js_property("indeterminate", True)
    multi_button(page, "delete").click()
    expect(dialog).to_contain_text("Delete 2 jobs?")
    page.locator("#confirm-ok").click()
    for job_id in (ids[0], ids[1]):
        expect(job_row(page, job_id)).to_have_count(0, timeout=LIVE)
    expect(multi).to_be_hidden()
    job_row(page, ids[3]).click()
    expect(details.locator(".job-head h2")).to_have_text("batch 3", timeout=LIVE)
    assert page.evaluate("location.hash") == f"#/jobs/{ids[3]}"


def local_input_value(page: Any, epoch_seconds: float) -> str:
    """The datetime-local value (the browser's local time, to the second) of a moment."""
    return page.evaluate(
        "ms => new Date(ms - new Date(ms).getTimezoneOffset() * 60000).toISOString().slice(0, 19)",
        epoch_seconds * 1000,
    )


def updated_at(manager: ManagerProcess, job_id: str) -> float:
    return datetime.datetime.fromisoformat(manager.job(job_id)["updated"]).timestamp()


def test_mass_delete_counts_the_jobs_first_and_they_leave_live(
    manager: ManagerProcess, open_ui: Opener
) -> None:
    # a canceled (finished) job first, then two queued ones, each group behind its own whole second
    canceled = submit(manager, "old canceled")
    status, _ = manager.request("POST", f"/api/v3/jobs/{canceled}/setstatus", {"status": "cancel-requested"})
    assert status == 204
    manager.wait_until("the job to cancel", lambda: manager.job(canceled)["status"] == "canceled")
    first_cutoff = math.ceil(updated_at(manager, canceled))
    manager.wait_until("the clock to pass the first cutoff", lambda: time.time() > first_cutoff + 0.01)
    old = [canceled] + [submit(manager, f"old {i}") for i in range(2)]
    # the cutoff is a whole second after the old jobs' last update; the new job comes after it
    cutoff = math.ceil(max(updated_at(manager, job_id) for job_id in old))
    manager.wait_until("the clock to pass the cutoff", lambda: time.time() > cutoff + 0.01)
    new = submit(manager, "new")
    page, _ = open_ui(manager, "#/jobs")
    expect(page.locator(".count-label")).to_have_text("4 jobs", timeout=LIVE)

    page.locator("#mass-delete-open").click()
    dialog = page.locator("dialog.mass-delete")
    expect(dialog).to_be_visible()
    # the dialog says that the status does not matter
    expect(dialog.locator("h2")).to_have_text("Delete jobs of any status last updated before…")
    expect(dialog.locator(".mass-delete-rule")).to_contain_text("Jobs of any status are included")
    expect(dialog.locator(".mass-delete-rule")).to_contain_text("queued, active and paused ones too")
    warning = dialog.locator(".mass-delete-warning")
    before = page.locator("#mass-delete-before")
    # a week back (the first offer): nothing that old
    expect(dialog.locator(".mass-delete-count")).to_have_text("No job was last updated before then.")
    expect(page.locator("#mass-delete-ok")).to_be_disabled()
    expect(warning).to_be_hidden()
    # only the finished job: no warning
    before.fill(local_input_value(page, first_cutoff))
    expect(dialog.locator(".mass-delete-count")).to_have_text("1 job would be deleted (1 canceled).")
    expect(page.locator("#mass-delete-ok")).to_have_text("Delete 1 job")
    expect(warning).to_be_hidden()
    # with the queued jobs: the warning names how many are unfinished
    before.fill(local_input_value(page, cutoff))
    expect(dialog.locator(".mass-delete-count")).to_have_text(
        "3 jobs would be deleted (1 canceled, 2 queued)."
    )
    expect(warning).to_be_visible()
    expect(warning).to_have_text(
        "Warning: 2 of them are not finished (2 queued). Unfinished jobs are deleted all the same,"
        " with the work they have not done yet."
    )
    expect(page.locator("#mass-delete-ok")).to_have_text("Delete 3 jobs")
    screenshot(page, "jobs-mass-delete")
    page.locator("#mass-delete-ok").click()
    for job_id in old:
        expect(job_row(page, job_id)).to_have_count(0, timeout=LIVE)
    expect(job_row(page, new)).to_have_count(1)
    expect(page.locator(".count-label")).to_have_text("1 job")
    for job_id in old:
        assert manager.request("GET", f"/api/v3/jobs/{job_id}")[0] == 404
    assert manager.job(new)["name"] == "new"


class ApiWorker:
    """A worker speaking the worker API directly (no process): registered, signed on and awake."""

    def __init__(self, manager: ManagerProcess, name: str) -> None:
        self.manager = manager
        self.name = name
        secret = secrets.token_hex(16)
        types = ["misc"]
        self.auth: str | None = None
        registration = {"secret": secret, "platform": "linux", "supported_task_types": types, "name": name}
        self.id = self.call("register-worker", registration)["uuid"]
        self.auth = "Basic " + base64.b64encode(f"{self.id}:{secret}".encode()).decode()
        self.call("sign-on", {"name": name, "supported_task_types": types, "software_version": "3.7"})
        self.call("state-changed", {"status": "awake"})

    def call(self, path: str, body: Any = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if self.auth is not None:
            headers["Authorization"] = self.auth
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"{self.manager.url}api/v3/worker/{path}", data=data, method="POST", headers=headers
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
            return json.loads(raw) if raw else None

    def fetch(self) -> dict[str, Any] | None:
        return self.call("task")

    def finish(self, task_id: str, status: str) -> None:
        self.call(f"task/{task_id}", {"taskStatus": status, "activity": status})


def blocklist_worker(manager: ManagerProcess, job_id: str, bad: ApiWorker, others: list[ApiWorker]) -> None:
    """Fail the job's tasks with one worker until the Manager blocklists it for them (the others keep the
    job from failing as a whole)."""
    echo = others[0].fetch()
    assert echo is not None
    others[0].finish(echo["uuid"], "completed")
    while not any(e["worker_id"] == bad.id for e in manager.get(f"/api/v3/jobs/{job_id}/blocklist")):
        task = bad.fetch()
        assert task is not None, "the worker got no task before being blocklisted"
        bad.finish(task["uuid"], "failed")


def test_job_blocklist_lists_workers_and_clears_per_row_and_all(
    manager: ManagerProcess, open_ui: Opener
) -> None:
    job_id = manager.submit_echo_sleep(seconds=1, repeats=30, name="fragile job")["id"]
    page, _ = open_ui(manager, f"#/jobs/{job_id}")
    section = page.locator(".job-blocklist")
    expect(section).to_contain_text("No worker is blocklisted for this job.", timeout=LIVE)
    expect(page.locator("#blocklist-clear-all")).to_be_hidden()

    others = [ApiWorker(manager, f"steady-{i}") for i in range(3)]
    first, second = ApiWorker(manager, "flaky-a"), ApiWorker(manager, "flaky-b")
    blocklist_worker(manager, job_id, first, others)
    blocklist_worker(manager, job_id, second, others[1:])
    # the failures come in as task events; the section reads the blocklist again
    rows = section.locator("tbody tr")
    expect(rows).to_have_count(2, timeout=LIVE)
    expect(rows.nth(0)).to_contain_text("flaky-a")
    expect(rows.nth(0).locator("td").nth(1)).to_have_text("misc")
    expect(rows.nth(1)).to_contain_text("flaky-b")
    expect(rows.nth(0).get_by_role("link", name="flaky-a")).to_have_attribute("href", f"#/workers/{first.id}")
    screenshot(page, "jobs-blocklist")

    page.get_by_role("button", name="Remove flaky-a (misc) from the blocklist").click()
    expect(rows).to_have_count(1, timeout=LIVE)
    expect(rows.first).to_contain_text("flaky-b")
    assert [e["worker_name"] for e in manager.get(f"/api/v3/jobs/{job_id}/blocklist")] == ["flaky-b"]
    # the unblocked worker gets the job's tasks again
    assert first.fetch() is not None

    page.locator("#blocklist-clear-all").click()
    expect(section).to_contain_text("No worker is blocklisted for this job.", timeout=LIVE)
    assert manager.get(f"/api/v3/jobs/{job_id}/blocklist") == []
