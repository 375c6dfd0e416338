"""The patient's view of their agreement: what a portal, the page and the paper show.

Pure (no SQL, no HTTP). :mod:`samplan.agreement.patient_service` gathers the
patient's resources into a :class:`PatientRecord`; this module

1. removes everything the patient must not see (:meth:`PatientRecord.for_patient`):
   resources labelled ``NOPATIENT`` in ``meta.security``, elements inside a
   resource labelled with the DS4P inline security label
   (:data:`EXT_INLINE_SECURITY_LABEL`, valueCoding ``NOPATIENT``: an activity,
   a note, a participant, a telecom), and references to removed resources;
2. reads the rest into a :class:`PatientView`: the agreement in the order a
   patient thinks (DOMAIN.md, seed 004: *what do I do, whom do I call, what is
   my next step*), in plain Swedish, with the words exactly as care wrote them.

The view's parts and where their words come from:

=============================  ==========================================================
part of the page               source
=============================  ==========================================================
Det här gör jag                activities ``patient-responsibility`` (also the patient's own)
Om jag blir sämre              activities ``on-deterioration``
Det här gör vården             activities ``care-responsibility``
Mina kontakter                 CareTeam participants (resolved to Practitioner,
                               PractitionerRole, Organization: phone, opening hours)
                               and ``CareTeam.note`` (*Patienten kan kontakta vården via*)
Nästa steg och min nästa tid   activities ``next-step``, ``follow-up`` and upcoming Appointments
Mina planer                    activities ``coordinated-plan``, other keywords, and the
                               patient's other active CarePlans (SIP, rehab plan, ...)
Det här är viktigt för mig     Goals (the patient's own, ``expressedBy`` = Patient, first)
=============================  ==========================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from typing import Any, Final

import phonenumbers

from samplan.agreement.codes import (
    ACTIVITY_KIND_SYSTEM,
    AGREEMENT_CATEGORY,
    CONTACT_KIND_SYSTEM,
    COSMIC_NOTE_ID_SYSTEM,
    EXT_NOTE_KEYWORD,
    EXT_NOTE_TEXT,
    EXT_PATIENT_AUTHORED,
    EXT_TEMPLATE_VARIANT,
    INERA_CAREPLAN_TYPE_SYSTEM,
    PART_ACTIVITY_KIND,
    PART_DEFAULT_KEYWORD,
    PERSONNUMMER_SYSTEM,
    SAMORDNINGSNUMMER_SYSTEM,
)
from samplan.agreement.model import Part
from samplan.agreement.values import find_contact_points, to_local
from samplan.fhir.identifiers import canonical_system
from samplan.security.redaction import (
    EXT_INLINE_SECURITY_LABEL,
    NOPATIENT_CODE,
    NOPATIENT_SYSTEM,
    for_patient,
    is_nopatient,
)

__all__ = [
    "EXT_INLINE_SECURITY_LABEL",
    "NOPATIENT_CODE",
    "NOPATIENT_SYSTEM",
    "AgreementHeader",
    "Contact",
    "Link",
    "LinkedPlan",
    "Message",
    "PatientRecord",
    "PatientView",
    "Text",
    "Visit",
    "build_view",
    "is_nopatient",
    "long_date",
    "long_datetime",
    "for_patient",
]

Resource = dict[str, Any]

UPCOMING_STATUSES: Final = frozenset(
    {"proposed", "pending", "booked", "arrived", "checked-in", "waitlist"}
)
"""Appointment statuses that are still ahead of the patient."""

ACTIVE_GOAL_STATUSES: Final = frozenset({"proposed", "planned", "accepted", "active", "on-hold"})

PLAN_KINDS: Final[dict[str, str]] = {
    "SIP": "Samordnad individuell plan (SIP)",
    "SPLPTLRV": "Samordnad plan enligt LPT och LRV",
    "SPU": "Samordnad plan vid utskrivning",
    "VP": "Vårdplan",
    "HP": "Habiliteringsplan",
    "RP": "Rehabiliteringsplan",
    "GP": "Genomförandeplan",
    "SVP": "Standardiserad vårdplan",
}
"""Inera's kinds of care plan, as a patient reads them."""

