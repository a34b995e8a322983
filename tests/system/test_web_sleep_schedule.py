"""Workers' sleep schedules in the web UI, in Debian's Chromium against a real manager and real workers.

A schedule takes effect when it is saved (the Manager applies it at once, as its loop does at each
transition), so a schedule covering "now" sends a real worker to sleep without waiting for the loop.
"Now" is the Manager's local time: the manager runs on this machine with this process's time zone.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from tests.support.browser import screenshot
from tests.system.conftest import Farm
from tests.system.test_web_ui import LIVE, Opener, browser, open_ui, toast, worker_row

__all__ = ["browser", "open_ui"]  # fixtures used by the tests below

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
)
expect = sync_api.expect

pytestmark = pytest.mark.system

DAY_CODES = ("mo", "tu", "we", "th", "fr", "sa", "su")
# Margin around "now" for a schedule meant to cover it: the test takes seconds, not minutes.
MARGIN = datetime.timedelta(minutes=30)


def schedule_path(worker_id: str) -> str:
    return f"/api/v3/worker-mgt/workers/{worker_id}/sleep-schedule"


def covering_now() -> tuple[str, str, str]:
    """Today's day code and a start/end around the current local time (empty at the day's edges)."""
    now = datetime.datetime.now()
    start, end = now - MARGIN, now + MARGIN
    return (
        DAY_CODES[now.weekday()],
        start.strftime("%H:%M") if start.date() == now.date() else "",
        end.strftime("%H:%M") if end.date() == now.date() else "",
    )


def status_text(page: Any) -> Any:
    return page.locator(".details .head-status .status-text")


def test_a_schedule_covering_now_sends_the_worker_to_sleep_live_and_switching_it_off_wakes_it(
    farm: Farm, open_ui: Opener
) -> None:
    worker = farm.start_worker("nightowl")
    worker_id = farm.worker_id(worker)
    page, _ = open_ui(farm.manager, f"#/workers/{worker_id}")
    section = page.locator("#sleep-schedule")
    expect(section.locator("#sleep-none")).to_have_text("No sleep schedule.", timeout=LIVE)

    today, start, end = covering_now()
    section.get_by_role("button", name="Add a sleep schedule").click()
    expect(page.locator("#sleep-active")).to_be_checked()  # a new schedule is meant to be used
    page.locator(f"#sleep-day-{today}").click()
    expect(page.locator(f"#sleep-day-{today}")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#sleep-days")).to_have_value(today)
    page.locator("#sleep-start").fill(start)
    page.locator("#sleep-end").fill(end)
    page.locator("#sleep-save").click()

    expect(toast(page, "Worker nightowl: sleep schedule saved.")).to_be_visible(timeout=LIVE)
    expect(section.locator("#sleep-status")).to_have_text("Enabled")
    expect(section.locator("#sleep-hours-shown")).to_have_text(f"{start or '00:00'} – {end or '24:00'}")
    # the worker goes to sleep, and the table and the details follow through the event stream
    expect(worker_row(page, worker_id).locator(".status-text")).to_have_text("asleep", timeout=LIVE)
    expect(status_text(page)).to_have_text("asleep", timeout=LIVE)
    expect(worker_row(page, worker_id).locator(".status-change")).to_have_count(0, timeout=LIVE)
    assert farm.manager.worker(worker_id)["status"] == "asleep"
    stored = farm.manager.get(schedule_path(worker_id))
    assert stored == {"is_active": True, "days_of_week": today, "start_time": start, "end_time": end}
    screenshot(page, "sleep-schedule-asleep")

    # switching the schedule off wakes the worker
    page.locator('label[for="sleep-active-toggle"]').click()
    expect(toast(page, "Worker nightowl: sleep schedule disabled.")).to_be_visible(timeout=LIVE)
    expect(section.locator("#sleep-status")).to_have_text("Disabled")
    expect(worker_row(page, worker_id).locator(".status-text")).to_have_text("awake", timeout=LIVE)
    expect(status_text(page)).to_have_text("awake", timeout=LIVE)
    assert farm.manager.get(schedule_path(worker_id))["is_active"] is False

    # and on again: asleep again, as the schedule still covers now
    page.locator('label[for="sleep-active-toggle"]').click()
    expect(worker_row(page, worker_id).locator(".status-text")).to_have_text("asleep", timeout=LIVE)
    expect(section.locator("#sleep-status")).to_have_text("Enabled")


def test_bad_input_is_explained_at_its_field_and_a_refusal_of_the_manager_too(
    farm: Farm, open_ui: Opener
) -> None:
    first = farm.start_worker("dayshift")
    other = farm.start_worker("nightshift")
    first_id, other_id = farm.worker_id(first), farm.worker_id(other)
    page, console = open_ui(farm.manager, f"#/workers/{first_id}")
    posts: list[str] = []

    def sent(request: Any) -> None:
        if request.method == "POST" and "sleep-schedule" in request.url:
            posts.append(request.url)

    page.on("request", sent)

    page.locator("#sleep-edit").click()
    days, start, end = page.locator("#sleep-days"), page.locator("#sleep-start"), page.locator("#sleep-end")
    # Flamenco's text form and the toggles follow each other
    days.fill("Mo we xx")
    days.press("Tab")
    expect(page.locator("#sleep-day-mo")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#sleep-day-we")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#sleep-day-tu")).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#sleep-days-error")).to_have_text("“xx” is not a day: use mo tu we th fr sa su.")
    expect(days).to_have_attribute("aria-invalid", "true")
    # the details pane redraws on the worker's events; the open editor keeps what was typed, and the focus
    expect(start).to_be_focused()
    for status in ("asleep", "awake"):
        assert farm.manager.set_worker_status(first_id, status, lazy=False)[0] == 204
        expect(status_text(page)).to_have_text(status, timeout=LIVE)
        expect(days).to_have_value("Mo we xx")
        expect(page.locator("#sleep-days-error")).to_be_visible()
        expect(start).to_be_focused()
    start.fill("25:00")
    start.press("Tab")
    expect(page.locator("#sleep-start-error")).to_contain_text("“25:00” is not a time of day")
    start.fill("22:00")
    end.fill("6:00")
    end.press("Tab")
    expect(page.locator("#sleep-start-error")).to_be_hidden()
    expect(end).to_have_value("06:00")  # tidied on leaving the field
    expect(page.locator("#sleep-end-error")).to_contain_text("The end (06:00) is before the start (22:00)")

    # Save sends nothing while a field is wrong, and takes the keyboard to the first one
    page.locator("#sleep-save").click()
    expect(days).to_be_focused()
    assert posts == []
    assert farm.manager.request("GET", schedule_path(first_id))[0] == 204

    days.fill("")
    page.locator("#sleep-day-fr").click()
    expect(days).to_have_value("fr")
    expect(page.locator("#sleep-days-error")).to_be_hidden()
    end.fill("")
    end.press("Tab")
    expect(page.locator("#sleep-end-error")).to_be_hidden()
    page.locator('label[for="sleep-active"]').click()
    expect(page.locator("#sleep-active")).not_to_be_checked()

    # a refusal of the Manager shows at the field it names (the request altered on its way)
    def spoil(route: Any) -> None:
        body = json.loads(route.request.post_data or "{}")
        route.continue_(post_data=json.dumps({**body, "start_time": "7:5"}))

    page.route("**/sleep-schedule", spoil)
    console.allow(r"status of 400")
    page.locator("#sleep-save").click()
    expect(page.locator("#sleep-start-error")).to_have_text(
        "The Manager refused this: '7:5' is not a time of day as HH:MM."
    )
    expect(start).to_be_focused()
    screenshot(page, "sleep-schedule-errors")
    assert farm.manager.request("GET", schedule_path(first_id))[0] == 204
    page.unroute("**/sleep-schedule", spoil)

    page.locator("#sleep-save").click()
    expect(toast(page, "Worker dayshift: sleep schedule saved.")).to_be_visible(timeout=LIVE)
    expect(page.locator("#sleep-status")).to_have_text("Disabled")
    expect(page.locator("#sleep-days-shown")).to_have_text("Fri")
    expect(page.locator("#sleep-hours-shown")).to_have_text("22:00 – 24:00")
    assert farm.manager.get(schedule_path(first_id)) == {
        "is_active": False,
        "days_of_week": "fr",
        "start_time": "22:00",
        "end_time": "",
    }
    # a disabled schedule leaves the worker awake
    assert farm.manager.worker(first_id)["status"] == "awake"

    # Cancel (and Escape) leave the stored schedule alone
    page.locator("#sleep-edit").click()
    page.locator("#sleep-day-sa").click()
    page.locator("#sleep-cancel").click()
    expect(page.locator("#sleep-days-shown")).to_have_text("Fri")
    page.locator("#sleep-edit").click()
    start.fill("08:00")
    start.press("Escape")
    expect(page.locator("#sleep-hours-shown")).to_have_text("22:00 – 24:00")
    expect(page.locator("#sleep-edit")).to_be_focused()

    # another worker shows its own (missing) schedule, and the first one its own again
    worker_row(page, other_id).click()
    expect(page.locator(".details-head h2")).to_have_text("nightshift")
    expect(page.locator("#sleep-none")).to_have_text("No sleep schedule.", timeout=LIVE)
    worker_row(page, first_id).click()
    expect(page.locator("#sleep-days-shown")).to_have_text("Fri", timeout=LIVE)
    assert len(posts) == 2
