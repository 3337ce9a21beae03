"""FortiGate (FortiOS) `show full-configuration` / backup `.conf` into the policy model.

Policies apply in the order they are listed in `config firewall policy` (an `edit` id is only
a name; `move` changes the order). Inbound port forwarding is a VIP object, and the policy's
`dstaddr` names the VIP, so rules are written against the public address: PRE_NAT with the
VIP's `extip`. The policy's service is matched against the mapped (inside) port. Traffic that
matches no policy hits the implicit deny, policy 0, which is logged only when
`config log setting` has `set fwpolicy-implicit-log enable` (default: disabled).
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
    try_parse_set,
    union_all,
)
from mailflow_doctor.knowledge.ipranges import AddressParseError, IPSet

_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|\'([^\']*)\'|(\S+)')
Values = list[str]

# Predefined services as FortiOS ships them: name -> [(protocol, dst low, dst high)].
_PREDEFINED: dict[str, list[tuple[str, int, int]]] = {
    "ALL": [("ip", 0, 65535)],
    "ALL_TCP": [("tcp", 1, 65535)],
    "ALL_UDP": [("udp", 1, 65535)],
    "SMTP": [("tcp", 25, 25)],
    "SMTPS": [("tcp", 465, 465)],
    "HTTP": [("tcp", 80, 80)],
    "HTTPS": [("tcp", 443, 443)],
    "DNS": [("tcp", 53, 53), ("udp", 53, 53)],
    "SSH": [("tcp", 22, 22)],
    "TELNET": [("tcp", 23, 23)],
    "IMAP": [("tcp", 143, 143)],
    "IMAPS": [("tcp", 993, 993)],
    "POP3": [("tcp", 110, 110)],
    "POP3S": [("tcp", 995, 995)],
    "FTP": [("tcp", 21, 21)],
    "RDP": [("tcp", 3389, 3389)],
    "NTP": [("tcp", 123, 123), ("udp", 123, 123)],
    "PING": [("icmp", 0, 65535)],
    "ALL_ICMP": [("icmp", 0, 65535)],
}


@dataclass
class _Node:
    """A `config` table or an `edit` entry: settings, ordered entries and nested tables."""

    name: str
    line: int
    last_line: int = 0
    settings: dict[str, tuple[Values, int]] = field(default_factory=dict)
    edits: dict[str, _Node] = field(default_factory=dict)
    children: dict[str, _Node] = field(default_factory=dict)
    is_edit: bool = False

    def get(self, key: str, default: str = "") -> str:
        values = self.settings.get(key)
        return values[0][0] if values and values[0] else default

    def values(self, key: str) -> Values:
        found = self.settings.get(key)
        return list(found[0]) if found else []

    def table(self, path: str) -> _Node | None:
        return self.children.get(path)


def tokens(line: str) -> list[str]:
    result: list[str] = []
    for match in _TOKEN.finditer(line):
        quoted, single, bare = match.groups()
        if quoted is not None:
            result.append(re.sub(r"\\(.)", r"\1", quoted))
        elif single is not None:
            result.append(single)
        else:
            result.append(bare)
    return result


def parse_tree(text: str) -> tuple[_Node, list[tuple[int | None, str]]]:
    """Read `config/edit/set/append/unset/next/end` into nested nodes."""
    root = _Node("", 0)
    stack: list[_Node] = [root]
    issues: list[tuple[int | None, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if len(stripped) > 8000:
            issues.append((number, "line longer than 8000 characters skipped"))
            continue
        words = tokens(stripped)
        if not words:
            continue
        verb = words[0].lower()
        top = stack[-1]
        if verb == "config" and len(words) > 1:
            path = " ".join(words[1:])
            node = top.children.setdefault(path, _Node(path, number))
            stack.append(node)
        elif verb == "edit" and len(words) > 1:
            entry = top.edits.get(words[1])
            if entry is None:
                entry = _Node(words[1], number, is_edit=True)
                top.edits[words[1]] = entry
            stack.append(entry)
        elif verb == "next":
            if top.is_edit:
                top.last_line = number
                stack.pop()
            else:
                issues.append((number, "`next` outside an `edit`"))
        elif verb == "end":
            while len(stack) > 1 and stack[-1].is_edit:
                stack.pop().last_line = number
            if len(stack) > 1:
                stack.pop().last_line = number
            else:
                issues.append((number, "`end` without a matching `config`"))
        elif verb == "set" and len(words) > 1:
            top.settings[words[1]] = (words[2:], number)
        elif verb == "append" and len(words) > 1:
            old = top.settings.get(words[1], ([], number))[0]
            top.settings[words[1]] = ([*old, *words[2:]], number)
        elif verb == "unset" and len(words) > 1:
            top.settings.pop(words[1], None)
        elif verb == "unselect" and len(words) > 1:
            old = top.settings.get(words[1], ([], number))[0]
            top.settings[words[1]] = ([v for v in old if v not in words[2:]], number)
        elif verb == "select" and len(words) > 1:
            old = top.settings.get(words[1], ([], number))[0]
            top.settings[words[1]] = ([*old, *words[2:]], number)
        elif verb == "move" and len(words) == 4 and words[2] in ("before", "after"):
            _move(top, words[1], words[2], words[3], number, issues)
        else:
            issues.append((number, f"unsupported line: {stripped[:80]}"))
    if len(stack) > 1:
        issues.append((None, "configuration ends inside an open `config` block"))
    return root, issues


def _move(
    table: _Node,
    name: str,
    where: str,
    other: str,
    number: int,
    issues: list[tuple[int | None, str]],
) -> None:
    if name not in table.edits or other not in table.edits or name == other:
        issues.append((number, f"cannot move {name} {where} {other}"))
        return
    moved = table.edits.pop(name)
    reordered: dict[str, _Node] = {}
    for key, node in table.edits.items():
        if key == other and where == "before":
            reordered[name] = moved
        reordered[key] = node
        if key == other and where == "after":
            reordered[name] = moved
    table.edits = reordered


@dataclass(frozen=True)
class _Service:
    protocol: str
    dst_ports: PortSet | None
    src_ports: PortSet | None


@dataclass
class _Vip:
    name: str
    ext: IPSet
    mapped: IPSet
    protocol: str
    ext_ports: tuple[int, int] | None
    mapped_ports: tuple[int, int] | None
    line: int
    interface: str


def _range(text: str) -> tuple[int, int] | None:
    lo, _, hi = text.partition("-")
    if not lo.strip().isdigit() or (hi and not hi.strip().isdigit()):
        return None
    first, last = int(lo), int(hi) if hi else int(lo)
    return (min(first, last), max(first, last))


class _Model:
    """Objects of one VDOM resolved into address sets, services and VIPs."""

    def __init__(self, scope: _Node, path: str, issues: list[tuple[int | None, str]]) -> None:
        self.scope = scope
        self.path = path
        self.issues = issues
        self.notes: list[str] = []
        self.vips: dict[str, _Vip] = {}
        self.vip_groups: dict[str, list[str]] = {}
        settings = scope.table("system settings")
        # Central NAT: VIPs live in the DNAT table and policies name the mapped address.
        self.central = settings is not None and settings.get("central-nat") == "enable"
        self._load_vips()

    def _table(self, path: str) -> dict[str, _Node]:
        node = self.scope.table(path)
        return node.edits if node is not None else {}

    # addresses -----------------------------------------------------------------------------
    def address(self, name: str, family: int, depth: int = 0) -> tuple[IPSet, list[str]]:
        if depth > 16:
            return IPSet(), [name]
        suffix = "6" if family == 6 else ""
        universe = IPSet.all_v4() if family == 4 else IPSet.all_v6()
        table = self._table(f"firewall address{suffix}")
        groups = self._table(f"firewall addrgrp{suffix}")
        if name in groups:
            group = groups[name]
            found = [self.address(member, family, depth + 1) for member in group.values("member")]
            result = union_all(got for got, _ in found)
            unresolved = [name for _, missing in found for name in missing]
            if group.get("exclude") == "enable":
                for member in group.values("exclude-member"):
                    got, _ = self.address(member, family, depth + 1)
                    result = result - got
            return result, unresolved
        if name in table:
            return self._object(table[name], family)
        if name == "all":
            return universe, []
        if name == "none":
            return IPSet(), []
        literal = try_parse_set(name)
        if literal is not None:
            return literal & universe, []
        return IPSet(), [name]

    def _object(self, node: _Node, family: int) -> tuple[IPSet, list[str]]:
        kind = node.get("type", "ipprefix" if family == 6 else "ipmask")
        try:
            if kind in ("ipmask", "ipprefix"):
                key = "ip6" if family == 6 else "subnet"
                values = node.values(key) or (["::/0"] if family == 6 else ["0.0.0.0/0"])
                return IPSet.parse(" ".join(values[:2])), []
            if kind == "iprange":
                zero = "::" if family == 6 else "0.0.0.0"
                return IPSet.from_range(node.get("start-ip", zero), node.get("end-ip", zero)), []
            if kind == "wildcard" and family == 4:
                values = node.values("wildcard") or ["0.0.0.0", "0.0.0.0"]
                inverted = str(
                    ipaddress.IPv4Address(int(ipaddress.IPv4Address(values[1])) ^ 0xFFFFFFFF)
                )
                return IPSet.from_wildcard(values[0], inverted), []
        except (AddressParseError, ValueError, IndexError):
            self.issues.append((node.line, f"address {node.name}: value not understood"))
            return IPSet(), [node.name]
        return IPSet(), [f"{node.name} ({kind})"]

    # VIPs ------------------------------------------------------------------------------------
    def _load_vips(self) -> None:
        for suffix in ("", "6"):
            for name, node in self._table(f"firewall vip{suffix}").items():
                try:
                    ext = IPSet.parse(*node.values("extip"))
                    mapped = IPSet.parse(*(v.strip() for v in node.values("mappedip")))
                except AddressParseError:
                    self.issues.append((node.line, f"VIP {name}: extip/mappedip not understood"))
                    continue
                forward = node.get("portforward") == "enable"
                ext_ports = _range(node.get("extport")) if forward else None
                mapped_ports = _range(node.get("mappedport")) if forward else None
                if forward and ext_ports is None:
                    self.issues.append((node.line, f"VIP {name}: port forward without extport"))
                    continue
                self.vips[name] = _Vip(
                    name,
                    ext,
                    mapped,
                    node.get("protocol", "tcp").lower(),
                    ext_ports,
                    mapped_ports or ext_ports,
                    node.line,
                    node.get("extintf", "any"),
                )
            for name, node in self._table(f"firewall vipgrp{suffix}").items():
                self.vip_groups[name] = node.values("member")

    def vip_members(self, name: str) -> list[_Vip]:
        if name in self.vips:
            return [self.vips[name]]
        return [self.vips[m] for m in self.vip_groups.get(name, []) if m in self.vips]

    # services --------------------------------------------------------------------------------
    def services(self, name: str, depth: int = 0) -> tuple[list[_Service], list[str]]:
        custom = self._table("firewall service custom")
        groups = self._table("firewall service group")
        if depth > 16:
            return [], [name]
        if name in groups:
            result: list[_Service] = []
            unresolved: list[str] = []
            for member in groups[name].values("member"):
                got, missing = self.services(member, depth + 1)
                result.extend(got)
                unresolved.extend(missing)
            return result, unresolved
        if name in custom:
            return self._custom(custom[name]), []
        if name.upper() in _PREDEFINED:
            return [
                _Service(
                    p,
                    None if (p == "ip" or (lo <= 1 and hi == 65535)) else PortSet.of((lo, hi)),
                    None,
                )
                for p, lo, hi in _PREDEFINED[name.upper()]
            ], []
        return [], [name]

    def _custom(self, node: _Node) -> list[_Service]:
        protocol = node.get("protocol", "TCP/UDP/SCTP").upper()
        if protocol in ("IP", "ALL"):
            number = node.get("protocol-number", "0")
            return [_Service(ANY_PROTOCOL if number in ("0", "") else number, None, None)]
        if protocol.startswith("ICMP"):
            return [_Service("icmp", None, None)]
        result: list[_Service] = []
        for proto in ("tcp", "udp"):
            for item in node.values(f"{proto}-portrange"):
                dst_text, _, src_text = item.partition(":")
                dst, src = _range(dst_text), _range(src_text) if src_text else None
                if dst is None or (src_text and src is None):
                    self.issues.append((node.line, f"service {node.name}: bad port range {item}"))
                    continue
                result.append(
                    _Service(proto, PortSet.of(dst), PortSet.of(src) if src is not None else None)
                )
        if node.values("iprange") or node.values("fqdn"):
            self.notes.append(
                f"service {node.name} also limits the destination address; that limit is ignored"
            )
        return result


def _interfaces(
    scope: _Node, root: _Node
) -> tuple[dict[str, IPSet], dict[str, list[str]], dict[str, str]]:
    """Interface subnets, zone members and interface roles (system tables may be global)."""
    subnets: dict[str, IPSet] = {}
    roles: dict[str, str] = {}
    for holder in (root, root.children.get("global"), scope):
        if holder is None:
            continue
        table = holder.table("system interface")
        if table is None:
            continue
        for name, node in table.edits.items():
            values = node.values("ip")
            if len(values) >= 1 and values[0] not in ("0.0.0.0", "0.0.0.0/0"):
                parsed = try_parse_set("/".join(values[:2]))
                if parsed is not None:
                    subnets[name] = parsed
            if node.get("role"):
                roles[name] = node.get("role")
    zones: dict[str, list[str]] = {}
    table = scope.table("system zone")
    if table is not None:
        for name, node in table.edits.items():
            zones[name] = node.values("interface")
    return subnets, zones, roles


def _scope(root: _Node, options: ParseOptions) -> tuple[_Node, str]:
    vdoms = root.children.get("vdom")
    if vdoms is None or not vdoms.edits:
        return root, ""
    if options.acl and options.acl in vdoms.edits:
        return vdoms.edits[options.acl], options.acl
    for name, node in vdoms.edits.items():
        if node.table("firewall policy") is not None:
            return node, name
    first = next(iter(vdoms.edits))
    return vdoms.edits[first], first


def _vip_ports(vip: _Vip, service: _Service) -> PortSet | None:
    """Outside ports a VIP forwards whose mapped port the service admits (None: any)."""
    if vip.ext_ports is None:
        return service.dst_ports
    ext_lo, ext_hi = vip.ext_ports
    map_lo = vip.mapped_ports[0] if vip.mapped_ports else ext_lo
    single = vip.mapped_ports is not None and vip.mapped_ports[0] == vip.mapped_ports[1]
    allowed: list[tuple[int, int]] = []
    if service.dst_ports is None:
        return PortSet.of((ext_lo, ext_hi))
    for lo, hi in service.dst_ports.ranges:
        if single:
            if lo <= map_lo <= hi:
                allowed.append((ext_lo, ext_hi))
            continue
        # mapped = map_lo + (port - ext_lo)
        first = max(ext_lo, lo - map_lo + ext_lo)
        last = min(ext_hi, hi - map_lo + ext_lo)
        if first <= last:
            allowed.append((first, last))
    return PortSet.of(*allowed)


@register_parser
class FortiGateParser:
    vendor = "fortigate"
    label = "FortiGate (FortiOS) configuration"

    def sniff(self, text: str) -> int:
        sample = text[:400_000]
        score = 0
        if re.search(
            r"^\s*config firewall (policy|address|addrgrp|vip|service custom)\b", sample, re.M
        ):
            score += 60
        if re.search(r"^#config-version=F", sample, re.M):
            score += 40
        if re.search(r"^\s*config system (global|interface)\b", sample, re.M):
            score += 20
        if re.search(r"^\s*edit \S+\s*$", sample, re.M) and re.search(
            r"^\s*next\s*$", sample, re.M
        ):
            score += 20
        return min(score, 95)

    def parse(self, text: str, path: str, options: ParseOptions) -> ParseResult:
        root, issues = parse_tree(text)
        scope, vdom = _scope(root, options)
        model = _Model(scope, path, issues)
        table = scope.table("firewall policy")
        table6 = scope.table("firewall policy6")
        if table is None and table6 is None:
            if not root.children:
                raise FirewallParseError(f"{path}: no FortiOS `config ... end` blocks found")
            model.notes.append("no `config firewall policy`: every forwarded connection is denied")
        subnets, zones, roles = _interfaces(scope, root)
        routes = scope.table("router static")
        exits = [
            node.get("device")
            for node in (routes.edits.values() if routes is not None else [])
            if node.get("device")
            and " ".join(node.values("dst")) in ("", "0.0.0.0 0.0.0.0", "0.0.0.0/0")
        ]
        inbound = self._inbound(options, model, roles, exits, zones)
        rules: list[Rule] = []
        for tab, family in ((table, 0), (table6, 6)):
            if tab is None:
                continue
            for policy_id, node in tab.edits.items():
                rules.extend(self._rules(model, node, policy_id, path, family, subnets, zones))
        log_setting = scope.table("log setting") or root.table("log setting")
        logged = log_setting is not None and log_setting.get("fwpolicy-implicit-log") == "enable"
        chain = Chain(
            "firewall policy",
            tuple(rules),
            Action.DENY,
            Origin(path, None, "implicit deny (policy 0)" + ("" if logged else ", not logged")),
            default_logged=logged,
        )
        nats = tuple(
            DestinationNat(
                vip.ext,
                vip.mapped,
                Origin(path, vip.line, f"config firewall vip: edit {vip.name}"),
                PortSet.of(vip.ext_ports) if vip.ext_ports else None,
                vip.mapped_ports[0] if vip.mapped_ports and vip.ext_ports else None,
                vip.protocol if vip.ext_ports else ANY_PROTOCOL,
                frozenset({vip.interface}) if vip.interface != "any" else None,
            )
            for vip in model.vips.values()
        )
        notes = [
            *model.notes,
            "FortiGate policies apply in listed order; VIP policies name the public address "
            "(extip); unmatched traffic hits the implicit deny (policy 0), "
            + (
                "which is logged (fwpolicy-implicit-log enable)"
                if logged
                else "which is not logged by default: no log line is no proof of no drop"
            ),
        ]
        if model.central:
            notes.append(
                "central NAT is enabled: policies name the mapped (inside) address; the VIPs "
                "translate the public address first"
            )
        if vdom:
            notes.append(f"VDOM {vdom} evaluated (choose another with --acl)")
        if inbound is None:
            notes.append(
                "the internet-facing interface is unknown: srcintf is not checked (use --interface)"
            )
        policy = Policy(
            vendor=self.vendor,
            path=path,
            chains={chain.name: chain},
            entries=(chain.name,),
            nat=nats,
            destination_view=DestinationView.POST_NAT if model.central else DestinationView.PRE_NAT,
            acl_name=vdom or "firewall policy",
            inbound_interfaces=inbound,
            smtp_hosts=tuple(
                str(v.ext.networks()[0].network_address)
                for v in model.vips.values()
                if v.ext and (v.ext_ports is None or v.ext_ports[0] <= 25 <= v.ext_ports[1])
            ),
            notes=tuple(notes),
            default_deny_logged=logged,
            all_acls=tuple(root.children["vdom"].edits) if "vdom" in root.children else (),
        )
        return ParseResult(policy, tuple(issues))

    def _inbound(
        self,
        options: ParseOptions,
        model: _Model,
        roles: dict[str, str],
        exits: list[str],
        zones: dict[str, list[str]],
    ) -> frozenset[str] | None:
        chosen: set[str] = set()
        if options.interface:
            chosen.add(options.interface)
        else:
            chosen.update(v.interface for v in model.vips.values() if v.interface != "any")
            if not chosen:
                chosen.update(name for name, role in roles.items() if role == "wan")
            if not chosen:
                chosen.update(exits)  # the default route leaves through the internet side
        if not chosen:
            return None
        for zone, members in zones.items():
            if chosen & set(members):
                chosen.add(zone)
        return frozenset(chosen | {"any"})

    def _rules(
        self,
        model: _Model,
        node: _Node,
        policy_id: str,
        path: str,
        family: int,
        subnets: dict[str, IPSet],
        zones: dict[str, list[str]],
    ) -> list[Rule]:
        action_text = node.get("action", "deny").lower()
        label = node.get("name")
        text = f"edit {policy_id}" + (f'  (name "{label}")' if label else "")
        text += f": {action_text} {' '.join(node.values('srcaddr') + node.values('srcaddr6'))}"
        text += f" -> {' '.join(node.values('dstaddr') + node.values('dstaddr6'))}"
        text += f" service {' '.join(node.values('service'))}"
        origin = Origin(path, node.line, text)
        reason = ""
        if action_text == "accept":
            action = Action.PERMIT
        elif action_text == "ipsec":
            action, reason = Action.PERMIT, "ipsec policy: only traffic from a VPN tunnel matches"
        else:
            action = Action.REJECT if node.get("send-deny-packet") == "enable" else Action.DENY
        enabled = node.get("status", "enable") != "disable"
        if node.values("users") or node.values("groups"):
            reason = reason or (
                "it needs an authenticated user or group; Exchange Online connections "
                "never authenticate to the firewall"
            )
        schedule = node.get("schedule", "always")
        if schedule not in ("always", ""):
            model.notes.append(f"policy {policy_id} has schedule {schedule}; assumed active")
        unresolved: list[str] = []
        # sources
        src_names = [(n, 6 if family == 6 else 4) for n in node.values("srcaddr")]
        src_names += [(n, 6) for n in node.values("srcaddr6")]
        sources = IPSet()
        for name, fam in src_names:
            got, missing = model.address(name, fam)
            sources, unresolved = sources | got, unresolved + missing
        if node.get("internet-service-src") == "enable":
            unresolved += node.values("internet-service-src-name") or ["internet-service-src"]
            reason = (
                reason or "its source is an Internet Service Database entry, not resolvable offline"
            )
        if node.get("srcaddr-negate") == "enable":
            sources = _family_span(src_names) - sources
        # destinations: plain addresses and VIPs
        dst_names = [(n, 6 if family == 6 else 4) for n in node.values("dstaddr")]
        dst_names += [(n, 6) for n in node.values("dstaddr6")]
        plain = IPSet()
        vips: list[_Vip] = []
        for name, fam in dst_names:
            members = [] if model.central else model.vip_members(name)
            if members:
                vips.extend(members)
                continue
            got, missing = model.address(name, fam)
            plain, unresolved = plain | got, unresolved + missing
        if node.get("internet-service") == "enable":
            unresolved += node.values("internet-service-name") or ["internet-service"]
            reason = reason or "its destination is an Internet Service Database entry"
        if node.get("dstaddr-negate") == "enable":
            plain = _family_span(dst_names) - plain
        match_vip = (
            action != Action.PERMIT and node.get("match-vip") == "enable" and not model.central
        )
        all_ext = IPSet()
        for vip in model.vips.values():
            all_ext = all_ext | vip.ext
        if match_vip:
            for vip in model.vips.values():
                if vip.mapped.overlaps(plain):
                    vips.append(vip)
        if not model.central:
            plain = plain - all_ext
        services: list[_Service] = []
        for name in node.values("service"):
            items, missing = model.services(name)
            services.extend(items)
            if missing:
                model.issues.append(
                    (node.line, f"policy {policy_id}: service {missing[0]} is not defined")
                )
        if node.get("service-negate") == "enable":
            tcp = [
                s.dst_ports
                for s in services
                if s.protocol in ("tcp", ANY_PROTOCOL) and s.src_ports is None
            ]
            covered = (
                PortSet(())
                if not tcp
                else PortSet.of(*(r for p in tcp for r in (p.ranges if p else ((0, 65535),))))
            )
            services = [_Service("tcp", covered.negated(), None)]
        in_interfaces = self._intf(node.values("srcintf"))
        egress = self._egress(node.values("dstintf"), subnets, zones)
        if unresolved and not reason and not sources:
            reason = f"its source {', '.join(unresolved)} cannot be resolved offline"
        if unresolved:
            model.notes.append(
                f"policy {policy_id}: cannot resolve {', '.join(unresolved)} offline"
            )
        common = {
            "action": action,
            "origin": origin,
            "sources": sources,
            "in_interfaces": in_interfaces,
            "enabled": enabled,
            "name": f"policy {policy_id}",
            "logs": node.get("logtraffic", "utm" if action == Action.PERMIT else "disable")
            in ("all", "utm"),
            "unresolved": tuple(unresolved),
            "matches_nothing_reason": reason,
        }
        rules: list[Rule] = []
        for service in services:
            destinations = plain & egress if egress is not None else plain
            if destinations:
                rules.append(
                    Rule(
                        destinations=destinations,
                        protocol=service.protocol,
                        dst_ports=service.dst_ports,
                        src_ports=service.src_ports,
                        **common,  # type: ignore[arg-type]
                    )
                )
            for vip in vips:
                if egress is not None and not vip.mapped.overlaps(egress):
                    continue
                protocol = service.protocol
                if vip.ext_ports is not None:
                    if service.protocol not in (vip.protocol, ANY_PROTOCOL):
                        continue
                    protocol = vip.protocol
                rules.append(
                    Rule(
                        destinations=vip.ext,
                        protocol=protocol,
                        dst_ports=_vip_ports(vip, service),
                        src_ports=service.src_ports,
                        **common,  # type: ignore[arg-type]
                    )
                )
        if not rules:
            # Keep the policy visible in reports even when it can never match TCP.
            rules.append(
                Rule(
                    destinations=IPSet(),
                    protocol="none",
                    **common,  # type: ignore[arg-type]
                )
            )
        return rules

    @staticmethod
    def _intf(names: Values) -> frozenset[str] | None:
        if not names or "any" in names:
            return None
        return frozenset(names)

    @staticmethod
    def _egress(
        names: Values, subnets: dict[str, IPSet], zones: dict[str, list[str]]
    ) -> IPSet | None:
        """Destinations routed out of `dstintf`, plus any address no known subnet covers."""
        if not names or "any" in names or not subnets:
            return None
        known = IPSet()
        for subnet in subnets.values():
            known = known | subnet
        allowed = known.complement()
        for name in names:
            for member in zones.get(name, [name]):
                allowed = allowed | subnets.get(member, IPSet())
        return allowed

    # ---- remediation -------------------------------------------------------------------------
    def remediate(self, text: str, result: ParseResult, check: RangeCheck) -> Remediation | None:
        gap = gap_context(result.policy, check)
        root, _ = parse_tree(text)
        vdom = result.policy.acl_name if "vdom" in root.children else ""
        scope = root.children["vdom"].edits[vdom] if vdom else root
        path = result.policy.path
        cleanup = _cleanup(scope, path, check.stale, vdom)
        if not gap.missing:
            return cleanup_only(cleanup)
        options = ParseOptions(acl=vdom or None)

        def reparse(patched: str) -> Policy:
            return self.parse(patched, path, options).policy

        found = first_closing(
            reparse,
            gap,
            [
                lambda: _extend_group(scope, gap, text, vdom),
                lambda: _new_policy(scope, gap, text, vdom),
            ],
        )
        return finish(found, cleanup)


def _cleanup(scope: _Node, path: str, stale: IPSet, vdom: str) -> tuple[str, ...]:
    """`unselect` lines for group members and policy sources that are only retired ranges."""
    if not stale:
        return ()
    model = _Model(scope, path, [])
    lines: list[str] = []
    for suffix, family in (("", 4), ("6", 6)):
        groups = scope.table(f"firewall addrgrp{suffix}")
        for name, node in groups.edits.items() if groups is not None else []:
            gone = [
                m for m in node.values("member") if is_stale(model.address(m, family)[0], stale)
            ]
            if gone:
                lines += [
                    f"config firewall addrgrp{suffix}",
                    f'    edit "{name}"',
                    "        unselect member " + " ".join(f'"{m}"' for m in gone),
                    "    next",
                    "end",
                ]
    policies = scope.table("firewall policy")
    for policy_id, node in policies.edits.items() if policies is not None else []:
        if node.get("action", "deny") != "accept":
            continue
        for key, family in (("srcaddr", 4), ("srcaddr6", 6)):
            gone = [m for m in node.values(key) if is_stale(model.address(m, family)[0], stale)]
            if gone:
                lines += [
                    "config firewall policy",
                    f"    edit {policy_id}",
                    f"        unselect {key} " + " ".join(f'"{m}"' for m in gone),
                    "    next",
                    "end",
                ]
    return tuple(_wrap(lines, vdom)) if lines else ()


def _family_span(names: list[tuple[str, int]]) -> IPSet:
    result = IPSet()
    for _, family in names:
        result = result | (IPSet.all_v4() if family == 4 else IPSet.all_v6())
    return result


def _object_name(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    return f"EXO-{network.network_address}-{network.prefixlen}"


def _address_block(gap: GapContext, existing: set[str]) -> tuple[list[str], list[str]]:
    """`config firewall address[6]` lines for the missing ranges, and the object names."""
    networks = gap.missing.networks()
    family = networks[0].version if networks else 4
    lines = [f"config firewall address{'6' if family == 6 else ''}"]
    names: list[str] = []
    for network in networks:
        name = _object_name(network)
        names.append(name)
        if name in existing:
            continue
        lines.append(f'    edit "{name}"')
        if family == 6:
            lines.append(f"        set ip6 {network}")
        else:
            lines.append(f"        set subnet {network.network_address} {network.netmask}")
        lines.append('        set comment "Exchange Online Protection (mailflow-doctor)"')
        lines.append("    next")
    lines.append("end")
    return lines, names


def _wrap(lines: list[str], vdom: str) -> list[str]:
    if not vdom:
        return lines
    return ["config vdom", f"edit {vdom}", *lines, "next", "end"]


def _append(text: str, lines: list[str]) -> str:
    return insert_after_line(text, len(text.splitlines()), lines)


def _smtp_policy(scope: _Node, gap: GapContext) -> tuple[str, _Node] | None:
    table = scope.table("firewall policy")
    if table is None:
        return None
    lines = {rule.origin.line for rule in gap.smtp_permits()}
    for policy_id, node in table.edits.items():
        if node.line in lines:
            return policy_id, node
    return None


def _extend_group(
    scope: _Node, gap: GapContext, text: str, vdom: str
) -> tuple[tuple[str, ...], str, str] | None:
    found = _smtp_policy(scope, gap)
    if found is None:
        return None
    policy_id, node = found
    blocker = gap.first_blocker()
    if blocker is not None:
        # Listing order (after any `move`) decides, not line numbers.
        order = [n.line for n in (scope.table("firewall policy") or _Node("", 0)).edits.values()]
        if blocker.origin.line in order and order.index(blocker.origin.line) < order.index(
            node.line
        ):
            return None
    family = 6 if gap.missing.v6 else 4
    suffix = "6" if family == 6 else ""
    key = "srcaddr6" if family == 6 else "srcaddr"
    existing_objects = set((scope.table(f"firewall address{suffix}") or _Node("", 0)).edits)
    address_lines, names = _address_block(gap, existing_objects)
    groups = scope.table(f"firewall addrgrp{suffix}")
    members = node.values(key)
    group = next((m for m in members if groups is not None and m in groups.edits), None)
    quoted = " ".join(f'"{n}"' for n in names)
    if group is not None:
        change = [
            f"config firewall addrgrp{suffix}",
            f'    edit "{group}"',
            f"        append member {quoted}",
            "    next",
            "end",
        ]
        what = f"address group {group}, which policy {policy_id} already uses as its source"
    elif members and "all" not in members:
        change = [
            "config firewall policy",
            f"    edit {policy_id}",
            f"        append {key} {quoted}",
            "    next",
            "end",
        ]
        what = f"the source of policy {policy_id}, which already permits SMTP"
    else:
        return None
    lines = _wrap(address_lines + change, vdom)
    return (
        tuple(lines),
        _append(text, lines),
        f"Create address objects for the missing Exchange Online ranges and add them to {what}.",
    )


def _new_policy(
    scope: _Node, gap: GapContext, text: str, vdom: str
) -> tuple[tuple[str, ...], str, str] | None:
    table = scope.table("firewall policy")
    edits = table.edits if table is not None else {}
    family = 6 if gap.missing.v6 else 4
    suffix = "6" if family == 6 else ""
    existing_objects = set((scope.table(f"firewall address{suffix}") or _Node("", 0)).edits)
    address_lines, names = _address_block(gap, existing_objects)
    group = "EXO-SMTP-mailflow-doctor"
    group_lines = [
        f"config firewall addrgrp{suffix}",
        f'    edit "{group}"',
        "        set member " + " ".join(f'"{n}"' for n in names),
        '        set comment "Exchange Online Protection (mailflow-doctor)"',
        "    next",
        "end",
    ]
    template = _smtp_policy(scope, gap)
    numbers = [int(k) for k in edits if k.isdigit()]
    new_id = str(max(numbers, default=0) + 1)
    src_key, dst_key = ("srcaddr6", "dstaddr6") if family == 6 else ("srcaddr", "dstaddr")
    body: list[str]
    extra: list[str] = []
    if template is not None:
        _, node = template
        srcintf = node.values("srcintf") or ["any"]
        dstintf = node.values("dstintf") or ["any"]
        dstaddr = node.values(dst_key) or node.values("dstaddr")
        service = node.values("service") or ["SMTP"]
    else:
        inbound = sorted((gap.policy.inbound_interfaces or frozenset()) - {"any"})
        srcintf = inbound[:1] or ["any"]
        dstintf = ["any"]
        vip = next(
            (n for n in gap.policy.nat if gap.asked_destination in n.public),
            None,
        )
        if (
            vip is not None
            and vip.origin.text.startswith("config firewall vip: edit ")
            and gap.policy.destination_view == DestinationView.PRE_NAT
        ):
            dstaddr = [vip.origin.text.rsplit(" ", 1)[1]]
        else:
            name = f"mail-{gap.destination}"
            dstaddr = [name]
            extra = [
                f"config firewall address{suffix}",
                f'    edit "{name}"',
                f"        set {'ip6' if family == 6 else 'subnet'} {gap.destination}"
                + ("/128" if family == 6 else " 255.255.255.255"),
                "    next",
                "end",
            ]
        service = ["SMTP"] if gap.port == 25 else ["ALL_TCP"]
    body = [
        "config firewall policy",
        f"    edit {new_id}",
        '        set name "EXO-SMTP-in"',
        "        set srcintf " + " ".join(f'"{i}"' for i in srcintf),
        "        set dstintf " + " ".join(f'"{i}"' for i in dstintf),
        f'        set {src_key} "{group}"',
        f"        set {dst_key} " + " ".join(f'"{d}"' for d in dstaddr),
        '        set schedule "always"',
        "        set service " + " ".join(f'"{s}"' for s in service),
        "        set action accept",
        "        set logtraffic all",
        "    next",
    ]
    blocker = gap.first_blocker()
    anchor_id = None
    if blocker is not None:
        anchor_id = next((k for k, n in edits.items() if n.line == blocker.origin.line), None)
    elif template is not None:
        anchor_id = None
    if anchor_id is not None:
        body.append(f"    move {new_id} before {anchor_id}")
    body.append("end")
    lines = _wrap(address_lines + extra + group_lines + body, vdom)
    where = f"and move it before policy {anchor_id}, which blocks them" if anchor_id else ""
    return (
        tuple(lines),
        _append(text, lines),
        f"Create an address group with the missing Exchange Online ranges and a policy "
        f"{new_id} that accepts SMTP from it {where}".strip()
        + ".",
    )
