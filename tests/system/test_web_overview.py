"""The farm overview in the web UI: big numbers and live charts of the last hour, for a wall screen.

A real Manager samples the farm (every few seconds here, through the hidden `farm_history_interval`
setting) and a real worker runs real sleep tasks; the page must go from "collecting" to charts, draw each
new sample as it is announced, and keep the Manager's history across a reload.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.browser import screenshot
from tests.system import test_web_ui as web_ui
from tests.system.conftest import Farm
from tests.system.test_web_ui import LIVE, Opener, assert_not_reloaded, expect, mark_page

pytestmark = pytest.mark.system

# The web UI module's fixtures: a browser per module and a page opener that fails on console errors.
browser = web_ui.browser
open_ui = web_ui.open_ui

# Seconds between samples: the overview says "collecting" until its third sample, so a page opened within
# a second or two of the Manager's start sees that state for about 2 × this, even on a loaded machine.
INTERVAL = 4
# A sample, plus the time a loaded machine may add.
SAMPLE_WAIT = (INTERVAL + 10) * 1000
ROOT = "#overview-view"
# A wall screen.
WALL = {"width": 1920, "height": 1080}

# The y coordinates of a chart layer's path that differ from its base line: something was drawn above 0.
RAISED = """(sel) => {
  const d = document.querySelector(sel).getAttribute("d") || "";
  const ys = [...d.matchAll(/[ML](-?[\\d.]+),(-?[\\d.]+)/g)].map((m) => Number(m[2]));
  return ys.length > 1 && ys.some((y) => y !== ys[0]);
}"""


def updates(page: Any) -> int:
    return int(page.get_attribute(ROOT, "data-updates") or 0)


def samples(page: Any) -> int:
    return int(page.get_attribute(ROOT, "data-samples") or 0)


def wait_updates(page: Any, more_than: int) -> None:
    page.wait_for_function(
        f"document.querySelector('{ROOT}').dataset.updates > {more_than}", timeout=SAMPLE_WAIT
    )


def test_collecting_then_live_charts_as_a_worker_completes_tasks(
    browser: Any, open_ui: Opener, farm_factory: Callable[..., Farm]
) -> None:
    farm = farm_factory(
        f"farm_history_interval: {INTERVAL}s\n"
    )  # the browser runs already: the page is quick
    page, _ = open_ui(farm.manager, "#/overview")
    root = page.locator(ROOT)
    expect(root).to_have_attribute("data-ready", "1", timeout=LIVE)
    expect(root).to_have_attribute("data-state", "collecting")
    expect(page.get_by_role("status").filter(has_text="Collecting data")).to_be_visible()
    expect(page.locator(".ov-footnote")).to_contain_text("restarting the Manager starts it afresh")
    expect(page.locator(".tabs a[data-tab=overview]")).to_have_attribute("aria-current", "page")
    assert page.title().startswith("Overview")
    mark_page(page)

    expect(root).to_have_attribute("data-state", "charts", timeout=3 * SAMPLE_WAIT)
    expect(page.locator(".ov-collecting")).to_be_hidden()
    # the time axis is labelled in local time, HH:MM
    expect(page.locator(".ov-chart-workers .ov-xaxis text").first).to_have_text(re.compile(r"^\d\d:\d\d$"))
    assert not page.evaluate(RAISED, ".ov-chart-queue path.ov-queued")
    assert page.get_attribute(".ov-chart-completed path.ov-completed", "d") == ""

    worker = farm.start_worker("w1")
    wait_updates(page, updates(page))
    expect(page.locator(".ov-tile[data-tile=idle] .ov-tile-value")).to_have_text("1", timeout=SAMPLE_WAIT)
    expect(page.locator(".ov-chart-workers li[data-key=awake] strong")).to_have_text("1")
    before = updates(page)
    job = farm.manager.submit_echo_sleep(seconds=INTERVAL + 1, repeats=2, name="overview job")
    # a sleep task running for longer than an interval: a sample sees it queued or active
    farm.manager.running_sleep_task(job["id"])
    expect(page.locator(".ov-tile[data-tile=working] .ov-tile-value")).to_have_text("1", timeout=SAMPLE_WAIT)
    page.wait_for_function(RAISED, arg=".ov-chart-queue path.ov-active", timeout=SAMPLE_WAIT)
    page.wait_for_function(RAISED, arg=".ov-chart-queue path.ov-queued", timeout=SAMPLE_WAIT)
    farm.manager.wait_until(
        "the job to complete", lambda: farm.manager.job(job["id"])["status"] == "completed", 60
    )
    page.wait_for_function(
        "document.querySelector('.ov-chart-completed path.ov-completed').getAttribute('d') !== ''",
        timeout=SAMPLE_WAIT,
    )
    expect(page.locator(".ov-tile[data-tile=working] .ov-tile-value")).to_have_text("0", timeout=SAMPLE_WAIT)
    assert updates(page) > before
    assert_not_reloaded(page)
    assert worker.process.poll() is None

    # hovering a column tells its values
    box = page.locator(".ov-chart-workers .ov-svg").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] - 14, box["y"] + box["height"] / 2)
    expect(page.locator(".ov-chart-workers .ov-tip")).to_contain_text("awake 1")
    screenshot(page, "overview")

    # a reload keeps the Manager's history: the page starts from all the samples taken so far
    held = samples(page)
    page.reload()
    expect(root).to_have_attribute("data-ready", "1", timeout=LIVE)
    assert samples(page) >= held > 3
    expect(root).to_have_attribute("data-state", "charts")
    assert page.get_attribute(".ov-chart-completed path.ov-completed", "d") != ""

    # on a wall screen the charts are drawn again at the new width, and the big numbers are big
    workers_chart = page.locator(".ov-chart-workers .ov-svg")
    narrow = workers_chart.get_attribute("viewBox")
    page.set_viewport_size(WALL)
    expect(workers_chart).not_to_have_attribute("viewBox", narrow or "")
    big = page.locator(".ov-tile-value").first.evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
    assert big >= 60, big
    screenshot(page, "overview-wall")


def test_deep_link_keyboard_and_navigation(
    browser: Any, open_ui: Opener, farm_factory: Callable[..., Farm]
) -> None:
    farm = farm_factory("farm_history_interval: 1s\n")
    page, _ = open_ui(farm.manager, "#/overview")
    expect(page.locator(ROOT)).to_have_attribute("data-ready", "1", timeout=LIVE)
    expect(page.locator(ROOT)).to_have_attribute("data-state", "charts", timeout=LIVE)

    # away to Jobs and back with the keyboard: the nav link is a link like the others
    page.locator(".tabs a[data-tab=jobs]").click()
    expect(page.locator(ROOT)).to_have_count(0)
    overview_tab = page.locator(".tabs a[data-tab=overview]")
    overview_tab.focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(farm.manager.url + "#/overview")
    expect(page.locator(ROOT)).to_be_visible()
    expect(overview_tab).to_have_attribute("aria-current", "page")
    count = updates(page)
    wait_updates(page, count)  # the stream was closed while away and opened again

    # a chart takes the focus; the arrow keys step through its samples, Escape lets go
    chart = page.locator(".ov-chart-queue")
    chart.focus()
    page.keyboard.press("End")
    tip = chart.locator(".ov-tip")
    expect(tip).to_be_visible()
    expect(tip).to_contain_text("queued 0")
    first_time = tip.locator(".ov-tip-time").inner_text()
    page.keyboard.press("ArrowLeft")
    expect(tip.locator(".ov-tip-time")).not_to_have_text(first_time)
    page.keyboard.press("Escape")
    expect(tip).to_be_hidden()
    page.keyboard.press("Tab")
    expect(page.locator(".ov-chart-queue")).not_to_be_focused()
    expect(tip).to_be_hidden()
