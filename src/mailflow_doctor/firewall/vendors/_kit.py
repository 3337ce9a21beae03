"""Shared pieces for the vendor parsers: port names, safe XML with line numbers, remediation checks.

Every vendor's `remediate()` proposes lines, applies them to the configuration text and then
proves them: the patched text is parsed again and re-evaluated against the same destination,
port and published ranges. A proposal that does not close the gap is never returned silently.
"""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET  # only for types and TreeBuilder; parsing goes via defusedxml
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import defusedxml.ElementTree as DET

from mailflow_doctor.firewall.evaluate import (
    Evaluation,
    RangeCheck,
    check_ranges,
    effective_destination,
    evaluate,
)
from mailflow_doctor.firewall.model import Action, Chain, Policy, PortSet, Rule
from mailflow_doctor.firewall.registry import Remediation
from mailflow_doctor.knowledge.ipranges import AddressParseError, IPSet

# Well-known TCP/UDP port names as Cisco IOS/ASA, FortiOS and netsh spell them.
PORT_NAMES: dict[str, int] = {
    "bgp": 179,
    "biff": 512,
    "bootpc": 68,
    "bootps": 67,
    "chargen": 19,
    "cmd": 514,
    "daytime": 13,
    "discard": 9,
    "dnsix": 195,
    "domain": 53,
    "echo": 7,
    "exec": 512,
    "finger": 79,
    "ftp": 21,
    "ftp-data": 20,
    "gopher": 70,
    "hostname": 101,
    "https": 443,
    "http": 80,
    "ident": 113,
    "imap": 143,
    "imap4": 143,
    "irc": 194,
    "isakmp": 500,
    "klogin": 543,
    "kshell": 544,
    "ldap": 389,
    "ldaps": 636,
    "login": 513,
    "lpd": 515,
    "mobile-ip": 434,
    "nameserver": 42,
    "netbios-dgm": 138,
    "netbios-ns": 137,
    "netbios-ss": 139,
    "nntp": 119,
    "non500-isakmp": 4500,
    "ntp": 123,
    "pim-auto-rp": 496,
    "pop2": 109,
    "pop3": 110,
    "pop3s": 995,
    "rip": 520,
    "smtp": 25,
    "smtps": 465,
    "snmp": 161,
    "snmptrap": 162,
    "ssh": 22,
    "submission": 587,
    "sunrpc": 111,
    "syslog": 514,
    "tacacs": 49,
    "talk": 517,
    "telnet": 23,
    "tftp": 69,
    "time": 37,
    "uucp": 540,
    "who": 513,
    "whois": 43,
    "www": 80,
    "xdmcp": 177,
}


def port_number(text: str) -> int | None:
    """A port as a number or a well-known name; None when neither."""
    lowered = text.strip().lower()
    if lowered.isdigit():
        value = int(lowered)
        return value if 0 <= value <= 65535 else None
    return PORT_NAMES.get(lowered)


def port_ranges(text: str, separators: str = ",") -> PortSet | None:
    """`25`, `25,587`, `1024-65535`, `any` -> PortSet (None for any); raises ValueError."""
    raw = text.strip()
    if raw.lower() in ("", "any", "*", "all"):
        return None
    ranges: list[tuple[int, int]] = []
    parts = [raw]
    for sep in separators:
        parts = [p for part in parts for p in part.split(sep)]
    for part in (p.strip() for p in parts):
        if not part:
            continue
        lo_text, dash, hi_text = part.partition("-")
        lo = port_number(lo_text)
        hi = port_number(hi_text) if dash else lo
        if lo is None or hi is None:
            raise ValueError(f"not a port or port range: {part!r}")
        ranges.append((min(lo, hi), max(lo, hi)))
    if not ranges:
        raise ValueError(f"no ports in {text!r}")
    return PortSet.of(*ranges)


