"""Finding a Flamenco Manager with UPnP/SSDP, the way Flamenco v3 workers do, plus its announcements.

Sends `M-SEARCH` for `urn:flamenco:manager:0` (the same four headers a stock worker sends) to
239.255.255.250:1900 on every interface, and to ff02::c on every IPv6 interface, from an ephemeral
port; reads the unicast answers. It also listens on port 1900 (shared, SO_REUSEADDR) for `NOTIFY
ssdp:alive`, so a Manager that starts later is heard at once rather than at the next search.

An answer counts when its USN carries Flamenco's device UUID (as stock workers check); its LOCATION
gives the URL, whose path is replaced by `/` (the description document is never read). A LOCATION may
list several URLs separated by whitespace, `,` or `;`. IPv6 zones arrive RFC 6874-escaped (`%25eth0`)
and are yielded as `%eth0`, which is how the HTTP client wants them.

Searches repeat with back-off, from `SEARCH_FIRST_INTERVAL` doubling up to `SEARCH_MAX_INTERVAL`; each
search round may yield a URL again, so a Manager that came back at its old address is found again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import urllib.parse
from collections.abc import AsyncIterator

from flamenco_worker.discovery.candidates import Candidate
from flamenco_worker.discovery.netif import interface_addresses

log = logging.getLogger(__name__)

SERVICE_TYPE = "urn:flamenco:manager:0"
#: Flamenco's fixed device UUID; answers carrying another one are some other UPnP device.
DEVICE_UUID = "aa80bc5f-d0af-46b8-8630-23bd7e80ec4d"
SSDP_PORT = 1900
GROUP_V4 = "239.255.255.250"
GROUP_V6 = "ff02::c"
#: The MX we send (Flamenco's): Managers may wait up to this long before answering.
SEARCH_MX = 3

#: First repeat of a search that found nothing: datagrams get lost, and a Manager may be starting.
SEARCH_FIRST_INTERVAL = 1.0
#: Longest pause between searches while none answers; NOTIFY listening covers a Manager that starts
#: meanwhile, so this only bounds how late a Manager is found whose announcement was lost.
SEARCH_MAX_INTERVAL = 30.0
#: Multicast hops for our searches (the LAN and one router).
MULTICAST_TTL = 2


def search_message() -> bytes:
    """The M-SEARCH a stock Flamenco worker sends (its four headers; HTTP headers have no fixed order)."""
    lines = [
        "M-SEARCH * HTTP/1.1",
        f"HOST: {GROUP_V4}:{SSDP_PORT}",
        f"ST: {SERVICE_TYPE}",
        'MAN: "ssdp:discover"',
        f"MX: {SEARCH_MX}",
        "",
        "",
    ]
    return "\r\n".join(lines).encode()


def _headers(lines: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().upper()] = value.strip()
    return headers


def base_url(location: str) -> str | None:
    """`http://HOST:PORT/` of a LOCATION (its path replaced by `/`), or None when it is no HTTP URL."""
    parts = urllib.parse.urlsplit(location.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
        return None
    netloc = parts.netloc.replace("%25", "%")  # RFC 6874 zone → the form getaddrinfo takes
    try:
        parts.port  # noqa: B018 - urllib checks the port lazily
    except ValueError:
        return None
    return f"{parts.scheme}://{netloc}/"


def parse_answer(data: bytes) -> list[str]:
    """Base URLs from a search answer or `NOTIFY ssdp:alive` of a Flamenco Manager; [] for anything else."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return []
    lines = text.split("\r\n") if "\r\n" in text else text.split("\n")
    first = lines[0].split()
    headers = _headers(lines[1:])
    if first[:2] == ["HTTP/1.1", "200"] or first[:2] == ["HTTP/1.0", "200"]:
        target = headers.get("ST", SERVICE_TYPE)
    elif first == ["NOTIFY", "*", "HTTP/1.1"] and headers.get("NTS", "").lower() == "ssdp:alive":
        target = headers.get("NT", "")
    else:
        return []
    usn = headers.get("USN", "").split(":")
    if len(usn) < 3 or usn[0] != "uuid" or usn[1].lower() != DEVICE_UUID or target != SERVICE_TYPE:
        return []
    urls: list[str] = []
    for location in headers.get("LOCATION", "").replace(",", " ").replace(";", " ").split():
        url = base_url(location)
        if url is not None and url not in urls:
            urls.append(url)
    return urls


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, queue: asyncio.Queue[str]) -> None:
        self._queue = queue

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        for url in parse_answer(data):
            self._queue.put_nowait(url)

    def error_received(self, exc: Exception) -> None:
        log.debug("ssdp: socket error %s", exc)


