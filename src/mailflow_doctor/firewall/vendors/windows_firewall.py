"""Windows Defender Firewall on the Exchange server: netsh and PowerShell exports.

Accepted input:
- `netsh advfirewall firewall show rule name=all [verbose]` (English labels),
- scripts of `netsh advfirewall firewall add rule ...` / `set rule ... new ...` lines,
- a PowerShell join of each rule with its address and port filter, exported with
  `ConvertTo-Json`, `Export-Csv` (comma or `;`) or `Format-List`, for example::

    Get-NetFirewallRule -Direction Inbound | ForEach-Object {
      $a = $_ | Get-NetFirewallAddressFilter; $p = $_ | Get-NetFirewallPortFilter
      [pscustomobject]@{ Name = $_.Name; DisplayName = $_.DisplayName
        Enabled = "$($_.Enabled)"; Direction = "$($_.Direction)"; Action = "$($_.Action)"
        Profile = "$($_.Profile)"; Protocol = $p.Protocol
        LocalPort = $p.LocalPort -join ','; RemotePort = $p.RemotePort -join ','
        LocalAddress = $a.LocalAddress -join ','; RemoteAddress = $a.RemoteAddress -join ',' }
    } | ConvertTo-Json

Semantics are not first match: a matching block rule beats every allow rule (MS-FASP 2.2.34;
allow-bypass rules need IPsec, which Exchange Online does not use), only enabled inbound rules
of the active profile count, and traffic no rule allows is blocked by the default inbound
action, which is not logged unless "Log dropped packets" is on. The server's profile is assumed
to be Domain (an Exchange server is domain-joined); `--acl private|public` picks another.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from mailflow_doctor.firewall.evaluate import RangeCheck
from mailflow_doctor.firewall.model import (
    ANY_PROTOCOL,
    Action,
    Chain,
    Combine,
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
    port_ranges,
    try_parse_set,
)
from mailflow_doctor.knowledge.ipranges import IPSet

# Keywords that name the server's own networks: never an internet sender.
_LOCAL_KEYWORDS = {"localsubnet", "dns", "dhcp", "wins", "defaultgateway", "playtodevice"}
# Keywords whose meaning depends on the server's network configuration.
_UNKNOWN_KEYWORDS = {"internet", "intranet", "remotecorpnetwork", "intranetremoteaccess"}
_PROFILES = ("domain", "private", "public")

# Canonical field names and how each export spells them.
_FIELDS = {
    "name": ("rule name", "displayname", "name"),
    "enabled": ("enabled", "enable"),
    "direction": ("direction", "dir"),
    "profiles": ("profiles", "profile"),
    "local_ip": ("localip", "localaddress"),
    "remote_ip": ("remoteip", "remoteaddress"),
    "protocol": ("protocol",),
    "local_port": ("localport",),
    "remote_port": ("remoteport",),
    "action": ("action",),
    "security": ("security",),
}


@dataclass
class _Raw:
    """One rule as exported, with canonical keys, and where it sits in the text."""

    values: dict[str, str]
    line: int
    raw_keys: dict[str, str] = field(default_factory=dict)  # canonical -> spelling in the file
    index: int = 0

    def get(self, key: str, default: str = "") -> str:
        return self.values.get(key, default)


def _canonical(label: str) -> str | None:
    lowered = label.strip().lower().replace(" ", "").replace("-", "")
    if label.strip().lower() == "rule name":
        return "name"
    for key, spellings in _FIELDS.items():
        if lowered in (s.replace(" ", "") for s in spellings):
            return key
    return None


def _enum(key: str, value: str) -> str:
    """PowerShell enums exported as numbers -> the words netsh uses."""
    text = value.strip()
    if not text.isdigit():
        return text
    number = int(text)
    if key == "enabled":
        return "Yes" if number == 1 else "No"
    if key == "direction":
        return "In" if number == 1 else "Out"
    if key == "action":
        return {2: "Allow", 3: "AllowBypass", 4: "Block"}.get(number, text)
    if key == "profiles":
        if number == 0:
            return "Any"
        names = [n for bit, n in ((1, "Domain"), (2, "Private"), (4, "Public")) if number & bit]
        return ",".join(names)
    return text


# ---- readers ----------------------------------------------------------------------------------


def _json_rules(text: str, issues: list[tuple[int | None, str]]) -> list[_Raw]:
    data = json.loads(text)
    items = data if isinstance(data, list) else [data]
    rules: list[_Raw] = []
    cursor = 0
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        raw = _Raw({}, 1, index=index)
        for label, value in item.items():
            key = _canonical(str(label))
            if key is None or (key == "name" and "name" in raw.values and label == "Name"):
                continue
            if isinstance(value, list):
                value = ",".join(str(v) for v in value)
            raw.values[key] = _enum(key, "" if value is None else str(value))
            raw.raw_keys[key] = str(label)
        name = raw.get("name")
        at = text.find(json.dumps(name), cursor) if name else -1
        if at >= 0:
            cursor = at
            raw.line = text.count("\n", 0, at) + 1
        rules.append(raw)
    return rules


def _csv_rules(text: str, issues: list[tuple[int | None, str]]) -> list[_Raw]:
    lines = [ln for ln in text.splitlines() if not ln.startswith("#TYPE")]
    header_index = next(i for i, ln in enumerate(text.splitlines()) if not ln.startswith("#TYPE"))
    delimiter = ";" if lines[0].count(";") > lines[0].count(",") else ","
    reader = csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter)
    header = next(reader)
    rules: list[_Raw] = []
    for row_number, row in enumerate(reader, start=header_index + 2):
        raw = _Raw({}, row_number, index=len(rules))
        for label, value in zip(header, row, strict=False):
            key = _canonical(label)
            if key is None or (key == "name" and label == "Name" and "name" in raw.values):
                continue
            if value.startswith("System.Object[]") or value.startswith("Microsoft.Management"):
                issues.append(
                    (
                        row_number,
                        f"{label} was exported as {value!r}; join lists in the export "
                        f"(e.g. $a.RemoteAddress -join ',')",
                    )
                )
            raw.values[key] = _enum(key, value)
            raw.raw_keys[key] = label
        rules.append(raw)
    return rules


def _blocks(text: str) -> Iterator[tuple[int, list[tuple[int, str, str]]]]:
    """`Label: value` / `Label : value` blocks separated by blank lines (dashes ignored)."""
    current: list[tuple[int, str, str]] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        stripped = line.strip()
        if not stripped:
            if current:
                yield start, current
                current = []
            continue
        if set(stripped) == {"-"} or stripped == "Ok.":
            continue
        match = None if line[:1].isspace() else re.match(r"^([A-Za-z][\w \-]*?)\s*:\s?(.*)$", line)
        if match is not None:
            if not current:
                start = number
            current.append((number, match.group(1).strip(), match.group(2).strip()))
        elif current:
            # A wrapped value (netsh RemoteIP lists, Format-List arrays).
            last = current[-1]
            separator = "" if last[2].endswith(",") or stripped.startswith(",") else ","
            current[-1] = (last[0], last[1], last[2] + separator + stripped)
    if current:
        yield start, current


def _list_rules(text: str, issues: list[tuple[int | None, str]]) -> list[_Raw]:
    rules: list[_Raw] = []
    for start, block in _blocks(text):
        raw = _Raw({}, start, index=len(rules))
        for number, label, value in block:
            key = _canonical(label)
            if key is None or (key == "name" and label == "Name" and "name" in raw.values):
                continue
            if key == "name":
                raw.line = number
            cleaned = value.strip()
            if cleaned.startswith("{") and cleaned.endswith("}"):
                cleaned = cleaned[1:-1]
            if cleaned.endswith("..."):
                issues.append(
                    (
                        number,
                        f"{label} is cut short by PowerShell ('...'): set "
                        "$FormatEnumerationLimit = -1 before exporting",
                    )
                )
                cleaned = cleaned[:-3].rstrip(", ")
            raw.values[key] = _enum(key, cleaned.replace(", ", ","))
            raw.raw_keys[key] = label
        if "name" in raw.values or "action" in raw.values:
            rules.append(raw)
    return rules


_NETSH = re.compile(
    r"netsh\s+advfirewall\s+firewall\s+(add|set|delete)\s+rule\s+(.*)$", re.I | re.M
)
# For sniffing: netsh in command position (line start, after `@`, `call` or a cmd/PowerShell
# prompt), so a document that merely quotes a netsh line (a README table) is not a rule export.
_NETSH_COMMAND = re.compile(
    r"^[ \t]*(?:@|call[ \t]+|PS[ \t][^>\n]*>[ \t]*|[A-Za-z]:\\[^>\n]*>[ \t]*)?"
    r"(?:netsh(?:\.exe)?)[ \t]+advfirewall[ \t]+firewall[ \t]+(?:add|set|delete)[ \t]+rule\b",
    re.I | re.M,
)


def _key_values(text: str) -> list[tuple[str, str]]:
    return [
        (m.group(1).lower(), m.group(2) if m.group(2) is not None else m.group(3))
        for m in re.finditer(r'(\w+)=(?:"([^"]*)"|(\S*))', text)
    ]


def _netsh_script(text: str, issues: list[tuple[int | None, str]]) -> list[_Raw]:
    rules: list[_Raw] = []
    for number, raw_line in enumerate(text.splitlines(), start=1):
        match = _NETSH.search(raw_line)
        if match is None:
            continue
        verb, rest = match.group(1).lower(), match.group(2)
        if verb == "set":
            head, _, new = rest.partition(" new ")
            selector = dict(_key_values(head))
            for rule in rules:
                if rule.get("name") == selector.get("name"):
                    for key, value in _key_values(new):
                        canonical = _canonical(key)
                        if canonical is not None:
                            rule.values[canonical] = value
            continue
        pairs = _key_values(rest)
        if verb == "delete":
            name = dict(pairs).get("name")
            rules = [r for r in rules if r.get("name") != name]
            continue
        raw = _Raw({"enabled": "Yes", "profiles": "Any", "direction": "In"}, number)
        for key, value in pairs:
            canonical = _canonical(key)
            if canonical is not None:
                raw.values[canonical] = value
            elif key not in (
                "interfacetype",
                "edge",
                "program",
                "service",
                "description",
                "group",
                "localip",
                "rmtcomputergrp",
                "rmtusrgrp",
            ):
                issues.append((number, f"netsh option {key}= is not evaluated"))
        raw.index = len(rules)
        rules.append(raw)
    return rules


# ---- rules into the model ---------------------------------------------------------------------


def _addresses(text: str, what: str, notes: list[str]) -> tuple[IPSet, list[str]]:
    value = text.strip()
    if not value or value.lower() in ("any", "*"):
        return IPSet.universe(), []
    result = IPSet()
    unresolved: list[str] = []
    for item in (v.strip() for v in value.split(",")):
        if not item:
            continue
        lowered = item.lower()
        if lowered in _LOCAL_KEYWORDS:
            continue  # the server's own networks: never an internet sender
        if lowered in _UNKNOWN_KEYWORDS:
            unresolved.append(item)
            continue
        parsed = try_parse_set(item)
        if parsed is None:
            unresolved.append(item)
        else:
            result = result | parsed
    return result, unresolved


def _ports(text: str) -> tuple[PortSet | None, bool]:
    value = text.strip()
    if not value or value.lower() == "any":
        return None, True
    try:
        return port_ranges(value), True
    except ValueError:
        # Keywords (RPC, RPC-EPMap, IPHTTPS, Teredo, ...) never mean TCP 25.
        return PortSet(()), False


def _protocol(text: str) -> str:
    lowered = text.strip().lower()
    if lowered in ("", "any"):
        return ANY_PROTOCOL
    return {"6": "tcp", "17": "udp", "1": "icmp", "icmpv4": "icmp"}.get(lowered, lowered)


def _profile_matches(text: str, profile: str) -> bool:
    lowered = text.lower()
    if not lowered or lowered in ("any", "all"):
        return True
    return profile in [p.strip() for p in re.split(r"[,\s]+", lowered)]


def _to_rule(raw: _Raw, path: str, notes: list[str]) -> Rule:
    action_text = raw.get("action", "Allow").lower()
    name = raw.get("name", f"rule {raw.index + 1}")
    reason = ""
    if action_text in ("block",):
        action = Action.DENY
    else:
        action = Action.PERMIT
        if action_text in ("bypass", "allowbypass"):
            reason = "an allow-bypass rule needs IPsec, which Exchange Online does not use"
    security = re.sub(r"[\s\-_]", "", raw.get("security").lower())
    if security and security not in ("notrequired", "none", "any"):
        reason = reason or "it requires IPsec authentication, which Exchange Online does not use"
    sources, unresolved = _addresses(raw.get("remote_ip"), "RemoteIP", notes)
    destinations, more = _addresses(raw.get("local_ip"), "LocalIP", notes)
    unresolved += more
    if unresolved:
        notes.append(f'rule "{name}": cannot resolve {", ".join(unresolved)} offline')
        if not sources:
            reason = reason or f"its remote address {', '.join(unresolved)} depends on the server"
    dst_ports, _ = _ports(raw.get("local_port"))
    src_ports, _ = _ports(raw.get("remote_port"))
    enabled = raw.get("enabled", "Yes").lower() in ("yes", "true", "1")
    text = (
        f"{name}: {raw.get('action', 'Allow')} {raw.get('protocol', 'Any')} "
        f"LocalPort {raw.get('local_port', 'Any') or 'Any'} "
        f"RemoteIP {raw.get('remote_ip', 'Any') or 'Any'}"
    )
    return Rule(
        action=action,
        origin=Origin(path, raw.line, text[:300]),
        sources=sources,
        destinations=destinations,
        protocol=_protocol(raw.get("protocol")),
        dst_ports=dst_ports,
        src_ports=src_ports,
        enabled=enabled,
        name=name,
        unresolved=tuple(unresolved),
        matches_nothing_reason=reason,
    )


def _form(text: str) -> str:
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped.startswith(("[", "{")):
        return "json"
    first = stripped.splitlines()[0] if stripped else ""
    if first.startswith("#TYPE") or (
        first.count('"') >= 4 and re.search(r"RemoteAddress|DisplayName", first)
    ):
        return "csv"
    if _NETSH.search(text) and not re.search(r"^Rule Name:", text, re.M):
        return "netsh-script"
    return "list"


MAX_LINE = 8000


def profile_settings(text: str) -> dict[str, dict[str, str]]:
    """`netsh advfirewall show allprofiles` sections: state, policy and logging per profile."""
    result: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        header = re.match(r"^(Domain|Private|Public) Profile Settings:", line)
        if header:
            current = result.setdefault(header.group(1).lower(), {})
            continue
        if current is None:
            continue
        match = re.match(r"^(State|Firewall Policy|LogDroppedConnections)\s{2,}(\S.*)$", line)
        if match:
            current[match.group(1).lower()] = match.group(2).strip()
        elif re.match(r"^(Rule Name|DisplayName)\b", line):
            current = None
    return result


def read_rules(text: str) -> tuple[str, list[_Raw], list[tuple[int | None, str]]]:
    issues: list[tuple[int | None, str]] = []
    if any(len(line) > MAX_LINE for line in text.splitlines()):
        lines = text.splitlines()
        for number, line in enumerate(lines, start=1):
            if len(line) > MAX_LINE:
                issues.append((number, f"line longer than {MAX_LINE} characters cut short"))
                lines[number - 1] = line[:MAX_LINE]
        text = "\n".join(lines)
    form = _form(text)
    if form == "json":
        rules = _json_rules(text, issues)
    elif form == "csv":
        rules = _csv_rules(text, issues)
    elif form == "netsh-script":
        rules = _netsh_script(text, issues)
    else:
        rules = _list_rules(text, issues)
    return form, rules, issues


@register_parser
class WindowsFirewallParser:
    vendor = "windows-firewall"
    label = "Windows Defender Firewall (netsh / PowerShell export)"

    def sniff(self, text: str) -> int:
        sample = text[:200_000]
        score = 0
        if re.search(r"^Rule Name:\s+\S", sample, re.M):
            score += 60
        if re.search(r"^(LocalPort|RemoteIP|Edge traversal):\s", sample, re.M):
            score += 30
        if _NETSH_COMMAND.search(sample):
            score += 70
        if re.search(r'"?RemoteAddress"?\s*(?:[:,;]|$)', sample, re.M) and re.search(
            r'"?(DisplayName|Direction)"?', sample
        ):
            score += 70
        return min(score, 95)

    def parse(self, text: str, path: str, options: ParseOptions) -> ParseResult:
        try:
            form, raws, issues = read_rules(text)
        except (ValueError, StopIteration) as exc:
            raise FirewallParseError(
                f"{path}: cannot read the firewall rule export ({exc})"
            ) from exc
        if not raws:
            raise FirewallParseError(
                f"{path}: no Windows Firewall rules found (English netsh output or a PowerShell "
                "export with DisplayName, Direction, Action, RemoteAddress, LocalPort is needed)"
            )
        profile = (options.acl or "domain").lower()
        if profile not in _PROFILES:
            profile = "domain"
        notes: list[str] = []
        rules: list[Rule] = []
        skipped_profile = 0
        for raw in raws:
            if raw.get("direction", "In").lower() not in ("in", "inbound"):
                continue
            if not _profile_matches(raw.get("profiles"), profile):
                skipped_profile += 1
                continue
            rules.append(_to_rule(raw, path, notes))
        settings = profile_settings(text).get(profile, {})
        logged = settings.get("logdroppedconnections", "").lower() == "enable"
        default = Action.DENY
        if settings.get("firewall policy", "").lower().startswith("allowinbound"):
            default = Action.PERMIT
        if settings.get("state", "").lower() == "off":
            notes.append(
                f"the firewall is OFF for the {profile.title()} profile: no rule applies and "
                "every connection is let through"
            )
            rules, default = [], Action.PERMIT
        chain = Chain(
            "inbound",
            tuple(rules),
            default,
            Origin(
                path,
                None,
                f"default inbound action of the {profile.title()} profile: "
                + ("allow" if default == Action.PERMIT else "block")
                + (" (logged)" if logged else " (not logged by default)"),
            ),
            default_logged=logged,
        )
        notes.append(
            f"Windows Firewall: {profile.title()} profile assumed (use --acl private|public); a "
            "matching block rule beats every allow rule; traffic no rule allows is blocked"
            + ("" if logged else " and, unless 'Log dropped packets' is on, not logged")
        )
        if skipped_profile:
            notes.append(f"{skipped_profile} inbound rules apply only to other profiles")
        policy = Policy(
            vendor=self.vendor,
            path=path,
            chains={"inbound": chain},
            entries=("inbound",),
            combine=Combine.BLOCK_WINS,
            acl_name=profile,
            notes=tuple(notes),
            default_deny_logged=logged,
            all_acls=(form,),
        )
        return ParseResult(policy, tuple(issues))

    # ---- remediation -------------------------------------------------------------------------
    def remediate(self, text: str, result: ParseResult, check: RangeCheck) -> Remediation | None:
        gap = gap_context(result.policy, check)
        form, raws, _ = read_rules(text)
        path = result.policy.path
        cleanup = _cleanup(form, raws, gap, check.stale)
        if not gap.missing:
            return cleanup_only(cleanup)
        options = ParseOptions(acl=result.policy.acl_name)

        def reparse(patched: str) -> Policy:
            return self.parse(patched, path, options).policy

        found = first_closing(
            reparse,
            gap,
            [
                lambda: _fix(text, form, raws, gap, "blocks"),
                lambda: _fix(text, form, raws, gap, "extend"),
                lambda: _fix(text, form, raws, gap, "new"),
            ],
        )
        return finish(found, cleanup)


def _cleanup(form: str, raws: list[_Raw], gap: GapContext, stale: IPSet) -> tuple[str, ...]:
    """Allow rules' remote address lists without the entries that are only retired ranges."""
    if not stale:
        return ()
    changes: list[tuple[_Raw, str]] = []
    for raw in raws:
        if raw.get("action", "Allow").lower() != "allow":
            continue
        entries = [e.strip() for e in raw.get("remote_ip").split(",") if e.strip()]
        keep = [e for e in entries if not is_stale(try_parse_set(e) or IPSet(), stale)]
        if keep and len(keep) < len(entries):
            changes.append((raw, ",".join(keep)))
    return _commands(form, changes, None, gap) if changes else ()


