"""The optional access token (`api_token`): management API and page need it, the worker protocol does not."""

from __future__ import annotations

import base64
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.support.dbus_daemon import PrivateBus
from tests.support.manager_process import REPO, ManagerProcess
from tests.system.conftest import Farm

pytestmark = [pytest.mark.system, pytest.mark.reliability]

TOKEN = "s3cret-token-for-the-farm-0123456789"


@pytest.fixture
def guarded(short_dir: Path, session_bus: PrivateBus):
    manager = ManagerProcess(short_dir / "mgr", extra_yaml=f"api_token: {TOKEN}\n", api_token=TOKEN).start()
    farm = Farm(short_dir, session_bus, manager)
    yield farm
    for worker in farm.workers:
        worker.stop()
    manager.kill()


def test_management_api_needs_the_token(guarded: Farm, fault) -> None:
    row = fault("management API with api_token", "401 without or with a wrong token; Bearer or cookie opens")
    manager = guarded.manager
    paths = [
        "/api/v3/jobs",
        "/api/v3/worker-mgt/workers",
        "/api/v3/status",
        "/api/v3/events",
        "/api/v3/configuration/variables/workers/linux",
        "/job-files/anything.txt",
        "/api/v3/openapi3.json",
    ]
    manager.api_token = ""
    for path in paths:
        code, body = manager.request("GET", path)
        assert code == 401, (path, code)
        assert body["code"] == 401 and "access token" in body["message"]
        code, body = manager.request("GET", path, headers={"Authorization": "Bearer wrong-token-0123456789"})
        assert code == 401 and body["message"] == "the access token is not valid"
    assert manager.request("GET", "/api/v3/version")[0] == 200  # discovery stays open
    with urllib.request.urlopen(manager.url, timeout=10) as page:  # the page itself is static
        assert page.status == 200
    assert manager.request("GET", "/api/v3/jobs", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
    assert manager.request("GET", "/api/v3/jobs", headers={"Cookie": f"flamenco_api_token={TOKEN}"})[0] == 200
    row.figure = f"{len(paths)} paths refused without the token, 2 ways in with it"


def test_workers_need_no_token_and_may_mirror_their_own_requests(guarded: Farm) -> None:
    worker = guarded.start_worker("w1")
    other = guarded.start_worker("w2")
    wid = guarded.worker_id(worker)
    job = guarded.manager.submit_echo_sleep(seconds=3, repeats=2)
    guarded.manager.running_sleep_task(job["id"])
    worker.call("Sleep", "b", "false")
    # mirrored with the worker's own credentials: the Manager shows the local request
    guarded.wait_worker_status(worker, "asleep")
    other_id = guarded.worker_id(other)
    creds = (other.workdir / "home" / "flamenco-worker-credentials.yaml").read_text()
    secret = next(
        line.split(":", 1)[1].strip() for line in creds.splitlines() if line.startswith("worker_secret")
    )
    basic = "Basic " + base64.b64encode(f"{other_id}:{secret}".encode()).decode()
    guarded.manager.api_token = ""
    code, body = guarded.manager.request(
        "POST",
        f"/api/v3/worker-mgt/workers/{wid}/setstatus",
        {"status": "offline", "is_lazy": False},
        headers={"Authorization": basic},
    )
    assert code == 403, body  # a worker may not ask anything for another worker
    code, _ = guarded.manager.request(
        "POST",
        f"/api/v3/worker-mgt/workers/{other_id}/setstatus",
        {"status": "asleep", "is_lazy": False},
        headers={"Authorization": basic},
    )
    assert code == 204
    guarded.manager.api_token = TOKEN
    guarded.wait_worker_status(other, "asleep")


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        ("api_token: short\n", "api_token: the token must be at least 16 characters"),
        ("api_token: 'has spaces in it, far too many'\n", "api_token: the token must be at least 16"),
        (
            "api_token_file: /nonexistent/token\n",
            "api_token_file: cannot read the token from /nonexistent/token",
        ),
        (f"api_token: {TOKEN}\napi_token_file: x\n", "give api_token or api_token_file, not both"),
    ],
)
def test_bad_token_settings_exit_78(tmp_path: Path, yaml: str, message: str) -> None:
    config = tmp_path / "flamenco-manager.yaml"
    config.write_text("_meta: {version: 3}\n" + yaml)
    result = subprocess.run(
        [sys.executable, "-m", "flamenco_manager", "-config", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 78, result.stderr
    assert message in result.stderr


def test_token_from_a_file(tmp_path: Path, short_dir: Path) -> None:
    (short_dir / "token").write_text(TOKEN + "\n")
    manager = ManagerProcess(short_dir / "mgr", extra_yaml=f"api_token_file: {short_dir / 'token'}\n").start()
    try:
        assert manager.request("GET", "/api/v3/jobs")[0] == 401
        manager.api_token = TOKEN
        assert manager.request("GET", "/api/v3/jobs")[0] == 200
    finally:
        manager.kill()


def test_page_asks_for_the_token_once(guarded: Farm) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    from tests.support.browser import CHROMIUM, ConsoleWatch, screenshot

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            page = browser.new_page()
            console = ConsoleWatch()
            console.attach(page)
            console.allow("401")
            page.goto(guarded.manager.url)
            dialog = page.locator("#token-dialog")
            sync_api.expect(dialog).to_be_visible(timeout=10_000)
            page.fill("#token-input", "wrong-token-0123456789")
            page.click("#token-ok")
            sync_api.expect(page.locator("#token-problem")).to_have_text(
                "the access token is not valid", timeout=10_000
            )
            screenshot(page, "token-dialog")
            page.fill("#token-input", TOKEN)
            page.keyboard.press("Enter")
            sync_api.expect(page.locator("#connection")).to_have_text("live", timeout=10_000)
            sync_api.expect(dialog).to_be_hidden()
            page.reload()  # same browser session: no second question
            sync_api.expect(page.locator("#connection")).to_have_text("live", timeout=10_000)
            sync_api.expect(dialog).to_be_hidden()
            assert console.unexpected() == []
        finally:
            browser.close()
