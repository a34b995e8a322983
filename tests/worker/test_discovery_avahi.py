"""The worker's DNS-SD finder against a real private dbus-daemon and a stand-in avahi-daemon on it:
browse and resolve (IPv4, IPv6, link-local zones), the first-ItemNew race, avahi-daemon restarts, stop,
no Avahi, no bus."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flamenco_worker.discovery.avahi import Resolved, candidate_url, find, parse_txt
from flamenco_worker.discovery.candidates import Candidate
from tests.support.dbus_daemon import PrivateBus
from tests.support.fake_avahi import FakeAvahi, Service

pytestmark = pytest.mark.timeout(30)

#: Every candidate a test waits for arrives in milliseconds; this bounds a test that would hang.
WAIT = 10.0


@pytest.fixture
async def avahi(session_bus: PrivateBus) -> AsyncIterator[FakeAvahi]:
    fake = await FakeAvahi(session_bus.address).start()
    yield fake
    await fake.stop()


class Finder:
    """`find()` run as a task, its candidates collected as they come."""

    def __init__(self, bus_address: str) -> None:
        self.stop = asyncio.Event()
        self.found: list[Candidate] = []
        self._new = asyncio.Event()
        self.task = asyncio.create_task(self._collect(bus_address))

    async def _collect(self, bus_address: str) -> None:
        async for candidate in find(self.stop, bus_address=bus_address):
            self.found.append(candidate)
            self._new.set()

    async def wait_count(self, count: int) -> list[Candidate]:
        async with asyncio.timeout(WAIT):
            while len(self.found) < count:
                self._new.clear()
                await self._new.wait()
        return self.found

    async def finish(self) -> None:
        self.stop.set()
        async with asyncio.timeout(WAIT):
            await self.task


async def test_items_sent_right_behind_the_browser_reply_are_found(
    session_bus: PrivateBus, avahi: FakeAvahi
) -> None:
    # The fake sends the ItemNew of services it already knows right behind its reply to
    # ServiceBrowserNew, as avahi-daemon does with its cache: a late subscription would miss them.
    avahi.services += [Service("Farm A", "192.0.2.5", 8080), Service("Farm B", "192.0.2.6", 8081)]
    finder = Finder(session_bus.address)
    found = await finder.wait_count(2)
    await finder.finish()
    assert sorted(found, key=lambda c: c.url) == [
        Candidate("http://192.0.2.5:8080/", "dns-sd"),
        Candidate("http://192.0.2.6:8081/", "dns-sd"),
    ]
    assert "ServiceBrowserNew _flamenco._tcp" in avahi.calls
    assert "ServiceBrowser.Free" in avahi.calls


async def test_ipv6_addresses_and_link_local_zones(session_bus: PrivateBus, avahi: FakeAvahi) -> None:
    lo = socket.if_nametoindex("lo")
    avahi.services += [
        Service("Farm", "fe80::1", 8080, interface=lo, protocol=1),
        Service("Farm", "2001:db8::5", 8080, interface=lo + 1000, protocol=1),
    ]
    finder = Finder(session_bus.address)
    found = await finder.wait_count(2)
    await finder.finish()
    assert {c.url for c in found} == {"http://[fe80::1%lo]:8080/", "http://[2001:db8::5]:8080/"}
    # Each sighting is resolved on its own interface and protocol, asking for that protocol's address.
    assert f"ResolveService Farm {lo} 1 1" in avahi.calls


async def test_later_arrivals_are_yielded_once_and_unresolvable_ones_skipped(
    session_bus: PrivateBus, avahi: FakeAvahi
) -> None:
    avahi.services.append(Service("Farm A", "192.0.2.5", 8080))
    finder = Finder(session_bus.address)
    await finder.wait_count(1)
    avahi.announce(Service("Gone", "192.0.2.9", 8080, resolvable=False))
    # The same Manager seen again (another interface, same address) is no new candidate.
    avahi.announce(Service("Farm A", "192.0.2.5", 8080, interface=3))
    avahi.announce(Service("Farm C", "192.0.2.7", 9000, txt=(b"path=/farm",)))
    found = await finder.wait_count(2)
    await avahi.wait(lambda: sum(c.startswith("ResolveService") for c in avahi.calls) == 4)
    await finder.finish()
    assert [c.url for c in found] == ["http://192.0.2.5:8080/", "http://192.0.2.7:9000/farm/"]


async def test_a_restarted_avahi_daemon_is_browsed_again(session_bus: PrivateBus, avahi: FakeAvahi) -> None:
    avahi.services.append(Service("Farm A", "192.0.2.5", 8080))
    finder = Finder(session_bus.address)
    await finder.wait_count(1)
    await avahi.stop()
    again = await FakeAvahi(session_bus.address, services=[Service("Farm B", "192.0.2.6", 8080)]).start()
    try:
        found = await finder.wait_count(2)
        assert found[1] == Candidate("http://192.0.2.6:8080/", "dns-sd")
    finally:
        await finder.finish()
        await again.stop()


async def test_stop_ends_the_search_without_any_manager(session_bus: PrivateBus, avahi: FakeAvahi) -> None:
    finder = Finder(session_bus.address)
    await avahi.wait(lambda: "ServiceBrowserNew _flamenco._tcp" in avahi.calls)
    assert not finder.task.done()
    await finder.finish()
    assert finder.found == []


async def test_without_avahi_it_returns_at_once_with_one_debug_line(
    session_bus: PrivateBus, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "flamenco_worker.discovery.avahi")
    begin = time.monotonic()
    found = [c async for c in find(asyncio.Event(), bus_address=session_bus.address)]
    assert found == [] and time.monotonic() - begin < 2
    lines = [r.message for r in caplog.records]
    assert len(lines) == 1 and "avahi-daemon is not on the system bus" in lines[0], lines


async def test_without_a_system_bus_it_returns_at_once(
    short_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "flamenco_worker.discovery.avahi")
    begin = time.monotonic()
    found = [c async for c in find(asyncio.Event(), bus_address=f"unix:path={short_dir}/none.sock")]
    assert found == [] and time.monotonic() - begin < 2
    assert len(caplog.records) == 1 and "no system D-Bus" in caplog.records[0].message


async def test_closing_the_generator_early_frees_the_browser(
    session_bus: PrivateBus, avahi: FakeAvahi
) -> None:
    avahi.services.append(Service("Farm A", "192.0.2.5", 8080))
    candidates = find(asyncio.Event(), bus_address=session_bus.address)
    first = await anext(candidates)
    await candidates.aclose()
    assert first.url == "http://192.0.2.5:8080/"
    assert "ServiceBrowser.Free" in avahi.calls


def test_candidate_urls() -> None:
    def url(address: str, interface: int = -1, txt: dict[str, str] | None = None) -> str:
        return candidate_url(Resolved(interface, "x", address, 8080, txt or {}))

    assert url("10.0.0.2") == "http://10.0.0.2:8080/"
    assert url("fe80::2", socket.if_nametoindex("lo")) == "http://[fe80::2%lo]:8080/"
    assert url("fe80::2", 999_999) == "http://[fe80::2%999999]:8080/"  # no such interface: its number
    assert url("10.0.0.2", txt={"path": "farm"}) == "http://10.0.0.2:8080/"
    assert parse_txt([b"Path=/a", b"version=3.7", b"flag"]) == {"path": "/a", "version": "3.7", "flag": ""}
