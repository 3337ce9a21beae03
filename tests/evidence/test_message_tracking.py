"""Message tracking: raw MSGTRK logs (all field sets) and Get-MessageTrackingLog exports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailflow_doctor.evidence.culturetime import DateOrder
from mailflow_doctor.evidence.document import Document, ReadContext
from mailflow_doctor.evidence.exchangelog import join_row
from mailflow_doctor.evidence.readers.message_tracking import (
    MessageTrackingReader,
    infer_offset,
    powershell_collection,
    split_statuses,
)
from mailflow_doctor.evidence.records import LogSpan, TrackingEvent
from mailflow_doctor.evidence.registry import best_reader

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tracking"
SMTPLOGS = Path(__file__).resolve().parents[1] / "fixtures" / "smtplogs"


def read(
    path: Path, ctx: ReadContext | None = None
) -> tuple[str, list[TrackingEvent], list[LogSpan], ReadContext]:
    doc = Document.open(path)
    reader, _score = best_reader(doc)
    assert reader is not None, f"{path.name} not recognised"
    context = ctx or ReadContext()
    records = list(reader.read(doc, context))
    events = [r for r in records if isinstance(r, TrackingEvent)]
    spans = [r for r in records if isinstance(r, LogSpan)]
    return reader.kind, events, spans, context


def test_raw_2019_log_events_reasons_and_span() -> None:
    kind, events, spans, ctx = read(FIXTURES / "MSGTRK2026112814-1.LOG")
    assert kind == "exchange.message_tracking"
    assert ctx.issues.issues == []
    receive, defer, fail, send = events
    assert receive.event_id == "RECEIVE"
    assert receive.time_utc == datetime(2026, 11, 28, 14, 14, 0, 640000, tzinfo=UTC)
    assert receive.source_context == "08DE2F1A3B4C6E10;2026-11-28T14:49:59.870Z;1"
    assert receive.internal_message_id == "2199023255553"
    assert receive.message_subject == "Q4 forecast, final (#2)"  # quoted, comma and '#'
    assert receive.original_client_ip == "40.92.18.75"
    assert receive.connector_id == "TSP-EX02\\Default TSP-EX02"
    assert receive.reason is None
    assert ("schema-version", "15.02.1544.004") in receive.extra
    assert defer.recipients == ("ops@tailspintoys.ca", "dana.lee@tailspintoys.ca")
    assert len(defer.recipient_status) == 2
    assert defer.recipient_status[0].startswith("[{LRT=11/28/2026 2:15:59 PM};{LED=451 4.4.0")
    assert defer.reason is not None
    assert defer.reason.code == "4.4.0"
    assert defer.reason.ip == "10.10.20.30"
    assert fail.recipient_status == (
        "550 4.4.7 QUEUE.Expired;Message expired, connection refused(Socket error code 10061)",
    )
    assert fail.reason is not None
    assert fail.reason.socket_error == 10061
    assert send.event_id == "SENDEXTERNAL"
    assert send.reason is None  # 250 is not a failure
    # The SENDEXTERNAL row names no client host: it belongs to the file's one server.
    assert [(s.server, s.records) for s in spans] == [("TSP-EX02", 4)]


def test_raw_receive_event_joins_the_protocol_session() -> None:
    """source-context of RECEIVE is the protocol log's `receiving message` data."""
    _kind, events, _spans, _ctx = read(FIXTURES / "MSGTRK2026112814-1.LOG")
    protocol = (SMTPLOGS / "recv_noheader_excerpt.log").read_text(encoding="utf-8")
    assert f",{events[0].source_context},receiving message" in protocol
    assert f"[InternalId={events[0].internal_message_id}," in protocol


def test_header_less_2010_excerpt_by_field_count() -> None:
    kind, events, spans, ctx = read(FIXTURES / "msgtrk2010_excerpt.log")
    assert kind == "exchange.message_tracking"
    assert [e.event_id for e in events] == ["DEFER", "DELIVER"]
    assert events[0].message_subject == "hello, world"
    assert events[0].reason is not None
    assert events[0].reason.code == "4.4.0"
    assert events[0].network_message_id == ""  # no such column in 2010
    assert spans[0].server == "EX2010"
    assert ctx.issues.issues == []


def test_format_list_offset_from_source_context() -> None:
    kind, events, _spans, ctx = read(FIXTURES / "getmessagetrackinglog_fl_engb.txt")
    assert kind == "exchange.message_tracking"
    receive, defer = events
    # 28/11/2026 15:14:00 in a UTC+1 shell; SourceContext says 14:13:59.870Z.
    assert receive.time_utc == datetime(2026, 11, 28, 14, 14, 0, tzinfo=UTC)
    assert "UTC+1" in receive.time_assumed
    assert receive.recipients == ("dana.lee@tailspintoys.ca", "ops@tailspintoys.ca")
    assert receive.recipient_status == ("", "")
    assert defer.time_utc == datetime(2026, 11, 28, 14, 16, 2, tzinfo=UTC)
    assert defer.reason is not None
    assert defer.reason.fqdn == "mbx01.tailspintoys.local"
    assert ctx.issues.issues == []


