"""What can be read out of an agreement's words: one reading per item, plus warnings.

The builder uses the readings to fill structured FHIR elements (``period``,
``Appointment.start``, ``telecom``, ``member``); the importer returns the
warnings to the client. Both call :func:`interpret`, so what the client is
warned about is exactly what the resources lack.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from samplan.agreement.codes import CONTACT_PART_CODES, nopatient_label
from samplan.agreement.model import Agreement, AgreementItem, Part
from samplan.agreement.values import (
    AgreedTime,
    PlannedTime,
    Unreadable,
    UnreadableTime,
    Validity,
    find_contact_points,
    looks_like_a_date,
    parse_agreed_time,
    parse_planned_time,
    parse_validity,
    person_display,
    plan_types,
)
from samplan.fhir.errors import Issue
from samplan.fhir.identifiers import is_hsa_id

__all__ = ["Interpretation", "ItemReading", "interpret", "item_expression", "telecom"]


@dataclass(frozen=True, slots=True)
class ItemReading:
    """What could be read from one item's text (empty where nothing applies)."""

    item: AgreementItem
    validity: Validity | None = None
    times: tuple[AgreedTime, ...] = ()
    planned: tuple[PlannedTime, ...] = ()
    """Follow-up lines that plan a day or a span without booking a time (``v. 12``)."""
    kv_code: str | None = None
    """KV "Typ av fast kontakt" code, for named contacts."""
    display: str | None = None
    """Who a contact names, for ``Reference.display``."""
    hsa_id: str | None = None
    """The contact's HSA-id, when it is a valid one."""
    telecom: tuple[dict[str, Any], ...] = ()
    """FHIR ``ContactPoint``s; one for professionals only carries the inline NOPATIENT label."""
    plan_types: tuple[str, ...] = ()
    """Inera kinds of the statutory plans a coordinated-plan text names (SIP, RP, ...):
    for linked plans; the agreement's own activity codes stay one coding (profile)."""
    as_other: bool = False
    """Kept as an "other keyword" activity (e.g. a second validity): FHIR has one period."""


@dataclass(frozen=True, slots=True)
class Interpretation:
    """One :class:`ItemReading` per ``agreement.items`` entry (same order), and the warnings."""

    readings: tuple[ItemReading, ...]
    issues: tuple[Issue, ...] = field(default=())

    @property
    def validity(self) -> Validity | None:
        """The agreement's period, if its validity could be read."""
        for reading in self.readings:
            if reading.item.part is Part.VALIDITY and not reading.as_other:
                return reading.validity
        return None


def item_expression(agreement: Agreement, item: AgreementItem) -> tuple[str, ...]:
    """The keyword path a warning about ``item`` names: ``Överenskommelse/Tid för uppföljning``."""
    return (f"{agreement.section_keyword}/{item.keyword}",)


def interpret(agreement: Agreement) -> Interpretation:
    """Read dates, times, contacts and plan kinds out of every item; collect warnings."""
    local = agreement.signed_at_local
    note_date = local.date() if local is not None else None
    issues: list[Issue] = []
    readings: list[ItemReading] = []
    seen_validity = False
    gp_contacts = 0

    for item in agreement.items:
        where = item_expression(agreement, item)
        if item.part is Part.VALIDITY:
            if seen_validity:
                issues.append(
                    _warn(
                        "business-rule",
                        f"a second validity keyword '{item.keyword}': FHIR has one period, "
                        "so it is kept as an 'other keyword' activity",
                        where,
                    )
                )
                readings.append(ItemReading(item, as_other=True))
                continue
            seen_validity = True
            readings.append(ItemReading(item, validity=_validity(item, note_date, where, issues)))
        elif item.part is Part.FOLLOW_UP_TIME:
            times, planned = _times(item, note_date, where, issues)
            readings.append(ItemReading(item, times=times, planned=planned))
        elif item.part is Part.NEXT_STEP:
            readings.append(ItemReading(item, times=_times_in_text(item, where, issues)))
        elif item.part.is_contact:
            gp_contacts += item.part is Part.GP_CONTACT
            readings.append(_contact(item, where, issues))
        elif item.part is Part.CONTACT_VIA:
            readings.append(ItemReading(item, telecom=telecom(item.text)))
        elif item.part is Part.COORDINATED_PLAN:
            readings.append(ItemReading(item, plan_types=tuple(plan_types(item.text))))
        else:
            readings.append(ItemReading(item))

    if gp_contacts > 1:
        issues.append(
            _warn(
                "business-rule",
                f"{gp_contacts} fast läkarkontakt keywords: a patient has at most one named GP",
                (agreement.section_keyword,),
            )
        )
    for label, who in (("author", agreement.author), ("care unit", agreement.care_unit)):
        if who is not None and who.hsa_id is not None and not is_hsa_id(who.hsa_id):
            issues.append(
                _warn(
                    "value",
                    f"the {label}'s HSA-id '{who.hsa_id}' is not an HSA-id; it is not used "
                    "as an identifier",
                    (label,),
                )
            )
    return Interpretation(tuple(readings), tuple(issues))


