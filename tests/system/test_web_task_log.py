"""The task log viewer in a real browser against a real Manager: live lines, pausing, download.

A stand-in worker speaks the worker protocol over HTTP (register, sign on, claim a task, send updates
with log lines), so the test decides exactly which lines arrive and when.
"""

from __future__ import annotations

import base64
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import screenshot
from tests.support.manager_process import ManagerProcess
from tests.system import test_web_ui as web_ui
from tests.system.test_web_ui import LIVE, Opener, expect

pytestmark = pytest.mark.system

API = "/api/v3"
TOKEN = "log-viewer-token-0123456789abcdef"
# What the page keeps of a log (MAX_LOG_LINES in js/task-log.js).
MAX_LOG_LINES = 5000

# The web UI module's fixtures: a browser per module and a page opener that fails on console errors.
browser = web_ui.browser
open_ui = web_ui.open_ui


@dataclass
class StandInWorker:
    """A worker made of HTTP requests: it claims one task and sends log lines for it."""

    manager: ManagerProcess
    auth: str = ""
    task_id: str = ""

    def call(self, method: str, path: str, body: Any = None) -> Any:
        code, answer = self.manager.request(method, API + path, body, headers={"Authorization": self.auth})
        assert code in (200, 204), (path, code, answer)
        return answer

    def sign_on(self) -> None:
        code, answer = self.manager.request(
            "POST",
            f"{API}/worker/register-worker",
            {"name": "log-writer", "platform": "linux", "secret": "s3", "supported_task_types": ["misc"]},
        )
        assert code == 200, answer
        self.auth = "Basic " + base64.b64encode(f"{answer['uuid']}:s3".encode()).decode()
        self.call(
            "POST",
            "/worker/sign-on",
            {"name": "log-writer", "supported_task_types": ["misc"], "software_version": "3.6"},
        )
        self.call("POST", "/worker/state-changed", {"status": "awake"})

    def claim(self) -> str:
        self.task_id = self.call("POST", "/worker/task")["uuid"]
        return self.task_id

    def log(self, text: str) -> None:
        self.call("POST", f"/worker/task/{self.task_id}", {"taskStatus": "active", "log": text})


def lines(first: int, last: int) -> str:
    return "".join(f"line {n:05d} of the stand-in worker's output\n" for n in range(first, last + 1))


def fetch_whole_log(manager: ManagerProcess, task_id: str) -> str:
    info = manager.get(f"{API}/tasks/{task_id}/log")
    request = urllib.request.Request(manager.url.rstrip("/") + info["url"])
    if manager.api_token:
        request.add_header("Authorization", f"Bearer {manager.api_token}")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.read().decode()


def start_task(manager: ManagerProcess) -> tuple[str, StandInWorker]:
    worker = StandInWorker(manager)
    worker.sign_on()
    job = manager.submit_echo_sleep(seconds=1, name="log job")
    return job["id"], worker


@pytest.fixture
def plain_manager(tmp_path: Path) -> Iterator[ManagerProcess]:
    manager = ManagerProcess(tmp_path / "mgr").start()
    yield manager
    manager.stop()


@pytest.fixture
def guarded_manager(tmp_path: Path) -> Iterator[ManagerProcess]:
    manager = ManagerProcess(tmp_path / "mgr", extra_yaml=f"api_token: {TOKEN}\n", api_token=TOKEN).start()
    yield manager
    manager.stop()


def at_end(log: Any) -> bool:
    return bool(log.evaluate("el => el.scrollTop + el.clientHeight >= el.scrollHeight - 4"))


def wait_at_end(page: Any) -> None:
    page.wait_for_function(
        """() => {
            const el = document.querySelector(".task-log pre.log");
            if (!el || el.scrollHeight <= el.clientHeight) return false;
            return el.scrollTop + el.clientHeight >= el.scrollHeight - 4;
        }""",
        timeout=LIVE,
    )


