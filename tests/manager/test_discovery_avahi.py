"""The Manager's DNS-SD publisher against a real private dbus-daemon and a stand-in avahi-daemon on it:
publish, name collisions (local and on the network), avahi-daemon restarts, no Avahi, no bus."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flamenco_manager.config import ManagerConfig
from flamenco_manager.discovery.avahi import AvahiPublisher, service_name
from tests.support.dbus_daemon import PrivateBus
from tests.support.fake_avahi import SERVER_REGISTERING, SERVER_RUNNING, FakeAvahi

pytestmark = pytest.mark.timeout(30)

NAME = "Render Room"


@pytest.fixture
async def avahi(session_bus: PrivateBus) -> AsyncIterator[FakeAvahi]:
    fake = await FakeAvahi(session_bus.address).start()
    yield fake
    await fake.stop()


async def started(bus: PrivateBus, **kwargs: object) -> AvahiPublisher:
    publisher = AvahiPublisher(port=8080, name=NAME, bus_address=bus.address, **kwargs)  # type: ignore[arg-type]  # test-chosen keywords
    await publisher.start()
    await asyncio.wait_for(publisher.started.wait(), 5)
    return publisher


async def test_publishes_the_service_with_port_and_txt(session_bus: PrivateBus, avahi: FakeAvahi) -> None:
    publisher = await started(session_bus, txt={"path": "/", "version": "3.7"})
    try:
        await avahi.wait(lambda: NAME in avahi.published)
        await asyncio.wait_for(publisher.established.wait(), 5)
        service = avahi.published[NAME]
        assert (service.type, service.port, service.interface, service.protocol) == (
            "_flamenco._tcp",
            8080,
            -1,
            -1,
        )
        assert service.txt == [b"path=/", b"version=3.7"]
    finally:
        await publisher.close()
    # Closing withdraws it.
    assert NAME not in avahi.published
    assert "EntryGroup.Free" in avahi.calls


async def test_a_name_taken_on_this_host_takes_avahis_alternative(
    session_bus: PrivateBus, avahi: FakeAvahi
) -> None:
    avahi.taken_locally.update({NAME, f"{NAME} #2"})
    publisher = await started(session_bus)
    try:
        await avahi.wait(lambda: f"{NAME} #3" in avahi.published)
        assert publisher.name == f"{NAME} #3"
    finally:
        await publisher.close()


async def test_a_collision_on_the_network_renames_and_publishes_again(
    session_bus: PrivateBus, avahi: FakeAvahi
) -> None:
    avahi.taken_on_network.add(NAME)
    publisher = await started(session_bus)
    try:
        await avahi.wait(lambda: f"{NAME} #2" in avahi.published)
        await asyncio.wait_for(publisher.established.wait(), 5)
        assert NAME not in avahi.published and publisher.name == f"{NAME} #2"
    finally:
        await publisher.close()


async def test_endless_collisions_end_in_giving_up_not_a_flood(
    session_bus: PrivateBus, avahi: FakeAvahi, caplog: pytest.LogCaptureFixture
) -> None:
    avahi.taken_locally.update({NAME, *(f"{NAME} #{n}" for n in range(2, 100))})
    publisher = await started(session_bus)
    try:
        await avahi.wait(lambda: any("giving up" in r.message for r in caplog.records))
        assert sum(c.startswith("AddService") for c in avahi.calls) <= 21
        assert not avahi.published
    finally:
        await publisher.close()


async def test_a_restarted_avahi_daemon_gets_the_service_again(
    session_bus: PrivateBus, avahi: FakeAvahi
) -> None:
    publisher = await started(session_bus)
    try:
        await avahi.wait(lambda: NAME in avahi.published)
        await avahi.stop()
        again = await FakeAvahi(session_bus.address).start()
        try:
            await again.wait(lambda: NAME in again.published)
            assert again.calls[:3] == ["EntryGroupNew", f"AddService {NAME}", "Commit"]
        finally:
            await again.stop()
    finally:
        await publisher.close()


async def test_without_avahi_nothing_happens_until_it_starts(
    session_bus: PrivateBus, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "flamenco_manager.discovery.avahi")
    begin = time.monotonic()
    publisher = await started(session_bus)
    try:
        assert time.monotonic() - begin < 2
        lines = [r.message for r in caplog.records]
        assert len(lines) == 1 and "avahi-daemon is not on the system bus" in lines[0], lines
        late = await FakeAvahi(session_bus.address).start()
        try:
            await late.wait(lambda: NAME in late.published)
        finally:
            await late.stop()
    finally:
        await publisher.close()


async def test_without_a_system_bus_start_returns_at_once_with_one_line(
    short_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "flamenco_manager.discovery.avahi")
    publisher = AvahiPublisher(port=8080, name=NAME, bus_address=f"unix:path={short_dir}/none.sock")
    begin = time.monotonic()
    await publisher.start()
    await asyncio.wait_for(publisher.started.wait(), 5)
    await publisher.close()
    assert time.monotonic() - begin < 2
    lines = [r.message for r in caplog.records]
    assert len(lines) == 1 and "no system D-Bus" in lines[0], lines


async def test_disabled_touches_no_bus(session_bus: PrivateBus, avahi: FakeAvahi) -> None:
    publisher = await started(session_bus, enabled=False)
    await publisher.close()
    assert avahi.calls == []


def test_the_service_name() -> None:
    assert service_name("Flamenco", "node7") == "Flamenco Manager on node7"
    assert service_name("Studio farm", "node7") == "Studio farm"
    long = service_name("é" * 40, "x")
    assert len(long.encode()) <= 63 and long == "é" * 31


def test_for_manager_reads_name_port_version_and_skips_loopback() -> None:
    config = ManagerConfig(manager_name="Studio", listen_port=8123, flamenco_version="3.6")
    publisher = AvahiPublisher.for_manager(config, enabled=True)
    assert (publisher.name, publisher.port, publisher.enabled) == ("Studio", 8123, True)
    assert publisher.txt == [b"path=/", b"version=3.6"]
    local = ManagerConfig(listen_host="127.0.0.1")
    assert not AvahiPublisher.for_manager(local, enabled=True).enabled
    assert not AvahiPublisher.for_manager(config, enabled=False).enabled


async def test_a_host_name_reregistration_withdraws_and_then_publishes_again(
    session_bus: PrivateBus, avahi: FakeAvahi
) -> None:
    publisher = await started(session_bus)
    try:
        await avahi.wait(lambda: NAME in avahi.published)
        assert avahi.server is not None
        avahi.server.StateChanged(SERVER_REGISTERING, "")
        await avahi.wait(lambda: NAME not in avahi.published)
        avahi.server.StateChanged(SERVER_RUNNING, "")
        await avahi.wait(lambda: NAME in avahi.published)
        assert avahi.calls.count("Commit") == 2
    finally:
        await publisher.close()


async def test_a_refusal_is_one_warning_and_the_publisher_keeps_listening(
    session_bus: PrivateBus, avahi: FakeAvahi, caplog: pytest.LogCaptureFixture
) -> None:
    avahi.add_error = "org.freedesktop.Avahi.InvalidServiceNameError"
    publisher = await started(session_bus)
    try:
        await avahi.wait(lambda: any("publishing failed" in r.message for r in caplog.records))
        assert not avahi.published
        # A later avahi-daemon that accepts the service gets it.
        await avahi.stop()
        again = await FakeAvahi(session_bus.address).start()
        try:
            await again.wait(lambda: NAME in again.published)
        finally:
            await again.stop()
    finally:
        await publisher.close()