CONTACT_ROLES: Final[dict[str, str]] = {
    "2": "Din fasta läkarkontakt",
    "1": "Din fasta vårdkontakt",
    "4": "Samordnar din vård",
    "3": "Din fasta omsorgskontakt",
}
"""KV "Typ av fast kontakt" in plain Swedish, in the order the page lists them."""

_KIND_PART: Final = {kind: part for part, kind in PART_ACTIVITY_KIND.items()}

_MONTHS: Final = (
    "januari", "februari", "mars", "april", "maj", "juni",
    "juli", "augusti", "september", "oktober", "november", "december",
)  # fmt: skip
_WEEKDAYS: Final = ("måndag", "tisdag", "onsdag", "torsdag", "fredag", "lördag", "söndag")
_FHIR_DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


# -- the record --------------------------------------------------------------------------------


def _key(resource: Mapping[str, Any]) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id')}"


def is_agreement(careplan: Mapping[str, Any]) -> bool:
    """Whether a CarePlan is a documented agreement (its category says so)."""
    return any(
        (coding.get("system"), coding.get("code"))
        == (AGREEMENT_CATEGORY["system"], AGREEMENT_CATEGORY["code"])
        for category in careplan.get("category") or ()
        for coding in category.get("coding") or ()
    )


@dataclass(frozen=True, slots=True)
class PatientRecord:
    """Everything about one patient that the patient's view draws on, as stored."""

    patient: Resource
    careplans: tuple[Resource, ...] = ()
    """Active CarePlans: the agreements, and the patient's other plans (SIP, ...)."""
    careteams: tuple[Resource, ...] = ()
    goals: tuple[Resource, ...] = ()
    appointments: tuple[Resource, ...] = ()
    directory: tuple[Resource, ...] = ()
    """Practitioner, PractitionerRole, Organization, RelatedPerson named by the above."""
    messages: tuple[Resource, ...] = ()
    """Communications between the patient and care (not part of the agreement)."""
    hidden: frozenset[str] = frozenset()
    """``Type/id`` of resources hidden from the patient that these refer to (the gate knows
    them; some are not in the record at all): their references are removed too."""
    unlabelled: bool = False
    """Known to carry no ``NOPATIENT`` label anywhere (the gatherer looked at the stored
    bytes): :meth:`for_patient` has nothing to remove. False: not known, look."""

    @property
    def agreements(self) -> tuple[Resource, ...]:
        return tuple(plan for plan in self.careplans if is_agreement(plan))

    @property
    def linked_plans(self) -> tuple[Resource, ...]:
        return tuple(plan for plan in self.careplans if not is_agreement(plan))

    def all(self) -> tuple[Resource, ...]:
        return (self.patient, *self.careplans, *self.careteams, *self.goals,
                *self.appointments, *self.directory, *self.messages)  # fmt: skip

    def for_patient(self) -> PatientRecord:
        """The record without anything labelled ``NOPATIENT`` (the security layer's
        :func:`~samplan.security.redaction.for_patient`, on every resource of it)."""
        if self.unlabelled and not self.hidden:
            return self
        excluded = self.hidden | frozenset(_key(r) for r in self.all() if is_nopatient(r))

        def clean(resources: tuple[Resource, ...]) -> tuple[Resource, ...]:
            kept = (for_patient(r, excluded) for r in resources)
            return tuple(r for r in kept if r is not None)

        patient = for_patient(self.patient, excluded)
        return PatientRecord(
            patient=patient if patient is not None else {
                "resourceType": "Patient", "id": self.patient.get("id")
            },
            careplans=clean(self.careplans),
            careteams=clean(self.careteams),
            goals=clean(self.goals),
            appointments=clean(self.appointments),
            directory=clean(self.directory),
            messages=clean(self.messages),
        )


# -- the view ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Link:
    """A way to reach someone: a phone number to tap, a web address, an e-mail address."""

    label: str
    href: str | None
    kind: str
    """``phone``, ``url``, ``email`` or ``other`` (e.g. "1177 e-tjänster", no link)."""
    hours: str | None = None
    """When the number answers, as the text says beside it: "vardagar 08.00–16.30"."""


