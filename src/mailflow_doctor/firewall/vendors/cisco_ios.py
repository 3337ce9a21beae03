"""Cisco IOS / IOS-XE access lists: named and numbered, wildcards, object-groups, bindings, NAT.

Which address do the rules name? Cisco's "NAT Order of Operation" for traffic going from
outside to inside lists "check input access list" before "NAT outside to inside (global to
local translation)". So the ACL applied inbound on the outside interface is checked before NAT
and names the public (global) address: DestinationView.PRE_NAT (research §2.2 agrees; it marks
this as standard IOS behaviour; the order table is reproduced in Cisco Press's "Cisco Router
Firewall Security", table 12-1: step 3 "check the input access list", step 7 "NAT
outside-to-inside"). An ACL applied outbound on the inside interface would see the
inside address; only the inbound ACL on the internet-facing interface is modelled.

Traffic that matches no entry hits the implicit `deny ip any any`, which IOS does not log (only
entries with the `log` keyword log). The router may answer with ICMP unreachables unless the
interface says `no ip unreachables`; the sender still sees no TCP answer, so a deny is modelled
as a silent drop.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from mailflow_doctor.firewall.evaluate import RangeCheck
from mailflow_doctor.firewall.model import (
    ANY_PROTOCOL,
    Action,
    Chain,
    DestinationNat,
    DestinationView,
    Origin,
    Policy,
    PortSet,
    Rule,
)
from mailflow_doctor.firewall.registry import (
    FirewallParseError,
    ParseOptions,
    ParseResult,
    Remediation,
    register_parser,
)
from mailflow_doctor.firewall.vendors._kit import (
    GapContext,
    cleanup_only,
    finish,
    first_closing,
    gap_context,
    insert_after_line,
    is_stale,
    port_number,
    union_all,
)
from mailflow_doctor.knowledge.ipranges import AddressParseError, IPSet

MAX_TOKENS = 200
V4_ALL = 0xFFFFFFFF
_ACE_START = re.compile(r"^(\d+\s+)?(permit|deny)\s+(ip|ipv6|tcp|udp|icmp|\d+)\s", re.I)
_SHOW_SUFFIX = re.compile(r"\s*\((\d+ match(es)?|hitcnt=\d+)[^)]*\)\s*$", re.I)
_OUTSIDE_NAMES = re.compile(r"outside|wan|internet|isp|dialer|untrust|external|uplink", re.I)
_ASA_MARKERS = re.compile(
    r"^(ASA Version|access-list \S+ extended |access-group \S+ (in|out) interface|"
    r" nameif |object network |same-security-traffic)",
    re.M,
)

# Flags present on the first packet of a new TCP connection.
_SYN_FLAGS = frozenset({"syn"})
_TCP_FLAGS = ("ack", "fin", "psh", "rst", "syn", "urg")


class _LineError(ValueError):
    pass


@dataclass
class _Spec:
    """One address field of an entry: what it names and how it was written."""

    tokens: tuple[str, ...]
    group: str | None = None
    literal: IPSet | None = None


@dataclass
class _Service:
    protocol: str
    dst_ports: PortSet | None
    src_ports: PortSet | None


@dataclass
class _Ace:
    seq: int
    line: int
    text: str
    action: str
    protocol: str
    service_group: str | None
    src: _Spec
    dst: _Spec
    src_ports: PortSet | None
    dst_ports: PortSet | None
    dst_port_tokens: tuple[str, ...]
    logs: bool
    no_syn_reason: str = ""


@dataclass
class _Acl:
    name: str
    family: int  # 4 or 6
    standard: bool
    numbered: bool
    header_line: int | None = None
    aces: list[_Ace] = field(default_factory=list)
    last_line: int = 0

    def next_seq(self) -> int:
        return max((a.seq for a in self.aces), default=0) + 10

    def ordered(self) -> list[_Ace]:
        return sorted(self.aces, key=lambda a: a.seq)


@dataclass
class _Group:
    name: str
    kind: str  # "network" or "service"
    line: int
    last_line: int
    items: list[tuple[int, list[str]]] = field(default_factory=list)


@dataclass
class _Interface:
    name: str
    line: int
    acl_in: str | None = None
    acl6_in: str | None = None
    acl_out: str | None = None
    nat_outside: bool = False
    nat_inside: bool = False
    description: str = ""
    address: IPSet | None = None


def _wildcard(address: str, wildcard: str) -> IPSet:
    return IPSet.from_wildcard(address, wildcard)


def _is_v4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def _acl_kind(name: str) -> tuple[bool, bool] | None:
    """(numbered, standard) for a numbered ACL, None when the number is not an IP ACL."""
    if not name.isdigit():
        return None
    number = int(name)
    if 1 <= number <= 99 or 1300 <= number <= 1999:
        return True, True
    if 100 <= number <= 199 or 2000 <= number <= 2699:
        return True, False
    return None


class _Parser:
    def __init__(self, text: str, path: str) -> None:
        self.text = text
        self.path = path
        self.issues: list[tuple[int | None, str]] = []
        self.notes: list[str] = []
        self.acls: dict[str, _Acl] = {}
        self.groups: dict[str, _Group] = {}
        self.interfaces: dict[str, _Interface] = {}
        self.nats: list[tuple[int, str, list[str]]] = []
        self.current_line = 0

    # ---- structure ---------------------------------------------------------------------------
    def run(self) -> None:
        block: tuple[str, str] | None = None
        for number, raw in enumerate(self.text.splitlines(), start=1):
            line = raw.rstrip()
            if len(line) > 4000:
                self.issues.append((number, "line longer than 4000 characters skipped"))
                continue
            stripped = line.strip()
            if not stripped or stripped.startswith("!"):
                continue
            indented = line[:1].isspace()
            words = stripped.split()
            first = words[0].lower()
            if block is not None and (indented or self._continues(block, first, words)):
                self._in_block(block, number, stripped, words)
                continue
            block = self._top(number, stripped, words)

    def _continues(self, block: tuple[str, str], first: str, words: list[str]) -> bool:
        kind = block[0]
        if kind == "acl":
            return first in ("permit", "deny", "remark", "sequence", "evaluate") or (
                first.isdigit() and len(words) > 1 and words[1].lower() in ("permit", "deny")
            )
        if kind in ("network", "service"):
            return first in ("host", "range", "group-object", "description", "any") or (
                _is_v4(first) or ":" in first or first in ("tcp", "udp", "tcp-udp", "icmp")
            )
        return False

    def _top(self, number: int, stripped: str, words: list[str]) -> tuple[str, str] | None:
        lowered = [w.lower() for w in words]
        # `show access-lists` output: "Extended IP access list NAME" / "IPv6 access list NAME"
        if lowered[1:4] == ["ip", "access", "list"] and len(words) >= 5:
            if lowered[0] in ("extended", "standard"):
                return self._open_acl(words[4], 4, lowered[0] == "standard", number)
            return None
        if lowered[:3] == ["ipv6", "access", "list"] and len(words) >= 4:
            return self._open_acl(words[3], 6, False, number)
        if _ACE_START.match(stripped):
            # Bare entries pasted without their list header.
            family = 6 if re.search(r"\b[0-9a-f]*:[0-9a-f:]*(/\d+)?\b", stripped, re.I) else 4
            name = "pasted" if family == 4 else "pasted-ipv6"
            block = self._open_acl(name, family, False, number)
            acl = self.acls[name]
            self._entry(acl, number, stripped, words)
            return block
        if lowered[:2] == ["ip", "access-list"] and len(words) >= 4:
            if lowered[2] in ("extended", "standard"):
                return self._open_acl(words[3], 4, lowered[2] == "standard", number)
            if lowered[2] == "resequence" and len(words) >= 6:
                self._resequence(words[3], words[4], words[5], number)
                return None
            self.issues.append((number, f"unsupported access-list kind: {stripped[:80]}"))
            return None
        if lowered[:2] == ["ipv6", "access-list"] and len(words) >= 3:
            return self._open_acl(words[2], 6, False, number)
        if lowered[0] == "access-list" and len(words) >= 3:
            self._numbered(number, stripped, words)
            return None
        if lowered[0] == "object-group" and len(words) >= 3:
            kind = lowered[1]
            if kind not in ("network", "service"):
                self.issues.append((number, f"object-group {kind} is not supported"))
                return None
            self.groups[words[2]] = _Group(words[2], kind, number, number)
            return (kind, words[2])
        if lowered[0] == "interface" and len(words) >= 2:
            name = " ".join(words[1:])
            self.interfaces.setdefault(name, _Interface(name, number))
            return ("interface", name)
        if lowered[:4] == ["ip", "nat", "inside", "source"] and len(words) > 4:
            if lowered[4] == "static":
                self.nats.append((number, stripped, words[5:]))
            return None
        return None

    def _open_acl(self, name: str, family: int, standard: bool, number: int) -> tuple[str, str]:
        acl = self.acls.get(name)
        if acl is None:
            kind = _acl_kind(name)
            acl = _Acl(name, family, standard, kind is not None, number)
            self.acls[name] = acl
        acl.last_line = max(acl.last_line, number)
        return ("acl", name)

    def _resequence(self, name: str, start: str, step: str, number: int) -> None:
        acl = self.acls.get(name)
        if acl is None or not start.isdigit() or not step.isdigit():
            self.issues.append((number, f"cannot resequence access list {name}"))
            return
        for index, ace in enumerate(acl.ordered()):
            ace.seq = int(start) + index * int(step)

    def _numbered(self, number: int, stripped: str, words: list[str]) -> None:
        name = words[1]
        kind = _acl_kind(name)
        if kind is None:
            self.issues.append((number, f"access-list {name} is not an IPv4 ACL number"))
            return
        acl = self.acls.get(name)
        if acl is None:
            acl = _Acl(name, 4, kind[1], True, None)
            self.acls[name] = acl
        acl.last_line = max(acl.last_line, number)
        self._entry(acl, number, stripped, words[2:])

    def _in_block(
        self, block: tuple[str, str], number: int, stripped: str, words: list[str]
    ) -> None:
        kind, name = block
        if kind == "acl":
            acl = self.acls[name]
            acl.last_line = max(acl.last_line, number)
            self._entry(acl, number, stripped, words)
        elif kind in ("network", "service"):
            group = self.groups[name]
            group.last_line = number
            if words[0].lower() != "description":
                group.items.append((number, words))
        elif kind == "interface":
            self._interface_line(self.interfaces[name], number, words)

    def _interface_line(self, iface: _Interface, number: int, words: list[str]) -> None:
        lowered = [w.lower() for w in words]
        if lowered[:2] == ["ip", "access-group"] and len(words) >= 4 and lowered[3] == "in":
            iface.acl_in = words[2]
        elif lowered[:2] == ["ipv6", "traffic-filter"] and len(words) >= 4 and lowered[3] == "in":
            iface.acl6_in = words[2]
        elif lowered[:2] == ["ip", "access-group"] and len(words) >= 4 and lowered[3] == "out":
            iface.acl_out = words[2]
        elif lowered[:3] == ["ip", "nat", "outside"]:
            iface.nat_outside = True
        elif lowered[:3] == ["ip", "nat", "inside"]:
            iface.nat_inside = True
        elif lowered[0] == "description":
            iface.description = " ".join(words[1:])
        elif lowered[:2] == ["ip", "address"] and len(words) >= 4 and _is_v4(words[2]):
            try:
                iface.address = IPSet.parse(words[2])
            except AddressParseError:
                self.issues.append((number, f"bad interface address: {' '.join(words)}"))

    # ---- entries -----------------------------------------------------------------------------
    def _entry(self, acl: _Acl, number: int, stripped: str, words: list[str]) -> None:
        if len(words) > MAX_TOKENS:
            self.issues.append((number, "access-list entry with too many words skipped"))
            return
        self.current_line = number
        seq: int | None = None
        cleaned = _SHOW_SUFFIX.sub("", stripped)
        if cleaned != stripped:
            stripped, words = cleaned, cleaned.split()
        rest = list(words)
        if len(rest) > 2 and rest[-2].lower() == "sequence" and rest[-1].isdigit():
            seq, rest = int(rest[-1]), rest[:-2]  # IPv6 `show` output puts it last
        if seq is None and rest and rest[0].lower() == "sequence" and len(rest) > 1:
            if rest[1].isdigit():
                seq, rest = int(rest[1]), rest[2:]
        elif seq is None and rest and rest[0].isdigit():
            seq, rest = int(rest[0]), rest[1:]
        if not rest:
            return
        head = rest[0].lower()
        if head == "remark":
            return
        if head == "evaluate":
            self.notes.append(
                f"{self.path}:{number}: reflexive entry `{stripped}` only admits return traffic; "
                "a new SMTP connection never matches it"
            )
            return
        if head not in ("permit", "deny"):
            self.issues.append((number, f"unsupported access-list entry: {stripped[:80]}"))
            return
        try:
            ace = self._ace(acl, number, stripped, rest, seq)
        except (_LineError, AddressParseError, ValueError) as exc:
            self.issues.append((number, f"{exc}: {stripped[:80]}"))
            return
        if any(a.seq == ace.seq for a in acl.aces):
            self.issues.append((number, f"duplicate sequence number {ace.seq} in {acl.name}"))
            return
        acl.aces.append(ace)

    def _ace(self, acl: _Acl, number: int, text: str, words: list[str], seq: int | None) -> _Ace:
        tokens = list(words)
        action = tokens.pop(0).lower()
        if tokens and tokens[0].lower() == "dynamic":
            raise _LineError("dynamic (lock-and-key) entries are not supported")
        if acl.standard:
            src = self._address(acl, tokens, standard=True)
            protocol, service, dst = ANY_PROTOCOL, None, _Spec(("any",))
            src_ports = dst_ports = None
            dst_port_tokens: tuple[str, ...] = ()
        else:
            if not tokens:
                raise _LineError("entry without a protocol")
            proto_word = tokens.pop(0).lower()
            service = None
            if proto_word == "object-group":
                if not tokens:
                    raise _LineError("object-group without a name")
                service = tokens.pop(0)
                protocol = ANY_PROTOCOL
            else:
                protocol = _protocol(proto_word)
            src = self._address(acl, tokens)
            src_ports, _ = self._ports(protocol, tokens)
            dst = self._address(acl, tokens)
            dst_ports, dst_port_tokens = self._ports(protocol, tokens)
        logs, reason = self._options(tokens, protocol)
        return _Ace(
            seq if seq is not None else acl.next_seq(),
            number,
            text,
            action,
            protocol,
            service,
            src,
            dst,
            src_ports,
            dst_ports,
            dst_port_tokens,
            logs,
            reason,
        )

    def _address(self, acl: _Acl, tokens: list[str], standard: bool = False) -> _Spec:
        if not tokens:
            raise _LineError("missing address")
        first = tokens.pop(0)
        lowered = first.lower()
        if lowered == "any":
            universe = IPSet.all_v4() if acl.family == 4 else IPSet.all_v6()
            return _Spec(("any",), literal=universe)
        if lowered == "host":
            if not tokens:
                raise _LineError("host without an address")
            address = tokens.pop(0)
            return _Spec(("host", address), literal=IPSet.parse(address))
        if lowered in ("object-group", "addrgroup"):
            if not tokens:
                raise _LineError("object-group without a name")
            name = tokens.pop(0)
            return _Spec((first, name), group=name)
        if acl.family == 6 or ":" in first:
            return _Spec((first,), literal=IPSet.parse(first))
        if "/" in first:
            return _Spec((first,), literal=IPSet.parse(first))
        if not _is_v4(first):
            raise _LineError(f"not an address: {first!r}")
        if tokens and _is_v4(tokens[0]):
            wildcard = tokens.pop(0)
            value = int(ipaddress.IPv4Address(wildcard))
            inverse = value ^ V4_ALL
            looks_like_mask = value not in (0, V4_ALL) and inverse & (inverse + 1) == 0
            message = (
                f"{first} {wildcard} is a subnet mask where IOS expects a wildcard: IOS reads "
                f"it as scattered addresses (you probably meant {first} "
                f"{ipaddress.IPv4Address(inverse)})"
            )
            try:
                spec = _Spec((first, wildcard), literal=_wildcard(first, wildcard))
            except AddressParseError:
                if looks_like_mask:
                    raise _LineError(message + "; entry not evaluated") from None
                raise
            if looks_like_mask:
                self.issues.append((self.current_line, message + "; evaluated as IOS reads it"))
            return spec
        if standard:
            return _Spec((first,), literal=IPSet.parse(first))
        raise _LineError(f"address {first} without a wildcard mask")

    def _ports(self, protocol: str, tokens: list[str]) -> tuple[PortSet | None, tuple[str, ...]]:
        if protocol not in ("tcp", "udp", ANY_PROTOCOL) or not tokens:
            return None, ()
        op = tokens[0].lower()
        if op not in ("eq", "neq", "lt", "gt", "range"):
            return None, ()
        tokens.pop(0)
        used = [op]
        values: list[int] = []
        want = 2 if op == "range" else 1
        while tokens and (len(values) < want or (op == "eq" and len(values) < 10)):
            value = port_number(tokens[0])
            if value is None:
                break
            used.append(tokens.pop(0))
            values.append(value)
        if len(values) < want:
            raise _LineError(f"port operator {op} without a port")
        if op == "eq":
            ports = PortSet.of(*((v, v) for v in values))
        elif op == "neq":
            ports = PortSet.single(values[0]).negated()
        elif op == "lt":
            ports = PortSet.of((0, max(values[0] - 1, 0))) if values[0] > 0 else PortSet(())
        elif op == "gt":
            ports = PortSet.of((values[0] + 1, 65535)) if values[0] < 65535 else PortSet(())
        else:
            ports = PortSet.of((min(values), max(values)))
        return ports, tuple(used)

    def _options(self, tokens: list[str], protocol: str) -> tuple[bool, str]:
        logs = False
        reason = ""
        lowered = [t.lower() for t in tokens]
        if any(t in ("log", "log-input") for t in lowered):
            logs = True
        if "time-range" in lowered:
            at = lowered.index("time-range")
            name = tokens[at + 1] if at + 1 < len(tokens) else "?"
            self.notes.append(
                f"{self.path}:{self.current_line}: the entry uses time-range {name}; it is "
                "evaluated as if the time range were active"
            )
        if "established" in lowered:
            reason = (
                "matches only established TCP (ACK or RST set); the SYN that opens an SMTP "
                "connection never matches it"
            )
        elif "fragments" in lowered:
            reason = "matches only non-initial fragments, never a TCP SYN"
        else:
            reason = _flag_reason(lowered)
        return logs, reason

    # ---- groups ------------------------------------------------------------------------------
    def network_group(self, name: str, depth: int = 0) -> IPSet:
        group = self.groups.get(name)
        if group is None or group.kind != "network":
            raise _LineError(f"object-group network {name} is not defined")
        if depth > 16:
            raise _LineError(f"object-group {name} nests too deeply (a loop?)")
        parts: list[IPSet] = []
        for number, words in group.items:
            try:
                parts.append(self.network_item(words, depth))
            except (AddressParseError, ValueError):
                self.issues.append((number, f"bad object-group entry: {' '.join(words)[:80]}"))
        return union_all(parts)

    def network_item(self, words: list[str], depth: int = 0) -> IPSet:
        """One `object-group network` entry (raises for entries it cannot read)."""
        head = words[0].lower()
        if head == "group-object" and len(words) > 1:
            return self.network_group(words[1], depth + 1)
        if head == "host" and len(words) > 1:
            return IPSet.parse(words[1])
        if head == "range" and len(words) > 2:
            return IPSet.from_range(words[1], words[2])
        if head == "any":
            return IPSet.universe()
        if len(words) >= 2 and words[1].startswith("/"):
            return IPSet.parse(words[0] + words[1])
        if len(words) >= 2:
            return IPSet.parse(f"{words[0]} {words[1]}")  # address + MASK
        return IPSet.parse(words[0])

    def service_group(self, name: str, depth: int = 0) -> list[_Service]:
        group = self.groups.get(name)
        if group is None or group.kind != "service":
            raise _LineError(f"object-group service {name} is not defined")
        if depth > 16:
            raise _LineError(f"object-group {name} nests too deeply (a loop?)")
        services: list[_Service] = []
        for number, words in group.items:
            head = words[0].lower()
            if head == "group-object" and len(words) > 1:
                services.extend(self.service_group(words[1], depth + 1))
                continue
            protocols = ("tcp", "udp") if head == "tcp-udp" else (_protocol(head),)
            tokens = list(words[1:])
            src_ports = None
            try:
                if tokens and tokens[0].lower() == "source":
                    tokens.pop(0)
                    src_ports, _ = self._ports("tcp", tokens)
                if tokens and port_number(tokens[0]) is not None:
                    tokens.insert(0, "eq")
                dst_ports, _ = self._ports("tcp", tokens)
            except _LineError:
                self.issues.append((number, f"bad service entry: {' '.join(words)[:80]}"))
                continue
            for protocol in protocols:
                services.append(_Service(protocol, dst_ports, src_ports))
        return services


def _protocol(token: str) -> str:
    lowered = token.lower()
    if lowered in ("ip", "ipv6"):
        return ANY_PROTOCOL
    return {"6": "tcp", "17": "udp", "1": "icmp"}.get(lowered, lowered)


def _flag_reason(lowered: list[str]) -> str:
    """Why TCP flag conditions exclude a SYN, or '' when a SYN can match."""
    plain = [t for t in lowered if t in _TCP_FLAGS]
    if any(t not in _SYN_FLAGS for t in plain):
        return f"matches only TCP segments with {', '.join(plain)} set, never the opening SYN"
    for mode in ("match-all", "match-any"):
        if mode not in lowered:
            continue
        start = lowered.index(mode) + 1
        wanted = [t for t in lowered[start:] if t[:1] in "+-" and t[1:] in _TCP_FLAGS]
        results = [(t[0] == "+") == (t[1:] in _SYN_FLAGS) for t in wanted]
        ok = all(results) if mode == "match-all" else any(results)
        if wanted and not ok:
            return f"its TCP flag condition ({mode} {' '.join(wanted)}) excludes the opening SYN"
    return ""


def _pick_interface(parser: _Parser, options: ParseOptions) -> tuple[_Interface | None, str]:
    if options.interface:
        iface = parser.interfaces.get(options.interface)
        if iface is None:
            raise FirewallParseError(
                f"{parser.path}: interface {options.interface!r} is not in the configuration"
            )
        return iface, f"interface {iface.name} (chosen with --interface)"
    bound = [i for i in parser.interfaces.values() if i.acl_in or i.acl6_in]
    if not bound:
        return None, ""
    for reason, test in (
        ("it has `ip nat outside`", lambda i: i.nat_outside),
        (
            "its name or description says it faces the internet",
            lambda i: bool(_OUTSIDE_NAMES.search(f"{i.name} {i.description}")),
        ),
    ):
        hits = [i for i in bound if test(i)]
        if hits:
            return hits[0], f"interface {hits[0].name} ({reason})"
    return bound[0], f"interface {bound[0].name} (the first with an inbound access-group)"


def _mentions_smtp(acl: _Acl) -> bool:
    return any(
        a.action == "permit" and a.dst_ports is not None and 25 in a.dst_ports for a in acl.aces
    )


@register_parser
class CiscoIosParser:
    vendor = "cisco-ios"
    label = "Cisco IOS / IOS-XE access lists"

    def sniff(self, text: str) -> int:
        sample = text[:400_000]
        score = 0
        if re.search(r"^ip access-list (extended|standard) \S+", sample, re.M):
            score += 60
        if re.search(
            r"^access-list (1\d\d|2[0-6]\d\d|\d{1,2}|1[3-9]\d\d) (permit|deny|remark)\b",
            sample,
            re.M,
        ):
            score += 50
        if re.search(r"^\s+ip access-group \S+ (in|out)\s*$", sample, re.M):
            score += 20
        if re.search(r"^ipv6 access-list \S+", sample, re.M):
            score += 30
        if re.search(r"^ip nat inside source", sample, re.M):
            score += 15
        if re.search(r"^(Extended|Standard) IP access list \S+", sample, re.M):
            score += 60
        bare = re.findall(r"^\s*(?:\d+ )?(?:permit|deny) (?:tcp|ip|udp) (\S+) (\S+)", sample, re.M)
        if bare:
            wildcards = sum(1 for a, b in bare if a in ("any", "host") or b.startswith("0."))
            masks = sum(1 for _, b in bare if b.startswith("255."))
            score += 40 if wildcards > masks else 0
        if _ASA_MARKERS.search(sample):
            score = min(score, 10)
        return min(score, 95)

    def parse(self, text: str, path: str, options: ParseOptions) -> ParseResult:
        parser = _Parser(text, path)
        parser.run()
        if not parser.acls:
            raise FirewallParseError(f"{path}: no IOS access list found")
        notes = list(parser.notes)
        iface, why = _pick_interface(parser, options)
        acl4: _Acl | None = None
        acl6: _Acl | None = None
        unfiltered_v6 = False
        if options.acl:
            chosen = parser.acls.get(options.acl)
            if chosen is None:
                raise FirewallParseError(
                    f"{path}: access list {options.acl!r} not found; the file defines "
                    + ", ".join(sorted(parser.acls))
                )
            acl4, acl6 = (chosen, None) if chosen.family == 4 else (None, chosen)
            notes.append(f"access list {chosen.name} chosen with --acl")
        elif iface is not None:
            notes.append(f"inbound access lists of {why}")
            for name, family in ((iface.acl_in, 4), (iface.acl6_in, 6)):
                if not name:
                    continue
                acl = parser.acls.get(name)
                if acl is None:
                    notes.append(
                        f"{iface.name} applies access list {name}, which is not defined: IOS "
                        "then permits all traffic"
                    )
                if family == 4:
                    acl4 = acl if acl is not None else _Acl(name, 4, False, False)
                    if acl is None:
                        acl4.aces.append(_permit_all(4, iface.line))
                else:
                    acl6 = acl if acl is not None else _Acl(name, 6, False, False)
                    if acl is None:
                        acl6.aces.append(_permit_all(6, iface.line))
            unfiltered_v6 = iface.acl6_in is None
        else:
            extended = [a for a in parser.acls.values() if not a.standard]
            for family in (4, 6):
                pool = [a for a in extended if a.family == family] or [
                    a for a in parser.acls.values() if a.family == family
                ]
                smtp = [a for a in pool if _mentions_smtp(a)]
                candidates = smtp or pool
                pick = candidates[0] if candidates else None
                if family == 4:
                    acl4 = pick
                else:
                    acl6 = pick
            notes.append(
                "no `ip access-group ... in` binding found: evaluating "
                + " and ".join(a.name for a in (acl4, acl6) if a is not None)
                + " as the inbound access list (use --acl to choose another)"
            )
        rules: list[Rule] = []
        for acl in (acl4, acl6):
            if acl is None:
                continue
            for ace in acl.ordered():
                rules.extend(_rules_for(parser, acl, ace, path))
        if unfiltered_v6 and iface is not None:
            rules.append(
                Rule(
                    action=Action.PERMIT,
                    origin=Origin(
                        path, iface.line, f"interface {iface.name}: no ipv6 traffic-filter"
                    ),
                    sources=IPSet.all_v6(),
                    name="ipv6-unfiltered",
                )
            )
        names = [a.name for a in (acl4, acl6) if a is not None]
        if not names:
            raise FirewallParseError(f"{path}: no usable access list")
        chain_name = " + ".join(names)
        chain = Chain(
            chain_name,
            tuple(rules),
            Action.DENY,
            Origin(path, None, f"implicit deny ip any any at the end of {chain_name} (not logged)"),
            default_logged=False,
        )
        nat = _nats(parser, path)
        notes.extend(_inside_address_notes(rules, nat))
        for other in parser.interfaces.values():
            if other.nat_inside and other.acl_out and other is not iface:
                notes.append(
                    f"{other.name} also filters outbound with {other.acl_out}, after NAT (it "
                    "names inside addresses); that list is not evaluated here"
                )
        if re.search(r"^zone-pair security ", text, re.M):
            notes.append(
                "this router also runs a zone-based firewall (zone-pair security); only the "
                "interface access lists are evaluated, so check the zone-pair policy for SMTP too"
            )
        notes.append(
            "IOS checks the inbound ACL on the outside interface before NAT: rules name the "
            "public address; traffic matching no entry is dropped by the implicit deny, "
            "which is not logged"
        )
        policy = Policy(
            vendor=self.vendor,
            path=path,
            chains={chain_name: chain},
            entries=(chain_name,),
            nat=tuple(nat),
            destination_view=DestinationView.PRE_NAT,
            acl_name=acl4.name if acl4 is not None else names[0],
            smtp_hosts=tuple(
                dict.fromkeys(
                    str(n.public.networks()[0].network_address)
                    for n in nat
                    if n.public and (n.public_ports is None or 25 in n.public_ports)
                )
            ),
            notes=tuple(notes),
            default_deny_logged=False,
            all_acls=tuple(parser.acls),
        )
        return ParseResult(policy, tuple(parser.issues))

    # ---- remediation -------------------------------------------------------------------------
    def remediate(self, text: str, result: ParseResult, check: RangeCheck) -> Remediation | None:
        gap = gap_context(result.policy, check)
        parser = _Parser(text, result.policy.path)
        parser.run()
        cleanup = _cleanup(parser, result.policy, check.stale)
        if not gap.missing:
            return cleanup_only(cleanup)
        family = 6 if gap.missing.v6 else 4
        acl = _acl_by_family(parser, result.policy, family)
        if acl is None:
            return None
        path = result.policy.path

        def reparse(patched: str) -> Policy:
            policy = self.parse(patched, path, ParseOptions()).policy
            if policy.entries == result.policy.entries:
                return policy
            return self.parse(patched, path, ParseOptions(acl=acl.name)).policy

        found = first_closing(
            reparse,
            gap,
            [
                lambda: _add_to_group(parser, acl, gap, text),
                lambda: _new_entries(parser, acl, gap, text),
            ],
        )
        return finish(found, cleanup)


def _cleanup(parser: _Parser, policy: Policy, stale: IPSet) -> tuple[str, ...]:
    """`no` lines for group entries and permit entries that only name retired EOP ranges."""
    if not stale:
        return ()
    lines: list[str] = []
    for group in parser.groups.values():
        if group.kind != "network":
            continue
        removals = []
        for _, words in group.items:
            if words[0].lower() == "group-object":
                continue
            try:
                addresses = parser.network_item(words)
            except (AddressParseError, ValueError, _LineError):
                continue
            if is_stale(addresses, stale):
                removals.append(f" no {' '.join(words)}")
        if removals:
            lines += [f"object-group network {group.name}", *removals]
    for name in (n.strip() for n in (policy.entries[0].split(" + ") if policy.entries else [])):
        acl = parser.acls.get(name)
        if acl is None:
            continue
        removals = [
            f" no {'sequence ' if acl.family == 6 else ''}{ace.seq}"
            for ace in acl.ordered()
            if ace.action == "permit"
            and ace.src.literal is not None
            and is_stale(ace.src.literal, stale)
        ]
        if removals:
            header = (
                f"ipv6 access-list {acl.name}"
                if acl.family == 6
                else f"ip access-list {'standard' if acl.standard else 'extended'} {acl.name}"
            )
            lines += [header, *removals]
    return tuple(lines)


def _permit_all(family: int, line: int) -> _Ace:
    universe = IPSet.all_v4() if family == 4 else IPSet.all_v6()
    spec = _Spec(("any",), literal=universe)
    return _Ace(
        10,
        line,
        "undefined access list: permits all",
        "permit",
        ANY_PROTOCOL,
        None,
        spec,
        spec,
        None,
        None,
        (),
        False,
    )


def _rules_for(parser: _Parser, acl: _Acl, ace: _Ace, path: str) -> list[Rule]:
    origin = Origin(path, ace.line, ace.text)
    action = Action.PERMIT if ace.action == "permit" else Action.DENY
    name = f"{acl.name} seq {ace.seq}"
    reason = ace.no_syn_reason
    unresolved: list[str] = []
    sets: list[IPSet] = []
    for spec in (ace.src, ace.dst):
        if spec.group is not None:
            try:
                sets.append(parser.network_group(spec.group))
            except _LineError as exc:
                parser.issues.append((ace.line, str(exc)))
                unresolved.append(spec.group)
                sets.append(IPSet())
                reason = reason or f"{exc}"
        else:
            sets.append(spec.literal if spec.literal is not None else IPSet())
    family_all = IPSet.all_v4() if acl.family == 4 else IPSet.all_v6()
    sources, destinations = (s & family_all for s in sets)
    services = [_Service(ace.protocol, ace.dst_ports, ace.src_ports)]
    if ace.service_group is not None:
        try:
            services = parser.service_group(ace.service_group)
        except _LineError as exc:
            parser.issues.append((ace.line, str(exc)))
            unresolved.append(ace.service_group)
            reason = reason or str(exc)
            services = [_Service(ace.protocol, None, None)]
    return [
        Rule(
            action=action,
            origin=origin,
            sources=sources,
            destinations=destinations,
            protocol=service.protocol,
            dst_ports=service.dst_ports,
            src_ports=service.src_ports,
            name=name,
            logs=ace.logs,
            unresolved=tuple(unresolved),
            matches_nothing_reason=reason,
        )
        for service in services
    ]


def _nats(parser: _Parser, path: str) -> list[DestinationNat]:
    result: list[DestinationNat] = []
    for number, text, nat_words in parser.nats:
        words = list(nat_words)
        origin = Origin(path, number, text)
        try:
            protocol = ANY_PROTOCOL
            if words and words[0].lower() in ("tcp", "udp"):
                protocol = words.pop(0).lower()
                local, local_port = words[0], int(words[1])
                if words[2].lower() == "interface":
                    iface = parser.interfaces.get(words[3])
                    if iface is None or iface.address is None:
                        parser.notes.append(
                            f"{path}:{number}: NAT uses the address of interface {words[3]}, "
                            "which is dynamic or unknown here; check the public address yourself"
                        )
                        continue
                    public, public_port = iface.address, int(words[4])
                else:
                    public, public_port = IPSet.parse(words[2]), int(words[3])
                result.append(
                    DestinationNat(
                        public,
                        IPSet.parse(local),
                        origin,
                        PortSet.single(public_port),
                        local_port,
                        protocol,
                    )
                )
            elif words and words[0].lower() == "network":
                mask = words[3] if words[3].startswith("/") else f" {words[3]}"
                result.append(
                    DestinationNat(
                        IPSet.parse(words[2] + mask), IPSet.parse(words[1] + mask), origin
                    )
                )
            elif len(words) >= 2:
                result.append(DestinationNat(IPSet.parse(words[1]), IPSet.parse(words[0]), origin))
        except (IndexError, ValueError, AddressParseError):
            parser.issues.append((number, f"unsupported static NAT: {text[:80]}"))
    return result


def _inside_address_notes(rules: list[Rule], nats: list[DestinationNat]) -> list[str]:
    """Entries naming a NAT inside address: IOS checks them before NAT, so they never match."""
    notes: list[str] = []
    for nat in nats:
        inside_only = nat.private - nat.public
        for rule in rules:
            if rule.action != Action.PERMIT or rule.destinations == IPSet.all_v4():
                continue
            if rule.destinations.overlaps(inside_only) and not rule.destinations.overlaps(
                nat.public
            ):
                notes.append(
                    f"{rule.origin.path}:{rule.origin.line}: `{rule.origin.text.strip()}` names "
                    f"the inside address {', '.join((rule.destinations & inside_only).cidrs()[:3])}"
                    f"; IOS checks the inbound ACL before NAT, so traffic to the public address "
                    f"{', '.join(nat.public.cidrs()[:3])} never matches it"
                )
    return list(dict.fromkeys(notes))


def _acl_by_family(parser: _Parser, policy: Policy, family: int) -> _Acl | None:
    names = [n.strip() for n in policy.entries[0].split(" + ")] if policy.entries else []
    for name in names:
        acl = parser.acls.get(name)
        if acl is not None and acl.family == family:
            return acl
    return None


def _smtp_ace(parser: _Parser, acl: _Acl, gap: GapContext) -> _Ace | None:
    """The entry that permits the mail traffic today, if any (first in order)."""
    origins = {rule.origin.line for rule in gap.smtp_permits()}
    for ace in acl.ordered():
        if ace.action == "permit" and ace.line in origins and ace.protocol in ("tcp", ANY_PROTOCOL):
            return ace
    return None


def _blocker_seq(acl: _Acl, gap: GapContext) -> int | None:
    blocker = gap.first_blocker()
    if blocker is None:
        return None
    for ace in acl.ordered():
        if ace.line == blocker.origin.line:
            return ace.seq
    return None


def _add_to_group(
    parser: _Parser, acl: _Acl, gap: GapContext, text: str
) -> tuple[tuple[str, ...], str, str] | None:
    ace = _smtp_ace(parser, acl, gap)
    if ace is None or ace.src.group is None or acl.family != 4:
        return None
    blocker = _blocker_seq(acl, gap)
    if blocker is not None and blocker < ace.seq:
        return None
    group = parser.groups.get(ace.src.group)
    if group is None:
        return None
    entries = [
        f" host {n.network_address}" if n.prefixlen == 32 else f" {n.network_address} {n.netmask}"
        for n in gap.missing.networks()
    ]
    lines = (f"object-group network {group.name}", *entries)
    patched = insert_after_line(text, group.last_line, entries)
    explanation = (
        f"Add the missing Exchange Online ranges to object-group {group.name}, which the "
        f"entry `{ace.text.strip()}` in access list {acl.name} already permits for SMTP."
    )
    return lines, patched, explanation


def _spec_text(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    if network.version == 6:
        return str(network)
    if network.prefixlen == 32:
        return f"host {network.network_address}"
    if network.prefixlen == 0:
        return "any"
    return f"{network.network_address} {network.hostmask}"


def _new_entries(
    parser: _Parser, acl: _Acl, gap: GapContext, text: str
) -> tuple[tuple[str, ...], str, str] | None:
    ordered = acl.ordered()
    ace = _smtp_ace(parser, acl, gap)
    blocker = _blocker_seq(acl, gap)
    if blocker is not None:
        before = [a for a in ordered if a.seq < blocker]
        anchor = before[-1] if before else None
        upper = blocker
    elif ace is not None:
        anchor = ace
        later = [a.seq for a in ordered if a.seq > ace.seq]
        upper = later[0] if later else ace.seq + 10 * (len(gap.missing.networks()) + 1)
    else:
        anchor = ordered[-1] if ordered else None
        upper = (anchor.seq if anchor else 0) + 10 * (len(gap.missing.networks()) + 1)
    if ace is not None:
        destination = " ".join(ace.dst.tokens)
        ports = " ".join(ace.dst_port_tokens) or "eq smtp"
    else:
        destination = f"host {gap.destination}"
        ports = "eq smtp" if gap.port == 25 else f"eq {gap.port}"
    networks = gap.missing.networks()
    lower = anchor.seq if anchor is not None else 0
    resequence: list[str] = []
    if upper - lower - 1 < len(networks):
        # No room between the neighbours: renumber the list first (IOS keeps the order).
        step = 10 if len(networks) < 10 else 10 ** len(str(len(networks) + 1))
        resequence = [f"ip access-list resequence {acl.name} {step} {step}"]
        index = ordered.index(anchor) if anchor is not None else -1
        lower = (index + 1) * step if anchor is not None else 0
        upper = lower + step
    gap_size = upper - lower
    seqs = [lower + (i + 1) * gap_size // (len(networks) + 1) for i in range(len(networks))]
    entries = [
        f"{'sequence ' if acl.family == 6 else ''}{seq} permit tcp {_spec_text(n)} "
        f"{destination} {ports}"
        for seq, n in zip(seqs, networks, strict=True)
    ]
    header = (
        f"ipv6 access-list {acl.name}"
        if acl.family == 6
        else f"ip access-list {'standard' if acl.standard else 'extended'} {acl.name}"
    )
    if acl.standard:
        entries = [f"{seq} permit {_spec_text(n)}" for seq, n in zip(seqs, networks, strict=True)]
    lines = (*resequence, header, *(f" {e}" for e in entries))
    # Apply: the resequence goes right after the list, the new entries after their anchor.
    patched = text
    if resequence:
        patched = insert_after_line(patched, acl.last_line, resequence)
    after = anchor.line if anchor is not None else (acl.header_line or acl.last_line)
    block = [f" {e}" for e in entries]
    if acl.numbered or after == acl.last_line or resequence:
        block = [header, *block]
        after = acl.last_line + (len(resequence) if resequence else 0)
    patched = insert_after_line(patched, after, block)
    where = (
        "before the entry that blocks them"
        if blocker is not None
        else "right after the entry that permits SMTP today"
        if ace is not None
        else "at the end of the list, before the implicit deny"
    )
    explanation = (
        f"Add permit entries for the missing Exchange Online ranges to access list {acl.name}, "
        f"{where}. The sequence numbers assume the list as shown; check them with "
        f"`show ip access-lists {acl.name}` first."
    )
    if acl.name.startswith("pasted"):
        explanation += (
            " The pasted entries had no list name: replace `pasted` with the name of your "
            "access list."
        )
    return lines, patched, explanation
