"""Culture-formatted dates to UTC, with day/month order decided per column."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailflow_doctor.evidence.culturetime import DateOrder, DateOrderVote, parse_culture_time

WHEN = datetime(2026, 11, 28, 21, 3, 11, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-28T21:03:11Z",
        "2026-11-28T21:03:11.0000000Z",
        "2026-11-28T22:03:11+01:00",
        "2026-11-28 21:03:11",
        "2026-11-28T21:03:11",
        "11/28/2026 9:03:11 PM",
        "28/11/2026 21:03:11",
        "28.11.2026 21:03:11",
        "28-11-2026 21:03:11",
        "2026/11/28 21:03:11",
        "Nov 28, 2026 9:03:11 PM",
        "28 Nov 2026 21:03:11",
        "Saturday, November 28, 2026 9:03:11 PM",
        "/Date(1795899791000)/",
        "28/11/2026 09:03:11 p. m.",
        "2026/11/28 下午 09:03:11",
        "2026-11-28 오후 9:03:11",
        "2026/11/28 午後 9:03:11",
    ],
)
def test_each_culture_reads_to_the_same_utc(text: str) -> None:
    assert parse_culture_time(text) == WHEN


def test_optional_seconds_and_12h_edges() -> None:
    assert parse_culture_time("11/28/2026 9:03 PM") == WHEN.replace(second=0)
    assert parse_culture_time("11/28/2026 12:00:00 AM") == datetime(2026, 11, 28, tzinfo=UTC)
    assert parse_culture_time("11/28/2026 12:00:00 PM") == datetime(2026, 11, 28, 12, tzinfo=UTC)
    assert parse_culture_time("28.11.2026") == datetime(2026, 11, 28, tzinfo=UTC)
    assert parse_culture_time("15-01-21 23:50:05") == datetime(2021, 1, 15, 23, 50, 5, tzinfo=UTC)


def test_ambiguous_value_follows_the_column_order() -> None:
    assert parse_culture_time("03/04/2026 10:00:00", DateOrder.MDY) == datetime(
        2026, 3, 4, 10, tzinfo=UTC
    )
    assert parse_culture_time("03/04/2026 10:00:00", DateOrder.DMY) == datetime(
        2026, 4, 3, 10, tzinfo=UTC
    )
    # A value that contradicts the column is read the only way it can be.
    assert parse_culture_time("28/11/2026 21:03:11", DateOrder.MDY) == WHEN


def test_local_time_uses_the_zone_and_offsets_win() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    assert parse_culture_time("28.11.2026 22:03:11", zone=berlin) == WHEN
    assert parse_culture_time("2026-11-28T21:03:11Z", zone=berlin) == WHEN
    fixed = timezone(timedelta(hours=-5))
    assert parse_culture_time("11/28/2026 4:03:11 PM", zone=fixed) == WHEN


@pytest.mark.parametrize(
    "text", ["", "yesterday", "13/13/2026 10:00", "11/28/2026 13:00:00 PM", "99.99.9999", "x" * 500]
)
def test_not_a_date(text: str) -> None:
    assert parse_culture_time(text) is None


def test_vote_decides_day_first_from_one_value() -> None:
    vote = DateOrderVote()
    for value in ["01.02.2026 10:00:00", "03.04.2026 10:00:00", "28.11.2026 21:03:11"]:
        vote.observe(value)
    assert vote.decide("Received") == (DateOrder.DMY, "")


def test_vote_decides_month_first_and_reports_assumptions() -> None:
    vote = DateOrderVote()
    vote.observe("11/28/2026 9:03:11 PM")
    assert vote.decide() == (DateOrder.MDY, "")
    ambiguous = DateOrderVote()
    ambiguous.observe("11/10/2026 9:03:11 PM")
    order, note = ambiguous.decide("Received")
    assert order is DateOrder.MDY
    assert "month-first" in note
    assert "Received" in note
    gb = DateOrderVote()
    gb.observe("11/10/2026 21:03:11")
    order, note = gb.decide("Date")
    assert order is DateOrder.DMY
    assert "day-first" in note


def test_vote_reports_a_contradictory_column() -> None:
    vote = DateOrderVote()
    vote.observe("28/11/2026 21:03:11")
    vote.observe("11/28/2026 21:03:11")
    order, note = vote.decide("Date")
    assert order is None
    assert "mixes" in note


def test_iso_column_needs_no_assumption() -> None:
    vote = DateOrderVote()
    vote.observe("2026-11-28T21:03:11Z")
    assert vote.decide() == (DateOrder.YMD, "")
    assert DateOrderVote().decide() == (None, "")


_MOMENTS = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=0))


def _formats(when: datetime) -> list[tuple[str, DateOrder | None]]:
    hour12 = when.hour % 12 or 12
    ampm = "PM" if when.hour >= 12 else "AM"
    clock = f"{when.hour:02d}:{when.minute:02d}:{when.second:02d}"
    return [
        (when.strftime("%Y-%m-%dT%H:%M:%SZ"), None),
        (
            f"{when.month}/{when.day}/{when.year} {hour12}:{when:%M:%S} {ampm}",
            DateOrder.MDY,
        ),
        (f"{when.day:02d}/{when.month:02d}/{when.year} {clock}", DateOrder.DMY),
        (f"{when.day:02d}.{when.month:02d}.{when.year} {clock}", DateOrder.DMY),
        (f"{when.day:02d}-{when.month:02d}-{when.year} {clock}", DateOrder.DMY),
    ]


@settings(deadline=None)
@given(_MOMENTS)
def test_round_trip_of_every_format(when: datetime) -> None:
    for text, order in _formats(when):
        assert parse_culture_time(text, order) == when, text


@settings(deadline=None)
@given(st.text(max_size=60))
def test_never_raises(text: str) -> None:
    parse_culture_time(text)
    vote = DateOrderVote()
    vote.observe(text)
    vote.decide()