@dataclass(frozen=True, slots=True)
class Text:
    """One keyword of the agreement and its text, as care (or the patient) wrote it."""

    keyword: str
    text: str
    patient_authored: bool = False
    links: tuple[Link, ...] = ()
    withdraw: str | None = None
    """What the patient may take back (their own items): ``Goal/7``, ``CarePlan/3#pa-1``."""
    source: str | None = None
    """The resource the words are stored in."""


@dataclass(frozen=True, slots=True)
class Contact:
    """A named contact of the care team, with every way of reaching them we know."""

    role: str
    """Plain Swedish: "Din fasta läkarkontakt"."""
    keyword: str
    """The keyword as the note wrote it: "Fast läkarkontakt i primärvården"."""
    text: str
    """The note's words about the contact, verbatim."""
    name: str | None = None
    organisation: str | None = None
    links: tuple[Link, ...] = ()
    organisation_links: tuple[Link, ...] = ()
    hours: tuple[str, ...] = ()
    patient_authored: bool = False
    in_agreement: bool = True
    """The contact is a keyword of the agreement (a KV "Typ av fast kontakt" role)."""


@dataclass(frozen=True, slots=True)
class Visit:
    """An upcoming appointment."""

    start: datetime
    when: str
    """In words: "tisdag 12 januari 2027 kl. 09.30"."""
    where: str | None = None
    what: str | None = None
    with_whom: tuple[str, ...] = ()
    status: str = "booked"


@dataclass(frozen=True, slots=True)
class LinkedPlan:
    """Another plan of the patient's: a SIP, a rehabilitation plan, ..."""

    title: str
    kind: str | None = None
    period: str | None = None
    description: str | None = None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """A message between the patient and care (a Communication)."""

    sent: str
    text: str
    from_patient: bool
    sender: str | None = None


@dataclass(frozen=True, slots=True)
class AgreementHeader:
    """One agreement CarePlan: who wrote it, where, when, and how long it holds."""

    careplan: str
    validity: str | None
    """In words; None when the agreement says nothing about how long it holds."""
    start: date | None = None
    end: date | None = None
    expired: bool = False
    unit: str | None = None
    author: str | None = None
    signed: str | None = None
    section_text: str | None = None


@dataclass(frozen=True, slots=True)
class PatientView:
    """The agreement as the patient reads it, in the order they think."""

    patient_id: str
    name: str | None
    personnummer: str | None
    """As staff write it: ``19450101-1235`` (a personnummer or a samordningsnummer)."""
    printed: str
    """When this view was made, in words (for paper: *utskriven*)."""
    agreements: tuple[AgreementHeader, ...] = ()
    i_do: tuple[Text, ...] = ()
    if_worse: tuple[Text, ...] = ()
    care_does: tuple[Text, ...] = ()
    contacts: tuple[Contact, ...] = ()
    reach_care: tuple[Text, ...] = ()
    next_steps: tuple[Text, ...] = ()
    visits: tuple[Visit, ...] = ()
    plans: tuple[Text, ...] = ()
    linked_plans: tuple[LinkedPlan, ...] = ()
    important: tuple[Text, ...] = ()
    messages: tuple[Message, ...] = ()
    careplan_ids: tuple[str, ...] = field(default=())
    identifier_kind: str = "Personnummer"
    """What ``personnummer`` is: "Personnummer" or "Samordningsnummer" (they differ)."""

    @property
    def next_visit(self) -> Visit | None:
        return self.visits[0] if self.visits else None

    @property
    def has_agreement(self) -> bool:
        return bool(self.agreements)

    def texts(self) -> list[str]:
        """Every agreement text the view shows (what a printout must contain)."""
        found: list[str] = []
        for texts in (self.i_do, self.if_worse, self.care_does, self.reach_care,
                      self.next_steps, self.plans, self.important):
            found += [t.text for t in texts]
        found += [c.text for c in self.contacts]
        found += [a.section_text for a in self.agreements if a.section_text]
        return found


