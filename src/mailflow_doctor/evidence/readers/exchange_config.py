"""Connector, certificate and hybrid configuration exports, as admins hand them over.

Get-OutboundConnector / Get-InboundConnector (Exchange Online), Get-ReceiveConnector,
Get-SendConnector, Get-ExchangeCertificate and Get-HybridConfiguration (on-premises), each in
the three shapes PowerShell produces: `Format-List` text, `Export-Csv` and `ConvertTo-Json`.
Each object is classified by the properties it has, not by the file name, so one file may hold
several cmdlets' output. Collections come as `{a, b}` (Format-List), as `a;b` or a type name
(Export-Csv) or as arrays of strings or objects (JSON); all become tuples of strings. Dates in
Get-ExchangeCertificate are the shell's local time in its culture: the day/month order is
decided over the whole file and the zone is `--timezone` (UTC when not given, and said so).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from mailflow_doctor.evidence.culturetime import DateOrderVote, parse_culture_time
from mailflow_doctor.evidence.document import Document, ReadContext
from mailflow_doctor.evidence.exotrace import (
    columns_of,
    json_keys,
    json_objects,
    local_zone_note,
    looks_like_json,
)
from mailflow_doctor.evidence.records import CertificateInfo, ConnectorConfig, HybridConfigInfo
from mailflow_doctor.evidence.registry import register_reader
from mailflow_doctor.evidence.tabular import normalise_name

MAX_OBJECTS = 20_000
TYPE_NAME = re.compile(r"^(?:System|Microsoft)\.[\w.`\[\], ]+$")
# Get-ExchangeCertificate Services as an integer (AllowedServices flags in JSON exports).
SERVICE_FLAGS = (
    (1, "IMAP"),
    (2, "POP"),
    (4, "UM"),
    (8, "IIS"),
    (16, "SMTP"),
    (32, "Federation"),
    (64, "UMCallRouter"),
)
_CN = re.compile(r"^CN=([^,]+)", re.IGNORECASE)

OUTBOUND = "outbound"
INBOUND = "inbound"
RECEIVE = "receive"
SEND = "send"
CERTIFICATE = "certificate"
HYBRID = "hybrid"


def classify(keys: set[str]) -> str | None:
    """Which cmdlet an object (or a file's head) came from, by its normalised property names."""
    if "thumbprint" in keys and keys & {"notafter", "services", "certificatedomains"}:
        return CERTIFICATE
    if keys & {"receivingtransportservers", "onpremisessmarthost"} or (
        "features" in keys and "sendingtransportservers" in keys
    ):
        return HYBRID
    if "bindings" in keys and keys & {"remoteipranges", "permissiongroups", "authmechanism"}:
        return RECEIVE
    if "addressspaces" in keys and keys & {
        "sourcetransportservers",
        "dnsroutingenabled",
        "tlsauthlevel",
        "smarthosts",
    }:
        return SEND
    if keys & {"smarthosts", "usemxrecord"} and keys & {
        "recipientdomains",
        "tlssettings",
        "routeallmessagesviaonpremises",
        "connectortype",
    }:
        return OUTBOUND
    if keys & {"senderdomains", "tlssendercertificatename", "senderipaddresses"}:
        return INBOUND
    return None


@dataclass
class _Object:
    """One exported object: its properties by normalised name, and where it starts."""

    values: dict[str, object]
    names: dict[str, str]  # normalised -> as written
    line: int
    excerpt: str

    def raw(self, *names: str) -> object:
        for name in names:
            key = normalise_name(name)
            if key in self.values:
                return self.values[key]
        return None

    def text(self, *names: str) -> str:
        return _as_text(self.raw(*names))

    def items(self, *names: str) -> tuple[str, ...]:
        return _as_items(self.raw(*names))

    def flag(self, *names: str) -> bool | None:
        value = self.raw(*names)
        if isinstance(value, bool):
            return value
        text = _as_text(value).strip().lower()
        if text in ("true", "$true", "1", "yes"):
            return True
        if text in ("false", "$false", "0", "no"):
            return False
        return None


def _dict_text(value: dict[object, object]) -> str:
    """The readable form of a serialised Exchange value object (SmartHost, IPRange, ...)."""
    lowered = {normalise_name(str(k)): v for k, v in value.items()}
    if "certificatesubject" in lowered:  # SmtpX509Identifier (TlsCertificateName)
        issuer = _as_text(lowered.get("certificateissuer"))
        subject = _as_text(lowered["certificatesubject"])
        return f"<I>{issuer}<S>{subject}" if issuer else subject
    if "domain" in lowered and "capabilities" in lowered:
        return f"{_as_text(lowered['domain'])}:{_as_text(lowered['capabilities'])}"
    if "address" in lowered and "port" in lowered:
        address = _as_text(lowered["address"])
        joined = f"[{address}]" if ":" in address else address
        return f"{joined}:{_as_text(lowered['port'])}"
    keys = ("ipaddresstostring", "expression", "address", "domain", "smarthost", "name", "value")
    for key in (*keys, "tostring"):
        if key in lowered and lowered[key] not in (None, "", {}):
            return _as_text(lowered[key])
    return ""


def _as_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, dict):
        return _dict_text(value)
    if isinstance(value, list):
        return ", ".join(_as_items(value))
    return str(value)