def _addr_list(addresses: IPSet) -> list[str]:
    """Windows address list entries: CIDRs, or ranges when that is much shorter."""
    cidrs = addresses.cidrs()
    if len(cidrs) <= 8:
        return cidrs
    out: list[str] = []
    for intervals, version in ((addresses.v4, 4), (addresses.v6, 6)):
        for first, last in intervals:
            a = ipaddress.IPv4Address(first) if version == 4 else ipaddress.IPv6Address(first)
            b = ipaddress.IPv4Address(last) if version == 4 else ipaddress.IPv6Address(last)
            block = IPSet.from_range(a, b).cidrs()
            out.append(block[0] if len(block) == 1 else f"{a}-{b}")
    return out


def _raw_for(raws: list[_Raw], rule: Rule) -> _Raw | None:
    return next(
        (r for r in raws if r.line == rule.origin.line and r.get("name") == rule.name), None
    )


def _fix(
    text: str, form: str, raws: list[_Raw], gap: GapContext, mode: str
) -> tuple[tuple[str, ...], str, str] | None:
    """mode: "blocks" (only narrow block rules), "extend" (and widen the allow), "new"."""
    changes: list[tuple[_Raw, str]] = []  # (rule, new RemoteIP value or DISABLE)
    explanation: list[str] = []
    # Block rules beat allows: take the missing ranges out of every block rule that hits them.
    blockers = gap.explicit_blockers()
    for rule in blockers:
        raw = _raw_for(raws, rule)
        if raw is None:
            return None
        remaining = rule.sources - gap.missing
        if not remaining:
            changes.append((raw, "DISABLE"))
            explanation.append(f'disable block rule "{rule.name}" (it only blocks those ranges)')
        else:
            changes.append((raw, ",".join(_addr_list(remaining))))
            explanation.append(f'take the Exchange Online ranges out of block rule "{rule.name}"')
    new_rule: dict[str, str] | None = None
    permits = [r for r in gap.smtp_permits() if not r.unresolved]
    if mode == "blocks":
        if not blockers:
            return None
    elif mode == "extend":
        if not permits or permits[0].sources == IPSet.universe():
            return None
        rule = permits[0]
        raw = _raw_for(raws, rule)
        if raw is None:
            return None
        current = [v for v in raw.get("remote_ip").split(",") if v.strip()]
        changes.append((raw, ",".join([*current, *(gap.missing - rule.sources).cidrs()])))
        explanation.append(f'add the missing ranges to allow rule "{rule.name}"')
    else:
        new_rule = {
            "name": "Exchange Online SMTP (mailflow-doctor)",
            "remote_ip": ",".join(gap.missing.cidrs()),
            "local_port": str(gap.port),
        }
        explanation.append(f'add allow rule "{new_rule["name"]}" for TCP {gap.port}')
    lines = _commands(form, changes, new_rule, gap)
    patched = _patch(text, form, raws, changes, new_rule, gap)
    if patched is None:
        return None
    return lines, patched, "Windows Firewall: " + "; ".join(explanation) + "."


