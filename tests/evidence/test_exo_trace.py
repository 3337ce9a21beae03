"""Exchange Online message trace readers on exports, pasted text, samples and bad input."""

from __future__ import annotations

import codecs
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailflow_doctor.diagnose.bundle import collect
from mailflow_doctor.evidence.document import Document, ReadContext
from mailflow_doctor.evidence.records import TraceEvent, TraceMessage
from mailflow_doctor.evidence.registry import best_reader, readers
from mailflow_doctor.knowledge.endpoints import load_bundled

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "trace"
EXO_KINDS = (
    "exo.message_trace",
    "exo.message_trace_detail",
    "exo.message_trace_detail_text",
    "exo.eac_summary_report",
    "exo.eac_extended_report",
    "exo.ndr_text",
)


def _read(path: Path, ctx: ReadContext | None = None) -> tuple[str, list[object], list[str]]:
    ctx = ctx or ReadContext()
    doc = Document.open(path)
    reader, _ = best_reader(doc)
    assert reader is not None, f"{path.name} not recognised"
    records = list(reader.read(doc, ctx))
    return reader.kind, records, [str(issue) for issue in ctx.issues.issues]


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _messages(records: list[object]) -> list[TraceMessage]:
    assert all(isinstance(r, TraceMessage) for r in records)
    return [r for r in records if isinstance(r, TraceMessage)]


def _events(records: list[object]) -> list[TraceEvent]:
    assert all(isinstance(r, TraceEvent) for r in records)
    return [r for r in records if isinstance(r, TraceEvent)]


# --- Get-MessageTrace -------------------------------------------------------------------------


def test_message_trace_en_us_export_csv() -> None:
    kind, records, issues = _read(FIXTURES / "messagetrace_en-US.csv")
    assert kind == "exo.message_trace"
    assert issues == []
    messages = _messages(records)
    assert [m.status for m in messages] == [
        "Delivered",
        "Pending",
        "Delivered",
        "Pending",
        "Failed",
        "Delivered",
        "Pending",
    ]
    first = messages[0]
    assert first.received_utc == datetime(2026, 11, 28, 20, 41, 7, tzinfo=UTC)
    assert (first.sender, first.recipient) == ("ana.ruiz@fabrikam.com", "orders@tailspintoys.ca")
    assert first.subject == "PO 4471, rush"
    assert (first.to_ip, first.from_ip, first.size) == ("203.0.113.25", "198.51.100.20", 48211)
    assert first.message_id == "<DM6PR11MB4000.namprd11.prod.outlook.com>"
    assert first.trace_id == "6f1c0000-4d2e-4b7a-9c1e-08dd0f2a0000"
    assert ("Organization", "tailspintoys.onmicrosoft.com") in first.extra
    assert "UTC" in first.time_assumed
    # #TYPE line 1, header line 2; the third message's subject spans two lines.
    assert [m.ref.line for m in messages] == [3, 4, 5, 7, 8, 9, 10]
    assert messages[2].subject == "Weekly report\nsecond line"
    assert messages[3].subject == "Re: samples <script>alert(1)</script>"
    assert messages[5].subject == 'Shipment "ASN" 88'
    assert messages[0].ref.excerpt.startswith('"outlook.office365.com"')


def test_message_trace_de_de_semicolon_matches_en_us() -> None:
    _, us_records, _ = _read(FIXTURES / "messagetrace_en-US.csv")
    kind, de_records, issues = _read(FIXTURES / "messagetrace_de-DE.csv")
    assert kind == "exo.message_trace"
    assert issues == []

    def key(m: TraceMessage) -> tuple[object, ...]:
        return (m.received_utc, m.recipient, m.status, m.to_ip, m.size)

    assert [key(m) for m in _messages(de_records)] == [key(m) for m in _messages(us_records)]


def test_message_trace_ambiguous_dates_are_flagged(tmp_path: Path) -> None:
    text = (
        '"Received";"SenderAddress";"RecipientAddress";"Subject";"Status"\r\n'
        '"03.04.2026 10:00:00";"a@fabrikam.com";"b@tailspintoys.ca";"x";"Pending"\r\n'
    )
    path = _write(tmp_path, "trace.csv", text.encode("cp1252"))
    kind, records, issues = _read(path)
    assert kind == "exo.message_trace"
    (message,) = _messages(records)
    assert message.received_utc == datetime(2026, 4, 3, 10, tzinfo=UTC)
    assert "day-first" in message.time_assumed
    assert any("tells day from month" in issue for issue in issues)


