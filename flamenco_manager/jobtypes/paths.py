"""Path arithmetic on strings from any platform, with the results a Flamenco job compiler gets.

Flamenco's job compilers treat `\\` as a separator on every platform and hand back paths with forward
slashes (`R:\\out\\######` has the directory `R:/out`); `join` also tidies the result (no `.` or empty
parts, `..` resolved). These functions keep those rules, so compiled paths are the same text.
"""

from __future__ import annotations

import posixpath


def to_slash(path: str) -> str:
    return path.replace("\\", "/")


def dirname(path: str) -> str:
    """Everything before the last separator, `.` when there is none; double slashes are kept."""
    slashed = to_slash(path)
    cut = slashed.rfind("/")
    if cut < 0:
        return "."
    head = slashed[: cut + 1]
    return head[:-1] if len(head) > 1 else head


def basename(path: str) -> str:
    """The last part, trailing separators ignored; `.` for an empty path, `/` for only separators."""
    slashed = to_slash(path)
    if not slashed:
        return "."
    trimmed = slashed.rstrip("/")
    if not trimmed:
        return "/"
    return trimmed[trimmed.rfind("/") + 1 :]


def join(*parts: str) -> str:
    """The non-empty parts joined with `/` and tidied (`a//b/./c/..` is `a/b`); `""` if all are empty."""
    for index, part in enumerate(parts):
        if part:
            return to_slash(_clean("/".join(parts[index:])))
    return ""


def _clean(path: str) -> str:
    # Only `/` separates here: a backslash is tidied as part of a name, and only turned into `/` after.
    cleaned = posixpath.normpath(path)
    # normpath keeps exactly two leading slashes (POSIX leaves them to the implementation); one is meant.
    return cleaned[1:] if cleaned.startswith("//") else cleaned


def stem(path: str) -> str:
    """The last part without its extension (`shot.flamenco.blend` → `shot.flamenco`, `.blend` → ``)."""
    name = basename(path)
    dot = name.rfind(".")
    return name[:dot] if dot >= 0 else name
