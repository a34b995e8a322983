"""Splitting a child's byte stream into lines: line ends, long lines, UTF-8 boundaries, invalid bytes."""

from __future__ import annotations

import pytest

from flamenco_worker.execution.lines import MAX_LINE_BYTES, LineSplitter


def feed_all(splitter: LineSplitter, chunks: list[bytes]) -> list[str]:
    lines: list[str] = []
    for chunk in chunks:
        lines.extend(splitter.feed(chunk))
    return lines + splitter.finish()


def test_lines_across_chunks_and_line_ends() -> None:
    lines = feed_all(LineSplitter(), [b"one\ntw", b"o\r\n\nthr", b"ee"])
    assert lines == ["one", "two", "", "three"]


def test_limit_is_40_kib() -> None:
    assert MAX_LINE_BYTES == 40 * 1024


def test_long_line_split_on_character_boundaries() -> None:
    text = "é" * 100 + "x" + "€" * 50  # 2- and 3-byte characters, cut points land inside them
    lines = feed_all(LineSplitter(16), [text.encode() + b"\n"])
    assert "".join(lines) == text
    assert all(len(line.encode()) <= 16 for line in lines)
    assert "\ufffd" not in "".join(lines)


def test_long_line_fed_byte_by_byte_keeps_buffer_bounded() -> None:
    text = "日本語テキスト" * 40
    splitter = LineSplitter(32)
    lines: list[str] = []
    for byte in text.encode():
        lines.extend(splitter.feed(bytes([byte])))
        assert len(splitter._pending) <= 32
    lines.extend(splitter.finish())
    assert "".join(lines) == text
    assert all(len(line.encode()) <= 32 for line in lines)


def test_exact_limit_is_one_line() -> None:
    assert feed_all(LineSplitter(8), [b"12345678\n"]) == ["12345678"]
    assert feed_all(LineSplitter(8), [b"123456789\n"]) == ["12345678", "9"]


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    lines = feed_all(LineSplitter(), [b"ok \xff\xfe bad\n\xc3", b"\x28 half\n"])
    assert lines == ["ok \ufffd\ufffd bad", "\ufffd( half"]


def test_run_of_continuation_bytes_still_cut_at_the_limit() -> None:
    lines = feed_all(LineSplitter(8), [b"\x80" * 20])
    assert [len(line) for line in lines] == [8, 8, 4]


def test_too_small_limit_refused() -> None:
    with pytest.raises(ValueError):
        LineSplitter(3)
