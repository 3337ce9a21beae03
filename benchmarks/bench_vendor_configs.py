"""Parse-and-check time of big generated firewall configurations, as ratios in the same run.

For Cisco IOS, PAN-OS (set and XML), FortiGate, pfSense, Windows (netsh), a plain
allow-list, iptables (one rule per range) and nftables (a named set), a configuration is
generated with N address objects in the group the SMTP permit uses, and N/10 unrelated rules
before it. Two ratios are printed per vendor:

* against a baseline that only splits the same text into words (XML: ElementTree parses it):
  what the model costs over reading the bytes;
* the time for 2N against the time for N (target: at most 3.0, i.e. no quadratic blow-up; the
  script exits 1 when a vendor exceeds it).

    python benchmarks/bench_vendor_configs.py             # N = 4000
    python benchmarks/bench_vendor_configs.py --objects 20000 --runs 3
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
import time
import xml.etree.ElementTree as ET  # baseline only: the text is generated here, not untrusted
from collections.abc import Callable

from mailflow_doctor.firewall.evaluate import check_ranges
from mailflow_doctor.firewall.registry import FirewallParser, ParseOptions, parsers

EOP = ["40.92.0.0/15", "40.107.0.0/16", "52.100.0.0/14", "104.47.0.0/17"]
TARGET = 3.0  # linear work doubles; quadratic would quadruple (GC adds a little)


def _nets(count: int) -> list[ipaddress.IPv4Network]:
    # /28 blocks spread over 100.64.0.0/10: distinct, never adjacent to EOP ranges
    base = int(ipaddress.IPv4Address("100.64.0.0"))
    return [ipaddress.IPv4Network((base + i * 32, 28)) for i in range(count)]


def ios(n: int) -> str:
    lines = ["object-group network BIG"]
    lines += [f" {net.network_address} {net.netmask}" for net in _nets(n)]
    lines += ["ip access-list extended IN"]
    lines += [f" deny tcp {net.network_address} 0.0.0.15 any eq 443" for net in _nets(n // 10)]
    lines += [" permit tcp object-group BIG host 192.0.2.25 eq smtp", " deny ip any any"]
    return "\n".join(lines) + "\n"


def panos_set(n: int) -> str:
    lines = [f"set address a{i} ip-netmask {net}" for i, net in enumerate(_nets(n))]
    lines.append(f"set address-group BIG static [ {' '.join(f'a{i}' for i in range(n))} ]")
    for i, net in enumerate(_nets(n // 10)):
        p = f"set rulebase security rules r{i}"
        lines += [f"{p} source {net}", f"{p} destination any", f"{p} service tcp-443"]
        lines += [f"{p} application any", f"{p} action deny"]
    p = "set rulebase security rules smtp"
    lines += [f"{p} source BIG", f"{p} destination 192.0.2.25", f"{p} service tcp-25"]
    lines += [f"{p} application any", f"{p} action allow"]
    return "\n".join(lines) + "\n"


def panos_xml(n: int) -> str:
    addresses = "".join(
        f'<entry name="a{i}"><ip-netmask>{net}</ip-netmask></entry>\n'
        for i, net in enumerate(_nets(n))
    )
    members = "".join(f"<member>a{i}</member>" for i in range(n))
    rules = "".join(
        f'<entry name="r{i}"><source><member>{net}</member></source>'
        "<destination><member>any</member></destination><service><member>any</member>"
        "</service><application><member>ssl</member></application><action>deny</action>"
        "</entry>\n"
        for i, net in enumerate(_nets(n // 10))
    )
    rules += (
        '<entry name="smtp"><source><member>BIG</member></source><destination><member>'
        "192.0.2.25</member></destination><service><member>any</member></service>"
        "<application><member>any</member></application><action>allow</action></entry>\n"
    )
    return (
        '<config><devices><entry name="d"><vsys><entry name="vsys1">\n'
        f"<address>\n{addresses}</address>\n"
        f'<address-group><entry name="BIG"><static>{members}</static></entry></address-group>\n'
        f"<rulebase><security><rules>\n{rules}</rules></security></rulebase>\n"
        "</entry></vsys></entry></devices></config>\n"
    )


def fortigate(n: int) -> str:
    lines = ["config firewall address"]
    for i, net in enumerate(_nets(n)):
        lines += [f'    edit "a{i}"', f"        set subnet {net.network_address} {net.netmask}"]
        lines.append("    next")
    lines += ["end", "config firewall addrgrp", '    edit "BIG"']
    lines += ["        set member " + " ".join(f'"a{i}"' for i in range(n)), "    next", "end"]
    lines += ["config firewall policy"]
    for i in range(n // 10):
        lines += [f"    edit {i + 2}", f'        set srcaddr "a{i}"', '        set dstaddr "all"']
        lines += ['        set service "HTTPS"', "        set action deny", "    next"]
    lines += ["    edit 1", '        set srcaddr "BIG"', '        set dstaddr "all"']
    lines += ['        set service "SMTP"', "        set action accept", "    next", "end"]
    return "\n".join(lines) + "\n"


def pfsense(n: int) -> str:
    block = "".join(
        f"<rule><type>block</type><interface>wan</interface><protocol>tcp</protocol>"
        f"<source><address>{net}</address></source><destination><any/><port>443</port>"
        "</destination></rule>\n"
        for net in _nets(n // 10)
    )
    return (
        "<pfsense><aliases><alias><name>BIG</name><type>network</type><address>"
        + " ".join(str(net) for net in _nets(n))
        + "</address></alias></aliases>\n<filter>\n"
        + block
        + "<rule><type>pass</type><interface>wan</interface><protocol>tcp</protocol>"
        "<source><address>BIG</address></source><destination><address>192.0.2.25</address>"
        "<port>25</port></destination></rule>\n</filter></pfsense>\n"
    )


def windows(n: int) -> str:
    rules = []
    for i, net in enumerate(_nets(n // 10)):
        rules.append(
            f"Rule Name: r{i}\nEnabled: Yes\nDirection: In\nProfiles: Any\nRemoteIP: {net}\n"
            "Protocol: TCP\nLocalPort: 443\nAction: Block\n"
        )
    rules.append(
        "Rule Name: smtp\nEnabled: Yes\nDirection: In\nProfiles: Any\nRemoteIP: "
        + ",".join(str(net) for net in _nets(n))
        + "\nProtocol: TCP\nLocalPort: 25\nAction: Allow\n"
    )
    return "\n".join(rules)


def allowlist(n: int) -> str:
    return "\n".join(str(net) for net in _nets(n)) + "\n"


def iptables(n: int) -> str:
    lines = ["*filter", ":INPUT DROP [0:0]"]
    lines += [f"-A INPUT -s {net} -p tcp -m tcp --dport 443 -j DROP" for net in _nets(n // 10)]
    lines += [f"-A INPUT -s {net} -d 192.0.2.25/32 -p tcp --dport 25 -j ACCEPT" for net in _nets(n)]
    return "\n".join([*lines, "COMMIT"]) + "\n"


def nftables(n: int) -> str:
    elements = ", ".join(str(net) for net in _nets(n))
    lines = [
        "table inet filter {",
        f"\tset big {{ type ipv4_addr; flags interval; elements = {{ {elements} }} }}",
    ]
    lines += ["\tchain input {", "\t\ttype filter hook input priority 0; policy drop;"]
    lines += [f"\t\tip saddr {net} tcp dport 443 drop" for net in _nets(n // 10)]
    lines += ["\t\tip saddr @big ip daddr 192.0.2.25 tcp dport 25 accept", "\t}", "}"]
    return "\n".join(lines) + "\n"


VENDORS: dict[str, tuple[str, Callable[[int], str]]] = {
    "cisco-ios": ("cisco-ios", ios),
    "panos (set)": ("panos", panos_set),
    "panos (xml)": ("panos", panos_xml),
    "fortigate": ("fortigate", fortigate),
    "pfsense": ("pfsense", pfsense),
    "windows-firewall": ("windows-firewall", windows),
    "allowlist": ("allowlist", allowlist),
    "iptables": ("iptables", iptables),
    "nftables": ("nftables", nftables),
}


def best(runs: int, job: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        job()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=4000)
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    registry = parsers()
    failed = False
    print(f"{'vendor':<18} {'N':>7} {'model s':>9} {'baseline s':>11} {'x base':>8} {'2N/N':>6}")
    for label, (vendor, make) in VENDORS.items():
        parser = registry[vendor]
        timings = []
        for n in (args.objects, 2 * args.objects):
            text = make(n)

            def job(text: str = text, parser: FirewallParser = parser) -> object:
                policy = parser.parse(text, "bench", ParseOptions()).policy
                return check_ranges(policy, "192.0.2.25", EOP)

            def baseline(text: str = text) -> object:
                if text.startswith("<"):
                    return ET.fromstring(text)  # noqa: S314 (generated above, trusted)
                return [line.split() for line in text.splitlines()]

            timings.append((best(args.runs, job), best(args.runs, baseline)))
        (model, base), (model2, _) = timings
        growth = model2 / model if model else 0.0
        failed |= growth > TARGET
        print(
            f"{label:<18} {args.objects:>7} {model:>9.3f} {base:>11.4f} "
            f"{model / base if base else 0:>8.1f} {growth:>6.2f}"
            + ("  <- above target" if growth > TARGET else "")
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
