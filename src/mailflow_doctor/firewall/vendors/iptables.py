"""Linux iptables: `iptables-save` / `ip6tables-save` text (and pasted `iptables -A` commands).

What a new inbound TCP SYN to port 25 meets, in kernel order:
raw PREROUTING, mangle PREROUTING (both before DNAT), nat PREROUTING (DNAT decides where it
goes), then for a locally delivered connection mangle INPUT and filter INPUT, and for one that
is DNATed to another host mangle FORWARD and filter FORWARD, which see the translated (inside)
destination. A chain ends at ACCEPT, DROP or REJECT; LOG and other non-terminal targets go on;
a user chain that returns (RETURN or falling off its end) resumes the caller; a built-in chain
with no matching rule applies its policy, which the kernel does not log.

Choices the file cannot make for us, documented here and in `Policy.notes`:
- Traffic that is not DNATed is evaluated against INPUT (the Linux host is the mail server);
  `ParseOptions.acl="FORWARD"` evaluates it against FORWARD instead (a router in front).
- The inbound interface is `ParseOptions.interface`, else the `-i` of the DNAT rule for port
  25, else the interface most often named by `-i` on rules that match TCP 25, else the only
  non-loopback interface named anywhere; when none can be chosen, rules limited to an inbound
  interface are taken not to match (and a note says so).
- A new SYN is conntrack state NEW: rules that need ESTABLISHED/RELATED/INVALID never match it.
- `-o` conditions are assumed to match (the out interface towards the mail server).
- ipset contents come from `ipset save` lines (`create` / `add`) in the same file.
"""

from __future__ import annotations

import re
import shlex
from collections import Counter
from dataclasses import dataclass, field, replace

from mailflow_doctor.firewall.evaluate import RangeCheck, evaluate
from mailflow_doctor.firewall.model import (
    ANY_PROTOCOL,
    Action,
    Chain,
    DestinationNat,
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
    cleanup_only,
    insert_until_closed,
    judging_follow_up,
    judging_follow_up_packets,
    mentions_packet_state,
    packet_flags,
    packet_state,
    reject_action,
)
from mailflow_doctor.knowledge.ipranges import AddressParseError, IPSet

BUILTIN = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "raw": ("PREROUTING", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}
LOCAL_PATH = (
    ("raw", "PREROUTING"),
    ("mangle", "PREROUTING"),
    ("mangle", "INPUT"),
    ("filter", "INPUT"),
    ("security", "INPUT"),
)
FORWARD_PATH = (
    ("raw", "PREROUTING"),
    ("mangle", "PREROUTING"),
    ("mangle", "FORWARD"),
    ("filter", "FORWARD"),
    ("security", "FORWARD"),
)
PRE_NAT = {("raw", "PREROUTING"), ("mangle", "PREROUTING")}
TERMINAL = {"ACCEPT": Action.PERMIT, "DROP": Action.DENY, "REJECT": Action.REJECT}


# Targets that end NAT processing in the nat table.
NAT_TARGETS = {"DNAT", "REDIRECT", "ACCEPT", "RETURN", "SNAT", "MASQUERADE", "NETMAP"}
# Targets that let the packet go on (logging, marking, NAT, ...); any other name is a chain.
NON_TERMINAL_TARGETS = {
    *[
        "LOG",
        "NFLOG",
        "ULOG",
        "MARK",
        "CONNMARK",
        "CT",
        "NOTRACK",
        "TRACE",
        "AUDIT",
        "CLASSIFY",
        "TCPMSS",
        "DSCP",
        "TOS",
        "TTL",
        "HL",
    ],
    *[
        "SET",
        "CHECKSUM",
        "SECMARK",
        "CONNSECMARK",
        "IDLETIMER",
        "LED",
        "NETMAP",
        "DNAT",
        "SNAT",
        "MASQUERADE",
    ],
    *[
        "REDIRECT",
        "TEE",
        "TPROXY",
        "HMARK",
        "RATEEST",
        "QUEUE",
        "NFQUEUE",
        "TARPIT",
        "ECN",
        "CLUSTERIP",
        "SYNPROXY",
    ],
}
ONE_ARGUMENT = {"--comment", "--log-prefix", "--nflog-prefix"}
NO_INTERFACE = "<inbound interface not named in the file>"
SERVICES = {
    "smtp": 25,
    "ssh": 22,
    "http": 80,
    "https": 443,
    "submission": 587,
    "smtps": 465,
    "submissions": 465,
    "domain": 53,
    "imap": 143,
    "imaps": 993,
    "pop3": 110,
    "pop3s": 995,
    "ftp": 21,
    "telnet": 23,
}
PROTOCOL_ALIASES = {"6": "tcp", "17": "udp", "1": "icmp", "all": ANY_PROTOCOL, "0": ANY_PROTOCOL}
# Matches whose outcome for a first SYN from a mail server is known without state.
BENIGN_MATCHES = {
    "tcp",
    "udp",
    "comment",
    "multiport",
    "iprange",
    "conntrack",
    "state",
    "set",
    "limit",
    "hashlimit",
    "connlimit",
    "addrtype",
    "recent",
    "icmp",
    "icmp6",
    "icmpv6",
    "mark",
    "connmark",
    "pkttype",
    "physdev",
    "rpfilter",
}


@dataclass
class IpsetDef:
    name: str
    kind: str
    family: int
    # (prefix length, addresses, nomatch) per `add` line: hash:net looks up the most specific
    # entry that contains the address, and a `nomatch` entry there means "not in the set".
    entries: list[tuple[int, IPSet, bool]] = field(default_factory=list)
    list_members: list[str] = field(default_factory=list)
    create_line: int = 0
    last_line: int = 0


