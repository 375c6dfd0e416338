"""An agreement as FHIR R4 resources in one transaction Bundle."""

from __future__ import annotations

from typing import Any

import pytest

from samplan.agreement.codes import (
    ACTIVITY_KIND_SYSTEM,
    AGREEMENT_CATEGORY,
    CONTACT_KIND_SYSTEM,
    COSMIC_NOTE_ID_SYSTEM,
    EXT_NOTE_KEYWORD,
    EXT_NOTE_TEXT,
    EXT_PATIENT_AUTHORED,
    HSA_SYSTEM,
    PERSONNUMMER_SYSTEM,
    PROFILE_APPOINTMENT,
    PROFILE_CAREPLAN,
    PROFILE_CARETEAM,
    PROFILE_GOAL,
    SAMORDNINGSNUMMER_SYSTEM,
)
from samplan.agreement.fhir_build import build_resources, build_transaction
from samplan.agreement.model import Author, CareUnit, Part

from .factories import lines_in, make_agreement, make_item, resources_of, validate_bundle

PATIENT = ("194501011235",)


def one(bundle: dict[str, Any], resource_type: str) -> dict[str, Any]:
    (resource,) = resources_of(bundle, resource_type)
    return resource


def activity_codes(careplan: dict[str, Any]) -> list[str]:
    return [a["detail"]["code"]["coding"][0]["code"] for a in careplan["activity"]]


class TestBundle:
    def test_a_transaction_of_conditional_creates_with_urn_uuids(self) -> None:
        bundle = build_transaction(
            make_agreement(items=(make_item(part=Part.PATIENT_RESPONSIBILITY, text="Väga mig."),))
        )
        validate_bundle(bundle)
        assert bundle["type"] == "transaction"
        for entry in bundle["entry"]:
            assert entry["fullUrl"].startswith("urn:uuid:")
            assert entry["request"]["method"] == "POST"
            assert entry["request"]["ifNoneExist"].startswith("identifier=")
            assert "id" not in entry["resource"]
        requests = {e["resource"]["resourceType"]: e["request"] for e in bundle["entry"]}
        assert (
            requests["Patient"]["ifNoneExist"] == f"identifier={PERSONNUMMER_SYSTEM}|194501011235"
        )
        assert (
            requests["Practitioner"]["ifNoneExist"] == f"identifier={HSA_SYSTEM}|SE2321000073-1001"
        )
        assert (
            requests["Organization"]["ifNoneExist"] == f"identifier={HSA_SYSTEM}|SE2321000073-2001"
        )
        assert (
            requests["CarePlan"]["ifNoneExist"]
            == f"identifier={COSMIC_NOTE_ID_SYSTEM}|cosmic-note-1"
        )

    def test_building_twice_gives_the_same_bundle(self) -> None:
        agreement = make_agreement(
            items=(make_item(part=Part.FOLLOW_UP_TIME, text="2027-01-12 09:30"),)
        )
        assert build_transaction(agreement) == build_transaction(agreement)

    def test_existing_ids_make_the_plan_and_team_updates(self) -> None:
        bundle = build_transaction(make_agreement(), careplan_id="cp1", careteam_id="ct1")
        careplan = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "CarePlan")
        careteam = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "CareTeam")
        assert careplan["request"] == {"method": "PUT", "url": "CarePlan/cp1"}
        assert careplan["resource"]["id"] == "cp1"
        assert list(careplan["resource"])[:2] == ["resourceType", "id"]
        assert careteam["request"] == {"method": "PUT", "url": "CareTeam/ct1"}
        validate_bundle(bundle)

    def test_a_samordningsnummer_uses_its_own_system(self) -> None:
        bundle = build_transaction(make_agreement(personnummer="194501611232", samordning=True))
        patient = one(bundle, "Patient")
        assert patient["identifier"] == [
            {"system": SAMORDNINGSNUMMER_SYSTEM, "value": "194501611232"}
        ]
        assert patient["name"] == [{"text": "Greta Holm", "family": "Holm", "given": ["Greta"]}]

    def test_the_author_and_a_contact_with_one_hsa_id_are_one_practitioner(self) -> None:
        gp = make_item(part=Part.GP_CONTACT, text="Anna Berg, distriktsläkare. Tel 0480-123 45",
                       hsa_id="SE2321000073-1001")  # fmt: skip
        bundle = build_transaction(make_agreement(items=(gp,)))
        practitioner = one(bundle, "Practitioner")
        assert practitioner == {
            "resourceType": "Practitioner",
            "identifier": [{"system": HSA_SYSTEM, "value": "SE2321000073-1001"}],
            "name": [{"text": "Anna Berg"}],
            "telecom": [{"system": "phone", "value": "0480-123 45"}],
        }

    def test_without_hsa_ids_people_are_displays_only(self) -> None:
        bundle = build_transaction(
            make_agreement(author=Author(name="Karin Ek"), care_unit=CareUnit(name="HC Lindsdal"))
        )
        assert resources_of(bundle, "Practitioner") == []
        assert resources_of(bundle, "Organization") == []
        assert one(bundle, "CarePlan")["author"] == {"display": "Karin Ek"}
        assert one(bundle, "CareTeam")["managingOrganization"] == [{"display": "HC Lindsdal"}]


