"""The Jobs tab with several jobs at once: multi-select and its actions, mass delete, a job's blocklist.

A real Manager serves the page; jobs are submitted through its API. Screenshots land in
test-artifacts/web-ui/.
"""

from __future__ import annotations

import datetime
import json
import math
import time
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
    old = [submit(manager, f"old {i}") for i in range(3)]
    # the cutoff is a whole second after the old jobs' last update; the new job comes after it
    cutoff = math.ceil(max(updated_at(manager, job_id) for job_id in old))
    manager.wait_until("the clock to pass the cutoff", lambda: time.time() > cutoff + 0.01)
    new = submit(manager, "new")
    page, _ = open_ui(manager, "#/jobs")
    expect(page.locator(".count-label")).to_have_text("4 jobs", timeout=LIVE)

    page.locator("#mass-delete-open").click()
    dialog = page.locator("dialog.mass-delete")
    expect(dialog).to_be_visible()
    before = page.locator("#mass-delete-before")
    # a week back (the first offer): nothing that old
    expect(dialog.locator(".mass-delete-count")).to_have_text("No job was last updated before then.")
    expect(page.locator("#mass-delete-ok")).to_be_disabled()
    before.fill(local_input_value(page, cutoff))
    expect(dialog.locator(".mass-delete-count")).to_have_text("3 jobs would be deleted (3 queued).")
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
