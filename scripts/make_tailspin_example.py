# ruff: noqa: E501  (the ASA configuration below is kept exactly as the device prints it)
"""Write the bundled Tailspin Toys evidence set (src/mailflow_doctor/examples/tailspin/).

The story (after R. Milne's 2018 post): Tailspin Toys runs hybrid Exchange behind a Cisco ASA.
A change to the ACL's EOP object-group left out 40.107.0.0/16 and 52.102.0.0/15 (and kept a
stale 65.55.88.0/24), so some Exchange Online deliveries to smtp.tailspintoys.ca
(203.0.113.25, NAT to 10.0.0.25) are refused with 450 4.4.316 while others deliver.

The files are deterministic: run this script again and they come out byte for byte the same.
Formats follow ../shared/research/evidence-formats.md and endpoints-and-firewalls.md.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "mailflow_doctor" / "examples" / "tailspin"
DAY = datetime(2026, 11, 27, 21, 0, 0, tzinfo=UTC)
PUBLIC_IP = "203.0.113.25"
INSIDE_IP = "10.0.0.25"
FQDN = "smtp.tailspintoys.ca"
CONNECTOR = "Outbound to 5e2b1a7c-9d34-4f0e-a6b1-2c8d7e3f4a10"

# EOP egress addresses. Permitted by the ASA object-group / missing from it.
PERMITTED = ["40.92.19.46", "104.47.18.105", "52.100.163.12", "40.93.7.21", "52.101.58.70"]
PERMITTED += ["104.47.57.33", "52.100.31.204", "40.92.64.118"]
BLOCKED = ["40.107.22.45", "52.102.11.9", "40.107.94.118", "52.103.33.140", "40.107.243.61"]
BLOCKED += ["52.102.200.17", "40.107.7.88"]
EHLO = {
    "40.92": "NAM12-BN8-obe.outbound.protection.outlook.com",
    "40.93": "NAM11-CO1-obe.outbound.protection.outlook.com",
    "104.": "NAM04-MW2-obe.outbound.protection.outlook.com",
    "52.1": "CAN01-YT3-obe.outbound.protection.outlook.com",
}
EOP_SERVERS = [
    "YT3PEPF0000C6A1.CANPRD01.PROD.OUTLOOK.COM",
    "BN8NAM12FT045.eop-nam12.prod.protection.outlook.com",
    "CO1NAM11FT021.eop-nam11.prod.protection.outlook.com",
    "MW2NAM04FT013.eop-nam04.prod.protection.outlook.com",
]


@dataclass
class Attempt:
    minute: float  # minutes after 21:00 UTC
    source: str
    ok: bool


@dataclass
class Message:
    received: float
    sender: str
    recipient: str
    subject: str
    size: int
    attempts: list[Attempt] = field(default_factory=list)
    from_ip: str = ""

    @property
    def delivered(self) -> bool:
        return any(a.ok for a in self.attempts)


def at(minutes: float) -> datetime:
    return DAY + timedelta(minutes=minutes)


def us_time(when: datetime) -> str:
    """en-US culture: M/d/yyyy h:mm:ss tt, as Export-Csv writes it on an en-US machine."""
    hour = when.hour % 12 or 12
    ampm = "AM" if when.hour < 12 else "PM"
    return f"{when.month}/{when.day}/{when.year} {hour}:{when.minute:02d}:{when.second:02d} {ampm}"


def iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


MESSAGES = [
    Message(
        4.2,
        "olivia.martin@tailspintoys.ca",
        "r.kumar@tailspintoys.ca",
        "Q4 toy safety recall - draft notice",
        48211,
        [Attempt(4.6, PERMITTED[0], True)],
    ),
    Message(
        9.8,
        "orders@wingtiptoys.com",
        "purchasing@tailspintoys.ca",
        "PO 77120 confirmation",
        23840,
        [
            Attempt(10.1, BLOCKED[0], False),
            Attempt(26.4, BLOCKED[2], False),
            Attempt(43.0, PERMITTED[1], True),
        ],
        "198.51.100.40",
    ),
    Message(
        14.5,
        "dana.wu@tailspintoys.ca",
        "warehouse@tailspintoys.ca",
        "Pallet count for Monday",
        9120,
        [Attempt(14.9, PERMITTED[2], True)],
    ),
    Message(
        18.3,
        "noreply@fabrikam.example",
        "ap@tailspintoys.ca",
        "Invoice INV-20931",
        131072,
        [
            Attempt(18.7, BLOCKED[1], False),
            Attempt(34.9, BLOCKED[4], False),
            Attempt(51.2, BLOCKED[3], False),
            Attempt(82.6, BLOCKED[5], False),
            Attempt(113.8, BLOCKED[6], False),
        ],
        "198.51.100.77",
    ),
    Message(
        22.0,
        "olivia.martin@tailspintoys.ca",
        "board@tailspintoys.ca",
        "Board pack - December",
        2209113,
        [Attempt(22.5, PERMITTED[3], True)],
    ),
    Message(
        27.1,
        "sam.lee@tailspintoys.ca",
        "it-helpdesk@tailspintoys.ca",
        "Printer on floor 3 again",
        6533,
        [
            Attempt(27.4, BLOCKED[2], False),
            Attempt(44.1, BLOCKED[0], False),
            Attempt(60.7, BLOCKED[6], False),
            Attempt(91.3, BLOCKED[1], False),
        ],
    ),
    Message(
        33.6,
        "dana.wu@tailspintoys.ca",
        "r.kumar@tailspintoys.ca",
        "RE: Q4 toy safety recall - draft notice",
        51873,
        [Attempt(33.9, PERMITTED[4], True)],
    ),
    Message(
        38.2,
        "newsletter@contoso.example",
        "marketing@tailspintoys.ca",
        "Holiday retail trends 2026",
        88410,
        [Attempt(38.5, BLOCKED[3], False), Attempt(54.8, PERMITTED[5], True)],
        "192.0.2.61",
    ),
    Message(
        47.9,
        "r.kumar@tailspintoys.ca",
        "legal@tailspintoys.ca",
        "Recall wording for counsel",
        17402,
        [Attempt(48.3, PERMITTED[6], True)],
    ),
    Message(
        56.4,
        "sam.lee@tailspintoys.ca",
        "facilities@tailspintoys.ca",
        "Loading dock door",
        4410,
        [
            Attempt(56.8, BLOCKED[4], False),
            Attempt(73.1, BLOCKED[5], False),
            Attempt(104.6, BLOCKED[2], False),
            Attempt(135.9, BLOCKED[0], False),
        ],
    ),
    Message(
        64.0,
        "olivia.martin@tailspintoys.ca",
        "payroll@tailspintoys.ca",
        "Overtime approvals",
        12077,
        [Attempt(64.3, PERMITTED[7], True)],
    ),
    Message(
        71.5,
        "orders@wingtiptoys.com",
        "purchasing@tailspintoys.ca",
        "PO 77121 confirmation",
        23911,
        [
            Attempt(71.8, BLOCKED[6], False),
            Attempt(88.2, BLOCKED[3], False),
            Attempt(119.4, BLOCKED[1], False),
        ],
        "198.51.100.40",
    ),
    Message(
        79.2,
        "dana.wu@tailspintoys.ca",
        "warehouse@tailspintoys.ca",
        "RE: Pallet count for Monday",
        10240,
        [Attempt(79.5, PERMITTED[0], True)],
    ),
    Message(
        95.7,
        "support@adventure-works.example",
        "it-helpdesk@tailspintoys.ca",
        "Case 55812 update",
        15533,
        [Attempt(96.0, PERMITTED[2], True)],
        "203.0.113.140",
    ),
    Message(
        101.3,
        "sam.lee@tailspintoys.ca",
        "r.kumar@tailspintoys.ca",
        "Lunch Friday?",
        3021,
        [
            Attempt(101.6, BLOCKED[4], False),
            Attempt(117.9, BLOCKED[2], False),
            Attempt(149.2, PERMITTED[3], True),
        ],
    ),
    Message(
        110.8,
        "olivia.martin@tailspintoys.ca",
        "all-staff@tailspintoys.ca",
        "Office closed on Monday",
        7704,
        [Attempt(111.1, PERMITTED[1], True)],
    ),
    Message(
        126.2,
        "noreply@fabrikam.example",
        "ap@tailspintoys.ca",
        "Invoice INV-20944",
        129990,
        [Attempt(126.5, BLOCKED[5], False), Attempt(142.8, BLOCKED[0], False)],
        "198.51.100.77",
    ),
    Message(
        139.4,
        "dana.wu@tailspintoys.ca",
        "legal@tailspintoys.ca",
        "Signed NDA - Wingtip",
        301554,
        [Attempt(139.7, PERMITTED[4], True)],
    ),
]
EXPORTED_AT = at(150.0)


def message_id(index: int) -> str:
    host = f"YT3PR01MB{6100 + index}"
    return f"<{host}{index:02d}A4C2E0D{index:02d}F1@{host}.CANPRD01.PROD.OUTLOOK.COM>"


def trace_id(index: int) -> str:
    return f"7c1e{index:04x}-5b2a-4d8e-9f61-0a3b{index:08x}"


def ehlo_for(ip: str) -> str:
    for prefix, name in EHLO.items():
        if ip.startswith(prefix):
            return name
    return "mail.protection.outlook.com"


def csv_text(header: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def message_trace() -> str:
    header = [
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
    ]
    rows = []
    for index, msg in enumerate(sorted(MESSAGES, key=lambda m: -m.received)):
        rows.append(
            [
                "outlook.office365.com",
                "3d0f4c2a-8b71-4e55-9a0c-6f2e1b7d9a44",
                "False",
                "tailspintoys.onmicrosoft.com",
                message_id(MESSAGES.index(msg)),
                us_time(at(msg.received)),
                msg.sender,
                msg.recipient,
                msg.subject,
                "Delivered" if msg.delivered else "Pending",
                PUBLIC_IP,
                msg.from_ip,
                str(msg.size),
                trace_id(MESSAGES.index(msg)),
                us_time(at(-60)),
                us_time(EXPORTED_AT),
                str(index),
            ]
        )
    return csv_text(header, rows)


def defer_detail(attempt: Attempt, retry: int) -> str:
    when = at(attempt.minute)
    server = EOP_SERVERS[retry % len(EOP_SERVERS)]
    session = f"08DE{int(attempt.minute * 1000):012X}"
    led = (
        f"450 4.4.316 Connection refused [Message=Socket error code 10061] "
        f"[LastAttemptedServerName={FQDN}] [LastAttemptedIP={PUBLIC_IP}:25] "
        f"[{server} {iso(when)} {session}]"
    )
    return (
        f"Reason: [{{LED={led}}};{{MSG=}};{{FQDN={FQDN}}};{{IP={PUBLIC_IP}}};"
        f"{{LRT={us_time(when)}}}]. OutboundProxyTargetIP: {PUBLIC_IP}. "
        f"OutboundProxyTargetHostName: {FQDN}"
    )


def message_trace_detail() -> str:
    header = [
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
    ]
    rows = []
    for index, msg in enumerate(MESSAGES):
        common = [
            "outlook.office365.com",
            "3d0f4c2a-8b71-4e55-9a0c-6f2e1b7d9a44",
            "False",
            "tailspintoys.onmicrosoft.com",
            message_id(index),
            trace_id(index),
            msg.recipient,
            msg.sender,
            us_time(at(-60)),
            us_time(EXPORTED_AT),
        ]
        if msg.from_ip:
            receive = (
                f"Message received by: YT3PR01MB{6100 + index}.CANPRD01.PROD.OUTLOOK.COM "
                "using TLS1.2 with AES256"
            )
        else:
            receive = f"Message received by: YT3PR01MB{6100 + index}.CANPRD01.PROD.OUTLOOK.COM"
        rows.append(
            [
                *common,
                us_time(at(msg.received)),
                "Receive",
                "",
                receive,
                '<root><MEP Name="ReceiveConnector" String="Default"/></root>',
            ]
        )
        for retry, attempt in enumerate(msg.attempts):
            if attempt.ok:
                rows.append(
                    [
                        *common,
                        us_time(at(attempt.minute)),
                        "Send external",
                        "",
                        f"Message sent to {FQDN} at {PUBLIC_IP} using TLS1.2 with AES256",
                        f'<root><MEP Name="Connector" String="{CONNECTOR}"/></root>',
                    ]
                )
            else:
                rows.append(
                    [
                        *common,
                        us_time(at(attempt.minute)),
                        "Defer",
                        "",
                        defer_detail(attempt, retry + index),
                        f'<root><MEP Name="Connector" String="{CONNECTOR}"/>'
                        f'<MEP Name="RetryCount" Integer="{retry + 1}"/></root>',
                    ]
                )
    return csv_text(header, rows)


ASA_CONFIG = """\
: Saved

