"""Last Rendered in the web UI: a job's latest image in its details and the farm-wide tab, live.

A real Manager makes the thumbnails from images posted the way a worker reports output; the pages must
show each new image without a reload, and a quiet text, never a broken image, when there is none.
"""

from __future__ import annotations

import base64
import io
import re
import secrets
import urllib.request
from typing import Any

import pytest

from tests.support.browser import screenshot
from tests.support.manager_process import ManagerProcess
from tests.system import test_web_ui as web_ui
from tests.system.test_web_ui import LIVE, Opener, assert_not_reloaded, expect, mark_page

pytest.importorskip("PIL")

pytestmark = pytest.mark.system

NOTHING = "Nothing rendered yet"
# Loopback only, whatever http_proxy says.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# The web UI module's fixtures: a browser per module, a page opener that fails on console errors, and a
# fresh Manager per test.
browser = web_ui.browser
open_ui = web_ui.open_ui
manager = web_ui.manager


class ReportingWorker:
    """A registered worker that reports rendered images, as a worker does after each frame."""

    def __init__(self, manager: ManagerProcess) -> None:
        self.manager = manager
        secret = secrets.token_hex(16)
        status, body = manager.request(
            "POST",
            "/api/v3/worker/register-worker",
            {
                "name": "frame-reporter",
                "platform": "linux",
                "secret": secret,
                "supported_task_types": ["misc"],
            },
        )
        assert status == 200, body
        credentials = base64.b64encode(f"{body['uuid']}:{secret}".encode()).decode()
        self.auth = f"Basic {credentials}"

    def produce(self, task_id: str, size: tuple[int, int], colour: tuple[int, int, int]) -> None:
        from PIL import Image

        buffer = io.BytesIO()
        Image.new("RGB", size, colour).save(buffer, "PNG")
        req = urllib.request.Request(
            f"{self.manager.url.rstrip('/')}/api/v3/worker/task/{task_id}/output-produced",
            data=buffer.getvalue(),
            method="POST",
            headers={"Content-Type": "image/png", "Authorization": self.auth},
        )
        with _DIRECT.open(req, timeout=10) as resp:
            assert resp.status == 202


def job_with_task(manager: ManagerProcess, name: str) -> tuple[str, str]:
    job = manager.submit_echo_sleep(seconds=1, name=name)
    return job["id"], manager.tasks(job["id"])[0]["id"]


def expect_image(page: Any, css: str, job_id: str, suffix: str, width: int) -> str:
    """Wait until the image at `css` has loaded the job's thumbnail at this width; returns its URL."""
    page.wait_for_function(
        """([css, part, w]) => {
          const img = document.querySelector(css);
          return !!img && img.src.includes(part) && img.complete && img.naturalWidth === w;
        }""",
        arg=[css, f"/{job_id}/{suffix}?v=", width],
        timeout=LIVE,
    )
    image = page.locator(css)
    expect(image).to_be_visible()
    return str(image.get_attribute("src"))


def _contains(text: str) -> Any:
    return re.compile(re.escape(text))