def _split_braced(text: str) -> tuple[str, ...]:
    """`{a, b, c...}` (Format-List) or `a;b` / `a b` (flattened CSV) into items."""
    text = text.strip()
    if not text or TYPE_NAME.match(text):
        return ()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    parts = re.split(r"[;,]\s*", text) if not text.startswith("<I>") else [text]
    items: list[str] = []
    for part in (p.strip() for p in parts):
        if not part:
            continue
        if part.endswith("..."):  # Format-List cut the collection short
            part = part[:-3].strip()
        if part.isdigit() and items and ":" in items[-1]:  # an address space cost: "smtp:*;1"
            items[-1] = f"{items[-1]};{part}"
            continue
        items.append(part)
    return tuple(items)


def _as_items(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, list):
        items = (_as_text(item) for item in value)
        return tuple(item for item in items if item)
    if isinstance(value, dict):
        text = _dict_text(value)
        return (text,) if text else ()
    return _split_braced(_as_text(value))


def _server_name(text: str) -> str:
    """`EX01`, `EX01.contoso.com`, `CN=EX01,CN=Servers,...` or `EX01\\conn` -> `EX01`."""
    text = text.strip()
    match = _CN.match(text)
    if match:
        text = match.group(1)
    if "\\" in text:
        text = text.split("\\", 1)[0]
    return text.split(".", 1)[0].strip()


def _services(value: object) -> tuple[str, ...]:
    if isinstance(value, str) and re.fullmatch(r"[IPUWSFC.]{4,10}", value.strip()):
        letters = value.strip()
        return tuple(name for letter, name in SERVICE_LETTERS.items() if letter in letters)
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        number = int(value)
        return tuple(name for bit, name in SERVICE_FLAGS if number & bit)
    if isinstance(value, dict):
        lowered = {normalise_name(str(k)): v for k, v in value.items()}
        inner = lowered.get("value", lowered.get("tostring"))
        return _services(inner) if inner is not None else ()
    return tuple(item for item in _as_items(value) if item.lower() != "none")


_CERT_TABLE = re.compile(r"^\s*Thumbprint\s+Services\s+Subject\s*$", re.IGNORECASE)
_CERT_ROW = re.compile(r"^\s*(?P<t>[0-9A-Fa-f]{40})\s+(?P<s>[A-Z.]{4,10})\s+(?P<subject>\S.*?)\s*$")
# The default Get-ExchangeCertificate table shows Services as one letter per service.
SERVICE_LETTERS = {"I": "IMAP", "P": "POP", "U": "UM", "W": "IIS", "S": "SMTP", "F": "Federation"}


def is_certificate_table(doc: Document) -> bool:
    return any(_CERT_TABLE.match(line) for line in doc.head_lines(20))


def _certificate_table(doc: Document) -> Iterator[_Object]:
    """`Get-ExchangeCertificate` without Format-List: Thumbprint, Services, Subject."""
    for line in doc.lines():
        match = _CERT_ROW.match(line.text)
        if match is None:
            continue
        values: dict[str, object] = {
            "thumbprint": match["t"],
            "services": match["s"],
            "subject": match["subject"],
        }
        names = {"thumbprint": "Thumbprint", "services": "Services", "subject": "Subject"}
        yield _Object(values, names, line.number, line.text[:300])