:
: Serial Number: JAD21410ABC
: Hardware:   ASA5516, 8192 MB RAM, CPU Atom C2000 series 2416 MHz, 1 CPU (8 cores)
:
ASA Version 9.12(4)47
!
hostname tsp-fw01
domain-name tailspintoys.ca
enable password ***** pbkdf2
names
no mac-address auto

!
interface GigabitEthernet1/1
 description Uplink to ISP (static block 203.0.113.0/24)
 nameif outside
 security-level 0
 ip address 203.0.113.2 255.255.255.0
!
interface GigabitEthernet1/2
 description Server VLAN
 nameif inside
 security-level 100
 ip address 10.0.0.1 255.255.255.0
!
interface Management1/1
 management-only
 nameif management
 security-level 100
 ip address 192.168.1.1 255.255.255.0
!
ftp mode passive
clock timezone UTC 0
dns domain-lookup inside
dns server-group DefaultDNS
 name-server 10.0.0.10
 domain-name tailspintoys.ca
same-security-traffic permit intra-interface
object network EXCH-SMTP-VIP
 host 10.0.0.25
 description KEMP VIP in front of TSP-EX01 and TSP-EX02 (FrontEnd, TCP 25)
object network EXCH-HTTPS-VIP
 host 10.0.0.26
 description KEMP VIP for OWA / EWS / Autodiscover
