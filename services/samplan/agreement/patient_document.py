"""The patient's agreement as a FHIR document: what the patient was given, storable and signable.

A Bundle of type ``document`` (https://hl7.org/fhir/R4/documents.html): the
Composition first, then every resource it draws on, each once, as stored but
without ``NOPATIENT`` content (the caller passes
:meth:`~samplan.agreement.patient_view.PatientRecord.for_patient`). The
Composition's four sections are the four parts of the agreement (DOMAIN.md),
each with a narrative in plain Swedish (what the page and the paper say) and
references to the resources that hold it:

==========================================  ==================================================
section (code in :data:`PART_SYSTEM`)       entries
==========================================  ==================================================
Överenskommelse (``agreement``)             the agreement CarePlans (validity, what the
                                            patient and care do, on deterioration)
Fast vårdkontakt (``contacts``)             CareTeams, and the Practitioners,
                                            PractitionerRoles and Organizations they name
Överenskommen tid / Fortsatt planering      upcoming Appointments (and the agreement
(``planning``)                              CarePlans, whose activities hold the next steps)
Sammanhållen planering (``coordinated``)    the patient's other plans (SIP, ...), Goals (and
                                            the agreement CarePlans for coordinated-plan
                                            activities)
==========================================  ==================================================

Entries of stored resources have ``fullUrl`` ``{base}/{type}/{id}``, so the
relative references inside them resolve within the Bundle; the Composition,
which is made for this document and not stored, has a ``urn:uuid:``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any, Final

import orjson

from samplan.agreement.codes import BASE, CAREPLAN_TITLE
from samplan.agreement.patient_view import PatientRecord, PatientView, Text

__all__ = [
    "DOCUMENT_TYPE",
    "PART_SYSTEM",
    "SECTIONS",
    "DocumentParts",
    "SerializedParts",
    "assemble",
    "build_document",
    "document_parts",
]

PART_SYSTEM: Final = f"{BASE}/CodeSystem/agreement-part"
"""The four parts of the agreement, as ``Composition.section.code``."""

SECTIONS: Final[tuple[tuple[str, str], ...]] = (
    ("agreement", "Överenskommelse"),
    ("contacts", "Fast vårdkontakt"),
    ("planning", "Överenskommen tid / Fortsatt planering"),
    ("coordinated", "Sammanhållen planering"),
)

DOCUMENT_TYPE: Final = {
    "coding": [{"system": "http://loinc.org", "code": "18776-5", "display": "Plan of care note"}],
    "text": CAREPLAN_TITLE,
}

_EMPTY_REASON: Final = {
    "coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/list-empty-reason",
        "code": "nilknown",
        "display": "Nil Known",
    }]
}
_XHTML: Final = "http://www.w3.org/1999/xhtml"

Resource = dict[str, Any]


@dataclass(frozen=True, slots=True)
class DocumentParts:
    """A document without what makes each one unique: its id and its time (:func:`assemble`).

    The Composition's elements before its ``date`` and after it, and the entries after
    the Composition's.
    """

    head: dict[str, Any]
    tail: dict[str, Any]
    entries: list[Any]

    def serialized(self) -> SerializedParts:
        """The same parts as JSON (immutable: one set serves any number of documents)."""
        return SerializedParts(
            head=orjson.dumps(self.head)[1:-1],  # the members, without the braces
            tail=orjson.dumps(self.tail)[1:-1],
            entries=orjson.dumps(self.entries)[1:-1],  # the items, without the brackets
        )


@dataclass(frozen=True, slots=True)
class SerializedParts:
    """:class:`DocumentParts` as JSON text: members of the Composition before and after its
    ``date``, and the entries (comma-separated)."""

    head: bytes
    tail: bytes
    entries: bytes


def build_document(
    record: PatientRecord,
    view: PatientView,
    *,
    base_url: str,
    now: datetime,
    document_id: str | None = None,
) -> Resource:
    """The document Bundle (a JSON-ready dict) for ``view``, made from ``record``."""
    return assemble(document_parts(record, view, base_url=base_url), base_url=base_url,
                    now=now, document_id=document_id)


def document_parts(record: PatientRecord, view: PatientView, *, base_url: str) -> DocumentParts:
    """Everything of the document Bundle for ``view`` but its id and time."""
    patient = record.patient
    patient_ref = f"Patient/{patient.get('id')}"
    agreements = record.agreements
    teams = record.careteams
    directory = [r for r in record.directory if r.get("resourceType") != "RelatedPerson"]
    upcoming_starts = {v.start for v in view.visits}
    appointments = [a for a in record.appointments if _start(a) in upcoming_starts]
    linked_plans = record.linked_plans

    sections = [
        _section("agreement", _agreement_narrative(view), agreements),
        _section("contacts", _contacts_narrative(view), [*teams, *directory]),
        # next steps and coordinated-plan keywords are activities of the agreement CarePlan
        _section("planning", _planning_narrative(view),
                 [*appointments, *(agreements if view.next_steps else ())]),
        _section("coordinated", _coordinated_narrative(view),
                 [*linked_plans, *record.goals, *(agreements if view.plans else ())]),
    ]
    head: Resource = {
        "status": "final",
        "type": DOCUMENT_TYPE,
        "subject": _reference(patient_ref, view.name),
    }
    tail: Resource = {
        "author": _authors(agreements),
        "title": f"{CAREPLAN_TITLE} – patientens exemplar",
        "section": sections,
    }
    period = _period(agreements)
    if period:
        tail["event"] = [{"period": period}]
    custodian = _custodian(teams)
    if custodian is not None:
        tail["custodian"] = custodian

    resources: list[Resource] = [
        patient, *agreements, *teams, *directory, *appointments, *linked_plans, *record.goals,
    ]
    entries: list[Any] = []
    seen: set[str] = set()
    for resource in resources:
        key = f"{resource.get('resourceType')}/{resource.get('id')}"
        if key in seen:
            continue
        seen.add(key)
        entries.append({"fullUrl": f"{base_url}/{key}", "resource": resource})
    return DocumentParts(head, tail, entries)


def assemble(
    parts: DocumentParts | SerializedParts, *, base_url: str, now: datetime,
    document_id: str | None = None,
) -> Resource:
    """The document Bundle of ``parts``: a new id (``document_id``), made at ``now``.

    From :class:`SerializedParts` the entries are one ``orjson.Fragment`` (JSON already).
    """
    stamp = now.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    doc_id = document_id or str(uuid.uuid4())
    composition_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{base_url}/{doc_id}"))
    composition_url = f"urn:uuid:{composition_id}"
    entries: Any
    if isinstance(parts, SerializedParts):
        dumps = orjson.dumps
        composition = b"".join((
            b'{"resourceType":"Composition","id":', dumps(composition_id), b",", parts.head,
            b',"date":', dumps(stamp), b",", parts.tail, b"}",
        ))
        entries = orjson.Fragment(b"".join((
            b'[{"fullUrl":', dumps(composition_url), b',"resource":', composition, b"}",
            b"," if parts.entries else b"", parts.entries, b"]",
        )))
    else:
        entries = [{"fullUrl": composition_url, "resource": {
            "resourceType": "Composition", "id": composition_id, **parts.head, "date": stamp,
            **parts.tail,
        }}, *parts.entries]
    return {
        "resourceType": "Bundle",
        "id": doc_id,
        "meta": {"lastUpdated": stamp},
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{doc_id}"},
        "type": "document",
        "timestamp": stamp,
        "entry": entries,
    }


def _start(appointment: Resource) -> datetime | None:
    value = appointment.get("start")
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _reference(reference: str, display: str | None) -> Resource:
    ref: Resource = {"reference": reference}
    if display:
        ref["display"] = display
    return ref


def _authors(agreements: Sequence[Resource]) -> list[Resource]:
    authors: list[Resource] = []
    for plan in agreements:
        author = plan.get("author")
        if isinstance(author, dict) and (author.get("reference") or author.get("display")):
            clean = {k: v for k, v in author.items() if k in ("reference", "display", "type")}
            if clean not in authors:
                authors.append(clean)
    return authors or [{"display": "SamPlan"}]


def _custodian(teams: Sequence[Resource]) -> Resource | None:
    for team in teams:
        for org in team.get("managingOrganization") or ():
            if isinstance(org, dict) and org.get("reference"):
                return {k: v for k, v in org.items() if k in ("reference", "display")}
    return None


def _period(agreements: Sequence[Resource]) -> Resource | None:
    starts = [str(p["period"]["start"]) for p in agreements
              if isinstance(p.get("period"), dict) and p["period"].get("start")]
    ends = [str(p["period"]["end"]) for p in agreements
            if isinstance(p.get("period"), dict) and p["period"].get("end")]
    if not starts and not ends:
        return None
    period: Resource = {}
    if starts:
        period["start"] = min(starts)
    if ends and len(ends) == len(agreements):
        period["end"] = max(ends)
    return period


def _section(code: str, narrative: str, resources: Iterable[Resource]) -> Resource:
    title = dict(SECTIONS)[code]
    section: Resource = {
        "title": title,
        "code": {"coding": [{"system": PART_SYSTEM, "code": code, "display": title}]},
        "text": {"status": "generated", "div": f'<div xmlns="{_XHTML}">{narrative}</div>'},
    }
    refs: list[Resource] = []
    for resource in resources:
        ref = {"reference": f"{resource.get('resourceType')}/{resource.get('id')}"}
        if ref not in refs:
            refs.append(ref)
    if refs:
        section["entry"] = refs
    else:
        section["emptyReason"] = _EMPTY_REASON
    return section


# -- narratives (XHTML, plain Swedish: the same words as the page) ----------------------------


def _lines(text: str) -> str:
    return "<br/>".join(escape(line) for line in text.split("\n"))


def _texts(heading: str, texts: Sequence[Text]) -> str:
    if not texts:
        return ""
    items = "".join(
        f"<li>{_lines(t.text)}{' (patientens tillägg)' if t.patient_authored else ''}</li>"
        for t in texts
    )
    return f"<p><b>{escape(heading)}</b></p><ul>{items}</ul>"


def _agreement_narrative(view: PatientView) -> str:
    parts = [
        "".join(f"<p>{escape(a.validity)}</p>" for a in view.agreements if a.validity),
        "".join(f"<p>{_lines(a.section_text)}</p>" for a in view.agreements if a.section_text),
        _texts("Det här gör jag", view.i_do),
        _texts("Om jag blir sämre", view.if_worse),
        _texts("Det här gör vården", view.care_does),
    ]
    return "".join(parts) or "<p>Inget överenskommet ännu.</p>"


def _contacts_narrative(view: PatientView) -> str:
    items = []
    for contact in view.contacts:
        extra = "".join(f", {escape(link.label)}" for link in contact.links
                        if link.label not in contact.text)
        items.append(f"<li><b>{escape(contact.role)}</b>: {_lines(contact.text)}{extra}</li>")
    parts = [f"<ul>{''.join(items)}</ul>" if items else "",
             _texts("Så kontaktar du vården", view.reach_care)]
    return "".join(parts) or "<p>Inga kontakter angivna.</p>"


def _planning_narrative(view: PatientView) -> str:
    visits = "".join(
        f"<li>{escape(v.when)}{', ' + escape(v.where) if v.where else ''}"
        f"{': ' + _lines(v.what) if v.what else ''}</li>"
        for v in view.visits
    )
    parts = [_texts("Nästa steg", view.next_steps),
             f"<p><b>Bokade tider</b></p><ul>{visits}</ul>" if visits else ""]
    return "".join(parts) or "<p>Ingen fortsatt planering angiven.</p>"


def _coordinated_narrative(view: PatientView) -> str:
    plans = "".join(
        f"<li>{escape(p.title)}{' (' + escape(p.kind) + ')' if p.kind else ''}</li>"
        for p in view.linked_plans
    )
    parts = [_texts("Mina planer", view.plans),
             f"<p><b>Andra planer</b></p><ul>{plans}</ul>" if plans else "",
             _texts("Det här är viktigt för mig", view.important)]
    return "".join(parts) or "<p>Ingen sammanhållen planering angiven.</p>"
