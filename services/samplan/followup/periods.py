"""Measurement periods: ``periodStart``/``periodEnd`` as R4 reads them, and months.

``$evaluate-measure`` takes two ``date`` parameters (R4: "the period will start
at the beginning of the period implied by the supplied timestamp", and end at
its end): ``2026`` starts on 1 January and ends on 31 December, ``2026-03``
covers March. They are read in the service's zone (Europe/Stockholm), as every
date without an offset is. Bad ones are a 400 naming the parameter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Final
from zoneinfo import ZoneInfo

from samplan.fhir.dates import parse_range
from samplan.fhir.errors import BadRequest

_DATE: Final = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$", re.ASCII)
_MONTH: Final = re.compile(r"^\d{4}-\d{2}$", re.ASCII)
MONTH_NAMES: Final = ("jan", "feb", "mar", "apr", "maj", "jun", "jul", "aug", "sep", "okt",
                      "nov", "dec")


@dataclass(frozen=True, slots=True)
class Period:
    """A measurement period: microseconds ``[low, high]`` (inclusive), and as written."""

    start: str
    end: str
    low: int
    high: int


@dataclass(frozen=True, slots=True)
class Month:
    """One calendar month of a series (``2026-03``), as a period."""

    year: int
    month: int
    period: Period

    @property
    def key(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def short(self) -> str:
        """``mar 2026``: how a chart's axis names it."""
        return f"{MONTH_NAMES[self.month - 1]} {self.year}"


def _bound(name: str, value: str | None, tz: ZoneInfo) -> tuple[int, int]:
    if value is None or value == "":
        raise BadRequest(f"{name} is required: a date (YYYY, YYYY-MM or YYYY-MM-DD).", [name])
    span = parse_range(value, tz) if _DATE.match(value) else None
    if span is None:
        raise BadRequest(f"{name} must be a date (YYYY, YYYY-MM or YYYY-MM-DD), not {value!r}.",
                         [name], code="value")
    return span


def measurement_period(start: str | None, end: str | None, tz: ZoneInfo) -> Period:
    """The period ``periodStart``..``periodEnd`` names; 400 when either is missing or bad,
    or when it ends before it starts."""
    low, _ = _bound("periodStart", start, tz)
    _, high = _bound("periodEnd", end, tz)
    if high < low:
        raise BadRequest(f"periodEnd ({end}) is before periodStart ({start}).", ["periodEnd"],
                         code="value")
    return Period(str(start), str(end), low, high)


def month(year: int, month_: int, tz: ZoneInfo) -> Month:
    key = f"{year:04d}-{month_:02d}"
    span = parse_range(key, tz)
    assert span is not None
    return Month(year, month_, Period(key, key, span[0], span[1]))


def months(first: Month, last: Month, tz: ZoneInfo) -> list[Month]:
    """Every month from ``first`` to ``last``, both included."""
    found: list[Month] = []
    year, mon = first.year, first.month
    while (year, mon) <= (last.year, last.month):
        found.append(month(year, mon, tz))
        year, mon = (year + 1, 1) if mon == 12 else (year, mon + 1)
    return found


def parse_month(name: str, value: str | None, default: Month, tz: ZoneInfo) -> Month:
    """A ``YYYY-MM`` query parameter of the page (400 naming it when malformed)."""
    if value is None or value == "":
        return default
    if not _MONTH.match(value) or not 1 <= int(value[5:7]) <= 12:
        raise BadRequest(f"{name} must be a month, YYYY-MM, not {value!r}.", [name],
                         code="value")
    return month(int(value[:4]), int(value[5:7]), tz)


def last_months(today: date, count: int, tz: ZoneInfo) -> tuple[Month, Month]:
    """The ``count`` months up to and including this one."""
    index = today.year * 12 + today.month - 1 - (count - 1)
    return month(index // 12, index % 12 + 1, tz), month(today.year, today.month, tz)
