"""Path arithmetic on strings that may come from any platform (both separators are understood)."""

from __future__ import annotations


def _separator(path: str) -> str:
    return "\\" if "\\" in path and "/" not in path else "/"


def _split(path: str) -> tuple[str, str]:
    cut = max(path.rfind("/"), path.rfind("\\"))
    if cut < 0:
        return "", path
    head = path[:cut] if cut > 0 else path[:1]
    return head, path[cut + 1 :]


def dirname(path: str) -> str:
    head, _ = _split(path)
    return head or "."


def basename(path: str) -> str:
    return _split(path)[1]


def join(directory: str, name: str) -> str:
    if not directory or directory == ".":
        return name
    if directory.endswith(("/", "\\")):
        return directory + name
    return directory + _separator(directory) + name


def stem(path: str) -> str:
    """The file name without its last extension."""
    name = basename(path)
    dot = name.rfind(".")
    return name[:dot] if dot > 0 else name
