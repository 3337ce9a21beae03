"""Centralized Mail Transport (CMT) against the routing the trace shows.

With CMT (`RouteAllMessagesViaOnPremises`), mail from cloud mailboxes to the internet goes
through the on-premises servers first (for their journaling, DLP or gateway). Two things break
that promise quietly: the wizard was told to use CMT but the outbound connector has it off, or
the connector has it on and the trace still shows cloud senders' mail to outside recipients
leaving Exchange Online straight for the recipient's MX. By design a few copies always go
direct (an Exchange Online mailbox forwarding on-premises mail, cloud distribution groups with
outside members), so a handful of direct sends is reported with that caveat.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from mailflow_doctor.diagnose.checks import Context, check
from mailflow_doctor.diagnose.hybrid import hybrid_config, hybrid_outbound
from mailflow_doctor.diagnose.model import Finding, Severity
from mailflow_doctor.evidence.document import SourceRef
from mailflow_doctor.evidence.records import TraceEvent, TraceMessage

SENT_AT = re.compile(r"\bsent to (?P<host>[^\s,]+)(?: at (?P<ip>[0-9A-Fa-f:.]+))?", re.IGNORECASE)
DELIVERY_EVENTS = frozenset({"send external", "sendexternal", "send"})


def _domain(address: str) -> str:
    return address.rsplit("@", 1)[-1].strip().lower().rstrip(">") if "@" in address else ""


def _org_domains(ctx: Context) -> set[str]:
    domains: set[str] = set()
    outbound = hybrid_outbound(ctx.bundle)
    if outbound is not None:
        domains.update(d.lower().lstrip("*.") for d in outbound.recipient_domains)
    config = hybrid_config(ctx.bundle)
    if config is not None:
        domains.update(d.lower() for d in config.domains)
    return {d for d in domains if d}


def _internal(domain: str, org: set[str]) -> bool:
    return (
        domain in org
        or any(domain.endswith("." + d) for d in org)
        or domain.endswith((".onmicrosoft.com", ".outlook.com"))
    )


def _onprem_targets(ctx: Context) -> set[str]:
    """Names and addresses that mean "delivered to on-premises": smart hosts and targets tried."""
    targets: set[str] = set()
    outbound = hybrid_outbound(ctx.bundle)
    if outbound is not None:
        targets.update(h.lower().rstrip(".") for h in outbound.smart_hosts)
    config = hybrid_config(ctx.bundle)
    if config is not None and config.on_premises_smart_host:
        targets.add(config.on_premises_smart_host.lower().rstrip("."))
    targets.update(t.lower() for t in ctx.facts.get("smtp_targets", []) or [])
    return targets


@check("routing.cmt", order=60)
def routing_cmt(ctx: Context) -> Iterator[Finding]:
    outbound = hybrid_outbound(ctx.bundle)
    config = hybrid_config(ctx.bundle)
    if outbound is None:
        return
    wizard_cmt = bool(config and any(f.lower() == "centralizedtransport" for f in config.features))
    if wizard_cmt and outbound.route_all_via_onprem is False:
        assert config is not None
        yield Finding(
            id="routing.cmt_bypass",
            severity=Severity.ERROR,
            title="Centralized Mail Transport is configured but switched off on the connector",
            summary=(
                "The Hybrid Configuration Wizard was run with Centralized Mail Transport "
                "(CentralizedTransport in Get-HybridConfiguration), but the Exchange Online "
                f"outbound connector {outbound.name} has RouteAllMessagesViaOnPremises False. "
                "Mail from cloud mailboxes to the internet therefore leaves Exchange Online "
                "directly and bypasses the on-premises servers."
            ),
            confidence=0.85,
            data={
                "detail": "RouteAllMessagesViaOnPremises is False although the hybrid "
                "configuration lists CentralizedTransport",
                "connector": outbound.name,
            },
            evidence=(outbound.ref, config.ref),
            remediation=(
                f"Set-OutboundConnector '{outbound.name}' -RouteAllMessagesViaOnPremises $true "
                "(or re-run the Hybrid Configuration Wizard with Centralized Mail Transport).",
                "If direct delivery is what you want, re-run the wizard without it so the "
                "configuration says so.",
            ),
        )
        return
    if not outbound.route_all_via_onprem:
        return
    yield from _direct_sends(ctx, outbound.name, outbound.ref)


def _direct_sends(ctx: Context, connector: str, connector_ref: SourceRef) -> Iterator[Finding]:
    org = _org_domains(ctx)
    if not org:
        return
    onprem = _onprem_targets(ctx)
    messages = {m.message_id or m.trace_id: m for m in ctx.bundle.of(TraceMessage)}
    direct: list[tuple[str, str, SourceRef]] = []
    via_onprem = 0
    seen: set[str] = set()
    for event in ctx.bundle.of(TraceEvent):
        if event.event.strip().lower() not in DELIVERY_EVENTS:
            continue
        match = SENT_AT.search(event.detail or "")
        if not match:
            continue
        key = event.message_id or event.trace_id
        message = messages.get(key)
        sender = event.sender or (message.sender if message else "")
        recipient = event.recipient or (message.recipient if message else "")
        if not _internal(_domain(sender), org) or _internal(_domain(recipient), org):
            continue
        host = match.group("host").lower().rstrip(".")
        ip = (match.group("ip") or "").lower()
        if host in onprem or (ip and ip in onprem):
            via_onprem += 1
            continue
        if key in seen:
            continue
        seen.add(key)
        direct.append((recipient, host + (f" ({ip})" if ip else ""), event.ref))
    if not direct:
        return
    share = len(direct) / (len(direct) + via_onprem)
    examples = [f"to {r} via {h}" for r, h, _ in direct[:5]]
    yield Finding(
        id="routing.cmt_bypass",
        severity=Severity.ERROR if share > 0.2 or len(direct) >= 5 else Severity.WARNING,
        title=(
            f"{len(direct)} messages from cloud mailboxes went straight to the internet "
            "despite Centralized Mail Transport"
        ),
        summary=(
            f"The connector {connector} routes all mail via on-premises "
            f"(RouteAllMessagesViaOnPremises True), yet the trace shows {len(direct)} messages "
            f"from your domains to outside recipients delivered directly by Exchange Online "
            f"({'; '.join(examples)}), against {via_onprem} sent through on-premises. By "
            "design, copies made in Exchange Online for mail that came from on-premises "
            "(forwarding, cloud distribution groups) go direct; anything else points at another "
            "outbound connector (Partner, or scoped by a transport rule) taking precedence."
        ),
        confidence=0.8 if share > 0.2 else 0.6,
        data={
            "detail": f"{len(direct)} direct deliveries, {via_onprem} via on-premises",
            "direct": [{"recipient": r, "delivered_to": h} for r, h, _ in direct[:20]],
            "via_onprem": via_onprem,
        },
        evidence=(connector_ref, *[ref for _, _, ref in direct[:4]]),
        remediation=(
            "Get-OutboundConnector | fl Name,ConnectorType,RecipientDomains,"
            "IsTransportRuleScoped,RouteAllMessagesViaOnPremises,Enabled: look for a Partner or "
            "rule-scoped connector that catches this mail first.",
            "Get-OutboundConnectorReport -Domain <recipient domain> shows which connector "
            "Exchange Online uses for it.",
            "Check whether the senders' mailboxes forward on-premises mail (by-design direct "
            "sends, KB 3194415).",
        ),
    )