class TestCarePlan:
    def test_the_plan_carries_profile_category_identifier_subject_and_author(self) -> None:
        bundle = build_transaction(make_agreement(section_text="Gemensam text."))
        careplan = one(bundle, "CarePlan")
        patient_url = bundle["entry"][0]["fullUrl"]
        assert careplan["meta"] == {"profile": [PROFILE_CAREPLAN]}
        assert careplan["status"] == "active"
        assert careplan["intent"] == "plan"
        assert careplan["category"] == [{"coding": [AGREEMENT_CATEGORY]}]
        assert careplan["identifier"] == [
            {"system": COSMIC_NOTE_ID_SYSTEM, "value": "cosmic-note-1"}
        ]
        assert careplan["subject"]["reference"] == patient_url
        assert careplan["created"] == "2026-11-20T10:15:00+01:00"
        assert careplan["author"]["display"] == "Anna Berg"
        assert careplan["description"] == "Gemensam text."
        assert careplan["careTeam"][0]["reference"] == one_url(bundle, "CareTeam")

    def test_validity_is_the_period_with_its_words_kept(self) -> None:
        item = make_item(part=Part.VALIDITY, keyword="Överenskommelsens giltighetstid",
                         text="2026-11-20 -- 2027-05-20")  # fmt: skip
        careplan = one(build_transaction(make_agreement(items=(item,))), "CarePlan")
        assert careplan["period"] == {
            "extension": [
                {"url": EXT_NOTE_KEYWORD, "valueString": "Överenskommelsens giltighetstid"},
                {"url": EXT_NOTE_TEXT, "valueString": "2026-11-20 -- 2027-05-20"},
            ],
            "start": "2026-11-20",
            "end": "2027-05-20",
        }

    def test_an_unreadable_validity_keeps_its_words_and_starts_at_the_note_date(self) -> None:
        item = make_item(part=Part.VALIDITY, text="till sommaren")
        bundle = build_transaction(make_agreement(items=(item,)))
        validate_bundle(bundle)
        period = one(bundle, "CarePlan")["period"]
        assert period["start"] == "2026-11-20"
        assert "end" not in period
        assert {"url": EXT_NOTE_TEXT, "valueString": "till sommaren"} in period["extension"]

    def test_without_a_validity_keyword_the_plan_starts_at_the_note_date(self) -> None:
        careplan = one(build_transaction(make_agreement()), "CarePlan")
        assert careplan["period"] == {"start": "2026-11-20"}
        assert "period" not in one(build_transaction(make_agreement(signed_at=None)), "CarePlan")

    def test_each_text_is_an_activity_of_its_kind_with_keyword_and_text(self) -> None:
        items = (
            make_item(part=Part.PATIENT_RESPONSIBILITY, text="Väga mig.\nGå promenad."),
            make_item(part=Part.ON_DETERIORATION, text="Ring 0480-840 10."),
            make_item(part=Part.CARE_RESPONSIBILITY, text="Följa upp vikt."),
            make_item(part=Part.NEXT_STEP, text="Återbesök om 3 månader."),
            make_item(part=Part.FOLLOW_UP_TIME, text="2027-01-12 09:30, HC Lindsdal"),
            make_item(part=Part.COORDINATED_PLAN, text="SIP upprättad."),
            make_item(part=Part.OTHER, keyword="Hjälpmedel", text="Rollator."),
        )
        bundle = build_transaction(make_agreement(items=items))
        validate_bundle(bundle)
        careplan = one(bundle, "CarePlan")
        assert activity_codes(careplan) == [
            "patient-responsibility",
            "on-deterioration",
            "care-responsibility",
            "next-step",
            "follow-up",
            "coordinated-plan",
            "other-keyword",
        ]
        first = careplan["activity"][0]["detail"]
        assert first["code"]["coding"][0]["system"] == ACTIVITY_KIND_SYSTEM
        assert first["code"]["text"] == "Patienten ansvarar för"
        assert first["description"] == "Väga mig.\nGå promenad."
        assert first["status"] == "in-progress"
        patient_url = bundle["entry"][0]["fullUrl"]
        performers = [
            a["detail"].get("performer", [{}])[0].get("reference") for a in careplan["activity"]
        ]
        assert performers[:3] == [patient_url, patient_url, None]
        assert careplan["activity"][4]["detail"]["status"] == "scheduled"
        assert all(len(a["detail"]["code"]["coding"]) == 1 for a in careplan["activity"])
        assert careplan["activity"][6]["detail"]["code"]["text"] == "Hjälpmedel"

    def test_patient_authored_activities_are_marked(self) -> None:
        item = make_item(
            part=Part.PATIENT_RESPONSIBILITY, text="Vattengympa.", patient_authored=True
        )
        careplan = one(build_transaction(make_agreement(items=(item,))), "CarePlan")
        assert careplan["activity"][0]["extension"] == [
            {"url": EXT_PATIENT_AUTHORED, "valueBoolean": True}
        ]