def union_all(sets: Iterable[IPSet]) -> IPSet:
    """The union of many sets in one sort (repeated `|` would be quadratic on big groups)."""
    v4: list[tuple[int, int]] = []
    v6: list[tuple[int, int]] = []
    for item in sets:
        v4.extend(item.v4)
        v6.extend(item.v6)
    return IPSet(tuple(v4), tuple(v6)) | IPSet()


def family_universe(family: int) -> IPSet:
    return IPSet.all_v4() if family == 4 else IPSet.all_v6()


def try_parse_set(text: str) -> IPSet | None:
    """An address, CIDR, `addr/mask` or `first-last` range; None when the text is none of them."""
    raw = text.strip()
    if not raw:
        return None
    try:
        if "/" in raw and raw.count("/") == 1:
            addr, _, mask = raw.partition("/")
            if "." in mask:  # 10.0.0.0/255.0.0.0 (PowerShell, FortiOS)
                return IPSet.from_networks(
                    [ipaddress.ip_network(f"{addr.strip()}/{mask.strip()}", strict=False)]
                )
        return IPSet.parse(raw)
    except (AddressParseError, ValueError):
        return None


# ---- XML with line numbers -------------------------------------------------------------------

LINE_ATTR = "__mfd_line"


class _LineBuilder(ET.TreeBuilder):
    """A TreeBuilder that stamps each element with the source line it starts on."""

    def __init__(self) -> None:
        super().__init__()
        self.owner: Any = None

    def start(self, tag: Any, attrs: Any) -> ET.Element:
        element = super().start(tag, attrs)
        expat = getattr(self.owner, "parser", None)
        line = getattr(expat, "CurrentLineNumber", 0)
        element.set(LINE_ATTR, str(line))
        return element


def parse_xml(text: str) -> ET.Element:
    """Parse untrusted XML (no entities, no external references) keeping line numbers."""
    builder = _LineBuilder()
    parser = DET.XMLParser(target=builder)
    builder.owner = parser
    parser.feed(text)
    root: ET.Element = parser.close()
    return root


def xml_line(element: ET.Element | None) -> int | None:
    if element is None:
        return None
    value = element.get(LINE_ATTR)
    return int(value) if value and value.isdigit() else None


def xml_text(element: ET.Element | None, path: str, default: str = "") -> str:
    if element is None:
        return default
    found = element.find(path)
    if found is None or found.text is None:
        return default
    return found.text.strip()


# ---- rules and remediation -------------------------------------------------------------------


def rule_applies(rule: Rule, policy: Policy, destination: str, port: int) -> bool:
    """Does the rule match TCP `destination:port`, ignoring the source (no side effects)?"""
    if not rule.enabled or rule.matches_nothing_reason:
        return False
    if destination not in rule.destinations or not rule.matches_protocol("tcp"):
        return False
    if rule.dst_ports is not None and port not in rule.dst_ports:
        return False
    if rule.src_ports is not None and not (49152 in rule.src_ports and 65535 in rule.src_ports):
        return False
    inbound = policy.inbound_interfaces
    return not (
        rule.in_interfaces is not None and inbound is not None and not rule.in_interfaces & inbound
    )


