"""DNS-SD in a booted Debian: the packaged Manager publishes `_flamenco._tcp` through Debian's own
avahi-daemon, avahi-browse sees it, the worker package's finder, run as an unprivileged user, finds
a URL where the Manager answers, and the packaged worker, with no manager_url, joins it that way.

The container has its own network namespace with only loopback, which avahi-daemon does not use; a
veth pair inside it (created from the host with `ip`, the container has none) gives avahi-daemon two
multicast interfaces, one with an IPv4 address, both with IPv6 link-local addresses.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.support.nspawn import Container, missing_tools, wait_for
from tests.system import test_packaging as packaging
from tests.system.test_packaging import DBUS_ARGS, MANAGER, SETTLE, WORKER, WORKER_YAML, install

# The fixtures of test_packaging.py, under their own names (pytest looks fixtures up by name here).
_no_container_survives = packaging._no_container_survives
root, debs, upgrade_debs = packaging.root, packaging.debs, packaging.upgrade_debs
container = packaging.container

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(missing_tools() is not None, reason=missing_tools() or ""),
    # The first test also builds the .debs and the container's root filesystem (minutes, once).
    pytest.mark.timeout(1800),
]

LAN_ADDRESS = "10.231.5.1"
MANAGER_YAML = "/etc/flamenco/flamenco-manager.yaml"
PORT = 8080
#: Longest the finder runs in the container: resolving a local service takes well under a second.
FIND_SECONDS = 30
# The worker package's finder as a worker would run it: each candidate is asked for /api/v3/version as it
# comes; the search stops once an IPv4 and an IPv6 link-local candidate have both answered.
FINDER = """
import asyncio, json, sys, urllib.request
from flamenco_worker.discovery.avahi import find

async def main():
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(float(sys.argv[1]), stop.set)
    answered = set()
    async for candidate in find(stop):
        try:
            with urllib.request.urlopen(candidate.url + "api/v3/version", timeout=5) as reply:
                version = json.load(reply)
        except OSError as exc:
            version = {"error": str(exc)}
        print(json.dumps({"url": candidate.url, "source": candidate.source, "version": version}), flush=True)
        if "name" in version:
            answered.add("ipv6" if candidate.url.startswith("http://[fe80:") else "ipv4")
        if answered == {"ipv4", "ipv6"}:
            stop.set()

asyncio.run(main())
"""


def host_ip(ct: Container, *args: str) -> None:
    """`ip` of the host run in the container's network namespace (the root filesystem has no iproute2)."""
    subprocess.run(["nsenter", "-t", str(ct.leader), "-n", "ip", *args], check=True, timeout=30)


def with_lan(ct: Container) -> None:
    host_ip(ct, "link", "add", "fl0", "type", "veth", "peer", "name", "fl1")
    host_ip(ct, "addr", "add", f"{LAN_ADDRESS}/24", "dev", "fl0")
    host_ip(ct, "link", "set", "fl0", "up")
    host_ip(ct, "link", "set", "fl1", "up")


def browse(ct: Container) -> list[list[str]]:
    """`avahi-browse -rtp _flamenco._tcp`: the resolved entries, as fields."""
    out = ct.run("avahi-browse", "-rtp", "_flamenco._tcp", check=False, timeout=30).stdout

    # -p escapes some characters as a backslash and three decimal digits ("\\032" is a space).
    def unescape(field: str) -> str:
        return re.sub(r"\\(\d{3})", lambda m: chr(int(m.group(1))), field)

    return [[unescape(f) for f in line.split(";")] for line in out.splitlines() if line.startswith("=;")]


def published_on_lan(ct: Container) -> list[str] | None:
    for fields in browse(ct):
        # =;IFACE;PROTO;NAME;TYPE;DOMAIN;HOST;ADDRESS;PORT;TXT
        if fields[1] == "fl0" and fields[2] == "IPv4":
            return fields
    return None


