"""The Manager process: flags, exit codes, systemd notifications, logging, and crash safety."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import signal
import subprocess
import sys

import aiohttp
import pytest

from tests.manager.conftest import API, basic_auth
from tests.support.manager_process import NotifiedManager, write_config


def _run(*args: str, cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flamenco_manager", *args], cwd=cwd, capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize(
    ("args", "config_text", "expected"),
    [
        (["-bogus"], None, "unrecognized arguments"),
        (["-listen", "nowhere"], None, "-listen"),
        (["-config", "missing.yaml"], None, "missing.yaml"),
        ([], "_meta: {version: 3}\ntask_timeout: soon\n", "flamenco-manager.yaml:2: task_timeout"),
        ([], "_meta: {version: 3}\ndatabase: /proc/no/such.sqlite\n", "database /proc/no/such.sqlite"),
        ([], "_meta: {version: 3}\ndatabase: not-a-db.sqlite\n", "not-a-db.sqlite: file is not a database"),
        (
            [],
            "_meta: {version: 3}\nlocal_manager_storage_path: /proc/storage\n",
            "local_manager_storage_path",
        ),
    ],
)
def test_invalid_configuration_exits_78_with_one_line(
    tmp_path: pathlib.Path, args: list[str], config_text: str | None, expected: str
) -> None:
    if config_text is not None:
        (tmp_path / "flamenco-manager.yaml").write_text(config_text)
    (tmp_path / "not-a-db.sqlite").write_bytes(b"this is no database" * 100)
    result = _run(*args, cwd=tmp_path)
    assert result.returncode == 78
    lines = [line for line in result.stderr.splitlines() if "flamenco-manager:" in line]
    assert len(lines) == 1 and expected in lines[0], result.stderr


def test_version(tmp_path: pathlib.Path) -> None:
    result = _run("-version", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("flamenco-manager ")


def test_sigterm_notifies_and_exits_0_while_a_request_is_held(tmp_path: pathlib.Path) -> None:
    manager = NotifiedManager(write_config(tmp_path), env={"JOURNAL_STREAM": "8:1234"})
    try:

        async def hold_then_stop() -> int:
            async with aiohttp.ClientSession() as session:
                reply = await session.post(
                    f"{manager.url}{API}/worker/register-worker",
                    json={"name": "w", "platform": "linux", "secret": "s", "supported_task_types": ["misc"]},
                )
                worker = await reply.json()
                auth = basic_auth(worker["uuid"], "s")
                await session.post(
                    f"{manager.url}{API}/worker/sign-on",
                    json={"name": "w", "supported_task_types": ["misc"], "software_version": "1"},
                    headers=auth,
                )
                held = asyncio.ensure_future(
                    session.get(f"{manager.url}{API}/worker/state", headers={**auth, "Prefer": "wait=20"})
                )
                await asyncio.sleep(0.3)
                manager.proc.send_signal(signal.SIGTERM)
                response = await asyncio.wait_for(held, 5)
                return response.status

        assert asyncio.run(hold_then_stop()) == 204  # answered at once, not after 20 s
        _, stderr = manager.proc.communicate(timeout=15)
        assert manager.proc.returncode == 0, stderr
        manager.notify.wait_for("STOPPING=1")
        assert "<6>flamenco_manager.cli: listening" in stderr  # journald priority, no timestamp
    finally:
        manager.close()


async def _drive(url: str, jobs: int, completions: list[str], stop_after: int) -> dict:
    """Register a worker, submit jobs and complete tasks until `stop_after` are acknowledged."""
    async with aiohttp.ClientSession() as session:
        reply = await session.post(
            f"{url}{API}/worker/register-worker",
            json={"name": "w", "platform": "linux", "secret": "s", "supported_task_types": ["misc"]},
        )
        worker = await reply.json()
        auth = basic_auth(worker["uuid"], "s")
        await session.post(
            f"{url}{API}/worker/sign-on",
            json={"name": "w", "supported_task_types": ["misc"], "software_version": "1"},
            headers=auth,
        )
        await session.post(f"{url}{API}/worker/state-changed", json={"status": "awake"}, headers=auth)
        job_ids = []
        for i in range(jobs):
            reply = await session.post(
                f"{url}{API}/jobs",
                json={
                    "name": f"j{i}",
                    "type": "echo-sleep-test",
                    "priority": 50,
                    "submitter_platform": "linux",
                    "settings": {"message": "m", "sleep_repeats": 4},
                },
            )
            job_ids.append((await reply.json())["id"])
        other = await session.post(
            f"{url}{API}/worker/register-worker",
            json={"name": "w2", "platform": "linux", "secret": "t", "supported_task_types": ["misc"]},
        )
        sleeper = (await other.json())["uuid"]
        await session.post(
            f"{url}{API}/worker-mgt/workers/{sleeper}/setstatus", json={"status": "asleep", "is_lazy": True}
        )
        while len(completions) < stop_after:
            reply = await session.post(f"{url}{API}/worker/task", headers=auth)
            task = await reply.json()
            done = await session.post(
                f"{url}{API}/worker/task/{task['uuid']}", json={"taskStatus": "completed"}, headers=auth
            )
            if done.status == 204:
                completions.append(task["uuid"])
        return {"worker": worker["uuid"], "sleeper": sleeper, "jobs": job_ids}


def test_kill_9_mid_load_loses_nothing(tmp_path: pathlib.Path) -> None:
    config = write_config(tmp_path)
    manager = NotifiedManager(config)
    completions: list[str] = []
    try:

        async def load_then_kill() -> dict:
            driver = asyncio.ensure_future(_drive(manager.url, 20, completions, 40))
            facts = await asyncio.wait_for(driver, 60)
            # Keep completing in the background and kill the process in the middle of it.
            more: list[str] = []
            background = asyncio.ensure_future(_drive(manager.url, 5, more, 10_000))
            await asyncio.sleep(0.5)
            manager.proc.kill()
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                await asyncio.wait_for(background, 10)
            facts["more"] = more
            return facts

        facts = asyncio.run(load_then_kill())
        assert facts["more"], "the kill should land while tasks are being completed"
        manager.proc.wait(10)
        assert manager.proc.returncode == -signal.SIGKILL
    finally:
        manager.close()

    restarted = NotifiedManager(config)
    try:

        async def check() -> None:
            async with aiohttp.ClientSession() as session:
                jobs = (await (await session.get(f"{restarted.url}{API}/jobs")).json())["jobs"]
                assert len(jobs) >= 20
                acknowledged = set(completions) | set(facts["more"])
                completed = set()
                total = 0
                for job in jobs:
                    tasks = (
                        await (await session.get(f"{restarted.url}{API}/jobs/{job['id']}/tasks")).json()
                    )["tasks"]
                    total += len(tasks)
                    assert len(tasks) == 5
                    completed |= {t["id"] for t in tasks if t["status"] == "completed"}
                # Everything the Manager acknowledged survived the kill.
                assert acknowledged <= completed
                workers = (await (await session.get(f"{restarted.url}{API}/worker-mgt/workers")).json())[
                    "workers"
                ]
                by_id = {w["id"]: w for w in workers}
                assert facts["worker"] in by_id
                assert by_id[facts["sleeper"]]["status_change"] == {"status": "asleep", "is_lazy": True}

        asyncio.run(check())
        returncode, stderr = restarted.terminate()
        assert returncode == 0, stderr
    finally:
        restarted.close()


def test_example_configuration_is_valid() -> None:
    from flamenco_manager.config import load_config

    example = pathlib.Path(__file__).resolve().parents[2] / "config" / "flamenco-manager.yaml"
    config = load_config(example, explicit=True)
    assert config.listen_port == 8080 and config.long_poll_max == 30.0
    assert config.variables.for_audience("workers", "windows")["render"] == {
        "value": "R:\\render",
        "is_twoway": True,
    }
