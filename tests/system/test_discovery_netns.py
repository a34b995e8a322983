"""Discovery over real multicast: a Manager and workers in network namespaces on a private bridge.

Each test builds its own LAN (tests/support/netns.py): the Manager in one namespace, workers in
others, only 10.231.0.0/24, fd31:5e7::/64 and link-local addresses. Nothing is configured on the
workers: no manager_url, no file at all.
"""

from __future__ import annotations

import ast
import functools
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.netns import NetnsUnavailable, Node, NsProcess, PrivateLan
from tests.support.notify_socket import NotifySocket
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(180)

#: Flamenco's service type and device UUID, as a stock worker searches for them.
SERVICE_TYPE = "urn:flamenco:manager:0"
DEVICE_UUID = "aa80bc5f-d0af-46b8-8630-23bd7e80ec4d"
PORT = 8080

#: The bytes a stock Flamenco v3 worker sends: request line, its four headers, an empty line.
STOCK_MSEARCH = (
    b"M-SEARCH * HTTP/1.1\r\n"
    b"HOST: 239.255.255.250:1900\r\n"
    b"ST: urn:flamenco:manager:0\r\n"
    b'MAN: "ssdp:discover"\r\n'
    b"MX: 3\r\n"
    b"\r\n"
)

#: Sends STOCK_MSEARCH the way a stock worker does (IPv4, ephemeral port) and prints every answer.
STOCK_SEARCHER = """
import socket, sys, time
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("0.0.0.0", 0))
sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(sys.argv[1]))
sock.sendto(sys.stdin.buffer.read(), ("239.255.255.250", 1900))
sock.settimeout(0.5)
end = time.monotonic() + 3
while time.monotonic() < end:
    try:
        data, addr = sock.recvfrom(4096)
    except TimeoutError:
        continue
    sys.stdout.write(repr(data) + "\\n")
"""

#: Holds UDP port 1900 exclusively (no SO_REUSEADDR), like a program that does not share it.
PORT_HOLDER = """
import socket, sys, time
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("0.0.0.0", 1900))
print("bound", flush=True)
time.sleep(120)
"""

#: Asks the Manager's version over HTTP; exits 0 when it answers.
VERSION_PROBE = """
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "api/v3/version", timeout=5) as answer:
    print(answer.status, answer.read().decode())
"""


@pytest.fixture
def lan() -> Iterator[PrivateLan]:
    network = PrivateLan()
    try:
        network.open()
    except NetnsUnavailable as exc:
        network.close()
        pytest.skip(f"network namespaces cannot be created here: {exc}")
    yield network
    network.close()


