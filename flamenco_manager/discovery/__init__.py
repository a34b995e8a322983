"""Manager discovery: how workers on the LAN find this Manager without configuration.

Started after the HTTP site is bound (the advertised port is the bound one) when `autodiscoverable` is
true (Flamenco's key, default true), stopped before the HTTP side closes. Each way of announcing is an
adapter with `async start()` / `async close()`; none of them knows the Manager's services. A way that
cannot run here (port taken, no bus) logs one line and leaves the others, and HTTP, running.
"""

from __future__ import annotations

import ipaddress
import logging

from flamenco_manager.config import ManagerConfig
from flamenco_manager.discovery.avahi import AvahiPublisher
from flamenco_manager.discovery.ssdp import SsdpAdvertiser

log = logging.getLogger(__name__)


def _loopback_only(listen_host: str) -> bool:
    if listen_host.strip("[]") == "localhost":
        return True
    try:
        return ipaddress.ip_address(listen_host.strip("[]")).is_loopback
    except ValueError:
        return False


class Announcers:
    """The announcers running for this Manager; `close()` stops them in reverse order."""

    def __init__(self, listen_host: str, port: int, dns_sd: AvahiPublisher | None = None) -> None:
        self.listen_host = listen_host
        self.port = port
        self.ssdp = SsdpAdvertiser(listen_host, port)
        self.dns_sd = dns_sd

    async def start(self) -> None:
        if _loopback_only(self.listen_host):
            log.info("discovery=off: listening on %s, which no other machine can reach", self.listen_host)
            return
        await self.ssdp.start()
        if self.dns_sd is not None:
            await self.dns_sd.start()

    async def close(self) -> None:
        if self.dns_sd is not None:
            await self.dns_sd.close()
        await self.ssdp.close()


async def start_announcing(config: ManagerConfig, port: int) -> Announcers:
    """SSDP and, where avahi-daemon runs, DNS-SD, both naming the port the HTTP site is bound to."""
    dns_sd = AvahiPublisher.for_manager(config, enabled=True, port=port)
    announcers = Announcers(config.listen_host, port, dns_sd)
    await announcers.start()
    return announcers