class TestAppointments:
    def test_each_readable_follow_up_line_is_a_booked_appointment(self) -> None:
        item = make_item(
            part=Part.FOLLOW_UP_TIME,
            keyword="Tid för uppföljning",
            text="2027-01-12 09:30, Hälsocentralen Lindsdal\nTa med mätaren.\n2027-06-15 14:00",
        )
        bundle = build_transaction(make_agreement(items=(item,)))
        validate_bundle(bundle)
        winter, summer = resources_of(bundle, "Appointment")
        careplan_url = one_url(bundle, "CarePlan")
        patient_url = bundle["entry"][0]["fullUrl"]
        assert winter["meta"] == {"profile": [PROFILE_APPOINTMENT]}
        assert winter["status"] == "booked"
        assert winter["start"] == "2027-01-12T09:30:00+01:00"
        assert winter["description"] == "2027-01-12 09:30, Hälsocentralen Lindsdal"
        assert winter["basedOn"] == [{"reference": careplan_url}]
        assert winter["participant"] == [
            {"actor": {"reference": patient_url, "identifier": {"system": PERSONNUMMER_SYSTEM,
             "value": "194501011235"}, "display": "Greta Holm"}, "status": "accepted"},
            {"actor": {"display": "Hälsocentralen Lindsdal"}, "status": "accepted"},
        ]  # fmt: skip
        assert summer["start"] == "2027-06-15T14:00:00+02:00"
        activity = one(bundle, "CarePlan")["activity"][0]
        assert activity["outcomeReference"] == [
            {"reference": e["fullUrl"]}
            for e in bundle["entry"]
            if e["resource"]["resourceType"] == "Appointment"
        ]
        assert activity["detail"]["scheduledPeriod"] == {"start": "2027-01-12T09:30:00+01:00"}
        assert activity["detail"]["location"] == {"display": "Hälsocentralen Lindsdal"}

    def test_an_unreadable_time_books_nothing(self) -> None:
        item = make_item(part=Part.FOLLOW_UP_TIME, text="Om tre veckor")
        resources = build_resources(make_agreement(items=(item,)))
        assert resources.appointments == ()
        assert [i.code for i in resources.interpretation.issues] == ["value"]


