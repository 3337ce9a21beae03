"""The vendor-neutral policy model every firewall parser produces.

The question the tool asks of a firewall is narrow: for traffic arriving from the internet on
TCP to one destination address and port, which source addresses are let through? So a rule
keeps its full match (sources, destinations, protocol, ports, interfaces or zones), and the
evaluator fixes everything but the source, which turns each rule into a set of source
addresses. Chains with jumps (iptables), several base chains on one hook (nftables), first match
(ASA, IOS, PAN-OS, FortiGate, pfSense) and "any block wins" (Windows) all reduce to that.

A parser's job is to produce `Policy`; NAT, zones and bindings are resolved by the parser into
the chain(s) and destination that the evaluator should use, recorded in `Policy.nat`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from mailflow_doctor.knowledge.ipranges import IPSet


class Action(StrEnum):
    PERMIT = "permit"
    DENY = "deny"  # silent drop
    REJECT = "reject"  # refused: TCP reset or ICMP unreachable
    JUMP = "jump"  # evaluate `target` chain; fall through here when it returns
    GOTO = "goto"  # evaluate `target` chain; its fall-through ends in the caller's caller
    RETURN = "return"  # stop this chain and go back to the caller
    CONTINUE = "continue"  # log / count / mark only: matching goes on

    @property
    def terminal(self) -> bool:
        return self in (Action.PERMIT, Action.DENY, Action.REJECT)


class Combine(StrEnum):
    """How several entry chains combine."""

    ALL_MUST_ACCEPT = "all_must_accept"  # nftables base chains on one hook, ASA+NAT layers
    BLOCK_WINS = "block_wins"  # Windows Defender Firewall: any matching block beats allows


@dataclass(frozen=True)
class PortSet:
    """A set of ports as closed ranges; `None` on a rule means any port."""

    ranges: tuple[tuple[int, int], ...]

    @classmethod
    def single(cls, port: int) -> PortSet:
        return cls(((port, port),))

    @classmethod
    def of(cls, *ranges: tuple[int, int]) -> PortSet:
        return cls(tuple(sorted(ranges)))

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and any(lo <= port <= hi for lo, hi in self.ranges)

    def negated(self) -> PortSet:
        result: list[tuple[int, int]] = []
        cursor = 0
        for lo, hi in sorted(self.ranges):
            if lo > cursor:
                result.append((cursor, lo - 1))
            cursor = max(cursor, hi + 1)
        if cursor <= 65535:
            result.append((cursor, 65535))
        return PortSet(tuple(result))


@dataclass(frozen=True)
class Origin:
    """The configuration line a rule or object came from."""

    path: str
    line: int | None
    text: str

    def to_json(self) -> dict[str, object]:
        return {"path": self.path, "line": self.line, "text": self.text}


# Protocol names as parsers normalise them: "ip" (any), "tcp", "udp", "icmp", "tcp-udp", or a
# number as a string.
ANY_PROTOCOL = "ip"


@dataclass(frozen=True)
class Rule:
    """One rule: what it matches and what it does.

    `sources` and `destinations` are already resolved (objects, groups, negation) into sets.
    A field left at its default matches anything. `matches_nothing_reason` marks a rule that
    cannot match offline (an FQDN object, a dynamic group, an EDL); it is then skipped and the
    reason reported.
    """

    action: Action
    origin: Origin
    sources: IPSet = field(default_factory=IPSet.universe)
    destinations: IPSet = field(default_factory=IPSet.universe)
    protocol: str = ANY_PROTOCOL
    dst_ports: PortSet | None = None
    src_ports: PortSet | None = None
    in_interfaces: frozenset[str] | None = None  # interfaces / zones traffic must arrive on
    out_interfaces: frozenset[str] | None = None  # interfaces / zones traffic must leave on
    target: str | None = None  # chain name for JUMP / GOTO
    enabled: bool = True
    name: str = ""  # rule id / name / sequence as the vendor shows it
    logs: bool = False
    unresolved: tuple[str, ...] = ()  # object names that could not be resolved offline
    matches_nothing_reason: str = ""

    def matches_protocol(self, protocol: str) -> bool:
        if self.protocol in (ANY_PROTOCOL, "any", "all", "0"):
            return True
        if self.protocol == "tcp-udp":
            return protocol in ("tcp", "udp")
        return self.protocol == protocol or (self.protocol == "6" and protocol == "tcp")


@dataclass(frozen=True)
class Chain:
    """An ordered rule list with what happens to traffic that matches no rule."""

    name: str
    rules: tuple[Rule, ...]
    default: Action = Action.DENY  # PERMIT/DENY/REJECT, or RETURN for user chains
    default_origin: Origin | None = None  # where the default is stated, if anywhere
    default_logged: bool = False  # does the device log traffic that falls off the end?
    # Entry chains only: the address family the chain filters (iptables vs ip6tables, nftables
    # `ip`/`ip6` tables; None: both), and whether it runs before destination NAT (iptables
    # raw/mangle PREROUTING, nftables prerouting chains ahead of the dnat priority).
    family: int | None = None
    pre_nat: bool = False


@dataclass(frozen=True)
class DestinationNat:
    """A static destination translation: traffic to `public` is delivered to `private`."""

    public: IPSet
    private: IPSet
    origin: Origin
    public_ports: PortSet | None = None  # None: all ports
    private_port: int | None = None  # translated port, if it changes
    protocol: str = ANY_PROTOCOL
    in_interfaces: frozenset[str] | None = None
    # Entry chains for translated traffic (Linux: DNAT to another host is FORWARDed, not
    # INPUT); empty means the policy's own entries.
    entries: tuple[str, ...] = ()

    def translate(self, address: str, port: int, protocol: str) -> tuple[str, int] | None:
        """Return the inside (address, port) when this rule translates the given target."""
        if address not in self.public:
            return None
        if self.public_ports is not None and port not in self.public_ports:
            return None
        if self.protocol not in (ANY_PROTOCOL, protocol, "tcp-udp"):
            return None
        nets = self.private.networks()
        if not nets:
            return None
        private_address = str(nets[0].network_address)
        if self.public.size() == self.private.size() and self.public.size() > 1:
            # 1:1 subnet NAT keeps the host part.
            public_nets = self.public.networks()
            offset = int(_addr(address)) - int(public_nets[0].network_address)
            private_address = str(nets[0].network_address + offset)
        return private_address, self.private_port or port


def _addr(text: str) -> int:
    import ipaddress

    return int(ipaddress.ip_address(text))


class DestinationView(StrEnum):
    """Which address a vendor's rules are written against when NAT applies."""

    # ASA 8.3+, iptables FORWARD/INPUT, pfSense: rules name the real (inside) address.
    POST_NAT = "post_nat"
    # PAN-OS (with the post-NAT zone), FortiGate VIP objects: rules name the public address.
    PRE_NAT = "pre_nat"


