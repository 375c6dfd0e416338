"""An :class:`~samplan.agreement.model.Agreement` as FHIR R4 resources and one transaction Bundle.

Where each part goes (the conventions in :mod:`samplan.agreement.codes`):

=====================  ===============================================================
validity               ``CarePlan.period`` (+ ``note-keyword``/``note-text`` extensions)
section text           ``CarePlan.description``; section keyword: ``CarePlan`` extension
responsibilities,      ``CarePlan.activity.detail``: ``code`` = activity kind + keyword as
next step, follow-up,  ``code.text``, ``description`` = text verbatim, ``performer`` =
coordinated plan,      Patient for what the patient does
unknown keywords
follow-up times        also one ``Appointment`` per readable line (``basedOn`` the plan),
                       linked from the activity's ``outcomeReference``
named contacts         ``CareTeam.participant`` (KV role, keyword as ``role.text``, text in
                       ``note-text``, ``member`` = Practitioner by HSA-id or display)
contact ways           ``CareTeam.telecom`` (parsed) + ``CareTeam.note`` (text verbatim,
                       keyword in ``note-keyword``)
goals                  ``Goal`` (``expressedBy`` = Patient when the patient set it)
internal remarks       ``CarePlan.note`` with the DS4P inline ``NOPATIENT`` label (keyword
                       in ``note-keyword``): kept for care, never shown to the patient
=====================  ===============================================================

Numbers the text marks for professionals only ("endast för hemsjukvården")
are written to ``telecom`` with the same inline label. ``Patient.birthDate``
comes from the personnummer or samordningsnummer.

Every resource is created conditionally (``ifNoneExist`` on an identifier) and
every ``fullUrl`` is a ``urn:uuid`` derived from the note's id, so building the
same agreement twice gives the same Bundle and posting it twice creates nothing
the second time. References also carry the target's identifier and display,
so :mod:`samplan.agreement.fhir_read` can read a CarePlan back without the
Practitioner and Organization resources.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from samplan.agreement.codes import (
    ACTIVITY_KIND_SYSTEM,
    ACTIVITY_KINDS,
    AGREEMENT_CATEGORY,
    AGREEMENT_RESOURCE_SYSTEM,
    CAREPLAN_TITLE,
    CONTACT_KIND_SYSTEM,
    CONTACT_KINDS,
    COSMIC_NOTE_ID_SYSTEM,
    EXT_AUTHOR_TITLE,
    EXT_NOTE_KEYWORD,
    EXT_NOTE_TEMPLATE,
    EXT_NOTE_TEXT,
    EXT_PATIENT_AUTHORED,
    EXT_TEMPLATE_VARIANT,
    HSA_SYSTEM,
    PART_ACTIVITY_KIND,
    PATIENT_PERFORMED_PARTS,
    PERSONNUMMER_SYSTEM,
    PROFILE_APPOINTMENT,
    PROFILE_CAREPLAN,
    PROFILE_CARETEAM,
    PROFILE_GOAL,
    SAMORDNINGSNUMMER_SYSTEM,
    nopatient_label,
)
from samplan.agreement.interpret import Interpretation, ItemReading, interpret
from samplan.agreement.model import Agreement, AgreementItem, Part
from samplan.agreement.values import AgreedTime, to_local
from samplan.fhir.identifiers import is_hsa_id

__all__ = ["AgreementResources", "Entry", "build_resources", "build_transaction"]

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://samplan.se/fhir")


@dataclass(frozen=True, slots=True)
class Entry:
    """One transaction Bundle entry: where it is, what it is, how to write it."""

    full_url: str
    resource: dict[str, Any]
    request: dict[str, str]

    @property
    def resource_type(self) -> str:
        return str(self.resource["resourceType"])

    def to_fhir(self) -> dict[str, Any]:
        return {"fullUrl": self.full_url, "resource": self.resource, "request": self.request}


@dataclass(frozen=True, slots=True)
class AgreementResources:
    """Everything one agreement is written as, before it is put in a Bundle."""

    patient: Entry
    careplan: Entry
    careteam: Entry
    organization: Entry | None
    provider: Entry | None
    practitioners: tuple[Entry, ...]
    appointments: tuple[Entry, ...]
    goals: tuple[Entry, ...]
    interpretation: Interpretation

    def entries(self) -> list[Entry]:
        """All entries, the ones others point at first."""
        head = [self.patient, *([self.provider] if self.provider else []),
                *([self.organization] if self.organization else [])]
        return [*head, *self.practitioners, *self.goals, self.careteam, self.careplan,
                *self.appointments]  # fmt: skip


def build_transaction(
    agreement: Agreement, *, careplan_id: str | None = None, careteam_id: str | None = None
) -> dict[str, Any]:
    """The agreement as one FHIR transaction Bundle (a JSON-ready dict).

    Without ids the CarePlan and CareTeam are conditional creates keyed by the
    note id (the same note twice creates nothing new). With ``careplan_id`` /
    ``careteam_id`` (the patient's existing active agreement) they are ``PUT``
    to those ids instead, making a new version of them.
    """
    resources = build_resources(agreement, careplan_id=careplan_id, careteam_id=careteam_id)
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [entry.to_fhir() for entry in resources.entries()],
    }


def build_resources(
    agreement: Agreement, *, careplan_id: str | None = None, careteam_id: str | None = None
) -> AgreementResources:
    """The agreement as FHIR resources with their Bundle ``fullUrl`` and ``request``."""
    return _Builder(agreement, interpret(agreement)).build(careplan_id, careteam_id)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def _conditional(system: str, value: str) -> str:
    return f"identifier={quote(system, safe=':/')}|{quote(value, safe='')}"


def _ext(url: str, value: str | bool) -> dict[str, Any]:
    key = "valueBoolean" if isinstance(value, bool) else "valueString"
    return {"url": url, key: value}


def _item_extensions(item: AgreementItem, *, keyword: bool, text: bool) -> list[dict[str, Any]]:
    """The extensions that keep an item lossless where FHIR has no element for it."""
    extensions = []
    if keyword:
        extensions.append(_ext(EXT_NOTE_KEYWORD, item.keyword))
    if text:
        extensions.append(_ext(EXT_NOTE_TEXT, item.text))
    if item.patient_authored:
        extensions.append(_ext(EXT_PATIENT_AUTHORED, True))
    return extensions


def _status(reading: ItemReading) -> str:
    """A follow-up is ``scheduled``, or ``not-started`` when only planned (no time booked)."""
    if reading.item.part is not Part.FOLLOW_UP_TIME or reading.as_other:
        return "in-progress"
    return "not-started" if reading.planned and not reading.times else "scheduled"


class _Builder:
    def __init__(self, agreement: Agreement, interpretation: Interpretation) -> None:
        self.agreement = agreement
        self.interpretation = interpretation
        self.note_key = agreement.note_id or f"patient:{agreement.patient.personnummer}"
        self.practitioners: dict[str, dict[str, Any]] = {}
        self.identifiers: Counter[str] = Counter()
        self.patient = self.patient_entry()
        self.patient_ref = self.reference(self.patient, display=agreement.patient.name)
        self.author_ref = self.author_reference()

    def derived_identifier(self, kind: str, *content: str) -> str:
        """An identifier from the content, so a re-import finds it; repeats get a number."""
        value = f"{kind}-{_digest(self.agreement.patient.personnummer, *content)}"
        self.identifiers[value] += 1
        count = self.identifiers[value]
        return value if count == 1 else f"{value}-{count}"

    def urn(self, *key: str) -> str:
        return f"urn:uuid:{uuid.uuid5(_NAMESPACE, '/'.join((self.note_key, *key)))}"

    # -- references ---------------------------------------------------------------------------
    def build(self, careplan_id: str | None, careteam_id: str | None) -> AgreementResources:
        provider = self.provider_entry()
        organization = self.organization_entry(provider)
        careteam = self.careteam_entry(careteam_id, organization)
        goals = self.goal_entries()
        careplan_url = self.urn("CarePlan")
        appointments = self.appointment_entries(careplan_url)
        careplan = self.careplan_entry(careplan_url, careplan_id, careteam, goals, appointments)
        practitioners = tuple(
            Entry(
                full_url=self.urn("Practitioner", hsa_id),
                resource=resource,
                request={
                    "method": "POST",
                    "url": "Practitioner",
                    "ifNoneExist": _conditional(HSA_SYSTEM, hsa_id),
                },
            )
            for hsa_id, resource in self.practitioners.items()
        )
        return AgreementResources(
            patient=self.patient,
            careplan=careplan,
            careteam=careteam,
            organization=organization,
            provider=provider,
            practitioners=practitioners,
            appointments=tuple(entry for entries in appointments.values() for entry in entries),
            goals=tuple(goals),
            interpretation=self.interpretation,
        )

    @staticmethod
    def reference(entry: Entry, *, display: str | None = None) -> dict[str, Any]:
        ref: dict[str, Any] = {"reference": entry.full_url}
        identifiers = entry.resource.get("identifier")
        if identifiers:
            ref["identifier"] = dict(identifiers[0])
        if display:
            ref["display"] = display
        return ref

    def practitioner(
        self, hsa_id: str, name: str | None, telecom: tuple[dict[str, Any], ...] = ()
    ) -> dict[str, Any]:
        """A reference to the Practitioner with ``hsa_id``, creating its entry once."""
        resource = self.practitioners.get(hsa_id)
        if resource is None:
            resource = {
                "resourceType": "Practitioner",
                "identifier": [{"system": HSA_SYSTEM, "value": hsa_id}],
            }
            self.practitioners[hsa_id] = resource
        if name and "name" not in resource:
            resource["name"] = [{"text": name}]
        for point in telecom:
            if point not in resource.setdefault("telecom", []):
                resource["telecom"].append(dict(point))
        ref: dict[str, Any] = {
            "reference": self.urn("Practitioner", hsa_id),
            "identifier": {"system": HSA_SYSTEM, "value": hsa_id},
        }
        if name:
            ref["display"] = name
        return ref

    # -- resources ----------------------------------------------------------------------------
    def patient_entry(self) -> Entry:
        info = self.agreement.patient
        system = SAMORDNINGSNUMMER_SYSTEM if info.samordning else PERSONNUMMER_SYSTEM
        resource: dict[str, Any] = {
            "resourceType": "Patient",
            "identifier": [{"system": system, "value": info.personnummer}],
        }
        if info.name:
            *given, family = info.name.split()
            name: dict[str, Any] = {"text": info.name, "family": family}
            if given:
                name["given"] = given
            resource["name"] = [name]
        birth_date = info.birth_date
        if birth_date is not None:
            resource["birthDate"] = birth_date.isoformat()
        return Entry(
            full_url=self.urn("Patient"),
            resource=resource,
            request={
                "method": "POST",
                "url": "Patient",
                "ifNoneExist": _conditional(system, info.personnummer),
            },
        )

    def provider_entry(self) -> Entry | None:
        """The care provider the note names: registered when new (``ifNoneExist``)."""
        provider = self.agreement.care_provider
        unit = self.agreement.care_unit
        if (provider is None or provider.hsa_id is None or not is_hsa_id(provider.hsa_id)
                or unit is None or unit.hsa_id == provider.hsa_id):
            return None
        resource: dict[str, Any] = {
            "resourceType": "Organization",
            "identifier": [{"system": HSA_SYSTEM, "value": provider.hsa_id}],
        }
        if provider.name:
            resource["name"] = provider.name
        return Entry(
            full_url=self.urn("Organization", provider.hsa_id),
            resource=resource,
            request={
                "method": "POST",
                "url": "Organization",
                "ifNoneExist": _conditional(HSA_SYSTEM, provider.hsa_id),
            },
        )

    def organization_entry(self, provider: Entry | None = None) -> Entry | None:
        """The care unit: registered when new (``ifNoneExist``), under ``provider`` when the
        note names one; a unit registered before is used as it is."""
        unit = self.agreement.care_unit
        if unit is None or unit.hsa_id is None or not is_hsa_id(unit.hsa_id):
            return None
        resource: dict[str, Any] = {
            "resourceType": "Organization",
            "identifier": [{"system": HSA_SYSTEM, "value": unit.hsa_id}],
        }
        if unit.name:
            resource["name"] = unit.name
        if provider is not None:
            resource["partOf"] = self.reference(provider, display=provider.resource.get("name"))
        return Entry(
            full_url=self.urn("Organization", unit.hsa_id),
            resource=resource,
            request={
                "method": "POST",
                "url": "Organization",
                "ifNoneExist": _conditional(HSA_SYSTEM, unit.hsa_id),
            },
        )

    def author_reference(self) -> dict[str, Any] | None:
        author = self.agreement.author
        if author is None:
            return None
        if author.hsa_id and is_hsa_id(author.hsa_id):
            ref = self.practitioner(author.hsa_id, author.name)
        elif author.name:
            ref = {"display": author.name}
        else:
            return None
        if author.title:
            ref["extension"] = [_ext(EXT_AUTHOR_TITLE, author.title)]
        return ref

    def careteam_entry(self, careteam_id: str | None, organization: Entry | None) -> Entry:
        participants: list[dict[str, Any]] = []
        notes: list[dict[str, Any]] = []
        telecom: list[dict[str, Any]] = []
        for reading in self.interpretation.readings:
            item = reading.item
            if item.part.is_contact:
                participants.append(self.participant(reading))
            elif item.part is Part.CONTACT_VIA:
                note: dict[str, Any] = {
                    "extension": _item_extensions(item, keyword=True, text=False),
                    "text": item.text,
                }
                notes.append(note)
                telecom.extend(point for point in reading.telecom if point not in telecom)
        resource: dict[str, Any] = {
            "resourceType": "CareTeam",
            "meta": {"profile": [PROFILE_CARETEAM]},
            "identifier": [
                {"system": AGREEMENT_RESOURCE_SYSTEM, "value": f"careteam-{_digest(self.note_key)}"}
            ],
            "status": "active",
            "subject": self.patient_ref,
        }
        if participants:
            resource["participant"] = participants
        unit = self.agreement.care_unit
        if organization is not None:
            resource["managingOrganization"] = [
                self.reference(organization, display=unit.name if unit else None)
            ]
        elif unit is not None and unit.name:
            resource["managingOrganization"] = [{"display": unit.name}]
        if telecom:
            resource["telecom"] = telecom
        if notes:
            resource["note"] = notes
        return self.entry("CareTeam", resource, careteam_id)

    def participant(self, reading: ItemReading) -> dict[str, Any]:
        item = reading.item
        code = reading.kv_code or ""
        participant: dict[str, Any] = {
            "extension": _item_extensions(item, keyword=False, text=True),
            "role": [
                {
                    "coding": [
                        {
                            "system": CONTACT_KIND_SYSTEM,
                            "code": code,
                            "display": CONTACT_KINDS[code],
                        }
                    ],
                    "text": item.keyword,
                }
            ],
        }
        # The profile requires a member: the person named, else the text's first line.
        display = reading.display or item.text.strip().split("\n")[0].strip() or item.keyword
        if reading.hsa_id:
            participant["member"] = self.practitioner(reading.hsa_id, display, reading.telecom)
        else:
            participant["member"] = {"display": display}
        return participant

    def goal_entries(self) -> list[Entry]:
        entries = []
        for index, item in enumerate(self.agreement.of(Part.GOAL)):
            value = self.derived_identifier("goal", item.keyword, item.text)
            resource: dict[str, Any] = {
                "resourceType": "Goal",
                "meta": {"profile": [PROFILE_GOAL]},
                "extension": _item_extensions(item, keyword=True, text=False),
                "identifier": [{"system": AGREEMENT_RESOURCE_SYSTEM, "value": value}],
                "lifecycleStatus": "active",
                "description": {"text": item.text},
                "subject": self.patient_ref,
            }
            if item.patient_authored:
                resource["expressedBy"] = self.patient_ref
            entries.append(
                Entry(
                    full_url=self.urn("Goal", str(index)),
                    resource=resource,
                    request={
                        "method": "POST",
                        "url": "Goal",
                        "ifNoneExist": _conditional(AGREEMENT_RESOURCE_SYSTEM, value),
                    },
                )
            )
        return entries

    def appointment_entries(self, careplan_url: str) -> dict[int, list[Entry]]:
        """Appointments per follow-up item (by index into the readings)."""
        found: dict[int, list[Entry]] = {}
        for index, reading in enumerate(self.interpretation.readings):
            for number, time in enumerate(reading.times):
                found.setdefault(index, []).append(
                    self.appointment(reading.item, time, careplan_url, f"{index}.{number}")
                )
        return found

    def appointment(
        self, item: AgreementItem, time: AgreedTime, careplan_url: str, key: str
    ) -> Entry:
        start = to_local(time.start).isoformat()
        value = self.derived_identifier("appointment", start, time.line)
        participants: list[dict[str, Any]] = [{"actor": self.patient_ref, "status": "accepted"}]
        if time.location:
            participants.append({"actor": {"display": time.location}, "status": "accepted"})
        resource: dict[str, Any] = {
            "resourceType": "Appointment",
            "meta": {"profile": [PROFILE_APPOINTMENT]},
            "extension": _item_extensions(item, keyword=True, text=False),
            "identifier": [{"system": AGREEMENT_RESOURCE_SYSTEM, "value": value}],
            "status": "booked",
            "description": time.line,
            "start": start,
            "basedOn": [{"reference": careplan_url}],
            "participant": participants,
        }
        return Entry(
            full_url=self.urn("Appointment", key),
            resource=resource,
            request={
                "method": "POST",
                "url": "Appointment",
                "ifNoneExist": _conditional(AGREEMENT_RESOURCE_SYSTEM, value),
            },
        )

    def careplan_entry(
        self,
        full_url: str,
        careplan_id: str | None,
        careteam: Entry,
        goals: list[Entry],
        appointments: dict[int, list[Entry]],
    ) -> Entry:
        agreement = self.agreement
        extensions = [_ext(EXT_NOTE_KEYWORD, agreement.section_keyword)]
        if agreement.template:
            extensions.append(_ext(EXT_NOTE_TEMPLATE, agreement.template))
        if agreement.variant:
            extensions.append(_ext(EXT_TEMPLATE_VARIANT, agreement.variant))
        resource: dict[str, Any] = {
            "resourceType": "CarePlan",
            "meta": {"profile": [PROFILE_CAREPLAN]},
            "extension": extensions,
        }
        if agreement.note_id:
            resource["identifier"] = [{"system": COSMIC_NOTE_ID_SYSTEM, "value": agreement.note_id}]
        resource |= {
            "status": "active",
            "intent": "plan",
            "category": [{"coding": [dict(AGREEMENT_CATEGORY)]}],
            "title": CAREPLAN_TITLE,
        }
        if agreement.section_text:
            resource["description"] = agreement.section_text
        resource["subject"] = self.patient_ref
        period = self.period()
        if period is not None:
            resource["period"] = period
        if agreement.signed_at is not None:
            resource["created"] = to_local(agreement.signed_at).isoformat()
        if self.author_ref is not None:
            resource["author"] = self.author_ref
        resource["careTeam"] = [self.reference(careteam)]
        if goals:
            resource["goal"] = [{"reference": goal.full_url} for goal in goals]
        activities = [
            self.activity(reading, appointments.get(index, []))
            for index, reading in enumerate(self.interpretation.readings)
            if reading.item.part in PART_ACTIVITY_KIND or reading.as_other
        ]
        if activities:
            resource["activity"] = activities
        internal = [self.internal_note(item) for item in agreement.of(Part.INTERNAL)]
        if internal:
            resource["note"] = internal
        return self.entry("CarePlan", resource, careplan_id, full_url=full_url)

    @staticmethod
    def internal_note(item: AgreementItem) -> dict[str, Any]:
        """An internal remark: a ``CarePlan.note`` labelled NOPATIENT on the element itself.

        The label sits on the note (DS4P inline security label), not on the
        CarePlan, so the patient still sees their agreement and only the remark
        is withheld wherever the patient or a relative reads it.
        """
        return {
            "extension": [nopatient_label(), _ext(EXT_NOTE_KEYWORD, item.keyword)],
            "text": item.text,
        }

    def period(self) -> dict[str, Any] | None:
        """The validity; without a readable start, the agreement runs from the note's date.

        The profile requires ``period.start``. When the note has no validity
        keyword the period is just that date (no extensions: nothing was
        written); when the validity could not be read, its words stay in
        ``note-text`` beside it and the importer has warned.
        """
        local = self.agreement.signed_at_local
        note_day = local.date().isoformat() if local is not None else None
        for reading in self.interpretation.readings:
            if reading.item.part is Part.VALIDITY and not reading.as_other:
                period: dict[str, Any] = {
                    "extension": _item_extensions(reading.item, keyword=True, text=True)
                }
                validity = reading.validity
                start = validity.start.isoformat() if validity and validity.start else note_day
                if start is not None:
                    period["start"] = start
                if validity is not None and validity.end is not None:
                    period["end"] = validity.end.isoformat()
                return period
        return {"start": note_day} if note_day else None

    def activity(self, reading: ItemReading, appointments: list[Entry]) -> dict[str, Any]:
        item = reading.item
        kind = "other-keyword" if reading.as_other else PART_ACTIVITY_KIND[item.part]
        coding = {"system": ACTIVITY_KIND_SYSTEM, "code": kind, "display": ACTIVITY_KINDS[kind]}
        detail: dict[str, Any] = {
            "code": {"coding": [coding], "text": item.keyword},
            "status": _status(reading),
        }
        if reading.times:
            first = min(reading.times, key=lambda time: time.start)
            detail["scheduledPeriod"] = {"start": to_local(first.start).isoformat()}
            if first.location:
                detail["location"] = {"display": first.location}
        elif reading.planned:
            # Planned without a booked time (v. 12, om 3 månader, 15/3): the days it is for.
            plan = min(reading.planned, key=lambda planned: (planned.start, planned.end))
            detail["scheduledPeriod"] = {
                "start": plan.start.isoformat(),
                "end": plan.end.isoformat(),
            }
        if item.part in PATIENT_PERFORMED_PARTS:
            detail["performer"] = [self.patient_ref]
        detail["description"] = item.text
        activity: dict[str, Any] = {}
        if item.patient_authored:
            activity["extension"] = [_ext(EXT_PATIENT_AUTHORED, True)]
        if appointments:
            activity["outcomeReference"] = [{"reference": entry.full_url} for entry in appointments]
        activity["detail"] = detail
        return activity

    def entry(
        self,
        resource_type: str,
        resource: dict[str, Any],
        existing_id: str | None,
        *,
        full_url: str | None = None,
    ) -> Entry:
        full_url = full_url or self.urn(resource_type)
        if existing_id is not None:
            resource = {"resourceType": resource_type, "id": existing_id} | resource
            return Entry(
                full_url, resource, {"method": "PUT", "url": f"{resource_type}/{existing_id}"}
            )
        identifier = resource["identifier"][0] if resource.get("identifier") else None
        request = {"method": "POST", "url": resource_type}
        if identifier is not None:
            request["ifNoneExist"] = _conditional(identifier["system"], identifier["value"])
        return Entry(full_url, resource, request)
