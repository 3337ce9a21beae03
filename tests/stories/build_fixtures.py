"""Write the story evidence sets under tests/fixtures/stories/ (run: python build_fixtures.py).

Each story is what an admin would collect at 2 a.m. for one look-alike cause: the Exchange
Online message trace (summary and detail, Export-Csv), the FrontEnd SmtpReceive protocol logs
of the hybrid servers, and the connector / certificate / hybrid configuration exports
(Format-List). The formats follow the research notes and the public samples; names and
addresses are fictional (contoso.com, documentation ranges). The files are committed; this
script documents how they were made and rebuilds them when a story changes.
"""

from __future__ import annotations

import csv
import io
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "fixtures" / "stories"
DOMAIN = "contoso.com"
ENDPOINT = "mail.contoso.com"
PUBLIC_IP = "203.0.113.25"
OLD_IP = "198.51.100.77"
GUID = "2c3e6f0a-4b5d-4e8f-9a1b-2c3d4e5f6a7b"
RUNSPACE = "b1d8d2a3-9a55-4e5f-9a4c-5d1e2f3a4b5c"
R3 = "CN=R3, O=Let's Encrypt, C=US"
R11 = "CN=R11, O=Let's Encrypt, C=US"
CURRENT_THUMB = "9F3A6C1D2B4E5F60718293A4B5C6D7E8F9012345"
OLD_THUMB = "4A7B2C9D1E3F5061728394A5B6C7D8E9F0A1B2C3"
EX02_SELF_THUMB = "D0AC2FC63B9C5798828B45D849BE8D33AA11BB22"
EOP_SOURCES = [
    ("40.107.22.57", "EUR05-AM6-obe.outbound.protection.outlook.com"),
    ("52.100.14.201", "NAM12-DM6-obe.outbound.protection.outlook.com"),
    ("104.47.58.101", "NAM11-BN8-obe.outbound.protection.outlook.com"),
    ("40.92.18.75", "NAM10-BN7-obe.outbound.protection.outlook.com"),
    ("40.107.93.44", "NAM10-MW2-obe.outbound.protection.outlook.com"),
]
EOP_SERVERS = [
    "AM6EUR05FT041.eop-eur05.prod.protection.outlook.com",
    "DM6NAM12FT012.eop-nam12.prod.protection.outlook.com",
    "BN8NAM11FT066.eop-nam11.prod.protection.outlook.com",
]
BASE = datetime(2026, 11, 28, 13, 0, tzinfo=UTC)


def us_time(when: datetime) -> str:
    """PowerShell en-US culture: 11/28/2026 1:05:00 PM."""
    hour = when.hour % 12 or 12
    half = "AM" if when.hour < 12 else "PM"
    return f"{when.month}/{when.day}/{when.year} {hour}:{when.minute:02d}:{when.second:02d} {half}"