def _objects(doc: Document, ctx: ReadContext) -> Iterator[_Object]:
    if is_certificate_table(doc):
        yield from _certificate_table(doc)
        return
    if looks_like_json(doc):
        for line, obj in json_objects(doc, ctx):
            by_key = {normalise_name(str(k)): v for k, v in obj.items()}
            written = {normalise_name(str(k)): str(k) for k in obj}
            name = _as_text(by_key.get("identity") or by_key.get("name"))
            yield _Object(by_key, written, line, name[:300])
        return
    columns = columns_of(doc)
    if columns is None:
        ctx.warn(doc, None, "no properties found; not read")
        return
    if columns.format_list:
        yield from _format_list(doc)
        return
    for row in columns.rows(doc, ctx):
        values: dict[str, object] = {}
        names: dict[str, str] = {}
        for name, value in zip(row.header.names, row.values, strict=False):
            key = normalise_name(name)
            values.setdefault(key, value)
            names.setdefault(key, name)
        yield _Object(values, names, row.line, row.excerpt)


_FL_LINE = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_\-]{0,60})\s*:(?:\s(?P<value>.*))?$")


def _format_list(doc: Document) -> Iterator[_Object]:
    """Format-List objects: a blank line ends an object, unless blank lines separate every
    property (web-page copies), in which case only a repeated property name does."""
    lines = [(line.number, line.text.replace("\x00", "").rstrip()) for line in doc.lines()]
    properties = sum(1 for _, text in lines if _FL_LINE.match(text))
    blanks = sum(1 for _, text in lines if not text.strip())
    blank_separates = blanks < properties * 0.5
    values: dict[str, object] = {}
    names: dict[str, str] = {}
    start = 0
    excerpt = ""
    last = ""

    def flush() -> Iterator[_Object]:
        if values:
            yield _Object(dict(values), dict(names), start, excerpt)

    for number, text in lines:
        if not text.strip():
            if blank_separates:
                yield from flush()
                values.clear()
                names.clear()
                last = ""
            continue
        match = _FL_LINE.match(text) if not text[0].isspace() else None
        if match:
            key = normalise_name(match["key"])
            if key in values:
                yield from flush()
                values.clear()
                names.clear()
            if not values:
                start, excerpt = number, text[:300]
            values[key] = (match["value"] or "").strip()
            names[key] = match["key"]
            last = key
        elif last and last in values:
            # A wrapped value continues on the next, indented line.
            values[last] = f"{values[last]} {text.strip()}".strip()[:65536]
    yield from flush()


def _date_fields(objects: list[_Object]) -> DateOrderVote:
    vote = DateOrderVote()
    for obj in objects:
        for name in ("notbefore", "notafter"):
            value = obj.values.get(name)
            if isinstance(value, str):
                vote.observe(value)
    return vote


def _date(value: object, order: object, zone: object) -> tuple[datetime | None, bool]:
    """A date and whether it carried its own zone (ISO with offset, /Date(ms)/)."""
    if isinstance(value, dict):
        lowered = {normalise_name(str(k)): v for k, v in value.items()}
        value = lowered.get("value", lowered.get("datetime"))
    text = _as_text(value)
    if not text:
        return None, True
    absolute = "Date(" in text or text.endswith("Z") or bool(re.search(r"[+-]\d\d:?\d\d$", text))
    when = parse_culture_time(text, order, zone)  # type: ignore[arg-type]
    return when, absolute