@dataclass
class ParsedRule:
    """One `-A`/`-I` line with everything the policy model needs and the raw facts for NAT."""

    table: str
    chain: str
    family: int
    line: int
    text: str
    rule: Rule
    target: str
    options: dict[str, str]
    sources_conditional: bool
    in_interface: tuple[bool, str] | None  # (negated, name)


@dataclass
class _State:
    path: str
    options: ParseOptions
    issues: list[tuple[int | None, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # (family, table) -> chain -> (policy, origin)
    chains: dict[tuple[int, str], dict[str, tuple[str, Origin | None]]] = field(
        default_factory=dict
    )
    rules: list[ParsedRule] = field(default_factory=list)
    ipsets: dict[str, IpsetDef] = field(default_factory=dict)


def _family_of_text(text: str) -> int | None:
    for token in re.findall(r"(?:^|\s)-[sd]\s+!?\s*(\S+)|--(?:src|dst)-range\s+(\S+)", text):
        value = token[0] or token[1]
        if ":" in value:
            return 6
        if re.match(r"\d+\.\d+\.\d+\.\d+", value):
            return 4
    if re.search(r"icmpv6|ipv6-icmp|icmp6", text):
        return 6
    return None


def _split(text: str) -> list[str]:
    try:
        return shlex.split(text, comments=False, posix=True)
    except ValueError:
        return text.split()


def _ports(text: str) -> PortSet:
    ranges: list[tuple[int, int]] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo_text, sep, hi_text = part.partition(":")
        lo = _port(lo_text) if lo_text else 0
        hi = _port(hi_text) if sep and hi_text else (65535 if sep else lo)
        if lo > hi:
            lo, hi = hi, lo
        ranges.append((lo, hi))
    if not ranges:
        raise ValueError(f"no ports in {text!r}")
    return PortSet.of(*ranges)


def _port(text: str) -> int:
    text = text.strip().lower()
    if text in SERVICES:
        return SERVICES[text]
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(f"port out of range: {text}")
    return value


def _addresses(text: str, family: int) -> IPSet:
    result = IPSet()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        result = result | IPSet.parse(part)
    return result.only(4 if family == 4 else 6)


def _family_universe(family: int) -> IPSet:
    return IPSet.all_v4() if family == 4 else IPSet.all_v6()


def _interface_matches(pattern: str, name: str) -> bool:
    if pattern.endswith("+"):
        return name.startswith(pattern[:-1])
    return pattern == name


class _RuleBuilder:
    """Turns the tokens of one rule into a `Rule` (sources, ports, target, state)."""

    def __init__(self, state: _State, table: str, chain: str, family: int, line: int, text: str):
        self.state = state
        self.table = table
        self.chain = chain
        self.family = family
        self.line = line
        self.text = text
        self.sources = _family_universe(family)
        self.destinations = _family_universe(family)
        self.protocol = ANY_PROTOCOL
        self.protocol_negated = False
        self.dst_ports: PortSet | None = None
        self.src_ports: PortSet | None = None
        self.never = False  # cannot match a new inbound SYN
        self.unresolved: list[str] = []
        self.cannot: str = ""
        self.target = ""
        self.goto = False
        self.options: dict[str, str] = {}
        self.source_conditional = False
        self.in_interface: tuple[bool, str] | None = None
        self.out_interface: tuple[bool, str] | None = None

    def issue(self, message: str) -> None:
        self.state.issues.append((self.line, message))

    def build(self, tokens: list[str]) -> ParsedRule:
        index = 0
        negate = False
        while index < len(tokens):
            opt = tokens[index]
            index += 1
            if opt == "!":
                negate = True
                continue
            args: list[str] = []
            if opt in ONE_ARGUMENT:
                if index < len(tokens):
                    args.append(tokens[index])
                    index += 1
            else:
                while index < len(tokens):
                    word = tokens[index]
                    if word.startswith("-") and len(word) > 1:
                        break
                    if word == "!" and args:
                        break  # negates the next option
                    index += 1
                    if word == "!":
                        negate = True  # old style: `-s ! 1.2.3.4`
                    else:
                        args.append(word)
            try:
                self.option(opt, args, negate)
            except (ValueError, AddressParseError) as exc:
                self.issue(f"cannot read {opt} {' '.join(args)}: {exc}")
                self.cannot = f"the option {opt} {' '.join(args)} could not be read"
            negate = False
        return self.finish()

    def option(self, opt: str, args: list[str], negate: bool) -> None:
        arg = args[0] if args else ""
        if opt in ("-p", "--protocol"):
            proto = arg.lower()
            self.protocol = PROTOCOL_ALIASES.get(proto, proto)
            self.protocol_negated = negate
        elif opt in ("-s", "--source", "--src"):
            self.restrict_sources(_addresses(arg, self.family), negate)
        elif opt in ("-d", "--destination", "--dst"):
            self.restrict_destinations(_addresses(arg, self.family), negate)
        elif opt == "--src-range":
            first, _, last = arg.partition("-")
            self.restrict_sources(IPSet.from_range(first, last), negate)
        elif opt == "--dst-range":
            first, _, last = arg.partition("-")
            self.restrict_destinations(IPSet.from_range(first, last), negate)
        elif opt in ("--dport", "--destination-port", "--dports", "--destination-ports", "--ports"):
            ports = _ports(arg)
            self.dst_ports = ports.negated() if negate else ports
        elif opt in ("--sport", "--source-port", "--sports", "--source-ports"):
            ports = _ports(arg)
            self.src_ports = ports.negated() if negate else ports
        elif opt in ("-i", "--in-interface"):
            self.in_interface = (negate, arg)
        elif opt in ("-o", "--out-interface"):
            self.out_interface = (negate, arg)
        elif opt in ("-j", "--jump"):
            self.target = arg
            self.goto = False
        elif opt in ("-g", "--goto"):
            self.target = arg
            self.goto = True
        elif opt in ("-m", "--match"):
            if arg not in BENIGN_MATCHES:
                self.options.setdefault("unknown-match", arg)
        elif opt in ("--state", "--ctstate"):
            states = {s.upper() for s in arg.split(",")}
            if (packet_state() in states) == negate:
                self.never = True
        elif opt == "--match-set":
            name = arg
            directions = args[1] if len(args) > 1 else "src"
            self.match_set(name, directions.split(",")[0], negate)
        elif opt == "--syn":
            # --syn: SYN set, ACK/RST/FIN clear: the first packet only.
            if (packet_flags() == {"SYN"}) == negate:
                self.never = True
        elif opt == "--tcp-flags":
            if len(args) >= 2:
                mask = set(args[0].upper().split(","))
                comp = set(args[1].upper().split(","))
                if "ALL" in mask:
                    mask = {"SYN", "ACK", "FIN", "RST", "URG", "PSH"}
                if "NONE" in comp:
                    comp = set()
                matches = (mask & packet_flags()) == (comp & mask)
                if matches == negate:
                    self.never = True
        elif opt == "--dst-type" or opt == "--src-type":
            types = {t.upper() for t in arg.split(",")}
            if opt == "--src-type" and types & {"LOCAL", "BROADCAST", "MULTICAST"} and not negate:
                self.never = True
        elif opt in ("--rcheck", "--update"):
            # `-m recent --update --hitcount N`: a first connection has no history.
            self.never = not negate
        elif opt in ("--connlimit-above",):
            self.never = not negate
        elif opt in ("--limit", "--hashlimit", "--hashlimit-upto"):
            pass  # assume the mail server is under the limit
        elif opt == "--hashlimit-above":
            self.never = True
        elif opt in ("--mac-source",):
            self.cannot = "matches a MAC address, which the configuration alone cannot tell"
        elif opt in ("--uid-owner", "--gid-owner", "--pid-owner"):
            self.never = True  # owner matches apply to locally generated traffic only
        elif opt in ("--to-destination", "--to-ports", "--to", "--reject-with", "--log-prefix"):
            self.options[opt] = arg
        elif opt in ("--mark", "--ctmark"):
            # A new connection from outside carries mark 0 unless earlier rules set one.
            value = arg.split("/")[0]
            is_zero = value in ("0", "0x0", "0x00000000")
            if is_zero == negate:
                self.never = True
        elif opt.startswith("-") and opt not in (
            "-c",
            "--set-counters",
            "--comment",
            "--log-level",
            "--log-tcp-options",
            "--log-ip-options",
            "--log-uid",
            "--log-tcp-sequence",
            "--limit-burst",
            "--nflog-group",
            "--nflog-prefix",
            "--set",
            "--name",
            "--seconds",
            "--hitcount",
            "--rsource",
            "--rdest",
            "--mask",
            "--remove",
            "--ctdir",
            "--icmp-type",
            "--icmpv6-type",
            "--physdev-in",
            "--physdev-out",
            "--physdev-is-bridged",
            "--set-mark",
            "--set-xmark",
            "--save-mark",
            "--restore-mark",
            "--queue-num",
            "--queue-bypass",
            "--pkt-type",
            "--hashlimit-name",
            "--hashlimit-mode",
            "--hashlimit-burst",
            "--hashlimit-htable-expire",
            "--connlimit-mask",
            "--connlimit-upto",
            "--to-source",
            "--random",
            "--persistent",
            "--notrack",
            "--zone",
            "--loose",
            "--validmark",
            "--invert",
            "--clamp-mss-to-pmtu",
            "--set-mss",
            "--helper",
            "--ctstatus",
            "--ctproto",
        ):
            self.options.setdefault("unknown-option", opt)
        elif args and not opt.startswith("-"):
            self.issue(f"unexpected word {opt!r}")

    def restrict_sources(self, addresses: IPSet, negate: bool) -> None:
        self.source_conditional = True
        universe = _family_universe(self.family)
        self.sources = self.sources & ((universe - addresses) if negate else addresses)

    def restrict_destinations(self, addresses: IPSet, negate: bool) -> None:
        universe = _family_universe(self.family)
        self.destinations = self.destinations & ((universe - addresses) if negate else addresses)

    def match_set(self, name: str, direction: str, negate: bool) -> None:
        ipset = self.state.ipsets.get(name)
        if ipset is None:
            self.unresolved.append(name)
            self.cannot = (
                f"ipset {name!r} is not in the file (add the output of `ipset save` to check it)"
            )
            return
        members = _ipset_members(self.state.ipsets, name, set())
        if direction == "src":
            self.restrict_sources(members, negate)
        else:
            self.restrict_destinations(members, negate)

    def finish(self) -> ParsedRule:
        target = self.target
        if target in TERMINAL:
            action = TERMINAL[target]
            if action == Action.REJECT:
                action = reject_action("tcp-reset" in self.options.get("--reject-with", ""))
        elif target == "RETURN":
            action = Action.RETURN
        elif target == "" or target in NON_TERMINAL_TARGETS or self.table == "nat":
            # LOG, NFLOG, MARK, CT, DNAT ... : the packet goes on (NAT is handled separately).
            action = Action.CONTINUE
            if target in ("QUEUE", "NFQUEUE"):
                self.cannot = "hands packets to a user-space program (NFQUEUE)"
            elif target == "TARPIT":
                action = Action.DENY
        else:
            action = Action.GOTO if self.goto else Action.JUMP
        protocol = self.protocol
        sources = self.sources
        if self.protocol_negated:
            # `! -p udp` matches TCP; `! -p tcp` does not.
            protocol = ANY_PROTOCOL
            if self.protocol in ("tcp", ANY_PROTOCOL):
                sources = IPSet()
        if self.never:
            sources = IPSet()
        reason = self.cannot
        unknown = self.options.get("unknown-match")
        if unknown and not reason:
            reason = f"uses the match module {unknown!r}, which cannot be evaluated offline"
        rule = Rule(
            action=action,
            origin=Origin(self.state.path, self.line, self.text),
            sources=sources,
            destinations=self.destinations,
            protocol=protocol,
            dst_ports=self.dst_ports,
            src_ports=self.src_ports,
            target=self.target if action in (Action.JUMP, Action.GOTO) else None,
            name=f"{self.table}/{self.chain}",
            logs=target in ("LOG", "NFLOG", "ULOG"),
            unresolved=tuple(self.unresolved),
            matches_nothing_reason=reason,
        )
        no_out = self.out_interface is not None and not self.out_interface[0]
        if no_out and self.chain in ("INPUT", "PREROUTING"):
            rule = replace(rule, sources=IPSet())  # no out interface before routing
        return ParsedRule(
            self.table,
            self.chain,
            self.family,
            self.line,
            self.text,
            rule,
            target,
            self.options,
            self.source_conditional,
            self.in_interface,
        )


def _ipset_members(sets: dict[str, IpsetDef], name: str, seen: set[str]) -> IPSet:
    ipset = sets.get(name)
    if ipset is None or name in seen:
        return IPSet()
    seen.add(name)
    # Per prefix length, least specific first: entries of one length never nest, so each
    # length is one merge of its members and one removal of its nomatch entries.
    by_length: dict[int, tuple[list[IPSet], list[IPSet]]] = {}
    for length, addresses, nomatch in ipset.entries:
        members, excluded = by_length.setdefault(length, ([], []))
        (excluded if nomatch else members).append(addresses)
    result = IPSet()
    for length in sorted(by_length):
        members, excluded = by_length[length]
        if excluded:
            result = result - _merged(excluded)
        if members:
            result = result | _merged(members)
    for member in ipset.list_members:
        result = result | _ipset_members(sets, member, seen)
    return result


def _merged(sets: list[IPSet]) -> IPSet:
    v4 = tuple(i for s in sets for i in s.v4)
    v6 = tuple(i for s in sets for i in s.v6)
    return IPSet(v4, v6) | IPSet()  # `|` sorts and merges once


_TABLE = re.compile(r"^\*(\w+)\s*$")
_CHAIN_DECL = re.compile(r"^:(\S+)\s+(\S+)")
_COMMAND_PREFIX = re.compile(r"^(?:sudo\s+)?(?:/\S*/)?(ip6?tables)(?:-legacy|-nft)?\s+")


def _parse_lines(text: str, state: _State) -> None:
    table = "filter"
    family = 4
    explicit_family: int | None = None
    seen_table = False
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if "ip6tables-save" in line:
                explicit_family = 6
            elif "iptables-save" in line:
                explicit_family = 4
            continue
        table_match = _TABLE.match(line)
        if table_match:
            table = table_match[1]
            seen_table = True
            family = explicit_family or _section_family(text, number) or 4
            state.chains.setdefault((family, table), {})
            continue
        if line == "COMMIT":
            continue
        decl = _CHAIN_DECL.match(line)
        if decl:
            name, policy = decl[1], decl[2].upper()
            state.chains.setdefault((family, table), {})[name] = (
                policy,
                Origin(state.path, number, line),
            )
            continue
        command = _COMMAND_PREFIX.match(line)
        line_family = family
        line_table = table
        if command:
            line_family = 6 if command[1] == "ip6tables" else 4
            line = line[command.end() :]
        if line.startswith(("create ", "add ", "-exist create", "ipset ")):
            _ipset_line(line, number, state)
            continue
        tokens = _split(line)
        if not tokens:
            continue
        if command:
            if "-t" in tokens[:-1]:
                at = tokens.index("-t")
                line_table = tokens[at + 1]
                del tokens[at : at + 2]
            elif "--table" in tokens[:-1]:
                at = tokens.index("--table")
                line_table = tokens[at + 1]
                del tokens[at : at + 2]
            state.chains.setdefault((line_family, line_table), {})
        head = tokens[0]
        chains = state.chains.setdefault((line_family, line_table), {})
        if head in ("-N", "--new-chain") and len(tokens) >= 2:
            chains.setdefault(tokens[1], ("-", Origin(state.path, number, raw.strip())))
            continue
        if head in ("-P", "--policy") and len(tokens) >= 3:
            chains[tokens[1]] = (tokens[2].upper(), Origin(state.path, number, raw.strip()))
            continue
        if head in ("-F", "-X", "-Z", "--flush", "--delete-chain", "--zero"):
            continue
        if head in ("-A", "--append", "-I", "--insert") and len(tokens) >= 2:
            chain = tokens[1]
            rest = tokens[2:]
            position: int | None = None
            if head in ("-I", "--insert"):
                position = 1
                if rest and rest[0].isdigit():
                    position = int(rest[0])
                    rest = rest[1:]
            if chain not in chains:
                default = "ACCEPT" if chain in BUILTIN.get(line_table, ()) else "-"
                chains[chain] = (default, None)
            rule_family = line_family
            if not command and not seen_table and explicit_family is None:
                # Pasted rule lines without a table header: the addresses tell the family.
                rule_family = _family_of_text(line) or 4
            builder = _RuleBuilder(state, line_table, chain, rule_family, number, raw.strip())
            parsed = builder.build(rest)
            if position is None:
                state.rules.append(parsed)
            else:
                same = [
                    i
                    for i, r in enumerate(state.rules)
                    if (r.table, r.chain, r.family) == (line_table, chain, rule_family)
                ]
                at = same[position - 1] if position - 1 < len(same) else len(state.rules)
                state.rules.insert(at, parsed)
            continue
        state.issues.append((number, f"line not understood: {raw.strip()[:120]!r}"))


def _section_family(text: str, start: int) -> int | None:
    """The family of the table section starting at line `start`, from its addresses."""
    lines = text.splitlines()[start:]
    for line in lines:
        stripped = line.strip()
        if stripped == "COMMIT" or stripped.startswith("*"):
            break
        if stripped.startswith("-A") or stripped.startswith("-I"):
            found = _family_of_text(stripped)
            if found:
                return found
    return None


def _ipset_line(line: str, number: int, state: _State) -> None:
    tokens = _split(line)
    if tokens and tokens[0] == "ipset":
        tokens = tokens[1:]
    if tokens and tokens[0] == "-exist":
        tokens = tokens[1:]
    if len(tokens) < 3:
        if len(tokens) >= 2 and tokens[0] == "create":
            state.ipsets[tokens[1]] = IpsetDef(tokens[1], "hash:ip", 4, create_line=number)
        return
    verb, name, value = tokens[0], tokens[1], tokens[2]
    if verb == "create":
        family = 6 if "inet6" in tokens else 4
        state.ipsets[name] = IpsetDef(name, value, family, create_line=number, last_line=number)
        return
    if verb != "add":
        return
    ipset = state.ipsets.get(name)
    if ipset is None:
        ipset = IpsetDef(name, "hash:net", 6 if ":" in value else 4, create_line=number)
        state.ipsets[name] = ipset
    ipset.last_line = number
    if ipset.kind == "list:set":
        ipset.list_members.append(value)
        return
    address = value.split(",")[0]
    try:
        members = IPSet.parse(address)
    except AddressParseError:
        state.issues.append((number, f"ipset {name}: not an address: {address!r}"))
        return
    nomatch = "nomatch" in tokens[3:]
    for network in members.networks():
        ipset.entries.append((network.prefixlen, IPSet.from_networks([network]), nomatch))


def _chain_id(family: int, table: str, chain: str) -> str:
    return f"{table}:{chain}" if family == 4 else f"ip6 {table}:{chain}"


def _nat_rules(state: _State, family: int, inbound: str | None) -> list[DestinationNat]:
    """DNAT / REDIRECT in nat PREROUTING, in the order the kernel tries them."""
    by_chain: dict[str, list[ParsedRule]] = {}
    for parsed in state.rules:
        if parsed.table == "nat" and parsed.family == family:
            by_chain.setdefault(parsed.chain, []).append(parsed)
    result: list[DestinationNat] = []

    def walk(chain: str, depth: int) -> None:
        if depth > 16:
            return
        for parsed in by_chain.get(chain, []):
            rule = parsed.rule
            if parsed.in_interface is not None and inbound is not None:
                negated, name = parsed.in_interface
                if _interface_matches(name, inbound) == negated:
                    continue
            if not rule.sources:
                continue
            target = parsed.target
            if target not in NAT_TARGETS:
                if target and target not in TERMINAL and not target.isupper():
                    walk(target, depth + 1)
                continue
            if parsed.sources_conditional and target in ("DNAT", "REDIRECT"):
                state.notes.append(
                    f"line {parsed.line}: the DNAT applies only to some sources; it is assumed "
                    "to apply to all (check the line by hand)"
                )
            public = rule.destinations
            if target == "DNAT":
                spec = parsed.options.get("--to-destination") or parsed.options.get("--to", "")
                private, port = _nat_target(spec, public)
                entries = _path_entries(state, family, FORWARD_PATH)
            elif target == "REDIRECT":
                private, port = public, _first_port(parsed.options.get("--to-ports", ""))
                entries = _path_entries(state, family, LOCAL_PATH)
            elif target in ("ACCEPT", "RETURN"):
                if depth > 0 and target == "RETURN":
                    return
                private, port = public, None
                entries = ()
            else:
                continue
            result.append(
                DestinationNat(
                    public=public,
                    private=private,
                    origin=rule.origin,
                    public_ports=rule.dst_ports,
                    private_port=port,
                    protocol=rule.protocol,
                    entries=entries,
                )
            )

    walk("PREROUTING", 0)
    return result


def _first_port(text: str) -> int | None:
    digits = re.match(r"\d+", text)
    return int(digits[0]) if digits else None


def _nat_target(spec: str, public: IPSet) -> tuple[IPSet, int | None]:
    address = spec
    port: int | None = None
    if spec.startswith("["):
        address, _, rest = spec[1:].partition("]")
        port = _first_port(rest.lstrip(":"))
    elif spec.count(":") == 1:
        address, _, rest = spec.partition(":")
        port = _first_port(rest)
    elif spec.startswith(":"):
        address, port = "", _first_port(spec[1:])
    if not address:
        return public, port
    first = address.split("-")[0].split("/")[0]
    return IPSet.parse(first), port


def _path_entries(state: _State, family: int, path: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    return tuple(
        _chain_id(family, table, chain)
        for table, chain in path
        if chain in state.chains.get((family, table), {})
        or any((r.table, r.chain, r.family) == (table, chain, family) for r in state.rules)
    )


def _choose_interface(state: _State) -> tuple[str, str]:
    """The inbound interface, and why it was chosen."""
    if state.options.interface:
        return state.options.interface, "given with --interface"
    for parsed in state.rules:
        if (
            parsed.table == "nat"
            and parsed.target == "DNAT"
            and parsed.in_interface
            and not parsed.in_interface[0]
            and (parsed.rule.dst_ports is None or 25 in parsed.rule.dst_ports)
        ):
            return parsed.in_interface[1], f"the DNAT rule on line {parsed.line} names it"
    smtp: Counter[str] = Counter()
    named: Counter[str] = Counter()
    for parsed in state.rules:
        if parsed.in_interface is None or parsed.in_interface[0]:
            continue
        name = parsed.in_interface[1]
        if name == "lo" or name.endswith("+"):
            continue
        named[name] += 1
        rule = parsed.rule
        if rule.matches_protocol("tcp") and rule.dst_ports is not None and 25 in rule.dst_ports:
            smtp[name] += 1
    if smtp:
        name = smtp.most_common(1)[0][0]
        return name, "rules for TCP 25 name it most often"
    if len(named) == 1:
        name = next(iter(named))
        return name, "it is the only interface the rules name"
    return NO_INTERFACE, ""


def _interface_view(parsed: ParsedRule, inbound: str) -> Rule:
    rule = parsed.rule
    if parsed.in_interface is None:
        return rule
    negated, name = parsed.in_interface
    if _interface_matches(name, inbound) != negated:
        return replace(rule, in_interfaces=frozenset({inbound}))
    return replace(rule, in_interfaces=frozenset({("!" if negated else "") + name}))


def parse_iptables(text: str, path: str, options: ParseOptions) -> ParseResult:
    """Parse as the first SYN sees the rules, and, where rules look at conntrack state or TCP
    flags, also as the packets after it do (`Policy.established`)."""
    result = _parse_iptables_once(text, path, options)
    if judging_follow_up() or not mentions_packet_state(text):
        return result
    with judging_follow_up_packets():
        follow_up = _parse_iptables_once(text, path, options)
    return replace(result, policy=replace(result.policy, established=follow_up.policy))


def _parse_iptables_once(text: str, path: str, options: ParseOptions) -> ParseResult:
    state = _State(path, options)
    _parse_lines(text, state)
    if not state.rules and not state.chains:
        raise FirewallParseError(f"{path}: no iptables tables, chains or rules found")
    inbound, why = _choose_interface(state)
    notes = state.notes
    if why:
        notes.append(f"inbound interface {inbound} assumed ({why}); use --interface to change")
    elif any(p.in_interface for p in state.rules):
        notes.append(
            "no inbound interface could be chosen: rules limited to an inbound interface are "
            "taken not to match (use --interface)"
        )
    chains: dict[str, Chain] = {}
    families = {f for f, _ in state.chains} | {r.family for r in state.rules}
    for family in families:
        # A chain the file leaves out has the kernel default: policy ACCEPT, no rules.
        filter_chains = state.chains.setdefault((family, "filter"), {})
        for builtin_name in ("INPUT", "FORWARD"):
            filter_chains.setdefault(builtin_name, ("ACCEPT", None))
    for family, table in state.chains:
        for name, (chain_policy, origin) in state.chains[(family, table)].items():
            chain_id = _chain_id(family, table, name)
            rules = tuple(
                _with_target(_interface_view(p, inbound), family, table)
                for p in state.rules
                if (p.family, p.table, p.chain) == (family, table, name) and table != "nat"
            )
            builtin = name in BUILTIN.get(table, ())
            default = Action.RETURN
            if builtin:
                default = Action.DENY if chain_policy == "DROP" else Action.PERMIT
            chains[chain_id] = Chain(
                chain_id,
                rules,
                default,
                origin if builtin and chain_policy in ("DROP", "ACCEPT") else None,
                False,
                family,
                (table, name) in PRE_NAT,
            )
    for parsed in state.rules:
        chain_id = _chain_id(parsed.family, parsed.table, parsed.chain)
        if chain_id not in chains and parsed.table != "nat":
            chains[chain_id] = Chain(chain_id, (), Action.RETURN, family=parsed.family)
    for chain in list(chains.values()):
        for rule in chain.rules:
            if rule.target and rule.target not in chains:
                state.issues.append(
                    (rule.origin.line, f"jumps to chain {rule.target!r}, which is not defined")
                )
                chains[rule.target] = Chain(rule.target, (), Action.RETURN)
    forward = (options.acl or "").upper() == "FORWARD"
    smtp_forward = any(
        r.dst_ports is not None and 25 in r.dst_ports
        for chain_id, chain in chains.items()
        if chain_id.endswith("filter:FORWARD")
        for r in chain.rules
    )
    if not forward and smtp_forward:
        notes.append(
            "FORWARD has rules for TCP 25: addresses that are not DNATed are checked against "
            "INPUT (this host as the mail server); if the mail server sits behind this host "
            "without NAT, check again with the FORWARD chain"
        )
    entries: list[str] = []
    nat: list[DestinationNat] = []
    for family in sorted(families):
        path_ = FORWARD_PATH if forward else LOCAL_PATH
        entries.extend(e for e in _path_entries(state, family, path_) if e in chains)
        nat.extend(
            replace(n, entries=tuple(e for e in n.entries if e in chains))
            for n in _nat_rules(state, family, inbound)
        )
    if not entries:
        raise FirewallParseError(
            f"{path}: no INPUT or FORWARD chain (filter, mangle or raw table) to evaluate"
        )
    notes.append(
        "iptables does not log traffic that falls to a chain policy unless a LOG rule "
        "precedes it: no log line is not proof that nothing was dropped"
    )
    smtp_hosts = tuple(
        dict.fromkeys(
            str(n.private.networks()[0].network_address)
            for n in nat
            if n.private.size() == 1 and n.private.networks()
        )
    )
    policy = Policy(
        vendor="iptables",
        path=path,
        chains=chains,
        entries=tuple(entries),
        nat=tuple(nat),
        acl_name="FORWARD" if forward else "INPUT",
        inbound_interfaces=frozenset({inbound}),
        smtp_hosts=smtp_hosts,
        notes=tuple(dict.fromkeys(notes)),
        default_deny_logged=False,
        all_acls=tuple(sorted(chains)),
    )
    return ParseResult(policy, tuple(state.issues))


def _with_target(rule: Rule, family: int, table: str) -> Rule:
    if rule.target:
        return replace(rule, target=_chain_id(family, table, rule.target))
    return rule


def _sniff(text: str) -> int:
    head = text[:200_000]
    score = 0
    if re.search(r"^# Generated by ip6?tables-save", head, re.M):
        return 100
    if re.search(r"^\*(filter|nat|mangle|raw)\s*$", head, re.M):
        score += 40
    if re.search(r"^:(INPUT|FORWARD|OUTPUT|PREROUTING)\s+(ACCEPT|DROP|-)", head, re.M):
        score += 30
    if re.search(
        r"^(?:(?:sudo\s+)?ip6?tables\s+(?:-t\s+\w+\s+)?)?-[AI]\s+\S+\s.*-j\s+\S+", head, re.M
    ):
        score += 40
    return min(score, 95)


@register_parser
class IptablesParser:
    vendor = "iptables"
    label = "Linux iptables (iptables-save / ip6tables-save)"

    def sniff(self, text: str) -> int:
        return _sniff(text)

    def parse(self, text: str, path: str, options: ParseOptions) -> ParseResult:
        return parse_iptables(text, path, options)

    def remediate(self, text: str, result: ParseResult, check: RangeCheck) -> Remediation | None:
        return remediate_iptables(text, result, check)


# ---- remediation ------------------------------------------------------------------------------


def _accepting_set(result: ParseResult, text: str, destination: str) -> str | None:
    """An ipset (defined in the file) that an ACCEPT rule for TCP 25 already matches sources on."""
    state = _State(result.policy.path, ParseOptions())
    _parse_lines(text, state)
    for parsed in state.rules:
        match = re.search(r"--match-set\s+(\S+)\s+src", parsed.text)
        if not match or "! --match-set" in parsed.text or parsed.target != "ACCEPT":
            continue
        rule = parsed.rule
        if match[1] not in state.ipsets:
            continue
        if state.ipsets[match[1]].family != (6 if ":" in destination else 4):
            continue
        if rule.dst_ports is not None and 25 not in rule.dst_ports:
            continue
        if not rule.matches_protocol("tcp"):
            continue
        return match[1]
    return None


def remediate_iptables(text: str, result: ParseResult, check: RangeCheck) -> Remediation | None:
    """Lines that close the gap, plus optional lines that remove retired EOP ranges."""
    cleanup = _cleanup(text, result, check)
    remedy = _remediate_missing(text, result, check) if check.missing else None
    if remedy is None:
        return cleanup_only(cleanup)
    return replace(remedy, cleanup=cleanup)


def _cleanup(text: str, result: ParseResult, check: RangeCheck) -> tuple[str, ...]:
    """`-D` for ACCEPT rules and `ipset del` for set entries that hold only retired ranges."""
    if not check.stale:
        return ()
    state = _State(result.policy.path, _options_of(result))
    _parse_lines(text, state)
    lines: list[str] = []
    for parsed in state.rules:
        rule = parsed.rule
        if parsed.target != "ACCEPT" or parsed.table == "nat" or not rule.sources:
            continue
        if rule.dst_ports is not None and check.evaluation.port not in rule.dst_ports:
            continue
        set_match = re.search(r"(!\s+)?--match-set\s+(\S+)\s+src", parsed.text)
        if set_match and not set_match.group(1) and set_match.group(2) in state.ipsets:
            ipset = state.ipsets[set_match.group(2)]
            for _, addresses, nomatch in ipset.entries:
                if not nomatch and addresses.issubset(check.stale):
                    lines.append(f"ipset del {ipset.name} {addresses.cidrs()[0]}")
            continue
        if rule.sources.issubset(check.stale):
            tool = "ip6tables" if parsed.family == 6 else "iptables"
            table = "" if parsed.table == "filter" else f"-t {parsed.table} "
            spec = re.sub(r"^(?:\S+\s+)*?-[AI]\s+\S+\s+(?:\d+\s+)?", "", parsed.text)
            lines.append(f"{tool} {table}-D {parsed.chain} {spec}")
    return tuple(dict.fromkeys(lines))


def _remediate_missing(text: str, result: ParseResult, check: RangeCheck) -> Remediation | None:
    evaluation = check.evaluation
    destination = evaluation.destination
    port = evaluation.port
    set_name = _accepting_set(result, text, destination)
    if set_name is not None:
        patched, lines = _add_to_ipset(text, set_name, check.missing.cidrs())
        remediation = _verify(patched, result, check, lines, set_name)
        if remediation is not None:
            return remediation
    patched, commands = insert_until_closed(
        text,
        check.missing,
        lambda candidate: parse_iptables(candidate, result.policy.path, _options_of(result)).policy,
        destination,
        port,
        _insert_accepts,
    )
    return Remediation(
        lines=tuple(commands),
        explanation=(
            "Insert these ACCEPT rules ahead of the rule or chain policy that now drops the "
            "missing Exchange Online ranges (iptables evaluates top to bottom; -I puts the rule "
            "at the given position). Save them with your usual tool (iptables-save > "
            "/etc/iptables/rules.v4, netfilter-persistent save) so they survive a reboot."
        ),
        patched_text=patched,
    )


def _options_of(result: ParseResult) -> ParseOptions:
    policy = result.policy
    interface = None
    if policy.inbound_interfaces and NO_INTERFACE not in policy.inbound_interfaces:
        interface = next(iter(policy.inbound_interfaces))
    return ParseOptions(
        acl=policy.acl_name if policy.acl_name == "FORWARD" else None, interface=interface
    )


def _verify(
    patched: str, result: ParseResult, check: RangeCheck, lines: list[str], set_name: str
) -> Remediation | None:
    parsed = parse_iptables(patched, result.policy.path, _options_of(result))
    evaluation = evaluate(parsed.policy, check.evaluation.destination, check.evaluation.port)
    if check.missing - evaluation.permitted():
        return None
    return Remediation(
        lines=tuple(lines),
        explanation=(
            f"Your ACCEPT rule for port 25 matches the ipset {set_name!r}: add the missing "
            "Exchange Online ranges to it (takes effect at once), and to the file your ipset is "
            "restored from at boot."
        ),
        patched_text=patched,
    )


def _add_to_ipset(text: str, name: str, cidrs: list[str]) -> tuple[str, list[str]]:
    state = _State("", ParseOptions())
    _parse_lines(text, state)
    ipset = state.ipsets[name]
    family = 6 if ipset.family == 6 else 4
    wanted = [c for c in cidrs if (":" in c) == (family == 6)]
    lines = text.splitlines()
    commands: list[str] = []
    drop: list[int] = []
    # A `nomatch` entry inside a new range would still exclude its part: remove it.
    adding = IPSet.parse(*wanted) if wanted else IPSet()
    for index, line in enumerate(lines):
        words = line.split()
        if len(words) >= 4 and words[:2] == ["add", name] and "nomatch" in words[3:]:
            try:
                excluded = IPSet.parse(words[2])
            except AddressParseError:
                continue
            # a nomatch entry wider than the new one loses to it (most specific wins)
            if excluded.issubset(adding):
                drop.append(index)
                commands.append(f"ipset del {name} {words[2]}")
    after = ipset.last_line or ipset.create_line
    new = [f"add {name} {cidr}" for cidr in wanted]
    lines[after:after] = new
    for index in sorted(drop, reverse=True):
        del lines[index if index < after else index + len(new)]
    commands.extend(f"ipset add {name} {cidr}" for cidr in wanted)
    return "\n".join(lines) + "\n", commands


def _insert_accepts(
    text: str, policy: Policy, evaluation: object, missing: IPSet
) -> tuple[str, list[str]]:
    from mailflow_doctor.firewall.evaluate import Evaluation

    assert isinstance(evaluation, Evaluation)
    lines = text.splitlines()
    insertions: dict[int, list[str]] = {}
    commands: list[str] = []
    for decision in evaluation.decisions:
        if decision.action == Action.PERMIT:
            continue
        part = decision.sources & missing
        if not part:
            continue
        chain = policy.chains[decision.chain]
        family = chain.family or 4
        table, _, chain_name = decision.chain.split(" ")[-1].partition(":")
        destination = evaluation.destination if chain.pre_nat else evaluation.effective_destination
        port = evaluation.port if chain.pre_nat else _effective_port(policy, evaluation)
        leaves = any(
            r.action in (Action.JUMP, Action.GOTO, Action.RETURN) and r.sources.overlaps(part)
            for r in chain.rules
        )
        if decision.implicit and leaves and chain.rules and chain.rules[0].origin.line:
            # The traffic left this chain through a jump, goto or return and came back to the
            # policy: only a rule ahead of those catches it.
            position = 1
            at = chain.rules[0].origin.line - 1
        elif decision.implicit or decision.origin is None or decision.origin.line is None:
            position = len(chain.rules) + 1
            at = _append_line(lines, policy, decision.chain)
        else:
            index = next(
                (i for i, r in enumerate(chain.rules) if r.origin == decision.origin),
                len(chain.rules),
            )
            position = index + 1
            at = decision.origin.line - 1
        tool = "ip6tables" if family == 6 else "iptables"
        table_arg = "" if table == "filter" else f"-t {table} "
        for cidr in part.cidrs():
            spec = f"-s {cidr} -d {destination} -p tcp -m tcp --dport {port} -j ACCEPT"
            insertions.setdefault(at, []).append(f"-A {chain_name} {spec}")
            commands.append(f"{tool} {table_arg}-I {chain_name} {position} {spec}")
            position += 1
    for at in sorted(insertions, reverse=True):
        lines[at:at] = insertions[at]
    return "\n".join(lines) + "\n", commands


def _effective_port(policy: Policy, evaluation: object) -> int:
    from mailflow_doctor.firewall.evaluate import Evaluation, effective_destination

    assert isinstance(evaluation, Evaluation)
    return effective_destination(
        policy, evaluation.destination, evaluation.port, evaluation.protocol
    )[1]


def _append_line(lines: list[str], policy: Policy, chain_id: str) -> int:
    """The 0-based line index before which a rule is appended to the end of `chain_id`."""
    chain = policy.chains[chain_id]
    rule_lines = [r.origin.line for r in chain.rules if r.origin.line is not None]
    if rule_lines:
        return max(rule_lines)
    if chain.default_origin is not None and chain.default_origin.line is not None:
        # After the chain declarations of this table: before its COMMIT.
        start = chain.default_origin.line
        for index in range(start, len(lines)):
            if lines[index].strip() == "COMMIT":
                return index
        return len(lines)
    table = chain_id.split(" ")[-1].partition(":")[0]
    lines.extend([f"*{table}", "COMMIT"])
    return len(lines) - 1
