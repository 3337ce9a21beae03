"""Palo Alto PAN-OS configurations (set format, XML and brace format) into the policy model.

All three formats are first turned into the same statements, `path words ... value`, so one
interpreter serves them. Security rules apply top-down, first match, in the order they appear
(pre-rulebase, local rulebase, post-rulebase), and need zone, address, service and application
to match. With destination NAT the security rule names the pre-NAT (public) address and the
post-NAT zone: DestinationView.PRE_NAT; the zone is worked out from interface subnets and NAT
rules where the configuration says enough, and not checked where it does not.

After the rules come `intrazone-default` (allow) and `interzone-default` (deny); neither logs
unless `log-end` is set on them, so an inbound drop by the default leaves no trace. Rules that
name an external dynamic list, a dynamic address group or an FQDN object cannot be resolved
offline; they are reported, never guessed.

Simplifications: App-ID is modelled as "a rule whose applications cannot be SMTP does not match
SMTP"; `application-default` for SMTP means TCP 25 and 587.
"""

from __future__ import annotations

import ipaddress
import re
import xml.etree.ElementTree as ET
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
    parse_xml,
    port_ranges,
    try_parse_set,
    union_all,
    xml_line,
)
from mailflow_doctor.knowledge.ipranges import AddressParseError, IPSet

Word = str | list[str]
SMTP_APPS = frozenset({"smtp", "smtp-base", "smtps", "smtp-starttls"})
_APP_PORTS: dict[str, list[tuple[int, int]]] = {
    "smtp": [(25, 25), (587, 587)],
    "smtp-base": [(25, 25), (587, 587)],
    "smtps": [(465, 465)],
    "web-browsing": [(80, 80)],
    "ssl": [(443, 443)],
    "dns": [(53, 53)],
    "ssh": [(22, 22)],
    "ms-rdp": [(3389, 3389)],
}
_PREDEFINED_SERVICES = {
    "service-http": [("tcp", PortSet.of((80, 80), (8080, 8080)))],
    "service-https": [("tcp", PortSet.of((443, 443)))],
}
_UNTRUST = re.compile(r"untrust|outside|internet|wan|external|public|isp", re.I)
_PREFIXES = ("config", "shared", "mgt-config", "policy")


@dataclass
class _Statement:
    line: int
    words: list[Word]


@dataclass
class _SecRule:
    name: str
    line: int
    section: int  # 0 pre-rulebase, 1 local, 2 post-rulebase
    fields: dict[str, list[str]] = field(default_factory=dict)

    def get(self, key: str, default: str = "") -> str:
        values = self.fields.get(key)
        return values[0] if values else default

    def members(self, key: str) -> list[str]:
        return list(self.fields.get(key, ["any"]))


