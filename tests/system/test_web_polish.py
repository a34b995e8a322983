"""Small things a new user notices: counts in the singular, empty panes that say what to do.

What tests/system/test_web_navigation.py already covers (one job, one worker, the job and worker panes,
worker names in the task table, the header's first paint, the About box) is not repeated here.
A real Manager serves the page; screenshots land in test-artifacts/web-ui/.
"""

from __future__ import annotations

import pytest

from tests.support.browser import screenshot
from tests.support.manager_process import ManagerProcess
from tests.system.test_web_ui import LIVE, Opener, browser, expect, job_row, manager, open_ui

__all__ = ["browser", "manager", "open_ui"]  # fixtures used by the tests below

pytestmark = [pytest.mark.system, pytest.mark.timeout(120)]


def test_a_job_of_one_step_says_step(manager: ManagerProcess, open_ui: Opener) -> None:
    # an echo job without sleeps: one task of one step
    job = manager.submit_echo_sleep(repeats=0, name="single step")
    assert len(manager.tasks(job["id"])) == 1
    page, _ = open_ui(manager, f"#/jobs/{job['id']}")
    expect(page.locator(".job-head h2")).to_have_text("single step", timeout=LIVE)
    expect(page.locator(".job-progress .muted")).to_have_text("0 / 1 step")
    expect(page.locator(".job-progress .progress")).to_have_attribute("title", "0 of 1 step")
    expect(job_row(page, job["id"]).locator(".progress")).to_have_attribute("title", "0 of 1 step")
    expect(page.locator(".tasks-grid .grid-row .progress")).to_have_attribute("title", "0 of 1 step")
    screenshot(page, "polish-one-step")


def test_a_selection_with_one_job_left_out_says_it_in_the_singular(
    manager: ManagerProcess, open_ui: Opener
) -> None:
    paused, queued = (manager.submit_echo_sleep(name=name)["id"] for name in ("paused one", "queued one"))
    status, _ = manager.request("POST", f"/api/v3/jobs/{paused}/setstatus", {"status": "pause-requested"})
    assert status == 204
    manager.wait_until("the job to pause", lambda: manager.job(paused)["status"] == "paused")
    page, _ = open_ui(manager, "#/jobs")
    expect(job_row(page, paused).locator(".status-text")).to_have_text("paused", timeout=LIVE)
    job_row(page, paused).click()
    job_row(page, queued).click(modifiers=["Control"])
    expect(page.locator(".multi-selection h2")).to_have_text("2 jobs selected")
    page.locator('.multi-selection button[data-action="pause"]').click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog.locator("h2")).to_have_text("Pause 1 job?")
    expect(dialog.locator("#confirm-body")).to_contain_text(
        "1 job of the selection cannot be paused now and stays as it is."
    )
    screenshot(page, "polish-one-left-out")
    dialog.get_by_role("button", name="Cancel").click()


def test_the_tags_pane_without_a_choice_says_what_to_do(manager: ManagerProcess, open_ui: Opener) -> None:
    status, _ = manager.request("POST", "/api/v3/worker-mgt/tags", {"name": "gpu", "description": ""})
    assert status == 200
    page, _ = open_ui(manager, "#/tags")
    expect(page.get_by_role("link", name="gpu")).to_be_visible(timeout=LIVE)
    placeholder = page.locator(".details-pane .placeholder")
    expect(placeholder).to_contain_text("Choose a tag to pick the workers that carry it.")
    screenshot(page, "polish-tags-empty-pane")