def test_log_follows_live_pauses_when_scrolled_up_and_jumps_to_end(
    plain_manager: ManagerProcess, open_ui: Opener
) -> None:
    manager = plain_manager
    job_id, worker = start_task(manager)
    task_id = manager.tasks(job_id)[0]["id"]
    page, _ = open_ui(manager, f"#/jobs/{job_id}/{task_id}")
    viewer = page.locator(".task-log")
    log = viewer.locator("pre.log")
    paused = viewer.locator(".log-paused")

    # a queued task has no log yet, and nothing to download
    expect(viewer.locator(".log-none")).to_have_text("No log yet", timeout=LIVE)
    expect(viewer.locator(".log-none")).to_be_visible()
    expect(viewer.locator(".log-download")).to_be_hidden()

    # lines arrive live; the view follows the end
    assert worker.claim() == task_id
    worker.log(lines(1, 300))
    expect(log).to_contain_text("line 00300", timeout=LIVE)
    expect(viewer.locator(".log-none")).to_be_hidden()
    expect(viewer.locator(".log-download")).to_be_visible(timeout=LIVE)
    wait_at_end(page)
    expect(paused).to_be_hidden()
    worker.log(lines(301, 320))
    expect(log).to_contain_text("line 00320", timeout=LIVE)
    wait_at_end(page)

    # scrolled up: the view holds still and counts what arrives
    log.evaluate("el => { el.scrollTop = 0; }")
    expect(paused).to_be_visible(timeout=LIVE)
    expect(paused).to_contain_text("Paused")
    worker.log(lines(321, 325))
    expect(paused).to_contain_text("5 new lines", timeout=LIVE)
    worker.log(lines(326, 326))
    expect(paused).to_contain_text("6 new lines", timeout=LIVE)
    expect(log).to_contain_text("line 00326")
    assert log.evaluate("el => el.scrollTop") == 0, "the view moved while scrolled up"
    viewer.scroll_into_view_if_needed()
    screenshot(page, "task-log-paused")

    # jump to end: at the newest line and following again
    paused.click()
    expect(paused).to_be_hidden()
    assert at_end(log)
    worker.log(lines(327, 400))
    expect(log).to_contain_text("line 00400", timeout=LIVE)
    wait_at_end(page)
    expect(paused).to_be_hidden()

    # scrolling back down by hand also resumes following
    log.evaluate("el => { el.scrollTop = 0; }")
    expect(paused).to_be_visible(timeout=LIVE)
    log.evaluate("el => { el.scrollTop = el.scrollHeight; }")
    expect(paused).to_be_hidden(timeout=LIVE)

    # wrapping toggles and is remembered
    wrap = viewer.locator(".log-wrap-toggle")
    expect(wrap).to_be_checked()
    wrap.uncheck()
    expect(log).to_have_class("log nowrap")
    assert log.evaluate("el => getComputedStyle(el).whiteSpace") == "pre"
    page.reload()
    expect(page.locator(".task-log .log-wrap-toggle")).not_to_be_checked(timeout=LIVE)
    expect(page.locator(".task-log pre.log")).to_have_class("log nowrap")
    # after a reload the page starts from the tail: the cut first line is dropped and said so
    expect(page.locator(".task-log pre.log")).to_contain_text("line 00400", timeout=LIVE)
    expect(page.locator(".task-log .log-truncated")).to_be_visible()
    first_line = page.locator(".task-log pre.log").evaluate("el => el.firstChild.textContent")
    assert first_line.startswith("line "), first_line


def test_download_saves_the_whole_log(plain_manager: ManagerProcess, open_ui: Opener) -> None:
    manager = plain_manager
    job_id, worker = start_task(manager)
    task_id = worker.claim()
    worker.log(lines(1, 200))  # far more than the tail the page starts from
    page, _ = open_ui(manager, f"#/jobs/{job_id}/{task_id}")
    viewer = page.locator(".task-log")
    expect(viewer.locator("pre.log")).to_contain_text("line 00200", timeout=LIVE)
    expect(viewer.locator("pre.log")).not_to_contain_text("line 00001")
    worker.log(lines(201, 210))
    expect(viewer.locator("pre.log")).to_contain_text("line 00210", timeout=LIVE)

    with page.expect_download(timeout=LIVE) as info:
        viewer.locator(".log-download").click()
    download = info.value
    assert download.suggested_filename == f"task-{task_id}.txt"
    text = Path(download.path()).read_text()
    assert text == fetch_whole_log(manager, task_id)
    assert lines(1, 210) in text
    viewer.scroll_into_view_if_needed()
    screenshot(page, "task-log-download")


def test_download_carries_the_access_token(guarded_manager: ManagerProcess, open_ui: Opener) -> None:
    manager = guarded_manager
    job_id, worker = start_task(manager)
    task_id = worker.claim()
    worker.log(lines(1, 50))

    def with_token(page: Any) -> None:
        # what the page keeps once the token was typed into its prompt
        page.context.add_cookies([{"name": "flamenco_api_token", "value": TOKEN, "url": manager.url}])

    page, _ = open_ui(manager, f"#/jobs/{job_id}/{task_id}", prepare=with_token)
    viewer = page.locator(".task-log")
    expect(viewer.locator("pre.log")).to_contain_text("line 00050", timeout=LIVE)
    with page.expect_download(timeout=LIVE) as info:
        viewer.locator(".log-download").click()
    text = Path(info.value.path()).read_text()
    assert lines(1, 50) in text
    assert text == fetch_whole_log(manager, task_id)


def test_a_huge_log_keeps_a_bounded_number_of_lines(plain_manager: ManagerProcess, open_ui: Opener) -> None:
    manager = plain_manager
    job_id, worker = start_task(manager)
    page, _ = open_ui(manager, f"#/jobs/{job_id}")
    task_id = worker.claim()
    page.goto(f"{manager.url}#/jobs/{job_id}/{task_id}")
    log = page.locator(".task-log pre.log")
    expect(log).to_be_visible(timeout=LIVE)  # the claim already wrote a line
    total = MAX_LOG_LINES + 1500
    for first in range(1, total + 1, 2500):
        worker.log(lines(first, min(first + 2499, total)))
    expect(log).to_contain_text(f"line {total:05d}", timeout=LIVE)
    assert log.evaluate("el => el.childNodes.length") == MAX_LOG_LINES
    first_kept = total - MAX_LOG_LINES + 1
    assert log.evaluate("el => el.firstChild.textContent").startswith(f"line {first_kept:05d}")
    wait_at_end(page)
    expect(page.locator(".task-log .log-truncated")).to_be_visible()
