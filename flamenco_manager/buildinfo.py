"""Who this Manager says it is: the Flamenco release it presents itself as, our version, our build.

The stock Blender add-on compares `shortversion` of `GET /api/v3/version` with its own version before
every submission and refuses on a mismatch unless forced, so `shortversion` is the Flamenco release
we are compatible with (setting `flamenco_version`), never our own version number. `version` is for
people and names both; `git` names the build:

1. the file `GIT_REVISION` beside this module, written when a release or package is built;
2. otherwise `git describe` when running from a checkout;
3. otherwise the placeholder `unknown` (an unpacked tarball without that file).
"""

from __future__ import annotations

import functools
import pathlib
import re
import subprocess

from flamenco_manager import __version__

# The newest stable Flamenco release (3.7, April 2025) whose add-on and workers we answer as.
DEFAULT_FLAMENCO_VERSION = "3.7"
# A Flamenco 3 release as its add-on spells its version: 3.7, 3.3.1, 3.8-alpha0.
FLAMENCO_VERSION_SHAPE = re.compile(r"3\.\d{1,3}(\.\d{1,3})?(-[0-9A-Za-z.]{1,32})?")
PROJECT = "flamenco-farm"
GIT_REVISION_FILE = pathlib.Path(__file__).with_name("GIT_REVISION")
UNKNOWN_REVISION = "unknown"
# `git describe` on a local checkout answers in milliseconds; never let a stuck git delay start-up.
GIT_DESCRIBE_TIMEOUT = 5.0


@functools.cache
def git_revision() -> str:
    """Our build's revision (see the module docstring for where it comes from)."""
    try:
        written = GIT_REVISION_FILE.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        written = ""
    if written:
        return written
    checkout = GIT_REVISION_FILE.parent.parent
    if not (checkout / ".git").exists():
        return UNKNOWN_REVISION
    try:
        described = subprocess.run(
            ["git", "-C", str(checkout), "describe", "--always", "--dirty", "--tags"],
            capture_output=True,
            text=True,
            timeout=GIT_DESCRIBE_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN_REVISION
    return (
        described.stdout.strip()
        if described.returncode == 0 and described.stdout.strip()
        else UNKNOWN_REVISION
    )


def human_version(flamenco_version: str) -> str:
    """`3.7 (flamenco-farm 0.1.0)`: Flamenco's release first, as Flamenco puts its own first."""
    return f"{flamenco_version} ({PROJECT} {__version__})"


def version_answer(flamenco_version: str, manager_name: str) -> dict[str, str]:
    """The FlamencoVersion object of `GET /api/v3/version`."""
    return {
        "version": human_version(flamenco_version),
        "shortversion": flamenco_version,
        "name": manager_name,
        "git": git_revision(),
    }


def version_line(flamenco_version: str = DEFAULT_FLAMENCO_VERSION) -> str:
    """What `flamenco-manager -version` prints."""
    revision = git_revision()
    return f"flamenco-manager {__version__} (presents itself as Flamenco {flamenco_version}; git {revision})"
