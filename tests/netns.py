"""Network namespaces for tests that need a real Linux firewall.

`FirewallLab` builds three namespaces joined by veth pairs and always deletes them, even when
the test fails or is interrupted:

    client  --(cf/fc)--  firewall  --(fs/sf)--  server
    many source addresses          192.0.2.10 (its own listener)
    from 198.51.100.0/24,          public 192.0.2.25, DNAT target ->  192.0.2.200
    203.0.113.0/24, 192.0.2.64/27

Each of the firewall and the server runs a tiny SMTP greeter on port 25 (`220 ... ESMTP`). The
client runs one long-lived worker that opens many connections at once, each bound to its own
source address, and reports for each whether the kernel let it connect, refused it (RST or ICMP
unreachable) or let it time out (a silent drop). Names carry the process id and a counter, so
parallel test runs never collide. Traffic stays inside the namespaces; every address used is a
documentation address.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

FIREWALL_ADDRESS = "192.0.2.1"  # the firewall's own address on the client side (next hop)
LOCAL_SERVER = "192.0.2.10"  # the firewall host's own listener: INPUT / input hook
PUBLIC_ADDRESS = "192.0.2.25"  # the published address, DNATed to the server: FORWARD
INSIDE_GATEWAY = "192.0.2.129"
INSIDE_SERVER = "192.0.2.200"
CLIENT_RANGES = ("198.51.100.0/24", "203.0.113.0/24", "192.0.2.64/27")
# IPv6: the same roles inside 2001:db8::/32.
FIREWALL6 = "2001:db8::1"
LOCAL6 = "2001:db8::10"
INSIDE_GATEWAY6 = "2001:db8:1::1"
INSIDE6 = "2001:db8:1::200"
CLIENT_RANGE6 = "2001:db8:100::/120"

_counter = itertools.count()

GREETER = textwrap.dedent(
    """
    import asyncio, sys

    async def greet(reader, writer):
        try:
            writer.write(b"220 oracle.example ESMTP\\r\\n")
            await writer.drain()
            await asyncio.wait_for(reader.read(64), 2)
        except Exception:
            pass
        finally:
            writer.close()

    async def main():
        server = await asyncio.start_server(
            greet, ["0.0.0.0", "::"], 25, backlog=4096, reuse_address=True
        )
        print("ready", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())
    """
)

CLIENT = textwrap.dedent(
    """
    import errno, json, select, socket, sys, time

    REFUSED = (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES,
               errno.EPERM, errno.ECONNRESET)

    def attempt(targets, timeout):
        # "connected" means what Exchange Online needs: the server's 220 greeting arrived, so
        # the SYN and the packets after it (the handshake's ACK) were all let through. A reset
        # or ICMP error before the greeting is "refused"; silence until the deadline "timeout".
        socks = {}
        results = {}
        for index, (src, dst, port) in enumerate(targets):
            s = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.bind((src, 0))
            code = s.connect_ex((dst, port))
            if code not in (0, errno.EINPROGRESS, errno.EAGAIN):
                results[index] = "refused" if code in REFUSED else "error:%d" % code
                s.close()
                continue
            socks[s.fileno()] = (index, s)
        deadline = time.monotonic() + timeout
        poller = select.poll()
        for fd in socks:
            poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
        while socks:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for fd, _ in poller.poll(left * 1000):
                index, s = socks[fd]
                code = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code == 0:
                    try:
                        data = s.recv(64)
                    except BlockingIOError:
                        continue
                    except OSError as exc:
                        code = exc.errno or errno.ECONNRESET
                    else:
                        code = None
                        results[index] = "connected" if data.startswith(b"220") else "refused"
                if code is not None:
                    results[index] = "refused" if code in REFUSED else "error:%d" % code
                del socks[fd]
                poller.unregister(fd)
                s.close()
        for index, s in socks.values():
            results[index] = "timeout"
            s.close()
        return [results[i] for i in range(len(targets))]

    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        out = attempt(request["targets"], request["timeout"])
        print(json.dumps(out), flush=True)
    """
)


def lab_unavailable() -> str | None:
    """Why the lab cannot run here, or None when it can."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft", "iptables-restore", "ip6tables-restore"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install iproute2 nftables iptables)"
    return None


