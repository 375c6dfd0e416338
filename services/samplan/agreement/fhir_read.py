"""Stored FHIR resources back into an :class:`~samplan.agreement.model.Agreement`.

The inverse of :mod:`samplan.agreement.fhir_build`: it reads the words back from
where the builder put them (``detail.description``, the ``note-text`` and
``note-keyword`` extensions, ``CareTeam.note``, ``Goal.description``), not from
the structured values derived from them, so a round trip note -> FHIR -> note
returns the same words. Resources written by other systems without those
extensions are read as well as their elements allow: the keyword falls back
to the template's name for the part, the text to what the element says.

Internal remarks are read from the CarePlan's notes that carry the NOPATIENT
inline label: what a patient's copy of the resources lacks is simply absent.

Appointments are derived data: the ones SamPlan booked from a follow-up keyword
are not read (their line is in the follow-up activity's text). An Appointment
is read only where an activity points at it with ``activity.reference``, as a
system that books without a note would write it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from samplan.agreement.codes import (
    ACTIVITY_KIND_SYSTEM,
    AGREEMENT_CATEGORY,
    CONTACT_KIND_SYSTEM,
    CONTACT_PART_CODES,
    COSMIC_NOTE_ID_SYSTEM,
    DS4P_INLINE_LABEL,
    EXT_AUTHOR_TITLE,
    EXT_NOTE_KEYWORD,
    EXT_NOTE_TEMPLATE,
    EXT_NOTE_TEXT,
    EXT_PATIENT_AUTHORED,
    EXT_TEMPLATE_VARIANT,
    HSA_SYSTEM,
    NOPATIENT_CODE,
    PART_ACTIVITY_KIND,
    PART_DEFAULT_KEYWORD,
    PERSONNUMMER_SYSTEM,
    SAMORDNINGSNUMMER_SYSTEM,
    SECTION_DEFAULT_KEYWORD,
)
from samplan.agreement.model import (
    Agreement,
    AgreementItem,
    Author,
    CareUnit,
    Part,
    PatientInfo,
)
from samplan.agreement.values import to_local
from samplan.fhir.errors import Unprocessable
from samplan.fhir.identifiers import canonical_system

__all__ = ["read_agreement"]

_KIND_PART = {kind: part for part, kind in PART_ACTIVITY_KIND.items()}
_CODE_PART = {code: part for part, code in CONTACT_PART_CODES.items()}

Resource = Mapping[str, Any]


def read_agreement(resources: Iterable[Resource] | Resource) -> Agreement:
    """The agreement in ``resources``: its CarePlan, CareTeam, Goals, Appointments and Patient.

    ``resources`` is either the resources themselves (as stored: references
    like ``Goal/123``) or a Bundle of them (references by ``fullUrl``, e.g. the
    transaction :func:`~samplan.agreement.fhir_build.build_transaction` made).
    Raises :class:`~samplan.fhir.errors.Unprocessable` when there is no agreement
    CarePlan or no patient identifier.
    """
    index = _Index(resources)
    careplan = index.careplan()
    subject = careplan.get("subject") or {}
    careteam = index.resolve_first(careplan.get("careTeam"), "CareTeam")

    items: list[AgreementItem] = []
    from_note = bool(_extension(careplan, EXT_TEMPLATE_VARIANT)) or bool(
        _identifier(careplan.get("identifier"), COSMIC_NOTE_ID_SYSTEM)
    )
    validity = _validity(careplan.get("period"), from_note)
    if validity is not None:
        items.append(validity)
    for activity in careplan.get("activity") or []:
        item = _activity(activity, index)
        if item is not None:
            items.append(item)
    items.extend(_internal_notes(careplan))
    if careteam is not None:
        items.extend(_careteam_items(careteam))
    for goal in index.goals(careplan):
        items.append(_goal(goal, subject))

    return Agreement(
        patient=_patient(index.resolve(subject, "Patient"), subject),
        items=tuple(items),
        note_id=_identifier(careplan.get("identifier"), COSMIC_NOTE_ID_SYSTEM),
        variant=_extension(careplan, EXT_TEMPLATE_VARIANT),
        template=_extension(careplan, EXT_NOTE_TEMPLATE),
        author=_author(careplan.get("author")),
        care_unit=_care_unit(careteam),
        signed_at=_datetime(careplan.get("created")),
        section_keyword=_extension(careplan, EXT_NOTE_KEYWORD) or SECTION_DEFAULT_KEYWORD,
        section_text=careplan.get("description") or None,
    )


class _Index:
    """The given resources, findable by ``Type/id`` and by Bundle ``fullUrl``."""

    def __init__(self, resources: Iterable[Resource] | Resource) -> None:
        self.all: list[Resource] = []
        self.by_ref: dict[str, Resource] = {}
        if isinstance(resources, Mapping):
            if resources.get("resourceType") == "Bundle":
                for entry in resources.get("entry") or []:
                    self.add(entry.get("resource") or {}, entry.get("fullUrl"))
            else:
                self.add(resources, None)
        else:
            for resource in resources:
                self.add(resource, None)

    def add(self, resource: Resource, full_url: str | None) -> None:
        self.all.append(resource)
        if full_url:
            self.by_ref[full_url] = resource
        if resource.get("id"):
            self.by_ref[f"{resource['resourceType']}/{resource['id']}"] = resource

    def of_type(self, resource_type: str) -> list[Resource]:
        return [r for r in self.all if r.get("resourceType") == resource_type]

    def careplan(self) -> Resource:
        for careplan in self.of_type("CarePlan"):
            for category in careplan.get("category") or []:
                for coding in category.get("coding") or []:
                    if (coding.get("system"), coding.get("code")) == (
                        AGREEMENT_CATEGORY["system"],
                        AGREEMENT_CATEGORY["code"],
                    ):
                        return careplan
        raise Unprocessable(
            "no agreement CarePlan (category dokumenterad-overenskommelse) among the resources",
            ("CarePlan.category",),
        )

    def resolve(self, reference: Any, resource_type: str) -> Resource | None:
        """The resource a Reference points at, or the only one of its type."""
        if isinstance(reference, Mapping) and reference.get("reference") in self.by_ref:
            return self.by_ref[reference["reference"]]
        candidates = self.of_type(resource_type)
        return candidates[0] if len(candidates) == 1 else None

    def resolve_first(self, references: Any, resource_type: str) -> Resource | None:
        for reference in references or []:
            found = self.resolve(reference, resource_type)
            if found is not None:
                return found
        return self.resolve(None, resource_type)

    def goals(self, careplan: Resource) -> list[Resource]:
        """The plan's goals in ``CarePlan.goal`` order, then any others given."""
        ordered: list[Resource] = []
        seen: set[int] = set()  # by identity: two goals may have equal content
        for reference in careplan.get("goal") or []:
            goal = self.by_ref.get(reference.get("reference", ""))
            if goal is not None and id(goal) not in seen:
                ordered.append(goal)
                seen.add(id(goal))
        ordered += [goal for goal in self.of_type("Goal") if id(goal) not in seen]
        return ordered


