from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from mailflow_doctor.evidence.syslogtime import parse_syslog_time

REF = datetime(2026, 1, 3, 12, 0, tzinfo=UTC)


def test_bsd_without_year_lands_in_previous_december() -> None:
    parsed = parse_syslog_time("Dec 31 23:59:58 fw kernel: IN=eth0", reference_utc=REF)
    assert parsed is not None
    assert parsed.utc == datetime(2025, 12, 31, 23, 59, 58, tzinfo=UTC)
    assert "year 2025 assumed" in parsed.assumed
    assert "UTC assumed" in parsed.assumed


def test_zone_applied_and_iso_offsets_respected() -> None:
    amsterdam = ZoneInfo("Europe/Amsterdam")
    parsed = parse_syslog_time("Jan  2 10:00:00 fw", amsterdam, REF)
    assert parsed is not None
    assert parsed.utc == datetime(2026, 1, 2, 9, 0, tzinfo=UTC)
    iso = parse_syslog_time("2026-11-28T21:03:11.250+01:00 fw kernel: ...")
    assert iso is not None
    assert iso.utc == datetime(2026, 11, 28, 20, 3, 11, 250000, tzinfo=UTC)
    assert iso.assumed == ""


def test_asa_with_year() -> None:
    parsed = parse_syslog_time("Nov 28 2026 21:03:11: %ASA-4-106023: Deny tcp", None, REF)
    assert parsed is not None
    assert parsed.utc == datetime(2026, 11, 28, 21, 3, 11, tzinfo=UTC)
    assert "year" not in parsed.assumed


def test_garbage_returns_none() -> None:
    assert parse_syslog_time("no time here") is None
    assert parse_syslog_time("Foo 99 99:99:99") is None
    assert parse_syslog_time("2026-13-45T10:00:00Z") is None


@given(st.text(max_size=200))
def test_never_raises(text: str) -> None:
    parse_syslog_time(text, ZoneInfo("Europe/Berlin"), REF)
