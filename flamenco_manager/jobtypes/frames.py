"""Frame ranges as artists write them (`1-10,20`, `1..10`) and their division into render chunks.

The notation and the chunk texts are Flamenco's, so that task names and Blender arguments come out exactly
as a Flamenco Manager writes them: within a chunk a run of one or two frames is written as numbers (`7`,
`7,8`) and a longer run as a range (`7-9`).
"""

from __future__ import annotations

import re

# Blender's highest frame number (MAXFRAME); it cannot render anything later.
MAX_FRAME_NUMBER = 1_048_574
# Most frames in one job: 100,000 is over an hour at 24 fps, beyond any single shot; more is a typo that
# would store a task per chunk and tie up the Manager compiling it.
MAX_FRAME_COUNT = 100_000

# One comma-separated part: a frame, or two frames joined by `-` (`..` is read as `-`). A `+` sign is
# allowed because Flamenco's number parser allows it.
_NUMBER = r"\s*\+?([0-9]+)\s*"
_PART = re.compile(rf"{_NUMBER}(?:-{_NUMBER})?")
_BLENDER_RANGE = ".."
_RANGE = "-"

Interval = tuple[int, int]


def parse_frames(text: str) -> list[Interval]:
    """Sorted, merged, inclusive frame intervals of `text`; ValueError explains what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("no frames given; use e.g. '1-250' or '1-10,20'")
    intervals: list[Interval] = []
    for written in text.strip().split(","):
        part = written.strip()
        match = _PART.fullmatch(part.replace(_BLENDER_RANGE, _RANGE))
        if match is None:
            raise ValueError(f"cannot read {part!r}; use e.g. '1-250', '1..250' or '1-10,20'")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise ValueError(f"range {part!r} runs backwards; write it as {last}-{first}")
        if last > MAX_FRAME_NUMBER:
            raise ValueError(f"frame {last} is beyond Blender's last frame {MAX_FRAME_NUMBER}")
        intervals.append((first, last))
    merged = _merge(intervals)
    count = frame_count(merged)
    if count > MAX_FRAME_COUNT:
        raise ValueError(f"{count} frames is more than the {MAX_FRAME_COUNT} one job may render")
    return merged


def _merge(intervals: list[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for first, last in sorted(intervals):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def frame_count(intervals: list[Interval]) -> int:
    return sum(last - first + 1 for first, last in intervals)


def chunk_frames(intervals: list[Interval], chunk_size: int) -> list[list[Interval]]:
    """Consecutive groups of at most `chunk_size` frames, in frame order."""
    if chunk_size < 1:
        raise ValueError("chunk size must be at least 1")
    chunks: list[list[Interval]] = []
    current: list[Interval] = []
    room = chunk_size
    for first, last in intervals:
        start = first
        while start <= last:
            end = min(last, start + room - 1)
            current.append((start, end))
            room -= end - start + 1
            start = end + 1
            if room == 0:
                chunks.append(current)
                current, room = [], chunk_size
    if current:
        chunks.append(current)
    return chunks


def chunk_text(intervals: list[Interval]) -> str:
    """A chunk as Flamenco names it: `1-3,5,7,8` (runs of one or two frames are listed)."""
    parts: list[str] = []
    for first, last in intervals:
        if last - first >= 2:
            parts.append(f"{first}{_RANGE}{last}")
        else:
            parts.extend(str(frame) for frame in range(first, last + 1))
    return ",".join(parts)


def blender_frames(intervals: list[Interval]) -> str:
    """A chunk as Blender's `--render-frame` wants it: `1..3,5`."""
    return chunk_text(intervals).replace(_RANGE, _BLENDER_RANGE)
