"""pfSense and OPNsense `config.xml` into the policy model.

pf applies port-forward (`rdr`) translation before filtering, so the filter rules on WAN name
the inside address of the mail server: DestinationView.POST_NAT, with each `<nat><rule>` port
forward recorded as a DestinationNat. The order pfSense loads is: port forwards set to "Pass"
(no filter rule needed), floating rules with `quick`, the rules of the ingress interface (all
`quick`, first match, document order), then floating rules without `quick`, where the LAST
match wins, and finally the default block. pfSense logs the default block unless "Log packets
matched from the default block rules" is switched off (`<syslog><nologdefaultblock/>`;
OPNsense reads the same element but only when it is not empty).

`<blockpriv/>` on the interface blocks RFC 1918 and unique-local sources before any user rule.
URL table, URL, GeoIP and FQDN entries in aliases are not in config.xml and cannot be resolved
offline; they are reported.
"""

from __future__ import annotations

import ipaddress
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

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
    is_stale,
    parse_xml,
    port_ranges,
    try_parse_set,
    union_all,
    xml_line,
    xml_text,
)
from mailflow_doctor.knowledge.ipranges import IPSet

_LABEL = "Exchange Online Protection"
_PRIVATE = IPSet.parse("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
_UNRESOLVABLE_TYPES = (
    "url",
    "urltable",
    "url_ports",
    "urltable_ports",
    "geoip",
    "external",
    "dynipv6host",
    "mac",
    "asn",
    "authgroup",
    "internal",
)


@dataclass
class _Spec:
    addresses: IPSet
    ports: PortSet | None
    unresolved: list[str]
    summary: str


class _Model:
    def __init__(self, root: ET.Element, path: str) -> None:
        self.root = root
        self.path = path
        self.issues: list[tuple[int | None, str]] = []
        self.notes: list[str] = []
        self.aliases: dict[str, tuple[str, list[str], ET.Element]] = {}
        self.interfaces: dict[str, ET.Element] = {}
        interfaces = root.find("interfaces")
        if interfaces is not None:
            for element in interfaces:
                self.interfaces[element.tag] = element
        for alias in root.findall("./aliases/alias"):
            name = xml_text(alias, "name")
            self.aliases[name] = (
                xml_text(alias, "type"),
                xml_text(alias, "address").split(),
                alias,
            )
        for alias in root.findall("./OPNsense/Firewall/Alias/aliases/alias"):
            name = xml_text(alias, "name")
            content = xml_text(alias, "content")
            self.aliases[name] = (xml_text(alias, "type"), content.split(), alias)

    # addresses -------------------------------------------------------------------------------
    def interface_net(self, name: str, address_only: bool) -> IPSet | None:
        element = self.interfaces.get(name)
        if element is None:
            return None
        result = IPSet()
        for key, bits in (("ipaddr", "subnet"), ("ipaddrv6", "subnetv6")):
            address = xml_text(element, key)
            prefix = xml_text(element, bits)
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                continue
            if address_only or not prefix.isdigit():
                result = result | IPSet.from_networks([ip])
            else:
                result = result | IPSet.parse(f"{address}/{prefix}")
        return result or None

    def alias(self, name: str, depth: int = 0) -> tuple[IPSet, list[str]]:
        if depth > 16 or name not in self.aliases:
            return IPSet(), [name]
        kind, entries, _ = self.aliases[name]
        if kind in _UNRESOLVABLE_TYPES:
            return IPSet(), [f"{name} ({kind} alias)"]
        parts: list[IPSet] = []
        unresolved: list[str] = []
        for entry in entries:
            literal = try_parse_set(entry)
            if literal is not None:
                parts.append(literal)
            elif entry in self.aliases:
                got, missing = self.alias(entry, depth + 1)
                parts.append(got)
                unresolved.extend(missing)
            else:
                unresolved.append(f"{entry} (host name in alias {name})")
        return union_all(parts), unresolved

    def ports(self, text: str, depth: int = 0) -> tuple[PortSet | None, list[str]]:
        if not text:
            return None, []
        if text in self.aliases and depth < 16:
            _, entries, _ = self.aliases[text]
            ranges: list[tuple[int, int]] = []
            for entry in entries:
                got, missing = self.ports(entry.replace(":", "-"), depth + 1)
                if missing:
                    return None, missing
                ranges.extend(got.ranges if got else [(0, 65535)])
            return PortSet.of(*ranges), []
        try:
            return port_ranges(text.replace(":", "-")), []
        except ValueError:
            return None, [text]

    def spec(self, element: ET.Element | None) -> _Spec:
        unresolved: list[str]
        if element is None or element.find("any") is not None:
            addresses, unresolved, summary = IPSet.universe(), [], "any"
        elif element.find("network") is not None:
            network = xml_text(element, "network")
            summary = network
            unresolved = []
            if network == "(self)":
                addresses = IPSet()
                for name in self.interfaces:
                    addresses = addresses | (self.interface_net(name, True) or IPSet())
            elif network.endswith("ip"):
                addresses = self.interface_net(network[:-2], True) or IPSet()
            else:
                addresses = self.interface_net(network, False) or IPSet()
            if not addresses:
                unresolved = [f"{network} (interface address not static in config.xml)"]
        else:
            address = xml_text(element, "address")
            summary = address or "any"
            literal = try_parse_set(address) if address else IPSet.universe()
            if literal is not None:
                addresses, unresolved = literal, []
            else:
                addresses, unresolved = self.alias(address)
        if element is not None and element.find("not") is not None:
            addresses = IPSet.universe() - addresses
            summary = f"!{summary}"
        port_text = xml_text(element, "port")
        ports, missing = self.ports(port_text)
        if port_text:
            summary += f" port {port_text}"
        return _Spec(addresses, ports, unresolved + missing, summary)


def _family(rule: ET.Element) -> IPSet:
    value = xml_text(rule, "ipprotocol", "inet")
    if value == "inet6":
        return IPSet.all_v6()
    if value == "inet46":
        return IPSet.universe()
    return IPSet.all_v4()


def _protocol(text: str) -> str:
    lowered = text.lower()
    if not lowered or lowered == "any":
        return ANY_PROTOCOL
    if lowered == "tcp/udp":
        return "tcp-udp"
    return lowered


def _applies_to(rule: ET.Element, interface: str) -> bool:
    names = [n.strip() for n in xml_text(rule, "interface").split(",")]
    return interface in names


def _floating(rule: ET.Element) -> bool:
    return xml_text(rule, "floating") == "yes"


def wrap_fragment(text: str) -> str:
    """A pasted `<filter>` block or bare `<rule>` elements, wrapped into a config.xml root.

    The wrapper goes on the existing first line and after the last, so line numbers hold.
    """
    if re.search(r"<(pfsense|opnsense)\b", text[:4000]):
        return text
    declaration = re.match(r"\s*<\?xml[^>]*\?>", text)
    head, rest = (
        (text[: declaration.end()], text[declaration.end() :]) if declaration else ("", text)
    )
    if "<filter" in rest:
        return f"{head}<pfsense>{rest}\n</pfsense>\n"
    return f"{head}<pfsense><filter>{rest}\n</filter>\n</pfsense>\n"


@register_parser
class PfSenseParser:
    vendor = "pfsense"
    label = "pfSense / OPNsense config.xml"

    def sniff(self, text: str) -> int:
        head = text[:4000]
        if re.search(r"<(pfsense|opnsense)>", head):
            return 95 if "<filter>" in text or "<filter/>" in text else 80
        # Without the root element, only an XML document (not prose naming the tags) counts.
        is_xml = re.match(r"\s*(<\?xml[^>]*\?>\s*)?(<!--.*?-->\s*)*<[A-Za-z]", head, re.S)
        if is_xml and "<filter>" in text and "<rule>" in text and "<interface>" in text:
            return 50
        if re.match(r"\s*(<\?xml[^>]*\?>\s*)?<rule>", text) and "<interface>" in text[:20000]:
            return 40
        return 0

    def parse(self, text: str, path: str, options: ParseOptions) -> ParseResult:
        text = wrap_fragment(text)
        try:
            root = parse_xml(text)
        except Exception as exc:
            raise FirewallParseError(f"{path}: not well-formed XML ({exc})") from exc
        if root.tag not in ("pfsense", "opnsense") and root.find("filter") is None:
            raise FirewallParseError(f"{path}: not a pfSense/OPNsense config.xml")
        model = _Model(root, path)
        interface = options.interface or "wan"
        rules: list[Rule] = []
        wan = model.interfaces.get(interface)
        if wan is not None and wan.find("blockpriv") is not None:
            rules.append(
                Rule(
                    action=Action.DENY,
                    origin=Origin(path, xml_line(wan.find("blockpriv")), "Block private networks"),
                    sources=_PRIVATE,
                    name="blockpriv",
                )
            )
        if wan is not None and wan.find("blockbogons") is not None:
            model.notes.append(
                f"{interface} blocks bogon networks (a list outside config.xml); Exchange Online "
                "ranges are not bogons"
            )
        nats = self._nats(model, interface, rules)
        all_rules = root.findall("./filter/rule")
        floating_quick = [r for r in all_rules if _floating(r) and xml_text(r, "quick") == "yes"]
        floating_last = [r for r in all_rules if _floating(r) and xml_text(r, "quick") != "yes"]
        own = [r for r in all_rules if not _floating(r)]
        for element in floating_quick + own + list(reversed(floating_last)):
            if not _applies_to(element, interface):
                continue
            if _floating(element) and xml_text(element, "direction", "any") not in ("in", "any"):
                continue
            rule = self._rule(model, element)
            if rule is not None:
                rules.append(rule)
        for element in root.findall("./OPNsense/Firewall/Filter/rules/rule"):
            model.issues.append(
                (xml_line(element), "OPNsense automation (MVC) rules are not evaluated")
            )
            break
        # pfSense turns the log off when the element exists (isset); OPNsense when it is
        # not empty, so its `<nologdefaultblock></nologdefaultblock>` still logs.
        switch = root.find("./syslog/nologdefaultblock")
        if root.tag == "opnsense":
            logged = switch is None or not (switch.text or "").strip()
        else:
            logged = switch is None
        chain = Chain(
            interface,
            tuple(rules),
            Action.DENY,
            Origin(
                path,
                None,
                f"default block on {interface}" + (" (logged)" if logged else " (not logged)"),
            ),
            default_logged=logged,
        )
        notes = [
            *model.notes,
            "pfSense filters after port forwarding: rules name the inside address; traffic that "
            "matches no rule hits the default block, "
            + (
                "which pfSense logs by default"
                if logged
                else "whose logging is switched off (nologdefaultblock)"
            ),
        ]
        policy = Policy(
            vendor=self.vendor,
            path=path,
            chains={interface: chain},
            entries=(interface,),
            nat=tuple(nats),
            destination_view=DestinationView.POST_NAT,
            acl_name=interface,
            smtp_hosts=tuple(
                str(n.public.networks()[0].network_address)
                for n in nats
                if n.public and (n.public_ports is None or 25 in n.public_ports)
            ),
            notes=tuple(notes),
            default_deny_logged=logged,
            all_acls=tuple(model.interfaces),
        )
        return ParseResult(policy, tuple(model.issues))

    def _nats(self, model: _Model, interface: str, rules: list[Rule]) -> list[DestinationNat]:
        result: list[DestinationNat] = []
        for element in model.root.findall("./nat/rule"):
            if element.find("disabled") is not None or element.find("nordr") is not None:
                continue
            if xml_text(element, "interface", "wan") != interface:
                continue
            line = xml_line(element)
            origin = Origin(
                model.path, line, f"port forward {xml_text(element, 'descr') or line}".strip()
            )
            destination = model.spec(element.find("destination"))
            target_text = xml_text(element, "target")
            target = try_parse_set(target_text)
            if target is None and target_text:
                target, _ = model.alias(target_text)
            if not target:
                model.issues.append((line, f"port forward target {target_text!r} not understood"))
                continue
            local = xml_text(element, "local-port")
            local_port = int(local.split("-")[0]) if local.split("-")[0].isdigit() else None
            protocol = _protocol(xml_text(element, "protocol", "tcp"))
            if destination.unresolved or destination.addresses == IPSet.universe():
                model.notes.append(
                    f"port forward at line {line}: its public address is "
                    f"{destination.summary}, not known here; check the inside address "
                    f"{target_text} with --to"
                )
            else:
                result.append(
                    DestinationNat(
                        destination.addresses,
                        target,
                        origin,
                        destination.ports,
                        local_port,
                        protocol,
                    )
                )
            if xml_text(element, "associated-rule-id") == "pass":
                source = model.spec(element.find("source"))
                rules.append(
                    Rule(
                        action=Action.PERMIT,
                        origin=origin,
                        sources=source.addresses,
                        destinations=target,
                        protocol=protocol,
                        dst_ports=PortSet.single(local_port) if local_port else None,
                        name="rdr pass",
                    )
                )
        return result

    def _rule(self, model: _Model, element: ET.Element) -> Rule | None:
        kind = xml_text(element, "type", "pass")
        action = {"pass": Action.PERMIT, "block": Action.DENY, "reject": Action.REJECT}.get(kind)
        if action is None:
            return None  # "match" rules only queue/tag
        family = _family(element)
        source = model.spec(element.find("source"))
        destination = model.spec(element.find("destination"))
        unresolved = source.unresolved + destination.unresolved
        reason = ""
        if source.unresolved and not source.addresses:
            reason = f"its source {', '.join(source.unresolved)} cannot be resolved offline"
        elif destination.unresolved and not destination.addresses:
            reason = (
                f"its destination {', '.join(destination.unresolved)} cannot be resolved offline"
            )
        flags = xml_text(element, "tcpflags1")
        if flags and "syn" not in flags.split(","):
            reason = reason or f"it matches only TCP flags {flags}, never the opening SYN"
        if unresolved:
            model.notes.append(
                f"rule at line {xml_line(element)}: cannot resolve {', '.join(unresolved)} offline"
            )
        if xml_text(element, "sched"):
            model.notes.append(
                f"rule at line {xml_line(element)} has schedule {xml_text(element, 'sched')}; "
                "assumed active"
            )
        descr = xml_text(element, "descr")
        text = (
            f"{kind} {xml_text(element, 'protocol') or 'any'} from {source.summary} "
            f"to {destination.summary}" + (f' "{descr}"' if descr else "")
        )
        return Rule(
            action=action,
            origin=Origin(model.path, xml_line(element), text),
            sources=source.addresses & family,
            destinations=destination.addresses & family,
            protocol=_protocol(xml_text(element, "protocol")),
            dst_ports=destination.ports,
            src_ports=source.ports,
            enabled=element.find("disabled") is None,
            name=descr or xml_text(element, "tracker"),
            logs=element.find("log") is not None,
            unresolved=tuple(unresolved),
            matches_nothing_reason=reason,
        )

    # ---- remediation -------------------------------------------------------------------------
    def remediate(self, text: str, result: ParseResult, check: RangeCheck) -> Remediation | None:
        gap = gap_context(result.policy, check)
        text = wrap_fragment(text)
        root = parse_xml(text)
        model = _Model(root, result.policy.path)
        cleanup = _cleanup(model, check.stale)
        if not gap.missing:
            return cleanup_only(cleanup)
        options = ParseOptions(interface=result.policy.acl_name)

        def reparse(patched: str) -> Policy:
            return self.parse(patched, result.policy.path, options).policy

        found = first_closing(
            reparse,
            gap,
            [
                lambda: _extend_alias(model, gap, text),
                lambda: _new_rule(model, gap, text),
            ],
        )
        return finish(found, cleanup)


def _cleanup(model: _Model, stale: IPSet) -> tuple[str, ...]:
    """The address list of each alias without the entries that are only retired ranges."""
    if not stale:
        return ()
    lines: list[str] = []
    for name, (kind, entries, _) in model.aliases.items():
        if kind not in ("host", "network"):
            continue
        keep = [e for e in entries if not is_stale(try_parse_set(e) or IPSet(), stale)]
        if len(keep) < len(entries):
            lines.append(f"alias {name}: <address>{' '.join(keep)}</address>")
    return tuple(lines)


def _smtp_element(model: _Model, gap: GapContext) -> ET.Element | None:
    lines = {rule.origin.line for rule in gap.smtp_permits()}
    for element in model.root.findall("./filter/rule"):
        if xml_line(element) in lines:
            return element
    return None


def _blocker_element(model: _Model, gap: GapContext) -> ET.Element | None:
    blocker = gap.first_blocker()
    if blocker is None:
        return None
    for element in model.root.findall("./filter/rule"):
        if xml_line(element) == blocker.origin.line:
            return element
    return None


def _span(text: str, line: int, closing: str) -> tuple[int, int] | None:
    """Character span from the start of 1-based `line` to the end of the next `closing` tag."""
    offsets = [0]
    for piece in text.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(piece))
    if line < 1 or line >= len(offsets):
        return None
    start = offsets[line - 1]
    end = text.find(closing, start)
    if end < 0:
        return None
    return start, end + len(closing)


