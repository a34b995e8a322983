"""A running worker outlives an upgrade of its own files: it imports every module it can ever run at start.

The package upgrade replaces the files under a worker that keeps rendering until its task is done; a module
imported later would come from the new version and might not fit the old ones already loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import flamenco_worker

# Importing the whole worker takes well under a second; room for a loaded machine.
IMPORT_TIMEOUT = 60.0
# Run only as `python -m flamenco_worker`, never by the installed daemon.
NOT_IMPORTED_BY_THE_DAEMON = {"flamenco_worker.__main__"}

SCRIPT = """
import json, pkgutil, sys
import flamenco_worker
import flamenco_worker.cli  # what /usr/bin/flamenco-worker imports before it runs anything
every = {"flamenco_worker"} | {
    m.name for m in pkgutil.walk_packages(flamenco_worker.__path__, "flamenco_worker.")
}
print(json.dumps(sorted(every - set(sys.modules))))
"""


def test_starting_the_worker_imports_every_module_of_its_package() -> None:
    top = str(Path(flamenco_worker.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [top, os.environ.get("PYTHONPATH")]))}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=IMPORT_TIMEOUT,
        check=True,
    ).stdout
    assert set(json.loads(out)) == NOT_IMPORTED_BY_THE_DAEMON
