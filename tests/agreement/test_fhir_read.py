"""Stored FHIR resources back into the agreement they were built from."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from samplan.agreement.codes import AGREEMENT_CATEGORY
from samplan.agreement.fhir_build import build_transaction
from samplan.agreement.fhir_read import read_agreement
from samplan.agreement.model import Agreement, Author, CareUnit, Part
from samplan.fhir.errors import Unprocessable

from .factories import make_agreement, make_item

ALL_PARTS = make_agreement(
    section_text="Överenskommelse gjord tillsammans med dottern.",
    items=(
        make_item(part=Part.VALIDITY, keyword="Giltighetstid", text="tillsvidare"),
        make_item(part=Part.PATIENT_RESPONSIBILITY, text="Väga mig.\nGå promenad."),
        make_item(part=Part.PATIENT_RESPONSIBILITY, text="Vattengympa.", patient_authored=True),
        make_item(part=Part.ON_DETERIORATION, text="Ring 0480-840 10."),
        make_item(part=Part.CARE_RESPONSIBILITY, text="Följa upp vikt."),
        make_item(
            part=Part.GP_CONTACT, text="Anna Berg, distriktsläkare", hsa_id="SE2321000073-1001"
        ),
        make_item(part=Part.CARE_CONTACT, text="Karin Ek, sjuksköterska. Tel 0480-123 46"),
        make_item(part=Part.OMSORG_CONTACT, text="Lena Nord, hemtjänsten"),
        make_item(part=Part.COORDINATING_CONTACT, text="Ulla Sten, samordnare"),
        make_item(part=Part.CONTACT_VIA, text="Telefon 0480-840 00, 1177 e-tjänster"),
        make_item(part=Part.NEXT_STEP, text="Spirometri i januari."),
        make_item(part=Part.FOLLOW_UP_TIME, text="2027-01-12 09:30, HC Lindsdal\nTa med mätaren."),
        make_item(part=Part.COORDINATED_PLAN, text="SIP upprättad 2026-10-01."),
        make_item(part=Part.GOAL, text="Klara trappan."),
        make_item(part=Part.GOAL, text="Gå till affären.", patient_authored=True),
        make_item(part=Part.OTHER, keyword="Hjälpmedel", text="Rollator."),
    ),
)


def stored(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The Bundle's resources as a server would store them: ids, and references by id."""
    resources = copy.deepcopy([entry["resource"] for entry in bundle["entry"]])
    ids = {}
    for number, (entry, resource) in enumerate(zip(bundle["entry"], resources, strict=True)):
        resource["id"] = f"id{number}"
        ids[entry["fullUrl"]] = f"{resource['resourceType']}/id{number}"

    def rewrite(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ids.get(v, v) if k == "reference" else rewrite(v) for k, v in value.items()}
        if isinstance(value, list):
            return [rewrite(v) for v in value]
        return value

    return [rewrite(resource) for resource in reversed(resources)]


class TestRoundTrip:
    def test_reading_the_bundle_gives_the_agreement_back(self) -> None:
        assert read_agreement(build_transaction(ALL_PARTS)) == ALL_PARTS

    def test_reading_stored_resources_gives_the_agreement_back(self) -> None:
        assert read_agreement(stored(build_transaction(ALL_PARTS))) == ALL_PARTS

    def test_a_samordningsnummer_patient_without_name_or_date(self) -> None:
        agreement = make_agreement(
            personnummer="194501611232",
            samordning=True,
            patient_name=None,
            signed_at=None,
            note_id=None,
            variant=None,
            author=Author(name="Karin Ek"),
            care_unit=CareUnit(name="HC Lindsdal"),
            items=(make_item(part=Part.NEXT_STEP, text="Ring mig."),),
        )
        assert read_agreement(build_transaction(agreement)) == agreement

    def test_the_careplan_alone_is_enough(self) -> None:
        bundle = build_transaction(ALL_PARTS)
        careplan = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "CarePlan")
        careteam = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "CareTeam")
        goals = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Goal"]
        read = read_agreement({"resourceType": "Bundle", "entry": [careplan, careteam, *goals]})
        assert read == ALL_PARTS


