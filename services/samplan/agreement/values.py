"""Reading values out of what staff write: dates, validity, agreed times, phone numbers, names.

Each reader either returns a value or raises :class:`Unreadable` with a reason
a person can act on. Nothing here guesses: a text that does not follow one of
the documented forms is unreadable, and the caller keeps it as text and warns.
The forms (all in Swedish, as written in Cosmic notes):

* a date: ``2026-11-20``, ``20261120``, ``20 nov 2026``, ``20 november 2026``,
  ``20/11 2026``;
* a validity: a range (``2026-11-20 -- 2027-05-20``, also ``-``, ``–``, ``—``,
  ``till``, ``t.o.m.``), a single date (valid *until* that date, from the
  note's date), ``från``/``fr.o.m.`` a date (no end), ``tillsvidare`` (from the
  note's date, no end), or a duration (``6 månader``, ``3 mån``, ``1 år``,
  ``12 veckor``, ``30 dagar``, also ``sex månader``) from the note's date or
  from an explicit ``från`` date;
* an agreed time: a date and a time of day (``09:30``, ``9.30``, ``kl. 9``)
  anywhere in the line ("Återbesök 2027-01-20 kl. 08.15, KBT-samtal"), read as
  local Swedish time, with the place after it when the line starts with the
  date or names it (``på``, ``hos``, ``vid``); a time that does not exist or
  exists twice because of the daylight-saving change is unreadable (it would
  be a guess);
* a planned time that is not an appointment: a date without a time of day, a
  day and month without a year (``15/3``: the first after the note's date), a
  week (``v. 12``: the first such week not over at the note's date), or a
  time from the note's date (``om 3 månader``, ``inom 6 veckor``);
* contact points: Swedish phone numbers (libphonenumber), the short numbers
  1177/112/114 14/113 13, "1177 e-tjänster", web addresses and e-mail; opening
  hours beside a number ("vardagar 08.00–16.30", "telefontid 08.00-09.00") are
  hours, never a number; a number marked for professionals ("endast för
  hemsjukvården") is marked as such.

The module is a leaf: it imports nothing else from the service.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from functools import lru_cache
from typing import Any, Final
from zoneinfo import ZoneInfo

import phonenumbers
from dateutil.relativedelta import relativedelta

__all__ = [
    "SWEDISH_TIME",
    "AgreedTime",
    "FoundContact",
    "PlannedTime",
    "Unreadable",
    "UnreadableTime",
    "Validity",
    "find_contact_points",
    "find_hsa_ids",
    "looks_like_a_date",
    "parse_agreed_time",
    "parse_contact_points",
    "parse_date",
    "parse_planned_time",
    "parse_validity",
    "person_display",
    "plan_types",
    "to_local",
]

SWEDISH_TIME: Final = ZoneInfo("Europe/Stockholm")
"""The zone every local Swedish time in a note is read in (DST included)."""


class Unreadable(ValueError):
    """The text does not follow any documented form; ``str(error)`` says why."""


class UnreadableTime(Unreadable):
    """A date with a time of day that cannot be booked (no such time, or it happens twice)."""


def to_local(moment: datetime) -> datetime:
    """An aware datetime in Swedish local time."""
    return moment.astimezone(SWEDISH_TIME)


# -- dates ------------------------------------------------------------------------------------

_MONTHS: Final[dict[str, int]] = {
    "januari": 1, "jan": 1,
    "februari": 2, "feb": 2,
    "mars": 3, "mar": 3,
    "april": 4, "apr": 4,
    "maj": 5,
    "juni": 6, "jun": 6,
    "juli": 7, "jul": 7,
    "augusti": 8, "aug": 8,
    "september": 9, "sept": 9, "sep": 9,
    "oktober": 10, "okt": 10,
    "november": 11, "nov": 11,
    "december": 12, "dec": 12,
}  # fmt: skip
_MONTH_ALT = "|".join(sorted(_MONTHS, key=len, reverse=True))

_ISO = r"(?P<iy>\d{4})-(?P<im>\d{1,2})-(?P<id>\d{1,2})"
_COMPACT = r"(?P<cy>\d{4})(?P<cm>\d{2})(?P<cd>\d{2})"
_NAMED = rf"(?P<nd>\d{{1,2}})\s*(?P<nm>{_MONTH_ALT})\.?\s+(?P<ny>\d{{4}})"
_SLASH = r"(?P<sd>\d{1,2})/(?P<sm>\d{1,2})[\s-]+(?P<sy>\d{4})"
_DATE_RE: Final = re.compile(rf"(?:{_ISO}|{_COMPACT}|{_NAMED}|{_SLASH})", re.IGNORECASE)
# The same without named groups, to embed twice in one pattern.
_DATE: Final = re.sub(r"\?P<\w+>", "", _DATE_RE.pattern)


def parse_date(text: str) -> date:
    """One calendar date in a form Swedish staff write."""
    match = _DATE_RE.fullmatch(text.strip())
    if match is None:
        raise Unreadable(f"'{text.strip()}' is not a date of the form YYYY-MM-DD")
    groups = match.groupdict()
    if groups["iy"]:
        year, month, day = int(groups["iy"]), int(groups["im"]), int(groups["id"])
    elif groups["cy"]:
        year, month, day = int(groups["cy"]), int(groups["cm"]), int(groups["cd"])
    elif groups["ny"]:
        year, month, day = int(groups["ny"]), _MONTHS[groups["nm"].lower()], int(groups["nd"])
    else:
        year, month, day = int(groups["sy"]), int(groups["sm"]), int(groups["sd"])
    try:
        return date(year, month, day)
    except ValueError:
        raise Unreadable(f"'{text.strip()}' is not a calendar date") from None


_DATEISH: Final = re.compile(
    rf"\d{{4}}-\d{{1,2}}|\d{{1,2}}/\d{{1,2}}|\b\d{{8}}\b|\b\d{{1,2}}\s*(?:{_MONTH_ALT})\b|\bkl\b",
    re.IGNORECASE,
)


def looks_like_a_date(text: str) -> bool:
    """Whether ``text`` seems to contain a date or time (so failing to read it deserves a word)."""
    return _DATEISH.search(text) is not None


# -- validity ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Validity:
    """How long the agreement holds: ``CarePlan.period``. No end: until further notice."""

    start: date | None
    end: date | None


_NUMBER_WORDS: Final[dict[str, int]] = {
    "en": 1, "ett": 1, "två": 2, "tre": 3, "fyra": 4, "fem": 5, "sex": 6, "sju": 7,
    "åtta": 8, "nio": 9, "tio": 10, "elva": 11, "tolv": 12, "arton": 18, "tjugofyra": 24,
}  # fmt: skip
_UNITS: Final[dict[str, str]] = {
    "dag": "days", "dagar": "days", "d": "days",
    "v": "weeks", "v.": "weeks", "vecka": "weeks", "veckor": "weeks", "veckors": "weeks",
    "mån": "months", "mån.": "months", "månad": "months", "månader": "months",
    "månaders": "months", "mnd": "months",
    "år": "years", "års": "years",
}  # fmt: skip

_RANGE_SEP = r"\s*(?:--|–|—|-|till|t\.?\s?o\.?\s?m\.?)\s*"
_FROM = r"(?:från|fr\.?\s?o\.?\s?m\.?|from)"
_UNTIL = r"(?:till|t\.?\s?o\.?\s?m\.?|tom|till och med)"
_LEAD = re.compile(
    r"^(?:överenskommelsen\s+)?(?:gäller|giltig|giltigt|giltighet(?:stid)?)\s*:?\s*",
    re.IGNORECASE,
)
_OPEN_ENDED = re.compile(r"tills?\s*vidare", re.IGNORECASE)
_VALIDITY_RANGE = re.compile(rf"(?:{_FROM}\s*)?(?P<a>{_DATE}){_RANGE_SEP}(?P<b>{_DATE})", re.I)
_VALIDITY_FROM = re.compile(
    rf"{_FROM}\s*(?P<a>{_DATE})(?:\s*(?:--|–|-)?\s*(?:och\s+)?tills?\s*vidare)?", re.I
)
_VALIDITY_UNTIL = re.compile(rf"(?:{_UNTIL}\s*)?(?P<b>{_DATE})", re.IGNORECASE)
_NUMBER_ALT = "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True))
_UNIT_ALT = "|".join(re.escape(unit) for unit in sorted(_UNITS, key=len, reverse=True))
_VALIDITY_DURATION = re.compile(
    rf"(?:(?:i|under)\s+)?(?P<n>\d{{1,3}}|{_NUMBER_ALT})\s*(?P<unit>{_UNIT_ALT})"
    rf"(?:\s+(?:{_FROM}|räknat från)\s*(?P<a>{_DATE}))?",
    re.IGNORECASE,
)


def parse_validity(text: str, note_date: date | None) -> Validity:
    """The agreement's validity from the text under its keyword.

    ``note_date`` (the note's signing date, local time) anchors the relative
    forms; without it they are unreadable rather than anchored anywhere else.
    """
    cleaned = _LEAD.sub("", " ".join(text.split())).rstrip(".").strip()
    if not cleaned:
        raise Unreadable("the validity is empty")

    if _OPEN_ENDED.fullmatch(cleaned):
        return Validity(_need(note_date, "'tillsvidare' runs from the note's date"), None)

    if match := _VALIDITY_RANGE.fullmatch(cleaned):
        start, end = parse_date(match["a"]), parse_date(match["b"])
        if end < start:
            raise Unreadable(f"the validity ends ({end}) before it starts ({start})")
        return Validity(start, end)

    if match := _VALIDITY_FROM.fullmatch(cleaned):
        return Validity(parse_date(match["a"]), None)

    if match := _VALIDITY_UNTIL.fullmatch(cleaned):
        end = parse_date(match["b"])
        if note_date is not None and end < note_date:
            raise Unreadable(
                f"a single date ({end}) before the note's date ({note_date}): "
                "write 'från' or 'till' to say whether it is the start or the end"
            )
        return Validity(note_date, end)

    if match := _VALIDITY_DURATION.fullmatch(cleaned):
        amount = match["n"].lower()
        count = int(amount) if amount.isdigit() else _NUMBER_WORDS[amount]
        unit = _UNITS[match["unit"].lower()]
        if match["a"]:
            start = parse_date(match["a"])
        else:
            start = _need(note_date, "a duration runs from the note's date")
        return Validity(start, start + _duration(unit, count))

    raise Unreadable(
        f"'{text.strip()}' is not a validity: write a range (2026-11-20 -- 2027-05-20), "
        "a date, 'tillsvidare' or a duration (6 månader)"
    )


def _duration(unit: str, count: int) -> relativedelta:
    if unit == "days":
        return relativedelta(days=count)
    if unit == "weeks":
        return relativedelta(weeks=count)
    if unit == "months":
        return relativedelta(months=count)
    return relativedelta(years=count)


def _need(value: date | None, reason: str) -> date:
    if value is None:
        raise Unreadable(f"{reason}, and the note has no date")
    return value


# -- agreed times -----------------------------------------------------------------------------

_WEEKDAY = r"(?:(?:mån|tis|ons|tors|fre|lör|sön)(?:dag(?:en)?)?\.?\s+)"
_AGREED_TIME = re.compile(
    rf"(?<![\w/-]){_WEEKDAY}?(?:den\s+)?(?P<date>{_DATE})(?![\d/])"
    r"(?:\s*,?\s*(?:(?:kl\.?|klockan)\s*(?P<kh>\d{1,2})(?:[:.](?P<km>\d{2}))?\b"
    r"|(?P<hh>\d{1,2})[:.](?P<mm>\d{2})\b))?"
    r"(?P<rest>.*)",
    re.IGNORECASE,
)
_PLACE_LEAD = re.compile(r"^\s*(?:[,;:–—-]\s*)?(?:(?:på|i|hos|vid)\s+)?", re.IGNORECASE)
_NAMED_PLACE = re.compile(r"^\s*(?:[,;:–—-]\s*)?(?:på|hos|vid)\s+", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class AgreedTime:
    """A time agreed with the patient: becomes an ``Appointment``."""

    line: str
    """The line it was read from, verbatim."""
    start: datetime
    """Aware, in Swedish local time."""
    location: str | None


def parse_agreed_time(line: str) -> AgreedTime:
    """The first date with a time of day in ``line``, in Swedish local time, and the place.

    The date may stand anywhere in the line ("Återbesök 2027-01-20 kl. 08.15,
    KBT-samtal"). The rest of a line that starts with the date is the place;
    in a line that starts with something else, only what ``på``/``hos``/``vid``
    introduces is (the words before the date say what, not where). A date
    without a time of day is unreadable as an appointment: the appointment's
    start would be a guess (:func:`parse_planned_time` reads it as a plan).
    """
    stripped = line.strip()
    match = _AGREED_TIME.search(stripped)
    if match is None:
        raise Unreadable(f"'{stripped}' has no date (YYYY-MM-DD HH:MM)")
    day = parse_date(match["date"])
    hour = match["hh"] or match["kh"]
    if hour is None:
        raise Unreadable(f"'{stripped}' has a date but no time of day (HH:MM)")
    minute = int(match["mm"] or match["km"] or 0)
    try:
        clock = time(int(hour), minute)
    except ValueError:
        raise UnreadableTime(f"'{stripped}' has no valid time of day") from None
    try:
        start = local_datetime(datetime.combine(day, clock))
    except Unreadable as problem:
        raise UnreadableTime(str(problem)) from None
    rest = match["rest"]
    if match.start() == 0:
        place = _PLACE_LEAD.sub("", rest)
    else:
        named = _NAMED_PLACE.match(rest)
        place = rest[named.end():] if named else ""
    place = place.strip().rstrip(".").strip()
    return AgreedTime(line=line, start=start, location=place or None)


# -- planned times (not appointments) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlannedTime:
    """When something is planned, as far as the words say: a day, or a span of days."""

    line: str
    start: date
    end: date
    how: str
    """How it was read, for the warning: "week 12 of 2027", "3 months from the note's date"."""


_FULL_DATE = re.compile(rf"(?<![\d/])(?:{_DATE})(?![\d/])", re.IGNORECASE)
_DAY_MONTH = re.compile(r"(?<![\d/.-])(?P<d>\d{1,2})/(?P<m>\d{1,2})(?![\d/])")
_WEEK = re.compile(r"(?<!\w)(?:v\.?|vecka|veckan|vecko)\s*(?P<w>\d{1,2})(?!\d)", re.IGNORECASE)
_RELATIVE = re.compile(
    rf"(?<!\w)(?P<how>om|inom|efter|om ca|om cirka)\s+(?P<n>\d{{1,3}}|{_NUMBER_ALT})\s*"
    rf"(?P<unit>{_UNIT_ALT})(?!\w)",
    re.IGNORECASE,
)


def parse_planned_time(line: str, note_date: date | None) -> PlannedTime:
    """When a line plans something without booking a time: a day or a span of days.

    Read, in this order: a full date without a time of day; a day and month
    without a year (``15/3``: the first on or after the note's date); a week
    (``v. 12``, ``vecka 12``: the first such week that is not over at the
    note's date); a time from the note's date (``om 3 månader`` is that day,
    ``inom 6 veckor`` the span up to it). The relative forms need the note's
    date; without it they are unreadable.
    """
    stripped = line.strip()
    if full := _FULL_DATE.search(stripped):
        day = parse_date(full[0])
        return PlannedTime(line, day, day, f"the date {day.isoformat()}")
    if match := _DAY_MONTH.search(stripped):
        anchor = _need(note_date, f"'{match[0]}' has no year")
        day = _next_day_month(int(match["d"]), int(match["m"]), anchor, match[0])
        return PlannedTime(line, day, day, f"'{match[0]}' as {day.isoformat()}, the first after "
                           "the note's date")
    if match := _WEEK.search(stripped):
        anchor = _need(note_date, f"'{match[0]}' has no year")
        monday = _next_week(int(match["w"]), anchor, match[0])
        return PlannedTime(line, monday, monday + relativedelta(days=6),
                           f"'{match[0]}' as week {int(match['w'])} of {monday.isocalendar()[0]}")
    if match := _RELATIVE.search(stripped):
        anchor = _need(note_date, f"'{match[0]}' counts from the note's date")
        amount = match["n"].lower()
        count = int(amount) if amount.isdigit() else _NUMBER_WORDS[amount]
        until = anchor + _duration(_UNITS[match["unit"].lower()], count)
        if match["how"].lower() == "inom":
            return PlannedTime(line, anchor, until, f"'{match[0]}' as {anchor.isoformat()} -- "
                               f"{until.isoformat()}, from the note's date")
        return PlannedTime(line, until, until, f"'{match[0]}' as {until.isoformat()}, from the "
                           "note's date")
    raise Unreadable(f"'{stripped}' names no date, week or time from now")


def _next_day_month(day: int, month: int, anchor: date, written: str) -> date:
    for year in range(anchor.year, anchor.year + 5):  # 29/2: the next leap year
        try:
            candidate = date(year, month, day)
        except ValueError:
            if (month, day) == (2, 29):
                continue
            raise Unreadable(f"'{written}' is not a day and month") from None
        if candidate >= anchor:
            return candidate
    raise Unreadable(f"'{written}' is not a day and month")


def _next_week(week: int, anchor: date, written: str) -> date:
    for year in (anchor.isocalendar()[0], anchor.isocalendar()[0] + 1):
        try:
            monday = date.fromisocalendar(year, week, 1)
        except ValueError:
            continue
        if monday + relativedelta(days=6) >= anchor:
            return monday
    raise Unreadable(f"'{written}' is not a week of the coming year")


def local_datetime(naive: datetime) -> datetime:
    """A wall-clock time in Sweden as an aware datetime; refuses the DST gap and overlap."""
    first = naive.replace(tzinfo=SWEDISH_TIME, fold=0)
    second = naive.replace(tzinfo=SWEDISH_TIME, fold=1)
    if first.utcoffset() != second.utcoffset():
        back = first.astimezone(UTC).astimezone(SWEDISH_TIME).replace(tzinfo=None)
        if back != naive:
            raise Unreadable(
                f"{naive:%Y-%m-%d %H:%M} does not exist in Swedish time "
                "(the clocks are put forward then)"
            )
        raise Unreadable(
            f"{naive:%Y-%m-%d %H:%M} happens twice in Swedish time "
            "(the clocks are put back then): say which"
        )
    return first


# -- contact points ---------------------------------------------------------------------------

_SHORT_NUMBER = re.compile(r"(?<![\d\w.-])(1177|112|114 ?14|113 ?13)(?![\d\w]|\.se)")
_E_SERVICE = re.compile(r"(?<![\w.])1177(?:\.se)?\s+e-tjänst(?:er|en)?", re.IGNORECASE)
_URL = re.compile(r"\b(?:https?://|www\.)[^\s,;()<>]+[^\s,;()<>.]|\b1177\.se\b", re.IGNORECASE)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_DASHES = str.maketrans({"–": "-", "—": "-", "‑": "-", "\u00a0": " "})


def _lightly(value: str) -> str:
    """Normalise a written number lightly: one kind of dash, single spaces."""
    return " ".join(value.translate(_DASHES).split())


@dataclass(frozen=True, slots=True)
class FoundContact:
    """A way of reaching someone found in a text, with what the text says around it."""

    point: dict[str, Any]
    """A FHIR ``ContactPoint``: system and value (as written, lightly normalised)."""
    hours: str | None = None
    """When the number answers, as written beside it: "vardagar 08.00–16.30"."""
    professional_only: bool = False
    """The text says the number is for professionals ("endast för hemsjukvården")."""


_TIME_OF_DAY = r"(?:[01]?\d|2[0-4])(?:[.:][0-5]\d)?"
_DAY_NAME = r"(?:mån|tis|ons|tors?|fre|lör|sön)(?:dag(?:ar)?|dagen)?\.?(?!\w)"
_HOURS_WORD = (
    r"(?:helgfria\s+vardagar|vardagar|vardag|helger|helgdagar|alla\s+dagar|dagligen|"
    r"telefontid(?:er)?|telefontider|öppettider|öppet|tider|dagtid)(?!\w)"
)
_TIME_RANGE = re.compile(
    rf"(?<![\d.:])(?P<a>{_TIME_OF_DAY})\s*[-–—]\s*(?P<b>{_TIME_OF_DAY})(?!\d)"
)
_HOURS_LEAD = re.compile(
    rf"(?:(?<!\w)(?:{_HOURS_WORD}|{_DAY_NAME}(?:\s*[-–—]\s*{_DAY_NAME})?)[\s,:]*)*"
    r"(?P<kl>(?<!\w)(?:kl\.?|klockan)\s*)?$",
    re.IGNORECASE,
)
_LEAD_WINDOW = 60
"""How far before a time range its day words may start ("helgfria vardagar mån-fre kl")."""
_PROFESSIONALS = (
    r"(?:vård)?personal(?:en)?|hemsjukvård(?:en)?|hemtjänst(?:en)?|sjuksköterskor(?:na)?|"
    r"läkare(?:n|na)?|kollegor(?:na)?|vårdgivare(?:n|na)?|yrkesverksamma|professionella|"
    r"kommunen|ambulans(?:en)?|vården|sjukhuset|mottagningen|vårdcentralen|hälsocentralen"
)
_PROFESSIONAL_ONLY = re.compile(
    rf"(?<!\w)(?:(?:endast|bara|enbart|gäller\s+endast|enkom)\s+(?:för|till)\s+(?:{_PROFESSIONALS})"
    r"|(?:ej|inte|icke)\s+(?:för|till)\s+patient(?:en|er|erna)?|internt?\s+(?:nummer|telefon)"
    r"|ej\s+för\s+utlämning|lämnas\s+ej\s+ut)(?!\w)(?P<colon>\s*:)?",
    re.IGNORECASE,
)


def _opening_hours(text: str) -> list[tuple[int, int, str]]:
    """Opening hours in ``text``: (start, end, the words as written, days included).

    A time range is opening hours when a time has minutes, or day words or
    "kl" lead it: "08.00–16.30" and "mån-fre 8-17" are hours; a bare "08-17"
    could be the start of a Stockholm number (08-17 45 67) and is left to the
    phone reader.
    """
    found: list[tuple[int, int, str]] = []
    for match in _TIME_RANGE.finditer(text):
        window_start = max(0, match.start() - _LEAD_WINDOW, text.rfind("\n", 0, match.start()) + 1)
        lead = _HOURS_LEAD.search(text, window_start, match.start())
        start = lead.start() if lead is not None and lead.group().strip() else match.start()
        with_minutes = any(sep in match[name] for name in ("a", "b") for sep in ".:")
        if with_minutes or start < match.start():
            words = " ".join(text[start:match.end()].split()).strip(" ,:")
            found.append((start, match.end(), words))
    return found


@lru_cache(maxsize=4096)
def find_contact_points(text: str) -> tuple[FoundContact, ...]:
    """Every way of reaching someone in ``text``, in order, each with its hours and audience.

    Remembered per text (a note's texts are read twice, for the warnings and for
    the resources, and the patient's page reads them on every view); the
    points are shared, so copy one before changing it. Opening hours are found
    first and are never read as a number (``08.00-16.30``
    is not ``+468001630``); they belong to the nearest number before them on
    the line (else the next one). A professionals-only marker belongs to the
    number right before it on the line ("0480-123 99 (endast för
    hemsjukvården)"), or to the next one when it ends with a colon or nothing
    precedes it ("Endast för personal: 0480-123 99").
    """
    found: list[tuple[int, int, dict[str, Any]]] = []
    hours_spans = _opening_hours(text)
    taken: list[tuple[int, int]] = [(start, end) for start, end, _ in hours_spans]

    def add(start: int, end: int, point: dict[str, Any]) -> bool:
        if any(start < e and s < end for s, e in taken):
            return False  # already covered by an earlier, more specific reading
        taken.append((start, end))
        found.append((start, end, point))
        return True

    for match in _E_SERVICE.finditer(text):
        add(match.start(), match.end(), {"system": "other", "value": _lightly(match[0])})
    for match in _EMAIL.finditer(text):
        add(match.start(), match.end(), {"system": "email", "value": match[0]})
    for match in _URL.finditer(text):
        add(match.start(), match.end(), {"system": "url", "value": match[0]})
    seen_numbers: set[str] = set()
    for number in phonenumbers.PhoneNumberMatcher(text, "SE", leniency=phonenumbers.Leniency.VALID):
        e164 = phonenumbers.format_number(number.number, phonenumbers.PhoneNumberFormat.E164)
        point = {"system": "phone", "value": _lightly(number.raw_string)}
        if e164 not in seen_numbers and add(number.start, number.end, point):
            seen_numbers.add(e164)
    for match in _SHORT_NUMBER.finditer(text):
        value = match[1].replace(" ", "")
        point = {"system": "phone", "value": _lightly(match[1])}
        if value not in seen_numbers and add(match.start(), match.end(), point):
            seen_numbers.add(value)

    found.sort(key=lambda entry: entry[0])
    phones = [(start, end) for start, end, point in found if point["system"] == "phone"]
    hours: dict[int, list[str]] = {}
    for start, end, words in hours_spans:
        owner = _owner(text, phones, start, end, forward=False)
        if owner is not None:
            hours.setdefault(owner, []).append(words)
    professional: set[int] = set()
    for match in _PROFESSIONAL_ONLY.finditer(text):
        owner = _owner(text, phones, match.start(), match.end(), forward=bool(match["colon"]))
        if owner is not None:
            professional.add(owner)
    return tuple(
        FoundContact(
            point,
            hours="; ".join(hours[start]) if start in hours else None,
            professional_only=start in professional,
        )
        for start, _, point in found
    )


def _owner(
    text: str, phones: list[tuple[int, int]], start: int, end: int, *, forward: bool
) -> int | None:
    """The start of the number on the same line that words at ``start:end`` are about."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end < 0 else line_end
    before = [s for s, e in phones if line_start <= s and e <= start]
    after = [s for s, e in phones if s >= end and e <= line_end]
    if forward and after:
        return after[0]
    if before:
        return before[-1]
    return after[0] if after else None


def parse_contact_points(text: str) -> list[dict[str, Any]]:
    """FHIR ``ContactPoint`` dicts for every way of reaching someone found in ``text``.

    Values are kept as written (lightly normalised), in the order they appear;
    opening hours are not numbers (:func:`find_contact_points` says more).
    """
    return [dict(found.point) for found in find_contact_points(text)]


# -- people, HSA-ids, plans -------------------------------------------------------------------

_HSA_IN_TEXT = re.compile(r"\bSE[0-9A-Z]{10,}-[0-9A-Za-z]+\b")
_NAME_END = re.compile(r",|;|\.\s|\.$|\s\(|\s[–—-]\s|\s+(?:tel|telefon)\b", re.IGNORECASE)


def find_hsa_ids(text: str) -> list[str]:
    """HSA-id-shaped tokens in free text (``SE2321000073-1001``), in order, once each."""
    return list(dict.fromkeys(_HSA_IN_TEXT.findall(text)))


def person_display(text: str) -> str | None:
    """Who a contact's text names: its first line up to the first comma or sentence end.

    "Karin Ek, distriktssköterska" names Karin Ek. Used as ``Reference.display``
    only; the whole text is kept beside it.
    """
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    head = _NAME_END.split(first, maxsplit=1)[0].strip()
    return head or None


_PLAN_TYPES: Final[tuple[tuple[str, re.Pattern[str]], ...]] = (
    ("SIP", re.compile(r"\bSIP\b|samordnad individuell plan", re.IGNORECASE)),
    ("SPU", re.compile(r"\bSPU\b|samordnad plan (?:vid|för|inför) utskrivning", re.IGNORECASE)),
    ("SPLPTLRV", re.compile(r"\bSPLPTLRV\b")),
    ("RP", re.compile(r"rehabiliteringsplan|\brehabplan", re.IGNORECASE)),
    ("HP", re.compile(r"(?<!re)habiliteringsplan", re.IGNORECASE)),
    ("GP", re.compile(r"genomförandeplan", re.IGNORECASE)),
    ("SVP", re.compile(r"standardiserad vårdplan", re.IGNORECASE)),
)


def plan_types(text: str) -> list[str]:
    """Inera ``typeofcareplan`` codes for the statutory plans a text names (SIP, RP, ...)."""
    return [code for code, pattern in _PLAN_TYPES if pattern.search(text)]