def _extend_alias(
    model: _Model, gap: GapContext, text: str
) -> tuple[tuple[str, ...], str, str] | None:
    element = _smtp_element(model, gap)
    if element is None:
        return None
    blocker = gap.first_blocker()
    if blocker is not None and not gap.comes_before(
        next(r for r in gap.smtp_permits() if r.origin.line == xml_line(element)), blocker
    ):
        return None
    source = element.find("source")
    name = xml_text(source, "address")
    if source is None or source.find("not") is not None or name not in model.aliases:
        return None
    kind, entries, alias = model.aliases[name]
    if kind not in ("host", "network"):
        return None
    span = _span(text, xml_line(alias) or 0, "</alias>")
    if span is None:
        return None
    block = text[span[0] : span[1]]
    added = gap.missing.cidrs()
    address = " ".join([*entries, *added])
    new_block, count = re.subn(
        r"<address>[^<]*</address>|<address\s*/>", f"<address>{address}</address>", block, count=1
    )
    if count == 0:
        return None
    detail = xml_text(alias, "detail")
    details = [
        *(detail.split("||") if detail else [""] * len(entries)),
        *(["Exchange Online Protection"] * len(added)),
    ]
    new_block = re.sub(
        r"<detail>[^<]*</detail>|<detail\s*/>|<detail></detail>",
        "<detail><![CDATA[" + "||".join(details) + "]]></detail>",
        new_block,
        count=1,
    )
    patched = text[: span[0]] + new_block + text[span[1] :]
    lines = (f"<address>{address}</address>",)
    explanation = (
        f"Add {', '.join(added)} to alias {name} (Firewall > Aliases > {name}), which the WAN "
        f'rule "{xml_text(element, "descr") or "pass"}" already allows for SMTP. In config.xml '
        "the alias's address list becomes the line shown."
    )
    return lines, patched, explanation


