"""Every URL, code and fixed wording the agreement's FHIR resources use, in one place.

The profiles in ``fhir_profiles/``, the builder, the reader and the rest of the
service import these names rather than spelling the strings again, so that the
resources we write and the profiles that check them cannot drift apart.
"""

from __future__ import annotations

from typing import Final

from samplan.agreement.model import Part
from samplan.fhir.identifiers import (
    HSA_SYSTEM,
    PERSONNUMMER_SYSTEM,
    SAMORDNINGSNUMMER_SYSTEM,
)

__all__ = [
    "ACTIVITY_KINDS",
    "ACTIVITY_KIND_SYSTEM",
    "AGREEMENT_CATEGORY",
    "AGREEMENT_RESOURCE_SYSTEM",
    "BASE",
    "CAREPLAN_CATEGORY_SYSTEM",
    "CAREPLAN_TITLE",
    "CONTACT_KINDS",
    "CONTACT_KIND_SYSTEM",
    "CONTACT_PART_CODES",
    "COSMIC_NOTE_ID_SYSTEM",
    "DS4P_INLINE_LABEL",
    "EXT_AUTHOR_TITLE",
    "EXT_NOTE_KEYWORD",
    "EXT_NOTE_TEMPLATE",
    "EXT_NOTE_TEXT",
    "EXT_PATIENT_AUTHORED",
    "EXT_TEMPLATE_VARIANT",
    "HSA_SYSTEM",
    "INERA_CAREPLAN_TYPE_SYSTEM",
    "NOPATIENT_CODE",
    "NOPATIENT_SYSTEM",
    "PART_ACTIVITY_KIND",
    "PART_DEFAULT_KEYWORD",
    "PATIENT_PERFORMED_PARTS",
    "PERSONNUMMER_SYSTEM",
    "PROFILE_APPOINTMENT",
    "PROFILE_CAREPLAN",
    "PROFILE_CARETEAM",
    "PROFILE_GOAL",
    "SAMORDNINGSNUMMER_SYSTEM",
    "SECTION_DEFAULT_KEYWORD",
    "nopatient_label",
]

BASE: Final = "https://samplan.se/fhir"
"""Canonical base of everything SamPlan defines."""

# -- profiles (meta.profile) ---------------------------------------------------
PROFILE_CAREPLAN: Final = f"{BASE}/StructureDefinition/samplan-agreement-careplan"
PROFILE_CARETEAM: Final = f"{BASE}/StructureDefinition/samplan-careteam"
PROFILE_APPOINTMENT: Final = f"{BASE}/StructureDefinition/samplan-appointment"
PROFILE_GOAL: Final = f"{BASE}/StructureDefinition/samplan-goal"

# -- code systems -------------------------------------------------------------
CAREPLAN_CATEGORY_SYSTEM: Final = f"{BASE}/CodeSystem/careplan-category"
AGREEMENT_CATEGORY: Final = {
    "system": CAREPLAN_CATEGORY_SYSTEM,
    "code": "dokumenterad-overenskommelse",
    "display": "Dokumenterad överenskommelse",
}
"""``CarePlan.category[0]``: what tells an agreement from any other CarePlan."""

CAREPLAN_TITLE: Final = "Dokumenterad överenskommelse"

ACTIVITY_KIND_SYSTEM: Final = f"{BASE}/CodeSystem/agreement-activity-kind"
"""``CarePlan.activity.detail.code.coding[0].system``; codes in :data:`ACTIVITY_KINDS`."""

ACTIVITY_KINDS: Final[dict[str, str]] = {
    "patient-responsibility": "Patienten ansvarar för",
    "on-deterioration": "Vid försämring",
    "care-responsibility": "Vården ansvarar för",
    "next-step": "Fortsatt planering",
    "follow-up": "Tid för uppföljning",
    "coordinated-plan": "Sammanhållen planering",
    "other-keyword": "Övrigt sökord",
}
"""The activity-kind CodeSystem: code -> display."""

INERA_CAREPLAN_TYPE_SYSTEM: Final = "https://fhir.inera.se/CodeSystem/typeofcareplan-cs"
"""Inera's kind of care plan (GetCarePlans): SIP, SPLPTLRV, SPU, VP, HP, RP, GP, SVP."""

CONTACT_KIND_SYSTEM: Final = "urn:oid:1.2.752.129.5.1.69"
"""KV "Typ av fast kontakt"."""

CONTACT_KINDS: Final[dict[str, str]] = {
    "1": "Fast vårdkontakt",
    "2": "Fast läkarkontakt i primärvård",
    "3": "Fast omsorgskontakt i hemtjänsten",
    "4": "Fast vårdkontakt med övergripande samordningsansvar",
}
"""KV "Typ av fast kontakt": code -> display."""

CONTACT_PART_CODES: Final[dict[Part, str]] = {
    Part.CARE_CONTACT: "1",
    Part.GP_CONTACT: "2",
    Part.OMSORG_CONTACT: "3",
    Part.COORDINATING_CONTACT: "4",
}
"""Which KV code each named-contact part carries in ``CareTeam.participant.role``."""

