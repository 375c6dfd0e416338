"""Typed, keyword-only factories for agreements and their items."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from samplan.agreement.codes import PART_DEFAULT_KEYWORD
from samplan.agreement.model import Agreement, AgreementItem, Author, CareUnit, Part, PatientInfo
from samplan.agreement.values import SWEDISH_TIME

SIGNED_AT = datetime(2026, 11, 20, 10, 15, tzinfo=SWEDISH_TIME)


def make_item(
    *,
    part: Part,
    text: str = "Text.",
    keyword: str | None = None,
    hsa_id: str | None = None,
    patient_authored: bool = False,
) -> AgreementItem:
    return AgreementItem(
        part=part,
        keyword=keyword or PART_DEFAULT_KEYWORD[part],
        text=text,
        hsa_id=hsa_id,
        patient_authored=patient_authored,
    )


def make_agreement(
    *,
    items: tuple[AgreementItem, ...] = (),
    personnummer: str = "194501011235",
    samordning: bool = False,
    patient_name: str | None = "Greta Holm",
    note_id: str | None = "cosmic-note-1",
    variant: str | None = "region-nested",
    signed_at: datetime | None = SIGNED_AT,
    author: Author | None = None,
    care_unit: CareUnit | None = None,
    section_text: str | None = None,
) -> Agreement:
    return Agreement(
        patient=PatientInfo(personnummer=personnummer, samordning=samordning, name=patient_name),
        items=items,
        note_id=note_id,
        variant=variant,
        template="Besöksanteckning läkare",
        author=author
        or Author(name="Anna Berg", title="Distriktsläkare", hsa_id="SE2321000073-1001"),
        care_unit=care_unit
        or CareUnit(name="Hälsocentralen Kvarnholmen", hsa_id="SE2321000073-2001"),
        signed_at=signed_at,
        section_text=section_text,
    )


def validate_bundle(bundle: Mapping[str, Any]) -> None:
    """Every resource in the Bundle, and the Bundle, valid for fhir.resources R4B."""
    get_fhir_model_class("Bundle").model_validate(bundle)
    for entry in bundle["entry"]:
        resource = entry["resource"]
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def strings_in(value: Any) -> Iterator[str]:
    """Every string anywhere in a JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for child in value.values():
            yield from strings_in(child)
    elif isinstance(value, list):
        for child in value:
            yield from strings_in(child)


def lines_in(value: Any) -> set[str]:
    """Every line of every string in a JSON value."""
    return {line for text in strings_in(value) for line in text.split("\n")}


def resources_of(bundle: Mapping[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [
        entry["resource"]
        for entry in bundle["entry"]
        if entry["resource"]["resourceType"] == resource_type
    ]
