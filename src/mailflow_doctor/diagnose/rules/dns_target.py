"""Is Exchange Online delivering to the endpoint's current address?

After a change of ISP or public address, the smart host name (or an IP smart host) can keep
pointing at the old address: every attempt then times out or is refused there, while the
firewall, the certificate and Exchange itself are fine. The addresses Exchange Online tried
(LastAttemptedIP, {IP=...}, OutboundProxyTargetIP) are compared with what the other evidence
says the endpoint is today: an IP smart host on the outbound connector, the public address a
firewall translates to TCP 25, an address the admin gave, or the address that deliveries to the
same organisation do reach.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterator

from mailflow_doctor.diagnose.checks import Context, check
from mailflow_doctor.diagnose.facts import contradict, describe_codes, support, utc_iso
from mailflow_doctor.diagnose.hybrid import Deferral, deferrals, hybrid_outbound
from mailflow_doctor.diagnose.model import Finding, Severity
from mailflow_doctor.evidence.document import SourceRef
from mailflow_doctor.knowledge.ipranges import IPSet

CONNECT_CODES = ("4.4.315", "4.4.316", "4.4.318", "4.4.317")
# Exchange Online can only reach a public address: a NAT whose "public" side is private is an
# internal translation and says nothing about the address EOP should use.
NOT_REACHABLE_FROM_EOP = IPSet.parse(
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def expected_addresses(ctx: Context) -> dict[str, list[SourceRef]]:
    """The endpoint's current public addresses, each with the evidence that says so."""
    found: dict[str, list[SourceRef]] = {}
    outbound = hybrid_outbound(ctx.bundle)
    if outbound is not None:
        for host in outbound.smart_hosts:
            if _is_ip(host):
                found.setdefault(host, []).append(outbound.ref)
    for firewall in ctx.bundle.firewalls:
        for nat in firewall.result.policy.nat:
            if nat.public_ports is not None and 25 not in nat.public_ports:
                continue
            origin = SourceRef(nat.origin.path, nat.origin.line, nat.origin.text[:300])
            for network in nat.public.networks():
                address = str(network.network_address)
                if network.num_addresses == 1 and address not in NOT_REACHABLE_FROM_EOP:
                    found.setdefault(address, []).append(origin)
    given = ctx.bundle.options.get("expected_address") or ctx.facts.get("endpoint_addresses")
    for address in [given] if isinstance(given, str) else list(given or []):
        if isinstance(address, str) and _is_ip(address):
            found.setdefault(address, [])
    per_target = ctx.facts.get("per_target") or {}
    for key, tally in per_target.items():
        clean = (
            isinstance(tally, dict)
            and tally.get("delivered")
            and not any(tally.get(k) for k in ("refused", "timeout", "other"))
        )
        if clean and _is_ip(key):
            found.setdefault(key, [])
    return found


@check("dns.target", order=55)
def dns_target(ctx: Context) -> Iterator[Finding]:
    items = [d for d in deferrals(ctx.bundle) if d.target_ip and d.code in CONNECT_CODES]
    if not items:
        return
    expected = expected_addresses(ctx)
    if not expected:
        return
    expected_set = IPSet.parse(*expected)
    wrong: dict[str, list[Deferral]] = {}
    for item in items:
        if item.target_ip not in expected_set:
            wrong.setdefault(item.target_ip, []).append(item)
    if not wrong:
        return
    stray = [d for ds in wrong.values() for d in ds]
    codes = Counter(d.code for d in stray)
    share = len(stray) / len(items)
    # LastAttemptedServerName is an address when the connector's smart host is one.
    hosts = sorted({d.target_host for d in stray if d.target_host and not _is_ip(d.target_host)})
    tried = sorted(wrong)
    refs: list[SourceRef] = []
    for item in stray[:3]:
        when = utc_iso(item.event.time_utc) or ""
        refs.append(
            SourceRef(item.event.ref.path, item.event.ref.line, f"{when} {item.text}"[:300])
        )
    for address_refs in expected.values():
        refs.extend(address_refs[:1])
    name = hosts[0] if hosts else "the smart host"
    # A firewall judged for the stale address says nothing about the endpoint as it is now.
    judged = {str(item[1]) for item in ctx.facts.get("firewall_checks", []) if len(item) > 1}
    if judged and judged <= set(tried):
        for firewall_id in (
            "firewall.eop_ranges_blocked",
            "firewall.eop_ranges_permitted_partially",
        ):
            contradict(
                ctx.facts,
                firewall_id,
                f"The policy was judged for {', '.join(sorted(judged))}, the address Exchange "
                "Online tried, but the endpoint now answers at "
                f"{', '.join(sorted(expected))}; judge it again with --to "
                f"{sorted(expected)[0]}.",
                weight=0.4,
            )
    for competitor in ("smtp.connection_timeout", "smtp.nothing_listening"):
        support(
            ctx.facts,
            "dns.target_mismatch",
            f"Exchange Online's failures to {', '.join(tried)} are expected at an address the "
            "endpoint no longer uses.",
            refs[:1],
            0.02,
            source_id=competitor,
        )
    yield Finding(
        id="dns.target_mismatch",
        severity=Severity.CRITICAL,
        title=(
            f"Exchange Online delivers to {', '.join(tried)}, not to the endpoint's current "
            f"address {', '.join(sorted(expected))}"
        ),
        summary=(
            f"{len(stray)} of {len(items)} deferred attempts went to {', '.join(tried)}"
            + (f" ({name})" if hosts else "")
            + f" and failed ({describe_codes(c for c, _ in codes.most_common())}), but the "
            f"evidence puts the on-premises endpoint at {', '.join(sorted(expected))}. The "
            "smart host's DNS record (or an IP smart host on the connector) still points at "
            "the old address, typically after a change of ISP or public IP."
        ),
        confidence=0.9 if share >= 0.9 else 0.75,
        data={
            "tried": tried,
            "expected": sorted(expected),
            "names": hosts,
            "attempts": len(stray),
        },
        evidence=tuple(refs[:6]),
        remediation=(
            (
                f"Update the A record of {name} to {sorted(expected)[0]} (and wait for its "
                "TTL), or correct SmartHosts on the outbound connector: Set-OutboundConnector "
                "'<Outbound to ...>' -SmartHosts <name or address>."
                if hosts
                else "The outbound connector names the address itself: correct SmartHosts: "
                "Set-OutboundConnector '<Outbound to ...>' -SmartHosts "
                f"{sorted(expected)[0]} (better, a name whose A record you control)."
            ),
            "Re-run the Hybrid Configuration Wizard after an address change, and check the "
            f"result with: mailflow-doctor probe {name if hosts else sorted(expected)[0]}",
        ),
        explains=tuple(sorted(codes)),
    )