object network EOP-40.92
 subnet 40.92.0.0 255.254.0.0
object network EOP-52.100
 subnet 52.100.0.0 255.254.0.0
object network EOP-104.47
 subnet 104.47.0.0 255.255.128.0
object network EOP-LEGACY-65.55.88
 subnet 65.55.88.0 255.255.255.0
 description old EOP range from the 2015 list
object-group network EOP-SMTP-SOURCES
 description Exchange Online Protection senders (rebuilt CHG0042, 2026-11-20)
 network-object object EOP-40.92
 network-object object EOP-52.100
 network-object object EOP-104.47
 network-object object EOP-LEGACY-65.55.88
object-group service SMTP-IN tcp
 port-object eq smtp
access-list OUTSIDE_IN remark Exchange Online -> on-premises hybrid SMTP (TLS)
access-list OUTSIDE_IN extended permit tcp object-group EOP-SMTP-SOURCES object EXCH-SMTP-VIP object-group SMTP-IN
access-list OUTSIDE_IN remark Published Exchange web services
access-list OUTSIDE_IN extended permit tcp any4 object EXCH-HTTPS-VIP eq https
access-list OUTSIDE_IN remark everything else is refused
access-list OUTSIDE_IN extended deny ip any any
access-list INSIDE_OUT extended permit ip 10.0.0.0 255.255.255.0 any4
pager lines 24
logging enable
logging timestamp
logging buffered informational
logging trap informational
logging host inside 10.0.0.40
mtu outside 1500
mtu inside 1500
mtu management 1500
no failover
icmp unreachable rate-limit 1 burst-size 1
no asdm history enable
arp timeout 14400
no arp permit-nonconnected
!
object network EXCH-SMTP-VIP
 nat (inside,outside) static 203.0.113.25 service tcp smtp smtp
