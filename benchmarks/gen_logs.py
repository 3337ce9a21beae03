"""Generate realistic Exchange FrontEnd SmtpReceive protocol logs for benchmarks.

Layout as an admin collects them: `<out>/<SERVER>/FrontEnd/ProtocolLog/SmtpReceive/
RECVyyyymmddhh-1.LOG`, one file per server and hour, UTF-8 with BOM, CRLF, the five-line
header. Sessions interleave (many are open at once), some run across the hour boundary into
the next file, and the traffic mixes Exchange Online (EOP ranges of endpoint set 10, IPv4 and
IPv6, with STARTTLS, the certificate line, TLS and TlsDomainCapabilities), other internet
senders (some just outside the EOP ranges, so a prefix match alone is not enough) and internal
relays. Quoted fields with commas appear where Exchange writes them (banner, 250 2.6.0).

    python benchmarks/gen_logs.py OUT --size-mb 300 --servers 3
"""

from __future__ import annotations

import argparse
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

HEADER = (
    "#Software: Microsoft Exchange Server\r\n"
    "#Version: 15.0.0.0\r\n"
    "#Log-type: SMTP Receive Protocol Log\r\n"
    "#Date: {date}\r\n"
    "#Fields: date-time,connector-id,session-id,sequence-number,local-endpoint,"
    "remote-endpoint,event,data,context\r\n"
)

# Endpoint set 10 (EOP inbound SMTP); 104.47.0.0/17 lets the generator also emit 104.47.200.x,
# which shares the literal prefix but lies outside the range.
EOP_V4 = [("40.92.", 2), ("40.107.", 1), ("52.100.", 4), ("104.47.", 1)]
EOP_EHLO = [
    "NAM11-BN8-obe.outbound.protection.outlook.com",
    "NAM02-BN1-obe.outbound.protection.outlook.com",
    "EUR05-AM6-obe.outbound.protection.outlook.com",
    "NAM12-DM6-obe.outbound.protection.outlook.com",
    "APC01-SG2-obe.outbound.protection.outlook.com",
]
OTHER_EHLO = ["mail.fabrikam.com", "smtp.wingtiptoys.com", "mx1.adatum.net", "[203.0.113.7]"]


def _eop_ip(rng: random.Random) -> str:
    if rng.random() < 0.08:
        group = rng.choice("03")
        return f"2a01:111:f40{group}:{rng.randrange(0x10000):x}::{rng.randrange(1, 0xFFFF):x}"
    base, span = rng.choice(EOP_V4)
    first, second = base.rstrip(".").split(".")
    second_octet = int(second) + rng.randrange(span)
    third = rng.randrange(128) if base == "104.47." else rng.randrange(256)
    return f"{first}.{second_octet}.{third}.{rng.randrange(1, 255)}"