class TestResourcesWrittenWithoutANote:
    def test_keywords_fall_back_to_the_template_names(self) -> None:
        resources: list[dict[str, Any]] = [
            {"resourceType": "Patient", "id": "p", "name": [{"given": ["Greta"], "family": "Holm"}],
             "identifier": [{"system": "urn:oid:1.2.752.129.2.1.3.1", "value": "194501011235"}]},
            {
                "resourceType": "CarePlan",
                "id": "cp",
                "status": "active",
                "intent": "plan",
                "category": [{"coding": [AGREEMENT_CATEGORY]}],
                "subject": {"reference": "Patient/p"},
                "period": {"start": "2026-11-20", "end": "2027-05-20"},
                "careTeam": [{"reference": "CareTeam/ct"}],
                "activity": [
                    {"detail": {"status": "in-progress", "description": "Promenera.",
                                "code": {"coding": [{"system": "https://samplan.se/fhir/CodeSystem/agreement-activity-kind",
                                                     "code": "patient-responsibility"}]}}},
                    {"detail": {"status": "in-progress", "description": "Något annat."}},
                    {"reference": {"reference": "Appointment/a"}},
                ],
            },
            {"resourceType": "CareTeam", "id": "ct", "status": "active",
             "telecom": [{"system": "phone", "value": "0480-840 00"}],
             "participant": [{"member": {"display": "Anna Berg"}, "role": [
                 {"coding": [{"system": "urn:oid:1.2.752.129.5.1.69", "code": "2"}]}]}]},
            {"resourceType": "Appointment", "id": "a", "status": "booked",
             "start": "2027-06-15T12:00:00Z",
             "participant": [{"actor": {"display": "HC Lindsdal"}, "status": "accepted"}]},
        ]  # fmt: skip
        agreement = read_agreement(resources)
        assert agreement.patient.personnummer == "194501011235"
        assert agreement.patient.name == "Greta Holm"
        assert [(i.part, i.keyword, i.text) for i in agreement.items] == [
            (Part.VALIDITY, "Överenskommelsens giltighet", "2026-11-20 -- 2027-05-20"),
            (Part.PATIENT_RESPONSIBILITY, "Patienten ansvarar för", "Promenera."),
            (Part.GP_CONTACT, "Fast läkarkontakt i primärvården", "Anna Berg"),
            (Part.CONTACT_VIA, "Patienten kan kontakta vården via", "0480-840 00"),
            (Part.FOLLOW_UP_TIME, "Tid för uppföljning", "2027-06-15 14:00, HC Lindsdal"),
            (Part.OTHER, "Övrigt", "Något annat."),
        ]

    def test_no_agreement_careplan_is_unprocessable(self) -> None:
        other = {"resourceType": "CarePlan", "status": "active", "intent": "plan",
                 "subject": {"reference": "Patient/p"}}  # fmt: skip
        with pytest.raises(Unprocessable) as raised:
            read_agreement([other])
        assert raised.value.issues[0].expression == ("CarePlan.category",)

    def test_a_patient_without_personnummer_is_unprocessable(self) -> None:
        bundle = build_transaction(ALL_PARTS)
        for entry in bundle["entry"]:
            if entry["resource"]["resourceType"] == "Patient":
                entry["resource"]["identifier"] = []
            if entry["resource"]["resourceType"] == "CarePlan":
                del entry["resource"]["subject"]["identifier"]
        with pytest.raises(Unprocessable, match="personnummer"):
            read_agreement(bundle)


def test_the_agreement_groups_items_into_the_four_parts() -> None:
    agreement: Agreement = ALL_PARTS
    assert [i.part for i in agreement.agreement_part] == [
        Part.VALIDITY, Part.PATIENT_RESPONSIBILITY, Part.PATIENT_RESPONSIBILITY,
        Part.ON_DETERIORATION, Part.CARE_RESPONSIBILITY,
    ]  # fmt: skip
    assert len(agreement.contacts_part) == 5
    assert [i.part for i in agreement.planning_part] == [Part.NEXT_STEP, Part.FOLLOW_UP_TIME]
    assert [i.part for i in agreement.coordinated_part] == [
        Part.COORDINATED_PLAN, Part.GOAL, Part.GOAL,
    ]  # fmt: skip
    assert agreement.patient.written == "19450101-1235"
