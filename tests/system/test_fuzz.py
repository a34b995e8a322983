"""Every endpoint of our OpenAPI document fuzzed with schemathesis against a real manager process.

Zero 5xx answers and every answer as the document says (errors as `{code, message}`). Real ids of a
worker, a job, a task and a tag are handed to the fuzzer so it gets past the 404s into the handlers.
The default run makes a few cases per endpoint; `make reliability` makes 1,000.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reliability import scale
from tests.support.manager_process import ManagerProcess

pytestmark = [pytest.mark.system, pytest.mark.reliability, pytest.mark.timeout(600)]

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


@pytest.mark.skipif(
    not SCHEMATHESIS.exists(), reason="schemathesis is not installed (pip install schemathesis)"
)
def test_fuzz_every_endpoint(short_dir: Path, fault) -> None:
    examples = int(scale(4, 1000))
    row = fault("API fuzzing (schemathesis)", f"{examples} cases per endpoint: no 5xx, answers as documented")
    manager = ManagerProcess(short_dir / "mgr", extra_yaml="long_poll_max: 1s\n").start()
    try:
        secret = "f" * 64
        code, worker = manager.request(
            "POST",
            "/api/v3/worker/register-worker",
            {"name": "fuzz", "platform": "linux", "secret": secret, "supported_task_types": ["misc"]},
        )
        assert code == 200
        job = manager.submit_echo_sleep(seconds=1)
        task = manager.tasks(job["id"])[0]
        code, tag = manager.request("POST", "/api/v3/worker-mgt/tags", {"name": "fuzz-tag"})
        assert code == 200, tag
        (short_dir / "schemathesis.toml").write_text(
            "[auth]\n"
            f'basic = {{ username = "{worker["uuid"]}", password = "{secret}" }}\n'
            "[parameters]\n"
            + "".join(
                f'{name} = "{value}"\n'
                for name, value in {
                    "job_id": job["id"],
                    "task_id": task["id"],
                    "worker_id": worker["uuid"],
                    "tag_id": tag["id"],
                    "type_name": "echo-sleep-test",
                }.items()
            )
        )
        result = subprocess.run(
            [
                str(SCHEMATHESIS),
                "--config-file",
                str(short_dir / "schemathesis.toml"),
                "run",
                f"{manager.url}api/v3/openapi3.json",
                "--max-examples",
                str(examples),
                "--phases",
                "examples,fuzzing",
                "--checks",
                "not_a_server_error,response_schema_conformance",
                "--workers",
                "2",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=scale(600, 6 * 3600),
            cwd=short_dir,
        )
        log = manager.log()
    finally:
        manager.kill()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    cases = re.search(r"(\d+) generated", output)
    assert "unexpected error" not in log and "Traceback" not in log, log[-4000:]
    row.figure = f"{cases.group(1) if cases else '?'} cases, 0 server errors"