def log_time(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


@dataclass
class Message:
    index: int
    sender: str
    recipient: str
    subject: str
    received: datetime
    status: str  # Delivered / Pending / Failed
    events: list[tuple[datetime, str, str]] = field(default_factory=list)
    to_ip: str = ""

    @property
    def message_id(self) -> str:
        return f"<DB9PR04MB{7300 + self.index}.eurprd04.prod.outlook.com>"

    @property
    def trace_id(self) -> str:
        return f"7e2a{self.index:04d}-5b1c-4d3e-8f9a-0b1c2d3e{self.index:04d}"


def defer_detail(led: str, ip: str, when: datetime, n: int, msg: str = "") -> str:
    server = EOP_SERVERS[n % len(EOP_SERVERS)]
    session = f"08DE2F1A{when.hour:02d}{when.minute:02d}{n:04d}"
    return (
        f"Reason: [{{LED={led} [LastAttemptedServerName={ENDPOINT}] "
        f"[LastAttemptedIP={ip}:25] [SmtpSecurity=-1;-1] [{server} "
        f"{log_time(when)} {session}]}};{{MSG={msg}}};{{FQDN={ENDPOINT}}};{{IP={ip}}};"
        f"{{LRT={us_time(when)}}}]. OutboundProxyTargetIP: {ip}. "
        f"OutboundProxyTargetHostName: {ENDPOINT}"
    )


def write_csv(path: Path, header: list[str], rows: list[list[str]], type_line: str = "") -> None:
    buffer = io.StringIO()
    if type_line:
        buffer.write(type_line + "\r\n")
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xef\xbb\xbf" + buffer.getvalue().encode("utf-8"))


def write_trace(folder: Path, messages: list[Message]) -> None:
    start, end = us_time(BASE - timedelta(days=2)), us_time(BASE + timedelta(hours=6))
    org = "contoso.onmicrosoft.com"
    write_csv(
        folder / "trace" / "MessageTrace.csv",
        [
            "PSComputerName",
            "RunspaceId",
            "PSShowComputerName",
            "Organization",
            "MessageId",
            "Received",
            "SenderAddress",
            "RecipientAddress",
            "Subject",
            "Status",
            "ToIP",
            "FromIP",
            "Size",
            "MessageTraceId",
            "StartDate",
            "EndDate",
            "Index",
        ],
        [
            [
                "outlook.office365.com",
                RUNSPACE,
                "False",
                org,
                m.message_id,
                us_time(m.received),
                m.sender,
                m.recipient,
                m.subject,
                m.status,
                m.to_ip,
                "198.51.100.20",
                str(20000 + m.index * 731),
                m.trace_id,
                start,
                end,
                str(i),
            ]
            for i, m in enumerate(messages)
        ],
        "#TYPE Deserialized.Microsoft.Exchange.Management.FfoReporting.MessageTrace",
    )
    rows = []
    for m in messages:
        for when, event, detail in m.events:
            rows.append(
                [
                    "outlook.office365.com",
                    RUNSPACE,
                    "False",
                    org,
                    m.message_id,
                    m.trace_id,
                    m.recipient,
                    m.sender,
                    start,
                    end,
                    us_time(when),
                    event,
                    "",
                    detail,
                    "",
                ]
            )
    write_csv(
        folder / "trace" / "MessageTraceDetail.csv",
        [
            "PSComputerName",
            "RunspaceId",
            "PSShowComputerName",
            "Organization",
            "MessageId",
            "MessageTraceId",
            "RecipientAddress",
            "SenderAddress",
            "StartDate",
            "EndDate",
            "Date",
            "Event",
            "Action",
            "Detail",
            "Data",
        ],
        rows,
        "#TYPE Deserialized.Microsoft.Exchange.Management.FfoReporting.MessageTraceDetail",
    )


@dataclass
class Cert:
    subject: str
    issuer: str
    thumbprint: str
    not_before: datetime
    not_after: datetime
    sans: tuple[str, ...]
    serial: str = "04A1B2C3D4E5F60718293A4B5C6D7E8F90"


CURRENT = Cert(
    f"CN={ENDPOINT}",
    R11,
    CURRENT_THUMB,
    datetime(2026, 11, 20, 8, 0, tzinfo=UTC),
    datetime(2027, 2, 18, 7, 59, 59, tzinfo=UTC),
    (ENDPOINT, f"autodiscover.{DOMAIN}"),
)
OLD = Cert(
    f"CN={ENDPOINT}",
    R3,
    OLD_THUMB,
    datetime(2026, 8, 22, 8, 0, tzinfo=UTC),
    datetime(2026, 11, 20, 7, 59, 59, tzinfo=UTC),
    (ENDPOINT, f"autodiscover.{DOMAIN}"),
)
EX02_SELF = Cert(
    "CN=EX02",
    "CN=EX02",
    EX02_SELF_THUMB,
    datetime(2021, 5, 3, 9, 12, 0, tzinfo=UTC),
    datetime(2026, 5, 3, 9, 12, 0, tzinfo=UTC).replace(year=2031),
    ("EX02", "EX02.contoso.local"),
    "5C4B3A29180706F5E4D3C2B1A0F9E8D7",
)


class ReceiveLog:
    """One server's FrontEnd SmtpReceive protocol log, session by session."""

    def __init__(self, server: str, local_ip: str) -> None:
        self.server = server
        self.local = f"{local_ip}:25"
        self.connector = f"{server}\\Default Frontend {server}"
        self.lines: list[tuple[datetime, str]] = []
        self.accepted: list[tuple[datetime, str, str, Message]] = []
        self.count = 0

    def _row(
        self,
        when: datetime,
        sid: str,
        seq: int,
        remote: str,
        event: str,
        data: str,
        context: str = "",
    ) -> None:
        fields = [
            log_time(when),
            self.connector,
            sid,
            str(seq),
            self.local,
            remote,
            event,
            data,
            context,
        ]
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="").writerow(fields)
        self.lines.append((when, buffer.getvalue()))

    def session(
        self,
        when: datetime,
        source: tuple[str, str],
        starttls: bool,
        cert: Cert | None = None,
        message: Message | None = None,
        reset_after_tls: bool = False,
    ) -> None:
        self.count += 1
        sid = f"08DE2F1B{self.server[-2:]}{when.hour:02d}{when.minute:02d}{self.count:04d}"
        ip, helo = source
        remote = f"{ip}:{41000 + self.count * 17}"
        t = when
        seq = 0

        def row(event: str, data: str, context: str = "", gap_ms: int = 3) -> None:
            nonlocal t, seq
            self._row(t, sid, seq, remote, event, data, context)
            seq += 1
            t += timedelta(milliseconds=gap_ms)

        banner = f"220 {ENDPOINT} Microsoft ESMTP MAIL Service ready at " + when.strftime(
            "%a, %d %b %Y %H:%M:%S +0000"
        )
        caps = "SIZE 37748736 PIPELINING DSN ENHANCEDSTATUSCODES"
        tail = "AUTH NTLM X-EXPS GSSAPI NTLM 8BITMIME BINARYMIME CHUNKING XRDST"
        row("+", "")
        row(
            "*",
            "SMTPSubmit SMTPAcceptAnySender SMTPAcceptAuthoritativeDomainSender "
            "AcceptRoutingHeaders",
            "Set Session Permissions",
        )
        row(">", banner)
        row("<", f"EHLO {helo}", gap_ms=40)
        if not starttls:
            row(">", f"250  {ENDPOINT} Hello [{ip}] {caps} {tail}")
            row("<", "QUIT", gap_ms=30)
            row(">", "221 2.0.0 Service closing transmission channel")
            row("-", "", "Local")
            return
        row(">", f"250  {ENDPOINT} Hello [{ip}] {caps} STARTTLS X-ANONYMOUSTLS {tail}")
        row("<", "STARTTLS", gap_ms=30)
        row(">", "220 2.0.0 SMTP server ready")
        assert cert is not None
        row(
            "*",
            f" {cert.subject} {cert.issuer} {cert.serial} {cert.thumbprint} "
            f"{log_time(cert.not_before)} {log_time(cert.not_after)} {';'.join(cert.sans)}",
            "Sending certificate Subject Issuer name Serial number Thumbprint Not before "
            "Not after Subject alternate names",
        )
        row(
            "*",
            "",
            "TLS protocol SP_PROT_TLS1_2_SERVER negotiation succeeded using bulk "
            "encryption algorithm CALG_AES_256 with strength 256 bits, MAC hash algorithm "
            "CALG_SHA_384 with strength 0 bits and key exchange algorithm CALG_ECDH_EPHEM with "
            "strength 384 bits",
            gap_ms=60,
        )
        if reset_after_tls:
            row("-", "", "Remote(ConnectionReset)")
            return
        row("<", f"EHLO {helo}")
        row("*", "", "Client certificate chain validation status: 'Valid'")
        row(
            "*",
            "",
            "TlsDomainCapabilities='AcceptCloudServicesMail'; Status='Success'; "
            "Domain='mail.protection.outlook.com'",
        )
        row(">", f"250  {ENDPOINT} Hello [{ip}] {caps} {tail}")
        if message is not None:
            self.accepted.append((when, sid, ip, message))
            row(
                "<",
                f"MAIL FROM:<{message.sender}> SIZE={20000 + message.index * 731} BODY=BINARYMIME",
            )
            row("*", f"{sid};{log_time(when)};1", "receiving message")
            row(">", "250 2.1.0 Sender OK")
            row("<", f"RCPT TO:<{message.recipient}>")
            row(">", "250 2.1.5 Recipient OK")
            row("<", f"BDAT {20000 + message.index * 731} LAST", gap_ms=50)
            row(
                ">",
                f"250 2.6.0 {message.message_id} [InternalId={4200000 + message.index}, "
                f"Hostname={self.server}.contoso.local] {20000 + message.index * 731} bytes in "
                "0.051, 382.743 KB/sec Queued mail for delivery",
            )
        row("<", "QUIT")
        row(">", "221 2.0.0 Service closing transmission channel")
        row("-", "", "Local")

    def background(
        self, start: datetime, end: datetime, cert: Cert | None = None, starttls: bool = True
    ) -> None:
        """Internal relay traffic (a scanner) that a real log holds all day long."""
        when = start
        number = 900
        while when <= end:
            note = Message(number, "scanner@contoso.com", "it@contoso.com", "Scan", when, "")
            self.session(
                when, ("192.0.2.44", "scanner.contoso.local"), starttls, cert or CURRENT, note
            )
            when += timedelta(minutes=20)
            number += 1

    def write(self, folder: Path) -> None:
        self.lines.sort(key=lambda item: item[0])
        first = self.lines[0][0] if self.lines else BASE
        path = (
            folder
            / self.server
            / "FrontEnd"
            / "ProtocolLog"
            / "SmtpReceive"
            / f"RECV{first.strftime('%Y%m%d%H')}-1.LOG"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        head = [
            "#Software: Microsoft Exchange Server",
            "#Version: 15.0.0.0",
            "#Log-type: SMTP Receive Protocol Log",
            f"#Date: {log_time(first.replace(minute=0, second=0, microsecond=0))}",
            "#Fields: date-time,connector-id,session-id,sequence-number,local-endpoint,"
            "remote-endpoint,event,data,context",
        ]
        text = "\r\n".join([*head, *(line for _, line in self.lines)]) + "\r\n"
        path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))