def _ps_list(value: str) -> str:
    return ",".join(f"'{v}'" for v in value.split(","))


def _commands(
    form: str, changes: list[tuple[_Raw, str]], new_rule: dict[str, str] | None, gap: GapContext
) -> tuple[str, ...]:
    powershell = form in ("json", "csv", "list") and not any(
        r.raw_keys.get("name") == "Rule Name" for r, _ in changes
    )
    profile = gap.policy.acl_name.title()
    lines: list[str] = []
    for raw, value in changes:
        name = raw.get("name")
        if value == "DISABLE":
            lines.append(
                f"Disable-NetFirewallRule -DisplayName '{name}'"
                if powershell
                else f'netsh advfirewall firewall set rule name="{name}" new enable=no'
            )
        elif powershell:
            lines.append(
                f"Set-NetFirewallRule -DisplayName '{name}' -RemoteAddress {_ps_list(value)}"
            )
        else:
            lines.append(f'netsh advfirewall firewall set rule name="{name}" new remoteip={value}')
    if new_rule is not None:
        if powershell:
            lines.append(
                f"New-NetFirewallRule -DisplayName '{new_rule['name']}' -Direction Inbound "
                f"-Action Allow -Protocol TCP -LocalPort {new_rule['local_port']} "
                f"-RemoteAddress {_ps_list(new_rule['remote_ip'])} -Profile {profile}"
            )
        else:
            lines.append(
                f'netsh advfirewall firewall add rule name="{new_rule["name"]}" dir=in '
                f"action=allow protocol=TCP localport={new_rule['local_port']} "
                f"remoteip={new_rule['remote_ip']} profile={profile.lower()}"
            )
    return tuple(lines)


