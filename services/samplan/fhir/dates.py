"""FHIR dates as ranges of microseconds since the epoch.

A FHIR date value is a range at its own precision ("2026" is the whole year),
and search compares ranges (https://hl7.org/fhir/R4/search.html#date). Storing
both ends as integers makes the comparison plain SQL on SQLite and PostgreSQL.
Values without an offset are read in the service's zone (Europe/Stockholm by
default), which is what a Swedish user means by "2027-01-12".
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

MIN_US = -(2**62)
MAX_US = 2**62
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_DATE_RE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d+))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$",
    re.ASCII,  # FHIR dates are ASCII digits; int() would accept any script's digits
)


def to_us(ts: datetime) -> int:
    return (ts - _EPOCH) // timedelta(microseconds=1)


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def now_us() -> int:
    return to_us(datetime.now(UTC))


def parse_range(value: str, tz: ZoneInfo) -> tuple[int, int] | None:
    """The inclusive [low, high] microsecond range a FHIR date/dateTime/instant covers."""
    match = _DATE_RE.match(value.strip())
    if not match:
        return None
    g = match.groupdict()
    try:
        year = int(g["y"])
        zone = tz
        if g["tz"]:
            zone = UTC if g["tz"] == "Z" else _offset_zone(g["tz"])  # type: ignore[assignment]
        if g["m"] is None:
            start = datetime(year, 1, 1, tzinfo=zone)
            end = datetime(year + 1, 1, 1, tzinfo=zone)
        elif g["d"] is None:
            month = int(g["m"])
            start = datetime(year, month, 1, tzinfo=zone)
            end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=zone)
        elif g["H"] is None:
            start = datetime(year, int(g["m"]), int(g["d"]), tzinfo=zone)
            end = start + timedelta(days=1)
        else:
            fraction = g["f"] or ""
            micro = int((fraction + "000000")[:6]) if fraction else 0
            start = datetime(
                year, int(g["m"]), int(g["d"]), int(g["H"]), int(g["M"]), int(g["S"] or 0),
                micro, tzinfo=zone,
            )
            if fraction:  # ".5" is the tenth of a second it names, ".123456" one microsecond
                end = start + timedelta(microseconds=10 ** (6 - min(len(fraction), 6)))
            elif g["S"] is not None:
                end = start + timedelta(seconds=1)
            else:
                end = start + timedelta(minutes=1)
    except (ValueError, OverflowError):  # no such date, or past year 9999
        return None
    return to_us(start), to_us(end) - 1


def _offset_zone(text: str) -> object:
    from datetime import timezone

    sign = 1 if text[0] == "+" else -1
    hours, minutes = int(text[1:3]), int(text[4:6])
    return timezone(sign * timedelta(hours=hours, minutes=minutes))
