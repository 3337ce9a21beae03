"""Random firewall policies for the kernel oracle, rendered as iptables-save and nft text.

A policy is drawn as an abstract spec (entry chain with a policy, user chains with jumps, gotos
and returns, rules matching source blocks, ranges, negations, ports, protocols, conntrack
state, inbound interface and destination; pre-NAT chains; for nftables a second base chain on
the same hook, named and anonymous sets and verdict maps) and rendered into each syntax. Every
rule keeps the reply path of an accepted connection open (replies come from the server or go
out through OUTPUT), so what the client sees depends only on the fate of its SYN.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hypothesis import strategies as st

from mailflow_doctor.knowledge.ipranges import IPSet

LOCAL_SERVER = "192.0.2.10"
PUBLIC_ADDRESS = "192.0.2.25"
INSIDE_SERVER = "192.0.2.200"
OTHER_ADDRESS = "192.0.2.99"

BASES = (("198.51.100.0", 24), ("203.0.113.0", 24), ("192.0.2.64", 27))


@dataclass(frozen=True)
class Family:
    version: int
    local: str
    public: str
    inside: str
    other: str
    bases: tuple[tuple[str, int], ...]

    @property
    def bits(self) -> int:
        return 32 if self.version == 4 else 128

    @property
    def ip(self) -> str:
        """The nft payload protocol: `ip` or `ip6`."""
        return "ip" if self.version == 4 else "ip6"

    def host(self, address: str) -> str:
        return f"[{address}]" if self.version == 6 else address


FAMILIES = {
    4: Family(4, LOCAL_SERVER, PUBLIC_ADDRESS, INSIDE_SERVER, OTHER_ADDRESS, BASES),
    6: Family(
        6,
        "2001:db8::10",
        "2001:db8::25",
        "2001:db8:1::200",
        "2001:db8::99",
        (("2001:db8:100::", 120),),
    ),
}


@dataclass(frozen=True)
class Match:
    sources: tuple[str, ...] = ()  # CIDRs or "a-b" ranges; empty: any source
    negate: bool = False
    use_set: bool = False  # put the sources into a named set (nftables) or an ipset
    port: str = "any"  # any | 25 | 587 | multi | range | not25 | not587
    proto: str = "tcp"  # tcp | udp | any
    state: str = ""  # "" | new | est
    iface: str = ""  # "" | in | other | notlo | wildcard
    dest: str = ""  # "" | target | public | other
    nomatch: tuple[str, ...] = ()  # ipset only: `nomatch` entries (most specific entry wins)
    flags: str = ""  # "" | syn | notsyn (TCP flags of the packet)


@dataclass(frozen=True)
class GenRule:
    match: Match
    action: str  # ACCEPT DROP REJECT REJECT_ICMP LOG RETURN JUMP:u1 GOTO:u2 VMAP


@dataclass(frozen=True)
class Spec:
    mode: str  # local | dnat
    default: str  # ACCEPT | DROP
    main: tuple[GenRule, ...]
    users: tuple[tuple[GenRule, ...], ...]  # u1, u2 (u1 may jump to u2)
    prenat: tuple[GenRule, ...]
    second_default: str | None  # nftables: a second base chain on the same hook
    second: tuple[GenRule, ...]
    dnat_port: int  # 25, or 2525 -> 25 is never used; kept for variety of the DNAT line
    vmap: tuple[tuple[str, str], ...] = ()  # (cidr, verdict) pairs, disjoint
    second_priority: int = 10  # nftables: before (-10) or after (10) the main chain
    prenat_table: str = "raw"  # iptables: raw or mangle PREROUTING
    version: int = 4

    @property
    def family(self) -> Family:
        return FAMILIES[self.version]

    @property
    def destination(self) -> str:
        return self.family.public if self.mode == "dnat" else self.family.local


def _block(draw: st.DrawFn, version: int = 4) -> str:
    family = FAMILIES[version]
    bits = family.bits
    base, length = draw(st.sampled_from(family.bases))
    prefix = draw(st.integers(min_value=length, max_value=bits))
    network = IPSet.parse(f"{base}/{length}").networks()[0]
    size = 1 << (bits - prefix)
    count = (1 << (bits - length)) // size
    index = draw(st.integers(min_value=0, max_value=count - 1))
    first = network.network_address + index * size
    if prefix == bits:
        # single hosts: one of the client's addresses (offsets 0 or 3 mod 4)
        first = network.network_address + (index // 4) * 4 + draw(st.sampled_from((0, 3)))
    return f"{first}/{prefix}"


@st.composite
def _sources(draw: st.DrawFn, version: int) -> tuple[str, ...]:
    kind = draw(st.sampled_from(("any", "one", "one", "many", "range")))
    if kind == "any":
        return ()
    if kind == "range":
        family = FAMILIES[version]
        base, length = draw(st.sampled_from(family.bases))
        network = IPSet.parse(f"{base}/{length}").networks()[0]
        a = draw(st.integers(0, (1 << (family.bits - length)) - 1))
        b = draw(st.integers(0, (1 << (family.bits - length)) - 1))
        lo, hi = sorted((a, b))
        return (f"{network.network_address + lo}-{network.network_address + hi}",)
    count = 1 if kind == "one" else draw(st.integers(2, 4))
    return tuple(draw(_block_st(version)) for _ in range(count))


@st.composite
def _block_st(draw: st.DrawFn, version: int = 4) -> str:
    return _block(draw, version)


@st.composite
def _match(draw: st.DrawFn, prenat: bool = False, version: int = 4) -> Match:
    sources = draw(_sources(version))
    if prenat and not sources:
        sources = (draw(_block_st(version)),)
    negate = not prenat and len(sources) == 1 and draw(st.sampled_from((False, False, True)))
    port = draw(st.sampled_from(("any", "25", "25", "587", "multi", "range", "not25", "not587")))
    proto = "tcp"
    if port == "any":
        proto = draw(st.sampled_from(("tcp", "any", "udp")))
    else:
        proto = draw(st.sampled_from(("tcp", "tcp", "tcp", "udp")))
    if prenat:
        port, proto = "25", "tcp"
    state = "" if prenat else draw(st.sampled_from(("", "", "", "new", "est")))
    iface = draw(st.sampled_from(("", "", "", "in", "other", "notlo", "wildcard")))
    if prenat and iface in ("notlo",):
        iface = ""
    dest = draw(st.sampled_from(("", "", "target", "public", "other")))
    use_set = len(sources) >= 1 and "-" not in sources[0] and draw(st.booleans())
    nomatch: tuple[str, ...] = ()
    if use_set:
        nomatch = tuple(draw(st.lists(_block_st(version), max_size=2, unique=True)))
    flags = draw(st.sampled_from(("", "", "", "", "syn", "notsyn")))
    if flags:
        proto = "tcp"
    return Match(sources, negate, use_set, port, proto, state, iface, dest, nomatch, flags)


@st.composite
def _rule(
    draw: st.DrawFn, chain: int, chains: int, prenat: bool = False, version: int = 4
) -> GenRule:
    match = draw(_match(prenat, version))
    actions = ["ACCEPT", "DROP", "DROP", "REJECT", "REJECT_ICMP", "REJECT_ADMIN", "LOG"]
    if prenat:
        actions = ["ACCEPT", "DROP", "DROP", "LOG"]
    else:
        actions.append("RETURN")
        actions.extend(f"JUMP:u{i}" for i in range(chain + 1, chains + 1))
        actions.extend(f"GOTO:u{i}" for i in range(chain + 1, chains + 1))
    action = draw(st.sampled_from(actions))
    if action == "REJECT" and match.proto != "tcp":
        match = replace(match, proto="tcp")  # a TCP reset needs a TCP match
    if match.state == "est" and action != "ACCEPT":
        match = replace(match, state="new")
    return GenRule(match, action)


@st.composite
def specs(draw: st.DrawFn, nft: bool) -> Spec:
    v = draw(st.sampled_from((4, 4, 6)))
    mode = draw(st.sampled_from(("local", "dnat")))
    users = draw(st.integers(0, 2))
    main = tuple(draw(st.lists(_rule(0, users, version=v), min_size=1, max_size=7)))
    user_chains = tuple(
        tuple(draw(st.lists(_rule(i, users, version=v), min_size=0, max_size=4)))
        for i in range(1, users + 1)
    )
    prenat = tuple(draw(st.lists(_rule(0, 0, prenat=True, version=v), max_size=2)))
    second_default = None
    second: tuple[GenRule, ...] = ()
    if draw(st.booleans()):
        # nftables: a second base chain on the hook; iptables: mangle INPUT / FORWARD
        second_default = draw(st.sampled_from(("ACCEPT", "DROP")))
        second = tuple(draw(st.lists(_rule(0, 0, version=v), max_size=3)))
        second = tuple(r for r in second if not r.action.startswith(("JUMP", "GOTO")))
        if not nft:  # REJECT is a filter-table target
            second = tuple(
                replace(r, action="DROP") if r.action.startswith("REJECT") else r for r in second
            )
    vmap: tuple[tuple[str, str], ...] = ()
    if nft and draw(st.booleans()):
        taken = IPSet()
        pairs: list[tuple[str, str]] = []
        for _ in range(draw(st.integers(1, 3))):
            block = IPSet.parse(draw(_block_st(v))) - taken
            taken = taken | block
            verdict = draw(st.sampled_from(("accept", "drop", "continue", "return")))
            pairs.extend((cidr, verdict) for cidr in block.cidrs())
        vmap = tuple(pairs)
    return Spec(
        mode=mode,
        default=draw(st.sampled_from(("ACCEPT", "DROP"))),
        main=main,
        users=user_chains,
        prenat=prenat,
        second_default=second_default,
        second=second,
        dnat_port=25,
        vmap=vmap,
        second_priority=draw(st.sampled_from((-10, 10))),
        prenat_table=draw(st.sampled_from(("raw", "mangle"))),
        version=v,
    )


# ---- iptables ---------------------------------------------------------------------------------


def _dest_address(spec: Spec, dest: str, prenat: bool) -> str | None:
    if dest == "":
        return None
    family = spec.family
    if dest == "other":
        return family.other
    if dest == "public":
        return family.public
    # "target": the address this chain sees for the connection under test
    if spec.mode == "dnat":
        return family.public if prenat else family.inside
    return family.local


def _ipt_match(
    spec: Spec, m: Match, iface: str, prenat: bool, ipsets: list[str] | None = None
) -> list[str]:
    parts: list[str] = []
    if m.iface == "in":
        parts.append(f"-i {iface}")
    elif m.iface == "other":
        parts.append("-i eth9")
    elif m.iface == "notlo":
        parts.append("! -i lo")
    elif m.iface == "wildcard":
        parts.append(f"-i {iface[:-2]}+")
    if m.sources:
        if "-" in m.sources[0]:
            parts.append(f"-m iprange {'! ' if m.negate else ''}--src-range {m.sources[0]}")
        elif m.use_set and ipsets is not None:
            name = f"s{sum(1 for line in ipsets if line.startswith('create'))}"
            members = IPSet.parse(*m.sources).cidrs()
            inet = "inet" if spec.version == 4 else "inet6"
            ipsets.append(f"create {name} hash:net family {inet}")
            ipsets.extend(f"add {name} {cidr}" for cidr in members)
            ipsets.extend(f"add {name} {c} nomatch" for c in m.nomatch if c not in members)
            parts.append(f"-m set {'! ' if m.negate else ''}--match-set {name} src")
        elif m.negate:
            parts.append(f"! -s {m.sources[0]}")
        else:
            parts.append(f"-s {','.join(m.sources)}")
    dest = _dest_address(spec, m.dest, prenat)
    if dest:
        parts.append(f"-d {dest}/{spec.family.bits}")
    if m.proto != "any" or m.port != "any":
        proto = m.proto if m.proto != "any" else "tcp"
        parts.append(f"-p {proto} -m {proto}")
        port = {
            "25": "--dport 25",
            "587": "--dport 587",
            "range": "--dport 20:30",
            "not25": "! --dport 25",
            "not587": "! --dport 587",
        }.get(m.port)
        if port:
            parts.append(port)
        elif m.port == "multi":
            parts.append(f"-m multiport --dports 25,465,{(proto == 'tcp' and 587) or 53}")
    if m.state == "new":
        parts.append("-m conntrack --ctstate NEW")
    elif m.state == "est":
        parts.append("-m conntrack --ctstate RELATED,ESTABLISHED")
    if m.flags and not any(p.startswith("-p tcp") for p in parts):
        parts.append("-p tcp -m tcp")
    if m.flags == "syn":
        parts.append("--syn")
    elif m.flags == "notsyn":
        parts.append("! --tcp-flags SYN,RST,ACK,FIN SYN")
    return parts


def _ipt_target(action: str, version: int = 4) -> str:
    if action == "REJECT":
        return "-j REJECT --reject-with tcp-reset"
    if action == "REJECT_ICMP":
        icmp = "icmp-port-unreachable" if version == 4 else "icmp6-port-unreachable"
        return f"-j REJECT --reject-with {icmp}"
    if action == "REJECT_ADMIN":
        icmp = "icmp-admin-prohibited" if version == 4 else "icmp6-adm-prohibited"
        return f"-j REJECT --reject-with {icmp}"
    if action == "LOG":
        return '-j LOG --log-prefix "ORACLE: "'
    if action.startswith("JUMP:"):
        return f"-j U{action[-1]}"
    if action.startswith("GOTO:"):
        return f"-g U{action[-1]}"
    return f"-j {action}"


def render_iptables(spec: Spec, iface: str) -> str:
    main = "FORWARD" if spec.mode == "dnat" else "INPUT"
    ipsets: list[str] = []  # `ipset save` lines, written ahead of the tables
    prenat = [
        " ".join(
            [
                "-A PREROUTING",
                *_ipt_match(spec, r.match, iface, True, ipsets),
                _ipt_target(r.action, spec.version),
            ]
        )
        for r in spec.prenat
    ]
    tool = "iptables-save" if spec.version == 4 else "ip6tables-save"
    fam = spec.family
    lines = [f"# Generated by {tool} v1.8.9 (oracle)", "*raw"]
    lines += [":PREROUTING ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    if spec.prenat_table == "raw":
        lines += prenat
    lines += ["COMMIT", "*mangle"]
    mangle_policy = spec.second_default or "ACCEPT"
    for chain in ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"):
        lines.append(f":{chain} {mangle_policy if chain == main else 'ACCEPT'} [0:0]")
    if spec.prenat_table == "mangle":
        lines += prenat
    if spec.second_default is not None:
        if main == "FORWARD":
            lines.append("-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
        for rule in spec.second:
            parts = _ipt_match(spec, rule.match, iface, False, ipsets)
            lines.append(" ".join([f"-A {main}", *parts, _ipt_target(rule.action, spec.version)]))
    lines += ["COMMIT", "*nat"]
    lines += [f":{c} ACCEPT [0:0]" for c in ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")]
    lines.append(
        f"-A PREROUTING -d {fam.public}/{fam.bits} -i {iface} -p tcp -m tcp --dport 25 "
        f"-j DNAT --to-destination {fam.host(fam.inside)}:25"
    )
    lines += ["COMMIT", "*filter"]
    lines.append(f":INPUT {spec.default if main == 'INPUT' else 'ACCEPT'} [0:0]")
    lines.append(f":FORWARD {spec.default if main == 'FORWARD' else 'DROP'} [0:0]")
    lines.append(":OUTPUT ACCEPT [0:0]")
    for index in range(1, len(spec.users) + 1):
        lines.append(f":U{index} - [0:0]")
    if main == "FORWARD":
        lines.append("-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
    for chain, rules in ((main, spec.main), *((f"U{i + 1}", r) for i, r in enumerate(spec.users))):
        for rule in rules:
            parts = _ipt_match(spec, rule.match, iface, False, ipsets)
            lines.append(" ".join([f"-A {chain}", *parts, _ipt_target(rule.action, spec.version)]))
    lines += ["COMMIT", ""]
    return "\n".join([*ipsets, *lines])


# ---- nftables ---------------------------------------------------------------------------------


def _nft_sources(m: Match, sets: list[tuple[str, str]], ip: str) -> str | None:
    if not m.sources:
        return None
    op = "!= " if m.negate else ""
    if "-" in m.sources[0]:
        return f"{ip} saddr {op}{m.sources[0]}"
    canonical = IPSet.parse(*m.sources).cidrs()
    if m.use_set:
        name = f"src{len(sets)}"
        sets.append((name, ", ".join(canonical)))
        return f"{ip} saddr {op}@{name}"
    if len(canonical) == 1:
        return f"{ip} saddr {op}{canonical[0]}"
    return f"{ip} saddr {op}{{ {', '.join(canonical)} }}"


def _nft_match(
    spec: Spec, m: Match, iface: str, prenat: bool, sets: list[tuple[str, str]]
) -> list[str]:
    parts: list[str] = []
    if m.iface == "in":
        parts.append(f'iifname "{iface}"')
    elif m.iface == "other":
        parts.append('iifname "eth9"')
    elif m.iface == "notlo":
        parts.append('iifname != "lo"')
    elif m.iface == "wildcard":
        parts.append(f'iifname "{iface[:-2]}*"')
    sources = _nft_sources(m, sets, spec.family.ip)
    if sources:
        parts.append(sources)
    dest = _dest_address(spec, m.dest, prenat)
    if dest:
        parts.append(f"{spec.family.ip} daddr {dest}")
    proto = m.proto if m.proto != "any" else "tcp"
    port = {
        "25": "dport 25",
        "587": "dport 587",
        "range": "dport 20-30",
        "not25": "dport != 25",
        "not587": "dport != 587",
        "multi": "dport { 25, 465, 587 }",
    }.get(m.port)
    if port:
        parts.append(f"{proto} {port}")
    elif m.proto != "any":
        parts.append(f"meta l4proto {m.proto}")
    if m.state == "new":
        parts.append("ct state new")
    elif m.state == "est":
        parts.append("ct state established,related")
    if m.flags == "syn":
        parts.append("tcp flags syn")
    elif m.flags == "notsyn":
        parts.append("tcp flags != syn")
    return parts


def _nft_verdict(action: str, version: int = 4) -> str:
    if action == "REJECT_ADMIN" and version == 6:
        return "reject with icmpv6 type admin-prohibited"
    return {
        "ACCEPT": "accept",
        "DROP": "drop",
        "REJECT": "reject with tcp reset",
        "REJECT_ICMP": "reject",
        "REJECT_ADMIN": "reject with icmp type admin-prohibited",
        "LOG": 'log prefix "ORACLE: "',
        "RETURN": "return",
    }.get(action) or (f"jump u{action[-1]}" if action.startswith("JUMP") else f"goto u{action[-1]}")


def _set_block(name: str, elements: str, version: int = 4) -> str:
    kind = "ipv4_addr" if version == 4 else "ipv6_addr"
    return (
        f"\tset {name} {{\n\t\ttype {kind}\n\t\tflags interval\n"
        f"\t\telements = {{ {elements} }}\n\t}}"
    )


def render_nftables(spec: Spec, iface: str) -> str:
    hook = "forward" if spec.mode == "dnat" else "input"
    sets: list[tuple[str, str]] = []
    body: list[str] = []

    def chain_lines(rules: tuple[GenRule, ...], prenat: bool = False) -> list[str]:
        return [
            "\t\t"
            + " ".join(
                [
                    *_nft_match(spec, r.match, iface, prenat, sets),
                    _nft_verdict(r.action, spec.version),
                ]
            )
            for r in rules
        ]

    body.append(
        f"\tchain main {{\n\t\ttype filter hook {hook} priority filter; "
        f"policy {spec.default.lower()};"
    )
    if hook == "forward":
        body.append("\t\tct state established,related accept")
    if spec.vmap:
        elements = ", ".join(f"{cidr} : {verdict}" for cidr, verdict in spec.vmap)
        body.append(f"\t\ttcp dport 25 {spec.family.ip} saddr vmap {{ {elements} }}")
    body.extend(chain_lines(spec.main))
    body.append("\t}")
    for index, rules in enumerate(spec.users, 1):
        body.append(f"\tchain u{index} {{")
        body.extend(chain_lines(rules))
        body.append("\t}")
    if spec.prenat:
        body.append("\tchain early {\n\t\ttype filter hook prerouting priority raw; policy accept;")
        body.extend(chain_lines(spec.prenat, prenat=True))
        body.append("\t}")
    set_lines = [_set_block(name, elements, spec.version) for name, elements in sets]
    text = ["flush ruleset", "table inet oracle {", *set_lines, *body, "}"]
    if spec.second_default is not None:
        second_sets: list[tuple[str, str]] = []
        rules = [
            "\t\t"
            + " ".join(
                [
                    *_nft_match(spec, r.match, iface, False, second_sets),
                    _nft_verdict(r.action, spec.version),
                ]
            )
            for r in spec.second
            if r.action != "RETURN"
        ]
        sets2 = [_set_block(name, elements, spec.version) for name, elements in second_sets]
        text += [f"table {spec.family.ip} second {{", *sets2]
        text.append(
            f"\tchain late {{\n\t\ttype filter hook {hook} priority {spec.second_priority}; "
            f"policy {spec.second_default.lower()};"
        )
        if hook == "forward":
            text.append("\t\tct state established,related accept")
        text += [*rules, "\t}", "}"]
    text += [
        f"table {spec.family.ip} nat {{",
        "\tchain prerouting {",
        "\t\ttype nat hook prerouting priority dstnat; policy accept;",
        f'\t\tiifname "{iface}" {spec.family.ip} daddr {spec.family.public} tcp dport 25 '
        f"dnat to {spec.family.inside}",
        "\t}",
        "}",
        "",
    ]
    return "\n".join(text)
