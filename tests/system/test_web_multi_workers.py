"""Worker Actions on several workers at once, in a real browser against a real Manager and real workers.

Rows are selected with click, Ctrl-click, Shift-click and the "select all shown" box; one confirmation
covers the selection, one request asks for all of them and every refusal is named.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.browser import screenshot
from tests.system import test_web_ui
from tests.system.conftest import Farm
from tests.system.test_web_ui import LIVE, Opener, option_labels, toast, worker_row

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
)
expect = sync_api.expect

pytestmark = [pytest.mark.system, pytest.mark.timeout(240)]

# The browser and page fixtures of the web UI tests, shared rather than copied.
browser = test_web_ui.browser
open_ui = test_web_ui.open_ui

SELECTED = ".workers-grid .grid-row[aria-selected=true]"


def start_workers(farm: Farm, *names: str, no_restart: tuple[str, ...] = ()) -> dict[str, str]:
    """Start real workers and return their IDs by name; those in no_restart have no restart exit code."""
    ids = {}
    for name in names:
        args = ("-restart-exit-code", "0") if name in no_restart else ()
        ids[name] = farm.worker_id(farm.start_worker(name, *args))
    return ids


def status_text(page: Any, worker_id: str) -> Any:
    return worker_row(page, worker_id).locator(".status-text")


def selected_ids(page: Any) -> set[str]:
    return set(page.locator(SELECTED).evaluate_all("rows => rows.map(r => r.dataset.id)"))


def test_ctrl_and_shift_select_three_and_send_them_to_sleep_live(farm: Farm, open_ui: Opener) -> None:
    ids = start_workers(farm, "node-1", "node-2", "node-3", "node-4")
    page, _ = open_ui(farm.manager, "#/workers")
    for wid in ids.values():
        expect(status_text(page, wid)).to_have_text("awake", timeout=LIVE)

    # click, Shift-click a range, Ctrl-click one out and another one in
    worker_row(page, ids["node-1"]).click()
    expect(page.locator(".details-head h2")).to_have_text("node-1")
    worker_row(page, ids["node-3"]).click(modifiers=["Shift"])
    expect(page.locator(SELECTED)).to_have_count(3)
    worker_row(page, ids["node-2"]).click(modifiers=["Control"])
    worker_row(page, ids["node-4"]).locator(".select-mark").click()  # the check mark adds, like Ctrl-click
    expect(page.locator(SELECTED)).to_have_count(3)
    chosen = {ids["node-1"], ids["node-3"], ids["node-4"]}
    assert selected_ids(page) == chosen

    summary = page.locator(".several-selected")
    expect(summary.locator("h2")).to_have_text("3 workers selected")
    expect(summary.locator(".selection-list li")).to_have_text(
        ["awake node-1", "awake node-3", "awake node-4"]
    )
    expect(page.locator(".select-all")).to_have_js_property("indeterminate", True)
    assert page.evaluate("location.hash") == f"#/workers/{ids['node-4']}"

    page.locator("#worker-action").select_option(label="Send to Sleep (immediately)")
    expect(page.locator("#worker-action-help")).to_contain_text("3 workers:")
    page.locator("#worker-action-apply").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog.locator("h2")).to_have_text("Send 3 workers to sleep immediately?")
    expect(dialog).to_contain_text("node-1, node-3, node-4")
    # cancelling sends nothing
    dialog.get_by_role("button", name="Cancel").click()
    assert not any(farm.manager.worker(wid).get("status_change") for wid in chosen)

    page.locator("#worker-action-apply").click()
    expect(page.locator("#confirm-ok")).to_have_text("Send to Sleep")
    page.locator("#confirm-ok").click()
    for wid in chosen:
        expect(status_text(page, wid)).to_have_text("asleep", timeout=LIVE)
    expect(status_text(page, ids["node-2"])).to_have_text("awake")
    expect(toast(page, "Send to Sleep (immediately) confirmed for 3 workers.")).to_be_visible()
    expect(summary.locator(".selection-list li")).to_have_text(
        ["asleep node-1", "asleep node-3", "asleep node-4"], timeout=LIVE
    )
    screenshot(page, "workers-multi-sleep")

    # j/k move a single selection again, and the address follows it
    page.locator(".workers-grid").click(position={"x": 5, "y": 5})  # the header: focus, no selection change
    page.keyboard.press("k")
    expect(page.locator(SELECTED)).to_have_count(1)
    assert selected_ids(page) == {ids["node-3"]}
    expect(page.locator(".details-head h2")).to_have_text("node-3")
    expect(summary).to_be_hidden()
    assert page.evaluate("location.hash") == f"#/workers/{ids['node-3']}"


def test_mixed_restart_is_disabled_and_a_deleted_worker_is_named(farm: Farm, open_ui: Opener) -> None:
    ids = start_workers(farm, "mix-1", "mix-2", "mix-3", no_restart=("mix-2",))
    page, console = open_ui(farm.manager, "#/workers")
    for wid in ids.values():
        expect(status_text(page, wid)).to_have_text("awake", timeout=LIVE)

    page.locator(".select-all").click()
    expect(page.locator(SELECTED)).to_have_count(3)
    restart = page.locator("#worker-action option", has_text="Restart")
    expect(restart).to_have_count(2)
    assert restart.evaluate_all("options => options.map(o => o.disabled)") == [True, True]
    reason = "1 of 3 selected workers has no restart exit code"
    assert all(reason in t for t in restart.evaluate_all("options => options.map(o => o.title)"))
    expect(page.locator("#worker-action-help")).to_contain_text(f"Restart is not available: {reason}.")
    screenshot(page, "workers-multi-restart-disabled")

    # without the worker lacking a restart exit code, Restart is offered again
    worker_row(page, ids["mix-2"]).click(modifiers=["Control"])
    expect(page.locator(SELECTED)).to_have_count(2)
    assert restart.evaluate_all("options => options.map(o => o.disabled)") == [False, False]
    worker_row(page, ids["mix-2"]).click(modifiers=["Control"])
    expect(page.locator(SELECTED)).to_have_count(3)

    page.locator("#worker-action").select_option(label="Send to Sleep (after task is finished)")
    page.locator("#worker-action-apply").click()
    expect(page.locator("#confirm-dialog h2")).to_have_text(
        "Send 3 workers to sleep after their current task?"
    )
    # the worker disappears while the question is open: it is still asked for, and its refusal is named
    assert farm.manager.request("DELETE", f"/api/v3/worker-mgt/workers/{ids['mix-2']}")[0] == 204
    status, body = farm.manager.set_worker_status(ids["mix-2"], "asleep", True)
    assert status == 404, (status, body)
    expect(worker_row(page, ids["mix-2"])).to_have_count(0, timeout=LIVE)
    console.allow(r"status of 404")
    page.locator("#confirm-ok").click()

    failures = page.locator(".toast.error .bulk-failures")
    expect(failures).to_contain_text("Send to Sleep (after task is finished) refused for 1 worker:")
    expect(failures.locator(".failure-list li")).to_have_text([f"mix-2: {body['message']}"])
    expect(
        toast(page, "Send to Sleep (after task is finished) confirmed for 2 of 3 workers.")
    ).to_be_visible()
    for name in ("mix-1", "mix-3"):
        expect(status_text(page, ids[name])).to_have_text("asleep", timeout=LIVE)
    screenshot(page, "workers-multi-partial-failure")


def test_select_all_takes_only_the_workers_the_filters_show(farm: Farm, open_ui: Opener) -> None:
    ids = start_workers(farm, "keep-1", "keep-2", "other-1")
    assert farm.manager.set_worker_status(ids["other-1"], "asleep", False)[0] == 204
    page, _ = open_ui(farm.manager, f"#/workers/{ids['keep-1']}")
    expect(status_text(page, ids["other-1"])).to_have_text("asleep", timeout=LIVE)
    # a deep link still selects one worker and shows its details
    expect(page.locator(SELECTED)).to_have_count(1)
    expect(page.locator(".details-head h2")).to_have_text("keep-1")
    box = page.locator(".select-all")
    expect(box).to_have_js_property("indeterminate", True)

    page.get_by_role("searchbox", name="Filter workers by name").fill("keep")
    expect(page.locator(".count-label")).to_have_text("2 of 3 workers")
    box.click()
    assert selected_ids(page) == {ids["keep-1"], ids["keep-2"]}
    expect(box).to_be_checked()
    expect(page.locator(".several-selected h2")).to_have_text("2 workers selected")
    screenshot(page, "workers-multi-select-all-filtered")
    box.click()  # all shown are selected: the box clears the selection
    expect(page.locator(SELECTED)).to_have_count(0)
    expect(page.locator("#worker-action")).to_be_disabled()

    page.get_by_role("searchbox", name="Filter workers by name").fill("")
    page.locator(".status-filter .chip.s-asleep").click()
    expect(page.locator(".count-label")).to_have_text("1 of 3 workers")
    box.click()
    assert selected_ids(page) == {ids["other-1"]}
    expect(page.locator(".details-head h2")).to_have_text("other-1")
    assert page.evaluate("location.hash") == f"#/workers/{ids['other-1']}"
    assert "Wake Up" in option_labels(page)
