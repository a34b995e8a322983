"""The reliability summary: fault tests record what they checked and a figure; pytest prints a table.

`FLAMENCO_LONG=1` (set by `make reliability`) makes every fault test run its long version.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

LONG = os.environ.get("FLAMENCO_LONG") == "1"


def scale(short: float, long: float) -> float:
    """A size or duration for the default run, or for the long one."""
    return long if LONG else short


@dataclass
class Row:
    fault: str
    checked: str
    figure: str = ""
    result: str = "not run"


ROWS: list[Row] = []


def table() -> list[str]:
    headers = ("fault", "what was checked", "result", "figure")
    cells = [(r.fault, r.checked, r.result, r.figure) for r in ROWS]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)) for cell in cells]
    return [text.rstrip() for text in out]