# -- words -------------------------------------------------------------------------------------


def long_date(day: date) -> str:
    """``20 november 2026``."""
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"


def long_datetime(moment: datetime) -> str:
    """``tisdag 12 januari 2027 kl. 09.30`` (Swedish time)."""
    local = to_local(moment)
    return f"{_WEEKDAYS[local.weekday()]} {long_date(local.date())} kl. {local:%H.%M}"


def _date(value: Any) -> date | None:
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _datetime(value: Any) -> datetime | None:
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _extension(element: Mapping[str, Any], url: str) -> Any:
    for ext in element.get("extension") or ():
        if isinstance(ext, Mapping) and ext.get("url") == url:
            for key, value in ext.items():
                if key.startswith("value"):
                    return value
    return None


def _human_name(resource: Mapping[str, Any] | None) -> str | None:
    for name in (resource or {}).get("name") or ():
        if not isinstance(name, Mapping):
            continue
        if name.get("text"):
            return str(name["text"])
        joined = " ".join(
            part for part in (*name.get("given", ()), name.get("family", "")) if part
        )
        if joined:
            return joined
    return None


def _written_number(patient: Mapping[str, Any]) -> tuple[str | None, str]:
    """The patient's number as staff write it, and its kind (a samordningsnummer is no
    personnummer: the page and the paper name which it is)."""
    for identifier in patient.get("identifier") or ():
        system = canonical_system(str(identifier.get("system", "")))
        value = str(identifier.get("value", ""))
        if system in (PERSONNUMMER_SYSTEM, SAMORDNINGSNUMMER_SYSTEM) and len(value) == 12:
            kind = "Samordningsnummer" if system == SAMORDNINGSNUMMER_SYSTEM else "Personnummer"
            return f"{value[:8]}-{value[8:]}", kind
    return None, "Personnummer"


@lru_cache(maxsize=4096)
def phone_href(number: str) -> str | None:
    """A ``tel:`` link for a Swedish number as written (``0480-123 46`` -> ``tel:+4648012346``)."""
    digits = "".join(ch for ch in number if ch.isdigit() or ch == "+")
    if digits in ("1177", "112", "11414", "11313"):
        return f"tel:{digits}"
    try:
        parsed = phonenumbers.parse(number, "SE")
    except phonenumbers.NumberParseException:
        return f"tel:{digits}" if digits else None
    if not phonenumbers.is_possible_number(parsed):
        return f"tel:{digits}" if digits else None
    return "tel:" + phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _link(point: Mapping[str, Any]) -> Link | None:
    value = point.get("value")
    if not isinstance(value, str) or not value.strip():
        return None
    system = point.get("system")
    if system in ("phone", "sms"):
        return Link(value, phone_href(value), "phone")
    if system == "email":
        return Link(value, f"mailto:{value}", "email")
    if system == "url":
        href = value if "://" in value else f"https://{value}"
        return Link(value, href, "url")
    return Link(value, None, "other")


def _links(points: Iterable[Mapping[str, Any]], before: Iterable[Link] = ()) -> tuple[Link, ...]:
    """The links of ``points`` after those ``before``, each once (the first of a target)."""
    found: list[Link] = []
    seen: set[str] = set()
    for link in (*before, *(_link(point) for point in points)):
        if link is None:
            continue
        key = link.href or link.label
        if key not in seen:
            seen.add(key)
            found.append(link)
    return tuple(found)


@lru_cache(maxsize=4096)
def _text_links(text: str) -> tuple[Link, ...]:
    """The links written in a text (finding phone numbers in free text is the costly part of
    the view: remembered, as the same words come back on every view of the agreement).

    A number the text marks for professionals only gets no link (the words stay as
    written); opening hours written beside a number go with its link, never as a number.
    """
    links: list[Link] = []
    for found in find_contact_points(text):
        if found.professional_only:
            continue
        link = _link(found.point)
        if link is not None:
            links.append(Link(link.label, link.href, link.kind, found.hours))
    return _links((), before=links)