def run(*args: str, stdin: str | None = None, check: bool = True) -> str:
    result = subprocess.run(
        list(args), input=stdin, capture_output=True, text=True, check=False, timeout=30
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {result.stderr.strip() or result.stdout}")
    return result.stdout


def client_sources() -> list[str]:
    """Source addresses that sit on every block boundary a generated rule can have (/24../30)."""
    sources: list[str] = []
    for base, count in (("198.51.100", 256), ("203.0.113", 256)):
        sources.extend(f"{base}.{i}" for i in range(count) if i % 4 in (0, 3))
    sources.extend(f"192.0.2.{i}" for i in range(64, 96) if i % 4 in (0, 3))
    # Not 2001:db8:100:: itself: for a router with a route to 2001:db8:100::/120 that is the
    # subnet-router anycast address, and Linux never sends an ICMPv6 error to an anycast
    # address (a REJECT would look like a DROP).
    sources.extend(f"2001:db8:100::{i:x}" for i in range(1, 256) if i % 4 in (0, 3))
    return sources


@dataclass
class FirewallLab:
    """Three namespaces: client, firewall, server. Use as a context manager."""

    tag: str = field(default_factory=lambda: f"mf{os.getpid() % 100000}x{next(_counter)}")
    sources: list[str] = field(default_factory=client_sources)
    _processes: list[subprocess.Popen[str]] = field(default_factory=list)
    _client: subprocess.Popen[str] | None = None

    @property
    def client_ns(self) -> str:
        return f"{self.tag}c"

    @property
    def firewall_ns(self) -> str:
        return f"{self.tag}f"

    @property
    def server_ns(self) -> str:
        return f"{self.tag}s"

    @property
    def outside_interface(self) -> str:
        """The firewall's interface towards the clients (the inbound interface)."""
        return f"{self.tag}fc"[:15]

    def __enter__(self) -> FirewallLab:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        c, f, s = self.client_ns, self.firewall_ns, self.server_ns
        cf, fc, fs, sf = (f"{self.tag}{n}"[:15] for n in ("cf", "fc", "fs", "sf"))
        for ns in (c, f, s):
            run("ip", "netns", "add", ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "link", "add", cf, "netns", c, "type", "veth", "peer", "name", fc, "netns", f)
        run("ip", "link", "add", fs, "netns", f, "type", "veth", "peer", "name", sf, "netns", s)
        for ns, dev in ((c, cf), (f, fc), (f, fs), (s, sf)):
            run("ip", "-n", ns, "link", "set", dev, "up")
        batch = [
            f"address add {FIREWALL_ADDRESS}/32 dev {fc}",
            f"address add {LOCAL_SERVER}/32 dev {fc}",
        ]
        batch += [
            f"address add {INSIDE_GATEWAY}/32 dev {fs}",
            f"route add {INSIDE_SERVER}/32 dev {fs}",
        ]
        batch += [f"route add {net} dev {fc}" for net in CLIENT_RANGES]
        batch += [
            f"address add {FIREWALL6}/128 dev {fc} nodad",
            f"address add {LOCAL6}/128 dev {fc} nodad",
            f"address add {INSIDE_GATEWAY6}/128 dev {fs} nodad",
            f"route add {INSIDE6}/128 dev {fs}",
            f"route add {CLIENT_RANGE6} dev {fc}",
        ]
        run("ip", "-n", f, "-batch", "-", stdin="\n".join(batch) + "\n")
        client = [
            f"address add {src}/128 dev {cf} nodad"
            if ":" in src
            else f"address add {src}/32 dev {cf}"
            for src in self.sources
        ]
        client += [f"route add {FIREWALL6}/128 dev {cf}"]
        client += [f"route add 2001:db8::/48 via {FIREWALL6} dev {cf} onlink"]
        client += [f"route add {FIREWALL_ADDRESS}/32 dev {cf}"]
        client += [f"route add 192.0.2.0/26 via {FIREWALL_ADDRESS} dev {cf} onlink"]
        client += [f"route add 192.0.2.128/25 via {FIREWALL_ADDRESS} dev {cf} onlink"]
        run("ip", "-n", c, "-batch", "-", stdin="\n".join(client) + "\n")
        server = [
            f"address add {INSIDE_SERVER}/32 dev {sf}",
            f"route add {INSIDE_GATEWAY}/32 dev {sf}",
        ]
        server += [f"route add default via {INSIDE_GATEWAY} dev {sf} onlink"]
        server += [
            f"address add {INSIDE6}/128 dev {sf} nodad",
            f"route add {INSIDE_GATEWAY6}/128 dev {sf}",
        ]
        server += [f"route add default via {INSIDE_GATEWAY6} dev {sf} onlink"]
        run("ip", "-n", s, "-batch", "-", stdin="\n".join(server) + "\n")
        for key, value in (
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.default.rp_filter", "0"),
            # REJECT answers with ICMP; the kernel rate-limits ICMP, which would turn the 273rd
            # simultaneous "refused" into a "timed out".
            ("net.ipv4.icmp_ratemask", "0"),
            ("net.ipv4.icmp_ratelimit", "0"),
            ("net.ipv4.icmp_msgs_burst", "10000"),
            ("net.ipv6.conf.all.forwarding", "1"),
            ("net.ipv6.icmp.ratelimit", "0"),
        ):
            run("ip", "netns", "exec", f, "sysctl", "-qw", f"{key}={value}")
        for ns in (c, s):
            run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0")
        # Permanent neighbour entries: 272 simultaneous ARP resolutions would otherwise race
        # the connection timeout now and then.
        client_mac = self._mac(c, cf)
        neighbours = [
            f"neigh replace {src} lladdr {client_mac} dev {fc} nud permanent"
            for src in self.sources
        ]
        run("ip", "-n", f, "-batch", "-", stdin="\n".join(neighbours) + "\n")
        firewall_mac, server_mac, inside_mac = self._mac(f, fc), self._mac(s, sf), self._mac(f, fs)
        pinned = [(c, cf, address, firewall_mac) for address in (FIREWALL_ADDRESS, FIREWALL6)]
        pinned += [(f, fs, address, server_mac) for address in (INSIDE_SERVER, INSIDE6)]
        pinned += [(s, sf, address, inside_mac) for address in (INSIDE_GATEWAY, INSIDE_GATEWAY6)]
        for ns, dev, address, mac in pinned:
            run(
                "ip",
                "-n",
                ns,
                "neigh",
                "replace",
                address,
                "lladdr",
                mac,
                "dev",
                dev,
                "nud",
                "permanent",
            )
        for ns in (f, s):
            self._processes.append(self._spawn(ns, GREETER))
        self._client = self._spawn(c, CLIENT)
        self._processes.append(self._client)

    @staticmethod
    def _mac(ns: str, device: str) -> str:
        info = json.loads(run("ip", "-n", ns, "-j", "link", "show", device))
        return str(info[0]["address"])

    def _spawn(self, ns: str, code: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-u", "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert process.stdout is not None
        line = process.stdout.readline()
        if line.strip() != "ready":
            process.kill()
            raise RuntimeError(f"helper in {ns} did not start")
        return process

    def firewall(self, *args: str, stdin: str | None = None) -> str:
        return run("ip", "netns", "exec", self.firewall_ns, *args, stdin=stdin)

    def load_iptables(self, text: str) -> None:
        """iptables-save text, with `ipset save` lines (create / add) ahead of it if any."""
        self._load_xtables("iptables-restore", text)

    def load_ip6tables(self, text: str) -> None:
        self._load_xtables("ip6tables-restore", text)

    def _load_xtables(self, restore: str, text: str) -> None:
        self.firewall("nft", "flush", "ruleset")  # drops the rules that still use old ipsets
        ipset_lines = [line for line in text.splitlines() if line.startswith(("create ", "add "))]
        rules = [line for line in text.splitlines() if not line.startswith(("create ", "add "))]
        if shutil.which("ipset"):
            self.firewall("ipset", "destroy")
            if ipset_lines:
                self.firewall("ipset", "restore", stdin="\n".join(ipset_lines) + "\n")
        elif ipset_lines:
            raise RuntimeError("this policy needs ipset (apt-get install ipset)")
        self.firewall(restore, stdin="\n".join(rules) + "\n")

    def load_nftables(self, text: str) -> None:
        self.firewall("nft", "flush", "ruleset")
        self.firewall("nft", "-f", "-", stdin=text)

    def connect_all(
        self,
        destination: str,
        port: int = 25,
        timeout: float = 0.4,
        sources: list[str] | None = None,
    ) -> dict[str, str]:
        """Connect from every source at once: 'connected', 'refused' or 'timeout' per source."""
        chosen = self.sources_for(destination) if sources is None else sources
        assert self._client is not None
        assert self._client.stdin
        assert self._client.stdout
        targets = [[src, destination, port] for src in chosen]
        self._client.stdin.write(json.dumps({"targets": targets, "timeout": timeout}) + "\n")
        self._client.stdin.flush()
        line = self._client.stdout.readline()
        if not line:
            raise RuntimeError("the client worker stopped")
        return dict(zip(chosen, json.loads(line), strict=True))

    def sources_for(self, destination: str) -> list[str]:
        """The client addresses of the destination's family."""
        v6 = ":" in destination
        return [src for src in self.sources if (":" in src) == v6]

    def close(self) -> None:
        for process in self._processes:
            with contextlib.suppress(Exception):
                if process.stdin:
                    process.stdin.close()
            with contextlib.suppress(Exception):
                process.kill()
                process.wait(timeout=5)
        self._processes.clear()
        for ns in (self.client_ns, self.firewall_ns, self.server_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        # veth pairs vanish with their namespaces; wait until the names are gone.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
            if self.tag not in listed:
                break
            time.sleep(0.05)


@contextlib.contextmanager
def firewall_lab() -> Iterator[FirewallLab]:
    reason = lab_unavailable()
    if reason:
        pytest.skip(reason)
    with FirewallLab() as lab:
        yield lab
