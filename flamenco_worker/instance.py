"""Several workers on one machine: what `-instance NAME` changes, decided in one place.

Rules this module keeps:

- An instance name is what systemd puts in `flamenco-worker@NAME.service`: non-empty, one path element
  (no `/`, not `.` or `..`), no control characters or blanks. Anything else is a configuration error.
- The instance reads `<config dir>/flamenco-worker.d/NAME.yaml` on top of the base file; a missing overlay
  means "the base file alone".
- Without a `worker_name` in either file (and no FLAMENCO_WORKER_NAME or -name) the worker is called
  `<hostname>-NAME`.
- Without FLAMENCO_HOME the instance keeps its credentials and queue in `NAME/` below the default home,
  never in the plain worker's own files.
- The instance owns the bus name `org.flamenco.Worker1.<escaped NAME>`. Escaping: ASCII letters, digits
  and `-` stay as they are, except a digit in first place; every other byte of the UTF-8 name (`_`
  included, so the rule can be reversed) becomes `_` and two lowercase hex digits. `gpu0` stays `gpu0`,
  `0` becomes `_30`, `render.node` becomes `render_2enode`.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

#: Beside the base file: `flamenco-worker.d/NAME.yaml` holds one instance's own settings.
OVERLAY_DIR = "flamenco-worker.d"
#: D-Bus limits a whole bus name to 255 characters (the specification's "Bus names" section).
MAX_BUS_NAME = 255
#: The plain worker's bus name (dbus_service.BUS_NAME; the settings must not import dbus-next for it).
BASE_BUS_NAME = "org.flamenco.Worker1"

_PLAIN = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")
_DIGITS = frozenset(b"0123456789")
_ESCAPE = re.compile(r"_([0-9a-f]{2})")


def escape_bus_element(name: str) -> str:
    """`name` as one element of a D-Bus bus name ([A-Za-z0-9_-], not starting with a digit)."""
    out: list[str] = []
    for index, byte in enumerate(name.encode("utf-8")):
        if byte in _PLAIN and not (index == 0 and byte in _DIGITS):
            out.append(chr(byte))
        else:
            out.append(f"_{byte:02x}")
    return "".join(out)


def unescape_bus_element(element: str) -> str:
    """The instance name an escaped bus-name element stands for; ValueError if it is not one we make."""
    raw = bytearray()
    pos = 0
    while pos < len(element):
        if element[pos] == "_":
            match = _ESCAPE.match(element, pos)
            if match is None:
                raise ValueError(f"{element!r}: '_' must be followed by two lowercase hex digits")
            raw.append(int(match.group(1), 16))
            pos = match.end()
        else:
            raw.extend(element[pos].encode("utf-8"))
            pos += 1
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{element!r}: the escaped bytes are not UTF-8") from None
    if not name or escape_bus_element(name) != element:
        raise ValueError(f"{element!r} is not an escaped instance name")
    return name


def bus_name(base: str, instance: str) -> str:
    """The name a worker owns: `base` for the plain worker, `base.<escaped instance>` for an instance."""
    return f"{base}.{escape_bus_element(instance)}" if instance else base


def check_instance_name(value: str) -> str:
    """The instance name as given, or ValueError saying what is wrong with it."""
    if not value:
        raise ValueError("must not be empty")
    if "/" in value or value in (".", ".."):
        raise ValueError(f"must be a single file name (no '/', not '.' or '..'), not {value!r}")
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ValueError(f"must not contain blanks or control characters, not {value!r}")
    if len(bus_name(BASE_BUS_NAME, value)) > MAX_BUS_NAME:
        raise ValueError(f"is too long: its D-Bus name would pass {MAX_BUS_NAME} characters")
    return value


def overlay_path(config_path: Path, instance: str) -> Path:
    """`<config dir>/flamenco-worker.d/<instance>.yaml`."""
    return config_path.parent / OVERLAY_DIR / f"{instance}.yaml"


def default_worker_name(instance: str) -> str:
    return f"{socket.gethostname()}-{instance}"


def instance_home(default_home: Path, instance: str) -> Path:
    """Where an instance keeps its files when FLAMENCO_HOME does not say."""
    return default_home / instance