def outbound_connector(cmt: bool = False) -> str:
    return f"""
Identity                      : Outbound to {GUID}
Enabled                       : True
UseMXRecord                   : False
Comment                       :
ConnectorType                 : OnPremises
ConnectorSource               : HybridWizard
RecipientDomains              : {{{DOMAIN}}}
SmartHosts                    : {{{ENDPOINT}}}
TlsDomain                     : {ENDPOINT}
TlsSettings                   : DomainValidation
IsTransportRuleScoped         : False
RouteAllMessagesViaOnPremises : {cmt}
CloudServicesMailEnabled      : True
AllAcceptedDomains            : False
SenderRewritingEnabled        : False
TestMode                      : False
IsValidated                   : True
Name                          : Outbound to {GUID}

"""


AUTH = "Tls, Integrated, BasicAuth, BasicAuthRequireTLS, ExchangeServer"
ANY_RANGES = "::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff, 0.0.0.0-255.255.255.255"


def receive_connector(server: str, tls_name: str, capabilities: bool = True) -> str:
    caps = "{mail.protection.outlook.com:AcceptCloudServicesMail}" if capabilities else "{}"
    return f"""
RunspaceId                              : 0c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f
AuthMechanism                           : {AUTH}
Bindings                                : {{[::]:25, 0.0.0.0:25}}
Fqdn                                    : {server}.contoso.local
TlsCertificateName                      : {tls_name}
Enabled                                 : True
PermissionGroups                        : AnonymousUsers, ExchangeServers, ExchangeLegacyServers
ProtocolLoggingLevel                    : Verbose
RemoteIPRanges                          : {{{ANY_RANGES}}}
RequireTLS                              : False
TlsDomainCapabilities                   : {caps}
Server                                  : {server}
TransportRole                           : FrontendTransport
Name                                    : Default Frontend {server}
Identity                                : {server}\\Default Frontend {server}

"""


