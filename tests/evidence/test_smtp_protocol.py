"""SMTP protocol logs: sessions, TLS facts, spans, bounded memory, hostile input, samples."""

from __future__ import annotations

import codecs
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailflow_doctor.evidence import exchangelog
from mailflow_doctor.evidence.document import Document, ReadContext
from mailflow_doctor.evidence.exchangelog import join_row, server_from_path, split_row
from mailflow_doctor.evidence.readers import smtp_protocol
from mailflow_doctor.evidence.readers.smtp_protocol import (
    parse_certificate,
    read_sessions,
    split_endpoint,
)
from mailflow_doctor.evidence.records import LogSpan, SmtpSession
from mailflow_doctor.evidence.registry import best_reader

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "smtplogs"
HEADER = (
    "#Software: Microsoft Exchange Server\r\n#Version: 15.0.0.0\r\n"
    "#Log-type: SMTP Receive Protocol Log\r\n#Date: 2026-11-28T14:00:00.000Z\r\n"
    "#Fields: date-time,connector-id,session-id,sequence-number,local-endpoint,"
    "remote-endpoint,event,data,context\r\n"
)


def read(path: Path) -> tuple[str, list[SmtpSession], list[LogSpan], ReadContext]:
    doc = Document.open(path)
    reader, _score = best_reader(doc)
    assert reader is not None, f"{path.name} not recognised"
    ctx = ReadContext()
    records = list(reader.read(doc, ctx))
    sessions = [r for r in records if isinstance(r, SmtpSession)]
    spans = [r for r in records if isinstance(r, LogSpan)]
    return reader.kind, sessions, spans, ctx


def by_remote(sessions: list[SmtpSession]) -> dict[str, SmtpSession]:
    return {s.remote_ip: s for s in sessions}


def test_frontend_log_with_eop_sessions() -> None:
    kind, sessions, _spans, ctx = read(FIXTURES / "RECV2026112814-1.LOG")
    assert kind == "exchange.smtp_receive"
    assert ctx.issues.issues == []
    assert len(sessions) == 6
    eop = by_remote(sessions)["40.92.18.75"]
    assert eop.server == "TSP-EX01"
    assert eop.connector == "TSP-EX01\\Default Frontend TSP-EX01"
    assert eop.session_id == "08DE2F1A3B4C5D01"
    assert eop.remote_port == 27716
    assert (eop.local_ip, eop.local_port) == ("10.10.20.11", 25)
    assert eop.ehlo == "NAM12-DM6-obe.outbound.protection.outlook.com"
    assert eop.banner.startswith("220 smtp.tailspintoys.ca Microsoft ESMTP")
    assert eop.starttls_offered is True
    assert eop.starttls_requested
    assert eop.tls_negotiated
    assert (eop.tls_protocol, eop.tls_cipher) == ("TLS 1.2", "CALG_AES_256")
    cert = eop.certificate
    assert cert is not None
    assert cert.subject == "CN=smtp.tailspintoys.ca"
    assert cert.issuer == "CN=R11, O=Let's Encrypt, C=US"
    assert cert.thumbprint == "3C5E8A1F9B2D4C6E8F0A1B3C5D7E9F1A2B4C6D8E"
    assert cert.serial == "0459A1B2C3D4E5F60718293A4B5C6D7E8F"
    assert cert.sans == (
        "smtp.tailspintoys.ca",
        "mail.tailspintoys.ca",
        "autodiscover.tailspintoys.ca",
    )
    assert cert.not_after_utc == datetime(2026, 11, 30, 8, 12, 44, tzinfo=UTC)
    assert cert.not_before_utc == datetime(2026, 9, 1, 8, 12, 45, tzinfo=UTC)
    assert eop.tls_domain_capabilities == "mail.protection.outlook.com:AcceptCloudServicesMail"
    assert eop.tls_domain_status == "Success"
    assert eop.mail_from == "noreply@fabrikam.com"
    assert eop.recipients == 1
    assert eop.message_ids == ("<PH0PR11MB5000.namprd11.prod.outlook.com>",)
    assert eop.internal_message_ids == ("1099511627801",)
    assert eop.outcome == "delivered"
    assert eop.disconnect_reason == "Local"
    assert eop.start_utc == datetime(2026, 11, 28, 14, 14, 0, tzinfo=UTC)
    assert eop.end_utc == datetime(2026, 11, 28, 14, 14, 0, 702000, tzinfo=UTC)
    assert eop.ref.line is not None
    assert ",+," in eop.ref.excerpt
    assert eop.notes == ("Client certificate chain validation status: 'Valid'",)