def _hours(role: Mapping[str, Any]) -> tuple[str, ...]:
    """``PractitionerRole.availableTime`` in words: "måndag–fredag 08.00–17.00"."""
    lines: list[str] = []
    for slot in role.get("availableTime") or ():
        days = [d for d in slot.get("daysOfWeek") or () if d in _FHIR_DAYS]
        indexes = sorted(_FHIR_DAYS.index(d) for d in days)
        if not indexes:
            when = "alla dagar"
        elif indexes == list(range(indexes[0], indexes[-1] + 1)) and len(indexes) > 2:
            when = f"{_WEEKDAYS[indexes[0]]}–{_WEEKDAYS[indexes[-1]]}"
        else:
            when = ", ".join(_WEEKDAYS[i] for i in indexes)
        if slot.get("allDay"):
            lines.append(f"{when} hela dygnet")
            continue
        start, end = slot.get("availableStartTime"), slot.get("availableEndTime")
        if isinstance(start, str) and isinstance(end, str):
            lines.append(f"{when} {start[:5].replace(':', '.')}–{end[:5].replace(':', '.')}")
        else:
            lines.append(when)
    if isinstance(role.get("availabilityExceptions"), str):
        lines.append(role["availabilityExceptions"])
    return tuple(lines)


def _ref(reference: Any) -> str | None:
    if isinstance(reference, Mapping) and isinstance(reference.get("reference"), str):
        return str(reference["reference"])
    return None


# -- building ----------------------------------------------------------------------------------


class _Directory:
    def __init__(self, resources: Iterable[Resource]) -> None:
        self.by_key = {_key(r): r for r in resources}

    def get(self, reference: Any) -> Resource | None:
        key = _ref(reference)
        return self.by_key.get(key) if key else None

    def roles_of(self, practitioner_key: str) -> list[Resource]:
        return [
            r for r in self.by_key.values()
            if r.get("resourceType") == "PractitionerRole"
            and _ref(r.get("practitioner")) == practitioner_key
            and r.get("active") is not False
        ]


def build_view(record: PatientRecord, *, now: datetime) -> PatientView:
    """The patient's view of ``record``; call it on :meth:`PatientRecord.for_patient` output."""
    directory = _Directory((*record.directory, *record.careplans, *record.careteams,
                            *record.appointments))  # fmt: skip
    patient = record.patient
    patient_key = _key(patient)
    today = to_local(now).date()
    sections: dict[str, list[Text]] = {
        "i_do": [], "if_worse": [], "care_does": [], "next_steps": [], "plans": [],
        "reach_care": [],
    }  # fmt: skip
    headers: list[AgreementHeader] = []
    contacts: list[Contact] = []
    goal_keys: list[str] = []
    teams_seen: set[str] = set()
    for plan in record.agreements:
        plan_key = _key(plan)
        headers.append(_header(plan, directory, today))
        for activity in plan.get("activity") or ():
            placed = _activity(activity, plan_key, directory)
            if placed is not None:
                section, text = placed
                sections[section].append(text)
        for reference in plan.get("careTeam") or ():
            team = directory.get(reference)
            if team is None or _key(team) in teams_seen:
                continue
            teams_seen.add(_key(team))
            contacts += _contacts(team, directory)
            sections["reach_care"] += _reach_care(team)
        goal_keys += [key for key in (_ref(g) for g in plan.get("goal") or ()) if key]

    # The patient's own goals first ("Det här är viktigt för mig"), then the plan's.
    goals = sorted(
        (g for g in record.goals if g.get("lifecycleStatus", "active") in ACTIVE_GOAL_STATUSES),
        key=lambda g: (not _expressed_by_patient(g, patient_key),
                       goal_keys.index(_key(g)) if _key(g) in goal_keys else len(goal_keys)),
    )
    important = [_goal(g, patient_key) for g in goals]

    visits = sorted(
        (v for v in (_visit(a, directory, patient_key) for a in record.appointments)
         if v is not None and v.start >= now),
        key=lambda v: v.start,
    )
    linked = [_linked_plan(plan) for plan in record.linked_plans]
    messages = sorted(
        (m for m in record.messages if m.get("status") != "entered-in-error"),
        key=lambda m: str(m.get("sent", "")),
        reverse=True,
    )
    contacts.sort(key=_contact_order)
    number, kind = _written_number(patient)
    return PatientView(
        patient_id=str(patient.get("id")),
        name=_human_name(patient),
        personnummer=number,
        identifier_kind=kind,
        printed=long_date(today),
        agreements=tuple(headers),
        i_do=tuple(sections["i_do"]),
        if_worse=tuple(sections["if_worse"]),
        care_does=tuple(sections["care_does"]),
        contacts=tuple(contacts),
        reach_care=tuple(sections["reach_care"]),
        next_steps=tuple(sections["next_steps"]),
        visits=tuple(visits),
        plans=tuple(sections["plans"]),
        linked_plans=tuple(linked),
        important=tuple(important),
        messages=tuple(_message(m, patient_key, directory) for m in messages),
        careplan_ids=tuple(str(p.get("id")) for p in record.agreements),
    )


