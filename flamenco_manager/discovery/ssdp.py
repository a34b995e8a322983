"""UPnP/SSDP announcement of this Manager, as Flamenco v3's workers look for it.

What a stock Flamenco v3 worker does (facts this module answers to): it sends `M-SEARCH * HTTP/1.1` with
`ST: urn:flamenco:manager:0`, `MAN: "ssdp:discover"`, `MX: 3` and `HOST: 239.255.255.250:1900` over IPv4
multicast from an ephemeral port, once a second, and reads only the unicast answers. It keeps an answer
whose `USN` is `uuid:<Flamenco's fixed device UUID>::…`, takes its `LOCATION`, replaces the path with `/`
and pings `GET /api/v3/version` there.

Rules this module keeps:

* One answer per advertised URL (`LOCATION: http://HOST:PORT/upnp/description.xml`, as Flamenco's
  Manager sends it), for every non-loopback address of this machine (or just the configured listen
  host), on the port the HTTP site is bound to. Addresses are read anew for every answer, so a DHCP
  change needs no restart.
* `NOTIFY ssdp:alive` on every interface at start and every `NOTIFY_INTERVAL`; `ssdp:byebye` at stop.
* IPv4 (239.255.255.250) is what stock workers use; IPv6 (ff02::c link-local, ff05::c site-local) is
  answered too, for workers that search there (ours do).
* Port 1900 is bound with SO_REUSEADDR, as other SSDP servers on Linux (minidlna, GUPnP) bind it, so the
  Manager shares the port with them: every member socket receives the multicast searches. When the port
  is held exclusively (a program that did not set SO_REUSEADDR), discovery is off: one warning line, and
  the Manager goes on serving HTTP — workers with `manager_url` set are not affected.
* Nothing polls: two datagram endpoints wait for packets, and one task sleeps between announcements.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import ipaddress
import logging
import platform
import random
import socket
import struct
from collections.abc import Callable, Iterable
from typing import cast

from flamenco_manager import __version__
from flamenco_manager.discovery.netif import InterfaceAddress, interface_addresses

log = logging.getLogger(__name__)

SERVICE_TYPE = "urn:flamenco:manager:0"
#: Flamenco's fixed device UUID: stock workers ignore answers whose USN carries another one.
DEVICE_UUID = "aa80bc5f-d0af-46b8-8630-23bd7e80ec4d"
USN = f"uuid:{DEVICE_UUID}::{SERVICE_TYPE}"
#: Where Flamenco's Manager says its UPnP description is; workers only use the scheme, host and port.
DESCRIPTION_PATH = "/upnp/description.xml"

SSDP_PORT = 1900
GROUP_V4 = "239.255.255.250"
GROUPS_V6 = ("ff02::c", "ff05::c")

#: How long an announcement stays valid (Flamenco: 1 h); announcements repeat well within it.
MAX_AGE = 1800
#: `ssdp:alive` is repeated this often, so a control point that missed the start still learns of us
#: long before MAX_AGE runs out; one wake-up in 10 min costs nothing.
NOTIFY_INTERVAL = 600.0
#: The start announcement goes out twice, this far apart: multicast UDP may drop one packet.
NOTIFY_REPEAT_DELAY = 1.0
#: Answers to a search wait a random moment up to this (or the search's MX, if less), so twenty workers
#: searching at once do not get their answers in one burst; short enough for a start within a second.
MAX_ANSWER_DELAY = 0.2
#: Multicast hops: the LAN segment and one router (UPnP asks for a small TTL).
MULTICAST_TTL = 2

_ANSWERED_TARGETS = frozenset({SERVICE_TYPE, "ssdp:all", f"uuid:{DEVICE_UUID}"})


def server_header() -> str:
    return f"{platform.system()}/{platform.release()} UPnP/1.0 flamenco-manager/{__version__}"


def advertised_urls(
    listen_host: str, port: int, addresses: Iterable[InterfaceAddress] | None = None
) -> list[str]:
    """Base URLs workers can reach this Manager at: the listen host, or every non-loopback address."""
    host = listen_host.strip("[]")
    if host not in ("", "0.0.0.0", "::"):
        try:
            parsed = ipaddress.ip_address(host)
        except ValueError:
            return [f"http://{host}:{port}/"]  # a host name: the workers resolve it
        if parsed.is_loopback:
            return []  # nobody on the LAN can reach it
        return [f"http://{host if parsed.version == 4 else f'[{host}]'}:{port}/"]
    found = interface_addresses() if addresses is None else list(addresses)
    wanted = {4, 6} if host == "" or host == "::" else {4}
    return [f"http://{a.url_host}:{port}/" for a in found if a.address.version in wanted]


def _message(first_line: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [first_line, *(f"{name}: {value}" for name, value in headers), "", ""]
    return "\r\n".join(lines).encode()


def search_answer(location: str) -> bytes:
    """The unicast answer to an M-SEARCH, shaped as Flamenco's Manager answers."""
    return _message(
        "HTTP/1.1 200 OK",
        [
            ("ST", SERVICE_TYPE),
            ("USN", USN),
            ("LOCATION", location),
            ("CACHE-CONTROL", f"max-age={MAX_AGE}"),
            ("DATE", email.utils.formatdate(usegmt=True)),
            ("SERVER", server_header()),
            ("EXT", ""),
        ],
    )