def _new_rule(model: _Model, gap: GapContext, text: str) -> tuple[tuple[str, ...], str, str] | None:
    alias_name = "EXO_SMTP_mailflow_doctor"
    added = gap.missing.cidrs()
    kind = "network"
    alias_xml = (
        "\t\t<alias>\n"
        f"\t\t\t<name>{alias_name}</name>\n"
        f"\t\t\t<type>{kind}</type>\n"
        f"\t\t\t<address>{' '.join(added)}</address>\n"
        "\t\t\t<descr><![CDATA[Exchange Online Protection (mailflow-doctor)]]></descr>\n"
        f"\t\t\t<detail><![CDATA[{'||'.join([_LABEL] * len(added))}]]></detail>\n"
        "\t\t</alias>\n"
    )
    template = _smtp_element(model, gap)
    family = "inet6" if gap.missing.v6 else "inet"
    destination = f"<address>{gap.destination}</address>"
    port = str(gap.port)
    if template is not None:
        dest = template.find("destination")
        if dest is not None and dest.find("not") is None:
            dest_addr = xml_text(dest, "address") or xml_text(dest, "network")
            tag = "address" if dest.find("address") is not None else "network"
            if dest_addr:
                destination = f"<{tag}>{dest_addr}</{tag}>"
            port = xml_text(dest, "port") or port
    interface = gap.policy.acl_name
    blocker = _blocker_element(model, gap)
    # A floating quick rule beats every interface rule: the fix must be floating and quick too.
    floating = (
        "\t\t\t<floating>yes</floating>\n\t\t\t<quick>yes</quick>\n"
        "\t\t\t<direction>in</direction>\n"
        if blocker is not None and _floating(blocker)
        else ""
    )
    rule_xml = (
        "\t\t<rule>\n"
        "\t\t\t<type>pass</type>\n"
        f"\t\t\t<interface>{interface}</interface>\n"
        f"{floating}"
        f"\t\t\t<ipprotocol>{family}</ipprotocol>\n"
        "\t\t\t<protocol>tcp</protocol>\n"
        f"\t\t\t<source><address>{alias_name}</address></source>\n"
        f"\t\t\t<destination>{destination}<port>{port}</port></destination>\n"
        "\t\t\t<descr><![CDATA[Exchange Online SMTP (mailflow-doctor)]]></descr>\n"
        "\t\t</rule>\n"
    )
    lines = tuple(
        line.replace("\t\t", "", 1).replace("\t", "  ")
        for line in alias_xml.strip("\n").split("\n") + rule_xml.strip("\n").split("\n")
    )
    anchor_line: int | None = None
    if blocker is not None:
        anchor_line = xml_line(blocker)
    elif template is not None:
        rules = model.root.findall("./filter/rule")
        index = rules.index(template)
        if index + 1 < len(rules):
            anchor_line = xml_line(rules[index + 1])
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement)
    offsets = [0]
    for piece in text.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(piece))
    if anchor_line is not None and 1 <= anchor_line < len(offsets):
        edits.append((offsets[anchor_line - 1], offsets[anchor_line - 1], rule_xml))
    else:
        end = text.find("</filter>")
        empty_filter = re.search(r"<filter\s*/>", text)
        if end >= 0:
            line_start = text.rfind("\n", 0, end) + 1
            edits.append((line_start, line_start, rule_xml))
        elif empty_filter is not None:
            edits.append(
                (empty_filter.start(), empty_filter.end(), f"<filter>\n{rule_xml}\t</filter>")
            )
        else:
            root_end = text.rfind("</")
            if root_end < 0:
                return None
            at = text.rfind("\n", 0, root_end) + 1
            edits.append((at, at, f"\t<filter>\n{rule_xml}\t</filter>\n"))
    aliases_open = re.search(r"<aliases>[ \t]*\n?", text)
    empty = re.search(r"<aliases\s*/>", text)
    if aliases_open is not None:
        edits.append((aliases_open.end(), aliases_open.end(), alias_xml))
    elif empty is not None:
        edits.append((empty.start(), empty.end(), f"<aliases>\n{alias_xml}\t</aliases>"))
    else:
        root_end = text.rfind("</")
        if root_end < 0:
            return None
        at = text.rfind("\n", 0, root_end) + 1
        edits.append((at, at, f"\t<aliases>\n{alias_xml}\t</aliases>\n"))
    patched = text
    for first, last, snippet in sorted(edits, key=lambda e: -e[0]):
        patched = patched[:first] + snippet + patched[last:]
    where = (
        "above the rule that blocks them"
        if blocker is not None
        else "after the rule that allows SMTP"
    )
    return (
        lines,
        patched,
        (
            f"Create alias {alias_name} with the missing Exchange Online ranges and a pass rule on "
            f"{interface} for TCP {port} from it, {where} (Firewall > Aliases, Firewall > Rules > "
            f"{interface.upper()}). The config.xml elements are shown."
        ),
    )
