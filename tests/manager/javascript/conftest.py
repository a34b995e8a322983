"""A real Node child for the job-script engine tests.

FLAMENCO_TEST_NODE names the node binary to test with (e.g. a Node 18 one); without it the engine's
own search (find_engine) picks one, and the tests are skipped when there is none.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from flamenco_manager.jobtypes.javascript import EngineLimits, EngineMissing, ScriptEngine, find_engine

SCRIPTS = pathlib.Path(__file__).parent / "scripts"


@pytest.fixture(scope="session")
def node() -> str:
    configured = os.environ.get("FLAMENCO_TEST_NODE")
    if configured:
        return find_engine(configured)
    try:
        return find_engine()
    except EngineMissing as exc:
        pytest.skip(f"no Node.js for the job-script engine: {exc}")


@contextlib.asynccontextmanager
async def running_engine(node: str, limits: EngineLimits) -> AsyncIterator[ScriptEngine]:
    """A started engine, closed (its child gone) when the block ends."""
    eng = ScriptEngine(node, limits)
    await eng.start()
    try:
        yield eng
    finally:
        await eng.close()


@pytest.fixture
async def engine(node: str) -> AsyncIterator[ScriptEngine]:
    async with running_engine(node, EngineLimits(time_limit=5.0, memory_mib=256)) as eng:
        yield eng


def script(name: str) -> str:
    return (SCRIPTS / name).read_text(encoding="utf-8")


def make_job(settings: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "jobID": "2b9d1c2e-5c4a-4f7e-9a51-2f4c0c1d9e10",
        "name": "shot-010",
        "jobType": "render-frames",
        "priority": 50,
        "status": "under-construction",
        "created": "2026-11-30T09:12:13.123456+00:00",
        "settings": settings if settings is not None else {},
        "metadata": {"project": "sprite"},
        "storage": {"shamanCheckoutID": ""},
        "workerTagUUID": "",
    }
    job.update(fields)
    return job


def value_script(body: str) -> str:
    """A job-type script whose JOB_TYPE.value is what `body` (a function body) returns."""
    return f"const JOB_TYPE = {{ value: (function () {{\n{body}\n}})() }};\nfunction compileJob(job) {{}}\n"


async def evaluate(engine: ScriptEngine, body: str) -> Any:
    """Runs `body` as a function body inside a fresh sandbox (through describe) and returns its value."""
    described = await engine.describe("probe.js", value_script(body))
    return described.get("value")