def certificate(cert: Cert, server: str, services: str = "IMAP, POP, IIS, SMTP") -> str:
    def fl(when: datetime) -> str:
        return us_time(when)

    status = "Valid" if cert.not_after > BASE else "DateInvalid"
    self_signed = cert.subject == cert.issuer
    return f"""
CertificateDomains : {{{", ".join(cert.sans)}}}
HasPrivateKey      : True
IsSelfSigned       : {self_signed}
Issuer             : {cert.issuer}
NotAfter           : {fl(cert.not_after)}
NotBefore          : {fl(cert.not_before)}
PublicKeySize      : 2048
RootCAType         : {"Registry" if self_signed else "ThirdParty"}
SerialNumber       : {cert.serial}
Services           : {services}
Status             : {status}
Subject            : {cert.subject}
Thumbprint         : {cert.thumbprint}
Identity           : {server}.contoso.local\\{cert.thumbprint}

"""


def hybrid_configuration(
    servers: str = "EX01, EX02", cmt: bool = False, tls_name: str = f"<I>{R11}<S>CN={ENDPOINT}"
) -> str:
    features = (
        "FreeBusy, MoveMailbox, Mailtips, MessageTracking, OwaRedirection, OnlineArchive, "
        "SecureMail"
    )
    if cmt:
        features += ", CentralizedTransport"
    return f"""
ClientAccessServers       : {{}}
EdgeTransportServers      : {{}}
ReceivingTransportServers : {{{servers}}}
SendingTransportServers   : {{{servers}}}
OnPremisesSmartHost       : {ENDPOINT}
Domains                   : {{{DOMAIN}}}
Features                  : {{{features}}}
ExternalIPAddresses       : {{}}
TlsCertificateName        : {tls_name}
ServiceInstance           : 0
Name                      : Hybrid Configuration
Identity                  : Hybrid Configuration

"""


