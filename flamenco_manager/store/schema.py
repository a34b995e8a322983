"""The one list of schema versions, and each backend's script for every version.

`migrations/NNNN_name.<dialect>.sql`: one number and name per version, a script per backend. The
version numbers are shared, so a database of either kind is "at version N" in the same sense (SQLite
keeps N in `PRAGMA user_version`, PostgreSQL in the `schema_version` table); a version that lacks one
backend's script is an error when the package is loaded, not a surprise in the field.
"""

from __future__ import annotations

import importlib.resources
import re
from typing import Literal

from flamenco_manager.store.interface import StoreError

Dialect = Literal["sqlite", "postgresql"]
DIALECTS: tuple[Dialect, ...] = ("sqlite", "postgresql")

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(sqlite|postgresql)\.sql$")


def migrations(dialect: Dialect) -> list[tuple[int, str, str]]:
    """(number, file name, script) of every version for `dialect`, in order."""
    scripts: dict[Dialect, dict[int, tuple[str, str, str]]] = {d: {} for d in DIALECTS}
    for entry in importlib.resources.files("flamenco_manager.store.migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match is None:
            continue
        number, name, kind = int(match.group(1)), match.group(2), match.group(3)
        for known in DIALECTS:
            if kind == known:
                if number in scripts[known]:
                    raise StoreError(f"two {kind} migrations numbered {number:04d}")
                scripts[known][number] = (name, entry.name, entry.read_text(encoding="utf-8"))
    versions = {d: sorted((n, name) for n, (name, _, _) in scripts[d].items()) for d in DIALECTS}
    if versions["sqlite"] != versions["postgresql"]:
        raise StoreError(
            "every schema version needs a script per backend:"
            f" sqlite has {versions['sqlite']}, postgresql has {versions['postgresql']}"
        )
    numbers = sorted(scripts[dialect])
    if numbers != list(range(1, len(numbers) + 1)):
        raise StoreError(f"migration numbers must be 1..N without gaps, found {numbers}")
    return [(n, scripts[dialect][n][1], scripts[dialect][n][2]) for n in numbers]