def _warn(code: str, diagnostics: str, where: tuple[str, ...]) -> Issue:
    return Issue(code=code, diagnostics=diagnostics, expression=where, severity="warning")


def _validity(
    item: AgreementItem, note_date: date | None, where: tuple[str, ...], issues: list[Issue]
) -> Validity | None:
    try:
        return parse_validity(item.text, note_date)
    except Unreadable as problem:
        issues.append(
            _warn("value", f"validity not read, kept as text: {problem}", where),
        )
        return None


def _times(
    item: AgreementItem, note_date: date | None, where: tuple[str, ...], issues: list[Issue]
) -> tuple[tuple[AgreedTime, ...], tuple[PlannedTime, ...]]:
    """A follow-up keyword's lines: booked times, and the days or weeks planned without one.

    A line with a date and a time of day anywhere in it is an appointment. A
    line that plans without a time (a date alone, ``15/3``, ``v. 12``, ``om 3
    månader``) is a planned time, computed from the note's date and warned
    about; a line that seems to hold a date but cannot be read is warned about.
    No line is dropped: the text is kept whole in any case.
    """
    times: list[AgreedTime] = []
    planned: list[PlannedTime] = []
    problems: list[str] = []
    for number, line in enumerate(item.text.split("\n"), start=1):
        if not line.strip():
            continue
        booked_problem: UnreadableTime | None = None
        try:
            times.append(parse_agreed_time(line))
            continue
        except UnreadableTime as unreadable:
            booked_problem = unreadable
        except Unreadable:
            pass
        try:
            plan = parse_planned_time(line, note_date)
        except Unreadable as unreadable:
            if booked_problem is not None or looks_like_a_date(line):
                problems.append(f"line {number}: {booked_problem or unreadable}")
            continue
        if booked_problem is not None:
            problems.append(f"line {number}: {booked_problem}")
            continue
        planned.append(plan)
        issues.append(
            _warn(
                "value",
                f"no time of day, no appointment booked: line {number} is planned for "
                f"{plan.how}; the text is kept",
                where,
            )
        )
    for problem in problems:
        issues.append(_warn("value", f"time not read, no appointment booked: {problem}", where))
    if not times and not planned and not problems:
        issues.append(
            _warn(
                "value",
                "no date and time (YYYY-MM-DD HH:MM) found, no appointment booked; "
                "the text is kept",
                where,
            )
        )
    return tuple(times), tuple(planned)


def _times_in_text(
    item: AgreementItem, where: tuple[str, ...], issues: list[Issue]
) -> tuple[AgreedTime, ...]:
    """Booked times written in a next-step text ("Återbesök 2027-01-20 kl. 08.15").

    Only lines with a date *and* a time of day book anything here; other lines
    are plans in words and say nothing to warn about.
    """
    times: list[AgreedTime] = []
    for number, line in enumerate(item.text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            times.append(parse_agreed_time(line))
        except UnreadableTime as unreadable:
            issues.append(
                _warn(
                    "value",
                    f"time not read, no appointment booked: line {number}: {unreadable}",
                    where,
                )
            )
        except Unreadable:
            continue  # a plan in words: nothing to book, nothing to warn about
    return tuple(times)


def telecom(text: str) -> tuple[dict[str, Any], ...]:
    """The ``ContactPoint``s in ``text``; one for professionals only is labelled NOPATIENT.

    Opening hours beside a number stay in the text (FHIR R4 has no element for
    them); they are never a number of their own.
    """
    points: list[dict[str, Any]] = []
    for found in find_contact_points(text):
        point = dict(found.point)
        if found.professional_only:
            point["extension"] = [nopatient_label()]
        points.append(point)
    return tuple(points)


def _contact(item: AgreementItem, where: tuple[str, ...], issues: list[Issue]) -> ItemReading:
    hsa_id = item.hsa_id
    if hsa_id is not None and not is_hsa_id(hsa_id):
        issues.append(
            _warn("value", f"'{hsa_id}' is not an HSA-id; the contact is kept by name", where)
        )
        hsa_id = None
    return ItemReading(
        item,
        kv_code=CONTACT_PART_CODES[item.part],
        display=person_display(item.text),
        hsa_id=hsa_id,
        telecom=telecom(item.text),
    )
