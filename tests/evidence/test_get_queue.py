"""Get-Queue: Format-List, Export-Csv (UTF-16LE), pasted LastError lines, samples."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailflow_doctor.evidence.document import Document, ReadContext
from mailflow_doctor.evidence.records import QueueEntry
from mailflow_doctor.evidence.registry import best_reader

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "queues"


def read(path: Path, ctx: ReadContext | None = None) -> tuple[str, list[QueueEntry], ReadContext]:
    doc = Document.open(path)
    reader, _score = best_reader(doc)
    assert reader is not None, f"{path.name} not recognised"
    context = ctx or ReadContext()
    entries = [r for r in reader.read(doc, context) if isinstance(r, QueueEntry)]
    return reader.kind, entries, context


def test_format_list_queue_to_exchange_online() -> None:
    kind, entries, ctx = read(FIXTURES / "getqueue_fl_tsp-ex01.txt")
    assert kind == "exchange.get_queue"
    assert ctx.issues.issues == []
    retry, submission = entries
    assert retry.identity == "TSP-EX01\\18"
    assert retry.server == "TSP-EX01"
    assert retry.delivery_type == "SmartHostConnectorDelivery"
    assert retry.status == "Retry"
    assert retry.message_count == 37
    assert retry.next_hop_domain == "tailspintoys.mail.onmicrosoft.com"
    assert retry.tls_domain == "mail.protection.outlook.com"
    assert retry.retry_count == 6
    # The wrapped LastError is joined back together.
    assert retry.last_error.endswith("SocketConnectionRefused: Socket error code 10061")
    assert retry.reason is not None
    assert retry.reason.code == "4.4.397"
    assert retry.reason.socket_error == 10061
    assert retry.last_retry_utc == datetime(2026, 11, 28, 15, 41, 7, tzinfo=UTC)
    assert retry.first_retry_utc == datetime(2026, 11, 28, 14, 58, 2, tzinfo=UTC)
    assert "read as UTC" in retry.time_assumed
    assert ("NextHopCategory", "External") in retry.extra
    assert submission.identity == "TSP-EX01\\Submission"
    assert submission.message_count == 0
    assert submission.reason is None
    assert submission.last_retry_utc is None


def test_timezone_applies_to_queue_times() -> None:
    ctx = ReadContext(timezone=timezone(timedelta(hours=1)))
    _kind, entries, _ctx = read(FIXTURES / "getqueue_fl_tsp-ex01.txt", ctx)
    assert entries[0].last_retry_utc == datetime(2026, 11, 28, 14, 41, 7, tzinfo=UTC)


def test_export_csv_utf16_with_type_line() -> None:
    kind, entries, ctx = read(FIXTURES / "getqueue_export.csv")
    assert kind == "exchange.get_queue"
    assert ctx.issues.issues == []
    relay, shadow = entries
    assert relay.identity == "TSP-EX02\\7"
    assert relay.delivery_type == "SmtpRelayToMailboxDeliveryGroup"
    assert relay.reason is not None
    assert relay.reason.fqdn == "mbx01.tailspintoys.local"
    assert relay.reason.ip == "10.10.20.30"
    assert relay.last_retry_utc == datetime(2026, 11, 28, 9, 41, 7, tzinfo=UTC)
    assert shadow.identity == "TSP-EX02\\Shadow\\3"
    assert shadow.message_count == 1024


def test_pasted_last_error_line() -> None:
    kind, [entry], _ctx = read(FIXTURES / "lasterror_pasted.txt")
    assert kind == "exchange.get_queue"
    assert entry.identity == ""
    assert entry.reason is not None
    assert entry.reason.code == "4.4.397"
    assert entry.reason.socket_error == 10061


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "Identity",
                    "DeliveryType",
                    "Status",
                    "MessageCount",
                    "LastError",
                    "LastRetryTime",
                    "NextHopDomain",
                    "Junk",
                ]
            ),
            st.text(
                alphabet=st.characters(
                    blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"
                ),
                max_size=60,
            ),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_format_list_reader_never_raises(tmp_path: Path, props: list[tuple[str, str]]) -> None:
    path = tmp_path / "queue.txt"
    text = "DeliveryType : DnsConnectorDelivery\nNextHopDomain : x\nStatus : Retry\n"
    text += "".join(f"{key} : {value}\n" for key, value in props)
    path.write_text(text, encoding="utf-8")
    kind, entries, _ctx = read(path)
    assert kind == "exchange.get_queue"
    assert entries


def test_every_queue_sample_is_read(samples: Path) -> None:
    files = sorted(samples.glob("exchange/getqueue_*")) + sorted(
        samples.glob("exchange/queue_lasterror_*")
    )
    assert len(files) >= 5
    for path in files:
        kind, entries, ctx = read(path)
        assert kind == "exchange.get_queue", path.name
        assert entries, path.name
        assert all(e.reason is not None and e.reason.code for e in entries if e.last_error)
        assert ctx.issues.issues == [], path.name


def test_sample_dag_queue_facts(samples: Path) -> None:
    _kind, [entry], _ctx = read(samples / "exchange/getqueue_fl_2013_dag_retry_qa234456.txt")
    assert entry.identity == "DAGSERVER5\\322120"
    assert entry.status == "Retry"
    assert entry.reason is not None
    assert entry.reason.fqdn == "MAILSERVER.DOMAIN.LOCAL"
    assert entry.last_retry_utc == datetime(2021, 1, 15, 23, 50, 5, tzinfo=UTC)


def test_queue_digest_names_the_server(tmp_path: Path) -> None:
    path = tmp_path / "digest.txt"
    path.write_text(
        "QueueIdentity      : 18\n"
        "ServerIdentity     : TSP-EX01\n"
        "DeliveryType       : SmartHostConnectorDelivery\n"
        "NextHopDomain      : tailspintoys.mail.onmicrosoft.com\n"
        "Status             : Retry\n"
        "MessageCount       : 37\n"
        "LastError          : 451 4.4.397 Error communicating with target host. -> 421 4.2.1 "
        "Unable to connect -> SocketConnectionRefused: Socket error code 10061\n",
        encoding="utf-8",
    )
    kind, [entry], _ctx = read(path)
    assert kind == "exchange.get_queue"
    assert entry.server == "TSP-EX01"
    assert entry.identity == "18"
    assert entry.extra == ()


def test_default_table_view() -> None:
    kind, entries, ctx = read(FIXTURES / "getqueue_table.txt")
    assert kind == "exchange.get_queue"
    assert [(e.identity, e.status, e.message_count) for e in entries] == [
        ("TSP-EX01\\18", "Retry", 37),
        ("TSP-EX01\\Submission", "Ready", 0),
        ("TSP-EX01\\Shadow\\3", "Ready", 2),
    ]
    assert entries[0].next_hop_domain == "tailspintoys.mail.onmicrosoft.com"
    assert entries[0].delivery_type == "SmartHo..."  # cut by the console, kept as shown
    assert entries[0].last_error == ""
    assert "Format-List" in str(ctx.issues.issues[0])