def _extension(element: Mapping[str, Any], url: str) -> Any:
    for extension in element.get("extension") or []:
        if extension.get("url") == url:
            for key, value in extension.items():
                if key.startswith("value"):
                    return value
    return None


def _identifier(identifiers: Any, system: str) -> str | None:
    for identifier in identifiers or []:
        if canonical_system(identifier.get("system", "")) == system and identifier.get("value"):
            return str(identifier["value"])
    return None


def _hsa_value(identifier: Mapping[str, Any]) -> str | None:
    if canonical_system(identifier.get("system", "")) == HSA_SYSTEM and identifier.get("value"):
        return str(identifier["value"])
    return None


def _datetime(value: Any) -> datetime | None:
    if not isinstance(value, str) or "T" not in value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return to_local(parsed) if parsed.tzinfo is not None else None


def _patient(patient: Resource | None, subject: Mapping[str, Any]) -> PatientInfo:
    identifiers = list((patient or {}).get("identifier") or [])
    if isinstance(subject.get("identifier"), Mapping):
        identifiers.append(subject["identifier"])
    for identifier in identifiers:
        system = canonical_system(identifier.get("system", ""))
        if system in (PERSONNUMMER_SYSTEM, SAMORDNINGSNUMMER_SYSTEM) and identifier.get("value"):
            return PatientInfo(
                personnummer=str(identifier["value"]),
                samordning=system == SAMORDNINGSNUMMER_SYSTEM,
                name=_human_name(patient) or subject.get("display"),
            )
    raise Unprocessable(
        "the agreement's patient has no personnummer or samordningsnummer",
        ("CarePlan.subject",),
    )