def send_connector(tls_name: str) -> str:
    return f"""
AddressSpaces                : {{smtp:contoso.mail.onmicrosoft.com;1}}
CloudServicesMailEnabled     : True
ConnectorType                : Default
DNSRoutingEnabled            : True
Enabled                      : True
Fqdn                         : {ENDPOINT}
Name                         : Outbound to Office 365 - {GUID}
Port                         : 25
RequireTLS                   : True
SmartHosts                   : {{}}
SourceTransportServers       : {{EX01, EX02}}
TlsAuthLevel                 : DomainValidation
TlsCertificateName           : {tls_name}
TlsDomain                    : mail.protection.outlook.com
Identity                     : Outbound to Office 365 - {GUID}

"""


def queue_list(server: str, count: int, error: str, last: datetime) -> str:
    """Get-Queue | Format-List from an en-US shell: the on-premises side of the same outage."""
    first = last - timedelta(hours=1, minutes=50)
    return f"""[PS] C:\\Windows\\system32>Get-Queue -Server {server} | Format-List


RunspaceId                       : 0c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f
DeliveryType                     : SmtpDeliveryToExo
NextHopDomain                    : contoso.mail.onmicrosoft.com
TlsDomain                        : mail.protection.outlook.com
NextHopConnector                 : 7d1e2f3a-4b5c-4d6e-8f7a-9b0c1d2e3f4a
Status                           : Retry
MessageCount                     : {count}
LastError                        : {error}
RetryCount                       : 11
LastRetryTime                    : {us_time(last)}
NextRetryTime                    : {us_time(last + timedelta(minutes=10))}
FirstRetryTime                   : {us_time(first)}
DeferredMessageCount             : 0
LockedMessageCount               : 0
RiskLevel                        : Normal
OutboundIPPool                   : 0
NextHopCategory                  : External
QueueIdentity                    : {server}\\21
Identity                         : {server}\\21
IsValid                          : True
ObjectState                      : New

RunspaceId                       : 0c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f
DeliveryType                     : Undefined
NextHopDomain                    : Submission
TlsDomain                        :
NextHopConnector                 : 00000000-0000-0000-0000-000000000000
Status                           : Ready
MessageCount                     : 0
LastError                        :
RetryCount                       : 0
QueueIdentity                    : {server}\\Submission
Identity                         : {server}\\Submission
IsValid                          : True
ObjectState                      : New

"""


TRACKING_FIELDS = (
    "date-time,client-ip,client-hostname,server-ip,server-hostname,source-context,connector-id,"
    "source,event-id,internal-message-id,message-id,network-message-id,recipient-address,"
    "recipient-status,total-bytes,recipient-count,related-recipient-address,reference,"
    "message-subject,sender-address,return-path,message-info,directionality,tenant-id,"
    "original-client-ip,original-server-ip,custom-data,transport-traffic-type,log-id,"
    "schema-version"
)


def write_tracking(folder: Path, server: str, rows: list[list[str]], first: datetime) -> None:
    path = folder / server / "MessageTracking" / f"MSGTRK{first.strftime('%Y%m%d%H')}-1.LOG"
    head = [
        "#Software: Microsoft Exchange Server",
        "#Version: 15.02.1544.004",
        "#Log-type: Message Tracking Log",
        f"#Date: {log_time(first)}",
        f"#Fields: {TRACKING_FIELDS}",
    ]
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\r\n".join(head) + "\r\n" + buffer.getvalue()
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.replace("\n", "\r\n").encode("utf-8"))


SENDERS = [
    "ana.ruiz@fabrikam.com",
    "billing@adatum.com",
    "noreply@woodgrovebank.com",
    "hr@litware.com",
    "orders@wingtiptoys.com",
    "support@proseware.com",
]
RECIPIENTS = ["sales@contoso.com", "ap@contoso.com", "it@contoso.com", "jobs@contoso.com"]


def inbound_messages(count: int, start: datetime, spacing_min: int = 7) -> list[Message]:
    return [
        Message(
            i,
            SENDERS[i % len(SENDERS)],
            RECIPIENTS[i % len(RECIPIENTS)],
            f"Order {4400 + i}",
            start + timedelta(minutes=spacing_min * i),
            "Pending",
        )
        for i in range(count)
    ]


def received(m: Message) -> tuple[datetime, str, str]:
    return (
        m.received,
        "Receive",
        "Message received by: DB9PR04MB7301.eurprd04.prod.outlook.com using TLS1.3 with AES256",
    )


def sent(m: Message, when: datetime, ip: str = PUBLIC_IP) -> tuple[datetime, str, str]:
    m.status, m.to_ip = "Delivered", ip
    return (when, "Send external", f"Message sent to {ENDPOINT} at {ip} using TLS1.2 with AES256")


# ------------------------------------------------------------------------------ the stories