@dataclass(frozen=True)
class GapContext:
    """What a remediation must fix, worked out once from a RangeCheck."""

    policy: Policy
    check: RangeCheck
    destination: str  # as the rules see it (after NAT for post-NAT vendors)
    asked_destination: str
    port: int  # as the rules see it
    missing: IPSet
    published: tuple[str, ...]
    asked_port: int = 25

    def entry_rules(self) -> list[tuple[Chain, int, Rule]]:
        found: list[tuple[Chain, int, Rule]] = []
        for name in self.policy.entries:
            chain = self.policy.chains.get(name)
            if chain is None:
                continue
            found.extend((chain, i, rule) for i, rule in enumerate(chain.rules))
        return found

    def smtp_permits(self) -> list[Rule]:
        """Permit rules that match TCP to the destination and port, in order."""
        return [
            rule
            for _, _, rule in self.entry_rules()
            if rule.action == Action.PERMIT
            and rule_applies(rule, self.policy, self.destination, self.port)
        ]

    def explicit_blockers(self) -> list[Rule]:
        """Explicit deny/reject rules that decide part of the missing sources, in order."""
        blocking = [
            d
            for d in self.check.evaluation.decisions
            if not d.implicit
            and d.action in (Action.DENY, Action.REJECT)
            and d.sources.overlaps(self.missing)
        ]
        origins = {d.origin for d in blocking}
        return [rule for _, _, rule in self.entry_rules() if rule.origin in origins]

    def first_blocker(self) -> Rule | None:
        blockers = self.explicit_blockers()
        return blockers[0] if blockers else None

    def comes_before(self, first: Rule, second: Rule | None) -> bool:
        if second is None:
            return True
        order = [rule.origin for _, _, rule in self.entry_rules()]
        try:
            return order.index(first.origin) < order.index(second.origin)
        except ValueError:
            return False


def gap_context(policy: Policy, check: RangeCheck) -> GapContext:
    evaluation = check.evaluation
    # The rules see the port after NAT too (a port forward 2525 -> 25 is checked as 25).
    _, rule_port, _ = effective_destination(
        policy, evaluation.destination, evaluation.port, evaluation.protocol
    )
    return GapContext(
        policy=policy,
        check=check,
        destination=evaluation.effective_destination,
        asked_destination=evaluation.destination,
        port=rule_port,
        asked_port=evaluation.port,
        missing=check.missing,
        published=tuple(v.range for v in check.verdicts),
    )


def recheck(policy: Policy, gap: GapContext) -> RangeCheck:
    return check_ranges(policy, gap.asked_destination, gap.published, port=gap.asked_port)


def still_missing(
    reparse: Callable[[str], Policy | None], patched: str, gap: GapContext
) -> IPSet | None:
    """Parse and evaluate the patched text again; the sources still blocked (None: unparsable)."""
    try:
        policy = reparse(patched)
        if policy is None:
            return None
        return recheck(policy, gap).missing
    except Exception:  # a proposal that breaks parsing is simply not offered
        return None


def first_closing(
    reparse: Callable[[str], Policy | None],
    gap: GapContext,
    candidates: Iterable[Callable[[], tuple[tuple[str, ...], str, str] | None]],
) -> tuple[tuple[str, ...], str, str, tuple[str, ...]] | None:
    """Try candidate fixes in order of preference; return the first that closes the gap.

    Each candidate returns (lines, patched_text, explanation) or None when it does not apply.
    When none closes the gap, the last applicable one is returned with a warning.
    """
    fallback: tuple[tuple[str, ...], str, str, tuple[str, ...]] | None = None
    for make in candidates:
        proposal = make()
        if proposal is None:
            continue
        lines, patched, explanation = proposal
        left = still_missing(reparse, patched, gap)
        if left is not None and not left:
            return lines, patched, explanation, ()
        warning = (
            "re-checking the patched configuration still finds blocked sources: "
            + ", ".join(left.cidrs()[:6])
            if left
            else "the patched configuration could not be re-parsed"
        )
        fallback = (lines, patched, explanation, (warning,))
    return fallback


def insert_after_line(text: str, line: int, new_lines: Iterable[str]) -> str:
    """Insert lines after 1-based `line` (0 = at the top), keeping the file's line endings."""
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith(("\n", "\r")):
        lines[-1] += newline
    block = [f"{item}{newline}" for item in new_lines]
    index = max(0, min(line, len(lines)))
    return "".join(lines[:index] + block + lines[index:])