def _human_name(patient: Resource | None) -> str | None:
    for name in (patient or {}).get("name") or []:
        if name.get("text"):
            return str(name["text"])
        parts = [*name.get("given", []), name.get("family", "")]
        joined = " ".join(part for part in parts if part)
        if joined:
            return joined
    return None


def _author(reference: Any) -> Author | None:
    if not isinstance(reference, Mapping):
        return None
    identifier = reference.get("identifier") or {}
    hsa_id = _hsa_value(identifier)
    author = Author(
        name=reference.get("display"),
        title=_extension(reference, EXT_AUTHOR_TITLE),
        hsa_id=hsa_id,
    )
    return author if (author.name or author.hsa_id) else None


def _care_unit(careteam: Resource | None) -> CareUnit | None:
    for reference in (careteam or {}).get("managingOrganization") or []:
        hsa_id = _hsa_value(reference.get("identifier") or {})
        if reference.get("display") or hsa_id:
            return CareUnit(name=reference.get("display"), hsa_id=hsa_id)
    return None


def _validity(period: Any, from_note: bool) -> AgreementItem | None:
    """The validity keyword, if the period holds one.

    A plan read from a note whose period has no ``note-text`` had no validity
    keyword: its period is only the note's date, and is not turned into words.
    """
    if not isinstance(period, Mapping):
        return None
    text = _extension(period, EXT_NOTE_TEXT) or (None if from_note else _period_text(period))
    if not text:
        return None
    return AgreementItem(
        part=Part.VALIDITY,
        keyword=_extension(period, EXT_NOTE_KEYWORD) or PART_DEFAULT_KEYWORD[Part.VALIDITY],
        text=text,
        patient_authored=_extension(period, EXT_PATIENT_AUTHORED) is True,
    )


def _period_text(period: Mapping[str, Any]) -> str | None:
    start, end = period.get("start"), period.get("end")
    if start and end:
        return f"{str(start)[:10]} -- {str(end)[:10]}"
    if start:
        return f"från {str(start)[:10]}"
    if end:
        return f"till {str(end)[:10]}"
    return None


def _activity(activity: Mapping[str, Any], index: _Index) -> AgreementItem | None:
    patient_authored = _extension(activity, EXT_PATIENT_AUTHORED) is True
    detail = activity.get("detail")
    if not isinstance(detail, Mapping):
        appointment = index.resolve(activity.get("reference"), "")
        if appointment is None or appointment.get("resourceType") != "Appointment":
            return None
        text = _appointment_text(appointment)
        if not text:
            return None
        return AgreementItem(
            part=Part.FOLLOW_UP_TIME,
            keyword=PART_DEFAULT_KEYWORD[Part.FOLLOW_UP_TIME],
            text=text,
            patient_authored=patient_authored,
        )
    code = detail.get("code") or {}
    part = Part.OTHER
    for coding in code.get("coding") or []:
        if coding.get("system") == ACTIVITY_KIND_SYSTEM and coding.get("code") in _KIND_PART:
            part = _KIND_PART[coding["code"]]
            break
    text = detail.get("description")
    if not text:
        return None
    return AgreementItem(
        part=part,
        keyword=code.get("text") or PART_DEFAULT_KEYWORD[part],
        text=text,
        patient_authored=patient_authored,
    )