def test_message_trace_day_month_settled_by_sibling_columns(tmp_path: Path) -> None:
    text = (
        '"Received","SenderAddress","RecipientAddress","Status","StartDate","EndDate"\r\n'
        '"03/04/2026 10:00:00","a@fabrikam.com","b@tailspintoys.ca","Pending",'
        '"25/03/2026 10:00:00","04/04/2026 10:00:00"\r\n'
    )
    _, records, issues = _read(_write(tmp_path, "gb.csv", text.encode()))
    (message,) = _messages(records)
    assert message.received_utc == datetime(2026, 4, 3, 10, tzinfo=UTC)
    assert issues == []


def test_graph_style_detail_columns(tmp_path: Path) -> None:
    text = (
        "dateTime,event,action,description,data\n"
        '2026-11-28T20:44:23Z,Defer,,"Reason: [{LED=450 4.4.315 Connection timed out};'
        '{MSG=};{FQDN=smtp.tailspintoys.ca};{IP=203.0.113.25};{LRT=}]",\n'
    )
    kind, records, issues = _read(_write(tmp_path, "graph.csv", text.encode()))
    assert kind == "exo.message_trace_detail"
    assert issues == []
    (event,) = _events(records)
    assert event.reason is not None
    assert (event.reason.code, event.reason.ip) == ("4.4.315", "203.0.113.25")
    assert event.time_utc == datetime(2026, 11, 28, 20, 44, 23, tzinfo=UTC)