def _extra(obj: _Object, mapped: set[str]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for key, value in obj.values.items():
        if key in mapped or key.startswith("__"):
            continue
        text = _as_text(value)
        if text:
            pairs.append((obj.names.get(key, key), text[:500]))
    return tuple(pairs[:80])


_CONNECTOR_KEYS = {
    "name", "identity", "server", "enabled", "connectortype", "connectorsource", "smarthosts",
    "usemxrecord", "tlsdomain", "tlssettings", "tlsauthlevel", "tlscertificatename",
    "tlssendercertificatename", "tlsdomaincapabilities", "requiretls", "bindings",
    "remoteipranges", "fqdn", "routeallmessagesviaonpremises", "cloudservicesmailenabled",
    "recipientdomains", "senderdomains", "senderipaddresses", "addressspaces",
    "sourcetransportservers", "authmechanism", "permissiongroups", "transportrole",
    "istransportrulescoped",
}  # fmt: skip


def _connector(kind: str, obj: _Object, doc: Document) -> ConnectorConfig:
    identity = obj.text("Identity", "DistinguishedName")
    name = obj.text("Name") or identity.split("\\")[-1]
    server = obj.text("Server")
    if not server and "\\" in identity:
        server = identity.split("\\", 1)[0]
    return ConnectorConfig(
        ref=doc.ref(obj.line, obj.excerpt or name),
        kind=kind,
        name=name,
        identity=identity,
        server=_server_name(server) if server else "",
        enabled=obj.flag("Enabled"),
        connector_type=obj.text("ConnectorType"),
        connector_source=obj.text("ConnectorSource"),
        smart_hosts=obj.items("SmartHosts"),
        use_mx_record=obj.flag("UseMXRecord"),
        tls_domain=obj.text("TlsDomain"),
        tls_settings=obj.text("TlsSettings"),
        tls_auth_level=obj.text("TlsAuthLevel"),
        tls_certificate_name=obj.text("TlsCertificateName"),
        tls_sender_certificate_name=obj.text("TlsSenderCertificateName"),
        tls_domain_capabilities=obj.items("TlsDomainCapabilities"),
        require_tls=obj.flag("RequireTls"),
        bindings=obj.items("Bindings"),
        remote_ip_ranges=obj.items("RemoteIPRanges"),
        fqdn=obj.text("Fqdn"),
        route_all_via_onprem=obj.flag("RouteAllMessagesViaOnPremises"),
        cloud_services_mail_enabled=obj.flag("CloudServicesMailEnabled"),
        recipient_domains=obj.items("RecipientDomains"),
        sender_domains=obj.items("SenderDomains"),
        sender_ip_addresses=obj.items("SenderIPAddresses"),
        address_spaces=obj.items("AddressSpaces"),
        source_transport_servers=tuple(
            _server_name(s) for s in obj.items("SourceTransportServers")
        ),
        auth_mechanism=obj.text("AuthMechanism"),
        permission_groups=obj.text("PermissionGroups"),
        transport_role=obj.text("TransportRole"),
        is_transport_rule_scoped=obj.flag("IsTransportRuleScoped"),
        extra=_extra(obj, _CONNECTOR_KEYS),
    )


def _certificate(
    obj: _Object, doc: Document, ctx: ReadContext, vote: DateOrderVote
) -> CertificateInfo:
    order, order_note = vote.decide("NotAfter")
    not_before, before_absolute = _date(obj.raw("NotBefore"), order, ctx.timezone)
    not_after, after_absolute = _date(obj.raw("NotAfter"), order, ctx.timezone)
    assumed = ""
    if not (before_absolute and after_absolute):
        notes = [order_note, local_zone_note(ctx.timezone, "certificate dates")]
        assumed = "; ".join(n for n in notes if n)
    identity = obj.text("Identity")
    server = obj.text("PSComputerName", "Server", "ServerName", "OriginatingServer")
    if not server and "\\" in identity:
        server = identity.split("\\", 1)[0]
    thumbprint = obj.text("Thumbprint").replace(" ", "").upper()
    sans = obj.items("CertificateDomains", "DnsNameList", "SubjectAlternativeNames")
    return CertificateInfo(
        ref=doc.ref(obj.line, obj.excerpt or f"{thumbprint} {obj.text('Subject')}"),
        thumbprint=thumbprint,
        subject=obj.text("Subject"),
        issuer=obj.text("Issuer"),
        sans=sans,
        not_before_utc=not_before,
        not_after_utc=not_after,
        services=_services(obj.raw("Services")),
        has_private_key=obj.flag("HasPrivateKey"),
        status=obj.text("Status"),
        server=_server_name(server) if server else "",
        is_self_signed=obj.flag("IsSelfSigned"),
        friendly_name=obj.text("FriendlyName"),
        time_assumed=assumed,
    )


def _hybrid(obj: _Object, doc: Document) -> HybridConfigInfo:
    def servers(name: str) -> tuple[str, ...]:
        return tuple(_server_name(s) for s in obj.items(name) if s)

    return HybridConfigInfo(
        ref=doc.ref(obj.line, obj.excerpt or "Hybrid Configuration"),
        name=obj.text("Name", "Identity"),
        domains=obj.items("Domains"),
        features=obj.items("Features"),
        receiving_transport_servers=servers("ReceivingTransportServers"),
        sending_transport_servers=servers("SendingTransportServers"),
        edge_transport_servers=servers("EdgeTransportServers"),
        on_premises_smart_host=obj.text("OnPremisesSmartHost"),
        tls_certificate_name=obj.text("TlsCertificateName"),
        external_ip_addresses=obj.items("ExternalIPAddresses"),
        service_instance=obj.text("ServiceInstance"),
    )


def _head_kinds(doc: Document) -> list[str]:
    """The kinds of the objects in the head of the file, for sniffing."""
    if is_certificate_table(doc):
        return [CERTIFICATE]
    if looks_like_json(doc):
        kind = classify(json_keys(doc))
        return [kind] if kind else []
    columns = columns_of(doc)
    if columns is None:
        return []
    kind = classify(set(columns.header.keys))
    return [kind] if kind else []


def _warn_type_names(obj: _Object, doc: Document, ctx: ReadContext) -> None:
    """Export-Csv writes collections as their .NET type name: say so, do not read it as data."""
    for key, value in obj.values.items():
        if isinstance(value, str) and TYPE_NAME.match(value.strip()) and "[" in value:
            name = obj.names.get(key, key)
            ctx.warn(
                doc,
                obj.line,
                f"{name} was exported as the type name '{value.strip()[:70]}'; export with "
                f"ConvertTo-Json, or Select-Object with -join, to keep its values",
            )


class _ConfigReader:
    """Shared reading; each subclass only claims the files its cmdlet dominates."""

    kind: ClassVar[str]
    label: ClassVar[str]
    object_kind: ClassVar[str]

    def sniff(self, doc: Document) -> int:
        return 90 if self.object_kind in _head_kinds(doc) else 0

    def read(self, doc: Document, ctx: ReadContext) -> Iterator[object]:
        objects: list[_Object] = []
        for obj in _objects(doc, ctx):
            objects.append(obj)
            if len(objects) >= MAX_OBJECTS:
                ctx.warn(doc, obj.line, f"more than {MAX_OBJECTS} objects; the rest not read")
                break
        vote = _date_fields(objects)
        unknown = 0
        for obj in objects:
            kind = classify(set(obj.values))
            if kind is not None:
                _warn_type_names(obj, doc, ctx)
            if kind == CERTIFICATE:
                if not obj.text("Thumbprint"):
                    ctx.warn(doc, obj.line, "certificate without a thumbprint; skipped")
                    continue
                yield _certificate(obj, doc, ctx, vote)
            elif kind == HYBRID:
                yield _hybrid(obj, doc)
            elif kind is not None:
                yield _connector(kind, obj, doc)
            else:
                unknown += 1
        if unknown:
            ctx.warn(
                doc,
                None,
                f"{unknown} object(s) were not recognised as a connector, certificate or "
                "hybrid configuration",
            )


@register_reader
class OutboundConnectorReader(_ConfigReader):
    kind = "exo.outbound_connector"
    label = "Exchange Online outbound connectors (Get-OutboundConnector)"
    object_kind = OUTBOUND


@register_reader
class InboundConnectorReader(_ConfigReader):
    kind = "exo.inbound_connector"
    label = "Exchange Online inbound connectors (Get-InboundConnector)"
    object_kind = INBOUND


@register_reader
class ReceiveConnectorReader(_ConfigReader):
    kind = "exchange.receive_connector"
    label = "Exchange receive connectors (Get-ReceiveConnector)"
    object_kind = RECEIVE


@register_reader
class SendConnectorReader(_ConfigReader):
    kind = "exchange.send_connector"
    label = "Exchange send connectors (Get-SendConnector)"
    object_kind = SEND


@register_reader
class ExchangeCertificateReader(_ConfigReader):
    kind = "exchange.certificate"
    label = "Exchange certificates (Get-ExchangeCertificate)"
    object_kind = CERTIFICATE


@register_reader
class HybridConfigurationReader(_ConfigReader):
    kind = "exchange.hybrid_configuration"
    label = "Hybrid configuration (Get-HybridConfiguration)"
    object_kind = HYBRID


def parse_tls_certificate_name(value: str) -> tuple[str, str]:
    """`<I>issuer<S>subject` -> (issuer, subject); a bare value is taken as the subject."""
    match = re.match(r"^\s*<I>(?P<i>.*?)<S>(?P<s>.*)$", value, re.IGNORECASE | re.DOTALL)
    if match:
        return match["i"].strip(), match["s"].strip()
    return "", value.strip()