_SECTION_OF: Final[dict[Part, str]] = {
    Part.PATIENT_RESPONSIBILITY: "i_do",
    Part.ON_DETERIORATION: "if_worse",
    Part.CARE_RESPONSIBILITY: "care_does",
    Part.NEXT_STEP: "next_steps",
    Part.FOLLOW_UP_TIME: "next_steps",
    Part.COORDINATED_PLAN: "plans",
    Part.OTHER: "plans",
}


def _activity(
    activity: Mapping[str, Any], plan_key: str, directory: _Directory
) -> tuple[str, Text] | None:
    own = _extension(activity, EXT_PATIENT_AUTHORED) is True
    withdraw = f"{plan_key}#{activity['id']}" if own and activity.get("id") else None
    detail = activity.get("detail")
    if not isinstance(detail, Mapping):
        appointment = directory.get(activity.get("reference"))
        if appointment is None or appointment.get("resourceType") != "Appointment":
            return None
        text = _appointment_line(appointment)
        if not text:
            return None
        keyword = PART_DEFAULT_KEYWORD[Part.FOLLOW_UP_TIME]
        return "next_steps", Text(keyword, text, own, source=plan_key)
    code = detail.get("code") or {}
    part = Part.OTHER
    for coding in code.get("coding") or ():
        if coding.get("system") == ACTIVITY_KIND_SYSTEM and coding.get("code") in _KIND_PART:
            part = _KIND_PART[coding["code"]]
            break
    text = detail.get("description")
    if not isinstance(text, str) or not text:
        return None
    keyword = code.get("text") or PART_DEFAULT_KEYWORD[part]
    return _SECTION_OF[part], Text(
        keyword, text, own, _text_links(text), withdraw=withdraw, source=plan_key
    )


def _appointment_line(appointment: Mapping[str, Any]) -> str | None:
    if appointment.get("description"):
        return str(appointment["description"])
    start = _datetime(appointment.get("start"))
    return long_datetime(start) if start else None


def _from_note(plan: Mapping[str, Any]) -> bool:
    """Whether the plan was read from a journal note (SamPlan's import marks it so)."""
    return _extension(plan, EXT_TEMPLATE_VARIANT) is not None or any(
        isinstance(i, Mapping) and i.get("system") == COSMIC_NOTE_ID_SYSTEM
        for i in plan.get("identifier") or ()
    )