def test_message_trace_convertto_json_array(tmp_path: Path) -> None:
    text = """[
    {
        "Organization":  "tailspintoys.onmicrosoft.com",
        "MessageId":  "<a@fabrikam.com>",
        "Received":  "\\/Date(1795898467000)\\/",
        "SenderAddress":  "a@fabrikam.com",
        "RecipientAddress":  "ap@tailspintoys.ca",
        "Subject":  null,
        "Status":  "Pending",
        "ToIP":  null,
        "FromIP":  "198.51.100.21",
        "Size":  120344,
        "MessageTraceId":  "6f1c0001-4d2e-4b7a-9c1e-08dd0f2a0001"
    },
    {
        "Received":  "2026-11-28T20:41:07.1234567",
        "SenderAddress":  "b@fabrikam.com",
        "RecipientAddress":  "orders@tailspintoys.ca",
        "Status":  "Delivered"
    }
]
"""
    path = _write(tmp_path, "trace.json", codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    kind, records, issues = _read(path)
    assert kind == "exo.message_trace"
    assert issues == []
    first, second = _messages(records)
    assert first.received_utc == datetime(2026, 11, 28, 20, 41, 7, tzinfo=UTC)
    assert (first.status, first.subject, first.size) == ("Pending", "", 120344)
    assert (first.ref.line, second.ref.line) == (2, 15)
    assert second.received_utc == datetime(2026, 11, 28, 20, 41, 7, 123456, tzinfo=UTC)


def test_compressed_json_on_one_long_line(tmp_path: Path) -> None:
    item = (
        '{"Received":"2026-11-28T20:41:07Z","SenderAddress":"a@fabrikam.com",'
        '"RecipientAddress":"ap@tailspintoys.ca","Subject":"%s","Status":"Pending"}'
    )
    text = "[" + ",".join(item % n for n in range(3000)) + "]"
    assert len(text) > 300_000
    kind, records, issues = _read(_write(tmp_path, "trace.json", text.encode()))
    assert kind == "exo.message_trace"
    assert issues == []
    messages = _messages(records)
    assert len(messages) == 3000
    assert messages[-1].subject == "2999"
    assert {m.ref.line for m in messages} == {1}


def test_json_lines_with_a_broken_line(tmp_path: Path) -> None:
    good = '{"Received":"2026-11-28T20:41:07Z","RecipientAddress":"a@x.ca","Status":"Delivered"}'
    path = _write(tmp_path, "trace.log", f"{good}\n{{broken\n{good}\n".encode())
    kind, records, issues = _read(path)
    assert kind == "exo.message_trace"
    assert [m.ref.line for m in _messages(records)] == [1, 3]
    assert any(issue.startswith("line 2: not valid JSON") for issue in issues)


# --- Get-MessageTraceDetail -------------------------------------------------------------------


def test_detail_en_us_parses_defer_reasons() -> None:
    kind, records, issues = _read(FIXTURES / "messagetracedetail_en-US.csv")
    assert kind == "exo.message_trace_detail"
    assert issues == []
    events = _events(records)
    assert [e.event for e in events] == [
        "Receive",
        "Submit",
        "Defer",
        "Defer",
        "Receive",
        "Send external",
        "Receive",
        "Fail",
    ]
    defer = events[2]
    assert defer.time_utc == datetime(2026, 11, 28, 20, 44, 23, tzinfo=UTC)
    assert defer.recipient == "ap@tailspintoys.ca"
    assert defer.sender == "billing@contoso.com"
    assert defer.trace_id == "6f1c0001-4d2e-4b7a-9c1e-08dd0f2a0001"
    assert defer.reason is not None
    assert defer.reason.code == "4.4.316"
    assert (defer.reason.ip, defer.reason.port) == ("203.0.113.25", 25)
    assert defer.reason.socket_error == 10061
    assert defer.reason.eop_server == "BN1NAM02FT012.eop-nam02.prod.protection.outlook.com"
    assert defer.reason.last_retry_utc == defer.time_utc
    assert 'Integer="10061"' in defer.data
    assert events[0].reason is None
    fail = events[7]
    assert fail.reason is not None
    assert (fail.reason.code, fail.reason.expired) == ("5.4.316", True)
    assert fail.time_utc == datetime(2026, 11, 29, 20, 56, 36, tzinfo=UTC)


def test_detail_nl_nl_utf16_matches_en_us() -> None:
    _, us_records, _ = _read(FIXTURES / "messagetracedetail_en-US.csv")
    kind, nl_records, issues = _read(FIXTURES / "messagetracedetail_nl-NL.csv")
    assert kind == "exo.message_trace_detail"
    assert issues == []

    def key(e: TraceEvent) -> tuple[object, ...]:
        return (e.time_utc, e.event, e.detail, e.reason)

    assert [key(e) for e in _events(nl_records)] == [key(e) for e in _events(us_records)]


def test_detail_format_list_text_matches_csv() -> None:
    _, csv_records, _ = _read(FIXTURES / "messagetracedetail_en-US.csv")
    kind, records, issues = _read(FIXTURES / "messagetracedetail_fl.txt")
    assert kind == "exo.message_trace_detail_text"
    assert issues == []
    events = _events(records)
    expected = _events(csv_records)[:4]
    assert [(e.time_utc, e.event, e.detail, e.recipient) for e in events] == [
        (e.time_utc, e.event, e.detail, e.recipient) for e in expected
    ]
    assert events[2].reason == expected[2].reason
    assert events[2].ref.line == 25


def test_detail_format_table_text(tmp_path: Path) -> None:
    text = (
        "\r\n"
        "Date                   Event   Action Detail\r\n"
        "----                   -----   ------ ------\r\n"
        "11/28/2026 8:44:14 PM  Receive        Message received by: BN1PR11MB0001.nam...\r\n"
        "11/28/2026 8:44:23 PM  Defer          Reason: [{LED=450 4.4.316 Connection ref...\r\n"
    )
    kind, records, issues = _read(_write(tmp_path, "ft.txt", text.encode()))
    assert kind == "exo.message_trace_detail_text"
    assert issues == []
    receive, defer = _events(records)
    assert receive.time_utc == datetime(2026, 11, 28, 20, 44, 14, tzinfo=UTC)
    assert (defer.event, defer.ref.line) == ("Defer", 5)
    assert defer.reason is not None
    assert defer.reason.code == "4.4.316"


def test_format_table_with_odd_dashes(tmp_path: Path) -> None:
    text = "Date  Event Detail\n----  ----- ------ ------- ---\n1/2/2026 1:00 PM Defer x\n"
    kind, records, _ = _read(_write(tmp_path, "ft.txt", text.encode()))
    assert kind == "exo.message_trace_detail_text"
    assert len(records) == 1


def test_detail_json(tmp_path: Path) -> None:
    text = (
        '[{"Date":"2026-11-28T20:44:23.0000000Z","Event":"Defer","Action":null,'
        '"Detail":"Reason: [{LED=450 4.4.316 Connection refused};{MSG=Socket error code 10061};'
        '{FQDN=smtp.tailspintoys.ca};{IP=203.0.113.25};{LRT=11/28/2026 8:44:23 PM}]","Data":""}]'
    )
    kind, records, _ = _read(_write(tmp_path, "detail.json", text.encode()))
    assert kind == "exo.message_trace_detail"
    (event,) = _events(records)
    assert event.reason is not None
    assert (event.reason.socket_error, event.reason.ip) == (10061, "203.0.113.25")
    assert event.time_utc == datetime(2026, 11, 28, 20, 44, 23, tzinfo=UTC)


def test_message_trace_format_list_text(tmp_path: Path) -> None:
    text = (
        "\r\n"
        "Organization     : tailspintoys.onmicrosoft.com\r\n"
        "MessageId        : <a@fabrikam.com>\r\n"
        "Received         : 28.11.2026 20:44:14\r\n"
        "SenderAddress    : billing@contoso.com\r\n"
        "RecipientAddress : ap@tailspintoys.ca\r\n"
        "Subject          : Invoice 2026-1183\r\n"
        "Status           : Pending\r\n"
        "\r\n"
        "Organization     : tailspintoys.onmicrosoft.com\r\n"
        "MessageId        : <b@fabrikam.com>\r\n"
        "Received         : 28.11.2026 20:41:07\r\n"
        "SenderAddress    : ana.ruiz@fabrikam.com\r\n"
        "RecipientAddress : orders@tailspintoys.ca\r\n"
        "Subject          : PO 4471, rush\r\n"
        "Status           : Delivered\r\n"
    )
    kind, records, issues = _read(_write(tmp_path, "fl.txt", text.encode()))
    assert kind == "exo.message_trace"
    assert issues == []
    pending, delivered = _messages(records)
    assert (pending.status, pending.ref.line) == ("Pending", 2)
    assert delivered.received_utc == datetime(2026, 11, 28, 20, 41, 7, tzinfo=UTC)
    assert delivered.ref.line == 10


def test_message_trace_console_table_text(tmp_path: Path) -> None:
    text = (
        "PS C:\\> Get-MessageTrace -RecipientAddress ap@tailspintoys.ca\r\n"
        "\r\n"
        "Received            Sender Address      Recipient Address  Subject      Status\r\n"
        "--------            --------------      -----------------  -------      ------\r\n"
        "28/11/2026 20:44:14 billing@contoso.com ap@tailspintoys.ca Invoice 1183 Pending\r\n"
        "03/11/2026 09:12:00 ana@fabrikam.com    ap@tailspintoys.ca Re: samples, Delivered\r\n"
        "                                                           second line\r\n"
    )
    kind, records, issues = _read(_write(tmp_path, "console.txt", text.encode()))
    assert kind == "exo.message_trace"
    assert issues == []
    pending, delivered = _messages(records)
    assert pending.received_utc == datetime(2026, 11, 28, 20, 44, 14, tzinfo=UTC)
    assert (pending.sender, pending.status, pending.ref.line) == (
        "billing@contoso.com",
        "Pending",
        5,
    )
    assert delivered.received_utc == datetime(2026, 11, 3, 9, 12, tzinfo=UTC)
    assert delivered.subject == "Re: samples, second line"


def test_eac_panel_copy_uses_the_time_zone(tmp_path: Path) -> None:
    text = "Nov 28, 2026 9:44:23 PM\n\nDefer\n\nReason: [{LED=450 4.4.316 Connection refused}]\n"
    ctx = ReadContext(timezone=ZoneInfo("Europe/Berlin"))
    kind, records, _ = _read(_write(tmp_path, "panel.txt", text.encode()), ctx)
    assert kind == "exo.message_trace_detail_text"
    (event,) = _events(records)
    assert event.time_utc == datetime(2026, 11, 28, 20, 44, 23, tzinfo=UTC)
    assert "Europe/Berlin" in event.time_assumed
    assert event.reason is not None
    assert event.reason.code == "4.4.316"


# --- EAC reports ------------------------------------------------------------------------------


def test_eac_enhanced_summary_utf16() -> None:
    kind, records, issues = _read(FIXTURES / "eac_enhanced_summary.csv")
    assert kind == "exo.eac_summary_report"
    assert issues == []
    messages = _messages(records)
    assert len(messages) == 8
    assert [m.status for m in messages] == [
        "Delivered",
        "Delivered",
        "Pending",
        "Delivered",
        "Pending",
        "Failed",
        "Delivered",
        "Pending",
    ]
    assert messages[1].recipient == '"Ana Ruiz<ana"@tailspintoys.ca'
    assert messages[0].received_utc == datetime(2026, 11, 28, 20, 41, 7, 123456, tzinfo=UTC)
    assert ("events", "Receive, Defer, Fail") in messages[5].extra
    assert messages[5].time_assumed == ""
    assert [m.ref.line for m in messages][:3] == [2, 2, 3]


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-8-sig", "cp1252"])
def test_eac_summary_in_other_encodings(tmp_path: Path, encoding: str) -> None:
    text = (FIXTURES / "eac_enhanced_summary.csv").read_bytes()[2:].decode("utf-16-le")
    if encoding == "utf-16-be":
        data = codecs.BOM_UTF16_BE + text.encode(encoding)
    else:
        data = text.encode(encoding)  # utf-16-le here has no BOM: found by its NUL pattern
    kind, records, issues = _read(_write(tmp_path, "summary.csv", data))
    assert kind == "exo.eac_summary_report"
    assert issues == []
    assert len(_messages(records)) == 8


def test_eac_extended_report_utf16() -> None:
    kind, records, issues = _read(FIXTURES / "eac_extended_report.csv")
    assert kind == "exo.eac_extended_report"
    assert issues == []
    events = _events(records)
    assert [(e.event, e.recipient) for e in events] == [
        ("RECEIVE", "ap@tailspintoys.ca"),
        ("DEFER", "ap@tailspintoys.ca"),
        ("DEFER", "ap@tailspintoys.ca"),
        ("DEFER", "ar@tailspintoys.ca"),
        ("SENDEXTERNAL", "ap@tailspintoys.ca"),
    ]
    reasons = [e.reason for e in events[1:4]]
    assert all(r is not None and r.code == "4.4.316" for r in reasons)
    assert [r.eop_session_id for r in reasons if r is not None] == [
        "08DD0F2A11C40001",
        "08DD0F2A11C40002",
        "08DD0F2A11C40003",
    ]
    assert events[4].reason is not None
    assert events[4].reason.code == "2.6.0"
    assert ("connector_id", "Outbound to 6f1c-Hybrid") in events[1].extra
    assert events[1].action == "SMTP"


# --- NDR text ---------------------------------------------------------------------------------


def test_ndr_text_hops() -> None:
    kind, records, issues = _read(FIXTURES / "ndr_5.4.316.txt")
    assert kind == "exo.ndr_text"
    assert issues == []
    fail, defer = _events(records)
    assert (fail.event, defer.event) == ("Fail", "Defer")
    assert fail.time_utc == datetime(2026, 11, 29, 21, 56, 50, tzinfo=UTC)
    assert defer.reason is not None
    assert defer.reason.inner == "Socket error code 10061"
    assert (defer.reason.ip, defer.reason.socket_error) == ("203.0.113.25", 10061)
    assert defer.ref.line == 11


# --- the whole intake: every fixture goes to the right reader ---------------------------------


def test_collect_assigns_every_fixture_its_kind() -> None:
    bundle = collect([FIXTURES], load_bundled())
    kinds = {Path(f.path).name: f.kind for f in bundle.files}
    assert kinds == {
        "eac_enhanced_summary.csv": "exo.eac_summary_report",
        "eac_extended_report.csv": "exo.eac_extended_report",
        "messagetrace_de-DE.csv": "exo.message_trace",
        "messagetrace_en-US.csv": "exo.message_trace",
        "messagetracedetail_en-US.csv": "exo.message_trace_detail",
        "messagetracedetail_fl.txt": "exo.message_trace_detail_text",
        "messagetracedetail_nl-NL.csv": "exo.message_trace_detail",
        "ndr_5.4.316.txt": "exo.ndr_text",
    }
    assert all(f.warnings == [] for f in bundle.files)
    assert len(bundle.of(TraceMessage)) == 7 + 7 + 8


# --- conformance over the public samples ------------------------------------------------------

SAMPLE_KINDS = {
    "exo_get_messagetrace_exportcsv_header_remoteps.csv": ("exo.message_trace", 0),
    "exo_messagetrace_object_json_elastic_test-log.log": ("exo.message_trace", 1),
    "exo_reportingws_messagetrace_odata_sekoia_1.json": ("exo.message_trace", 1),
    "exo_reportingws_messagetrace_odata_sekoia_2.json": ("exo.message_trace", 1),
    "exo_enhanced_summary_report_row_fl_tostka_2021.txt": ("exo.eac_summary_report", 2),
    "exo_extended_report_row_fl_deliver_tostka_2021.txt": ("exo.eac_extended_report", 1),
    "synthetic/SYNTHETIC_exo_enhanced_summary_report_header_only_utf16le_bom.csv": (
        "exo.eac_summary_report",
        0,
    ),
    "synthetic/SYNTHETIC_exo_extended_report_header_only_utf16le_bom.csv": (
        "exo.eac_extended_report",
        0,
    ),
    "exo_message_events_table_oof_drop_qa_2020.txt": ("exo.message_trace_detail_text", 5),
    "exo_event_defer_detail_4.4.316_rmilne_2018_truncated.txt": (
        "exo.message_trace_detail_text",
        1,
    ),
    "exo_event_defer_detail_4.4.316_truncated_qa1377740.txt": ("exo.message_trace_detail_text", 1),
    "exo_event_defer_detail_4.4.316_userquoted_qa218686.txt": ("exo.message_trace_detail_text", 1),
    "exo_event_defer_detail_4.4.317_subjectmismatch_ms_jp_blog.txt": (
        "exo.message_trace_detail_text",
        1,
    ),
    "exo_event_defer_detail_4.4.317_tls_answersms_2023.txt": ("exo.message_trace_detail_text", 1),
    "exo_event_defer_detail_4.7.23_full_qa2149611.txt": ("exo.message_trace_detail_text", 1),
    "ndr_exo_4.4.312_dns_2019.txt": ("exo.ndr_text", 2),
    "ndr_exo_4.4.317_5.4.317_socketerror_serverfault_1091875.txt": ("exo.ndr_text", 2),
    "ndr_exo_4.4.317_lastattemptedip_smtpsecurity_2026.txt": ("exo.ndr_text", 2),
    "ndr_exo_4.4.317_starttls_required_2020.txt": ("exo.ndr_text", 2),
    "ndr_onprem_451_4.4.0_primary_target_qa_2020.txt": ("exo.ndr_text", 1),
}


@pytest.mark.parametrize(("name", "expected"), sorted(SAMPLE_KINDS.items()))
def test_every_trace_sample_is_recognised_and_read(
    samples: Path, name: str, expected: tuple[str, int]
) -> None:
    kind, records, issues = _read(samples / "exchange" / name)
    assert (kind, len(records)) == expected
    assert issues == []


def test_defer_detail_samples_give_defer_events_with_codes(samples: Path) -> None:
    folder = samples / "exchange"
    codes = {}
    for path in sorted(folder.glob("exo_event_defer_detail_*.txt")):
        _, records, _ = _read(path)
        (event,) = _events(records)
        assert event.event == "Defer"
        assert event.reason is not None
        codes[path.name.split("_")[4]] = event.reason.code
    assert codes == {"4.4.316": "4.4.316", "4.4.317": "4.4.317", "4.7.23": "4.7.23"}


def test_no_exo_reader_claims_other_exchange_samples(samples: Path) -> None:
    for path in sorted((samples / "exchange").glob("*")):
        if not path.is_file() or path.name.startswith(("exo_", "ndr_")):
            continue
        doc = Document.open(path)
        for kind in EXO_KINDS:
            score = readers()[kind].sniff(doc)
            assert score <= 40, f"{kind} claims {path.name} with {score}"


# --- malformed, truncated, mis-encoded and hostile input --------------------------------------


def test_truncated_export_reads_what_is_there(tmp_path: Path) -> None:
    data = (FIXTURES / "messagetrace_en-US.csv").read_bytes()
    cut = data[: data.index(b"Invoice 2026-1184") + 5]
    kind, records, issues = _read(_write(tmp_path, "cut.csv", cut))
    assert kind == "exo.message_trace"
    messages = _messages(records)
    assert len(messages) == 7
    assert messages[-1].status == ""
    assert any("line 10: row has" in issue for issue in issues)


def test_mis_encoded_and_bad_values_warn_and_go_on(tmp_path: Path) -> None:
    text = (
        b'"Received","SenderAddress","RecipientAddress","Subject","Status"\r\n'
        b'"11/28/2026 9:03:11 PM","a@fabrikam.com","b@tailspintoys.ca","Gr\xfc\xdfe","Pending"\r\n'
        b'"yesterday","a@fabrikam.com","b@tailspintoys.ca","x","Pending"\r\n'
        b'"11/28/2026 9:05:11 PM","a@fabrikam.com"\r\n'
        b'"11/28/2026 9:06:11 PM","c@fabrikam.com","d@tailspintoys.ca","y","Delivered"\r\n'
    )
    kind, records, issues = _read(_write(tmp_path, "latin.csv", text))
    assert kind == "exo.message_trace"
    messages = _messages(records)
    assert [m.subject for m in messages] == ["Grüße", "x", "", "y"]
    assert messages[1].received_utc is None
    assert messages[3].received_utc == datetime(2026, 11, 28, 21, 6, 11, tzinfo=UTC)
    assert any("line 3: time 'yesterday'" in issue for issue in issues)
    assert any("line 4: row has 2 fields" in issue for issue in issues)


def test_hostile_detail_export(tmp_path: Path) -> None:
    huge = "A" * (10 * 1024 * 1024)
    lines = [
        '"Date","Event","Action","Detail","Data"',
        f'"11/28/2026 8:44:23 PM","Defer","","Reason: [{{LED=450 4.4.316 {huge}","<x>"',
        '"11/28/2026 8:44:24 PM","Receive","","<script>alert(1)</script>\x00",""',
        '"11/28/2026 8:44:25 PM","Defer","","Reason: [{LED=450 4.4.316 Connection refused}]",""',
    ]
    kind, records, issues = _read(_write(tmp_path, "hostile.csv", "\n".join(lines).encode()))
    assert kind == "exo.message_trace_detail"
    events = _events(records)
    assert events[-1].reason is not None
    assert events[-1].reason.text == "Connection refused"
    assert events[-2].detail == "<script>alert(1)</script>"
    assert all(len(e.detail) <= 64 * 1024 for e in events)
    assert any("longer than" in issue for issue in issues)


@settings(
    deadline=None, max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cut=st.integers(0, 7000), noise=st.binary(max_size=40))
def test_damaged_fixtures_never_raise(tmp_path: Path, cut: int, noise: bytes) -> None:
    for name in ("messagetrace_en-US.csv", "eac_extended_report.csv", "messagetracedetail_fl.txt"):
        data = (FIXTURES / name).read_bytes()
        path = _write(tmp_path, "damaged-" + name, data[:cut] + noise + data[cut:][: len(noise)])
        doc = Document.open(path)
        for kind in EXO_KINDS:
            reader = readers()[kind]
            reader.sniff(doc)
            for record in reader.read(doc, ReadContext()):
                assert record.ref.path == str(path)  # type: ignore[attr-defined]


_TEXTISH = st.lists(
    st.sampled_from(
        [
            "Date : 11/28/2026 9:03:11 PM",
            "Event : Defer",
            "Detail : Reason: [{LED=450 4.4.316 x",
            "Received,SenderAddress,RecipientAddress,Status",
            '"11/28/2026 9:03:11 PM","a@x","b@y","Pending"',
            "----  -----  ------",
            "Date  Event  Detail",
            "Nov 28, 2026 9:03:11 PM",
            "Defer",
            "11/28/2026 9:03:11 PM - Server at x (203.0.113.25) returned '450 4.4.316",
            "[{",
            '"',
            "",
            "   continued",
            '{"Received": ',
            "]",
        ]
    ),
    max_size=25,
).map("\n".join)


@settings(
    deadline=None, max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.one_of(_TEXTISH, st.text(max_size=300)))
def test_every_exo_reader_survives_any_text(tmp_path: Path, text: str) -> None:
    path = _write(tmp_path, "any.txt", text.encode("utf-8", errors="replace"))
    doc = Document.open(path)
    for kind in EXO_KINDS:
        reader = readers()[kind]
        assert 0 <= reader.sniff(doc) <= 100
        for record in reader.read(doc, ReadContext()):
            assert isinstance(record, TraceMessage | TraceEvent)