object network EXCH-HTTPS-VIP
 nat (inside,outside) static 203.0.113.26 service tcp https https
!
nat (inside,outside) after-auto source dynamic any interface
access-group OUTSIDE_IN in interface outside
access-group INSIDE_OUT in interface inside
route outside 0.0.0.0 0.0.0.0 203.0.113.1 1
timeout xlate 3:00:00
timeout conn 1:00:00 half-closed 0:10:00 udp 0:02:00 sctp 0:02:00 icmp 0:00:02
user-identity default-domain LOCAL
aaa authentication ssh console LOCAL
service resetinbound interface outside
ssh 192.168.1.0 255.255.255.0 management
ssh version 2
threat-detection basic-threat
threat-detection statistics access-list
!
class-map inspection_default
 match default-inspection-traffic
!
policy-map global_policy
 class inspection_default
  inspect dns preset_dns_map
  inspect ftp
  inspect icmp
!
service-policy global_policy global
prompt hostname context
: end
"""


def asa_syslog() -> str:
    """%ASA-4-106023 denies for every refused attempt, plus scanner noise and a few builds."""
    lines: list[tuple[datetime, str]] = []
    port = 41000
    conn = 88410231
    for msg in MESSAGES:
        for attempt in msg.attempts:
            when = at(attempt.minute) - timedelta(seconds=1)
            port = (port * 7 + 113) % 24000 + 40000
            if attempt.ok:
                conn += 17
                lines.append(
                    (
                        when,
                        (
                            f"%ASA-6-302013: Built inbound TCP connection {conn} for "
                            f"outside:{attempt.source}/{port} ({attempt.source}/{port}) to "
                            f"inside:{INSIDE_IP}/25 ({PUBLIC_IP}/25)"
                        ),
                    )
                )
                continue
            # resetinbound answers the SYN with a RST; the sender's stack tries twice more.
            for retry in range(3 if attempt.minute % 2 < 1 else 2):
                lines.append(
                    (
                        when + timedelta(milliseconds=500 * retry),
                        (
                            f"%ASA-4-106023: Deny tcp src outside:{attempt.source}/{port} "
                            f'dst inside:{INSIDE_IP}/25 by access-group "OUTSIDE_IN" [0x0, 0x0]'
                        ),
                    )
                )
    # Internet noise on port 25 from unpublished sources (scanners), and other ports.
    for minute, src, dport in [
        (12.0, "198.51.100.201", 25),
        (58.3, "192.0.2.199", 25),
        (77.7, "198.51.100.9", 3389),
        (121.0, "192.0.2.77", 445),
    ]:
        port = (port * 7 + 113) % 24000 + 40000
        lines.append(
            (
                at(minute),
                (
                    f"%ASA-4-106023: Deny tcp src outside:{src}/{port} "
                    f'dst inside:{INSIDE_IP}/{dport} by access-group "OUTSIDE_IN" [0x0, 0x0]'
                ),
            )
        )
    lines.sort(key=lambda item: item[0])
    out = []
    for when, text in lines:
        stamp = when.strftime("%b %d %Y %H:%M:%S")
        severity = "166" if "%ASA-6" in text else "164"
        out.append(f"<{severity}>{stamp}: {text}")
    return "\r\n".join(out) + "\r\n"


@dataclass
class Session:
    start: datetime
    remote: str
    lines: list[tuple[str, str, str]]  # event, data, context


def eop_session(msg: Message, index: int, attempt: Attempt, server: str) -> Session:
    start = at(attempt.minute)
    ip = attempt.source
    host = f"{server}.corp.tailspintoys.ca"
    ehlo = ehlo_for(ip)
    local = start - timedelta(hours=5)
    banner = (
        f"220 {host} Microsoft ESMTP MAIL Service ready at "
        f"{local.strftime('%a, %d %b %Y %H:%M:%S')} -0500"
    )
    caps = (
        "SIZE 37748736 PIPELINING DSN ENHANCEDSTATUSCODES STARTTLS X-ANONYMOUSTLS AUTH NTLM "
        "X-EXPS GSSAPI NTLM 8BITMIME BINARYMIME CHUNKING XRDST"
    )
    caps_tls = (
        "SIZE 37748736 PIPELINING DSN ENHANCEDSTATUSCODES AUTH NTLM LOGIN X-EXPS GSSAPI "
        "NTLM 8BITMIME BINARYMIME CHUNKING XRDST"
    )
    sid = f"08DE0F{index:02X}{int(attempt.minute * 100):08X}"
    lines = [
        ("+", "", ""),
        (">", banner, ""),
        ("<", f"EHLO {ehlo}", ""),
        (">", f"250  {host} Hello [{ip}] {caps}", ""),
        ("<", "STARTTLS", ""),
        (">", "220 2.0.0 SMTP server ready", ""),
        (
            "*",
            " CN=smtp.tailspintoys.ca CN=R11 04A1B2C3D4E5F60718293A4B5C6D7E8F "
            "9F2C4E6A8B0D1F3E5A7C9B1D3F5E7A9C1B3D5F70 2026-10-15T00:00:00.000Z "
            "2027-01-13T23:59:59.000Z smtp.tailspintoys.ca;mail.tailspintoys.ca;"
            "autodiscover.tailspintoys.ca",
            "Sending certificate Subject Issuer name Serial number Thumbprint Not before Not after "
            "Subject alternate names",
        ),
        (
            "*",
            "",
            "TLS protocol SP_PROT_TLS1_2_SERVER negotiation succeeded using bulk encryption "
            "algorithm CALG_AES_256 with strength 256 bits, MAC hash algorithm CALG_SHA_384 "
            "with strength 0 bits and key exchange algorithm CALG_ECDH_EPHEM with strength "
            "384 bits",
        ),
        ("<", f"EHLO {ehlo}", ""),
        ("*", "", "Client certificate chain validation status: 'Valid'"),
        (
            "*",
            "",
            "TlsDomainCapabilities='AcceptCloudServicesMail'; Status='Success'; "
            "Domain='mail.protection.outlook.com'",
        ),
        (">", f"250  {host} Hello [{ip}] {caps_tls}", ""),
        ("<", f"MAIL FROM:<{msg.sender}> SIZE={msg.size} BODY=BINARYMIME", ""),
        ("*", f"{sid};{iso(start)};1", "receiving message"),
        (">", "250 2.1.0 Sender OK", ""),
        ("<", f"RCPT TO:<{msg.recipient}>", ""),
        (">", "250 2.1.5 Recipient OK", ""),
        ("<", f"BDAT {msg.size} LAST", ""),
        (
            "*",
            "",
            f"Proxy destination(s) obtained from OnProxyInboundMessage event. "
            f"Correlation Id:6b1f{index:04x}-2c3d-4e5f-8a9b-{int(attempt.minute * 1e4):012x}",
        ),
        (
            ">",
            f"250 2.6.0 {message_id(index)} [InternalId={51539607552 + index * 977}, "
            f"Hostname={host}] {msg.size} bytes in 0.{180 + index}, "
            f"{msg.size / 1024 / 0.2:,.3f} KB/sec Queued mail for delivery",
            "",
        ),
        ("<", "QUIT", ""),
        (">", "221 2.0.0 Service closing transmission channel", ""),
        ("-", "", "Local"),
    ]
    return Session(start, ip, lines)


def internal_session(minute: float, index: int, server: str) -> Session:
    """An internal relay (the scanner/copier on the server VLAN) so the logs are not EOP-only."""
    start = at(minute)
    ip = "10.0.0.61"
    host = f"{server}.corp.tailspintoys.ca"
    local = start - timedelta(hours=5)
    lines = [
        ("+", "", ""),
        (
            ">",
            f"220 {host} Microsoft ESMTP MAIL Service ready at "
            f"{local.strftime('%a, %d %b %Y %H:%M:%S')} -0500",
            "",
        ),
        ("<", "EHLO TSP-MFP-03", ""),
        (
            ">",
            f"250  {host} Hello [{ip}] SIZE 37748736 PIPELINING DSN ENHANCEDSTATUSCODES "
            "STARTTLS X-ANONYMOUSTLS AUTH NTLM X-EXPS GSSAPI NTLM 8BITMIME BINARYMIME CHUNKING "
            "XRDST",
            "",
        ),
        ("<", "MAIL FROM:<scanner@tailspintoys.ca>", ""),
        ("*", f"08DE0FAA{index:02X}{int(minute * 100):06X};{iso(start)};1", "receiving message"),
        (">", "250 2.1.0 Sender OK", ""),
        ("<", "RCPT TO:<warehouse@tailspintoys.ca>", ""),
        (">", "250 2.1.5 Recipient OK", ""),
        ("<", "DATA", ""),
        (">", "354 Start mail input; end with <CRLF>.<CRLF>", ""),
        (
            ">",
            f"250 2.6.0 <MFP03-{index:04d}@tailspintoys.ca> [InternalId={60129542144 + index}, "
            f"Hostname={host}] 204811 bytes in 0.412, 485,463 KB/sec Queued mail for delivery",
            "",
        ),
        ("<", "QUIT", ""),
        (">", "221 2.0.0 Service closing transmission channel", ""),
        ("-", "", "Local"),
    ]
    return Session(start, ip, lines)


def csv_field(text: str) -> str:
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def receive_logs() -> dict[str, str]:
    """Hourly FrontEnd SmtpReceive logs for TSP-EX01 and TSP-EX02, 21:00 to 23:59 UTC."""
    sessions: dict[str, list[Session]] = {"TSP-EX01": [], "TSP-EX02": []}
    turn = 0
    for index, msg in enumerate(MESSAGES):
        for attempt in msg.attempts:
            if attempt.ok:
                server = "TSP-EX01" if turn % 2 == 0 else "TSP-EX02"
                turn += 1
                sessions[server].append(eop_session(msg, index, attempt, server))
    for number, minute in enumerate([1.2, 31.7, 62.4, 93.0, 124.8, 155.5, 178.9]):
        server = "TSP-EX02" if number % 2 else "TSP-EX01"
        sessions[server].append(internal_session(minute, number, server))
    # Health probes from the load balancer keep each hourly file alive at its edges.
    files: dict[str, str] = {}
    for server, items in sessions.items():
        for hour in (21, 22, 23):
            begin = DAY.replace(hour=hour)
            probes = [
                begin + timedelta(seconds=3 + (1 if server == "TSP-EX02" else 0)),
                begin + timedelta(minutes=59, seconds=51),
            ]
            hour_sessions = [s for s in items if s.start.hour == hour]
            for number, when in enumerate(probes):
                hour_sessions.append(
                    Session(
                        when,
                        "10.0.0.5",
                        [
                            ("+", "", ""),
                            (
                                ">",
                                f"220 {server}.corp.tailspintoys.ca "
                                "Microsoft ESMTP MAIL Service ready",
                                "",
                            ),
                            ("<", "QUIT", ""),
                            (">", "221 2.0.0 Service closing transmission channel", ""),
                            ("-", "", "Remote(Closed)"),
                        ],
                    )
                )
                del number
            hour_sessions.sort(key=lambda s: s.start)
            out = [
                "#Software: Microsoft Exchange Server",
                "#Version: 15.0.0.0",
                "#Log-type: SMTP Receive Protocol Log",
                f"#Date: {iso(begin + timedelta(seconds=3))}",
                "#Fields: date-time,connector-id,session-id,sequence-number,local-endpoint,"
                "remote-endpoint,event,data,context",
            ]
            for number, session in enumerate(hour_sessions):
                sid = f"08DE0F{hour:02X}{number:02X}{sum(map(ord, session.remote)) & 0xFFFF:04X}"
                sid = sid.ljust(16, "0")[:16]
                rport = 20000 + (number * 7919 + hour * 31) % 40000
                when = session.start
                for seq, (event, data, context) in enumerate(session.lines):
                    stamp = iso(when)
                    out.append(
                        ",".join(
                            [
                                stamp,
                                f"{server}\\Default Frontend {server}",
                                sid,
                                str(seq),
                                f"{INSIDE_IP}:25",
                                f"{session.remote}:{rport}",
                                event,
                                csv_field(data),
                                csv_field(context),
                            ]
                        )
                    )
                    when += timedelta(milliseconds=37 + seq * 3)
            files[f"{server}/FrontEnd/ProtocolLog/SmtpReceive/RECV20261127{hour}-1.LOG"] = (
                "\r\n".join(out) + "\r\n"
            )
    return files


README = """\
Tailspin Toys: the bundled example for `mailflow-doctor demo`
============================================================