@dataclass
class _Config:
    addresses: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    groups: dict[str, tuple[list[str], str, int]] = field(default_factory=dict)  # static, filter
    edls: dict[str, int] = field(default_factory=dict)
    services: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)
    service_lines: dict[str, int] = field(default_factory=dict)
    service_groups: dict[str, list[str]] = field(default_factory=dict)
    app_groups: dict[str, list[str]] = field(default_factory=dict)
    zones: dict[str, list[str]] = field(default_factory=dict)
    interfaces: dict[str, list[str]] = field(default_factory=dict)
    security: dict[str, _SecRule] = field(default_factory=dict)
    nat: dict[str, _SecRule] = field(default_factory=dict)
    defaults: dict[str, dict[str, str]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    routes: dict[str, dict[str, str]] = field(default_factory=dict)
    issues: list[tuple[int | None, str]] = field(default_factory=list)


# ---- reading the three formats into statements ------------------------------------------------


def _set_words(line: str) -> list[Word]:
    words: list[Word] = []
    stack: list[list[str]] = []
    for match in re.finditer(r'"((?:[^"\\]|\\.)*)"|\'([^\']*)\'|(\[|\]|[^\s\[\]]+)', line):
        quoted, single, bare = match.groups()
        token = quoted if quoted is not None else single if single is not None else bare
        if bare == "[":
            stack.append([])
            continue
        if bare == "]":
            if stack:
                words.append(stack.pop())
            continue
        if stack:
            stack[-1].append(token)
        else:
            words.append(token)
    while stack:
        words.append(stack.pop())
    return words


def set_statements(text: str) -> list[_Statement]:
    result: list[_Statement] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        words = _set_words(stripped[:8000])
        if not words or not isinstance(words[0], str):
            continue
        verb = words[0].lower()
        if verb in ("set", "move", "delete"):
            result.append(_Statement(number, words))
    return result


def brace_statements(text: str) -> list[_Statement]:
    """RANCID / `show config running` brace format: `a { b { c value; } }`."""
    result: list[_Statement] = []
    path: list[Word] = []
    depths: list[int] = []
    pending: list[Word] = []
    bracket: list[str] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        for match in re.finditer(r'"((?:[^"\\]|\\.)*)"|([{};\[\]])|([^\s{};\[\]"]+)', stripped):
            quoted, punct, bare = match.groups()
            if punct == "{":
                depths.append(len(path))
                path.extend(pending)
                pending = []
            elif punct == "}":
                del path[depths.pop() if depths else 0 :]
                pending = []
            elif punct == ";":
                result.append(_Statement(number, ["set", *path, *pending]))
                pending = []
            elif punct == "[":
                bracket = []
            elif punct == "]":
                if bracket is not None:
                    pending.append(bracket)
                bracket = None
            else:
                token = quoted if quoted is not None else bare
                if bracket is not None:
                    bracket.append(token)
                else:
                    pending.append(token)
    return result


def xml_statements(root: ET.Element) -> list[_Statement]:
    result: list[_Statement] = []

    def walk(element: ET.Element, path: list[str]) -> None:
        children = list(element)
        members = [c for c in children if c.tag == "member"]
        if members and len(members) == len(children):
            values = [(m.text or "").strip() for m in members]
            result.append(_Statement(xml_line(element) or 0, ["set", *path, values]))
            return
        if not children:
            text = (element.text or "").strip()
            words: list[Word] = ["set", *path, text] if text else ["set", *path]
            result.append(_Statement(xml_line(element) or 0, words))
            return
        for child in children:
            if child.tag == "entry":
                entry_path = [*path, child.get("name", "")]
                result.append(_Statement(xml_line(child) or 0, ["set", *entry_path]))
                walk(child, entry_path)
            else:
                walk(child, [*path, child.tag])

    for child in root:
        walk(child, [child.tag])
    return result


# ---- interpreting statements --------------------------------------------------------------------


def _strip(words: list[Word]) -> list[Word]:
    """Drop the scope prefixes (vsys, shared, device groups, devices, panorama)."""
    rest = list(words)
    changed = True
    while changed and rest:
        changed = False
        head = rest[0] if isinstance(rest[0], str) else ""
        if head in _PREFIXES:
            rest, changed = rest[1:], True
            if head == "policy" and rest and rest[0] == "panorama":
                rest = rest[1:]
        elif head in ("vsys", "device-group", "devices", "template") and len(rest) > 1:
            rest, changed = rest[2:], True
        elif head == "panorama" and len(rest) > 1 and rest[1] in ("pre-rulebase", "post-rulebase"):
            rest, changed = rest[1:], True
    return rest


def _flat(words: list[Word]) -> list[str]:
    out: list[str] = []
    for word in words:
        if isinstance(word, list):
            out.extend(word)
        else:
            out.append(word)
    return out


def interpret(statements: list[_Statement]) -> _Config:
    config = _Config()
    for statement in statements:
        verb = statement.words[0]
        words = _strip(statement.words[1:])
        try:
            if verb == "move":
                _move(config, words, statement.line)
            elif verb == "set":
                _apply(config, words, statement.line)
        except (IndexError, ValueError):
            text = " ".join(_flat(statement.words))[:80]
            config.issues.append((statement.line, f"statement not understood: {text}"))
    return config


def _move(config: _Config, words: list[Word], line: int) -> None:
    flat = _flat(words)
    if flat[:3] != ["rulebase", "security", "rules"] or len(flat) < 5:
        raise ValueError("unsupported move")
    name, where = flat[3], flat[4]
    if name not in config.order:
        raise ValueError("unknown rule")
    config.order.remove(name)
    if where == "top":
        config.order.insert(0, name)
    elif where == "bottom":
        config.order.append(name)
    else:
        other = flat[5]
        index = config.order.index(other)
        config.order.insert(index if where == "before" else index + 1, name)


def _apply(config: _Config, words: list[Word], line: int) -> None:
    if not words:
        return
    head = words[0]
    if head == "address" and len(words) >= 2:
        name = str(words[1])
        if len(words) >= 4 and words[2] in ("ip-netmask", "ip-range", "fqdn", "ip-wildcard"):
            config.addresses[name] = (str(words[2]), " ".join(_flat(words[3:4])), line)
        elif name not in config.addresses:
            config.addresses[name] = ("", "", line)
    elif head == "address-group" and len(words) >= 2:
        name = str(words[1])
        static, dynamic, _ = config.groups.get(name, ([], "", line))
        if len(words) >= 3 and words[2] == "static":
            static = static + _flat(words[3:])
        elif len(words) >= 3 and words[2] == "dynamic":
            dynamic = " ".join(_flat(words[3:])) or "dynamic"
        config.groups[name] = (static, dynamic, line)
    elif head == "external-list" and len(words) >= 2:
        config.edls.setdefault(str(words[1]), line)
    elif head == "service" and len(words) >= 5 and words[2] == "protocol":
        name, proto = str(words[1]), str(words[3])
        entries = config.services.setdefault(name, [])
        config.service_lines.setdefault(name, line)
        key = str(words[4])
        value = " ".join(_flat(words[5:6]))
        entry = next((e for e in entries if e[0] == proto), None)
        if entry is None:
            entries.append(
                (proto, value if key == "port" else "", value if key == "source-port" else "")
            )
        else:
            entries.remove(entry)
            entries.append(
                (
                    proto,
                    value if key == "port" else entry[1],
                    value if key == "source-port" else entry[2],
                )
            )
    elif head == "service-group" and len(words) >= 4 and words[2] == "members":
        config.service_groups.setdefault(str(words[1]), []).extend(_flat(words[3:]))
    elif head == "application-group" and len(words) >= 4 and words[2] == "members":
        config.app_groups.setdefault(str(words[1]), []).extend(_flat(words[3:]))
    elif head == "zone" and len(words) >= 2:
        members = _flat(words[4:]) if len(words) > 4 and words[2] == "network" else []
        config.zones.setdefault(str(words[1]), []).extend(members)
    elif head == "network" and "static-route" in _flat(words):
        flat = _flat(words)
        at = flat.index("static-route")
        if len(flat) >= at + 4:
            route = config.routes.setdefault(flat[at + 1], {})
            route[flat[at + 2]] = flat[at + 3]
    elif head == "network" and len(words) >= 6 and words[1] == "interface":
        flat = _flat(words)
        if "ip" in flat:
            name = flat[3]
            if "units" in flat:
                name = flat[flat.index("units") + 1]
            config.interfaces.setdefault(name, []).extend(flat[flat.index("ip") + 1 :])
    elif head in ("rulebase", "pre-rulebase", "post-rulebase") and len(words) >= 4:
        section = {"pre-rulebase": 0, "rulebase": 1, "post-rulebase": 2}[str(head)]
        kind = words[1]
        if kind == "default-security-rules" and len(words) >= 6:
            settings = config.defaults.setdefault(str(words[3]), {})
            settings[str(words[4])] = " ".join(_flat(words[5:6]))
            return
        if words[2] != "rules" or kind not in ("security", "nat"):
            return
        name = str(words[3])
        table = config.security if kind == "security" else config.nat
        rule = table.get(name)
        if rule is None:
            rule = _SecRule(name, line, section)
            table[name] = rule
            if kind == "security":
                config.order.append(name)
        if len(words) >= 5:
            key = str(words[4])
            values = _flat(words[5:])
            if key == "destination-translation" and values:
                rule.fields.setdefault("translated-address", [])
                if values[0] == "translated-address":
                    rule.fields["translated-address"] = values[1:]
                elif values[0] == "translated-port":
                    rule.fields["translated-port"] = values[1:]
            elif key in ("source", "destination", "from", "to", "service", "application") and (
                key in rule.fields and rule.fields[key] != ["any"] and values != ["any"]
            ):
                rule.fields[key] = list(dict.fromkeys(rule.fields[key] + values))
            else:
                rule.fields[key] = values


# ---- building the policy ------------------------------------------------------------------------


@dataclass
class _Resolved:
    addresses: IPSet
    unresolved: list[str]


class _Builder:
    def __init__(self, config: _Config, path: str) -> None:
        self.config = config
        self.path = path
        self.notes: list[str] = []
        self._cache: dict[str, _Resolved] = {}

    def address(self, name: str, depth: int = 0) -> _Resolved:
        cached = self._cache.get(name)
        if cached is None:
            cached = self._address(name, depth)
            self._cache[name] = cached
        return cached

    def _address(self, name: str, depth: int) -> _Resolved:
        config = self.config
        if name == "any":
            return _Resolved(IPSet.universe(), [])
        if depth > 16:
            return _Resolved(IPSet(), [f"{name} (nesting too deep)"])
        if name in config.groups:
            static, dynamic, _ = config.groups[name]
            if dynamic:
                return _Resolved(IPSet(), [f"{name} (dynamic address group)"])
            found = [self.address(member, depth + 1) for member in static]
            return _Resolved(
                union_all(f.addresses for f in found), [u for f in found for u in f.unresolved]
            )
        if name in config.addresses:
            kind, value, line = config.addresses[name]
            try:
                if kind == "ip-netmask":
                    return _Resolved(IPSet.parse(value), [])
                if kind == "ip-range":
                    return _Resolved(IPSet.parse(value), [])
                if kind == "ip-wildcard":
                    addr, _, mask = value.partition("/")
                    return _Resolved(IPSet.from_wildcard(addr, mask), [])
            except (AddressParseError, ValueError):
                config.issues.append((line, f"address {name}: value {value!r} not understood"))
                return _Resolved(IPSet(), [name])
            if kind == "fqdn":
                return _Resolved(IPSet(), [f"{name} (FQDN {value})"])
            return _Resolved(IPSet(), [f"{name} (no address value)"])
        if name in config.edls:
            return _Resolved(IPSet(), [f"{name} (external dynamic list)"])
        literal = try_parse_set(name)
        if literal is not None:
            return _Resolved(literal, [])
        return _Resolved(IPSet(), [f"{name} (not defined here)"])

    def addresses(self, names: list[str], negate: bool) -> _Resolved:
        found = [self.address(name) for name in names]
        result = union_all(f.addresses for f in found)
        unresolved = [u for f in found for u in f.unresolved]
        if negate:
            result = IPSet.universe() - result
        return _Resolved(result, unresolved)

    def apps(self, names: list[str], depth: int = 0) -> set[str]:
        result: set[str] = set()
        for name in names:
            if name in self.config.app_groups and depth < 16:
                result |= self.apps(self.config.app_groups[name], depth + 1)
            else:
                result.add(name)
        return result

    def services(
        self, names: list[str], apps: set[str], depth: int = 0
    ) -> tuple[list[tuple[str, PortSet | None, PortSet | None]], list[str]]:
        result: list[tuple[str, PortSet | None, PortSet | None]] = []
        unresolved: list[str] = []
        for name in names:
            if name == "any":
                result.append((ANY_PROTOCOL, None, None))
            elif name == "application-default":
                if "any" in apps:
                    result.append((ANY_PROTOCOL, None, None))
                else:
                    ranges = [r for app in apps for r in _APP_PORTS.get(app, [])]
                    result.append(("tcp", PortSet.of(*ranges), None))
            elif name in self.config.service_groups and depth < 16:
                got, missing = self.services(self.config.service_groups[name], apps, depth + 1)
                result += got
                unresolved += missing
            elif name in self.config.services:
                for proto, port, source in self.config.services[name]:
                    try:
                        result.append(
                            (proto, port_ranges(port), port_ranges(source) if source else None)
                        )
                    except ValueError:
                        line = self.config.service_lines.get(name)
                        self.config.issues.append((line, f"service {name}: bad port {port!r}"))
            elif name in _PREDEFINED_SERVICES:
                result += [(p, ports, None) for p, ports in _PREDEFINED_SERVICES[name]]
            elif (guess := _guess_service(name)) is not None:
                # Pasted rules often come without their service objects.
                result.append(guess)
                self.notes.append(
                    f"service {name} is not defined in the file; assumed to be "
                    f"{guess[0].upper()} {guess[1].ranges[0][0] if guess[1] else 'any'} "
                    "from its name"
                )
            else:
                unresolved.append(name)
        return result, unresolved

    def zone_addresses(self) -> dict[str, IPSet]:
        result: dict[str, IPSet] = {}
        for zone, members in self.config.zones.items():
            subnet = IPSet()
            for iface in members:
                for value in self.config.interfaces.get(iface, []):
                    parsed = try_parse_set(value)
                    if parsed is None and value in self.config.addresses:
                        parsed = try_parse_set(self.config.addresses[value][1])
                    if parsed is not None:
                        subnet = subnet | parsed
            if subnet:
                result[zone] = subnet
        return result


_SERVICE_NAME = re.compile(r"^(?:service-|svc-)?(tcp|udp)?[-_]?(\w+?)$", re.I)


def _guess_service(name: str) -> tuple[str, PortSet | None, PortSet | None] | None:
    """`service-smtp`, `tcp-25`, `TCP_25`: what an undefined service name plainly says."""
    match = _SERVICE_NAME.match(name)
    if match is None or not (match.group(1) or name.lower().startswith(("service-", "svc-"))):
        return None
    word = match.group(2).lower()
    number = int(word) if word.isdigit() and int(word) <= 65535 else None
    if number is None:
        number = {"smtp": 25, "smtps": 465, "submission": 587}.get(word)
    if number is None:
        return None
    return ((match.group(1) or "tcp").lower(), PortSet.single(number), None)


def _network_of(value: str) -> IPSet | None:
    try:
        return IPSet.from_networks([ipaddress.ip_network(value, strict=False)])
    except ValueError:
        return None


@register_parser
class PanosParser:
    vendor = "panos"
    label = "Palo Alto Networks PAN-OS (set, XML or brace format)"

    def sniff(self, text: str) -> int:
        sample = text[:400_000]
        score = 0
        if re.search(
            r"^set (vsys \S+ |shared )?(rulebase|address|address-group|zone|service) ",
            sample,
            re.M,
        ):
            score += 50
        if re.search(r"^set (vsys \S+ )?rulebase (security|nat) rules ", sample, re.M):
            score += 40
        if re.search(r"^\s*set deviceconfig system hostname", sample, re.M):
            score += 40
        if "<config" in sample[:2000] and re.search(r"<devices>|<shared>|<vsys>", sample):
            score += 60
            if re.search(r"<rulebase>|<address>|<ip-netmask>", sample):
                score += 30
        if "#RANCID-CONTENT-TYPE: paloalto" in sample[:500]:
            score += 90
        elif re.search(r"^\s*(deviceconfig|rulebase|post-rulebase|pre-rulebase) \{", sample, re.M):
            score += 50
        if re.search(r"^\s*config firewall ", sample, re.M):
            score = min(score, 10)  # FortiOS also says `set service ...`
        return min(score, 95)

    def _statements(self, text: str, path: str) -> tuple[list[_Statement], str]:
        head = text.lstrip()[:2000]
        if head.startswith("<"):
            try:
                root = parse_xml(text)
            except Exception as exc:
                raise FirewallParseError(f"{path}: not well-formed XML ({exc})") from exc
            if root.tag != "config":
                raise FirewallParseError(f"{path}: XML root is <{root.tag}>, not a PAN-OS <config>")
            return xml_statements(root), "xml"
        if re.search(r"^\s*set ", text, re.M):
            return set_statements(text), "set"
        if "{" in text:
            return brace_statements(text), "brace"
        raise FirewallParseError(
            f"{path}: no PAN-OS set commands, XML or brace configuration found"
        )

    def parse(self, text: str, path: str, options: ParseOptions) -> ParseResult:
        statements, form = self._statements(text, path)
        config = interpret(statements)
        builder = _Builder(config, path)
        if not statements:
            raise FirewallParseError(f"{path}: no PAN-OS configuration statements found")
        zones = builder.zone_addresses()
        nat_pairs: list[tuple[IPSet, IPSet]] = []
        nats: list[DestinationNat] = []
        nat_from: set[str] = set()
        for rule in config.nat.values():
            translated = rule.fields.get("translated-address")
            if not translated or rule.get("disabled") == "yes":
                continue
            public = builder.addresses(rule.members("destination"), False).addresses
            private = builder.addresses(translated, False).addresses
            if not public or not private:
                continue
            port_text = rule.get("translated-port")
            nat_pairs.append((public, private))
            nat_from.update(z for z in rule.members("from") if z != "any")
            services, _ = builder.services(rule.members("service"), {"any"})
            ports = services[0][1] if services else None
            nats.append(
                DestinationNat(
                    public,
                    private,
                    Origin(path, rule.line, f"NAT rule {rule.name}"),
                    ports,
                    int(port_text) if port_text.isdigit() else None,
                    services[0][0] if services else ANY_PROTOCOL,
                )
            )
        inbound = self._inbound(options, config, nat_from)
        zone_filter = self._zone_filter(zones, nat_pairs)
        rules: list[Rule] = []
        ordered = sorted(
            (config.security[name] for name in config.order),
            key=lambda r: r.section,
        )
        for rule in ordered:
            rules.extend(self._rules(builder, rule, zone_filter))
        interzone = config.defaults.get("interzone-default", {})
        default = Action.PERMIT if interzone.get("action") == "allow" else Action.DENY
        if interzone.get("action") in ("reset-client", "reset-both"):
            default = Action.REJECT
        logged = interzone.get("log-end") == "yes"
        chain = Chain(
            "security",
            tuple(rules),
            default,
            Origin(
                path,
                None,
                f"interzone-default ({default.value}"
                + (", logged)" if logged else "; not logged by default)"),
            ),
            default_logged=logged,
        )
        notes = [
            *builder.notes,
            f"PAN-OS {form} format: security rules name the pre-NAT address with the post-NAT "
            "zone; after the rules, intrazone-default allows and interzone-default denies"
            + ("" if logged else " without logging: no log line is no proof of no drop"),
        ]
        if inbound is None:
            notes.append("the internet-facing zone is unknown: from-zones are not checked")
        if not zones and any(r.members("to") != ["any"] for r in config.security.values()):
            notes.append("zone subnets are not in the file: to-zones are not checked")
        policy = Policy(
            vendor=self.vendor,
            path=path,
            chains={"security": chain},
            entries=("security",),
            nat=tuple(nats),
            destination_view=DestinationView.PRE_NAT,
            acl_name="security",
            inbound_interfaces=inbound,
            smtp_hosts=tuple(
                str(n.public.networks()[0].network_address)
                for n in nats
                if n.public_ports is None or 25 in n.public_ports
            ),
            notes=tuple(notes),
            default_deny_logged=logged,
        )
        return ParseResult(policy, tuple(config.issues))

    @staticmethod
    def _inbound(
        options: ParseOptions, config: _Config, nat_from: set[str]
    ) -> frozenset[str] | None:
        if options.interface:
            return frozenset({options.interface, "any"})
        if nat_from:
            return frozenset(nat_from | {"any"})
        named = {z for z in config.zones if _UNTRUST.search(z)}
        if named:
            return frozenset(named | {"any"})
        # The zone of the interface the default route leaves through faces the internet.
        exits = {
            route.get("interface", "")
            for route in config.routes.values()
            if route.get("destination") in ("0.0.0.0/0", "::/0")
        }
        by_route = {z for z, members in config.zones.items() if exits & set(members)}
        if by_route:
            return frozenset(by_route | {"any"})
        return None

    @staticmethod
    def _zone_filter(
        zones: dict[str, IPSet], nat_pairs: list[tuple[IPSet, IPSet]]
    ) -> dict[str, IPSet]:
        """Pre-NAT destinations that end up in each zone (plus addresses no zone claims)."""
        if not zones:
            return {}
        publics = IPSet()
        for public, _ in nat_pairs:
            publics = publics | public
        known = IPSet()
        for subnet in zones.values():
            known = known | subnet
        unknown = (known | publics).complement()
        result: dict[str, IPSet] = {}
        for zone, subnet in zones.items():
            reach = (subnet - publics) | unknown
            for public, private in nat_pairs:
                if private.overlaps(subnet) or not private.overlaps(known):
                    reach = reach | public
            result[zone] = reach
        return result

    def _rules(
        self, builder: _Builder, rule: _SecRule, zone_filter: dict[str, IPSet]
    ) -> list[Rule]:
        path = builder.path
        action_text = rule.get("action", "allow")
        action = {
            "allow": Action.PERMIT,
            "deny": Action.DENY,
            "drop": Action.DENY,
            "reset-client": Action.REJECT,
            "reset-both": Action.REJECT,
            "reset-server": Action.DENY,  # the client hears nothing
        }.get(action_text, Action.DENY)
        text = f"rule {rule.name}:" + "".join(
            f" {key} {' '.join(rule.members(key))}"
            for key in ("from", "to", "source", "destination", "service")
        )
        text += f" action {action_text}"
        origin = Origin(path, rule.line, text)
        sources = builder.addresses(rule.members("source"), rule.get("negate-source") == "yes")
        destinations = builder.addresses(
            rule.members("destination"), rule.get("negate-destination") == "yes"
        )
        apps = builder.apps(rule.members("application"))
        services, missing_services = builder.services(rule.members("service"), apps)
        unresolved = sources.unresolved + destinations.unresolved + missing_services
        reason = ""
        if sources.unresolved and (not sources.addresses or rule.get("negate-source") == "yes"):
            reason = f"its source {', '.join(sources.unresolved)} cannot be resolved offline"
        elif destinations.unresolved and not destinations.addresses:
            reason = (
                f"its destination {', '.join(destinations.unresolved)} cannot be resolved offline"
            )
        elif missing_services and not services:
            reason = f"service {', '.join(missing_services)} is not defined in this configuration"
        if unresolved:
            builder.notes.append(
                f"rule {rule.name}: cannot resolve {', '.join(unresolved)} offline"
            )
        users = [u for u in rule.members("source-user") if u not in ("any", "unknown")]
        if users and not reason:
            reason = (
                f"it needs an identified user ({', '.join(users[:3])}); Exchange Online "
                "connections carry no user identity"
            )
        smtp_capable = "any" in apps or bool(apps & SMTP_APPS)
        dst = destinations.addresses
        to_zones = rule.members("to")
        if zone_filter and "any" not in to_zones:
            reach = IPSet()
            for zone in to_zones:
                reach = reach | zone_filter.get(zone, IPSet())
            dst = dst & reach
        from_zones = rule.members("from")
        result = []
        for protocol, ports, src_ports in services or [(ANY_PROTOCOL, None, None)]:
            result.append(
                Rule(
                    action=action,
                    origin=origin,
                    sources=sources.addresses,
                    destinations=dst,
                    protocol=protocol if smtp_capable else "none",
                    dst_ports=ports,
                    src_ports=src_ports,
                    in_interfaces=None if "any" in from_zones else frozenset(from_zones),
                    out_interfaces=None if "any" in to_zones else frozenset(to_zones),
                    enabled=rule.get("disabled") != "yes",
                    name=rule.name,
                    logs=rule.get("log-end", "yes") == "yes",
                    unresolved=tuple(unresolved),
                    matches_nothing_reason=reason,
                )
            )
        return result

    # ---- remediation -------------------------------------------------------------------------
    def remediate(self, text: str, result: ParseResult, check: RangeCheck) -> Remediation | None:
        gap = gap_context(result.policy, check)
        statements, form = self._statements(text, result.policy.path)
        config = interpret(statements)
        path = result.policy.path
        cleanup = _cleanup(config, _Builder(config, path), check.stale)
        if not gap.missing:
            return cleanup_only(cleanup)

        def reparse(patched: str) -> Policy:
            return self.parse(patched, path, ParseOptions()).policy

        found = first_closing(
            reparse,
            gap,
            [
                lambda: _extend(config, gap, text, form),
                lambda: _new_rule(config, gap, text, form),
            ],
        )
        return finish(found, cleanup)


def _cleanup(config: _Config, builder: _Builder, stale: IPSet) -> tuple[str, ...]:
    """`delete` commands for group members and rule sources that are only retired EOP ranges."""
    if not stale:
        return ()
    lines: list[str] = []
    for group, (static, _, _) in config.groups.items():
        lines += [
            f"delete address-group {group} static {member}"
            for member in static
            if is_stale(builder.address(member).addresses, stale)
        ]
    for rule in config.security.values():
        if rule.get("action", "allow") != "allow":
            continue
        lines += [
            f"delete rulebase security rules {rule.name} source {member}"
            for member in rule.members("source")
            if member not in config.groups
            and member != "any"
            and is_stale(builder.address(member).addresses, stale)
        ]
    return tuple(lines)


def _quote(word: str) -> str:
    return f'"{word}"' if not word or re.search(r"[\s\[\]{};\"]", word) else word


def as_set_commands(text: str) -> str:
    """A brace-format configuration rewritten as the equivalent `set` commands."""
    out: list[str] = []
    for statement in brace_statements(text):
        words = [
            "[ " + " ".join(_quote(w) for w in word) + " ]"
            if isinstance(word, list)
            else _quote(word)
            for word in statement.words
        ]
        out.append(" ".join(words))
    return "\n".join(out) + "\n"


def _object_name(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    return f"EXO-{network.network_address}_{network.prefixlen}".replace(":", "-")


def _smtp_rule(config: _Config, gap: GapContext) -> _SecRule | None:
    names = {rule.name for rule in gap.smtp_permits()}
    for name in config.order:
        if name in names:
            return config.security[name]
    return None


def _before_blocker(config: _Config, gap: GapContext, rule: _SecRule) -> bool:
    blocker = gap.first_blocker()
    if blocker is None:
        return True
    order = config.order
    return blocker.name not in order or order.index(rule.name) < order.index(blocker.name)


def _address_lines(gap: GapContext, config: _Config) -> tuple[list[str], list[str]]:
    lines: list[str] = []
    names: list[str] = []
    for network in gap.missing.networks():
        name = _object_name(network)
        names.append(name)
        if name not in config.addresses:
            lines.append(f"set address {name} ip-netmask {network}")
            lines.append(f'set address {name} description "Exchange Online Protection"')
    return lines, names


def _extend(
    config: _Config, gap: GapContext, text: str, form: str
) -> tuple[tuple[str, ...], str, str] | None:
    rule = _smtp_rule(config, gap)
    if rule is None or not _before_blocker(config, gap, rule):
        return None
    if rule.get("negate-source") == "yes":
        return None
    sources = rule.members("source")
    address_lines, names = _address_lines(gap, config)
    group = next((s for s in sources if s in config.groups and not config.groups[s][1]), None)
    if group is not None:
        change = f"set address-group {group} static [ {' '.join(names)} ]"
        what = f"address group {group}, the source of rule {rule.name}"
    elif "any" not in sources:
        change = f"set rulebase security rules {rule.name} source [ {' '.join(names)} ]"
        what = f"the source of rule {rule.name}"
    else:
        return None
    lines = (*address_lines, change)
    if form == "set":
        patched = insert_after_line(text, len(text.splitlines()), lines)
    elif form == "brace":
        patched = as_set_commands(text) + "\n".join(lines) + "\n"
    elif form == "xml":
        patched_xml = _xml_patch(
            text, gap, names, group, rule.name if group is None else None, None
        )
        if patched_xml is None:
            return None
        patched = patched_xml
    else:
        return None
    return (
        lines,
        patched,
        (
            "Create address objects for the missing Exchange Online ranges and add them to "
            f"{what}, which already allows SMTP (PAN-OS set commands; then commit)."
        ),
    )


def _new_rule(
    config: _Config, gap: GapContext, text: str, form: str
) -> tuple[tuple[str, ...], str, str] | None:
    address_lines, names = _address_lines(gap, config)
    group = "EXO-SMTP-mailflow-doctor"
    template = _smtp_rule(config, gap)
    rule_name = "EXO-SMTP-in"
    extra: list[str] = []
    if template is not None:
        src_zones = template.members("from")
        dst_zones = template.members("to")
        destination = template.members("destination")
        service = template.members("service")
        application = template.members("application")
    else:
        inbound = sorted((gap.policy.inbound_interfaces or frozenset()) - {"any"})
        src_zones = inbound or ["any"]
        dst_zones = ["any"]
        destination = [gap.asked_destination]
        service = ["service-smtp-mfd"]
        application = ["any"]
        if "service-smtp-mfd" not in config.services:
            extra.append(f"set service service-smtp-mfd protocol tcp port {gap.port}")
    lines = [
        *address_lines,
        f"set address-group {group} static [ {' '.join(names)} ]",
        *extra,
        f"set rulebase security rules {rule_name} from [ {' '.join(src_zones)} ]",
        f"set rulebase security rules {rule_name} to [ {' '.join(dst_zones)} ]",
        f"set rulebase security rules {rule_name} source {group}",
        f"set rulebase security rules {rule_name} destination [ {' '.join(destination)} ]",
        f"set rulebase security rules {rule_name} application [ {' '.join(application)} ]",
        f"set rulebase security rules {rule_name} service [ {' '.join(service)} ]",
        f"set rulebase security rules {rule_name} action allow",
    ]
    blocker = gap.first_blocker()
    anchor = blocker.name if blocker is not None and blocker.name in config.order else None
    if anchor is None and template is not None:
        # directly after the rule that allows SMTP today, so nothing else changes
        position = config.order.index(template.name) + 1
        anchor = config.order[position] if position < len(config.order) else None
    if anchor is not None:
        lines.append(f"move rulebase security rules {rule_name} before {anchor}")
    if form == "set":
        patched = insert_after_line(text, len(text.splitlines()), lines)
    elif form == "brace":
        patched = as_set_commands(text) + "\n".join(lines) + "\n"
    elif form == "xml":
        patched_xml = _xml_patch(
            text,
            gap,
            names,
            None,
            None,
            (
                rule_name,
                group,
                src_zones,
                dst_zones,
                destination,
                service,
                application,
                anchor,
                extra,
            ),
        )
        if patched_xml is None:
            return None
        patched = patched_xml
    else:
        return None
    where = f"placed before rule {anchor}" if anchor else "at the end of the rulebase"
    return (
        tuple(lines),
        patched,
        (
            f"Create an address group with the missing Exchange Online ranges and a security rule "
            f"{rule_name} that allows SMTP from it, {where} (PAN-OS set commands; then commit)."
        ),
    )


def _members(values: list[str]) -> str:
    return "".join(f"<member>{v}</member>" for v in values)


def _xml_patch(
    text: str,
    gap: GapContext,
    names: list[str],
    group: str | None,
    rule_source: str | None,
    new_rule: tuple[
        str, str, list[str], list[str], list[str], list[str], list[str], str | None, list[str]
    ]
    | None,
) -> str | None:
    """Insert entries into a pretty-printed PAN-OS XML export, right after opening tags."""
    try:
        root = parse_xml(text)
    except Exception:
        return None
    vsys = root.find("./devices/entry/vsys/entry")
    scope = vsys if vsys is not None else root.find("./shared")
    if scope is None:
        return None
    lines = text.splitlines(keepends=True)
    inserts: list[tuple[int, str, str]] = []  # (line, after tag, snippet)
    address = scope.find("address")
    entries = "".join(
        f'<entry name="{n}"><ip-netmask>{net}</ip-netmask></entry>'
        for n, net in zip(names, gap.missing.networks(), strict=True)
    )
    if address is None:
        return None
    inserts.append((xml_line(address) or 0, "<address>", entries))
    if group is not None:
        node = scope.find(f"./address-group/entry[@name='{group}']/static")
        if node is None:
            return None
        inserts.append((xml_line(node) or 0, "<static>", _members(names)))
    if rule_source is not None:
        node = scope.find(f"./rulebase/security/rules/entry[@name='{rule_source}']/source")
        if node is None:
            return None
        inserts.append((xml_line(node) or 0, "<source>", _members(names)))
    if new_rule is not None:
        name, grp, src_z, dst_z, dst, svc, app, anchor, extra = new_rule
        groups = scope.find("address-group")
        group_xml = f'<entry name="{grp}"><static>{_members(names)}</static></entry>'
        if groups is not None:
            inserts.append((xml_line(groups) or 0, "<address-group>", group_xml))
        else:
            group_block = f"<address-group>{group_xml}</address-group>\n"
            inserts.append((xml_line(address) or 0, "\x00before", group_block))
        if extra:
            services = scope.find("service")
            svc_xml = (
                f'<entry name="service-smtp-mfd"><protocol><tcp><port>{gap.port}</port>'
                "</tcp></protocol></entry>"
            )
            if services is None:
                block = f"<service>{svc_xml}</service>\n"
                inserts.append((xml_line(address) or 0, "\x00before", block))
            else:
                inserts.append((xml_line(services) or 0, "<service>", svc_xml))
        rule_xml = (
            f'<entry name="{name}"><from>{_members(src_z)}</from><to>{_members(dst_z)}</to>'
            f"<source><member>{grp}</member></source><destination>{_members(dst)}</destination>"
            f"<service>{_members(svc)}</service><application>{_members(app)}</application>"
            "<action>allow</action></entry>\n"
        )
        rules = scope.find("./rulebase/security/rules")
        if rules is None:
            return None
        if anchor is not None:
            target = rules.find(f"./entry[@name='{anchor}']")
            if target is None:
                return None
            line = xml_line(target) or 0
            inserts.append((line, "\x00before", rule_xml))
        else:
            inserts.append((xml_line(rules) or 0, "<rules>", rule_xml))
    for line, tag, snippet in sorted(inserts, key=lambda i: -i[0]):
        if line < 1 or line > len(lines):
            return None
        current = lines[line - 1]
        if tag == "\x00before":
            lines[line - 1] = snippet + current
            continue
        at = current.find(tag)
        if at < 0:
            return None
        at += len(tag)
        lines[line - 1] = current[:at] + snippet + current[at:]
    return "".join(lines)