def story_cert_renewed_no_hcw(folder: Path) -> None:
    """New certificate (new issuer R11) installed, old one removed, HCW not re-run."""
    messages = inbound_messages(8, BASE + timedelta(minutes=5))
    ex01, ex02 = ReceiveLog("EX01", "10.0.0.11"), ReceiveLog("EX02", "10.0.0.12")
    led = (
        "450 4.4.317 Cannot connect to remote server "
        "[Message=451 5.7.3 STARTTLS is required to send mail]"
    )
    for m in messages:
        m.events.append(received(m))
        for attempt in range(3):
            when = m.received + timedelta(minutes=2 + attempt * 25)
            m.events.append(
                (
                    when,
                    "Defer",
                    defer_detail(
                        led,
                        PUBLIC_IP,
                        when,
                        m.index + attempt,
                        "451 5.7.3 STARTTLS is required to send mail",
                    ),
                )
            )
            log = ex01 if (m.index + attempt) % 2 == 0 else ex02
            log.session(when - timedelta(seconds=1), EOP_SOURCES[(m.index + attempt) % 5], False)
    write_trace(folder, messages)
    for log in (ex01, ex02):
        log.background(BASE - timedelta(minutes=10), BASE + timedelta(hours=3), starttls=False)
        log.write(folder)
    config = folder / "config"
    old_name = f"<I>{R3}<S>CN={ENDPOINT}"
    write_text(config / "Get-OutboundConnector.txt", outbound_connector())
    write_text(
        config / "Get-ReceiveConnector.txt",
        receive_connector("EX01", old_name) + receive_connector("EX02", old_name),
    )
    write_text(
        config / "Get-ExchangeCertificate.txt",
        certificate(CURRENT, "EX01") + certificate(CURRENT, "EX02"),
    )
    write_text(config / "Get-HybridConfiguration.txt", hybrid_configuration(tls_name=old_name))
    write_text(config / "Get-SendConnector.txt", send_connector(old_name))
    error = (
        "454 4.7.5 The certificate specified in TlsCertificateName of the SendConnector could "
        "not be found."
    )
    write_text(
        folder / "EX01" / "Get-Queue.txt",
        queue_list("EX01", 14, error, BASE + timedelta(hours=1, minutes=52)),
    )


def story_subject_mismatch_one_server(folder: Path) -> None:
    """EX02 was added later; its Default Frontend has no TlsCertificateName: self-signed cert."""
    messages = inbound_messages(10, BASE + timedelta(minutes=3), 6)
    ex01, ex02 = ReceiveLog("EX01", "10.0.0.11"), ReceiveLog("EX02", "10.0.0.12")
    led = (
        "450 4.4.317 Cannot connect to remote server [Message=SubjectMismatch Expected Subject: "
        f"{ENDPOINT}. Presented Subject: CN=EX02. Thumbprint: {EX02_SELF_THUMB[:32]}.]"
    )
    for m in messages:
        m.events.append(received(m))
        first = m.received + timedelta(minutes=1)
        if m.index % 2 == 0:  # lands on EX02 first, then on EX01
            m.events.append(
                (first, "Defer", defer_detail(led, PUBLIC_IP, first, m.index, "SubjectMismatch"))
            )
            ex02.session(
                first - timedelta(seconds=1),
                EOP_SOURCES[m.index % 5],
                True,
                EX02_SELF,
                reset_after_tls=True,
            )
            retry = first + timedelta(minutes=16)
            m.events.append(sent(m, retry))
            ex01.session(
                retry - timedelta(seconds=1), EOP_SOURCES[(m.index + 1) % 5], True, CURRENT, m
            )
        else:
            m.events.append(sent(m, first))
            ex01.session(first - timedelta(seconds=1), EOP_SOURCES[m.index % 5], True, CURRENT, m)
    tracked = []
    for when, sid, ip, m in ex01.accepted:
        if m.index >= 900:  # background relay traffic is not part of the trace
            continue
        tracked.append(
            [
                log_time(when + timedelta(milliseconds=300)),
                ip,
                ip,
                "10.0.0.11",
                "EX01",
                f"{sid};{log_time(when)};1",
                "EX01\\Default Frontend EX01",
                "SMTP",
                "RECEIVE",
                str(4200000 + m.index),
                m.message_id,
                f"9b1c{m.index:04d}-2d3e-4f5a-8b6c-7d8e9f0a1b2c",
                m.recipient,
                "",
                str(20000 + m.index * 731),
                "1",
                "",
                "",
                m.subject,
                m.sender,
                m.sender,
                "",
                "Incoming",
                "",
                ip,
                "10.0.0.11",
                "",
                "Email",
                "",
                "15.02.1544.004",
            ]
        )
    tracked.sort(key=lambda row: row[0])
    write_tracking(folder, "EX01", tracked, BASE)
    write_trace(folder, messages)
    ex01.background(BASE - timedelta(minutes=10), BASE + timedelta(hours=3))
    ex02.background(BASE - timedelta(minutes=10), BASE + timedelta(hours=3), EX02_SELF)
    for log in (ex01, ex02):
        log.write(folder)
    config = folder / "config"
    name = f"<I>{R11}<S>CN={ENDPOINT}"
    write_text(config / "Get-OutboundConnector.txt", outbound_connector())
    write_text(
        config / "Get-ReceiveConnector.txt",
        receive_connector("EX01", name) + receive_connector("EX02", "", capabilities=False),
    )
    write_text(
        config / "Get-ExchangeCertificate.txt",
        certificate(CURRENT, "EX01")
        + certificate(CURRENT, "EX02")
        + certificate(EX02_SELF, "EX02", "IMAP, POP, SMTP"),
    )
    write_text(config / "Get-HybridConfiguration.txt", hybrid_configuration())


