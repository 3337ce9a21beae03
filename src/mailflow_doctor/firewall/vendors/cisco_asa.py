"""Cisco ASA (and FTD in ASA syntax): `show running-config`, or ACL lines pasted on their own.

What matters for mail from Exchange Online is the ACL bound inbound on the interface facing the
internet (`access-group NAME in interface outside`), read first-match with an implicit deny at
its end, and the NAT that sends the public address to the Exchange server. From ASA 8.3 on an
ACL names the server's REAL (inside) address, so NAT is recorded public -> real and the policy
is evaluated post-NAT. Before 8.3 (`static (inside,outside) ...`) ACLs named the public address.

What the ASA does with denied traffic decides what Exchange Online reports: by default it drops
the SYN silently, so EOP times out (`4.4.315`); with `service resetinbound` it answers with a
TCP reset, so EOP sees `4.4.316 Connection refused`. Denies by an ACL, the implicit deny
included, are logged as message 106023 (level 4, warnings) when logging is enabled at that
level; an ACE with `log` logs 106100 instead.

Objects the ASA resolves at run time (`fqdn` network objects) cannot be resolved offline: rules
that depend on them only are skipped and the report says so. Lines this module does not
understand become `ParseResult.issues`; parsing never raises for a bad line.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from mailflow_doctor.firewall.evaluate import RangeCheck, check_ranges
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
from mailflow_doctor.knowledge.ipranges import AddressParseError, IPSet

VENDOR = "cisco-asa"
MAX_LINE = 4096  # longer lines are not ASA commands; they are cut and reported
MAX_NESTING = 32
SMALL_GROUP = 8  # a permit to at most this many addresses names them as mail servers

# ASA port keywords (Cisco ASA command reference, "TCP and UDP ports").
PORT_NAMES: dict[str, int] = {
    "aol": 5190,
    "bgp": 179,
    "biff": 512,
    "bootpc": 68,
    "bootps": 67,
    "chargen": 19,
    "cifs": 3020,
    "citrix-ica": 1494,
    "cmd": 514,
    "ctiqbe": 2748,
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
    "h323": 1720,
    "hostname": 101,
    "http": 80,
    "https": 443,
    "ident": 113,
    "imap4": 143,
    "irc": 194,
    "isakmp": 500,
    "kerberos": 750,
    "klogin": 543,
    "kshell": 544,
    "ldap": 389,
    "ldaps": 636,
    "login": 513,
    "lotusnotes": 1352,
    "lpd": 515,
    "mobile-ip": 434,
    "nameserver": 42,
    "netbios-dgm": 138,
    "netbios-ns": 137,
    "netbios-ssn": 139,
    "nfs": 2049,
    "nntp": 119,
    "ntp": 123,
    "pcanywhere-data": 5631,
    "pcanywhere-status": 5632,
    "pim-auto-rp": 496,
    "pop2": 109,
    "pop3": 110,
    "pptp": 1723,
    "radius": 1645,
    "radius-acct": 1646,
    "rip": 520,
    "rsh": 514,
    "rtsp": 554,
    "secureid-udp": 5510,
    "sip": 5060,
    "smtp": 25,
    "snmp": 161,
    "snmptrap": 162,
    "sqlnet": 1521,
    "ssh": 22,
    "sunrpc": 111,
    "syslog": 514,
    "tacacs": 49,
    "talk": 517,
    "telnet": 23,
    "tftp": 69,
    "time": 37,
    "uucp": 540,
    "vxlan": 4789,
    "who": 513,
    "whois": 43,
    "www": 80,
    "xdmcp": 177,
}

PROTOCOL_NAMES: dict[str, str] = {
    "ip": ANY_PROTOCOL,
    "tcp": "tcp",
    "udp": "udp",
    "tcp-udp": "tcp-udp",
    "icmp": "icmp",
    "icmp6": "icmp6",
    "sctp": "sctp",
    "ah": "51",
    "esp": "50",
    "gre": "47",
    "eigrp": "88",
    "igmp": "2",
    "igrp": "9",
    "ipinip": "4",
    "ipsec": "50",
    "nos": "94",
    "ospf": "89",
    "pcp": "108",
    "pim": "103",
    "pptp": "47",
    "snp": "109",
}
PORTED = {"tcp", "udp", "tcp-udp", "sctp"}
PORT_OPERATORS = {"eq", "neq", "lt", "gt", "range"}
ACE_OPTIONS = {"log", "inactive", "time-range", "interval"}
SMTP_NAME = re.compile(r"smtp|mail|exch|(?:^|[_-])mx", re.IGNORECASE)
_TRAILING_COMMENT = re.compile(r"\s+!.*$")
_SHOW_ACL_NOISE = re.compile(r"\s*\(hitcnt=\d+\)(?:\s+\(inactive\))?(?:\s+0x[0-9a-fA-F]+)?\s*$")
_MASKLIKE = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")


class _LineError(ValueError):
    """A line that cannot be understood; becomes a ParseResult issue."""


# ---------------------------------------------------------------------------------------------
# Parsed configuration (vendor-specific, before it becomes the neutral Policy)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Service:
    """One protocol with optional port conditions (a service-object or an ACE's own)."""

    protocol: str
    src_ports: PortSet | None = None
    dst_ports: PortSet | None = None


@dataclass
class NetObject:
    name: str
    line: int
    addresses: IPSet = field(default_factory=IPSet)
    fqdn: str = ""
    defined: bool = False
    body_end: int = 0  # last line of its (last) definition block


@dataclass
class GroupMember:
    kind: str  # "net" (inline address), "object", "group"
    value: str  # group/object name, or the address text
    line: int
    addresses: IPSet = field(default_factory=IPSet)


@dataclass
class NetGroup:
    name: str
    line: int
    members: list[GroupMember] = field(default_factory=list)
    body_end: int = 0


@dataclass
class ServiceGroup:
    """`object-group service NAME [tcp|udp|tcp-udp]` or `object service NAME`."""

    name: str
    line: int
    protocol: str | None  # set for port groups (`object-group service N tcp`)
    services: list[Service] = field(default_factory=list)
    ports: list[tuple[int, int]] = field(default_factory=list)  # port-object entries
    groups: list[str] = field(default_factory=list)
    objects: list[str] = field(default_factory=list)
    is_object: bool = False

    @property
    def is_port_group(self) -> bool:
        return self.protocol is not None


@dataclass
class Interface:
    name: str  # the `interface` hardware name
    line: int
    nameif: str = ""
    security_level: int | None = None
    addresses: IPSet = field(default_factory=IPSet)

    @property
    def level(self) -> int:
        """Explicit level, else the ASA default: 100 for `inside`, 0 for any other nameif."""
        if self.security_level is not None:
            return self.security_level
        return 100 if self.nameif.lower() == "inside" else 0


@dataclass
class AddressRef:
    """How an ACE names an address: what it resolves to, and the words used."""

    addresses: IPSet
    words: tuple[str, ...]
    unresolved: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    group: str = ""  # the object-group name when the ACE names one


@dataclass
class Ace:
    acl: str
    line: int
    text: str
    remark: bool = False
    action: str = ""
    services: tuple[Service, ...] = ()
    source: AddressRef | None = None
    destination: AddressRef | None = None
    dst_words: tuple[str, ...] = ()  # destination address and port words, for remediation
    inactive: bool = False
    logs: bool = False
    time_range: str = ""
    unresolved_service: str = ""
    children: list[Ace] = field(default_factory=list)  # `show access-list` expansions
    ipv6_only: bool = False


@dataclass
class NatSpec:
    line: int
    text: str
    real_ifc: str
    mapped_ifc: str
    section: int  # 1 manual, 2 object, 3 after-auto
    public: IPSet
    private: IPSet
    public_ports: PortSet | None = None
    private_port: int | None = None
    protocol: str = ANY_PROTOCOL
    note: str = ""


@dataclass
class AsaConfig:
    """Everything read from the text, with line numbers, before the policy is built."""

    path: str
    lines: list[str]
    names: dict[str, str] = field(default_factory=dict)
    objects: dict[str, NetObject] = field(default_factory=dict)
    groups: dict[str, NetGroup] = field(default_factory=dict)
    services: dict[str, ServiceGroup] = field(default_factory=dict)
    protocol_groups: dict[str, list[str]] = field(default_factory=dict)
    interfaces: list[Interface] = field(default_factory=list)
    acls: dict[str, list[Ace]] = field(default_factory=dict)
    bindings: list[tuple[str, str, str, int]] = field(default_factory=list)  # acl, dir, ifc, line
    object_nat: list[tuple[str, int, str]] = field(default_factory=list)  # object, line, text
    twice_nat: list[tuple[int, str]] = field(default_factory=list)
    legacy_static: list[tuple[int, str]] = field(default_factory=list)
    reset_inbound: list[str] = field(default_factory=list)  # interfaces; "" = all
    reset_line: int | None = None
    logging_enabled: bool = False
    logging_levels: list[str] = field(default_factory=list)
    other_acl_uses: set[str] = field(default_factory=set)
    resolved: dict[str, _Resolved] = field(default_factory=dict)
    version: str = ""
    issues: list[tuple[int | None, str]] = field(default_factory=list)

    def issue(self, line: int | None, message: str) -> None:
        if len(self.issues) < 500:
            self.issues.append((line, message))

    def interface_by_nameif(self, nameif: str) -> Interface | None:
        for ifc in self.interfaces:
            if ifc.nameif.lower() == nameif.lower():
                return ifc
        return None


# ---------------------------------------------------------------------------------------------
# Small token helpers
# ---------------------------------------------------------------------------------------------


class _Tokens:
    def __init__(self, words: list[str]) -> None:
        self.words = words
        self.pos = 0

    def peek(self, offset: int = 0) -> str | None:
        index = self.pos + offset
        return self.words[index] if index < len(self.words) else None

    def take(self, what: str = "a word") -> str:
        word = self.peek()
        if word is None:
            raise _LineError(f"ends early: expected {what}")
        self.pos += 1
        return word

    def rest(self) -> list[str]:
        return self.words[self.pos :]

    @property
    def done(self) -> bool:
        return self.pos >= len(self.words)


def _port(word: str) -> int:
    lowered = word.lower()
    if lowered in PORT_NAMES:
        return PORT_NAMES[lowered]
    if word.isdigit() and 0 <= int(word) <= 65535:
        return int(word)
    raise _LineError(f"unknown port {word!r}")


def _port_condition(tokens: _Tokens) -> PortSet:
    operator = tokens.take("a port operator").lower()
    if operator == "range":
        first = _port(tokens.take("a port"))
        last = _port(tokens.take("a port"))
        return PortSet.of((min(first, last), max(first, last)))
    port = _port(tokens.take("a port"))
    if operator == "eq":
        return PortSet.single(port)
    if operator == "neq":
        return PortSet.single(port).negated()
    if operator == "lt":
        return PortSet.of((0, port - 1)) if port > 0 else PortSet(())
    if operator == "gt":
        return PortSet.of((port + 1, 65535)) if port < 65535 else PortSet(())
    raise _LineError(f"unknown port operator {operator!r}")


def _protocol(word: str) -> str | None:
    lowered = word.lower()
    if lowered in PROTOCOL_NAMES:
        return PROTOCOL_NAMES[lowered]
    if word.isdigit() and 0 <= int(word) <= 255:
        return {"6": "tcp", "17": "udp", "1": "icmp", "0": ANY_PROTOCOL}.get(word, word)
    return None


def _dotted(text: str) -> int | None:
    """A dotted-quad IPv4 address as an integer (fast path for large configurations)."""
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 for p in parts):
        return None
    value = 0
    for part in parts:
        octet = int(part)
        if octet > 255:
            return None
        value = value << 8 | octet
    return value