def test_hash_inside_a_row_is_data_not_a_comment() -> None:
    _kind, sessions, _spans, _ctx = read(FIXTURES / "RECV2026112814-1.LOG")
    session = by_remote(sessions)["104.47.58.101"]
    assert session.recipients == 1  # `RCPT TO:<ops#7@...>` was read
    assert session.outcome == "delivered"
    text = (FIXTURES / "RECV2026112814-1.LOG").read_text(encoding="utf-8-sig")
    assert "<ops#7@" in text
    assert session.events == text.count(",08DE2F1A3B4C5D02,") == 23


def test_ipv6_eop_endpoint_unbracketed() -> None:
    _kind, sessions, _spans, _ctx = read(FIXTURES / "RECV2026112814-1.LOG")
    session = by_remote(sessions)["2a01:111:f403:c10d::7"]
    assert session.remote_port == 1288
    assert session.ehlo.startswith("EUR05-")


def test_ehlo_reply_without_starttls() -> None:
    _kind, sessions, _spans, _ctx = read(FIXTURES / "RECV2026112814-1.LOG")
    session = by_remote(sessions)["52.100.165.12"]
    assert session.starttls_offered is False
    assert not session.starttls_requested
    assert not session.tls_negotiated
    assert session.certificate is None
    assert session.outcome == "disconnected"
    assert session.disconnect_reason == "Remote(ConnectionReset)"


def test_rejected_relay_and_span() -> None:
    _kind, sessions, spans, _ctx = read(FIXTURES / "RECV2026112814-1.LOG")
    relay = by_remote(sessions)["198.51.100.23"]
    assert relay.ehlo == "scanner01"
    assert relay.outcome == "rejected"
    assert relay.last_response == "530 5.7.1 Client was not authenticated"
    assert relay.starttls_offered is False
    [span] = spans
    assert span.server == "TSP-EX01"
    assert span.kind == "exchange.smtp_receive"
    assert span.first_utc == datetime(2026, 11, 28, 14, 14, 0, tzinfo=UTC)
    assert span.last_utc == datetime(2026, 11, 28, 14, 40, 0, 130000, tzinfo=UTC)
    assert span.records == sum(s.events for s in sessions)


def test_header_less_excerpt_recognised_by_row_shape() -> None:
    kind, sessions, spans, ctx = read(FIXTURES / "recv_noheader_excerpt.log")
    assert kind == "exchange.smtp_receive"
    [session] = sessions
    assert session.server == "TSP-EX02"
    assert session.outcome == "delivered"
    assert session.internal_message_ids == ("2199023255553",)
    assert "the session began before this file (no connect row)" in session.notes
    assert spans[0].server == "TSP-EX02"
    assert ctx.issues.issues == []


def test_repeated_header_after_service_restart() -> None:
    text = (FIXTURES / "RECV2026112815-1.LOG").read_text(encoding="utf-8-sig")
    assert text.count("#Fields:") == 2
    _kind, sessions, spans, ctx = read(FIXTURES / "RECV2026112815-1.LOG")
    assert ctx.issues.issues == []
    assert [s.outcome for s in sessions] == ["delivered", "delivered"]
    assert {s.remote_ip for s in sessions} == {"40.107.22.91", "40.93.7.4"}
    assert len(spans) == 1


