#!/usr/bin/env python3
"""A stand-in for `blender -b`: parses render arguments, writes real PNG frames, prints Blender-like lines.

Env FAKE_BLENDER_LINES: extra numbered log lines per frame (for log-ordering tests);
FAKE_BLENDER_DELAY: seconds per frame; FAKE_BLENDER_PREFIX: "1" prints Blender 5's "<x> render | " prefix.
"""

from __future__ import annotations

import os
import struct
import sys
import time
import zlib
from pathlib import Path


def png(width: int, height: int, shade: int) -> bytes:
    raw = b"".join(b"\x00" + bytes([shade, 255 - shade, 128]) * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def frames(spec: str) -> list[int]:
    """Blender's --render-frame notation: `1..3,5,7`."""
    found: list[int] = []
    for part in spec.split(","):
        start, _, end = part.partition("..")
        found.extend(range(int(start), int(end or start) + 1))
    return found


def main(argv: list[str]) -> int:
    args = dict(zip(argv, [*argv[1:], ""], strict=True))
    output = args.get("--render-output", "/tmp/fake-render-######")
    frame_list = frames(args.get("--render-frame", "1"))
    lines = int(os.environ.get("FAKE_BLENDER_LINES", "0"))
    delay = float(os.environ.get("FAKE_BLENDER_DELAY", "0"))
    prefix = "3 render | " if os.environ.get("FAKE_BLENDER_PREFIX") == "1" else ""
    print("Blender 4.2.0 (hash abc built 2024-01-01)", flush=True)
    print(f'Read blend: "{argv[argv.index("--scene") - 1] if "--scene" in argv else "?"}"', flush=True)
    for frame in frame_list:
        for i in range(lines):
            print(f"{prefix}Fra:{frame} line {i}", flush=True)
        time.sleep(delay)
        hashes = output.count("#")
        path = (
            Path(output.replace("#" * hashes, str(frame).zfill(hashes)) + ".png") if hashes else Path(output)
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png(64, 48, (frame * 37) % 256))
        print(f"{prefix}Saved: '{path}'", flush=True)
        print(f"{prefix}Time: 00:00.{int(delay * 100):02d} (Saving: 00:00.01)", flush=True)
    print("Blender quit", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
