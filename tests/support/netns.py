"""A private LAN of network namespaces for discovery tests: one bridge, one veth per node, real multicast.

Only addresses on that bridge are used (10.231.0.0/24, fd31:5e7::/64 and link-local), so no packet
leaves the namespaces. Names carry a per-run token, and `close()` deletes every namespace it made (a
namespace's veth ends go with it).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

SUBNET_V4 = "10.231.0"
SUBNET_V6 = "fd31:5e7::"


class NetnsUnavailable(Exception):
    """Network namespaces cannot be made here (not root, no `ip`, no veth/bridge support)."""


def _ip(*args: str, netns: str | None = None) -> None:
    cmd = ["ip", *args] if netns is None else ["ip", "netns", "exec", netns, "ip", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise NetnsUnavailable(f"{' '.join(cmd)}: {result.stderr.strip()}")


def _sysctl(netns: str, key: str, value: str) -> None:
    subprocess.run(
        ["ip", "netns", "exec", netns, "sysctl", "-qw", f"{key}={value}"],
        capture_output=True,
        timeout=30,
        check=False,
    )


@dataclass
class Node:
    netns: str
    interface: str
    host: int

    @property
    def ipv4(self) -> str:
        return f"{SUBNET_V4}.{self.host}"

    @property
    def ipv6(self) -> str:
        return f"{SUBNET_V6}{self.host:x}"

    def command(self, *args: str) -> list[str]:
        """`args` to run inside this node's namespace."""
        return ["ip", "netns", "exec", self.netns, *args]


@dataclass
class PrivateLan:
    token: str = field(default_factory=lambda: secrets.token_hex(3))
    nodes: dict[str, Node] = field(default_factory=dict)
    _namespaces: list[str] = field(default_factory=list)
    _next_host: int = 10

    @property
    def hub(self) -> str:
        return f"fdhub-{self.token}"

    def open(self) -> PrivateLan:
        if os.geteuid() != 0 or shutil.which("ip") is None:
            raise NetnsUnavailable("network namespaces need root and iproute2")
        self._add_netns(self.hub)
        _ip("link", "add", "br0", "type", "bridge", netns=self.hub)
        _ip("link", "set", "br0", "up", netns=self.hub)
        return self

    def _add_netns(self, name: str) -> None:
        _ip("netns", "add", name)
        self._namespaces.append(name)
        _ip("link", "set", "lo", "up", netns=name)
        _sysctl(name, "net.ipv6.conf.all.accept_dad", "0")
        _sysctl(name, "net.ipv6.conf.default.accept_dad", "0")

    def add_node(self, role: str, host: int | None = None) -> Node:
        """A namespace on the LAN with one interface `lan0` holding 10.231.0.N and fd31:5e7::N."""
        if host is None:
            host = self._next_host
            self._next_host += 1
        name = f"fd{role[:6]}-{self.token}"
        self._add_netns(name)
        outside = f"v{self.token}{host}"
        _ip("link", "add", outside, "netns", self.hub, "type", "veth", "peer", "name", "lan0", "netns", name)
        _ip("link", "set", outside, "master", "br0", netns=self.hub)
        _ip("link", "set", outside, "up", netns=self.hub)
        node = Node(name, "lan0", host)
        self.set_address(node, host)
        _ip("link", "set", "lan0", "up", netns=name)
        self.nodes[role] = node
        return node

    def set_address(self, node: Node, host: int) -> None:
        """Give the node's interface this host number instead of its current one (the machine moved)."""
        if host != node.host:
            _ip("addr", "flush", "dev", node.interface, "scope", "global", netns=node.netns)
        node.host = host
        _ip("addr", "add", f"{node.ipv4}/24", "dev", node.interface, netns=node.netns)
        _ip("addr", "add", f"{node.ipv6}/64", "dev", node.interface, "nodad", netns=node.netns)

    def close(self) -> None:
        for name in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30, check=False)
        self._namespaces.clear()


@dataclass
class NsProcess:
    """A child process inside a node's namespace, its output in a log file."""

    node: Node
    args: list[str]
    log_path: Path
    env: dict[str, str]
    cwd: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> NsProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child writes to it for its lifetime
        self.proc = subprocess.Popen(
            self.node.command(*self.args),
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode
