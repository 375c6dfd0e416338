"""The documented agreement as a plain domain model, with no FHIR and no note format.

An :class:`Agreement` holds what the journal note said, keyword by keyword, in
words (:class:`AgreementItem`: which part of the agreement, the keyword as
written, the text verbatim). What can be read *out of* the words (dates, times,
phone numbers, names) is derived on demand by :mod:`samplan.agreement.interpret`,
so the words stay the single source and the FHIR resources and the exported
note are two renderings of the same thing.

Items are kept in a canonical order (by part, stable within a part), so two
agreements with the same content compare equal whichever way they were read
(a note in the template's order, or FHIR resources grouped by type).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from samplan.agreement.values import to_local

__all__ = [
    "PART_ORDER",
    "Agreement",
    "AgreementItem",
    "Author",
    "CareProvider",
    "CareUnit",
    "Part",
    "PatientInfo",
]


class Part(StrEnum):
    """What a keyword of the note stands for: one element of DOMAIN.md's four parts."""

    VALIDITY = "validity"
    PATIENT_RESPONSIBILITY = "patient-responsibility"
    ON_DETERIORATION = "on-deterioration"
    CARE_RESPONSIBILITY = "care-responsibility"
    GP_CONTACT = "gp-contact"
    CARE_CONTACT = "care-contact"
    OMSORG_CONTACT = "omsorg-contact"
    COORDINATING_CONTACT = "coordinating-contact"
    CONTACT_VIA = "contact-via"
    NEXT_STEP = "next-step"
    FOLLOW_UP_TIME = "follow-up-time"
    COORDINATED_PLAN = "coordinated-plan"
    GOAL = "goal"
    OTHER = "other"
    """A keyword inside the agreement section that the template does not know."""
    INTERNAL = "internal"
    """An internal remark ("Intern anteckning"): for professionals only, never the patient's."""

    @property
    def is_contact(self) -> bool:
        """A named contact: one ``CareTeam.participant``."""
        return self in _CONTACT_PARTS


_CONTACT_PARTS = frozenset(
    {Part.GP_CONTACT, Part.CARE_CONTACT, Part.OMSORG_CONTACT, Part.COORDINATING_CONTACT}
)

PART_ORDER: tuple[Part, ...] = tuple(Part)
"""The canonical order of items: the region-wide template's order, then the rest."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PatientInfo(_Model):
    """The patient the agreement is with."""

    personnummer: str = Field(pattern=r"^[0-9]{12}$")
    """12 digits, already validated (a samordningsnummer when ``samordning``)."""
    samordning: bool = False
    name: str | None = None

    @property
    def written(self) -> str:
        """The 12-digit form with its separator, as staff write it: ``19450101-1235``."""
        return f"{self.personnummer[:8]}-{self.personnummer[8:]}"

    @property
    def birth_date(self) -> date | None:
        """The date of birth the number holds (a samordningsnummer has 60 added to the day).

        ``Patient.birthDate``: what tells a guardian's child under 13 from an
        adult. None only for a number whose date is not a calendar date (the
        importer has refused those already).
        """
        day = int(self.personnummer[6:8]) - (60 if self.samordning else 0)
        try:
            return date(int(self.personnummer[:4]), int(self.personnummer[4:6]), day)
        except ValueError:
            return None


class Author(_Model):
    """Who signed the note."""

    name: str | None = None
    title: str | None = None
    hsa_id: str | None = None


class CareUnit(_Model):
    """The care unit (vårdenhet) the note was written at."""

    name: str | None = None
    hsa_id: str | None = None


class CareProvider(_Model):
    """The care provider (vårdgivare) the care unit belongs to (``Organization.partOf``)."""

    name: str | None = None
    hsa_id: str | None = None


class AgreementItem(_Model):
    """One keyword of the agreement section with its text."""

    part: Part
    keyword: str = Field(min_length=1)
    """The keyword exactly as written in the note (or the template's name for it)."""
    text: str = Field(min_length=1)
    """The text under the keyword, verbatim; lines separated by ``\\n``."""
    hsa_id: str | None = None
    """The HSA-id of the named person, for contacts."""
    patient_authored: bool = False
    """Added by the patient (portal), not by staff; exported as its own keyword line."""


class Agreement(_Model):
    """The documented agreement (dokumenterad överenskommelse) of one patient."""

    patient: PatientInfo
    items: tuple[AgreementItem, ...] = ()
    note_id: str | None = None
    """The journal note this version came from (or a hash of it, for printed notes)."""
    variant: str | None = None
    """The keyword template variant (``mappings/<variant>.yaml``) for rendering back."""
    template: str | None = None
    """The journal template's name, e.g. "Besöksanteckning läkare"."""
    author: Author | None = None
    care_unit: CareUnit | None = None
    care_provider: CareProvider | None = None
    """Who the unit belongs to, when the note says: a unit first registered by this note
    is registered under it (a unit registered before keeps what it is part of)."""
    signed_at: AwareDatetime | None = None
    """When the note was signed; held in UTC, rendered in Swedish time."""
    section_keyword: str = "Överenskommelse"
    """The agreement section's own keyword, as written."""
    section_text: str | None = None
    """Text written directly under the section keyword, before any sub-keyword."""

    @model_validator(mode="after")
    def _canonical_form(self) -> Agreement:
        # Items by part, so equal content compares equal whatever order it was read in.
        ordered = tuple(sorted(self.items, key=lambda item: PART_ORDER.index(item.part)))
        if ordered != self.items:
            object.__setattr__(self, "items", ordered)
        # The signing instant in UTC: Python never finds a local time in the autumn
        # overlap equal to the same instant in another zone (PEP 495).
        if self.signed_at is not None and self.signed_at.tzinfo is not UTC:
            object.__setattr__(self, "signed_at", self.signed_at.astimezone(UTC))
        return self

    def of(self, *parts: Part) -> tuple[AgreementItem, ...]:
        """The items of the given parts, in order."""
        return tuple(item for item in self.items if item.part in parts)

    @property
    def signed_at_local(self) -> datetime | None:
        """``signed_at`` in Swedish local time (what "from the note's date" means)."""
        return None if self.signed_at is None else to_local(self.signed_at)

    # The four parts of DOMAIN.md, as views over the items.
    @property
    def agreement_part(self) -> tuple[AgreementItem, ...]:
        """Överenskommelse: validity, what the patient and care do, on deterioration."""
        return self.of(
            Part.VALIDITY,
            Part.PATIENT_RESPONSIBILITY,
            Part.ON_DETERIORATION,
            Part.CARE_RESPONSIBILITY,
        )

    @property
    def contacts_part(self) -> tuple[AgreementItem, ...]:
        """Fast vårdkontakt: the named contacts and how to reach care."""
        return tuple(
            item for item in self.items if item.part.is_contact or item.part is Part.CONTACT_VIA
        )

    @property
    def planning_part(self) -> tuple[AgreementItem, ...]:
        """Överenskommen tid / Fortsatt planering: next steps and agreed times."""
        return self.of(Part.NEXT_STEP, Part.FOLLOW_UP_TIME)

    @property
    def coordinated_part(self) -> tuple[AgreementItem, ...]:
        """Sammanhållen planering: linked plans and goals."""
        return self.of(Part.COORDINATED_PLAN, Part.GOAL)