def test_export_csv_us_culture_and_string_array_warning() -> None:
    _kind, events, _spans, ctx = read(FIXTURES / "getmessagetrackinglog_export.csv")
    receive, defer = events
    # 11/28/2026 9:14:00 AM in a UTC-5 shell.
    assert receive.time_utc == datetime(2026, 11, 28, 14, 14, 0, tzinfo=UTC)
    assert defer.time_utc == datetime(2026, 11, 28, 14, 16, 2, tzinfo=UTC)
    assert receive.recipients == ()
    assert "System.String[]" in str(ctx.issues.issues[0])


def test_use_culture_csv_with_timezone() -> None:
    ctx = ReadContext(timezone=timezone(timedelta(hours=1)))
    _kind, events, _spans, _ctx = read(FIXTURES / "getmessagetrackinglog_dede.csv", ctx)
    defer, deliver = events
    assert defer.time_utc == datetime(2026, 11, 28, 14, 16, 2, tzinfo=UTC)
    assert defer.reason is not None
    assert defer.reason.ip == "10.10.20.30"
    assert deliver.recipients == ("ops@tailspintoys.ca", "dana.lee@tailspintoys.ca")
    _k, plain, _s, _c = read(FIXTURES / "getmessagetrackinglog_dede.csv")
    assert plain[0].time_utc == datetime(2026, 11, 28, 15, 16, 2, tzinfo=UTC)
    assert "read as UTC" in plain[0].time_assumed


def test_status_and_collection_splitting() -> None:
    assert split_statuses("250 2.1.5 Recipient OK;550 5.1.1 User unknown") == [
        "250 2.1.5 Recipient OK",
        "550 5.1.1 User unknown",
    ]
    assert split_statuses("To;Cc") == ["To", "Cc"]
    assert split_statuses("[{LRT=};{LED=550 5.7.1 X; y};{FQDN=};{IP=}]") == [
        "[{LRT=};{LED=550 5.7.1 X; y};{FQDN=};{IP=}]"
    ]
    assert powershell_collection("{a@x, b@y}") == ["a@x", "b@y"]
    assert powershell_collection("{}") == []
    assert powershell_collection("{[{LRT=};{LED=4.4.7, late};{IP=}]}") == [
        "[{LRT=};{LED=4.4.7, late};{IP=}]"
    ]


def test_infer_offset_picks_the_only_consistent_order() -> None:
    found = infer_offset("06/09/2015 01:02:44", "08D2A38562DD7452;2015-09-06T00:02:44.134Z;0")
    assert found == (timedelta(hours=1), DateOrder.DMY)
    assert infer_offset("06/09/2015 01:02:44", "ContentConversion") is None


@given(st.text(max_size=200))
def test_split_statuses_never_raises(text: str) -> None:
    parts = split_statuses(text)
    assert all(isinstance(p, str) for p in parts)


def test_binary_junk_is_not_tracking(tmp_path: Path) -> None:
    path = tmp_path / "MSGTRK.LOG"
    path.write_bytes(bytes(range(256)) * 64)
    doc = Document.open(path)
    reader, score = best_reader(doc)
    assert reader is None or reader.kind != "exchange.message_tracking" or score == 0


def test_every_tracking_sample_is_read(samples: Path) -> None:
    files = sorted(samples.glob("exchange/msgtrk_*")) + sorted(
        samples.glob("exchange/getmessagetrackinglog_*")
    )
    assert len(files) >= 7
    for path in files:
        kind, events, _spans, ctx = read(path)
        assert kind == "exchange.message_tracking", path.name
        assert events, path.name
        assert all(e.event_id for e in events), path.name
        assert ctx.issues.issues == [], path.name


def test_sample_fail_reason_and_2016_receive(samples: Path) -> None:
    _k, [fail], _s, _c = read(
        samples / "exchange/getmessagetrackinglog_fl_fail_recipientstatus_nauplius.txt"
    )
    assert fail.reason is not None
    assert fail.reason.code == "5.7.1"
    _k, events, _s, _c = read(samples / "exchange/msgtrk_2016_2019_elastic_fixture_noheader.log")
    receive = next(e for e in events if e.event_id == "RECEIVE")
    assert receive.source_context == "08DC1DB12C345BE5;2024-01-25T15:16:09.544Z;0"
    assert {e.event_id for e in events} >= {"HAREDIRECTFAIL", "SENDEXTERNAL", "NOTIFYMAPI"}


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.lists(
            st.text(
                alphabet=st.characters(
                    blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"
                ),
                max_size=20,
            ),
            min_size=1,
            max_size=31,
        ),
        max_size=15,
    ),
    st.booleans(),
)
def test_raw_reader_never_raises(tmp_path: Path, rows: list[list[str]], header: bool) -> None:
    text = (FIXTURES / "MSGTRK2026112814-1.LOG").read_text(encoding="utf-8-sig")
    lines = text.split("\r\n")[:5] if header else []
    for row in rows:
        row[0] = "2026-11-28T14:14:00.640Z" if row[0] == "" else row[0]
        lines.append(join_row(row))
    path = tmp_path / "MSGTRK.LOG"
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    for record in MessageTrackingReader().read(Document.open(path), ReadContext()):
        assert isinstance(record, TrackingEvent | LogSpan)