def test_send_log_tls_and_localized_connectors() -> None:
    kind, sessions, _spans, ctx = read(FIXTURES / "SEND2026112814-1.LOG")
    assert kind == "exchange.smtp_send"
    assert ctx.issues.issues == []
    by_id = {s.session_id: s for s in sessions}
    exo = by_id["08DE2F1A3B4C8801"]
    assert exo.direction == "send"
    assert exo.connector.startswith("Outbound to Office 365 - ")
    assert exo.banner.startswith("220 BN8NAM11FT061.mail.protection.outlook.com")
    assert exo.ehlo == "smtp.tailspintoys.ca"
    assert exo.starttls_offered is True
    assert exo.starttls_requested
    assert exo.tls_negotiated
    assert exo.tls_protocol == "TLS 1.2"
    assert exo.remote_certificate is not None
    assert exo.remote_certificate.thumbprint == "6A1B2C3D4E5F60718293A4B5C6D7E8F9A0B1C2D3"
    assert exo.certificate is not None
    assert exo.certificate.subject == "CN=smtp.tailspintoys.ca"
    assert exo.mail_from == "dana.lee@tailspintoys.ca"
    assert exo.recipients == 1
    assert exo.outcome == "delivered"
    assert exo.notes == ()  # `attempting to connect` before `+` is how a send session starts
    refused = by_id["08DE2F1A3B4C8802"]
    assert refused.connector.startswith("Внутренний соединитель")
    assert refused.outcome == "connect_failed"
    assert "10061" in refused.last_response
    intra = by_id["08DE2F1A3B4C8803"]
    assert intra.connector == "组织内 SMTP 发送连接器"
    assert intra.starttls_offered is False
    assert intra.outcome == "disconnected"


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be", "utf-8"])
def test_resaved_encodings_and_lf(tmp_path: Path, codec: str) -> None:
    text = (FIXTURES / "RECV2026112814-1.LOG").read_text(encoding="utf-8-sig")
    bom = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE, "utf-8": b""}
    target = tmp_path / "RECV.LOG"
    target.write_bytes(bom[codec] + text.replace("\r\n", "\n").encode(codec))
    _kind, sessions, _spans, ctx = read(target)
    original = read(FIXTURES / "RECV2026112814-1.LOG")[1]
    assert [(s.session_id, s.outcome, s.certificate) for s in sessions] == [
        (s.session_id, s.outcome, s.certificate) for s in original
    ]
    assert ctx.issues.issues == []


def test_server_from_collected_path() -> None:
    assert server_from_path("evidence/EX02/FrontEnd/ProtocolLog/SmtpSend/SEND2026.LOG") == "EX02"
    assert server_from_path("logs.zip!EX03/SmtpReceive/RECV2026112814-1.LOG") == "EX03"
    assert server_from_path("EX04_RECV2026112814-1.LOG") == "EX04"
    assert server_from_path("RECV2026112814-1.LOG") == ""
    assert (
        server_from_path(r"C:\Program Files\Microsoft\Exchange Server\V15\TransportRoles\Logs")
        == ""
    )


def test_split_endpoint_forms() -> None:
    assert split_endpoint("10.0.0.6:25") == ("10.0.0.6", 25)
    assert split_endpoint("fe80::1:2:25") == ("fe80::1:2", 25)
    assert split_endpoint("[2001:db8::1]:587") == ("2001:db8::1", 587)
    assert split_endpoint("") == ("", None)
    assert split_endpoint("x.x.x.x:25") == ("x.x.x.x", 25)


def test_certificate_line_from_qazeer_shape() -> None:
    cert = parse_certificate(
        " CN=HOST CN=HOST 12DEABC6565646512346ABDC13456894 "
        "12DEABC6565646512346ABDC1345689413589876 2020-01-17T15:15:33.000Z "
        "2025-01-17T15:15:33.000Z HOST;HOST.DOMAIN.TEST",
        "Sending certificate Subject Issuer name Serial number Thumbprint Not before Not after "
        "Subject alternate names",
    )
    assert (cert.subject, cert.issuer) == ("CN=HOST", "CN=HOST")
    assert cert.sans == ("HOST", "HOST.DOMAIN.TEST")
    assert cert.not_after_utc == datetime(2025, 1, 17, 15, 15, 33, tzinfo=UTC)