def _header(plan: Mapping[str, Any], directory: _Directory, today: date) -> AgreementHeader:
    period = plan.get("period") or {}
    start, end = _date(period.get("start")), _date(period.get("end"))
    if _from_note(plan) and _extension(period, EXT_NOTE_TEXT) is None:
        # The note had no validity keyword: its period is only the note's date (the
        # profile needs a start). Saying "tills vidare" would invent a validity.
        start = end = None
    if start and end:
        validity = f"Gäller från {long_date(start)} till och med {long_date(end)}"
    elif start:
        validity = f"Gäller från {long_date(start)} tills vidare"
    elif end:
        validity = f"Gäller till och med {long_date(end)}"
    else:
        validity = None
    author = plan.get("author") if isinstance(plan.get("author"), Mapping) else None
    author_name = None
    if author is not None:
        author_name = author.get("display") or _human_name(directory.get(author))
    unit = None
    for reference in plan.get("careTeam") or ():
        team = directory.get(reference)
        for org in (team or {}).get("managingOrganization") or ():
            unit = unit or org.get("display") or (directory.get(org) or {}).get("name")
    created = _datetime(plan.get("created"))
    return AgreementHeader(
        careplan=_key(plan),
        validity=validity,
        start=start,
        end=end,
        expired=end is not None and end < today,
        unit=unit,
        author=author_name,
        signed=long_date(to_local(created).date()) if created else None,
        section_text=plan.get("description") or None,
    )


def _contacts(team: Mapping[str, Any], directory: _Directory) -> list[Contact]:
    found: list[Contact] = []
    for participant in team.get("participant") or ():
        roles_given = participant.get("role") or []
        role: Mapping[str, Any] = roles_given[0] if roles_given else {}
        code = next(
            (c.get("code") for c in role.get("coding") or ()
             if c.get("system") == CONTACT_KIND_SYSTEM and c.get("code") in CONTACT_ROLES),
            None,
        )
        member = participant.get("member") or {}
        text = _extension(participant, EXT_NOTE_TEXT) or member.get("display")
        resolved = directory.get(member)
        name = _human_name(resolved) if resolved else None
        if resolved is not None and resolved.get("resourceType") == "Organization":
            name = resolved.get("name")
        if not text and not name:
            continue
        written = _text_links(text or "")
        points: list[Mapping[str, Any]] = []
        organisation: Mapping[str, Any] | None = directory.get(participant.get("onBehalfOf"))
        hours: list[str] = []
        roles: list[Resource] = []
        if resolved is not None:
            points += resolved.get("telecom") or []
            if resolved.get("resourceType") == "Practitioner":
                roles = directory.roles_of(_key(resolved))
            elif resolved.get("resourceType") == "PractitionerRole":
                roles = [resolved]
                person = directory.get(resolved.get("practitioner"))
                name = _human_name(person) or name
                points += (person or {}).get("telecom") or []
            elif resolved.get("resourceType") == "Organization":
                organisation = resolved
        for practitioner_role in roles:
            if practitioner_role is not resolved:
                points += practitioner_role.get("telecom") or []
            hours += _hours(practitioner_role)
            organisation = organisation or directory.get(practitioner_role.get("organization"))
        links = _links(points, before=written)
        org_links = _links((organisation or {}).get("telecom") or [])
        if organisation is resolved:
            org_links = ()
        if code is not None:
            keyword = str(role.get("text") or PART_DEFAULT_KEYWORD[_CONTACT_PART[code]])
            label = CONTACT_ROLES[code]
        else:
            keyword = label = str(role.get("text") or next(
                (c["display"] for c in role.get("coding") or () if c.get("display")),
                "Kontakt i ditt vårdteam",
            ))
        display = member.get("display")
        found.append(Contact(
            role=label,
            keyword=keyword,
            text=str(text or name),
            name=name or (display if display and display != text else None),
            organisation=None if organisation is resolved else (organisation or {}).get("name"),
            links=links,
            organisation_links=tuple(link for link in org_links if link not in links),
            hours=tuple(dict.fromkeys(hours)),
            patient_authored=_extension(participant, EXT_PATIENT_AUTHORED) is True,
            in_agreement=code is not None,
        ))
    return found


_CONTACT_PART: Final[dict[str, Part]] = {
    "1": Part.CARE_CONTACT,
    "2": Part.GP_CONTACT,
    "3": Part.OMSORG_CONTACT,
    "4": Part.COORDINATING_CONTACT,
}
_ROLE_ORDER: Final = tuple(CONTACT_ROLES.values())


def _contact_order(contact: Contact) -> int:
    return _ROLE_ORDER.index(contact.role) if contact.role in _ROLE_ORDER else len(_ROLE_ORDER)