def _search_socket(family: socket.AddressFamily) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, MULTICAST_TTL)
        sock.bind(("::", 0))
    else:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, MULTICAST_TTL)
        sock.bind(("0.0.0.0", 0))
    sock.setblocking(False)
    return sock


def _notify_socket() -> socket.socket:
    """Port 1900, shared with any other SSDP program, member of the IPv4 group on every interface."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", SSDP_PORT))
        for address in interface_addresses():
            if address.address.version == 4:
                mreq = struct.pack(
                    "=4s4si", socket.inet_aton(GROUP_V4), address.address.packed, address.index
                )
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def send_search(v4: asyncio.DatagramTransport | None, v6: asyncio.DatagramTransport | None) -> int:
    """One M-SEARCH on every interface; the number of datagrams sent."""
    message = search_message()
    sent = 0
    for address in interface_addresses():
        try:
            if address.address.version == 4 and v4 is not None:
                v4.get_extra_info("socket").setsockopt(
                    socket.IPPROTO_IP, socket.IP_MULTICAST_IF, address.address.packed
                )
                v4.sendto(message, (GROUP_V4, SSDP_PORT))
            elif address.address.version == 6 and address.address.is_link_local and v6 is not None:
                v6.sendto(message, (GROUP_V6, SSDP_PORT, 0, address.index))
            else:
                continue
        except OSError as exc:
            log.debug("ssdp: cannot search on %s: %s", address.interface, exc)
            continue
        sent += 1
    return sent


async def find(stop: asyncio.Event) -> AsyncIterator[Candidate]:
    """Yield Manager URLs found by SSDP until `stop` is set."""
    loop = asyncio.get_running_loop()
    found: asyncio.Queue[str] = asyncio.Queue()
    transports: list[asyncio.DatagramTransport] = []

    async def open_endpoint(sock: socket.socket) -> asyncio.DatagramTransport:
        transport, _ = await loop.create_datagram_endpoint(lambda: _Receiver(found), sock=sock)
        transports.append(transport)
        return transport

    v4 = v6 = None
    try:
        with contextlib.suppress(OSError):
            v4 = await open_endpoint(_search_socket(socket.AF_INET))
        with contextlib.suppress(OSError):
            v6 = await open_endpoint(_search_socket(socket.AF_INET6))
        try:
            await open_endpoint(_notify_socket())
        except OSError as exc:
            log.debug("ssdp: not listening for announcements (port %d: %s)", SSDP_PORT, exc)
        if v4 is None and v6 is None:
            log.warning("ssdp: no UDP socket can be opened; not searching")
            return
        interval = SEARCH_FIRST_INTERVAL
        stopping = loop.create_task(stop.wait())
        try:
            while not stop.is_set():
                seen: set[str] = set()
                if send_search(v4, v6) == 0:
                    log.debug("ssdp: no interface to search on yet")
                deadline = loop.time() + interval
                while not stop.is_set():
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    getting = loop.create_task(found.get())
                    done, _ = await asyncio.wait(
                        {getting, stopping}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                    )
                    if getting not in done:
                        getting.cancel()
                        continue
                    url = getting.result()
                    if url not in seen:
                        seen.add(url)
                        yield Candidate(url, "ssdp")
                interval = min(interval * 2, SEARCH_MAX_INTERVAL)
        finally:
            stopping.cancel()
    finally:
        for transport in transports:
            transport.close()