PART_ACTIVITY_KIND: Final[dict[Part, str]] = {
    Part.PATIENT_RESPONSIBILITY: "patient-responsibility",
    Part.ON_DETERIORATION: "on-deterioration",
    Part.CARE_RESPONSIBILITY: "care-responsibility",
    Part.NEXT_STEP: "next-step",
    Part.FOLLOW_UP_TIME: "follow-up",
    Part.COORDINATED_PLAN: "coordinated-plan",
    Part.OTHER: "other-keyword",
}
"""The parts that become ``CarePlan.activity``, and their activity-kind code."""

PATIENT_PERFORMED_PARTS: Final = frozenset({Part.PATIENT_RESPONSIBILITY, Part.ON_DETERIORATION})
"""Activities whose ``detail.performer`` is the patient."""

PART_DEFAULT_KEYWORD: Final[dict[Part, str]] = {
    Part.VALIDITY: "Överenskommelsens giltighet",
    Part.PATIENT_RESPONSIBILITY: "Patienten ansvarar för",
    Part.ON_DETERIORATION: "Vid försämring kan patienten",
    Part.CARE_RESPONSIBILITY: "Vården ansvarar för",
    Part.GP_CONTACT: "Fast läkarkontakt i primärvården",
    Part.CARE_CONTACT: "Fast vårdkontakt",
    Part.OMSORG_CONTACT: "Fast omsorgskontakt",
    Part.COORDINATING_CONTACT: "Fast vårdkontakt med övergripande samordningsansvar",
    Part.CONTACT_VIA: "Patienten kan kontakta vården via",
    Part.NEXT_STEP: "Fortsatt planering",
    Part.FOLLOW_UP_TIME: "Tid för uppföljning",
    Part.COORDINATED_PLAN: "Sammanhållen planering",
    Part.GOAL: "Mål",
    Part.OTHER: "Övrigt",
    Part.INTERNAL: "Intern anteckning",
}
"""The keyword an item gets when FHIR carries none (a resource written without a note)."""

SECTION_DEFAULT_KEYWORD: Final = "Överenskommelse"

# -- identifier systems -------------------------------------------------------
COSMIC_NOTE_ID_SYSTEM: Final = f"{BASE}/NamingSystem/cosmic-note-id"
"""``CarePlan.identifier`` of the last imported note; the store finds re-imports by it."""

AGREEMENT_RESOURCE_SYSTEM: Final = f"{BASE}/NamingSystem/agreement-resource"
"""Identifiers SamPlan derives for CareTeam, Appointment and Goal so that a
re-import's conditional creates find what the first import wrote."""

# -- extensions ---------------------------------------------------------------
EXT_PATIENT_AUTHORED: Final = f"{BASE}/StructureDefinition/patient-authored"
"""valueBoolean on ``CarePlan.activity``: the patient wrote it (portal), not staff."""

EXT_NOTE_KEYWORD: Final = f"{BASE}/StructureDefinition/note-keyword"
"""valueString: the keyword exactly as written in the note, where FHIR has no
element for it (``CarePlan`` itself for the section keyword, ``CarePlan.period``,
``CareTeam.note``, ``Appointment``, ``Goal``)."""

EXT_NOTE_TEXT: Final = f"{BASE}/StructureDefinition/note-text"
"""valueString: the keyword's text verbatim, where no FHIR element holds it
(``CarePlan.period`` for the validity, ``CareTeam.participant`` for a contact)."""

EXT_NOTE_TEMPLATE: Final = f"{BASE}/StructureDefinition/note-template"
"""valueString on ``CarePlan``: the journal template the note was written in."""

EXT_TEMPLATE_VARIANT: Final = f"{BASE}/StructureDefinition/keyword-template-variant"
"""valueString on ``CarePlan``: which ``mappings/*.yaml`` variant read the note."""

EXT_AUTHOR_TITLE: Final = f"{BASE}/StructureDefinition/author-title"
"""valueString on ``CarePlan.author``: the signer's title as the note gives it."""


# -- security labels ----------------------------------------------------------
NOPATIENT_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
NOPATIENT_CODE: Final = "NOPATIENT"
DS4P_INLINE_LABEL: Final = (
    "http://hl7.org/fhir/uv/security-label-ds4p/StructureDefinition/extension-inline-sec-label"
)
"""HL7 DS4P *Inline Security Label* extension (valueCoding): the label on one element of a
resource (HL7's URL, so not an ``EXT_`` of ours). The same URL the patient's view redacts
by (``patient_view.EXT_INLINE_SECURITY_LABEL``)."""


def nopatient_label() -> dict[str, object]:
    """A fresh DS4P inline ``NOPATIENT`` label, for the element that holds professional-only
    words (an internal remark's ``CarePlan.note``, a number for professionals only)."""
    return {
        "url": DS4P_INLINE_LABEL,
        "valueCoding": {"system": NOPATIENT_SYSTEM, "code": NOPATIENT_CODE},
    }
