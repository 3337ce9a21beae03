"""Culture-formatted dates and times to UTC.

PowerShell writes dates in the exporting shell's culture: `11/28/2026 9:03:11 PM` (en-US),
`28/11/2026 21:03:11` (en-GB, fr-FR, es-ES), `28.11.2026 21:03:11` (de-DE), `28-11-2026 21:03:11`
(nl-NL), `2026/11/28 21:03:11` (ja-JP). One value alone often cannot say whether `03/04` is
March or April, but a column can: as soon as one value has a first field above 12 the column is
day-first. `DateOrderVote` collects that evidence over a column; `parse_culture_time` then reads
each value with the order decided for its column. Values without an offset are read in the zone
the caller says the format uses (UTC unless the format is local time and `--timezone` is given).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from enum import Enum
from functools import lru_cache

MONTHS = {
    name: index
    for index, names in enumerate(
        [
            ("jan", "january", "januar", "janv", "janvier", "enero", "ene", "januari"),
            ("feb", "february", "februar", "fev", "févr", "février", "febrero", "februari"),
            ("mar", "march", "märz", "maerz", "mars", "marzo", "maart", "mrz"),
            ("apr", "april", "avr", "avril", "abril", "abr"),
            ("may", "mai", "mayo", "mei"),
            ("jun", "june", "juni", "juin", "junio"),
            ("jul", "july", "juli", "juil", "juillet", "julio"),
            ("aug", "august", "août", "aout", "agosto", "ago", "augustus"),
            ("sep", "sept", "september", "septembre", "septiembre"),
            ("oct", "october", "oktober", "okt", "octobre", "octubre"),
            ("nov", "november", "novembre", "noviembre"),
            ("dec", "december", "dezember", "dez", "déc", "décembre", "diciembre", "dic"),
        ],
        1,
    )
    for name in names
}

_TIME = (
    r"(?:[ T,]+(?:(?P<pre>上午|下午|午前|午後|오전|오후)\s*)?"
    r"(?P<h>\d{1,2})[:.](?P<mi>\d{2})(?:[:.](?P<s>\d{2})(?P<frac>[.,]\d{1,9})?)?"
    r"\s*(?P<ampm>[AaPp]\.?\s?[Mm]\.?)?)?"
    r"\s*(?P<tz>Z|UTC|GMT|[+-]\d{2}:?\d{2})?\s*$"
)
_NUMERIC = re.compile(
    r"^\s*(?P<a>\d{1,4})(?P<sep>[./-])(?P<b>\d{1,2})(?P=sep)(?P<c>\d{1,4})\.?" + _TIME
)
_NAMED_MDY = re.compile(
    r"^\s*(?:[A-Za-z]+,\s*)?(?P<mon>[^\W\d_]{3,10})\.?\s+(?P<d>\d{1,2}),?\s+(?P<y>\d{4})" + _TIME
)
_NAMED_DMY = re.compile(
    r"^\s*(?:[A-Za-z]+,\s*)?(?P<d>\d{1,2})\.?[\s-]+(?P<mon>[^\W\d_]{3,10})\.?[\s-]+(?P<y>\d{4})"
    + _TIME
)
_PM_WORDS = frozenset({"下午", "午後", "오후"})  # zh, ja, ko; their AM words are 上午, 午前, 오전
_ODATA = re.compile(r"^\s*/?Date\((?P<ms>-?\d{1,15})(?P<tz>[+-]\d{4})?\)/?\s*$")


class DateOrder(Enum):
    """The order of the numeric date fields in a culture-formatted date."""

    MDY = "month-first"
    DMY = "day-first"
    YMD = "year-first"


@dataclass(frozen=True)
class _Fields:
    year: int
    month: int
    day: int
    hour: int
    minute: int
    second: int
    micro: int
    tz: str | None


def _micro(frac: str | None) -> int:
    if not frac:
        return 0
    return int((frac[1:] + "000000")[:6])


def _offset(text: str) -> timedelta:
    if text in ("Z", "UTC", "GMT"):
        return timedelta(0)
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:4]))


def _hour(match: re.Match[str]) -> tuple[int, int, int, int] | None:
    if match["h"] is None:
        return 0, 0, 0, 0
    hour = int(match["h"])
    ampm = match["ampm"] or match["pre"]
    if ampm:
        if not 1 <= hour <= 12:
            return None
        pm = ampm[0] in "Pp" or ampm in _PM_WORDS
        hour = (hour % 12) + (12 if pm else 0)
    return hour, int(match["mi"]), int(match["s"] or 0), _micro(match["frac"])


def _year(text: str) -> int:
    value = int(text)
    return value + 2000 if len(text) <= 2 else value


def guess_order(a: str, b: str, c: str, sep: str, ampm: bool) -> DateOrder:
    """The order one value suggests on its own (used when no column evidence decides)."""
    if len(a) >= 3:
        return DateOrder.YMD
    if int(a) > 12:
        return DateOrder.DMY
    if int(b) > 12:
        return DateOrder.MDY
    if sep == "/" and ampm:
        return DateOrder.MDY
    return DateOrder.DMY if sep in ".-" or not ampm else DateOrder.MDY


def _split(match: re.Match[str], order: DateOrder | None) -> tuple[int, int, int] | None:
    ampm = bool(match["ampm"] or match["pre"])
    return _split_parts(match["a"], match["b"], match["c"], match["sep"], ampm, order)


def _split_parts(
    a: str, b: str, c: str, sep: str, ampm: bool, order: DateOrder | None
) -> tuple[int, int, int] | None:
    if len(a) >= 3:
        return _year(a), int(b), int(c)
    if len(c) < 3 and order is DateOrder.YMD:
        return _year(a), int(b), int(c)
    effective: DateOrder | None = order if order in (DateOrder.MDY, DateOrder.DMY) else None
    # A value that contradicts the column's order is read the only way it can be.
    if (effective is DateOrder.MDY and int(a) > 12) or (effective is DateOrder.DMY and int(b) > 12):
        effective = None
    if effective is None:
        effective = guess_order(a, b, c, sep, ampm)
    if effective is DateOrder.MDY:
        return _year(c), int(a), int(b)
    return _year(c), int(b), int(a)


def _fields(text: str, order: DateOrder | None) -> _Fields | None:
    match = _NUMERIC.match(text)
    if match:
        ymd = _split(match, order)
        if ymd is None:
            return None
        year, month, day = ymd
    else:
        match = _NAMED_MDY.match(text) or _NAMED_DMY.match(text)
        if not match:
            return None
        month_number = MONTHS.get(match["mon"].lower().rstrip("."))
        if month_number is None:
            return None
        year, month, day = int(match["y"]), month_number, int(match["d"])
    clock = _hour(match)
    if clock is None:
        return None
    hour, minute, second, micro = clock
    return _Fields(year, month, day, hour, minute, second, micro, match["tz"])


def parse_culture_time(
    text: str, order: DateOrder | None = None, zone: tzinfo | None = None
) -> datetime | None:
    """Read one culture-formatted date/time; return it in UTC, or None when it is not one.

    `order` is the column's decided field order (see `DateOrderVote`); without it the value's
    own shape decides. A value without an offset is taken to be in `zone` (UTC when None).
    Never raises.
    """
    if not text or len(text) > 80:
        return None
    fast = _FAST_NUMERIC.fullmatch(text)
    if fast is not None:
        return _parse_fast(fast, order, zone)
    return parse_culture_time_general(text, order, zone)


def parse_culture_time_general(
    text: str, order: DateOrder | None = None, zone: tzinfo | None = None
) -> datetime | None:
    """`parse_culture_time` without the fast path for the common shapes (tests compare them)."""
    if not text or len(text) > 80:
        return None
    try:
        odata = _ODATA.match(text)
        if odata:
            base = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(odata["ms"]))
            return base
        fields = _fields(text, order)
        if fields is None:
            return None
        naive = datetime(
            fields.year,
            fields.month,
            fields.day,
            fields.hour,
            fields.minute,
            fields.second,
            fields.micro,
        )
        if fields.tz:
            return (naive - _offset(fields.tz)).replace(tzinfo=UTC)
        if zone is None:
            return naive.replace(tzinfo=UTC)
        return naive.replace(tzinfo=zone).astimezone(UTC)
    except (ValueError, OverflowError):
        return None


# The two shapes nearly every value has (`11/28/2026 9:03:11 PM`, `2026-11-28T21:03:11.000Z`),
# read without the general pattern's optional parts; the date part repeats down a column and
# is remembered. `_NUMERIC` matches every value this matches, with the same groups.
_FAST_NUMERIC = re.compile(
    r"(?P<a>\d{1,4})(?P<sep>[./-])(?P<b>\d{1,2})(?P=sep)(?P<c>\d{1,4})[ T]"
    r"(?P<h>\d{1,2}):(?P<mi>\d{2}):(?P<s>\d{2})(?:\.(?P<frac>\d{1,9}))?"
    r"(?: (?P<ampm>[AP]M)|(?P<tz>Z))?"
)


def _parse_fast(
    match: re.Match[str], order: DateOrder | None, zone: tzinfo | None
) -> datetime | None:
    a, sep, b, c, h, mi, s, frac, ampm, tz = match.groups()
    ymd = _date_part(a, sep, b, c, order, ampm is not None)
    if ymd is None:
        return None
    hour = int(h)
    if ampm is not None:
        if not 1 <= hour <= 12:
            return None
        hour = (hour % 12) + (12 if ampm == "PM" else 0)
    micro = int((frac + "000000")[:6]) if frac else 0
    try:
        # Built with its zone at once: `datetime(...).replace(tzinfo=...)` costs three times more.
        if tz is not None or zone is None:
            return datetime(ymd[0], ymd[1], ymd[2], hour, int(mi), int(s), micro, UTC)
        return datetime(ymd[0], ymd[1], ymd[2], hour, int(mi), int(s), micro, zone).astimezone(UTC)
    except (ValueError, OverflowError):
        return None


@lru_cache(maxsize=4096)
def _date_part(
    a: str, sep: str, b: str, c: str, order: DateOrder | None, ampm: bool
) -> tuple[int, int, int] | None:
    return _split_parts(a, b, c, sep, ampm, order)


@dataclass
class DateOrderVote:
    """Evidence, over one column of values, for which field is the day and which the month."""

    day_first_seen: int = 0  # values whose first field is above 12
    month_first_seen: int = 0  # values whose second field is above 12
    year_first_seen: int = 0
    ampm_seen: int = 0
    values: int = 0
    separators: str = ""
    example_day_first: str = ""
    example_month_first: str = ""

    def observe(self, text: str) -> None:
        match = _NUMERIC.match(text) if text and len(text) <= 80 else None
        if not match:
            return
        self.values += 1
        if match["sep"] not in self.separators:
            self.separators += match["sep"]
        if match["ampm"] or match["pre"]:
            self.ampm_seen += 1
        a, b = match["a"], match["b"]
        if len(a) >= 3:
            self.year_first_seen += 1
        elif int(a) > 12:
            self.day_first_seen += 1
            self.example_day_first = self.example_day_first or text.strip()
        elif int(b) > 12:
            self.month_first_seen += 1
            self.example_month_first = self.example_month_first or text.strip()

    def decide(self, column: str = "date") -> tuple[DateOrder | None, str]:
        """The order for the column and, when it had to be assumed or is contradictory, why.

        The text is empty when the values decided it on their own.
        """
        if self.values == 0:
            return None, ""
        if self.year_first_seen == self.values:
            return DateOrder.YMD, ""
        if self.day_first_seen and self.month_first_seen:
            return (
                None,
                f"'{column}' mixes day-first ({self.example_day_first}) and month-first "
                f"({self.example_month_first}) dates; each value was read on its own",
            )
        if self.day_first_seen:
            return DateOrder.DMY, ""
        if self.month_first_seen:
            return DateOrder.MDY, ""
        if self.ampm_seen and "/" in self.separators:
            return (
                DateOrder.MDY,
                f"no value of '{column}' tells day from month; read month-first "
                "(the values use AM/PM as en-US does)",
            )
        return (
            DateOrder.DMY,
            f"no value of '{column}' tells day from month; read day-first "
            "(24-hour times with '/', '.' or '-' as en-GB, de-DE, nl-NL and fr-FR write them)",
        )
