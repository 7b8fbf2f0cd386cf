"""Several hosts on one machine, for tests of what crosses a network: each host is a network
namespace with one address on a private bridge, and a link between two hosts is cut by drop rules
inside a namespace (nftables), as a pulled cable or a dead switch port looks: no reset, silence.

Safety, as the machine is shared: the namespaces get no default route, so their packets can only
reach the bridge's subnet; links are never cut by removing a link or a route on the host side
(packets would fall through to the host's default route); every address a test targets is one of
the namespaces' own. The bridge lives in the host's namespace with the subnet's first address, so
the test itself (and `rabbitmqctl` through `ip netns exec`) reaches every host and is never cut.

Needs root, iproute2 and nftables (`./run test` installs them when missing and root);
`Network.create` raises `NetnsUnavailable` where creating a namespace is refused, and the tests
skip with its reason.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field

PREFIX = "rpcf"  # namespaces rpcf<pid>-<name>, bridge rpcfbr<pid>, veths rpcf<pid>v<i>
CUT_TABLE = "rpcfleet_cut"


class NetnsUnavailable(RuntimeError):
    """This machine refuses network namespaces or lacks the tools: tests that need them skip."""


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise NetnsUnavailable(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _nft(namespace: str, script: str) -> None:
    done = subprocess.run(["ip", "netns", "exec", namespace, "nft", "-f", "-"], input=script,
                          capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"nft in {namespace}: {done.stderr.strip()}\n{script}")


@dataclass(frozen=True)
class Host:
    namespace: str
    address: str

    @property
    def inside(self) -> list[str]:
        """The prefix that runs a command on this host."""
        return ["ip", "netns", "exec", self.namespace]


@dataclass
class Network:
    """Hosts on one bridge; `cut` and `heal` their links. Use as a context manager: leaving it
    kills whatever still runs in the namespaces and deletes them, the veths and the bridge."""

    subnet: str  # the first three octets, e.g. "10.211.7"
    tag: str = field(default_factory=lambda: str(os.getpid()))
    hosts: dict[str, Host] = field(default_factory=dict)
    _cuts: dict[str, set[str]] = field(default_factory=dict)

    @property
    def bridge(self) -> str:
        return f"{PREFIX}br{self.tag}"

    @property
    def gateway_address(self) -> str:
        """The host side of the bridge: where the test itself sits."""
        return f"{self.subnet}.1"

    @classmethod
    def create(cls) -> Network:
        for tool in ("ip", "nft"):
            if shutil.which(tool) is None:
                raise NetnsUnavailable(f"{tool} is not installed (Debian: iproute2, nftables)")
        if os.geteuid() != 0:
            raise NetnsUnavailable("network namespaces need root")
        sweep_stale()
        network = cls(subnet=_free_subnet())
        try:
            _ip("link", "add", network.bridge, "type", "bridge")
            _ip("addr", "add", f"{network.gateway_address}/24", "dev", network.bridge)
            _ip("link", "set", network.bridge, "up")
        except NetnsUnavailable:
            network.close()
            raise
        return network

    def add(self, name: str) -> Host:
        """A new host on the bridge, with the next address and loopback up."""
        index = len(self.hosts)
        host = Host(f"{PREFIX}{self.tag}-{name}", f"{self.subnet}.{10 + index}")
        outside, inner = f"{PREFIX}{self.tag}v{index}", f"{PREFIX}{self.tag}n{index}"
        _ip("netns", "add", host.namespace)
        self.hosts[name] = host
        _ip("link", "add", outside, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", host.namespace)
        _ip("link", "set", outside, "master", self.bridge, "up")
        _ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", inner)
        _ip("-n", host.namespace, "link", "set", inner, "up")
        _ip("-n", host.namespace, "link", "set", "lo", "up")
        return host

    def cut(self, name: str, *peers: str) -> None:
        """Drop every packet between host `name` and each of `peers` (both ways), inside
        `name`'s namespace: established connections go silent, new ones time out."""
        cut = self._cuts.setdefault(name, set())
        cut.update(self.hosts[peer].address for peer in peers)
        self._apply(name)

    def heal(self, name: str | None = None) -> None:
        """Lift the cuts of host `name` (of every host: None)."""
        for host in [name] if name else list(self._cuts):
            self._cuts.pop(host, None)
            self._apply(host)

    def _apply(self, name: str) -> None:
        namespace = self.hosts[name].namespace
        with contextlib.suppress(RuntimeError):  # no table yet
            _nft(namespace, f"delete table inet {CUT_TABLE}\n")
        addresses = sorted(self._cuts.get(name, ()))
        if not addresses:
            return
        targets = ", ".join(addresses)
        _nft(namespace, f"""table inet {CUT_TABLE} {{
    chain input {{
        type filter hook input priority 0; policy accept;
        ip saddr {{ {targets} }} drop
    }}
    chain output {{
        type filter hook output priority 0; policy accept;
        ip daddr {{ {targets} }} drop
    }}
}}
""")

    def close(self) -> None:
        for host in self.hosts.values():
            _remove_namespace(host.namespace)
        self.hosts.clear()
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=30)

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _remove_namespace(namespace: str) -> None:
    """Kill what runs inside (a broker node's epmd too), then delete the namespace; its veth
    pair goes with it."""
    pids = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True,
                          timeout=30).stdout.split()
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid), 9)
    subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30)


def sweep_stale() -> None:
    """Remove what an earlier run that died left behind (its process is gone)."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                            timeout=30).stdout
    for match in re.finditer(rf"^({PREFIX}(\d+)-\S+)", listed, re.MULTILINE):
        if not _alive(int(match.group(2))):
            _remove_namespace(match.group(1))
    links = subprocess.run(["ip", "-o", "link", "show", "type", "bridge"], capture_output=True,
                           text=True, timeout=30).stdout
    for match in re.finditer(rf"\d+: ({PREFIX}br(\d+)):", links):
        if not _alive(int(match.group(2))):
            subprocess.run(["ip", "link", "del", match.group(1)], capture_output=True, timeout=30)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _free_subnet() -> str:
    """A 10.211.x.0/24 no route of this machine uses yet."""
    routes = subprocess.run(["ip", "-4", "route", "show"], capture_output=True, text=True,
                            timeout=30).stdout
    for third in range(os.getpid() % 200 + 20, 255):
        subnet = f"10.211.{third}"
        if f"{subnet}." not in routes:
            return subnet
    raise NetnsUnavailable("no free 10.211.x.0/24 subnet")
