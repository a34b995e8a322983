"""Finding one's way in the web UI: deep links, the keyboard, and the small texts around the lists.

A real manager (seeded with registered workers and queued jobs) serves the page to Debian's Chromium.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import screenshot
from tests.support.farm_seed import _post, seed
from tests.support.manager_process import ManagerProcess
from tests.system.test_web_ui import LIVE, Opener, browser, job_row, open_ui, worker_row

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
)
expect = sync_api.expect

pytestmark = [pytest.mark.system, pytest.mark.timeout(300)]

__all__ = ["browser", "open_ui"]  # fixtures used by name

WORKERS = 4
JOBS = 3


@pytest.fixture(scope="module")
def small_farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ManagerProcess, list, list]]:
    manager = ManagerProcess(Path(tmp_path_factory.mktemp("nav")) / "mgr").start()
    worker_ids, job_ids = seed(manager, WORKERS, JOBS)
    yield manager, worker_ids, job_ids
    manager.stop()


def hash_of(page: Any) -> str:
    return page.evaluate("location.hash")


def test_a_pasted_link_opens_the_same_job_task_and_worker(small_farm, open_ui: Opener) -> None:
    manager, worker_ids, job_ids = small_farm
    job_id = job_ids[1]
    task = manager.tasks(job_id)[1]
    page, _ = open_ui(manager, f"#/jobs/{job_id}/{task['id']}")
    expect(page.locator(".job-head h2")).to_have_text("shot-0001 lighting pass", timeout=LIVE)
    expect(job_row(page, job_id)).to_have_attribute("aria-selected", "true")
    expect(page.locator(f'.tasks-grid .grid-row[data-id="{task["id"]}"]')).to_have_attribute(
        "aria-selected", "true", timeout=LIVE
    )
    expect(page.locator(".task-details .title-row strong")).to_contain_text(task["name"], timeout=LIVE)
    screenshot(page, "nav-deep-link-task")

    page2, _ = open_ui(manager, f"#/workers/{worker_ids[2]}")
    expect(page2.locator(".details-head h2")).to_have_text("render-002", timeout=LIVE)
    expect(worker_row(page2, worker_ids[2])).to_have_attribute("aria-selected", "true")


def test_back_and_forward_move_between_selections(small_farm, open_ui: Opener) -> None:
    manager, worker_ids, job_ids = small_farm
    page, _ = open_ui(manager, "#/workers")
    worker_row(page, worker_ids[0]).click()
    expect(page.locator(".details-head h2")).to_have_text("render-000", timeout=LIVE)
    worker_row(page, worker_ids[1]).click()
    expect(page.locator(".details-head h2")).to_have_text("render-001", timeout=LIVE)
    page.locator('.tabs a[data-tab="jobs"]').click()
    job_row(page, job_ids[0]).click()
    expect(page.locator(".job-head h2")).to_have_text("shot-0000 lighting pass", timeout=LIVE)

    page.go_back()
    expect(page.locator(".job-head")).to_have_count(0)
    assert hash_of(page) == "#/jobs"
    page.go_back()
    expect(page.locator(".details-head h2")).to_have_text("render-001", timeout=LIVE)
    page.go_back()
    expect(page.locator(".details-head h2")).to_have_text("render-000", timeout=LIVE)
    expect(worker_row(page, worker_ids[0])).to_have_attribute("aria-selected", "true")
    expect(worker_row(page, worker_ids[1])).to_have_attribute("aria-selected", "false")
    page.go_back()
    expect(page.locator(".workers-grid .grid-row[aria-selected=true]")).to_have_count(0)
    expect(page.locator(".details-pane .placeholder")).to_contain_text("Select a worker")
    page.go_forward()
    expect(page.locator(".details-head h2")).to_have_text("render-000", timeout=LIVE)
    assert hash_of(page) == f"#/workers/{worker_ids[0]}"


def test_an_unknown_id_in_a_link_says_not_found_quietly(small_farm, open_ui: Opener) -> None:
    manager, _, job_ids = small_farm
    missing = str(uuid.uuid4())
    page, console = open_ui(manager, f"#/jobs/{missing}")
    expect(page.locator(".details-pane .not-found")).to_contain_text("Job not found.", timeout=LIVE)
    expect(page.locator(".details-pane .not-found")).to_contain_text(missing)
    expect(page.locator(".toast")).to_have_count(0)
    screenshot(page, "nav-job-not-found")

    page.goto(manager.url + f"#/workers/{missing}")
    expect(page.locator(".details-pane .not-found")).to_contain_text("Worker not found.", timeout=LIVE)
    expect(page.locator(".details-pane .not-found")).to_be_visible()

    # a task is looked up by the Manager: its 404 is the only console line
    console.allow(r"status of 404")
    page.goto(manager.url + f"#/jobs/{job_ids[0]}/{missing}")
    expect(page.locator(".job-head h2")).to_have_text("shot-0000 lighting pass", timeout=LIVE)
    expect(page.locator(".task-details .not-found")).to_contain_text("Task not found.", timeout=LIVE)
    expect(page.locator(".toast")).to_have_count(0)


def test_keys_move_open_filter_and_explain_themselves(small_farm, open_ui: Opener) -> None:
    manager, worker_ids, job_ids = small_farm
    page, _ = open_ui(manager, "#/workers")
    expect(page.locator(".workers-grid .grid-row")).to_have_count(WORKERS)
    page.locator("body").press("j")  # nothing selected: the first row
    expect(page.locator(".details-head h2")).to_have_text("render-000", timeout=LIVE)
    page.keyboard.press("j")
    expect(page.locator(".details-head h2")).to_have_text("render-001", timeout=LIVE)
    page.keyboard.press("ArrowDown")
    expect(page.locator(".details-head h2")).to_have_text("render-002", timeout=LIVE)
    page.keyboard.press("k")
    expect(page.locator(".details-head h2")).to_have_text("render-001", timeout=LIVE)
    assert hash_of(page) == f"#/workers/{worker_ids[1]}"
    expect(worker_row(page, worker_ids[1])).to_have_attribute("aria-selected", "true")
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.classList.contains('details-pane')")

    # "/" goes to the filter; typed keys are text there, not commands; Escape leaves it
    page.keyboard.press("/")
    name_filter = page.locator(".list-pane .text-filter")
    expect(name_filter).to_be_focused()
    page.keyboard.type("render-003 jk?")
    expect(name_filter).to_have_value("render-003 jk?")
    expect(page.locator(".details-head h2")).to_have_text("render-001")
    expect(page.locator("#keys-help")).to_have_count(0)
    name_filter.fill("render-003")
    expect(page.locator(".workers-grid .grid-row:not([hidden])")).to_have_count(1)
    expect(page.locator(".list-pane .count-label")).to_have_text(f"1 of {WORKERS} workers")
    page.keyboard.press("Escape")
    expect(name_filter).not_to_be_focused()
    page.keyboard.press("j")
    expect(page.locator(".details-head h2")).to_have_text("render-003", timeout=LIVE)
    name_filter.fill("")
    page.locator(".list-pane .table-wrap").focus()

    # the help overlay lists the keys; Escape closes it
    page.keyboard.press("?")
    help_box = page.locator("#keys-help")
    expect(help_box).to_be_visible()
    expect(help_box).to_contain_text("Select the next row")
    expect(help_box).to_contain_text("Filter the list by name")
    screenshot(page, "nav-keys-help")
    page.keyboard.press("Escape")
    expect(help_box).to_be_hidden()

    # on the Jobs tab the keys move through the jobs, then through the tasks of the open job
    page.locator('.tabs a[data-tab="jobs"]').click()
    expect(page.locator(".jobs-grid .grid-row")).to_have_count(JOBS)
    newest = page.locator(".jobs-grid .grid-row").first.get_attribute("data-id")  # seeded in parallel
    assert newest in job_ids
    page.locator("body").press("j")
    expect(page.locator(".job-head h2")).to_have_text(manager.job(newest)["name"], timeout=LIVE)
    assert hash_of(page) == f"#/jobs/{newest}"
    expect(page.locator(".tasks-grid .grid-row")).to_have_count(len(manager.tasks(newest)), timeout=LIVE)
    page.locator(".tasks-grid").click(position={"x": 5, "y": 5})  # the tasks table's header: focus only
    page.keyboard.press("j")
    first_task = manager.tasks(newest)[0]
    expect(page.locator(".task-details .title-row strong")).to_contain_text(first_task["name"], timeout=LIVE)
    assert hash_of(page) == f"#/jobs/{newest}/{first_task['id']}"
    screenshot(page, "nav-keys-tasks")


LONG_NAME = "render-node-with-a-rather-long-hostname-07.studio.example"
RECORD_BRAND = """
window.__brand = [];
document.addEventListener("DOMContentLoaded", () => {
  const brand = document.getElementById("manager-name");
  window.__brand.push(brand.textContent);
  new MutationObserver(() => window.__brand.push(brand.textContent))
    .observe(brand, {childList: true, characterData: true, subtree: true});
});
"""


def worker_takes_a_task(manager: ManagerProcess, name: str) -> tuple[str, dict]:
    """A worker registered over the worker API that asks for (and gets) a task; no process runs it."""
    base = manager.url.rstrip("/") + "/api/v3/worker"
    secret = uuid.uuid4().hex
    types = ["misc"]
    worker_id = _post(
        f"{base}/register-worker",
        {"secret": secret, "platform": "linux", "supported_task_types": types, "name": name},
    )["uuid"]
    auth = (worker_id, secret)
    _post(f"{base}/sign-on", {"name": name, "supported_task_types": types, "software_version": "3.7"}, auth)
    _post(f"{base}/state-changed", {"status": "awake"}, auth)
    return worker_id, _post(f"{base}/task", {}, auth)


def test_counts_empty_panes_full_worker_names_steady_header_and_about(
    tmp_path: Path, open_ui: Opener
) -> None:
    manager = ManagerProcess(tmp_path / "mgr", extra_yaml="manager_name: Studio East farm").start()
    try:
        job = manager.submit_echo_sleep(name="one job")
        page, _ = open_ui(manager, "#/jobs", prepare=lambda p: p.add_init_script(RECORD_BRAND))
        expect(page.locator(".list-pane .count-label")).to_have_text("1 job")
        expect(page.locator(".details-pane .placeholder")).to_contain_text("Select a job to see its settings")
        # the header shows its final text from the start
        assert page.evaluate("window.__brand") == ["Flamenco Manager"]

        worker_id, task = worker_takes_a_task(manager, LONG_NAME)
        page.goto(manager.url + "#/workers")
        expect(page.locator(".list-pane .count-label")).to_have_text("1 worker", timeout=LIVE)
        expect(page.locator(".details-pane .placeholder")).to_contain_text(
            "Select a worker to see its details"
        )
        manager.submit_echo_sleep(name="another job")
        page.goto(manager.url + "#/jobs")
        expect(page.locator(".list-pane .count-label")).to_have_text("2 jobs", timeout=LIVE)

        # the worker's full name: shown or cut with an ellipsis, and always the cell's tooltip
        page.goto(manager.url + f"#/jobs/{job['id']}")
        cell = page.locator(f'.tasks-grid .grid-row[data-id="{task["uuid"]}"] .col-worker')
        expect(cell).to_have_text(LONG_NAME, timeout=LIVE)
        expect(cell).to_have_attribute("title", LONG_NAME)
        fits_or_ellipsis = cell.locator("a").evaluate(
            "a => a.scrollWidth <= a.clientWidth || getComputedStyle(a).textOverflow === 'ellipsis'"
        )
        assert fits_or_ellipsis
        screenshot(page, "nav-task-worker-name")

        # the About box: the Manager's name, this program's version and the Flamenco release it presents
        version = manager.get("/api/v3/version")
        page.locator("#about-button").click()
        about = page.locator("#about-dialog")
        expect(about).to_be_visible()
        expect(about).to_contain_text("Studio East farm", timeout=LIVE)
        expect(about).to_contain_text(version["version"].split("(")[1].rstrip(")"))
        expect(about).to_contain_text(f"Flamenco {version['shortversion']}")
        expect(about).to_contain_text(version["git"])
        screenshot(page, "nav-about")
        page.keyboard.press("Escape")
        expect(about).to_be_hidden()
        assert page.evaluate("window.__brand") == ["Flamenco Manager"]
        assert worker_id
    finally:
        manager.stop()
