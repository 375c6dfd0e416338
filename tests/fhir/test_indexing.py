"""Search index rows extracted from a resource at write time (samplan.fhir.indexing)."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import pytest

from factories import (
    CATEGORY_SYSTEM,
    HSA_RIVTA_SYSTEM,
    HSA_SYSTEM,
    PNR_OID_SYSTEM,
    PNR_SYSTEM,
    make_appointment,
    make_care_team,
    make_careplan,
    make_organization,
    make_patient,
    make_practitioner,
)
from samplan.fhir.dates import MAX_US, MIN_US, parse_range
from samplan.fhir.indexing import (
    IndexRows,
    exact_param,
    extract,
    normalise_string,
    parse_reference,
    values_at,
)
from samplan.fhir.registry import REGISTRY

TZ = ZoneInfo("Europe/Stockholm")
BASE = "http://samplan.test/fhir"


def rows_of(resource: dict[str, Any]) -> IndexRows:
    return extract(resource, REGISTRY[resource["resourceType"]], TZ, BASE)


def day(value: str) -> tuple[int, int]:
    span = parse_range(value, TZ)
    assert span is not None
    return span


class TestNormaliseString:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [("Holm", "holm"), ("ÖBERG", "oberg"), ("Åsa", "asa"), ("Lindström", "lindstrom"),
         ("  Karin Ek  ", "karin ek"), ("Straße", "strasse"), ("Ｇｒｅｔａ", "greta"),
         ("Zoë", "zoe"), ("", "")],
    )
    def test_is_case_and_accent_insensitive(self, text: str, expected: str) -> None:
        assert normalise_string(text) == expected


class TestParseReference:
    @pytest.mark.parametrize(
        ("reference", "expected"),
        [
            ("Patient/p1", ("Patient", "p1")),
            ("Patient/p1/_history/3", ("Patient", "p1")),
            (f"{BASE}/CarePlan/c1", ("CarePlan", "c1")),
            (f"{BASE}/CarePlan/c1/_history/2", ("CarePlan", "c1")),
            ("http://elsewhere.example/fhir/Patient/p1", None),
            ("urn:uuid:5e3c0c42-1a7b-4d8b-9a8e-000000000001", None),
            ("urn:oid:1.2.3", None),
            ("#contained", None),
            ("Patient", None),
            ("Patient/", None),
            ("/p1", None),
            ("Patient/p1/extra", None),
            ("Patient?identifier=x", None),
        ],
    )
    def test_reads_type_and_id_of_references_to_this_server(
        self, reference: str, expected: tuple[str, str] | None
    ) -> None:
        assert parse_reference(reference, BASE) == expected

    def test_without_a_base_an_absolute_reference_is_foreign(self) -> None:
        assert parse_reference(f"{BASE}/Patient/p1") is None


class TestValuesAt:
    def test_lists_are_flattened_at_every_step(self) -> None:
        resource = {"participant": [{"member": {"reference": "a"}}, {"member": {"display": "x"}},
                                    {"role": []}]}
        assert list(values_at(resource, "participant.member")) == [
            {"reference": "a"}, {"display": "x"}]

    def test_a_missing_path_gives_nothing(self) -> None:
        assert list(values_at({"status": "active"}, "period.start")) == []
        assert list(values_at({"period": "not an object"}, "period.start")) == []


class TestCarePlan:
    def test_every_parameter_is_indexed(self) -> None:
        plan = make_careplan(patient_id="p1", care_team_id="t1", goal_id="g1")
        plan["author"] = {"reference": "Practitioner/pr1"}
        plan["identifier"] = [{"system": "http://example.org/plans", "value": "A-1"}]
        rows = rows_of(plan)
        assert sorted(rows.tokens, key=str) == sorted([
            ("status", None, "active"),
            ("category", CATEGORY_SYSTEM, "dokumenterad-overenskommelse"),
            ("intent", None, "plan"),
            ("identifier", "http://example.org/plans", "A-1"),
        ], key=str)
        assert sorted(rows.references) == sorted([
            ("patient", "Patient", "p1"),
            ("subject", "Patient", "p1"),
            ("care-team", "CareTeam", "t1"),
            ("goal", "Goal", "g1"),
            ("author", "Practitioner", "pr1"),
        ])
        assert rows.dates == [("date", day("2026-11-20")[0], day("2027-05-20")[1])]
        assert rows.strings == []

    def test_an_open_period_runs_to_the_end_of_time(self) -> None:
        assert rows_of(make_careplan(patient_id="p1", end=None)).dates == [
            ("date", day("2026-11-20")[0], MAX_US)]
        plan = make_careplan(patient_id="p1")
        plan["period"] = {"end": "2027-05-20"}
        assert rows_of(plan).dates == [("date", MIN_US, day("2027-05-20")[1])]

    def test_a_subject_of_another_type_is_only_a_subject(self) -> None:
        plan = make_careplan(patient_id="p1")
        plan["subject"] = {"reference": "Group/g1"}
        assert rows_of(plan).references == [("subject", "Group", "g1")]

    def test_references_outside_this_server_are_not_indexed(self) -> None:
        plan = make_careplan(patient_id="p1")
        plan["subject"] = {"reference": "http://elsewhere.example/fhir/Patient/p1"}
        plan["careTeam"] = [{"reference": "#team"}, {"display": "Teamet"},
                            {"reference": f"{BASE}/CareTeam/t2"}]
        assert rows_of(plan).references == [("care-team", "CareTeam", "t2")]

    def test_a_codeable_concept_without_codes_gives_no_token(self) -> None:
        plan = make_careplan(patient_id="p1")
        plan["category"] = [{"text": "Överenskommelse"}, {"coding": [{"system": "s"}]}]
        assert ("category", None, "Överenskommelse") not in rows_of(plan).tokens
        assert [t for t in rows_of(plan).tokens if t[0] == "category"] == []


class TestPatient:
    def test_identifier_name_and_birthdate(self) -> None:
        rows = rows_of(make_patient(pnr="194501011235", family="Öberg", given="Åsa"))
        assert rows.tokens == [("identifier", PNR_SYSTEM, "194501011235")]
        assert sorted(rows.strings) == sorted([
            ("name", "oberg"), (exact_param("name"), "Öberg"),
            ("name", "asa"), (exact_param("name"), "Åsa"),
            ("family", "oberg"), (exact_param("family"), "Öberg"),
            ("given", "asa"), (exact_param("given"), "Åsa"),
        ])
        assert rows.dates == [("birthdate", *day("1945-01-01"))]

    def test_personnummer_in_any_accepted_form_is_indexed_as_twelve_digits(self) -> None:
        patient = make_patient(pnr="450101-1235")
        patient["identifier"][0]["system"] = PNR_OID_SYSTEM
        assert rows_of(patient).tokens == [("identifier", PNR_SYSTEM, "194501011235")]

    def test_an_invalid_personnummer_is_indexed_as_sent(self) -> None:
        patient = make_patient(pnr="450101-1234")
        assert rows_of(patient).tokens == [("identifier", PNR_SYSTEM, "450101-1234")]

    def test_gender_is_a_token_and_name_text_a_string(self) -> None:
        patient = make_patient()
        patient["gender"] = "female"
        patient["name"][0]["text"] = "Greta Holm"
        rows = rows_of(patient)
        assert ("gender", None, "female") in rows.tokens
        assert ("name", "greta holm") in rows.strings

    def test_an_identifier_without_a_value_gives_no_token(self) -> None:
        patient = make_patient()
        patient["identifier"] = [{"system": PNR_SYSTEM}]
        assert rows_of(patient).tokens == []

    def test_long_strings_are_cut_to_the_column(self) -> None:
        rows = rows_of(make_patient(family="x" * 400))
        assert {len(v) for p, v in rows.strings if p.startswith("family")} == {255}


class TestStaffAndOrganizations:
    @pytest.mark.parametrize("system", [HSA_SYSTEM, HSA_RIVTA_SYSTEM,
                                        "1.2.752.129.2.1.4.1"])
    def test_hsa_ids_are_indexed_under_one_system(self, system: str) -> None:
        practitioner = make_practitioner()
        practitioner["identifier"][0]["system"] = system
        assert rows_of(practitioner).tokens == [("identifier", HSA_SYSTEM, "SE2321000073-1001")]

    def test_organization_name_and_alias_are_both_name(self) -> None:
        rows = rows_of(make_organization(alias="VC Ekbacken"))
        assert [v for p, v in rows.strings if p == "name"] == ["vardcentralen ekbacken",
                                                               "vc ekbacken"]


class TestCareTeamAndAppointment:
    def test_care_team_participants(self) -> None:
        rows = rows_of(make_care_team(patient_id="p1", practitioner_id="pr1"))
        assert sorted(rows.references) == [
            ("participant", "Practitioner", "pr1"),
            ("patient", "Patient", "p1"),
            ("subject", "Patient", "p1"),
        ]
        assert rows.tokens == [("status", None, "active")]

    def test_appointment_actors_start_and_plan(self) -> None:
        appointment = make_appointment(patient_id="p1", careplan_id="c1")
        appointment["participant"].append({"actor": {"reference": "Practitioner/pr1"},
                                           "status": "accepted"})
        rows = rows_of(appointment)
        assert sorted(rows.references) == [
            ("actor", "Patient", "p1"),
            ("actor", "Practitioner", "pr1"),
            ("based-on", "CarePlan", "c1"),
            ("patient", "Patient", "p1"),
        ]
        assert rows.dates == [("date", *day("2027-01-12T09:30:00+01:00"))]
        assert rows.tokens == [("status", None, "booked")]

    def test_an_unreadable_date_is_not_indexed(self) -> None:
        appointment = make_appointment(patient_id="p1", start="soon")
        assert rows_of(appointment).dates == []