def _other_ip(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.15:
        return f"104.47.{rng.randrange(128, 256)}.{rng.randrange(1, 255)}"  # outside the /17
    if roll < 0.25:
        return f"40.94.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    if roll < 0.45:
        return f"10.20.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    first = rng.choice([198, 185, 91, 77, 52])
    return f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def session_lines(
    rng: random.Random, server: str, session_id: str, start: datetime
) -> list[tuple[datetime, str]]:
    """One session's rows (time, text without the time) in order."""
    eop = rng.random() < 0.45
    remote_ip = _eop_ip(rng) if eop else _other_ip(rng)
    remote = f"{remote_ip}:{rng.randrange(1024, 65535)}"
    local = "10.0.1.25:25"
    connector = f"{server}\\Default Frontend {server}"
    fqdn = f"{server.lower()}.tailspintoys.ca"
    prefix = f"{connector},{session_id},"
    ends = f",{local},{remote},"
    rows: list[str] = []

    def add(event: str, data: str = "", context: str = "") -> None:
        if "," in data or '"' in data:
            data = '"' + data.replace('"', '""') + '"'
        if "," in context or '"' in context:
            context = '"' + context.replace('"', '""') + '"'
        rows.append(f"{prefix}{len(rows)}{ends}{event},{data},{context}")

    add("+")
    add("*", "SMTPSubmit SMTPAcceptAnySender AcceptRoutingHeaders", "Set Session Permissions")
    add(
        ">", f"220 {fqdn} Microsoft ESMTP MAIL Service ready at {start:%a, %d %b %Y %H:%M:%S} +0000"
    )
    ehlo = rng.choice(EOP_EHLO) if eop else rng.choice(OTHER_EHLO)
    add("<", f"EHLO {ehlo}")
    offers_tls = not (eop and rng.random() < 0.03)
    caps = "SIZE 37748736 PIPELINING DSN ENHANCEDSTATUSCODES " + ("STARTTLS " if offers_tls else "")
    add(">", f"250  {fqdn} Hello [{remote_ip}] {caps}8BITMIME BINARYMIME CHUNKING XRDST")
    if offers_tls and (eop or rng.random() < 0.5):
        add("<", "STARTTLS")
        add(">", "220 2.0.0 SMTP server ready")
        add(
            "*",
            " CN=smtp.tailspintoys.ca CN=R11, O=Let's Encrypt, C=US "
            "04A1B2C3D4E5F60718293A4B5C6D7E8F "
            "9F3B2C1D0E4A5B6C7D8E9F0A1B2C3D4E5F6A7B8C 2026-09-01T00:00:00.000Z "
            "2026-11-30T00:00:00.000Z smtp.tailspintoys.ca;autodiscover.tailspintoys.ca",
            "Sending certificate Subject Issuer name Serial number Thumbprint Not before Not after "
            "Subject alternate names",
        )
        add(
            "*",
            "",
            "TLS protocol SP_PROT_TLS1_2_SERVER negotiation succeeded using bulk encryption "
            "algorithm CALG_AES_256 with strength 256 bits, MAC hash algorithm CALG_SHA_384 with "
            "strength 0 bits and key exchange algorithm CALG_ECDH_EPHEM with strength 384 bits",
        )
        add("<", f"EHLO {ehlo}")
        if eop:
            add("*", "", "Client certificate chain validation status: 'Valid'")
            add(
                "*",
                "",
                "TlsDomainCapabilities='AcceptCloudServicesMail'; Status='Success'; "
                "Domain='mail.protection.outlook.com'",
            )
        add(">", f"250  {fqdn} Hello [{remote_ip}] SIZE 37748736 PIPELINING DSN 8BITMIME XRDST")
    for message in range(rng.choice([1, 1, 1, 2, 3])):
        sender = rng.choice(["alerts", "noreply", "j.doe", "billing"]) + "@contoso.com"
        add("<", f"MAIL FROM:<{sender}> SIZE={rng.randrange(2000, 90000)}")
        add("*", f"{session_id};{_stamp(start)};{message + 1}", "receiving message")
        add(">", "250 2.1.0 Sender OK")
        for _ in range(rng.choice([1, 1, 2, 4])):
            add("<", f"RCPT TO:<user{rng.randrange(500)}@tailspintoys.ca>")
            add(">", "250 2.1.5 Recipient OK")
        add("<", "BDAT 4021 LAST")
        internal = rng.randrange(10**14, 10**15)
        add(
            ">",
            f"250 2.6.0 <{rng.randrange(16**12):012x}@{ehlo.split('[')[-1]}> "
            f"[InternalId={internal}, Hostname={fqdn}] 4021 bytes in 0.081, 48,432 KB/sec "
            "Queued mail for delivery",
        )
    add("<", "QUIT")
    add(">", "221 2.0.0 Service closing transmission channel")
    add("-", "", "Local")
    out: list[tuple[datetime, str]] = []
    when = start
    for row in rows:
        when += timedelta(milliseconds=rng.randrange(0, 400))
        out.append((when, row))
    return out


def generate(out: Path, size_mb: float, servers: int, seed: int = 7) -> list[Path]:
    """Write the logs; returns the files written. Size is approximate (whole sessions)."""
    rng = random.Random(seed)
    names = [f"EX{index + 1:02d}" for index in range(servers)]
    target = int(size_mb * 1_000_000)
    per_server = target // servers
    start = datetime(2026, 11, 28, 0, 0, tzinfo=UTC)
    files: list[Path] = []
    for server_index, server in enumerate(names):
        folder = out / server / "FrontEnd" / "ProtocolLog" / "SmtpReceive"
        folder.mkdir(parents=True, exist_ok=True)
        written = 0
        counter = 0x08DE1234_00000000 + server_index * 0x1000000
        hour = start
        pending: list[tuple[datetime, str]] = []  # rows spilling into the next hour
        while written < per_server:
            path = folder / f"RECV{hour:%Y%m%d%H}-1.LOG"
            hour_end = hour + timedelta(hours=1)
            rows = [r for r in pending if r[0] < hour_end]
            pending = [r for r in pending if r[0] >= hour_end]
            budget = min(per_server - written, 10_000_000)  # Exchange rolls files at 10 MB
            size = 0
            while size < budget:
                counter += 1
                begin = hour + timedelta(seconds=rng.uniform(0, 3599.5))
                for when, row in session_lines(rng, server, f"{counter:016X}", begin):
                    if when < hour_end:
                        rows.append((when, row))
                        size += len(row) + 27
                    else:
                        pending.append((when, row))
            rows.sort(key=lambda r: r[0])
            with path.open("w", encoding="utf-8-sig", newline="") as handle:
                handle.write(HEADER.format(date=_stamp(hour)))
                handle.writelines(f"{_stamp(when)},{row}\r\n" for when, row in rows)
            written += path.stat().st_size
            files.append(path)
            hour = hour_end
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--size-mb", type=float, default=300.0)
    parser.add_argument("--servers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    files = generate(args.out, args.size_mb, args.servers, args.seed)
    total = sum(f.stat().st_size for f in files)
    print(f"wrote {len(files)} files, {total / 1e6:.1f} MB, under {args.out}")


if __name__ == "__main__":
    main()