@dataclass(frozen=True)
class Policy:
    """A parsed configuration, ready for evaluation."""

    vendor: str  # "cisco-asa", "cisco-ios", "iptables", "nftables", "panos", "fortigate", ...
    path: str
    chains: dict[str, Chain]
    entries: tuple[str, ...]  # entry chain names, evaluated in order
    combine: Combine = Combine.ALL_MUST_ACCEPT
    nat: tuple[DestinationNat, ...] = ()
    destination_view: DestinationView = DestinationView.POST_NAT
    acl_name: str = ""  # the ACL / rule base chosen (for reports)
    inbound_interfaces: frozenset[str] | None = None  # interfaces/zones facing the internet
    smtp_hosts: tuple[str, ...] = ()  # addresses the config names as mail servers, if any
    notes: tuple[str, ...] = ()  # parse remarks worth showing (unresolved objects, defaults ...)
    default_deny_logged: bool = False
    all_acls: tuple[str, ...] = ()
    # Stateless or partly stateful rule sets (iptables, nftables) judge every packet, not only
    # the first SYN: a connection works only if the packets after it (conntrack ESTABLISHED,
    # TCP ACK) are let through too. Parsers of such vendors put the policy as it treats those
    # packets here; None means the device keeps state and lets replies of accepted
    # connections through by itself.
    established: Policy | None = None

    def rule_count(self) -> int:
        return sum(len(c.rules) for c in self.chains.values())
