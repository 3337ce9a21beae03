"""A real nftables firewall in network namespaces: each verdict is classified correctly.

Two namespaces joined by a veth pair; the server side runs aiosmtpd on 192.0.2.1:25 behind an
nftables ruleset that treats each client source differently. The `probe` command runs in the
client namespace, bound with --source to each documentation address. Namespaces are always
deleted. No traffic leaves the namespaces.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.netns

SERVER = "192.0.2.1"
RULESET = """
table inet mfd_probe_test {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport 25 ip saddr 198.51.100.10 reject with tcp reset
    tcp dport 25 ip saddr 198.51.100.11 reject with icmp type port-unreachable
    tcp dport 25 ip saddr 198.51.100.12 reject with icmp type admin-prohibited
    tcp dport 25 ip saddr 203.0.113.0/24 drop
  }
}
"""
SOURCES = ["192.0.2.2", "198.51.100.10", "198.51.100.11", "198.51.100.12", "203.0.113.10"]


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=30)


@pytest.fixture(scope="module")
def namespaces() -> Iterator[tuple[str, str]]:
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces")
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    tag = f"{os.getpid() % 100000}"
    srv, cli = f"mfdsrv{tag}", f"mfdcli{tag}"
    veth_srv, veth_cli = f"mfds{tag}", f"mfdc{tag}"
    server: subprocess.Popen[bytes] | None = None
    try:
        made = _run("ip", "netns", "add", srv, check=False)
        if made.returncode != 0:
            pytest.skip(f"cannot create a network namespace: {made.stderr.strip()}")
        _run("ip", "netns", "add", cli)
        _run("ip", "link", "add", veth_srv, "type", "veth", "peer", "name", veth_cli)
        _run("ip", "link", "set", veth_srv, "netns", srv)
        _run("ip", "link", "set", veth_cli, "netns", cli)
        _run("ip", "-n", srv, "addr", "add", f"{SERVER}/24", "dev", veth_srv)
        _run("ip", "-n", cli, "addr", "add", "192.0.2.2/24", "dev", veth_cli)
        for address in SOURCES[1:]:
            _run("ip", "-n", cli, "addr", "add", f"{address}/32", "dev", veth_cli)
        for ns, dev in ((srv, veth_srv), (cli, veth_cli)):
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("ip", "-n", ns, "link", "set", dev, "up")
        for prefix in ("198.51.100.0/24", "203.0.113.0/24"):
            _run("ip", "-n", srv, "route", "add", prefix, "dev", veth_srv)
        loaded = subprocess.run(
            ["ip", "netns", "exec", srv, "nft", "-f", "-"],
            input=RULESET,
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        if loaded.returncode != 0:
            pytest.skip(f"nftables not usable here: {loaded.stderr.strip()}")
        server = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                srv,
                sys.executable,
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                f"{SERVER}:25",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            listening = _run("ip", "netns", "exec", srv, "ss", "-Hltn", "sport = :25")
            if SERVER in listening.stdout:
                break
            time.sleep(0.1)
        else:
            pytest.fail("aiosmtpd did not start in the server namespace")
        yield srv, cli
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        _run("ip", "netns", "del", cli, check=False)
        _run("ip", "netns", "del", srv, check=False)


def test_each_firewall_verdict_is_classified(namespaces: tuple[str, str]) -> None:
    _, cli = namespaces
    program = str(Path(sys.executable).parent / "mailflow-doctor")
    processes = {
        source: subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                cli,
                program,
                "probe",
                SERVER,
                "--source",
                source,
                "--resolver",
                f"{SERVER}:53",
                "--timeout",
                "1.5",
                "--format",
                "json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for source in SOURCES
    }
    results = {}
    for source, process in processes.items():
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 1, stderr
        results[source] = json.loads(stdout)

    def outcome(source: str) -> tuple[str, list[str]]:
        doc = results[source]
        (address,) = doc["addresses"]
        return address["connect"], [f["id"] for f in doc["findings"]]

    assert outcome("192.0.2.2") == ("connected", ["tls.starttls_missing"])
    assert outcome("198.51.100.10") == ("refused", ["smtp.connection_refused"])
    assert outcome("198.51.100.11") == ("refused", ["smtp.connection_refused"])
    assert outcome("198.51.100.12") == ("unreachable", ["smtp.host_unreachable"])
    assert outcome("203.0.113.10") == ("timeout", ["smtp.connection_timeout"])
    refused = results["198.51.100.10"]["findings"][0]
    assert refused["data"]["exchange_online_code"] == "4.4.316"
    assert results["203.0.113.10"]["findings"][0]["data"]["exchange_online_code"] == "4.4.315"
    assert results["203.0.113.10"]["addresses"][0]["ms"] >= 1400
    assert results["198.51.100.10"]["vantage"] == (
        "probed from 198.51.100.10, not from Exchange Online's addresses"
    )
    assert results["192.0.2.2"]["addresses"][0]["banner"].startswith("220 ")