def v4_mask(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    return str(network.netmask)


def v4_wildcard(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    return str(network.hostmask)


Found = tuple[tuple[str, ...], str, str, tuple[str, ...]] | None


def finish(found: Found, cleanup: tuple[str, ...]) -> Remediation | None:
    """The Remediation for a verified proposal, with the optional stale-object cleanup."""
    if found is None:
        return None
    lines, patched, explanation, warnings = found
    return Remediation(lines, explanation, patched, warnings, cleanup)


def cleanup_only(cleanup: tuple[str, ...]) -> Remediation | None:
    """Nothing is missing; offer only the removal of ranges Exchange Online no longer uses."""
    if not cleanup:
        return None
    return Remediation(
        (),
        "Every published range is permitted. Optionally remove the ranges Exchange Online no "
        "longer uses (lines below).",
        None,
        (),
        cleanup,
    )


def is_stale(addresses: IPSet, stale: IPSet) -> bool:
    return bool(addresses) and addresses.issubset(stale)


InsertRules = Callable[[str, Policy, Evaluation, IPSet], tuple[str, list[str]]]


def insert_until_closed(
    text: str,
    missing: IPSet,
    reparse: Callable[[str], Policy],
    destination: str,
    port: int,
    insert: InsertRules,
    rounds: int = 6,
) -> tuple[str, list[str]]:
    """Insert permit rules, re-parse and re-evaluate, until nothing of `missing` is blocked.

    For chain-based firewalls (iptables, nftables) an accept added to one chain can move the
    block to the next base chain, so one round is not always enough. Progress means a different
    set of blocking rules, not only a smaller gap; a round that changes nothing is undone.
    Returns the patched text and the commands that produced it.
    """
    patched = text
    commands: list[str] = []
    previous: tuple[object, ...] | None = None
    before = (text, 0)
    for _ in range(rounds):
        policy = reparse(patched)
        current = evaluate(policy, destination, port)
        still = missing - current.permitted()
        if not still:
            break
        blockers = tuple(
            (d.chain, d.origin, d.sources & still)
            for d in current.decisions
            if d.action != Action.PERMIT and d.sources.overlaps(still)
        )
        if previous is not None and blockers == previous:
            patched, kept = before  # that round did not help: undo it
            del commands[kept:]
            break
        previous = blockers
        before = (patched, len(commands))
        patched, added = insert(patched, policy, current, still)
        if not added:
            break
        commands.extend(added)
    return patched, commands


# Which packet of a new inbound connection stateless rules are being judged for: the first
# SYN (conntrack state NEW) or the ACKs and data after it (ESTABLISHED).
_FOLLOW_UP: ContextVar[bool] = ContextVar("mailflow_doctor_follow_up_packet", default=False)

STATE_SENSITIVE_WORDS = ("--state", "--ctstate", "--syn", "--tcp-flags", "ct state", "flags")


@contextmanager
def judging_follow_up_packets() -> Iterator[None]:
    """Parse as the packets after the SYN see the rules (ESTABLISHED, flags ACK)."""
    token = _FOLLOW_UP.set(True)
    try:
        yield
    finally:
        _FOLLOW_UP.reset(token)


def judging_follow_up() -> bool:
    return _FOLLOW_UP.get()


def packet_state() -> str:
    """The conntrack state of the packet being judged: NEW or ESTABLISHED."""
    return "ESTABLISHED" if _FOLLOW_UP.get() else "NEW"


def packet_flags() -> frozenset[str]:
    """The TCP flags of the packet being judged: SYN, or ACK for the packets after it."""
    return frozenset({"ACK"}) if _FOLLOW_UP.get() else frozenset({"SYN"})


def mentions_packet_state(text: str) -> bool:
    """Does the rule text depend on conntrack state or TCP flags (so follow-ups may differ)?"""
    return any(word in text for word in STATE_SENSITIVE_WORDS)


def reject_action(tcp_reset: bool) -> Action:
    """What a reject does to the packet being judged.

    For the first SYN every reject refuses. For the packets after it, an ICMP error is a soft
    error to an established TCP connection (the stack ignores it), so the client only waits and
    times out, as with a drop; a TCP reset does end the session.
    """
    return Action.REJECT if tcp_reset or not _FOLLOW_UP.get() else Action.DENY