def _internal_notes(careplan: Resource) -> list[AgreementItem]:
    """``CarePlan.note``s labelled NOPATIENT: the note's internal remarks (professional-only)."""
    items: list[AgreementItem] = []
    for note in careplan.get("note") or []:
        labelled = any(
            extension.get("url") == DS4P_INLINE_LABEL
            and (extension.get("valueCoding") or {}).get("code") == NOPATIENT_CODE
            for extension in note.get("extension") or []
        )
        if labelled and note.get("text"):
            keyword = _extension(note, EXT_NOTE_KEYWORD) or PART_DEFAULT_KEYWORD[Part.INTERNAL]
            items.append(AgreementItem(part=Part.INTERNAL, keyword=keyword, text=note["text"]))
    return items


def _appointment_text(appointment: Resource) -> str | None:
    if appointment.get("description"):
        return str(appointment["description"])
    start = _datetime(appointment.get("start"))
    if start is None:
        return None
    places = [
        p["actor"]["display"]
        for p in appointment.get("participant") or []
        if isinstance(p.get("actor"), Mapping)
        and p["actor"].get("display")
        and "reference" not in p["actor"]
    ]
    return f"{start:%Y-%m-%d %H:%M}" + "".join(f", {place}" for place in places)


def _careteam_items(careteam: Resource) -> list[AgreementItem]:
    items: list[AgreementItem] = []
    for participant in careteam.get("participant") or []:
        for role in participant.get("role") or []:
            part = next(
                (
                    _CODE_PART[coding["code"]]
                    for coding in role.get("coding") or []
                    if coding.get("system") == CONTACT_KIND_SYSTEM
                    and coding.get("code") in _CODE_PART
                ),
                None,
            )
            if part is None:
                continue
            member = participant.get("member") or {}
            text = _extension(participant, EXT_NOTE_TEXT) or member.get("display")
            if not text:
                continue
            items.append(
                AgreementItem(
                    part=part,
                    keyword=role.get("text") or PART_DEFAULT_KEYWORD[part],
                    text=text,
                    hsa_id=_hsa_value(member.get("identifier") or {}),
                    patient_authored=_extension(participant, EXT_PATIENT_AUTHORED) is True,
                )
            )
            break
    notes = [note for note in careteam.get("note") or [] if _extension(note, EXT_NOTE_KEYWORD)]
    for note in notes:
        items.append(
            AgreementItem(
                part=Part.CONTACT_VIA,
                keyword=_extension(note, EXT_NOTE_KEYWORD),
                text=note["text"],
                patient_authored=_extension(note, EXT_PATIENT_AUTHORED) is True,
            )
        )
    if not notes and careteam.get("telecom"):
        values = [point["value"] for point in careteam["telecom"] if point.get("value")]
        if values:
            items.append(
                AgreementItem(
                    part=Part.CONTACT_VIA,
                    keyword=PART_DEFAULT_KEYWORD[Part.CONTACT_VIA],
                    text=", ".join(values),
                )
            )
    return items


def _goal(goal: Resource, subject: Mapping[str, Any]) -> AgreementItem:
    expressed_by = goal.get("expressedBy") or {}
    by_patient = bool(expressed_by) and (
        expressed_by.get("reference") == subject.get("reference")
        or str(expressed_by.get("reference", "")).startswith("Patient/")
        or expressed_by.get("type") == "Patient"
    )
    description = goal.get("description") or {}
    text = description.get("text") or next(
        (c.get("display") for c in description.get("coding") or [] if c.get("display")), "Mål"
    )
    return AgreementItem(
        part=Part.GOAL,
        keyword=_extension(goal, EXT_NOTE_KEYWORD) or PART_DEFAULT_KEYWORD[Part.GOAL],
        text=text,
        patient_authored=by_patient,
    )
