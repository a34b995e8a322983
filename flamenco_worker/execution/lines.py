"""Turn a child's byte stream into text lines: bounded length, split on UTF-8 boundaries, never failing."""

from __future__ import annotations

#: Longest line handed on, in bytes; longer ones are cut into pieces of at most this size. Same bound as
#: Flamenco's worker, and it keeps a child that never writes a newline from growing our buffer.
MAX_LINE_BYTES = 40 * 1024

#: A UTF-8 character is at most 4 bytes, so a cut point moves back over at most 3 continuation bytes.
_MAX_CONTINUATION_BYTES = 3


class LineSplitter:
    """Feed it chunks as they arrive; it returns the complete lines (without line ends) found so far.

    Memory is bounded: at most `max_line_bytes` of an unfinished line are kept between calls.
    """

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        if max_line_bytes <= _MAX_CONTINUATION_BYTES:
            raise ValueError(f"max_line_bytes={max_line_bytes} is too small to split UTF-8 safely")
        self._limit = max_line_bytes
        self._pending = b""

    def feed(self, data: bytes) -> list[str]:
        buffer = self._pending + data if self._pending else data
        parts = buffer.split(b"\n")
        pending = parts.pop()
        lines: list[str] = []
        for part in parts:
            if part.endswith(b"\r"):
                part = part[:-1]
            if len(part) > self._limit:
                pieces, part = self._cut(part)
                lines.extend(pieces)
            lines.append(_decode(part))
        if len(pending) > self._limit:
            pieces, pending = self._cut(pending)
            lines.extend(pieces)
        self._pending = pending
        return lines

    def finish(self) -> list[str]:
        """The last line, when the stream ended without a newline."""
        pending, self._pending = self._pending, b""
        if pending.endswith(b"\r"):
            pending = pending[:-1]
        return [_decode(pending)] if pending else []

    def _cut(self, data: bytes) -> tuple[list[str], bytes]:
        """Full-size pieces off the front of `data`, and the rest (at most the limit) as raw bytes."""
        pieces: list[str] = []
        start = 0
        while len(data) - start > self._limit:
            end = _utf8_boundary(data, start + self._limit, start)
            pieces.append(_decode(data[start:end]))
            start = end
        return pieces, data[start:]


def _utf8_boundary(data: bytes, cut: int, floor: int) -> int:
    """Move `cut` back so it does not land inside a multi-byte character; on invalid input cut anyway."""
    for end in range(cut, max(floor, cut - _MAX_CONTINUATION_BYTES - 1), -1):
        if data[end] & 0xC0 != 0x80:
            return end
    return cut


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")