def _open_sessions_log(path: Path, count: int, minutes_apart: int = 0) -> None:
    lines = [HEADER]
    for index in range(count):
        minute = (index * minutes_apart) % 60
        hour = 14 + (index * minutes_apart) // 60
        stamp = f"2026-11-28T{hour % 24:02d}:{minute:02d}:00.000Z"
        lines.append(
            f"{stamp},EX01\\Default Frontend EX01,{index:016X},0,10.0.0.5:25,"
            f"40.92.{index % 256}.{index % 250 + 1}:{1024 + index % 60000},+,,\r\n"
        )
    path.write_text("".join(lines), encoding="utf-8")


def test_memory_bounded_by_open_session_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sessions that never disconnect are handed over early, while the file is still read."""
    monkeypatch.setattr(smtp_protocol, "MAX_OPEN_SESSIONS", 50)
    path = tmp_path / "RECV.LOG"
    _open_sessions_log(path, 1000)
    ctx = ReadContext()
    stream = read_sessions(Document.open(path), ctx, "receive", "exchange.smtp_receive")
    first = next(stream)
    assert isinstance(first, SmtpSession)
    assert first.session_id == f"{0:016X}"
    assert "50 other sessions were open" in first.notes[-1]
    rest = list(stream)
    sessions = [first, *(r for r in rest if isinstance(r, SmtpSession))]
    assert len(sessions) == 1000
    assert len({s.session_id for s in sessions}) == 1000
    evicted = [s for s in sessions if any("other sessions were open" in n for n in s.notes)]
    assert len(evicted) == 950
    assert any("handed over early" in str(issue) for issue in ctx.issues.issues)


def test_idle_sessions_are_handed_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(smtp_protocol, "SWEEP_EVERY_ROWS", 1)
    path = tmp_path / "RECV.LOG"
    _open_sessions_log(path, 5, minutes_apart=40)
    records = list(
        read_sessions(Document.open(path), ReadContext(), "receive", "exchange.smtp_receive")
    )
    sessions = [r for r in records if isinstance(r, SmtpSession)]
    idle = [s for s in sessions if any("no row for 30 minutes" in n for n in s.notes)]
    assert len(idle) == 4  # the last one is still fresh when the file ends
    assert sessions[-1].outcome == "open"


def test_huge_line_and_binary_junk(tmp_path: Path) -> None:
    good = (FIXTURES / "RECV2026112814-1.LOG").read_bytes()
    junk = b"2026-11-28T14:00:00.000Z," + b"A" * 600_000 + b"\r\n" + bytes(range(256)) + b"\r\n"
    path = tmp_path / "RECV.LOG"
    path.write_bytes(good + junk + b'2026-11-28T14:59:00.000Z,EX01\\X,"unclosed,1\r\n')
    ctx = ReadContext()
    records = list(read_sessions(Document.open(path), ctx, "receive", "exchange.smtp_receive"))
    sessions = [r for r in records if isinstance(r, SmtpSession)]
    assert len([s for s in sessions if s.outcome == "delivered"]) == 4
    messages = [str(i) for i in ctx.issues.issues]
    assert any("longer than the reader's limit" in m for m in messages)


def test_unknown_fields_line_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "RECV.LOG"
    path.write_text(
        HEADER.replace("remote-endpoint,", "")
        + "2026-11-28T14:00:00.000Z,EX01\\A,0001,0,10.0.0.5:25,+,,\r\n",
        encoding="utf-8",
    )
    ctx = ReadContext()
    records = list(read_sessions(Document.open(path), ctx, "receive", "exchange.smtp_receive"))
    assert records == []
    assert "lacks the SMTP protocol log columns" in str(ctx.issues.issues[0])


# --- the row parser: property tests ----------------------------------------------------------

field_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"),
    max_size=40,
)


@given(st.lists(field_text, min_size=1, max_size=12))
def test_row_round_trip(fields: list[str]) -> None:
    assert split_row(join_row(fields)) == fields


@given(st.text(max_size=300))
def test_split_row_never_raises(line: str) -> None:
    result = split_row(line)
    assert isinstance(result, list)
    assert all(isinstance(v, str) for v in result)


row_strategy = st.tuples(
    st.sampled_from(["2026-11-28T14:00:00.000Z", "2026-11-28T14:00:01.5Z", "garbage", ""]),
    st.sampled_from(["EX01\\Default Frontend EX01", "Outbound to Office 365", "", "a,b"]),
    st.sampled_from(["08DE000000000001", "08DE000000000002", ""]),
    st.sampled_from(["0", "1", "x", ""]),
    st.sampled_from(["10.0.0.5:25", "", "fe80::1:25", "[::1]:25"]),
    st.sampled_from(["40.92.1.1:1234", "2a01:111:f400::1:25", "", "nonsense"]),
    st.sampled_from(["+", "-", "<", ">", "*", "?", ""]),
    field_text,
    field_text,
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(row_strategy, max_size=30), st.booleans())
def test_reader_never_raises_on_generated_rows(
    tmp_path: Path, rows: list[tuple[str, ...]], with_header: bool
) -> None:
    path = tmp_path / "RECV.LOG"
    text = (HEADER if with_header else "") + "".join(join_row(r) + "\r\n" for r in rows)
    path.write_text(text, encoding="utf-8")
    for direction in ("receive", "send"):
        records = list(read_sessions(Document.open(path), ReadContext(), direction, "k"))
        for record in records:
            assert isinstance(record, SmtpSession | LogSpan)


def test_row_shape_helpers() -> None:
    row = (
        "2024-03-13T09:01:18.723Z,EX\\Default Frontend EX,08DC42C8FF236A1F,0,"
        "1.1.1.1:25,2.2.2.2:1,+,,"
    )
    assert exchangelog.protocol_row_shape(row)
    assert not exchangelog.protocol_row_shape("#Fields: date-time,connector-id")
    assert not exchangelog.tracking_row_shape(row)


# --- conformance over the public samples -----------------------------------------------------


def test_every_protocol_log_sample_is_read(samples: Path) -> None:
    files = sorted(samples.glob("exchange/smtpreceive_*")) + sorted(
        samples.glob("exchange/smtpsend_*")
    )
    assert len(files) >= 9
    for path in files:
        kind, sessions, spans, ctx = read(path)
        expected = "exchange.smtp_receive" if "smtpreceive" in path.name else "exchange.smtp_send"
        assert kind == expected, path.name
        assert sessions, path.name
        assert spans, path.name
        assert ctx.issues.issues == [], path.name


def test_sample_starttls_session_facts(samples: Path) -> None:
    _kind, [session], _spans, _ctx = read(
        samples / "exchange/smtpreceive_2016_frontend_starttls_authfail_qazeer.log"
    )
    assert session.starttls_offered is True
    assert session.tls_negotiated
    assert session.tls_protocol == "TLS 1.2"
    assert session.tls_domain_capabilities == "None"
    assert session.tls_domain_status == "NoRemoteCertificate"
    assert session.certificate is not None
    assert session.certificate.sans == ("SERVER-HOSTNAME", "SERVER-HOSTNAME.DOMAIN.TEST")


def test_sample_send_connection_refused(samples: Path) -> None:
    _kind, sessions, _spans, _ctx = read(
        samples / "exchange/smtpsend_2016_frontend_inboundproxy_connrefused_10061_elastic.log"
    )
    assert any(s.outcome == "connect_failed" and "10061" in s.last_response for s in sessions)


def test_keep_remote_skips_sessions_but_not_coverage() -> None:
    doc = Document.open(FIXTURES / "RECV2026112814-1.LOG")
    all_records = list(read_sessions(doc, ReadContext(), "receive", "exchange.smtp_receive"))
    only = list(
        read_sessions(
            doc,
            ReadContext(),
            "receive",
            "exchange.smtp_receive",
            keep_remote=lambda endpoint: endpoint.startswith("52.100."),
        )
    )
    assert [r.remote_ip for r in only if isinstance(r, SmtpSession)] == ["52.100.165.12"]
    spans = [r for r in only if isinstance(r, LogSpan)]
    assert spans == [r for r in all_records if isinstance(r, LogSpan)]