def _patch(
    text: str,
    form: str,
    raws: list[_Raw],
    changes: list[tuple[_Raw, str]],
    new_rule: dict[str, str] | None,
    gap: GapContext,
) -> str | None:
    profile = gap.policy.acl_name.title()
    if form == "json":
        data = json.loads(text)
        items = data if isinstance(data, list) else [data]
        for raw, value in changes:
            item = items[raw.index]
            if value == "DISABLE":
                item[raw.raw_keys.get("enabled", "Enabled")] = "False"
            else:
                item[raw.raw_keys.get("remote_ip", "RemoteAddress")] = value.split(",")
        if new_rule is not None:
            items.append(
                {
                    "Name": "mailflow-doctor-exo-smtp",
                    "DisplayName": new_rule["name"],
                    "Enabled": "True",
                    "Direction": "Inbound",
                    "Action": "Allow",
                    "Profile": profile,
                    "Protocol": "TCP",
                    "LocalPort": new_rule["local_port"],
                    "RemotePort": "Any",
                    "LocalAddress": "Any",
                    "RemoteAddress": new_rule["remote_ip"].split(","),
                }
            )
        return json.dumps(items, indent=4)
    if form == "csv":
        lines = [ln for ln in text.splitlines() if not ln.startswith("#TYPE")]
        delimiter = ";" if lines[0].count(";") > lines[0].count(",") else ","
        rows = list(csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter))
        header = rows[0]
        for raw, value in changes:
            row = rows[raw.index + 1]
            key = "enabled" if value == "DISABLE" else "remote_ip"
            label = raw.raw_keys.get(key)
            if label is None or label not in header:
                return None
            row[header.index(label)] = "False" if value == "DISABLE" else value
        if new_rule is not None:
            values = {
                "name": new_rule["name"],
                "enabled": "True",
                "direction": "Inbound",
                "action": "Allow",
                "profiles": profile,
                "protocol": "TCP",
                "local_port": new_rule["local_port"],
                "remote_port": "Any",
                "local_ip": "Any",
                "remote_ip": new_rule["remote_ip"],
            }
            rows.append([values.get(_canonical(h) or "", "") for h in header])
        out = io.StringIO()
        csv.writer(out, delimiter=delimiter, lineterminator="\n", quoting=csv.QUOTE_ALL).writerows(
            rows
        )
        return out.getvalue()
    if form == "netsh-script":
        return insert_after_line(
            text, len(text.splitlines()), _commands("netsh-script", changes, new_rule, gap)
        )
    # netsh `show rule` text or Format-List: rewrite the RemoteIP/Enabled lines in place.
    lines_out = text.splitlines()
    for raw, value in changes:
        key = "enabled" if value == "DISABLE" else "remote_ip"
        label = raw.raw_keys.get(key)
        end = _block_end(lines_out, raw.line)
        target = next(
            (
                i
                for i in range(raw.line - 1, end)
                if label is not None and re.match(rf"^{re.escape(label)}\s*:", lines_out[i])
            ),
            None,
        )
        if target is None:
            # The export left the field out (an empty value): add it to the block.
            netsh = raw.raw_keys.get("name") == "Rule Name"
            names = {"enabled": "Enabled", "remote_ip": "RemoteIP" if netsh else "RemoteAddress"}
            label = names[key]
            lines_out.insert(end, f"{label}: ")
            target = end
            end += 1
        head = re.match(rf"^({re.escape(label or '')}\s*:\s*)", lines_out[target])
        assert head is not None
        new_value = (
            ("No" if raw.raw_keys.get("name") == "Rule Name" else "False")
            if value == "DISABLE"
            else value
        )
        lines_out[target] = head.group(1) + new_value
        # drop wrapped continuation lines of the old value
        while target + 1 < end and lines_out[target + 1][:1].isspace():
            lines_out.pop(target + 1)
            end -= 1
    if new_rule is not None:
        lines_out += [
            "",
            f"Rule Name:                            {new_rule['name']}",
            "----------------------------------------------------------------------",
            "Enabled:                              Yes",
            "Direction:                            In",
            f"Profiles:                             {profile}",
            "LocalIP:                              Any",
            f"RemoteIP:                             {new_rule['remote_ip']}",
            "Protocol:                             TCP",
            f"LocalPort:                            {new_rule['local_port']}",
            "RemotePort:                           Any",
            "Action:                               Allow",
            "",
        ]
    return "\n".join(lines_out) + "\n"


def _block_end(lines: list[str], start: int) -> int:
    index = start
    while index < len(lines) and lines[index].strip():
        index += 1
    return index
