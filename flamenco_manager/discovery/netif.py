"""This machine's interface addresses, read from the kernel without extra packages (Linux).

Interfaces: /proc/net/dev; IPv4: one `SIOCGIFADDR` ioctl per interface (the primary address, which is
what a LAN peer reaches); IPv6: `/proc/net/if_inet6`. Loopback and interfaces that are down are left out.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

_SIOCGIFADDR = 0x8915
_SIOCGIFFLAGS = 0x8913
_IFF_UP = 0x1
_IFF_LOOPBACK = 0x8
_IF_INET6 = Path("/proc/net/if_inet6")
_NET_DEV = Path("/proc/net/dev")


@dataclass(frozen=True, slots=True)
class InterfaceAddress:
    interface: str
    index: int
    address: ipaddress.IPv4Address | ipaddress.IPv6Address

    @property
    def url_host(self) -> str:
        """The host part of a URL for this address; IPv6 link-local carries its zone (RFC 6874: `%25`)."""
        if self.address.version == 4:
            return str(self.address)
        if self.address.is_link_local:
            return f"[{self.address}%25{self.interface}]"
        return f"[{self.address}]"


def _flags(sock: socket.socket, name: str) -> int:
    packed = fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, struct.pack("256s", name.encode()[:15]))
    return int(struct.unpack("H", packed[16:18])[0])


def _interface_names() -> list[str]:
    """From /proc/net/dev (this network namespace's), which needs no netlink socket: the Manager's unit
    allows only AF_UNIX, AF_INET and AF_INET6."""
    try:
        lines = _NET_DEV.read_text().splitlines()[2:]
    except OSError:
        return []
    return [line.split(":", 1)[0].strip() for line in lines if ":" in line]


def interface_addresses() -> list[InterfaceAddress]:
    """Non-loopback addresses of interfaces that are up, IPv4 first, in interface order."""
    found4: list[InterfaceAddress] = []
    found6: list[InterfaceAddress] = []
    usable: dict[str, int] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for name in _interface_names():
            try:
                flags = _flags(sock, name)
                index = socket.if_nametoindex(name)
            except OSError:
                continue
            if not flags & _IFF_UP or flags & _IFF_LOOPBACK:
                continue
            usable[name] = index
            with contextlib.suppress(OSError):  # no IPv4 address on this interface
                packed = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
                found4.append(InterfaceAddress(name, index, ipaddress.IPv4Address(packed[20:24])))
    with contextlib.suppress(OSError):  # no IPv6 in this kernel
        for line in _IF_INET6.read_text().splitlines():
            fields = line.split()
            if len(fields) < 6 or fields[5] not in usable:
                continue
            address = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
            flags = int(fields[4], 16)
            if flags & 0x40:  # IFA_F_TENTATIVE: duplicate address detection not finished
                continue
            found6.append(InterfaceAddress(fields[5], usable[fields[5]], address))
    return found4 + found6