class TestCareTeam:
    def test_named_contacts_are_participants_with_kv_roles(self) -> None:
        items = (
            make_item(
                part=Part.GP_CONTACT, text="Anna Berg, distriktsläkare", hsa_id="SE2321000073-1001"
            ),
            make_item(
                part=Part.CARE_CONTACT, keyword="Fast vårdkontakt", text="Karin Ek, sjuksköterska"
            ),
            make_item(part=Part.OMSORG_CONTACT, text="Lena Nord, hemtjänsten"),
            make_item(part=Part.COORDINATING_CONTACT, text="Ulla Sten"),
        )
        bundle = build_transaction(make_agreement(items=items))
        validate_bundle(bundle)
        careteam = one(bundle, "CareTeam")
        assert careteam["meta"] == {"profile": [PROFILE_CARETEAM]}
        roles = [p["role"][0]["coding"][0] for p in careteam["participant"]]
        assert [(r["system"], r["code"]) for r in roles] == [
            (CONTACT_KIND_SYSTEM, "2"), (CONTACT_KIND_SYSTEM, "1"),
            (CONTACT_KIND_SYSTEM, "3"), (CONTACT_KIND_SYSTEM, "4"),
        ]  # fmt: skip
        gp, nurse = careteam["participant"][:2]
        assert gp["member"]["identifier"] == {"system": HSA_SYSTEM, "value": "SE2321000073-1001"}
        assert gp["member"]["reference"] == one_url(bundle, "Practitioner")
        assert nurse == {
            "extension": [{"url": EXT_NOTE_TEXT, "valueString": "Karin Ek, sjuksköterska"}],
            "role": [
                {
                    "coding": [
                        {"system": CONTACT_KIND_SYSTEM, "code": "1", "display": "Fast vårdkontakt"}
                    ],
                    "text": "Fast vårdkontakt",
                }
            ],
            "member": {"display": "Karin Ek"},
        }
        assert careteam["managingOrganization"][0]["reference"] == one_url(bundle, "Organization")

    def test_a_contact_without_a_name_shows_its_first_line(self) -> None:
        item = make_item(part=Part.OMSORG_CONTACT, text=", hemtjänsten\nTel 0480-450 00")
        careteam = one(build_transaction(make_agreement(items=(item,))), "CareTeam")
        assert careteam["participant"][0]["member"] == {"display": ", hemtjänsten"}

    def test_ways_to_reach_care_are_telecom_and_a_note_with_the_words(self) -> None:
        item = make_item(part=Part.CONTACT_VIA, text="Telefon 0480-840 00, 1177 e-tjänster")
        careteam = one(build_transaction(make_agreement(items=(item,))), "CareTeam")
        assert careteam["telecom"] == [
            {"system": "phone", "value": "0480-840 00"},
            {"system": "other", "value": "1177 e-tjänster"},
        ]
        assert careteam["note"] == [
            {
                "extension": [
                    {"url": EXT_NOTE_KEYWORD, "valueString": "Patienten kan kontakta vården via"}
                ],
                "text": "Telefon 0480-840 00, 1177 e-tjänster",
            }
        ]


class TestGoals:
    def test_goals_are_linked_and_say_who_set_them(self) -> None:
        items = (
            make_item(part=Part.GOAL, text="Klara trappan själv."),
            make_item(part=Part.GOAL, text="Gå till affären.", patient_authored=True),
        )
        bundle = build_transaction(make_agreement(items=items))
        validate_bundle(bundle)
        staff, patients = resources_of(bundle, "Goal")
        patient_url = bundle["entry"][0]["fullUrl"]
        assert staff["meta"] == {"profile": [PROFILE_GOAL]}
        assert staff["lifecycleStatus"] == "active"
        assert staff["description"] == {"text": "Klara trappan själv."}
        assert "expressedBy" not in staff
        assert patients["expressedBy"]["reference"] == patient_url
        goal_urls = [
            e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Goal"
        ]
        assert one(bundle, "CarePlan")["goal"] == [{"reference": url} for url in goal_urls]


@pytest.mark.parametrize("part", list(Part))
def test_every_line_of_every_part_is_kept_verbatim(part: Part) -> None:
    text = "Första raden  med  mellanrum.\n\n  indragen rad\nSista: 0480-840 00"
    bundle = build_transaction(make_agreement(items=(make_item(part=part, text=text),)))
    validate_bundle(bundle)
    assert set(text.split("\n")) <= lines_in(bundle)


def one_url(bundle: dict[str, Any], resource_type: str) -> str:
    (url,) = [
        e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type
    ]
    return str(url)
