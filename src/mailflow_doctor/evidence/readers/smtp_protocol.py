"""Exchange SMTP protocol logs (SmtpReceive, SmtpSend; Exchange 2010 to 2019/SE) into sessions.

A protocol log interleaves the lines of many sessions. Rows are grouped by (connector-id,
session-id) and a session is handed over as soon as its `-` (disconnect) row is read, so memory
holds only the sessions still open. A log that never shows disconnects (cut excerpts, a file
that rolled over mid-session) cannot make memory grow either: past `MAX_OPEN_SESSIONS` open
sessions, or after `IDLE_GAP` of log time without a row, a session is handed over as it stands,
with a note saying why. Alongside the sessions the reader yields one `LogSpan` per server in
each file, the time the file covers, which is what tells log silence from a logging gap.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from mailflow_doctor.evidence.document import Document, ReadContext
from mailflow_doctor.evidence.exchangelog import (
    PROTOCOL_FIELDS,
    LogHeader,
    iter_rows,
    parse_log_time,
    protocol_row_shape,
    read_header,
    server_from_path,
    split_row,
)
from mailflow_doctor.evidence.records import LogSpan, SmtpSession, TlsCertificateSeen
from mailflow_doctor.evidence.registry import register_reader

MAX_OPEN_SESSIONS = 10_000
IDLE_GAP = timedelta(minutes=30)
SWEEP_EVERY_ROWS = 20_000
MAX_IDS_PER_SESSION = 200
MAX_NOTES_PER_SESSION = 12

RECEIVE = "exchange.smtp_receive"
SEND = "exchange.smtp_send"

_TLS_OK = re.compile(
    r"TLS protocol (?P<proto>\S+) negotiation succeeded using bulk encryption algorithm "
    r"(?P<cipher>\S+)",
    re.IGNORECASE,
)
_TLS_DOMAIN = re.compile(r"(\w+)='([^']*)'")
_INTERNAL_ID = re.compile(r"\[InternalId=([^,\]]+)")
_ADDRESS = re.compile(r"<([^>]*)>")
_DN_START = re.compile(r"(?<=[^,]) (?=[A-Za-z][A-Za-z0-9.]*=)")
_HEX = re.compile(r"^[0-9A-Fa-f]{16,}$")


def split_endpoint(text: str) -> tuple[str, int | None]:
    """`10.0.0.6:25`, unbracketed IPv6 `fe80::1:25`, or `[2001:db8::1]:25` into (ip, port)."""
    text = text.strip()
    if not text:
        return "", None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.lstrip(":")
        return host, int(port_text) if port_text.isdigit() else None
    host, sep, port_text = text.rpartition(":")
    if not sep:
        return text, None
    if port_text.isdigit():
        return host, int(port_text)
    return text, None


def parse_certificate(data: str, labels: str) -> TlsCertificateSeen:
    """The `Sending certificate` / `Remote certificate` line: values in `data`, names in context.

    Subject and issuer may hold spaces, so the line is read from the right: SANs, validity
    dates, thumbprint and serial are single tokens; what remains is the two distinguished names.
    """
    tokens = data.strip().split(" ")
    lowered = labels.lower()
    sans: tuple[str, ...] = ()
    if "alternate names" in lowered and tokens and "=" not in tokens[-1]:
        sans = tuple(s for s in tokens.pop().split(";") if s)
    not_after = not_before = None
    if tokens and "not after" in lowered:
        not_after = parse_log_time(tokens[-1])
        if not_after is not None:
            tokens.pop()
    if tokens and "not before" in lowered:
        not_before = parse_log_time(tokens[-1])
        if not_before is not None:
            tokens.pop()
    thumbprint = serial = ""
    if tokens and "thumbprint" in lowered and _HEX.match(tokens[-1]):
        thumbprint = tokens.pop().upper()
    if tokens and "serial" in lowered and _HEX.match(tokens[-1]):
        serial = tokens.pop().upper()
    names = _DN_START.split(" ".join(tokens).strip())
    subject = names[0] if names else ""
    issuer = " ".join(names[1:]) if len(names) > 1 else ""
    return TlsCertificateSeen(
        subject=subject,
        issuer=issuer,
        thumbprint=thumbprint,
        serial=serial,
        not_before_utc=not_before,
        not_after_utc=not_after,
        sans=sans,
    )


def _tls_protocol_name(raw: str) -> str:
    """`SP_PROT_TLS1_2_SERVER` -> `TLS 1.2`; anything else is kept as logged."""
    match = re.match(r"SP_PROT_(TLS|SSL)(\d)(?:_(\d))?_(?:SERVER|CLIENT)$", raw, re.IGNORECASE)
    if not match:
        return raw
    kind, major, minor = match.groups()
    return f"{kind.upper()} {major}.{minor or 0}"


@dataclass
class _Session:
    """A session being assembled; turned into an `SmtpSession` when handed over."""

    direction: str
    server: str
    connector: str
    session_id: str
    line: int
    excerpt: str
    start: datetime | None
    end: datetime | None = None
    last_seen: datetime | None = None
    local_ip: str = ""
    local_port: int | None = None
    remote_ip: str = ""
    remote_port: int | None = None
    ehlo: str = ""
    banner: str = ""
    in_ehlo_reply: bool = False  # the next `250` rows answer an EHLO
    starttls_offered: bool | None = None
    starttls_requested: bool = False
    tls_negotiated: bool = False
    tls_failed: bool = False
    tls_protocol: str = ""
    tls_cipher: str = ""
    certificate: TlsCertificateSeen | None = None
    remote_certificate: TlsCertificateSeen | None = None
    tls_domain_capabilities: str = ""
    tls_domain_status: str = ""
    mail_from: str = ""
    recipients: int = 0
    message_ids: list[str] = field(default_factory=list)
    internal_ids: list[str] = field(default_factory=list)
    last_response: str = ""
    delivered: int = 0
    rejected: int = 0
    connect_failed: bool = False
    disconnected: bool = False
    disconnect_reason: str = ""
    events: int = 0
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.notes) < MAX_NOTES_PER_SESSION and text not in self.notes:
            self.notes.append(text)

    def outcome(self) -> str:
        if self.delivered:
            return "delivered"
        if self.connect_failed:
            return "connect_failed"
        if self.tls_failed or (
            self.starttls_requested and not self.tls_negotiated and self.disconnected
        ):
            return "tls_failed"
        if self.rejected:
            return "rejected"
        if self.disconnected:
            return "disconnected"
        return "open"

    def freeze(self, doc: Document) -> SmtpSession:
        return SmtpSession(
            ref=doc.ref(self.line, self.excerpt),
            direction=self.direction,
            server=self.server,
            connector=self.connector,
            session_id=self.session_id,
            start_utc=self.start,
            end_utc=self.end or self.last_seen,
            local_ip=self.local_ip,
            local_port=self.local_port,
            remote_ip=self.remote_ip,
            remote_port=self.remote_port,
            ehlo=self.ehlo,
            banner=self.banner,
            starttls_offered=self.starttls_offered,
            starttls_requested=self.starttls_requested,
            tls_negotiated=self.tls_negotiated,
            tls_protocol=self.tls_protocol,
            tls_cipher=self.tls_cipher,
            certificate=self.certificate,
            remote_certificate=self.remote_certificate,
            tls_domain_capabilities=self.tls_domain_capabilities,
            mail_from=self.mail_from,
            recipients=self.recipients,
            message_ids=tuple(self.message_ids),
            last_response=self.last_response[:500],
            outcome=self.outcome(),
            events=self.events,
            notes=tuple(self.notes),
            tls_domain_status=self.tls_domain_status,
            internal_message_ids=tuple(self.internal_ids),
            disconnect_reason=self.disconnect_reason,
        )


def _ehlo_reply_offers_starttls(reply: str) -> bool:
    """Receive logs write the whole EHLO reply on one line: `250  HOST Hello [..] ... STARTTLS`."""
    return any(word.upper() == "STARTTLS" for word in reply.split())


class _SessionBuilder:
    """Applies one row at a time to the session it belongs to."""

    def __init__(self, direction: str) -> None:
        self.direction = direction
        self.receive = direction == "receive"

    def apply(self, s: _Session, event: str, data: str, context: str) -> None:
        s.events += 1
        if event == "+":
            return
        if event == "-":
            s.disconnected = True
            s.disconnect_reason = context.strip()[:200]
            return
        if event == "*":
            self._information(s, data, context)
            return
        # The client's commands are `<` rows in a receive log and `>` rows in a send log.
        is_command = (event == "<") if self.receive else (event == ">")
        if is_command:
            self._command(s, data)
        elif event in ("<", ">"):
            self._reply(s, data)

    # -- commands (client side) ------------------------------------------------------------
    def _command(self, s: _Session, data: str) -> None:
        s.in_ehlo_reply = False
        upper = data[:10].upper()
        if upper.startswith(("EHLO ", "HELO ")):
            name = data[5:].strip()
            if not s.ehlo:  # receive: the client's name; send: our own, as announced
                s.ehlo = name
            s.in_ehlo_reply = True
            return
        if upper.startswith("STARTTLS") or upper.startswith("X-ANONYMOUSTLS"):
            s.starttls_requested = True
            return
        if upper.startswith("MAIL FROM:"):
            if not s.mail_from:
                found = _ADDRESS.search(data)
                s.mail_from = found.group(1) if found else data[10:].strip()
            return
        if upper.startswith("RCPT TO:"):
            s.recipients += 1

    # -- replies (server side) ---------------------------------------------------------------
    def _reply(self, s: _Session, data: str) -> None:
        if not data[:1].isdigit():
            return
        s.last_response = data
        code = data[:3]
        if code == "220" and not s.banner and not s.starttls_requested:
            s.banner = data
            return
        if code == "250":
            if s.in_ehlo_reply:
                self._ehlo_reply(s, data)
                return
            if data.startswith("250 2.6.0"):
                s.delivered += 1
                found = _ADDRESS.search(data)
                if found and len(s.message_ids) < MAX_IDS_PER_SESSION:
                    s.message_ids.append(found.group(0))
                internal = _INTERNAL_ID.search(data)
                if internal and len(s.internal_ids) < MAX_IDS_PER_SESSION:
                    s.internal_ids.append(internal.group(1).strip())
                return
            low = data.lower()
            if not self.receive and ("queued mail for delivery" in low or " queued as " in low):
                s.delivered += 1
            return
        s.in_ehlo_reply = False
        if code[:1] in ("4", "5"):
            s.rejected += 1
            if s.starttls_requested and not s.tls_negotiated:
                s.tls_failed = True
                s.note(f"STARTTLS answered {data[:80]}")

    def _ehlo_reply(self, s: _Session, data: str) -> None:
        """Receive logs write the reply on one `250  HOST Hello ... STARTTLS ...` row; send logs
        write one row per line (`250-STARTTLS` ... `250 HELP`). Both end at a `250 ` row.
        Only the reply before TLS counts: after STARTTLS the server stops offering it."""
        pre_tls = not s.tls_negotiated and not s.starttls_requested
        last_line = data[3:4] != "-"
        if pre_tls and _ehlo_reply_offers_starttls(data[4:]):
            s.starttls_offered = True
        if last_line:
            s.in_ehlo_reply = False
            if pre_tls and s.starttls_offered is None:
                s.starttls_offered = False

    # -- information rows ------------------------------------------------------------------
    def _information(self, s: _Session, data: str, context: str) -> None:
        ctx = context.strip()
        low = ctx.lower()
        if low.startswith("sending certificate"):
            # Receive: the certificate this server presented. Send: the one we offered.
            s.certificate = parse_certificate(data, ctx)
            return
        if low.startswith(("remote certificate", "validated received certificate")):
            if data.strip():
                s.remote_certificate = parse_certificate(data, ctx)
            return
        if low == "received certificate":  # the thumbprint follows on its own row
            return
        if low == "certificate thumbprint":
            thumb = data.strip().upper()
            if thumb:
                existing = s.remote_certificate or TlsCertificateSeen()
                s.remote_certificate = TlsCertificateSeen(
                    subject=existing.subject,
                    issuer=existing.issuer,
                    thumbprint=thumb,
                    serial=existing.serial,
                    not_before_utc=existing.not_before_utc,
                    not_after_utc=existing.not_after_utc,
                    sans=existing.sans,
                )
            return
        text = ctx or data.strip()
        low = text.lower()
        if low.startswith("tls protocol"):
            match = _TLS_OK.search(text)
            if match:
                s.tls_negotiated = True
                s.tls_protocol = _tls_protocol_name(match.group("proto"))
                s.tls_cipher = match.group("cipher").rstrip(",")
            return
        if "tlsdomaincapabilities=" in low:
            values = {k.lower(): v for k, v in _TLS_DOMAIN.findall(text)}
            capabilities = values.get("tlsdomaincapabilities", "")
            domain = values.get("domain", "")
            s.tls_domain_capabilities = f"{domain}:{capabilities}" if domain else capabilities
            s.tls_domain_status = values.get("status", "")
            return
        if low.startswith("failed to connect"):
            s.connect_failed = True
            s.last_response = text
            return
        if ("tls" in low or "schannel" in low) and ("fail" in low or "error" in low):
            s.tls_failed = True
            s.note(text[:200])
            return
        if low.startswith(("client certificate chain validation status", "proxying inbound")):
            s.note(text[:200])
            return
        if low.startswith("outbound authentication failed") or "authentication failed" in low:
            s.note(text[:200])


@dataclass
class _Span:
    first: datetime
    last: datetime
    line: int
    rows: int = 0


@dataclass
class _FileState:
    """Per-file bookkeeping shared by the receive and send readers."""

    doc: Document
    direction: str
    path_server: str
    open: dict[tuple[str, str], _Session] = field(default_factory=dict)
    spans: dict[str, _Span] = field(default_factory=dict)
    evicted_cap: int = 0
    evicted_idle: int = 0


def _server_of(connector: str, state: _FileState) -> str:
    server, sep, _ = connector.partition("\\")
    if sep and server:
        return server
    return state.path_server


class _ProtocolLogReader:
    """Shared by the receive and send readers; `direction` is "receive" or "send"."""

    kind = ""
    label = ""
    direction = "receive"

    def sniff(self, doc: Document) -> int:
        lines = doc.head_lines(60)
        header = read_header(lines)
        if header is not None and header.log_type:
            if not header.is_protocol:
                return 0
            receive = "receive" in header.log_type.lower()
            return 100 if receive == (self.direction == "receive") else 0
        rows = [line.lstrip("\ufeff") for line in lines if line.strip()]
        rows = [r for r in rows if not r.startswith("#")]
        shaped = [r for r in rows[:30] if protocol_row_shape(r)]
        if not shaped or len(shaped) < max(1, len(rows[:30]) // 2):
            return 0
        guess = guess_direction(shaped)
        return 80 if guess == self.direction else 0

    def read(self, doc: Document, ctx: ReadContext) -> Iterator[object]:
        yield from read_sessions(doc, ctx, self.direction, self.kind)


def guess_direction(rows: list[str]) -> str:
    """Receive or send, for a header-less excerpt, from who speaks first in the SMTP dialogue."""
    receive = send = 0
    for row in rows:
        fields = split_row(row)
        if len(fields) < 8:
            continue
        event, data, connector = fields[6], fields[7], fields[1]
        context = fields[8] if len(fields) > 8 else ""
        word = data[:4].upper()
        if event == "<":
            if word in ("EHLO", "HELO", "MAIL", "RCPT", "DATA", "STAR", "AUTH", "QUIT"):
                receive += 2
            elif data[:1].isdigit():
                send += 2
        elif event == ">":
            if word in ("EHLO", "HELO", "MAIL", "RCPT", "DATA", "STAR", "QUIT"):
                send += 2
            elif data[:1].isdigit():
                receive += 2
        elif event == "*" and context.lower().startswith(("attempting to connect", "failed to")):
            send += 3
        if "\\" in connector:
            receive += 1
    return "send" if send > receive else "receive"


def read_sessions(
    doc: Document,
    ctx: ReadContext,
    direction: str,
    kind: str,
    keep_remote: Callable[[str], bool] | None = None,
) -> Iterator[SmtpSession | LogSpan]:
    """Stream the sessions of one protocol log, bounded in memory; then the file's spans.

    `keep_remote` (given the remote-endpoint text) lets a caller that wants only some
    sessions skip the others' rows early; spans still cover every row.
    """
    state = _FileState(doc, direction, server_from_path(doc.display))
    builder = _SessionBuilder(direction)
    index_cache: dict[LogHeader, tuple[int, ...] | None] = {}
    last_header: LogHeader | None = None
    last_indexes: tuple[int, ...] | None = None
    need = len(PROTOCOL_FIELDS)
    bad_rows = 0
    rows_seen = 0
    for row in iter_rows(doc, ctx, default_fields=PROTOCOL_FIELDS):
        if row.header is last_header:
            indexes = last_indexes
        elif row.header in index_cache:
            indexes = index_cache[row.header]
        else:
            indexes = _column_indexes(row.header)
            index_cache[row.header] = indexes
            if indexes is None:
                ctx.warn(doc, row.line, "this #Fields line lacks the SMTP protocol log columns")
        if indexes is None:
            last_header, last_indexes = row.header, indexes
            continue
        if row.header is not last_header:
            last_header, last_indexes, need = row.header, indexes, max(indexes[:7])
        fields = row.fields
        if len(fields) <= need:
            bad_rows += 1
            if bad_rows <= 20:
                ctx.warn(doc, row.line, f"row has {len(fields)} fields; expected 9; skipped")
            continue
        i_time, i_conn, i_sid, i_seq, i_local, i_remote, i_event, i_data, i_ctx = indexes
        when = parse_log_time(fields[i_time])
        if when is None:
            bad_rows += 1
            if bad_rows <= 20:
                ctx.warn(doc, row.line, f"unreadable time {fields[i_time][:40]!r}; row skipped")
            continue
        connector = fields[i_conn]
        server = _server_of(connector, state)
        span = state.spans.get(server)
        if span is None:
            state.spans[server] = _Span(when, when, row.line, 1)
        else:
            span.rows += 1
            if when < span.first:
                span.first = when
            if when > span.last:
                span.last = when
        if keep_remote is not None and not keep_remote(fields[i_remote]):
            continue
        session_id = fields[i_sid]
        key = (connector, session_id)
        session = state.open.get(key)
        if session is None:
            session = _Session(
                direction=direction,
                server=server,
                connector=connector,
                session_id=session_id,
                line=row.line,
                excerpt=row.text[:300],
                start=when,
            )
            if fields[i_event] != "+" and fields[i_seq].strip() not in ("0", ""):
                session.note("the session began before this file (no connect row)")
            state.open[key] = session
            if len(state.open) > MAX_OPEN_SESSIONS:
                oldest_key = next(iter(state.open))
                oldest = state.open.pop(oldest_key)
                oldest.note(
                    f"no disconnect seen while {MAX_OPEN_SESSIONS:,} other sessions were open; "
                    "handed over as it stood"
                )
                state.evicted_cap += 1
                yield oldest.freeze(doc)
        if session.local_ip == "" and fields[i_local]:
            session.local_ip, session.local_port = split_endpoint(fields[i_local])
        if session.remote_ip == "" and fields[i_remote]:
            session.remote_ip, session.remote_port = split_endpoint(fields[i_remote])
        session.last_seen = when
        data = fields[i_data] if i_data < len(fields) else ""
        context = fields[i_ctx] if i_ctx < len(fields) else ""
        event = fields[i_event]
        builder.apply(session, event, data, context)
        if event == "-":
            session.end = when
            del state.open[key]
            yield session.freeze(doc)
        rows_seen += 1
        if rows_seen % SWEEP_EVERY_ROWS == 0:
            yield from _sweep_idle(state, when)
    if bad_rows > 20:
        ctx.warn(doc, None, f"{bad_rows} rows in all could not be read")
    for session in state.open.values():
        session.note("no disconnect row before the end of this file")
        yield session.freeze(doc)
    state.open.clear()
    if state.evicted_cap:
        ctx.warn(
            doc,
            None,
            f"{state.evicted_cap} sessions without a disconnect were handed over early to keep "
            f"memory bounded (more than {MAX_OPEN_SESSIONS:,} open at once)",
        )
    for server, span in state.spans.items():
        yield LogSpan(
            ref=doc.ref(span.line),
            kind=kind,
            server=server,
            first_utc=span.first,
            last_utc=span.last,
            records=span.rows,
        )


def _sweep_idle(state: _FileState, now: datetime) -> Iterator[SmtpSession]:
    """Hand over sessions that have been silent for longer than any SMTP timeout."""
    limit = now - IDLE_GAP
    stale = [
        key for key, s in state.open.items() if s.last_seen is not None and s.last_seen < limit
    ]
    for key in stale:
        session = state.open.pop(key)
        session.note(
            f"no row for {int(IDLE_GAP.total_seconds() // 60)} minutes of log time and no "
            "disconnect; handed over as it stood"
        )
        state.evicted_idle += 1
        yield session.freeze(state.doc)


def _column_indexes(header: LogHeader) -> tuple[int, ...] | None:
    fields = header.fields or PROTOCOL_FIELDS
    positions = {name: i for i, name in enumerate(fields)}
    try:
        return tuple(positions[name] for name in PROTOCOL_FIELDS)
    except KeyError:
        return None


@register_reader
class SmtpReceiveLogReader(_ProtocolLogReader):
    kind = RECEIVE
    label = "Exchange SMTP Receive protocol log"
    direction = "receive"


@register_reader
class SmtpSendLogReader(_ProtocolLogReader):
    kind = SEND
    label = "Exchange SMTP Send protocol log"
    direction = "send"