def _mask_set(address: str, mask: str) -> IPSet:
    """`A MASK` with a contiguous or discontiguous IPv4 mask."""
    addr_int, mask_int = _dotted(address), _dotted(mask)
    if addr_int is not None and mask_int is not None:
        host_bits = ~mask_int & 0xFFFFFFFF
        if host_bits & (host_bits + 1) == 0:  # contiguous: one block
            first = addr_int & mask_int
            return IPSet(((first, first | host_bits),), ())
    try:
        addr = ipaddress.IPv4Address(address)
        net_mask = int(ipaddress.IPv4Address(mask))
    except ValueError as exc:
        raise _LineError(f"not an address and mask: {address} {mask}") from exc
    wildcard = ipaddress.IPv4Address(~net_mask & 0xFFFFFFFF)
    try:
        return IPSet.from_wildcard(str(addr), str(wildcard))
    except AddressParseError as exc:
        raise _LineError(str(exc)) from exc


def _is_address(word: str) -> bool:
    try:
        ipaddress.ip_address(word)
    except ValueError:
        return False
    return True


def _network_words(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    """A CIDR as ASA writes it: `A MASK`, `host A`, or `A/len` for IPv6."""
    if net.version == 4:
        if net.prefixlen == 32:
            return f"host {net.network_address}"
        return f"{net.network_address} {net.netmask}"
    if net.prefixlen == 128:
        return f"host {net.network_address}"
    return str(net)


# ---------------------------------------------------------------------------------------------
# Reading the text
# ---------------------------------------------------------------------------------------------


def _clean(raw: str) -> str:
    text = raw.rstrip("\r\n")
    if len(text) > MAX_LINE:
        text = text[:MAX_LINE]
    return text.replace("\t", " ")


def read_config(text: str, path: str) -> AsaConfig:
    """First pass: every definition with its line; ACEs are parsed once objects are known."""
    lines = [_clean(raw) for raw in text.splitlines()]
    config = AsaConfig(path=path, lines=lines)
    block: tuple[str, str] | None = None  # (kind, name)
    pending_aces: list[tuple[int, str, bool]] = []  # line, text, indented
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        indented = line[:1] == " "
        if not stripped:
            continue
        if stripped.startswith(("!", ":")) or stripped == "exit":
            if not indented or stripped == "exit":
                block = None
            continue
        if len(line) >= MAX_LINE:
            config.issue(number, f"line longer than {MAX_LINE} characters: cut")
        if indented and stripped.startswith("access-list "):
            pending_aces.append((number, stripped, True))
            continue
        if indented:
            if block is None:
                _note_acl_uses(config, stripped.split())
                continue
            try:
                _block_line(config, block, number, _strip_comment(stripped))
            except _LineError as exc:
                config.issue(number, f"{exc}: {stripped[:120]}")
            continue
        block = None
        try:
            block = _top_line(config, number, stripped, pending_aces)
        except _LineError as exc:
            config.issue(number, f"{exc}: {stripped[:120]}")
    for number, ace_text, indented in pending_aces:
        _add_ace(config, number, ace_text, indented)
    return config


def _strip_comment(text: str) -> str:
    if text.startswith(("description", "remark")):
        return text
    return _TRAILING_COMMENT.sub("", text)


def _top_line(
    config: AsaConfig, number: int, text: str, pending: list[tuple[int, str, bool]]
) -> tuple[str, str] | None:
    words = text.split()
    head = words[0].lower()
    if head == "access-list":
        pending.append((number, text, False))
        return None
    if head == "ipv6" and len(words) > 1 and words[1].lower() == "access-list":
        pending.append((number, text, False))
        return None
    if head == "asa" and len(words) > 2 and words[1].lower() == "version":
        config.version = words[2]
        return None
    if head == "name" and len(words) >= 3:
        if not _is_address(words[1]):
            raise _LineError("`name` needs an address first")
        config.names[words[2]] = words[1]
        return None
    if head == "interface" and len(words) >= 2:
        config.interfaces.append(Interface(words[1], number))
        return ("interface", words[1])
    if head == "object" and len(words) >= 3:
        kind, name = words[1].lower(), words[2]
        if kind == "network":
            obj = config.objects.setdefault(name, NetObject(name, number))
            obj.body_end = number
            return ("object", name)
        if kind == "service":
            config.services.setdefault(name, ServiceGroup(name, number, None, is_object=True))
            return ("object-service", name)
        raise _LineError(f"object type {kind!r} is not used for the TCP 25 check")
    if head == "object-group" and len(words) >= 3:
        kind, name = words[1].lower(), words[2]
        # A group opened again (config-mode additions pasted after it) gains members.
        if kind == "network":
            group = config.groups.setdefault(name, NetGroup(name, number))
            group.body_end = number
            return ("group", name)
        if kind == "service":
            protocol = _protocol(words[3]) if len(words) > 3 else None
            config.services.setdefault(name, ServiceGroup(name, number, protocol))
            return ("service", name)
        if kind == "protocol":
            config.protocol_groups.setdefault(name, [])
            return ("protocol", name)
        if kind in ("icmp-type", "user", "security", "network-service"):
            return ("ignored", name)
        raise _LineError(f"object-group type {kind!r} is not supported")
    if head == "access-group" and len(words) >= 3:
        acl = words[1]
        if words[2].lower() == "global":
            config.bindings.append((acl, "global", "", number))
        elif len(words) >= 5 and words[3].lower() == "interface":
            config.bindings.append((acl, words[2].lower(), words[4], number))
        else:
            raise _LineError("access-group binding not understood")
        return None
    if head == "nat" and len(words) >= 3:
        config.twice_nat.append((number, text))
        return None
    if head == "static" and len(words) >= 3 and words[1].startswith("("):
        config.legacy_static.append((number, text))
        return None
    if head == "service" and len(words) >= 2 and words[1].lower() == "resetinbound":
        config.reset_line = number
        config.reset_inbound.append(words[3] if len(words) >= 4 else "")
        return None
    if head == "logging":
        if len(words) >= 2 and words[1].lower() == "enable":
            config.logging_enabled = True
        elif len(words) >= 3 and words[1].lower() in ("trap", "buffered", "console", "monitor"):
            config.logging_levels.append(words[2].lower())
        return None
    _note_acl_uses(config, words)
    return None


def _note_acl_uses(config: AsaConfig, words: list[str]) -> None:
    """ACLs named by VPN, capture, class-map or crypto commands do not filter mail."""
    if words and words[0].lower() in ("clear", "no"):
        return
    for index, word in enumerate(words[:-1]):
        if word.lower() in ("access-list", "address", "value", "match-address") and index > 0:
            config.other_acl_uses.add(words[index + 1])


def _network_spec(config: AsaConfig, words: list[str]) -> IPSet:
    """`host A` | `A MASK` | `A/len` | `range A B` | `subnet ...` forms inside objects/groups."""
    if not words:
        raise _LineError("no address given")
    first = words[0].lower()
    if first == "host" and len(words) >= 2:
        return _single(config, words[1])
    if first == "range" and len(words) >= 3:
        try:
            return IPSet.from_range(_named(config, words[1]), _named(config, words[2]))
        except AddressParseError as exc:
            raise _LineError(str(exc)) from exc
    if first == "subnet":
        return _network_spec(config, words[1:])
    if "/" in words[0]:
        try:
            return IPSet.parse(words[0])
        except AddressParseError as exc:
            raise _LineError(str(exc)) from exc
    if len(words) >= 2 and _MASKLIKE.match(words[1]):
        return _mask_set(_named(config, words[0]), words[1])
    raise _LineError(f"address form not understood: {' '.join(words[:3])}")


def _named(config: AsaConfig, word: str) -> str:
    return config.names.get(word, word)


def _single(config: AsaConfig, word: str) -> IPSet:
    address = _named(config, word)
    try:
        return IPSet.from_networks([ipaddress.ip_address(address)])
    except ValueError as exc:
        raise _LineError(f"not an address or a defined name: {word!r}") from exc


def _block_line(config: AsaConfig, block: tuple[str, str], number: int, text: str) -> None:
    kind, name = block
    words = text.split()
    head = words[0].lower()
    if head == "description" or kind == "ignored":
        return
    if kind == "interface":
        ifc = config.interfaces[-1]
        if head == "nameif" and len(words) >= 2:
            ifc.nameif = words[1]
        elif head == "security-level" and len(words) >= 2 and words[1].isdigit():
            ifc.security_level = int(words[1])
        elif head == "ip" and len(words) >= 4 and words[1].lower() == "address":
            if _is_address(words[2]) and _MASKLIKE.match(words[3]):
                ifc.addresses = ifc.addresses | IPSet.parse(words[2])
        elif head == "ipv6" and len(words) >= 3 and words[1].lower() == "address":
            address = words[2].split("/")[0]
            if _is_address(address):
                ifc.addresses = ifc.addresses | IPSet.parse(address)
        return
    if kind == "object":
        obj = config.objects[name]
        obj.body_end = number
        if head in ("host", "subnet", "range"):
            obj.addresses = _network_spec(config, words)
            obj.defined = True
        elif head == "fqdn":
            obj.fqdn = words[-1] if len(words) >= 2 else ""
            obj.defined = True
        elif head == "nat":
            config.object_nat.append((name, number, text))
        else:
            raise _LineError(f"object network sub-command {head!r} ignored")
        return
    if kind == "group":
        group = config.groups[name]
        group.body_end = number
        if head == "network-object" and len(words) >= 2:
            if words[1].lower() == "object" and len(words) >= 3:
                group.members.append(GroupMember("object", words[2], number))
            else:
                group.members.append(
                    GroupMember(
                        "net", " ".join(words[1:]), number, _network_spec(config, words[1:])
                    )
                )
        elif head == "group-object" and len(words) >= 2:
            group.members.append(GroupMember("group", words[1], number))
        else:
            raise _LineError(f"object-group network sub-command {head!r} ignored")
        return
    if kind == "protocol":
        if head == "protocol-object" and len(words) >= 2:
            protocol = _protocol(words[1])
            if protocol is None:
                raise _LineError(f"unknown protocol {words[1]!r}")
            config.protocol_groups[name].append(protocol)
        elif head == "group-object" and len(words) >= 2:
            config.protocol_groups[name].append("group:" + words[1])
        return
    if kind in ("service", "object-service"):
        group_s = config.services[name]
        if head == "port-object" and len(words) >= 3:
            tokens = _Tokens(words[1:])
            group_s.ports.extend(_port_condition(tokens).ranges)
        elif head == "group-object" and len(words) >= 2:
            group_s.groups.append(words[1])
        elif head in ("service-object", "service"):
            if len(words) >= 3 and words[1].lower() == "object":
                group_s.objects.append(words[2])
            elif len(words) >= 2:
                group_s.services.append(_service_words(words[1:]))
        else:
            raise _LineError(f"service sub-command {head!r} ignored")
        return


def _service_words(words: list[str]) -> Service:
    """`tcp [source OP P] [destination OP P]`, `tcp eq 25`, `icmp echo`, `47`."""
    protocol = _protocol(words[0])
    if protocol is None:
        raise _LineError(f"unknown protocol {words[0]!r}")
    tokens = _Tokens(words[1:])
    src: PortSet | None = None
    dst: PortSet | None = None
    while not tokens.done:
        word = (tokens.peek() or "").lower()
        if word == "source":
            tokens.take()
            src = _port_condition(tokens)
        elif word == "destination":
            tokens.take()
            dst = _port_condition(tokens)
        elif word in PORT_OPERATORS:
            dst = _port_condition(tokens)
        else:
            tokens.take()  # icmp type / code: irrelevant for TCP
    return Service(protocol, src, dst)


# ---------------------------------------------------------------------------------------------
# Resolution of objects and groups
# ---------------------------------------------------------------------------------------------


@dataclass
class _Resolved:
    addresses: IPSet
    unresolved: list[str]
    reasons: list[str]


def resolve_object(config: AsaConfig, name: str) -> _Resolved:
    obj = config.objects.get(name)
    if obj is None or not obj.defined:
        if name in config.names:
            return _Resolved(_single(config, name), [], [])
        return _Resolved(
            IPSet(),
            [name],
            [f"object {name} is not defined in the configuration given"],
        )
    if obj.fqdn:
        return _Resolved(
            IPSet(),
            [name],
            [
                f"object {name} is the FQDN {obj.fqdn}, which the ASA resolves through DNS at "
                "run time; it cannot be resolved offline"
            ],
        )
    return _Resolved(obj.addresses, [], [])


def resolve_group(config: AsaConfig, name: str, stack: tuple[str, ...] = ()) -> _Resolved:
    """A group's addresses, members and nested groups included (memoised: groups are reused)."""
    cached = config.resolved.get(name)
    if cached is not None:
        return _Resolved(cached.addresses, list(cached.unresolved), list(cached.reasons))
    found = _resolve_group(config, name, stack)
    if not any("nests itself" in reason for reason in found.reasons):
        config.resolved[name] = found
    return _Resolved(found.addresses, list(found.unresolved), list(found.reasons))


def _resolve_group(config: AsaConfig, name: str, stack: tuple[str, ...]) -> _Resolved:
    group = config.groups.get(name)
    if group is None:
        return _Resolved(
            IPSet(), [name], [f"object-group {name} is not defined in the configuration given"]
        )
    if name in stack or len(stack) > MAX_NESTING:
        return _Resolved(IPSet(), [name], [f"object-group {name} nests itself"])
    v4: list[tuple[int, int]] = []
    v6: list[tuple[int, int]] = []
    result = _Resolved(IPSet(), [], [])
    for member in group.members:
        if member.kind == "net":
            part = _Resolved(member.addresses, [], [])
        elif member.kind == "object":
            part = resolve_object(config, member.value)
        else:
            part = resolve_group(config, member.value, (*stack, name))
        v4.extend(part.addresses.v4)
        v6.extend(part.addresses.v6)
        result.unresolved.extend(part.unresolved)
        result.reasons.extend(part.reasons)
    # One merge at the end: unions member by member are quadratic on large groups.
    result.addresses = IPSet(tuple(v4), tuple(v6)) | IPSet()  # `|` sorts and merges once
    return result


def resolve_services(
    config: AsaConfig, name: str, stack: tuple[str, ...] = ()
) -> list[Service] | None:
    """All services of a service object / service object-group; None when undefined."""
    group = config.services.get(name)
    if group is None or name in stack or len(stack) > MAX_NESTING:
        return None
    found: list[Service] = list(group.services)
    if group.ports and group.protocol:
        found.append(Service(group.protocol, None, PortSet.of(*group.ports)))
    for child in [*group.objects, *group.groups]:
        more = resolve_services(config, child, (*stack, name))
        if more is not None:
            found.extend(more)
    return found


def port_group(config: AsaConfig, name: str) -> PortSet | None:
    group = config.services.get(name)
    if group is None or not group.is_port_group:
        return None
    ranges = list(group.ports)
    for child in group.groups:
        more = port_group(config, child) if child != name else None
        if more is not None:
            ranges.extend(more.ranges)
    return PortSet.of(*ranges)


def resolve_protocols(config: AsaConfig, name: str, depth: int = 0) -> list[str] | None:
    members = config.protocol_groups.get(name)
    if members is None or depth > MAX_NESTING:
        return None
    found: list[str] = []
    for member in members:
        if member.startswith("group:"):
            found.extend(resolve_protocols(config, member[6:], depth + 1) or [])
        else:
            found.append(member)
    return found


# ---------------------------------------------------------------------------------------------
# ACEs
# ---------------------------------------------------------------------------------------------


def _add_ace(config: AsaConfig, number: int, text: str, indented: bool) -> None:
    cleaned = _SHOW_ACL_NOISE.sub("", text)
    inactive_hint = "(inactive)" in text
    words = cleaned.split()
    ipv6_form = words[0].lower() == "ipv6"
    if ipv6_form:
        words = words[1:]
    if len(words) < 3 or words[1].endswith(";") or words[1].lower() == "cached":
        return  # `show access-list` headers
    acl = words[1]
    tokens = _Tokens(words[2:])
    position: int | None = None
    if (tokens.peek() or "").lower() == "line" and (tokens.peek(1) or "").isdigit():
        tokens.take()
        position = int(tokens.take())
    kind = (tokens.peek() or "").lower()
    entries = config.acls.setdefault(acl, [])
    if kind == "remark":
        ace = Ace(acl, number, text, remark=True)
    elif kind in ("standard", "webtype", "ethertype", "rename"):
        config.issue(number, f"access-list {acl}: {kind} ACEs do not filter inbound TCP; ignored")
        return
    else:
        if kind == "extended":
            tokens.take()
        elif not ipv6_form and kind not in ("permit", "deny"):
            config.issue(number, f"access-list line not understood: {text[:120]}")
            return
        ace = Ace(acl, number, text, ipv6_only=ipv6_form)
        try:
            _parse_ace(config, ace, tokens)
        except _LineError as exc:
            config.issue(number, f"{exc}: {text[:160]}")
            return
        ace.inactive = ace.inactive or inactive_hint
    if indented:
        parent = next((a for a in reversed(entries) if not a.remark), None)
        if parent is not None and not ace.remark:
            parent.children.append(ace)
        return
    if position is not None and 1 <= position <= len(entries):
        entries.insert(position - 1, ace)
    else:
        entries.append(ace)


def _address(config: AsaConfig, tokens: _Tokens) -> AddressRef:
    start = tokens.pos
    word = tokens.take("an address")
    lowered = word.lower()
    if lowered == "any":
        return AddressRef(IPSet.universe(), ("any",))
    if lowered == "any4":
        return AddressRef(IPSet.all_v4(), ("any4",))
    if lowered == "any6":
        return AddressRef(IPSet.all_v6(), ("any6",))
    if lowered == "host":
        target = tokens.take("a host address")
        return AddressRef(_single(config, target), ("host", target))
    if lowered == "object":
        name = tokens.take("an object name")
        found = resolve_object(config, name)
        return AddressRef(
            found.addresses, ("object", name), tuple(found.unresolved), tuple(found.reasons)
        )
    if lowered == "object-group":
        name = tokens.take("an object-group name")
        found = resolve_group(config, name)
        return AddressRef(
            found.addresses,
            ("object-group", name),
            tuple(found.unresolved),
            tuple(found.reasons),
            group=name,
        )
    if lowered == "interface":
        name = tokens.take("an interface name")
        ifc = config.interface_by_nameif(name)
        if ifc is None or not ifc.addresses:
            return AddressRef(
                IPSet(),
                ("interface", name),
                (name,),
                (f"the address of interface {name} is not in the configuration given",),
            )
        return AddressRef(ifc.addresses, ("interface", name))
    if lowered in ("object-group-user", "user", "user-group", "object-group-security"):
        raise _LineError("identity-based ACEs (users, security groups) are not supported")
    if "/" in word:
        try:
            return AddressRef(IPSet.parse(word), (word,))
        except AddressParseError as exc:
            raise _LineError(str(exc)) from exc
    mask = tokens.peek()
    if mask is not None and _MASKLIKE.match(mask):
        tokens.take()
        return AddressRef(_mask_set(_named(config, word), mask), (word, mask))
    tokens.pos = start
    raise _LineError(f"address not understood at {word!r}")


def _port_spec(config: AsaConfig, tokens: _Tokens) -> PortSet | None:
    """An optional port condition after an address: operator form or a port object-group."""
    word = (tokens.peek() or "").lower()
    if word in PORT_OPERATORS:
        return _port_condition(tokens)
    if word == "object-group":
        name = tokens.peek(1) or ""
        ports = port_group(config, name)
        if ports is not None:
            tokens.take()
            tokens.take()
            return ports
    return None


def _parse_ace(config: AsaConfig, ace: Ace, tokens: _Tokens) -> None:
    action = tokens.take("permit or deny").lower()
    if action not in ("permit", "deny"):
        raise _LineError(f"expected permit or deny, found {action!r}")
    ace.action = action
    spec = tokens.take("a protocol")
    services: list[Service] | None
    ports_allowed = False
    if spec.lower() in ("object", "object-group"):
        name = tokens.take("a service object name")
        services = resolve_services(config, name)
        if services is None and spec.lower() == "object-group":
            protocols = resolve_protocols(config, name)
            if protocols is not None:
                services = [Service(p) for p in protocols]
                ports_allowed = True
        if services is None:
            ace.unresolved_service = name
            services = []
    else:
        protocol = _protocol(spec)
        if protocol is None:
            raise _LineError(f"unknown protocol {spec!r}")
        services = [Service(protocol)]
        ports_allowed = protocol in PORTED
    ace.source = _address(config, tokens)
    src_ports = _port_spec(config, tokens) if ports_allowed else None
    dst_start = tokens.pos
    ace.destination = _address(config, tokens)
    dst_ports = _port_spec(config, tokens) if ports_allowed else None
    ace.dst_words = tuple(tokens.words[dst_start : tokens.pos])
    icmp = any(s.protocol in ("icmp", "icmp6") for s in services)
    if icmp and not tokens.done and (tokens.peek() or "").lower() not in ACE_OPTIONS:
        tokens.take()  # an ICMP type, perhaps with a code
        if (tokens.peek() or "").isdigit():
            tokens.take()
    if src_ports is not None or dst_ports is not None:
        services = [
            Service(s.protocol, src_ports or s.src_ports, dst_ports or s.dst_ports)
            for s in services
        ]
    ace.services = tuple(services)
    leftover: list[str] = []
    while not tokens.done:
        word = tokens.take().lower()
        if word == "log":
            ace.logs = True
            if (tokens.peek() or "").lower() == "disable":
                ace.logs = False
                tokens.take()
            elif (tokens.peek() or "").lower() == "default" or (tokens.peek() or "").isdigit():
                tokens.take()
        elif word == "interval":
            tokens.take("an interval")
        elif word == "inactive":
            ace.inactive = True
        elif word == "time-range":
            ace.time_range = tokens.take("a time-range name")
        elif word in (
            "emergencies",
            "alerts",
            "critical",
            "errors",
            "warnings",
            "notifications",
            "informational",
            "debugging",
        ):
            continue
        else:
            leftover.append(word)
    if leftover:
        config.issue(ace.line, f"words not understood at the end of the ACE: {' '.join(leftover)}")


def ace_rules(ace: Ace, path: str, reject: bool) -> list[Rule]:
    """The neutral rules for one ACE: one per service (protocol and ports) it names."""
    if ace.children:
        rules: list[Rule] = []
        for child in ace.children:
            rules.extend(ace_rules(child, path, reject))
        return rules
    assert ace.source is not None
    assert ace.destination is not None
    origin = Origin(path, ace.line, ace.text.strip())
    denied = Action.REJECT if reject else Action.DENY
    action = Action.PERMIT if ace.action == "permit" else denied
    unresolved = ace.source.unresolved + ace.destination.unresolved
    reason = ""
    if ace.unresolved_service:
        unresolved = (*unresolved, ace.unresolved_service)
        reason = (
            f"service {ace.unresolved_service} is not defined in the configuration given, "
            "so the ACE's protocol and ports are unknown"
        )
    for ref in (ace.source, ace.destination):
        if not reason and ref.unresolved and not ref.addresses:
            reason = "; ".join(dict.fromkeys(ref.reasons))
    sources = ace.source.addresses
    destinations = ace.destination.addresses
    if ace.ipv6_only:
        sources = sources.only(6)
        destinations = destinations.only(6)
    services = ace.services or (Service(ANY_PROTOCOL),)
    return [
        Rule(
            action=action,
            origin=origin,
            sources=sources,
            destinations=destinations,
            protocol=service.protocol,
            dst_ports=service.dst_ports,
            src_ports=service.src_ports,
            enabled=not ace.inactive,
            name=f"{ace.acl} line {ace.line}",
            logs=ace.logs,
            unresolved=tuple(dict.fromkeys(unresolved)),
            matches_nothing_reason=reason,
        )
        for service in services
    ]


# ---------------------------------------------------------------------------------------------
# NAT
# ---------------------------------------------------------------------------------------------


def _nat_address(config: AsaConfig, word: str, ifc_name: str) -> IPSet | None:
    lowered = word.lower()
    if lowered == "any":
        return IPSet.universe()
    if lowered == "interface":
        ifc = config.interface_by_nameif(ifc_name)
        return ifc.addresses if ifc is not None and ifc.addresses else None
    if word in config.groups:
        found = resolve_group(config, word)
        return found.addresses if not found.unresolved else None
    if word in config.objects:
        obj = resolve_object(config, word)
        return obj.addresses if not obj.unresolved else None
    try:
        return IPSet.parse(_named(config, word))
    except AddressParseError:
        return None


def _single_port(ports: PortSet | None) -> int | None:
    if ports is not None and len(ports.ranges) == 1 and ports.ranges[0][0] == ports.ranges[0][1]:
        return ports.ranges[0][0]
    return None


def _interfaces_pair(word: str) -> tuple[str, str] | None:
    match = re.fullmatch(r"\(([^,()]+),([^,()]+)\)", word)
    return (match[1], match[2]) if match else None


def build_nat(config: AsaConfig, outside: set[str]) -> tuple[list[NatSpec], list[str]]:
    """Destination translations seen from the internet side, in ASA's NAT order."""
    notes: list[str] = []
    specs: list[NatSpec] = []

    def facing(ifc: str) -> bool:
        return ifc.lower() == "any" or not outside or ifc.lower() in outside

    for name, number, text in config.object_nat:
        words = text.split()
        pair = _interfaces_pair(words[1]) if len(words) > 1 else None
        if pair is None or len(words) < 4 or words[2].lower() != "static":
            continue
        real_ifc, mapped_ifc = pair
        if not facing(mapped_ifc):
            continue
        obj = resolve_object(config, name)
        mapped = _nat_address(config, words[3], mapped_ifc)
        if mapped is None or not obj.addresses:
            config.issue(number, f"object NAT for {name} cannot be resolved offline")
            continue
        spec = NatSpec(number, text, real_ifc, mapped_ifc, 2, mapped, obj.addresses)
        if "service" in [w.lower() for w in words]:
            at = [w.lower() for w in words].index("service")
            try:
                spec.protocol = _protocol(words[at + 1]) or ANY_PROTOCOL
                spec.private_port = _port(words[at + 2])
                spec.public_ports = PortSet.single(_port(words[at + 3]))
            except (IndexError, _LineError):
                config.issue(number, "object NAT service clause not understood")
                continue
        specs.append(spec)
    for number, text in config.twice_nat:
        spec_or_none = _twice_nat(config, number, text, facing, notes)
        if spec_or_none is not None:
            specs.append(spec_or_none)
    for number, text in config.legacy_static:
        legacy = _legacy_static(config, number, text)
        if legacy is not None:
            specs.append(legacy)
    specs.sort(key=lambda s: s.section)  # stable: manual, object, after-auto
    return specs, notes


def _twice_nat(
    config: AsaConfig,
    number: int,
    text: str,
    facing: Callable[[str], bool],
    notes: list[str],
) -> NatSpec | None:
    words = text.split()
    lowered = [w.lower() for w in words]
    if "inactive" in lowered:
        return None
    if "description" in lowered:
        cut = lowered.index("description")
        words, lowered = words[:cut], lowered[:cut]
    index = 1
    real_ifc = mapped_ifc = "any"
    pair = _interfaces_pair(words[1]) if len(words) > 1 else None
    if pair is not None:
        real_ifc, mapped_ifc = pair
        index = 2
    elif len(words) > 1 and words[1].startswith("("):
        return None  # pre-8.3 `nat (inside) 1 ...`: dynamic NAT for outbound traffic only
    section = 1
    if index < len(words) and lowered[index] in ("after-auto", "after-object"):
        section = 3
        index += 1
    if index + 1 < len(words) and lowered[index] == "line":
        index += 2
    if lowered[index : index + 1] != ["source"]:
        config.issue(number, "NAT form not understood (object NAT belongs inside an object)")
        return None
    if len(words) < index + 4:
        config.issue(number, "NAT line ends early")
        return None
    src_kind, src_real, src_mapped = lowered[index + 1], words[index + 2], words[index + 3]
    rest = lowered[index + 4 :]
    rest_words = words[index + 4 :]
    dst: tuple[str, str] | None = None
    services: tuple[str, str] | None = None
    if "destination" in rest:
        at = rest.index("destination")
        if len(rest) >= at + 4 and rest[at + 1] == "static":
            dst = (rest_words[at + 2], rest_words[at + 3])
    if "service" in rest:
        at = rest.index("service")
        if len(rest) >= at + 3:
            services = (rest_words[at + 1], rest_words[at + 2])
    unidirectional = "unidirectional" in rest
    if dst is None:
        # `source static REAL MAPPED`: bidirectional; from the mapped side, MAPPED -> REAL.
        if src_kind != "static" or unidirectional or not facing(mapped_ifc):
            return None
        public = _nat_address(config, src_mapped, mapped_ifc)
        private = _nat_address(config, src_real, real_ifc)
        if public is None or private is None or public == IPSet.universe():
            return None
        spec = NatSpec(number, text, real_ifc, mapped_ifc, section, public, private)
        if services is not None:
            real_svc = resolve_services(config, services[0]) or []
            mapped_svc = resolve_services(config, services[1]) or []
            if real_svc and mapped_svc:
                spec.protocol = real_svc[0].protocol
                spec.private_port = _single_port(real_svc[0].src_ports or real_svc[0].dst_ports)
                spec.public_ports = mapped_svc[0].src_ports or mapped_svc[0].dst_ports
        return spec
    # `source ... destination static MAPPED REAL`: traffic from the real side to MAPPED goes
    # to REAL. Inbound when the real (source) interface faces the internet.
    if not facing(real_ifc):
        if src_real.lower() != "any":
            notes.append(
                f"line {number}: twice NAT applies only to traffic to/from {dst[1]}; "
                "not used for inbound mail"
            )
        return None
    public = _nat_address(config, dst[0], mapped_ifc)
    private = _nat_address(config, dst[1], mapped_ifc)
    if public is None or private is None or public == private:
        return None
    spec = NatSpec(number, text, real_ifc, mapped_ifc, section, public, private)
    if src_real.lower() != "any":
        spec.note = (
            f"line {number}: this NAT translates only traffic from {src_real}; the check "
            "assumes every source is translated"
        )
        notes.append(spec.note)
    if services is not None:
        mapped_svc = resolve_services(config, services[0]) or []
        real_svc = resolve_services(config, services[1]) or []
        if real_svc and mapped_svc:
            spec.protocol = real_svc[0].protocol
            spec.private_port = _single_port(real_svc[0].dst_ports)
            spec.public_ports = mapped_svc[0].dst_ports
    return spec


def _legacy_static(config: AsaConfig, number: int, text: str) -> NatSpec | None:
    """Pre-8.3 `static (inside,outside) [tcp] PUBLIC [PORT] REAL [PORT] [netmask M]`."""
    words = text.split()
    pair = _interfaces_pair(words[1])
    if pair is None:
        return None
    tokens = words[2:]
    protocol = ANY_PROTOCOL
    if tokens and tokens[0].lower() in ("tcp", "udp"):
        protocol = tokens[0].lower()
        tokens = tokens[1:]
    try:
        if protocol != ANY_PROTOCOL and len(tokens) >= 4:
            public_word, public_port, real_word, real_port = tokens[:4]
            public = _nat_address(config, public_word, pair[1])
            private = _nat_address(config, real_word, pair[0])
            if public is None or private is None:
                return None
            return NatSpec(
                number,
                text,
                pair[0],
                pair[1],
                2,
                public,
                private,
                PortSet.single(_port(public_port)),
                _port(real_port),
                protocol,
            )
        public = _nat_address(config, tokens[0], pair[1])
        private = _nat_address(config, tokens[1], pair[0])
    except (IndexError, _LineError):
        config.issue(number, "static NAT not understood")
        return None
    if public is None or private is None:
        return None
    return NatSpec(number, text, pair[0], pair[1], 2, public, private)


# ---------------------------------------------------------------------------------------------
# Choosing the ACL and building the policy
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    acls: tuple[str, ...]  # interface ACL(s) then global, evaluated in this order
    interface: str
    reason: str
    no_acl_deny: bool = False  # no ACL on the outside interface: security levels deny


def outside_interfaces(config: AsaConfig) -> list[Interface]:
    """Interfaces facing the internet: nameif `outside`, else the lowest security level."""
    named = [i for i in config.interfaces if i.nameif]
    exact = [i for i in named if i.nameif.lower() == "outside"]
    if exact:
        return exact
    if not named:
        return []
    lowest = min(i.level for i in named)
    return [i for i in named if i.level == lowest and lowest < 100]


def filtering_acls(config: AsaConfig) -> list[str]:
    return [
        name
        for name, entries in config.acls.items()
        if any(not a.remark for a in entries) and name not in config.other_acl_uses
    ]


def _is_ipv6_acl(config: AsaConfig, name: str) -> bool:
    aces = [a for a in config.acls.get(name, []) if not a.remark]
    return bool(aces) and all(a.ipv6_only for a in aces)


def select_acl(config: AsaConfig, options: ParseOptions) -> Selection:
    globals_ = [b[0] for b in config.bindings if b[1] == "global"]
    wanted_ifc = options.interface
    if options.acl:
        wanted = tuple(a.strip() for a in options.acl.split(",") if a.strip())
        for name in wanted:
            if name not in config.acls:
                known = ", ".join(sorted(config.acls)) or "none"
                raise FirewallParseError(
                    f"{config.path}: no access-list named {name!r} (ACLs found: {known})"
                )
        bound = [b for b in config.bindings if b[0] in wanted and b[1] == "in"]
        return Selection(
            (*wanted, *[g for g in globals_ if g not in wanted]),
            bound[0][2] if bound else "",
            "chosen with --acl",
        )
    inbound = [b for b in config.bindings if b[1] == "in"]
    candidates = (
        [i for i in config.interfaces if i.nameif.lower() == wanted_ifc.lower()]
        if wanted_ifc
        else outside_interfaces(config)
    )
    for ifc in candidates:
        on_ifc = [
            acl
            for acl, _direction, bound_ifc, _line in inbound
            if bound_ifc.lower() == ifc.nameif.lower() and acl in config.acls
        ]
        if not on_ifc:
            continue
        # A later binding replaces an earlier one; before 9.0 an `ipv6 access-list` is bound
        # beside the IPv4 one.
        v6_lists = [a for a in on_ifc if _is_ipv6_acl(config, a)]
        v4_lists = [a for a in on_ifc if not _is_ipv6_acl(config, a)]
        chosen = tuple(x[-1] for x in (v4_lists, v6_lists) if x)
        return Selection(
            (*chosen, *[g for g in globals_ if g not in chosen]),
            ifc.nameif,
            f"bound inbound on interface {ifc.nameif} (security-level {ifc.level})",
        )
    if globals_:
        ifc_name = candidates[0].nameif if candidates else ""
        return Selection(tuple(globals_), ifc_name, "the global access-group")
    if candidates and (config.bindings or not filtering_acls(config)):
        ifc = candidates[0]
        return Selection(
            (),
            ifc.nameif,
            f"interface {ifc.nameif} (security-level {ifc.level}) has no inbound access-group",
            no_acl_deny=True,
        )
    if not config.bindings and not inbound:
        usable = filtering_acls(config)
        if len(usable) == 1:
            reason = "the only access-list in the configuration (no access-group binding)"
            return Selection((usable[0],), candidates[0].nameif if candidates else "", reason)
        if not usable:
            return Selection(
                (),
                "",
                "the configuration holds no access-list: nothing from the internet is "
                "permitted to a higher security level",
                no_acl_deny=True,
            )
        raise FirewallParseError(
            f"{config.path}: {len(usable)} access-lists and no access-group binding the "
            f"internet-facing interface; choose one with --acl ({', '.join(usable)})"
        )
    raise FirewallParseError(
        f"{config.path}: cannot tell which access-list filters traffic from the internet; "
        f"choose one with --acl ({', '.join(filtering_acls(config)) or 'none found'})"
    )


def _logs_denies(config: AsaConfig) -> bool:
    """106023 (level 4, warnings) reaches some log destination."""
    warn_or_more = {"warnings", "4", "notifications", "5", "informational", "6", "debugging", "7"}
    return config.logging_enabled and any(level in warn_or_more for level in config.logging_levels)


def smtp_hosts(config: AsaConfig, nat: list[NatSpec], aces: list[Ace], port: int = 25) -> list[str]:
    """Addresses the configuration names as mail servers, as Exchange Online connects to them."""
    found: list[str] = []

    def public_of(address: str) -> str:
        for spec in nat:
            if address in spec.private and spec.public.size() == 1:
                return str(spec.public.networks()[0].network_address)
        return address

    def single(addresses: IPSet) -> str | None:
        if addresses.size() == 1:
            return str(addresses.networks()[0].network_address)
        return None

    for spec in nat:
        ports_25 = (spec.public_ports is not None and port in spec.public_ports) or (
            spec.private_port == port
        )
        host = single(spec.public)
        if ports_25 and host:
            found.append(host)
    for name, obj in config.objects.items():
        host = single(obj.addresses)
        if host and SMTP_NAME.search(name):
            found.append(public_of(host))
    for ace in [child for parent in aces for child in (parent.children or [parent])]:
        if ace.action != "permit" or ace.inactive or ace.destination is None:
            continue
        if any(s.protocol in ("tcp", "tcp-udp", ANY_PROTOCOL) for s in ace.services) and any(
            s.dst_ports is not None and port in s.dst_ports for s in ace.services
        ):
            # A host, or a small group of servers (an object-group of Exchange servers).
            destinations = ace.destination.addresses
            if 1 <= destinations.size() <= SMALL_GROUP:
                found.extend(
                    public_of(str(address))
                    for net in destinations.networks()
                    for address in (net if net.num_addresses > 1 else [net.network_address])
                )
    return list(dict.fromkeys(found))


def build_policy(config: AsaConfig, options: ParseOptions) -> tuple[Policy, Selection]:
    selection = select_acl(config, options)
    reset_all = "" in config.reset_inbound
    reset = reset_all or selection.interface.lower() in {
        i.lower() for i in config.reset_inbound if i
    }
    notes: list[str] = []
    rules: list[Rule] = []
    aces: list[Ace] = []
    for acl in selection.acls:
        for ace in config.acls.get(acl, []):
            if ace.remark:
                continue
            aces.append(ace)
            rules.extend(ace_rules(ace, config.path, reset))
            if ace.time_range and not ace.inactive:
                notes.append(
                    f"{config.path}:{ace.line}: the ACE applies only during time-range "
                    f"{ace.time_range}; it is evaluated as active"
                )
    chain_name = selection.acls[0] if selection.acls else "(no access-group)"
    drop_words = (
        "answers with a TCP reset (service resetinbound): Exchange Online reports 4.4.316"
        if reset
        else "drops silently: Exchange Online times out with 4.4.315"
    )
    logged = _logs_denies(config)
    if selection.no_acl_deny:
        default_text = (
            f"no access-group on interface {selection.interface}: the ASA denies traffic from a "
            f"lower to a higher security level; it {drop_words}"
        )
    else:
        lists = " then ".join(selection.acls)
        default_text = f"implicit deny at the end of access-list {lists} (the ASA {drop_words}" + (
            "; logged as 106023)" if logged else "; logged as 106023 only when logging is on)"
        )
    outside_names = {i.nameif.lower() for i in outside_interfaces(config)}
    if selection.interface:
        outside_names.add(selection.interface.lower())
    nat_specs, nat_notes = build_nat(config, outside_names)
    notes.extend(nat_notes)
    modern_twice = [t for _n, t in config.twice_nat if " source " in f" {t.lower()} "]
    legacy = bool(config.legacy_static) and not config.object_nat and not modern_twice
    if legacy:
        notes.append("pre-8.3 NAT (`static`): access-lists name the public (mapped) address")
    if reset:
        notes.append(
            "service resetinbound: denied inbound TCP is answered with a reset, so Exchange "
            "Online sees 4.4.316 Connection refused instead of a 4.4.315 timeout"
        )
    notes.append(f"access-list chosen: {', '.join(selection.acls) or 'none'} ({selection.reason})")
    chain = Chain(
        chain_name,
        tuple(rules),
        Action.REJECT if reset else Action.DENY,
        Origin(config.path, None, default_text),
        default_logged=logged,
    )
    nat = tuple(
        DestinationNat(
            public=s.public,
            private=s.private,
            origin=Origin(config.path, s.line, s.text.strip()),
            public_ports=s.public_ports,
            private_port=s.private_port,
            protocol=s.protocol,
        )
        for s in nat_specs
    )
    policy = Policy(
        vendor=VENDOR,
        path=config.path,
        chains={chain_name: chain},
        entries=(chain_name,),
        nat=nat,
        destination_view=DestinationView.PRE_NAT if legacy else DestinationView.POST_NAT,
        acl_name=",".join(selection.acls),
        inbound_interfaces=frozenset({selection.interface}) if selection.interface else None,
        smtp_hosts=tuple(smtp_hosts(config, nat_specs, aces)),
        notes=tuple(dict.fromkeys(notes)),
        default_deny_logged=logged,
        all_acls=tuple(config.acls),
    )
    return policy, selection


def parse_config(text: str, path: str, options: ParseOptions | None = None) -> ParseResult:
    """Parse ASA text into the neutral policy; raises FirewallParseError only if nothing usable."""
    config = read_config(text, path)
    policy, _ = build_policy(config, options or ParseOptions())
    return ParseResult(policy, tuple(config.issues))


# ---------------------------------------------------------------------------------------------
# Remediation
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Patch:
    lines: tuple[str, ...]
    inserts: tuple[tuple[int, tuple[str, ...]], ...]  # (insert before 0-based line, lines)
    explanation: str
    not_enough: str = "This change alone is not enough"


def _apply(text: str, inserts: tuple[tuple[int, tuple[str, ...]], ...]) -> str:
    lines = text.splitlines()
    for index, new in sorted(inserts, key=lambda item: item[0], reverse=True):
        lines[index:index] = list(new)
    return "\n".join(lines) + "\n"


def _network_object_lines(missing: IPSet) -> tuple[str, ...]:
    return tuple(f" network-object {_network_words(net)}" for net in missing.networks())


def _acl_position(config: AsaConfig, acl: str, line: int) -> int:
    """ASA `line N` of the entry at file line `line` (remarks count as lines)."""
    for index, ace in enumerate(config.acls.get(acl, []), start=1):
        if ace.line == line:
            return index
    return len(config.acls.get(acl, [])) + 1


def _unique_acl_name(config: AsaConfig, wanted: str) -> str:
    name = wanted
    counter = 2
    while name in config.acls:
        name = f"{wanted}_{counter}"
        counter += 1
    return name


def _unique_group_name(config: AsaConfig, wanted: str) -> str:
    name = wanted
    counter = 2
    while name in config.groups or name in config.objects or name in config.services:
        name = f"{wanted}_{counter}"
        counter += 1
    return name


def _permitting_ace(config: AsaConfig, check: RangeCheck, acls: tuple[str, ...]) -> Ace | None:
    """The admin's ACE that permits TCP to the server from an object-group holding EOP.

    Only a group that already holds published EOP ranges qualifies: adding EOP to a group of
    management hosts, say, would open whatever else that group is trusted with.
    """
    published = IPSet.parse(*(v.range for v in check.verdicts)) if check.verdicts else IPSet()
    permitted_lines = {
        d.origin.line
        for d in check.evaluation.decisions
        if d.action == Action.PERMIT and d.origin is not None and d.origin.line
    }
    fallback: Ace | None = None
    for acl in acls:
        for ace in config.acls.get(acl, []):
            if ace.remark or ace.action != "permit" or ace.inactive or ace.source is None:
                continue
            if ace.line not in permitted_lines:
                continue
            if ace.source.group and ace.source.addresses.overlaps(published):
                return ace
            if fallback is None:
                fallback = ace
    return fallback


def _deciding_denies(check: RangeCheck) -> list[int]:
    lines: list[int] = []
    for decision in check.evaluation.decisions:
        if (
            decision.action != Action.PERMIT
            and not decision.implicit
            and decision.origin is not None
            and decision.origin.line is not None
            and decision.sources.overlaps(check.missing)
        ):
            lines.append(decision.origin.line)
    return lines


def _ace_command(config: AsaConfig, acl: str, position: int | None, body: str) -> str:
    """An ACE in the ACL's own form: `access-list X [line N] extended ...` or `ipv6 ...`."""
    at = f" line {position}" if position is not None else ""
    if _is_ipv6_acl(config, acl):
        return f"ipv6 access-list {acl}{at} {body}"
    return f"access-list {acl}{at} extended {body}"


def plan_patches(config: AsaConfig, selection: Selection, check: RangeCheck) -> list[_Patch]:
    """Candidate patches, least intrusive first; the caller keeps the first that verifies."""
    missing = check.missing
    evaluation = check.evaluation
    port = evaluation.port
    port_words = "eq smtp" if port == 25 else f"eq {port}"
    patches: list[_Patch] = []
    ace = _permitting_ace(config, check, selection.acls)
    denies = _deciding_denies(check)
    acl_of_line = {a.line: a.acl for name in selection.acls for a in config.acls.get(name, [])}
    if denies and min(denies) in acl_of_line:
        acl = acl_of_line[min(denies)]
    elif ace is not None:
        acl = ace.acl
    elif selection.acls:
        acl = selection.acls[0]
    else:
        acl = _unique_acl_name(config, "OUTSIDE_IN")
    network_lines = _network_object_lines(missing)
    published = IPSet.parse(*(v.range for v in check.verdicts)) if check.verdicts else IPSet()
    if (
        ace is not None
        and ace.source is not None
        and ace.source.group in config.groups
        and ace.source.addresses.overlaps(published)
    ):
        group = config.groups[ace.source.group]
        lines = (f"object-group network {group.name}", *network_lines)
        users = sum(
            1
            for entries in config.acls.values()
            for other in entries
            if (other.source is not None and other.source.group == group.name)
            or (other.destination is not None and other.destination.group == group.name)
        )
        explanation = (
            f"Add the missing ranges to object-group {group.name}, which access-list "
            f"{ace.acl} already permits on TCP {port} (line {ace.line})."
        )
        if users > 1:
            explanation += f" The group is used by {users} ACEs; all of them will match more."
        patches.append(
            _Patch(
                lines,
                ((group.body_end, network_lines),),
                explanation,
                f"Adding the ranges to object-group {group.name} is not enough",
            )
        )
    # A new group and an ACE placed before anything that would shadow it.
    new_group = _unique_group_name(config, "EOP_SMTP_SOURCES")
    dst_words = (
        " ".join(ace.dst_words)
        if ace is not None and ace.dst_words
        else f"host {evaluation.effective_destination}"
    )
    if ace is not None and ace.dst_words and any(w in PORT_OPERATORS for w in ace.dst_words):
        ace_port = ""
    else:
        ace_port = f" {port_words}"
    body = f"permit tcp object-group {new_group} {dst_words}{ace_port}"
    new_ace = _ace_command(config, acl, None, body)
    entries = config.acls.get(acl, [])
    before_line: int | None = min(denies) if denies else None
    if before_line is None and ace is not None:
        # Keep the new ACE next to the one the admin already has.
        later = [a for a in entries if a.line > ace.line]
        before_line = later[0].line if later else None
    group_block = (f"object-group network {new_group}", *network_lines)
    first_acl_line = entries[0].line if entries else None
    inserts: list[tuple[int, tuple[str, ...]]] = []
    if before_line is not None:
        position = _acl_position(config, acl, before_line)
        shown = _ace_command(config, acl, position, body)
        inserts.append((before_line - 1, (new_ace,)))
        where = f"at line {position} of access-list {acl}, above the entry that would deny it"
        if denies:
            shadow = config.lines[before_line - 1].strip()
            where += (
                f" (config line {before_line}: `{shadow}`; it denies published Exchange "
                "Online addresses, so check why it is there)"
            )
    else:
        shown = new_ace
        end = entries[-1].line if entries else len(config.lines)
        inserts.append((end, (new_ace,)))
        where = f"at the end of access-list {acl}"
    group_at = (first_acl_line - 1) if first_acl_line is not None else len(config.lines)
    inserts.append((min(group_at, inserts[0][0]), group_block))
    lines_b: list[str] = [*group_block, shown]
    if not selection.acls or selection.no_acl_deny:
        ifc = selection.interface or "outside"
        binding = f"access-group {acl} in interface {ifc}"
        lines_b.append(binding)
        inserts.append((len(config.lines) + 1, (binding,)))
    patches.append(
        _Patch(
            tuple(lines_b),
            tuple(inserts),
            f"Create object-group {new_group} with the missing ranges and permit it {where}.",
        )
    )
    return patches


def stale_cleanup(config: AsaConfig, check: RangeCheck) -> tuple[str, ...]:
    """Optional: `no network-object` lines for permitted ranges EOP no longer uses."""
    if not check.stale:
        return ()
    lines: list[str] = []
    for group in config.groups.values():
        removals: list[str] = []
        for member in group.members:
            if member.kind == "net":
                addresses = member.addresses
                words = member.value
            elif member.kind == "object":
                addresses = resolve_object(config, member.value).addresses
                words = f"object {member.value}"
            else:
                continue
            if addresses and addresses.issubset(check.stale):
                removals.append(f" no network-object {words}")
        if removals:
            lines.extend([f"object-group network {group.name}", *removals])
    return tuple(lines)


def _selection_of(policy: Policy) -> Selection:
    """The ACL choice the parse made, read back from the policy."""
    acls = tuple(a for a in policy.acl_name.split(",") if a)
    interface = next(iter(policy.inbound_interfaces or ()), "")
    return Selection(acls, interface, "as parsed", no_acl_deny=not acls)


def remediate_text(text: str, result: ParseResult, check: RangeCheck) -> Remediation | None:
    """ASA lines that permit `check.missing`, verified by re-parsing and re-evaluating."""
    config = read_config(text, result.policy.path)
    cleanup = stale_cleanup(config, check)
    if not check.missing:
        if not cleanup:
            return None
        return Remediation((), "Every published range is permitted.", None, (), cleanup)
    selection = _selection_of(result.policy)
    options = ParseOptions(acl=",".join(selection.acls)) if selection.acls else ParseOptions()
    warnings: list[str] = []
    tried: list[str] = []
    published = [v.range for v in check.verdicts]
    for patch in plan_patches(config, selection, check):
        patched = _apply(text, patch.inserts)
        try:
            reparsed = parse_config(patched, result.policy.path, options)
            again = check_ranges(
                reparsed.policy,
                check.evaluation.destination,
                published,
                port=check.evaluation.port,
            )
        except (FirewallParseError, ValueError) as exc:
            warnings.append(f"a candidate change could not be verified: {exc}")
            continue
        if not again.missing:
            return Remediation(
                patch.lines,
                " ".join(
                    [
                        *tried,
                        patch.explanation,
                        "Verified: with these lines the configuration permits every "
                        "published range.",
                    ]
                ),
                patched,
                tuple(warnings),
                cleanup,
            )
        tried.append(
            f"{patch.not_enough}: {', '.join(again.missing.cidrs())} would still be denied "
            "by an earlier entry."
        )
    return Remediation(
        (),
        "No change could be verified to permit every published range; fix the ACL by hand.",
        None,
        (*warnings, *tried),
        cleanup,
    )


def sniff_text(text: str) -> int:
    head = text[:200_000]
    if re.search(r"^\s*(?:ASA|FTD|NGFW) Version \d", head, re.MULTILINE | re.IGNORECASE):
        return 100
    if re.search(r"^\s*access-list \S+ (?:line \d+ )?extended (?:permit|deny) ", head, re.M):
        return 90
    if re.search(r"^\s*(?:nameif|security-level) ", head, re.MULTILINE):
        return 60
    if re.search(r"^access-list \S+ remark ", head, re.MULTILINE) and not re.search(
        r"^ip access-list ", head, re.MULTILINE
    ):
        return 40
    if re.search(r"^object-group network \S+\s*$", head, re.MULTILINE) and re.search(
        r"^ network-object ", head, re.MULTILINE
    ):
        return 30
    return 0


@register_parser
class CiscoAsaParser:
    """Cisco ASA `show running-config`, or ACL lines pasted without the rest."""

    vendor = VENDOR
    label = "Cisco ASA / FTD (ASA syntax)"

    def sniff(self, text: str) -> int:
        return sniff_text(text)

    def parse(self, text: str, path: str, options: ParseOptions) -> ParseResult:
        return parse_config(text, path, options)

    def remediate(self, text: str, result: ParseResult, check: RangeCheck) -> Remediation | None:
        return remediate_text(text, result, check)


__all__ = [
    "VENDOR",
    "AsaConfig",
    "CiscoAsaParser",
    "parse_config",
    "read_config",
    "remediate_text",
    "sniff_text",
]