def story_expired_certificate(folder: Path) -> None:
    """The certificate expired on 2026-11-20; nobody renewed it."""
    messages = inbound_messages(6, BASE + timedelta(minutes=4), 9)
    ex01 = ReceiveLog("EX01", "10.0.0.11")
    led = (
        "450 4.4.317 Cannot connect to remote server [Message=CertificateExpired Expected "
        f"Subject: {ENDPOINT}. Presented Subject: CN={ENDPOINT}. Thumbprint: {OLD_THUMB}.]"
    )
    for m in messages:
        m.events.append(received(m))
        for attempt in range(2):
            when = m.received + timedelta(minutes=1 + attempt * 30)
            m.events.append(
                (
                    when,
                    "Defer",
                    defer_detail(led, PUBLIC_IP, when, m.index + attempt, "CertificateExpired"),
                )
            )
            ex01.session(
                when - timedelta(seconds=1),
                EOP_SOURCES[(m.index + attempt) % 5],
                True,
                OLD,
                reset_after_tls=True,
            )
    write_trace(folder, messages)
    ex01.background(BASE - timedelta(minutes=10), BASE + timedelta(hours=3), OLD)
    ex01.write(folder)
    config = folder / "config"
    name = f"<I>{R3}<S>CN={ENDPOINT}"
    write_text(config / "Get-OutboundConnector.txt", outbound_connector())
    write_text(config / "Get-ReceiveConnector.txt", receive_connector("EX01", name))
    write_text(config / "Get-ExchangeCertificate.txt", certificate(OLD, "EX01"))
    write_text(config / "Get-HybridConfiguration.txt", hybrid_configuration("EX01", tls_name=name))


ASA_CONFIG = """: Saved
:
ASA Version 9.16(4)
!
hostname CONTOSO-FW01
!
interface GigabitEthernet0/0
 nameif outside
 security-level 0
 ip address 203.0.113.2 255.255.255.0
!
interface GigabitEthernet0/1
 nameif inside
 security-level 100
 ip address 10.0.0.1 255.255.255.0
!
object network EX-SMTP
 host 10.0.0.11
 nat (inside,outside) static 203.0.113.25 service tcp smtp smtp
object-group network EOP-SMTP
 network-object 40.92.0.0 255.254.0.0
 network-object 40.107.0.0 255.255.0.0
 network-object 52.100.0.0 255.252.0.0
 network-object 104.47.0.0 255.255.128.0
access-list OUTSIDE_IN extended permit tcp object-group EOP-SMTP object EX-SMTP eq smtp
access-list OUTSIDE_IN extended deny ip any any log
access-group OUTSIDE_IN in interface outside
!
route outside 0.0.0.0 0.0.0.0 203.0.113.1 1
: end
"""


def story_public_ip_changed(folder: Path) -> None:
    """The site moved to a new ISP (203.0.113.25); the A record still says 198.51.100.77."""
    messages = inbound_messages(7, BASE + timedelta(minutes=2), 8)
    led = "450 4.4.315 Connection timed out [Message=Socket error code 10060]"
    for m in messages:
        m.events.append(received(m))
        for attempt in range(3):
            when = m.received + timedelta(minutes=1 + attempt * 20)
            m.events.append(
                (
                    when,
                    "Defer",
                    defer_detail(led, OLD_IP, when, m.index + attempt, "Socket error code 10060"),
                )
            )
    write_trace(folder, messages)
    ex01 = ReceiveLog("EX01", "10.0.0.11")
    ex01.background(BASE - timedelta(minutes=10), BASE + timedelta(hours=3))
    ex01.write(folder)
    config = folder / "config"
    name = f"<I>{R11}<S>CN={ENDPOINT}"
    write_text(config / "Get-OutboundConnector.txt", outbound_connector())
    write_text(config / "Get-ReceiveConnector.txt", receive_connector("EX01", name))
    write_text(config / "Get-ExchangeCertificate.txt", certificate(CURRENT, "EX01"))
    write_text(folder / "firewall" / "contoso-fw01.cfg", ASA_CONFIG)