class Site:
    """The processes of one test, each with its log in the test's directory."""

    def __init__(self, lan: PrivateLan, root: Path) -> None:
        self.lan = lan
        self.root = root
        self.processes: list[NsProcess] = []
        self.sockets: list[NotifySocket] = []

    def manager(self, node: Node, *, name: str = "manager", wait: bool = True) -> NsProcess:
        work = self.root / name
        work.mkdir(exist_ok=True)
        (work / "flamenco-manager.yaml").write_text(
            "_meta: {version: 3}\n"
            f"listen: ':{PORT}'\n"
            f"database: {work / 'flamenco-manager.sqlite'}\n"
            f"local_manager_storage_path: {work / 'storage'}\n"
            f"shared_storage_path: {work / 'shared'}\n"
        )
        proc = NsProcess(
            node,
            [
                sys.executable,
                "-m",
                "flamenco_manager",
                "-config",
                str(work / "flamenco-manager.yaml"),
                "-debug",
            ],
            work / "manager.log",
            env=_env(),
            cwd=work,
        ).start()
        self.processes.append(proc)
        if wait:
            wait_for(lambda: "listening listen=" in proc.log(), 20, "the Manager listening")
        return proc

    def worker(self, node: Node, name: str, *args: str) -> tuple[NsProcess, NotifySocket]:
        work = self.root / name
        work.mkdir(exist_ok=True)
        notify = NotifySocket(work / "n.sock")
        self.sockets.append(notify)
        env = _env(FLAMENCO_HOME=str(work / "home"), NOTIFY_SOCKET=str(notify.path))
        proc = NsProcess(
            node,
            [sys.executable, "-m", "flamenco_worker", "-dbus", "off", "-name", name, *args],
            work / "worker.log",
            env=env,
            cwd=work,
        ).start()
        self.processes.append(proc)
        return proc, notify

    def run(self, node: Node, *args: str, stdin: bytes = b"", timeout: float = 30) -> tuple[int, str]:
        import subprocess

        result = subprocess.run(
            node.command(*args), input=stdin, capture_output=True, timeout=timeout, env=_env(), cwd=self.root
        )
        return result.returncode, (result.stdout + result.stderr).decode(errors="replace")

    def close(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        for sock in self.sockets:
            sock.close()


def _env(**extra: str) -> dict[str, str]:
    import os

    keep = ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV")
    env = {key: os.environ[key] for key in keep if key in os.environ}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    env.update(extra)
    return env


@pytest.fixture
def site(lan: PrivateLan, short_dir: Path) -> Iterator[Site]:
    s = Site(lan, short_dir)
    yield s
    s.close()


_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ", re.M)


def _seconds_between(log: str, first: str, then: str) -> float:
    """Seconds between the log lines containing `first` and `then` (the worker's own timestamps)."""

    def stamp(text: str) -> float:
        line = next(ln for ln in log.splitlines() if text in ln)
        match = _STAMP.match(line)
        assert match, line
        clock = match.group(1).split(" ")[1]
        h, m, rest = clock.split(":")
        return int(h) * 3600 + int(m) * 60 + float(rest.replace(",", "."))

    return stamp(then) - stamp(first)


def _signed_on(proc: NsProcess) -> bool:
    return "signed on at Manager" in proc.log()


def test_two_unconfigured_workers_find_the_manager_within_3s(site: Site) -> None:
    manager_node = site.lan.add_node("mgr")
    nodes = [site.lan.add_node("wa"), site.lan.add_node("wb")]
    site.manager(manager_node)
    workers = [site.worker(node, f"w-{index}") for index, node in enumerate(nodes)]
    for proc, notify in workers:
        wait_for(functools.partial(_signed_on, proc), 20, "sign-on")
        log = proc.log()
        assert _seconds_between(log, "searching the LAN for a Manager", "discovery: found Manager") <= 3.0, (
            log
        )
        found = re.search(r"discovery: found Manager name='Flamenco' version=\S+ .*at (\S+) source=ssdp", log)
        assert found, log
        url = found.group(1)
        assert any(host in url for host in ("10.231.0.10", "fd31:5e7::a", "fe80::")), url
        statuses = " | ".join(notify.seen("STATUS="))
        assert "searching the LAN for a Manager" in statuses or "found Manager" in statuses, statuses
        assert url in statuses, statuses  # the status line says which Manager
        assert (Path(site.root) / proc.log_path.parent.name / "home" / "discovered-manager.json").exists()


def test_a_stock_flamenco_search_is_answered(site: Site) -> None:
    manager_node = site.lan.add_node("mgr")
    searcher = site.lan.add_node("stock")
    site.manager(manager_node)
    code, out = site.run(searcher, sys.executable, "-c", STOCK_SEARCHER, searcher.ipv4, stdin=STOCK_MSEARCH)
    assert code == 0, out
    answers = [ast.literal_eval(line) for line in out.splitlines() if line.startswith("b'")]
    assert answers, out
    locations = []
    for answer in answers:
        text = answer.decode()
        lines = text.split("\r\n")
        assert lines[0] == "HTTP/1.1 200 OK", text
        assert text.endswith("\r\n\r\n"), text
        headers = {k.strip().upper(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        # what a stock worker checks: USN split on ':' gives "uuid" and Flamenco's UUID
        usn = headers["USN"].split(":")
        assert usn[0] == "uuid" and usn[1] == DEVICE_UUID, headers
        assert headers["ST"] == SERVICE_TYPE and "EXT" in headers, headers
        locations.append(headers["LOCATION"])
    assert f"http://{manager_node.ipv4}:{PORT}/upnp/description.xml" in locations, locations
    # the stock worker replaces the path by "/" and asks for the version there
    code, out = site.run(searcher, sys.executable, "-c", VERSION_PROBE, f"http://{manager_node.ipv4}:{PORT}/")
    assert code == 0 and out.startswith("200"), out


def test_ssdp_port_held_exclusively_one_line_and_http_still_serves(site: Site) -> None:
    manager_node = site.lan.add_node("mgr")
    other = site.lan.add_node("wa")
    holder = NsProcess(
        manager_node, [sys.executable, "-c", PORT_HOLDER], site.root / "holder.log", env=_env(), cwd=site.root
    ).start()
    site.processes.append(holder)
    wait_for(lambda: "bound" in holder.log(), 10, "the port holder")
    manager = site.manager(manager_node)
    code, out = site.run(other, sys.executable, "-c", VERSION_PROBE, f"http://{manager_node.ipv4}:{PORT}/")
    assert code == 0 and out.startswith("200"), out
    lines = [ln for ln in manager.log().splitlines() if "ssdp" in ln and "WARNING" in ln]
    assert len(lines) == 1 and "discovery=off" in lines[0] and "1900" in lines[0], lines
    code, out = site.run(
        other, sys.executable, "-m", "flamenco_worker", "-find-manager", "-find-manager-timeout", "2"
    )
    assert code == 1, out


def test_find_manager_exit_codes(site: Site) -> None:
    manager_node = site.lan.add_node("mgr")
    searcher = site.lan.add_node("wa")
    started = time.monotonic()
    code, out = site.run(
        searcher, sys.executable, "-m", "flamenco_worker", "-find-manager", "-find-manager-timeout", "2"
    )
    assert code == 1 and "no Flamenco Manager answered within 2s" in out, out
    assert time.monotonic() - started < 15
    site.manager(manager_node)
    code, out = site.run(
        searcher, sys.executable, "-m", "flamenco_worker", "-find-manager", "-find-manager-timeout", "10"
    )
    assert code == 0, out
    assert re.search(r"^http://\S+:8080/$", out, re.M), out


def test_worker_searches_until_a_manager_appears(site: Site) -> None:
    manager_node = site.lan.add_node("mgr")
    worker_node = site.lan.add_node("wa")
    proc, notify = site.worker(worker_node, "w-late")
    status = notify.wait_for("STATUS=", timeout=20)
    while "searching the LAN" not in status:
        status = notify.wait_for("STATUS=", timeout=20)
    assert status.startswith("STATUS=starting: searching the LAN for a Manager"), status
    site.manager(manager_node)
    wait_for(lambda: "signed on at Manager" in proc.log(), 20, "sign-on after the Manager appeared")
    assert proc.proc is not None and proc.proc.poll() is None


def test_worker_follows_a_manager_that_moved(site: Site) -> None:
    manager_node = site.lan.add_node("mgr")
    worker_node = site.lan.add_node("wa")
    manager = site.manager(manager_node)
    proc, _ = site.worker(worker_node, "w-move")
    wait_for(lambda: "signed on at Manager" in proc.log(), 20, "first sign-on")
    first_url = re.findall(r"discovery: found Manager .* at (\S+) source=", proc.log())[-1]
    manager.stop()
    site.lan.set_address(manager_node, 20)
    site.manager(manager_node, name="manager")  # the same database, a new address
    found = wait_for(
        lambda: [
            u
            for u in re.findall(r"discovery: found Manager .* at (\S+) source=", proc.log())
            if u != first_url
        ],
        60,
        "the worker finding the Manager at its new address",
    )
    assert first_url not in found
    # The same Manager (same database): a call gets through at the new address with the same credentials
    # (a held task fetch is answered within the long-poll time), and the worker registers nowhere anew.
    new_url = found[0]
    wait_for(
        lambda: "Manager reachable again" in proc.log().split(f"at {new_url} source=", 1)[-1],
        45,
        "a call answered at the new address",
    )
    assert "REGISTERING AS A NEW WORKER" not in proc.log() and proc.log().count("registered at Manager") == 1
    assert "NOT registering there" not in proc.log()