def test_images_appear_live_in_the_job_details_and_the_farm_view(
    manager: ManagerProcess, open_ui: Opener
) -> None:
    first_job, first_task = job_with_task(manager, "hero shot")
    second_job, second_task = job_with_task(manager, "crowd shot")
    worker = ReportingWorker(manager)

    details, _ = open_ui(manager, f"#/jobs/{first_job}")
    section = details.locator(".job-last-rendered")
    expect(section.locator("h3")).to_have_text("Last Rendered", timeout=LIVE)
    expect(section.locator(".last-rendered-none")).to_have_text(NOTHING)
    expect(section.locator("img")).to_have_count(0)

    farm, _ = open_ui(manager, "#/last-rendered")
    expect(farm.locator('.tabs a[data-tab="last-rendered"]')).to_have_attribute("aria-current", "page")
    assert farm.title() == "Last Rendered · Flamenco Manager"
    view = farm.locator(".last-rendered-view")
    expect(view.locator(".last-rendered-none")).to_have_text(NOTHING, timeout=LIVE)
    expect(view.locator("img")).to_have_count(0)
    expect(view.locator(".last-rendered-link")).to_have_count(0)
    screenshot(farm, "last-rendered-nothing-yet")
    mark_page(details)
    mark_page(farm)

    # First frame: 640×480 fits both thumbnails as it is (small: at most 600×338).
    worker.produce(first_task, (640, 480), (200, 40, 40))
    job_image = ".job-last-rendered img.last-rendered-img"
    first_small = expect_image(details, job_image, first_job, "last-rendered-small.jpg", 451)
    expect(section.locator(".last-rendered-none")).to_have_count(0)
    farm_image = ".last-rendered-view img.last-rendered-img"
    first_full = expect_image(farm, farm_image, first_job, "last-rendered.jpg", 640)
    link = view.locator(".last-rendered-link")
    expect(link).to_have_text("hero shot")
    expect(link).to_have_attribute("href", f"#/jobs/{first_job}")
    screenshot(details, "last-rendered-job-details")
    screenshot(farm, "last-rendered-farm")

    # Second frame of the same job: the same file names, a new URL, the new image.
    worker.produce(first_task, (320, 240), (40, 40, 200))
    second_small = expect_image(details, job_image, first_job, "last-rendered-small.jpg", 320)
    second_full = expect_image(farm, farm_image, first_job, "last-rendered.jpg", 320)
    assert second_small != first_small and second_full != first_full

    # Another job renders: the farm view follows it; the first job's details keep the first job's image.
    worker.produce(second_task, (400, 300), (40, 200, 40))
    expect_image(farm, farm_image, second_job, "last-rendered.jpg", 400)
    expect(link).to_have_text("crowd shot")
    expect(link).to_have_attribute("href", f"#/jobs/{second_job}")
    assert details.locator(job_image).get_attribute("src") == second_small
    assert_not_reloaded(details)
    assert_not_reloaded(farm)

    # The link leads to that job's details, which show its image as fetched.
    link.click()
    expect(farm).to_have_url(_contains(f"#/jobs/{second_job}"))
    expect_image(farm, ".job-last-rendered img", second_job, "last-rendered-small.jpg", 400)


def test_the_farm_view_shows_what_was_rendered_before_it_opened(
    manager: ManagerProcess, open_ui: Opener
) -> None:
    job_id, task_id = job_with_task(manager, "earlier shot")
    ReportingWorker(manager).produce(task_id, (300, 200), (90, 90, 90))
    manager.wait_until(
        "the thumbnails", lambda: manager.request("GET", "/api/v3/jobs/last-rendered")[0] == 200
    )
    page, _ = open_ui(manager, "#/last-rendered")
    expect_image(page, ".last-rendered-view img", job_id, "last-rendered.jpg", 300)
    expect(page.locator(".last-rendered-link")).to_have_text("earlier shot")


def test_an_image_that_does_not_load_shows_the_text_not_a_broken_image(
    manager: ManagerProcess, open_ui: Opener
) -> None:
    job_id, task_id = job_with_task(manager, "lost frame")
    worker = ReportingWorker(manager)
    refused: list[str] = []

    def job_files(route: Any) -> None:
        if refused:  # from the first refusal on, the files are gone
            refused.append(route.request.url)
            route.fulfill(status=404, body="gone")
        else:
            route.continue_()

    page, console = open_ui(
        manager, f"#/jobs/{job_id}", prepare=lambda p: p.route("**/job-files/**", job_files)
    )
    console.allow(r"Failed to load resource: the server responded with a status of 404")
    section = page.locator(".job-last-rendered")
    expect(section.locator(".last-rendered-none")).to_have_text(NOTHING, timeout=LIVE)
    worker.produce(task_id, (64, 48), (10, 200, 30))
    expect_image(page, ".job-last-rendered img", job_id, "last-rendered-small.jpg", 64)

    refused.append("from now on")
    with page.expect_response("**/job-files/**", timeout=LIVE) as response:
        worker.produce(task_id, (80, 60), (200, 10, 30))
    assert response.value.status == 404
    expect(section.locator(".last-rendered-none")).to_have_text(NOTHING)
    expect(section.locator("img")).to_have_count(0)
    assert "last-rendered-small.jpg" in refused[1]
    screenshot(page, "last-rendered-image-missing")