Fictional evidence modelled on a real case (R. Milne, "Mail Not Flowing From Office 365 To
On-Premises Exchange Server", 2018). Addresses are documentation ranges or published
Exchange Online Protection ranges; names are fictional.

Tailspin Toys runs hybrid Exchange (TSP-EX01, TSP-EX02) behind a Cisco ASA (tsp-fw01).
Exchange Online delivers to smtp.tailspintoys.ca = 203.0.113.25, which the ASA translates to
10.0.0.25 (a load-balancer address in front of both servers). On 2026-11-20 the ACL's EOP
object-group was rebuilt from an old list: 40.107.0.0/16 and 52.102.0.0/15 were left out and
a retired range (65.55.88.0/24) was kept. From then on, deliveries that Exchange Online attempts
from the missing ranges are refused (the ASA resets denied inbound TCP), while those from the
other ranges arrive.

Files
- trace/MessageTrace.csv         Get-MessageTrace | Export-Csv -NoTypeInformation (en-US)
- trace/MessageTraceDetail.csv   Get-MessageTrace | Get-MessageTraceDetail | Export-Csv
- firewall/tsp-fw01-running-config.txt   show running-config
- firewall/tsp-fw01-syslog.log           ASA syslog (UTC) with %ASA-4-106023 denies
- TSP-EX01/..., TSP-EX02/...    FrontEnd SmtpReceive protocol logs, 21:00-23:59 UTC

Run: mailflow-doctor diagnose <this folder>   (or: mailflow-doctor demo)
"""


def main(out: Path = OUT) -> None:
    files = {
        "trace/MessageTrace.csv": message_trace(),
        "trace/MessageTraceDetail.csv": message_trace_detail(),
        "firewall/tsp-fw01-running-config.txt": ASA_CONFIG.replace("\n", "\r\n"),
        "firewall/tsp-fw01-syslog.log": asa_syslog(),
        **receive_logs(),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out.parent / "tailspin.md").write_text(README, encoding="utf-8")
    for relative, text in files.items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        bom = b"\xef\xbb\xbf" if relative.endswith(".LOG") else b""
        path.write_bytes(bom + text.encode("utf-8"))
        print(f"{path}: {len(text)} chars")


if __name__ == "__main__":
    main()