def notify(location: str | None, host: str) -> bytes:
    """`NOTIFY ssdp:alive` (with a location) or `ssdp:byebye` (without)."""
    headers = [("HOST", host), ("NT", SERVICE_TYPE), ("NTS", "ssdp:alive" if location else "ssdp:byebye")]
    headers.append(("USN", USN))
    if location:
        headers += [
            ("LOCATION", location),
            ("CACHE-CONTROL", f"max-age={MAX_AGE}"),
            ("SERVER", server_header()),
        ]
    return _message("NOTIFY * HTTP/1.1", headers)


def parse_search(data: bytes) -> tuple[str, float] | None:
    """(ST, MX) of an M-SEARCH datagram, or None for anything else (answers, NOTIFYs, garbage)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = text.split("\r\n") if "\r\n" in text else text.split("\n")
    if not lines or lines[0].split() != ["M-SEARCH", "*", "HTTP/1.1"]:
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().upper()] = value.strip()
    if headers.get("MAN", "").strip('"') != "ssdp:discover" or "ST" not in headers:
        return None
    try:
        mx = float(headers.get("MX", "1"))
    except ValueError:
        mx = 1.0
    return headers["ST"].strip('"'), max(0.0, mx)


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(
        self, on_search: Callable[[str, float, tuple[str, int], asyncio.DatagramTransport], None]
    ) -> None:
        self._on_search = on_search
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # a datagram endpoint's transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        search = parse_search(data)
        if search is not None and self.transport is not None:
            self._on_search(search[0], search[1], addr, self.transport)

    def error_received(self, exc: Exception) -> None:
        log.debug("ssdp: socket error %s", exc)


def _socket(family: socket.AddressFamily) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, MULTICAST_TTL)
            sock.bind(("::", SSDP_PORT))
        else:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, MULTICAST_TTL)
            sock.bind(("0.0.0.0", SSDP_PORT))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class SsdpAdvertiser:
    """Answers Flamenco's M-SEARCH and announces the Manager; `start()` / `close()` with the HTTP site."""

    def __init__(self, listen_host: str, port: int) -> None:
        self._listen_host = listen_host
        self._port = port
        self._v4: _Endpoint | None = None
        self._v6: _Endpoint | None = None
        self._joined: set[tuple[int, str]] = set()
        self._announcer: asyncio.Task[None] | None = None
        self._pending: set[asyncio.TimerHandle] = set()

    @property
    def running(self) -> bool:
        return self._v4 is not None or self._v6 is not None

    def urls(self) -> list[str]:
        return advertised_urls(self._listen_host, self._port)

    async def start(self) -> bool:
        """Bind port 1900 and announce; False (after one warning line) when discovery cannot run."""
        loop = asyncio.get_running_loop()
        try:
            sock4 = _socket(socket.AF_INET)
        except OSError as exc:
            log.warning(
                "discovery=off ssdp: UDP port %d is held exclusively by another program (%s); "
                "workers must be given manager_url; HTTP serving is not affected",
                SSDP_PORT,
                exc.strerror or exc,
            )
            return False
        _, self._v4 = await loop.create_datagram_endpoint(lambda: _Endpoint(self._on_search), sock=sock4)
        try:
            sock6 = _socket(socket.AF_INET6)
        except OSError as exc:  # no IPv6 here, or the port is held: IPv4 is what stock workers use
            log.debug("ssdp: no IPv6 endpoint (%s)", exc)
        else:
            _, self._v6 = await loop.create_datagram_endpoint(lambda: _Endpoint(self._on_search), sock=sock6)
        self._join_groups()
        self._announcer = loop.create_task(self._announce(), name="ssdp-announce")
        log.info("discovery=ssdp announcing %s", " ".join(self.urls()) or "(no LAN address yet)")
        return True

    async def close(self) -> None:
        if self._announcer is not None:
            self._announcer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._announcer
            self._announcer = None
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()
        if self.running:
            self._send_notify(alive=False)
        for endpoint in (self._v4, self._v6):
            if endpoint is not None and endpoint.transport is not None:
                endpoint.transport.close()
        self._v4 = self._v6 = None

    # --- multicast membership and announcements ---

    def _join_groups(self) -> None:
        """Join the SSDP groups on every interface not joined yet (new interfaces join at the next round)."""
        for address in interface_addresses():
            if address.address.version == 4 and self._v4 is not None and self._v4.transport is not None:
                key = (address.index, GROUP_V4)
                if key in self._joined:
                    continue
                mreq = struct.pack(
                    "=4s4si", socket.inet_aton(GROUP_V4), address.address.packed, address.index
                )
                self._join(self._v4.transport, socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq, key)
            elif address.address.version == 6 and self._v6 is not None and self._v6.transport is not None:
                for group in GROUPS_V6:
                    key = (address.index, group)
                    if key in self._joined:
                        continue
                    mreq = socket.inet_pton(socket.AF_INET6, group) + struct.pack("@I", address.index)
                    self._join(self._v6.transport, socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq, key)

    def _join(
        self, transport: asyncio.DatagramTransport, level: int, option: int, mreq: bytes, key: tuple[int, str]
    ) -> None:
        sock = transport.get_extra_info("socket")
        try:
            sock.setsockopt(level, option, mreq)
        except OSError as exc:
            if exc.errno != 98:  # EADDRINUSE: joined already
                log.debug("ssdp: cannot join %s on interface %d: %s", key[1], key[0], exc)
                return
        self._joined.add(key)

    async def _announce(self) -> None:
        self._send_notify(alive=True)
        await asyncio.sleep(NOTIFY_REPEAT_DELAY)
        while True:
            self._send_notify(alive=True)
            await asyncio.sleep(NOTIFY_INTERVAL)
            self._join_groups()

    def _send_notify(self, *, alive: bool) -> None:
        urls = self.urls()
        for address in interface_addresses():
            if address.address.version == 4 and self._v4 is not None and self._v4.transport is not None:
                sock = self._v4.transport.get_extra_info("socket")
                targets = [(GROUP_V4, f"{GROUP_V4}:{SSDP_PORT}")]
                transport = self._v4.transport
                select = (socket.IPPROTO_IP, socket.IP_MULTICAST_IF, address.address.packed)
            elif address.address.version == 6 and address.address.is_link_local and self._v6 is not None:
                if self._v6.transport is None:
                    continue
                sock = self._v6.transport.get_extra_info("socket")
                targets = [(GROUPS_V6[0], f"[{GROUPS_V6[0]}]:{SSDP_PORT}")]
                transport = self._v6.transport
                select = (socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, struct.pack("@I", address.index))
            else:
                continue
            try:
                sock.setsockopt(*select)
                for group, host in targets:
                    dest: tuple[str, int] | tuple[str, int, int, int] = (group, SSDP_PORT)
                    if address.address.version == 6:
                        dest = (group, SSDP_PORT, 0, address.index)
                    for url in urls if alive else [""]:
                        transport.sendto(
                            notify(url + DESCRIPTION_PATH.lstrip("/") if url else None, host), dest
                        )
            except OSError as exc:
                log.debug("ssdp: cannot announce on %s: %s", address.interface, exc)

    # --- answers ---

    def _on_search(
        self, target: str, mx: float, addr: tuple[str, int], transport: asyncio.DatagramTransport
    ) -> None:
        if target not in _ANSWERED_TARGETS:
            return
        delay = random.uniform(0, min(mx, MAX_ANSWER_DELAY))
        handle: asyncio.TimerHandle | None = None

        def answer() -> None:
            if handle is not None:
                self._pending.discard(handle)
            self._answer(addr, transport)

        handle = asyncio.get_running_loop().call_later(delay, answer)
        self._pending.add(handle)

    def _answer(self, addr: tuple[str, int], transport: asyncio.DatagramTransport) -> None:
        if transport.is_closing():
            return
        urls = self.urls()
        log.debug("ssdp: answering search from %s with %d URLs", addr[0], len(urls))
        for url in urls:
            with contextlib.suppress(OSError):
                transport.sendto(search_answer(url + DESCRIPTION_PATH.lstrip("/")), addr)