def story_cmt_bypassed(folder: Path) -> None:
    """CMT is on, but a Partner connector scoped by a rule sends cloud mail out directly."""
    messages: list[Message] = []
    outside = ["ana.ruiz@fabrikam.com", "lee@adatum.com", "kim@litware.com", "sam@proseware.com"]
    mx = {
        "fabrikam.com": ("fabrikam-com.mail.protection.outlook.com", "198.51.100.40"),
        "adatum.com": ("mx1.adatum.com", "198.51.100.41"),
        "litware.com": ("mail.litware.com", "198.51.100.42"),
        "proseware.com": ("mx.proseware.com", "198.51.100.43"),
    }
    for i in range(12):
        recipient = outside[i % len(outside)]
        m = Message(
            i,
            f"user{i}@{DOMAIN}",
            recipient,
            f"Quote {700 + i}",
            BASE + timedelta(minutes=5 * i),
            "Delivered",
        )
        m.events.append(
            (m.received, "Receive", "Message received by: DB9PR04MB7301.eurprd04.prod.outlook.com")
        )
        send_at = m.received + timedelta(seconds=4)
        if i % 4 == 3:  # a quarter still goes through on-premises
            m.to_ip = PUBLIC_IP
            m.events.append(
                (
                    send_at,
                    "Send external",
                    f"Message sent to {ENDPOINT} at {PUBLIC_IP} using TLS1.2 with AES256",
                )
            )
        else:
            host, ip = mx[recipient.split("@")[1]]
            m.to_ip = ip
            m.events.append(
                (
                    send_at,
                    "Send external",
                    f"Message sent to {host} at {ip} using TLS1.2 with AES256",
                )
            )
        messages.append(m)
    write_trace(folder, messages)
    config = folder / "config"
    write_text(config / "Get-OutboundConnector.txt", outbound_connector(cmt=True))
    write_text(config / "Get-HybridConfiguration.txt", hybrid_configuration(cmt=True))
    write_text(
        config / "Get-ReceiveConnector.txt",
        receive_connector("EX01", f"<I>{R11}<S>CN={ENDPOINT}")
        + receive_connector("EX02", f"<I>{R11}<S>CN={ENDPOINT}"),
    )
    write_text(
        config / "Get-ExchangeCertificate.txt",
        certificate(CURRENT, "EX01") + certificate(CURRENT, "EX02"),
    )


def healthy_config(folder: Path) -> None:
    """Connector and certificate exports with nothing wrong (added to the firewall story)."""
    name = f"<I>{R11}<S>CN=smtp.tailspintoys.ca"
    text = (
        outbound_connector()
        .replace(ENDPOINT, "smtp.tailspintoys.ca")
        .replace("{contoso.com}", "{tailspintoys.ca}")
    )
    write_text(folder / "Get-OutboundConnector.txt", text)
    write_text(
        folder / "Get-ReceiveConnector.txt",
        receive_connector("TSP-EX01", name) + receive_connector("TSP-EX02", name),
    )
    cert = Cert(
        "CN=smtp.tailspintoys.ca",
        R11,
        CURRENT_THUMB,
        CURRENT.not_before,
        CURRENT.not_after,
        ("smtp.tailspintoys.ca", "mail.tailspintoys.ca"),
    )
    write_text(
        folder / "Get-ExchangeCertificate.txt",
        certificate(cert, "TSP-EX01") + certificate(cert, "TSP-EX02"),
    )


STORIES = {
    "cert_renewed_no_hcw": story_cert_renewed_no_hcw,
    "subject_mismatch_one_server": story_subject_mismatch_one_server,
    "expired_certificate": story_expired_certificate,
    "public_ip_changed": story_public_ip_changed,
    "cmt_bypassed": story_cmt_bypassed,
    "tailspin_healthy_config": healthy_config,
}


def main() -> None:
    for name, build in STORIES.items():
        folder = OUT / name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        build(folder)
        print(f"wrote {folder}")


if __name__ == "__main__":
    main()