def test_the_manager_is_published_and_the_workers_finder_reaches_it(container: Container) -> None:
    ct = container
    with_lan(ct)
    wait_for(
        "avahi-daemon running",
        lambda: ct.show("avahi-daemon.service", "ActiveState")["ActiveState"] == "active",
        SETTLE,
    )
    install(ct, "/mnt/debs/flamenco-manager_0.1.0_all.deb", "/mnt/debs/flamenco-worker_0.1.0_all.deb")

    # The Manager (user flamenco, hardened unit) published itself through Avahi's D-Bus API.
    entry = wait_for("the Manager in avahi-browse", lambda: published_on_lan(ct), SETTLE)
    hostname = ct.read("/proc/sys/kernel/hostname").strip()
    assert entry[3:6] == [f"Flamenco Manager on {hostname}", "_flamenco._tcp", "local"], entry
    assert (entry[7], entry[8]) == (LAN_ADDRESS, str(PORT)), entry
    assert '"path=/"' in entry[9] and '"version=3.' in entry[9], entry
    assert "dns-sd: published name=" in ct.journal(MANAGER)

    # The worker package's finder, run by a user without any privilege (Avahi's D-Bus policy lets
    # everyone browse), yields URLs where the Manager answers: IPv4 and IPv6 link-local with its zone.
    out = ct.run("python3", "-c", FINDER, str(FIND_SECONDS), user="nobody", timeout=FIND_SECONDS + 30).stdout
    found = [json.loads(line) for line in out.splitlines()]
    answered = {f["url"]: f["version"] for f in found if "name" in f["version"]}
    assert f"http://{LAN_ADDRESS}:{PORT}/" in answered, found
    assert any(url.startswith("http://[fe80:") and "%fl" in url for url in answered), found
    assert all(f["source"] == "dns-sd" for f in found), found
    assert all(v["name"] == "Flamenco" and v["shortversion"].startswith("3.") for v in answered.values())


def test_a_restarted_avahi_daemon_gets_the_manager_again(container: Container) -> None:
    ct = container
    with_lan(ct)
    install(ct, "/mnt/debs/flamenco-manager_0.1.0_all.deb")
    wait_for("the Manager in avahi-browse", lambda: published_on_lan(ct), SETTLE)
    pid = ct.show(MANAGER, "MainPID")["MainPID"]

    ct.run("systemctl", "restart", "avahi-daemon.service")
    wait_for(
        "the Manager to publish again",
        lambda: ct.journal(MANAGER).count("dns-sd: published name=") >= 2 and published_on_lan(ct),
        SETTLE,
    )
    assert ct.show(MANAGER, "MainPID")["MainPID"] == pid  # the same process, not a restart

    # Without avahi-daemon the Manager goes on serving; it says so once.
    ct.run("systemctl", "stop", "avahi-daemon.service", "avahi-daemon.socket")
    wait_for(
        "the Manager to notice avahi-daemon left",
        lambda: "avahi-daemon left the bus" in ct.journal(MANAGER),
        SETTLE,
    )
    status, version = ct.http("GET", "/api/v3/version")
    assert status == 200 and version["name"] == "Flamenco", version


# Holds UDP port 1900 without SO_REUSEADDR, as a program that wants it alone would: the Manager's SSDP is
# then off, so a worker can only find it through DNS-SD.
SSDP_SQUATTER = """
import socket, time
held = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
held.bind(("0.0.0.0", 1900))
time.sleep(3600)
"""


def test_a_worker_with_no_manager_url_finds_the_manager_through_dns_sd(container: Container) -> None:
    ct = container
    with_lan(ct)
    wait_for(
        "avahi-daemon running",
        lambda: ct.show("avahi-daemon.service", "ActiveState")["ActiveState"] == "active",
        SETTLE,
    )
    ct.run("systemd-run", "--unit=ssdp-squatter", "python3", "-c", SSDP_SQUATTER)
    install(ct, "/mnt/debs/flamenco-manager_0.1.0_all.deb")
    # Only on the LAN address, so the worker's look at this machine's own localhost:8080 finds nothing.
    config = ct.read(MANAGER_YAML).replace('listen: ":8080"', f'listen: "{LAN_ADDRESS}:{PORT}"')
    ct.write(MANAGER_YAML, config)
    ct.run("systemctl", "restart", MANAGER)
    wait_for("the Manager in avahi-browse", lambda: published_on_lan(ct), SETTLE)
    assert "discovery=off ssdp" in ct.journal(MANAGER)

    # The package's own worker configuration: manager_url left empty.
    install(ct, "/mnt/debs/flamenco-worker_0.1.0_all.deb")
    assert re.search(r'^manager_url: ""$', ct.read(WORKER_YAML), re.MULTILINE)
    found = wait_for(
        "the worker to find the Manager",
        lambda: re.search(r"discovery: found Manager .* at (\S+) source=(\S+)", ct.journal(WORKER)),
        SETTLE,
    )
    assert found.group(2) == "dns-sd", ct.journal(WORKER)
    url = found.group(1)
    assert url == f"http://{LAN_ADDRESS}:{PORT}/" or url.startswith("http://[fe80:"), url
    wait_for(
        "the worker to sign on",
        lambda: "awake" in ct.busctl("get-property", *DBUS_ARGS, "StatusText").stdout,
        SETTLE,
    )