def _reach_care(team: Mapping[str, Any]) -> list[Text]:
    key = _key(team)
    notes = [n for n in team.get("note") or () if _extension(n, EXT_NOTE_KEYWORD)]
    texts = [
        Text(str(_extension(n, EXT_NOTE_KEYWORD)), str(n.get("text", "")),
             _extension(n, EXT_PATIENT_AUTHORED) is True, _text_links(str(n.get("text", ""))),
             source=key)
        for n in notes if n.get("text")
    ]
    if not texts and team.get("telecom"):
        links = _links(team["telecom"])
        if links:
            texts.append(Text(PART_DEFAULT_KEYWORD[Part.CONTACT_VIA],
                              ", ".join(link.label for link in links), links=links, source=key))
    return texts


def _expressed_by_patient(goal: Mapping[str, Any], patient_key: str) -> bool:
    expressed = goal.get("expressedBy") or {}
    reference = str(expressed.get("reference", ""))
    return reference == patient_key or reference.startswith("Patient/") or (
        expressed.get("type") == "Patient"
    )


def _goal(goal: Mapping[str, Any], patient_key: str) -> Text:
    description = goal.get("description") or {}
    text = description.get("text") or next(
        (c.get("display") for c in description.get("coding") or () if c.get("display")), "Mål"
    )
    own = _expressed_by_patient(goal, patient_key)
    key = _key(goal)
    return Text(
        keyword=_extension(goal, EXT_NOTE_KEYWORD) or PART_DEFAULT_KEYWORD[Part.GOAL],
        text=str(text),
        patient_authored=own,
        withdraw=key if own else None,
        source=key,
    )


def _visit(
    appointment: Mapping[str, Any], directory: _Directory, patient_key: str
) -> Visit | None:
    if appointment.get("status") not in UPCOMING_STATUSES:
        return None
    start = _datetime(appointment.get("start"))
    if start is None:
        return None
    places: list[str] = []
    people: list[str] = []
    for participant in appointment.get("participant") or ():
        actor = participant.get("actor") or {}
        key = _ref(actor)
        if key == patient_key:
            continue
        resolved = directory.get(actor)
        if key is None or (key.startswith("Location/") and actor.get("display")):
            if actor.get("display"):
                places.append(str(actor["display"]))
            continue
        name = actor.get("display") or _human_name(resolved) or (resolved or {}).get("name")
        if name:
            people.append(str(name))
    return Visit(
        start=start,
        when=long_datetime(start),
        where=", ".join(places) or None,
        what=appointment.get("description") or None,
        with_whom=tuple(people),
        status=str(appointment.get("status")),
    )


def _linked_plan(plan: Mapping[str, Any]) -> LinkedPlan:
    kind = next(
        (PLAN_KINDS.get(str(c.get("code")), c.get("display"))
         for category in plan.get("category") or ()
         for c in category.get("coding") or ()
         if c.get("system") == INERA_CAREPLAN_TYPE_SYSTEM),
        None,
    )
    period = plan.get("period") or {}
    start, end = _date(period.get("start")), _date(period.get("end"))
    when = None
    if start and end:
        when = f"{long_date(start)} – {long_date(end)}"
    elif start:
        when = f"från {long_date(start)}"
    return LinkedPlan(
        title=str(plan.get("title") or kind or "Plan"),
        kind=kind if kind != plan.get("title") else None,
        period=when,
        description=plan.get("description") or None,
        source=_key(plan),
    )


def _message(
    communication: Mapping[str, Any], patient_key: str, directory: _Directory
) -> Message:
    sender = communication.get("sender") or {}
    sender_key = _ref(sender) or ""
    from_patient = sender_key == patient_key or sender_key.startswith("RelatedPerson/")
    sent = _datetime(communication.get("sent"))
    text = "\n".join(
        str(p["contentString"]) for p in communication.get("payload") or ()
        if isinstance(p, Mapping) and isinstance(p.get("contentString"), str)
    )
    name = sender.get("display") or _human_name(directory.get(sender))
    return Message(
        sent=long_datetime(sent) if sent else "",
        text=text,
        from_patient=from_patient,
        sender=name,
    )
