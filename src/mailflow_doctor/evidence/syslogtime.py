"""Syslog timestamps to UTC, including the forms that carry no year or no zone.

Firewall deny logs must line up with Exchange Online deferrals to the minute. BSD syslog
(`Nov 28 21:03:11`) has neither year nor zone; ASA may log `Nov 28 2026 21:03:11`; rsyslog and
journald write ISO 8601 with an offset. A missing zone is taken from the user's `--timezone`
(else UTC); a missing year is the one that puts the time closest before the reference time
(the evidence's own dates, else now), so a December log read in January lands in December.
Every assumption is returned as text so that the report can say what it assumed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

MONTHS = {
    name: index
    for index, name in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}

_ISO = re.compile(
    r"(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})[T ](?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2})"
    r"(?P<frac>[.,]\d{1,9})?\s?(?P<tz>Z|[+-]\d{2}:?\d{2})?"
)
_BSD = re.compile(
    r"(?P<mon>[A-Za-z]{3})\s+(?P<d>\d{1,2})\s+(?:(?P<y>\d{4})\s+)?"
    r"(?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2})(?P<frac>\.\d{1,9})?"
    r"(?:\s+(?P<tz>UTC|GMT|Z|[+-]\d{2}:?\d{2}))?"
)


@dataclass(frozen=True)
class SyslogTime:
    utc: datetime
    assumed: str  # "" when the timestamp said everything itself


def _offset(text: str) -> timedelta:
    if text in ("Z", "UTC", "GMT"):
        return timedelta(0)
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:4]))


def _micro(frac: str | None) -> int:
    if not frac:
        return 0
    return int((frac[1:] + "000000")[:6])


def _localise(naive: datetime, zone: tzinfo | None) -> datetime:
    if zone is None:
        return naive.replace(tzinfo=UTC)
    return naive.replace(tzinfo=zone).astimezone(UTC)


def parse_syslog_time(
    text: str,
    zone: tzinfo | None = None,
    reference_utc: datetime | None = None,
) -> SyslogTime | None:
    """Find and parse the first syslog-style timestamp in `text`; None when there is none."""
    iso = _ISO.search(text)
    bsd = _BSD.search(text)
    if iso and (not bsd or iso.start() <= bsd.start()):
        try:
            naive = datetime(
                int(iso["y"]),
                int(iso["mo"]),
                int(iso["d"]),
                int(iso["h"]),
                int(iso["mi"]),
                int(iso["s"]),
                _micro(iso["frac"]),
            )
        except ValueError:
            return None
        if iso["tz"]:
            return SyslogTime((naive - _offset(iso["tz"])).replace(tzinfo=UTC), "")
        return SyslogTime(_localise(naive, zone), _zone_note(zone))
    if not bsd:
        return None
    month = MONTHS.get(bsd["mon"].lower())
    if month is None:
        return None
    notes: list[str] = []
    reference = reference_utc or datetime.now(UTC)
    years = [int(bsd["y"])] if bsd["y"] else [reference.year, reference.year - 1]
    candidate: datetime | None = None
    for year in years:
        try:
            naive = datetime(
                year,
                month,
                int(bsd["d"]),
                int(bsd["h"]),
                int(bsd["mi"]),
                int(bsd["s"]),
                _micro(bsd["frac"]),
            )
        except ValueError:
            continue
        if bsd["tz"]:
            when = (naive - _offset(bsd["tz"])).replace(tzinfo=UTC)
        else:
            when = _localise(naive, zone)
        # Allow a day of clock skew before calling the date "in the future".
        if bsd["y"] or when <= reference + timedelta(days=1):
            candidate = when
            break
    if candidate is None:
        return None
    if not bsd["y"]:
        notes.append(f"year {candidate.year} assumed (syslog time has no year)")
    if not bsd["tz"]:
        zone_note = _zone_note(zone)
        if zone_note:
            notes.append(zone_note)
    return SyslogTime(candidate, "; ".join(notes))


def _zone_note(zone: tzinfo | None) -> str:
    if zone is None:
        return "logged without a time zone; UTC assumed (use --timezone)"
    return ""
