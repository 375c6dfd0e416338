"""Importing a keyword note: the shared examples, the parsing rules, and bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from samplan.agreement.fhir_build import build_transaction
from samplan.agreement.model import Author, CareUnit, Part
from samplan.fhir.errors import BadRequest, Issue, Unprocessable
from samplan.mapping.importer import parse_note

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "notes"

HEADER = "Patient: 19450101-1235 Greta Holm\nSignerad: 2026-11-20 10:15 av Anna Berg\n\n"


def text(body: str, **kwargs: Any) -> Any:
    return parse_note((HEADER + body).encode(), "text/plain", **kwargs)


def json_note(keywords: list[dict[str, Any]], **fields: Any) -> bytes:
    note = {"noteId": "n1", "patient": {"personnummer": "19450101-1235"}, "keywords": keywords}
    return json.dumps(note | fields).encode()


def warning(code: str, diagnostics: str, expression: str) -> Issue:
    return Issue(code=code, diagnostics=diagnostics, expression=(expression,), severity="warning")


class TestSharedExamples:
    def test_the_region_json_note(self) -> None:
        parsed = parse_note((EXAMPLES / "region-nested.json").read_bytes(), "application/json")
        agreement = parsed.agreement
        assert parsed.shape == "json"
        assert parsed.mapping.id == "region-nested"
        assert parsed.warnings == ()
        assert agreement.note_id == "cosmic-note-100231"
        assert agreement.patient.personnummer == "194501011235"
        assert agreement.author == Author(name="Anna Berg", title="Distriktsläkare",
                                          hsa_id="SE2321000073-1001")  # fmt: skip
        assert agreement.care_unit == CareUnit(name="Hälsocentralen Kvarnholmen",
                                               hsa_id="SE2321000073-2001")  # fmt: skip
        assert [(i.part, i.keyword) for i in agreement.items] == [
            (Part.VALIDITY, "Överenskommelsens giltighet"),
            (Part.PATIENT_RESPONSIBILITY, "Patienten ansvarar för"),
            (Part.CARE_RESPONSIBILITY, "Vården ansvarar för"),
            (Part.GP_CONTACT, "Fast läkarkontakt i primärvården"),
            (Part.CARE_CONTACT, "Fast vårdkontakt"),
            (Part.OMSORG_CONTACT, "Fast omsorgskontakt"),
            (Part.CONTACT_VIA, "Patienten kan kontakta vården via"),
            (Part.NEXT_STEP, "Fortsatt planering"),
            (Part.COORDINATED_PLAN, "Sammanhållen planering"),
        ]
        assert agreement.of(Part.GP_CONTACT)[0].hsa_id == "SE2321000073-1001"
        # Keywords outside the agreement section are not kept.
        assert all("Hjärtsvikt" not in i.text and "effekt" not in i.text for i in agreement.items)
        careplan = resource(build_transaction(agreement), "CarePlan")
        assert careplan["period"]["start"] == "2026-11-20"
        assert careplan["period"]["end"] == "2027-05-20"

    def test_the_kalmar_printed_note(self) -> None:
        parsed = parse_note((EXAMPLES / "kalmar-flat.txt").read_bytes(), "text/plain")
        agreement = parsed.agreement
        assert parsed.shape == "text"
        assert parsed.mapping.id == "kalmar-flat"
        assert parsed.warnings == ()
        assert agreement.note_id is not None
        assert agreement.note_id.startswith("note-sha256-")
        assert agreement.patient.personnummer == "193803152341"
        assert agreement.signed_at_local is not None
        assert agreement.signed_at_local.isoformat() == "2026-11-18T14:02:00+01:00"
        assert [i.part for i in agreement.items] == [
            Part.PATIENT_RESPONSIBILITY, Part.ON_DETERIORATION, Part.CARE_RESPONSIBILITY,
            Part.GP_CONTACT, Part.CARE_CONTACT, Part.CONTACT_VIA, Part.NEXT_STEP,
            Part.FOLLOW_UP_TIME,
        ]  # fmt: skip
        bundle = build_transaction(agreement)
        appointment = resource(bundle, "Appointment")
        assert appointment["start"] == "2027-01-12T09:30:00+01:00"
        assert appointment["participant"][1]["actor"] == {"display": "Hälsocentralen Lindsdal"}
        careteam = resource(bundle, "CareTeam")
        assert careteam["telecom"] == [
            {"system": "phone", "value": "0480-840 00"},
            {"system": "other", "value": "1177 e-tjänster"},
        ]
        assert [p["member"] for p in careteam["participant"]] == [
            {"display": "Per Ström"},
            {"display": "Karin Ek"},
        ]

    def test_importing_the_same_note_twice_gives_the_same_bundle(self) -> None:
        body = (EXAMPLES / "kalmar-flat.txt").read_bytes()
        first = build_transaction(parse_note(body, "text/plain").agreement)
        again = build_transaction(parse_note(body.replace(b"\n", b"\r\n"), "text/plain").agreement)
        assert first == again


class TestVariants:
    def test_detection_picks_the_variant_that_knows_most_keywords(self) -> None:
        kalmar = text(
            "Överenskommelse\nVid försämring kan patienten\nRing.\nFortsatt planering\nX\n"
        )
        assert kalmar.mapping.id == "kalmar-flat"
        region = text("Överenskommelse\nÖverenskommelsens giltighet\ntillsvidare\n")
        assert region.mapping.id == "region-nested"

    def test_on_a_tie_the_higher_priority_wins(self) -> None:
        assert text("Överenskommelse\nFortsatt planering\nX\n").mapping.id == "region-nested"

    def test_an_explicit_variant_is_used(self) -> None:
        parsed = text("Överenskommelse\nFortsatt planering\nX\n", variant="kalmar-flat")
        assert parsed.mapping.id == "kalmar-flat"
        assert parsed.agreement.variant == "kalmar-flat"

    def test_the_json_template_variant_field_is_a_hint(self) -> None:
        section = {"keyword": "Överenskommelse", "children": [{"keyword": "Mål", "text": "X"}]}
        body = json_note([section], templateVariant="kalmar-flat")
        assert parse_note(body, "application/json").mapping.id == "kalmar-flat"

    def test_an_unknown_variant_is_a_bad_request(self) -> None:
        with pytest.raises(BadRequest) as raised:
            text("Överenskommelse\n", variant="gotland")
        assert raised.value.expression == ("variant",)


class TestParsingRules:
    @pytest.mark.parametrize(
        ("written", "start", "end"),
        [
            ("2026-11-20 -- 2027-05-20", "2026-11-20", "2027-05-20"),
            ("2026-11-20 – 2027-05-20", "2026-11-20", "2027-05-20"),
            ("2026-11-20 till 2027-05-20", "2026-11-20", "2027-05-20"),
            ("2027-05-20", "2026-11-20", "2027-05-20"),
            ("tillsvidare", "2026-11-20", None),
            ("6 månader", "2026-11-20", "2027-05-20"),
            ("3 mån", "2026-11-20", "2027-02-20"),
            ("1 år", "2026-11-20", "2027-11-20"),
            ("12 veckor", "2026-11-20", "2027-02-12"),
        ],
    )
    def test_validity_becomes_the_plan_period(
        self, written: str, start: str, end: str | None
    ) -> None:
        parsed = text(f"Överenskommelse\nÖverenskommelsens giltighet\n{written}\n")
        assert parsed.warnings == ()
        period = resource(build_transaction(parsed.agreement), "CarePlan")["period"]
        assert (period.get("start"), period.get("end")) == (start, end)

    def test_an_unreadable_date_is_kept_as_text_with_a_warning(self) -> None:
        parsed = text("Överenskommelse\nÖverenskommelsens giltighet\ntill sommaren\n")
        assert parsed.warnings == (
            warning(
                "value",
                "validity not read, kept as text: 'till sommaren' is not a validity: write a "
                "range (2026-11-20 -- 2027-05-20), a date, 'tillsvidare' or a duration (6 månader)",
                "Överenskommelse/Överenskommelsens giltighet",
            ),
        )
        assert parsed.agreement.items[0].text == "till sommaren"

    def test_an_unreadable_follow_up_time_is_a_warning_and_books_nothing(self) -> None:
        parsed = text("Överenskommelse\nTid för uppföljning\n2027-13-40 09:30, HC\nRing mig.\n")
        assert parsed.warnings == (
            warning(
                "value",
                "time not read, no appointment booked: line 1: '2027-13-40' is not a calendar date",
                "Överenskommelse/Tid för uppföljning",
            ),
        )
        assert resources(build_transaction(parsed.agreement), "Appointment") == []

    def test_follow_up_times_are_swedish_local_time(self) -> None:
        parsed = text(
            "Överenskommelse\nTid för uppföljning\n2027-01-12 09:30, Hälsocentralen Lindsdal\n"
            "2027-07-01 kl. 13.00 på vårdcentralen\n"
        )
        winter, summer = resources(build_transaction(parsed.agreement), "Appointment")
        assert winter["start"] == "2027-01-12T09:30:00+01:00"
        assert summer["start"] == "2027-07-01T13:00:00+02:00"
        assert summer["participant"][1]["actor"] == {"display": "vårdcentralen"}

    def test_hsa_ids_in_a_contact_text_identify_the_practitioner(self) -> None:
        parsed = text("Överenskommelse\nFast vårdkontakt\nKarin Ek (SE2321000073-1002), ssk\n")
        (contact,) = parsed.agreement.items
        assert contact.hsa_id == "SE2321000073-1002"
        careteam = resource(build_transaction(parsed.agreement), "CareTeam")
        assert careteam["participant"][0]["member"]["identifier"]["value"] == "SE2321000073-1002"
        assert careteam["participant"][0]["member"]["display"] == "Karin Ek"

    def test_people_named_only_in_text_are_displays(self) -> None:
        parsed = text("Överenskommelse\nFast omsorgskontakt\nLena Nord, hemtjänsten\n")
        careteam = resource(build_transaction(parsed.agreement), "CareTeam")
        assert careteam["participant"][0]["member"] == {"display": "Lena Nord"}

    def test_an_invalid_hsa_id_is_a_warning_and_not_used(self) -> None:
        body = json_note([{"keyword": "Överenskommelse", "children": [
            {"keyword": "Fast vårdkontakt", "text": "Karin Ek", "hsaId": "12345"}]}])  # fmt: skip
        parsed = parse_note(body, "application/json")
        assert parsed.agreement.items[0].hsa_id is None
        assert parsed.warnings == (
            warning(
                "value",
                "'12345' is not an HSA-id; the contact is kept by name",
                "Överenskommelse/Fast vårdkontakt",
            ),
        )

    def test_unknown_keywords_inside_the_section_are_kept_with_a_warning(self) -> None:
        body = json_note([{"keyword": "Överenskommelse", "children": [
            {"keyword": "Vården ansvarar för", "children": [
                {"keyword": "Hjälpmedel", "text": "Rollator beställd."}]}]}])  # fmt: skip
        parsed = parse_note(body, "application/json")
        assert parsed.warnings == (
            warning(
                "not-supported",
                "keyword 'Hjälpmedel' is not in template variant 'region-nested'; kept as an "
                "'other keyword' activity",
                "Överenskommelse/Vården ansvarar för/Hjälpmedel",
            ),
        )
        careplan = resource(build_transaction(parsed.agreement), "CarePlan")
        detail = careplan["activity"][0]["detail"]
        assert detail["code"]["coding"][0]["code"] == "other-keyword"
        assert (detail["code"]["text"], detail["description"]) == (
            "Hjälpmedel",
            "Rollator beställd.",
        )

    def test_a_keyword_of_another_variant_in_a_printout_is_unknown(self) -> None:
        parsed = text(
            "Överenskommelse\nVid försämring kan patienten\nRing.\nPatienten ansvarar för\nGå.\n"
            "Vid försämring\nRing igen.\nFast omsorgskontakt\nLena\n"
        )
        assert parsed.mapping.id == "kalmar-flat"
        assert [(i.part, i.keyword) for i in parsed.agreement.items] == [
            (Part.PATIENT_RESPONSIBILITY, "Patienten ansvarar för"),
            (Part.ON_DETERIORATION, "Vid försämring kan patienten"),
            (Part.ON_DETERIORATION, "Vid försämring"),
            (Part.OTHER, "Fast omsorgskontakt"),
        ]
        assert [w.code for w in parsed.warnings] == ["not-supported"]

    def test_keywords_outside_the_section_are_ignored(self) -> None:
        parsed = text("Aktuellt\nMår bra.\nÖverenskommelse\nMål\nGå.\nBedömning\nStabil.\n")
        assert [(i.part, i.text) for i in parsed.agreement.items] == [(Part.GOAL, "Gå.")]
        assert parsed.warnings == ()

    def test_empty_keywords_are_not_kept(self) -> None:
        parsed = text("Överenskommelse\nVården ansvarar för\nFast vårdkontakt\nKarin\nMål\n")
        assert [i.part for i in parsed.agreement.items] == [Part.CARE_CONTACT]

    def test_a_second_validity_is_kept_as_another_keyword(self) -> None:
        parsed = text("Överenskommelse\nGiltighet\ntillsvidare\nGiltighetstid\n6 mån\n")
        assert [i.part for i in parsed.agreement.items] == [Part.VALIDITY, Part.OTHER]
        assert [w.code for w in parsed.warnings] == ["business-rule"]

    def test_a_second_gp_is_kept_as_another_keyword(self) -> None:
        parsed = text(
            "Överenskommelse\nFast läkarkontakt\nAnna Berg\nFast läkarkontakt i PV\nPer Ström\n"
        )
        assert [(i.part, i.text) for i in parsed.agreement.items] == [
            (Part.GP_CONTACT, "Anna Berg"),
            (Part.OTHER, "Per Ström"),
        ]
        assert parsed.warnings == (
            warning(
                "business-rule",
                "a second 'Fast läkarkontakt i PV': a patient has at most one fast "
                "läkarkontakt, so it is kept as an 'other keyword' activity",
                "Överenskommelse/Fast läkarkontakt i PV",
            ),
        )

    def test_text_under_the_section_keyword_is_the_plan_description(self) -> None:
        parsed = text("Överenskommelse\nGjord med dottern.\nMål\nGå.\n")
        assert parsed.agreement.section_text == "Gjord med dottern."
        assert resource(build_transaction(parsed.agreement), "CarePlan")["description"] == (
            "Gjord med dottern."
        )

    def test_a_samordningsnummer_patient(self) -> None:
        parsed = parse_note(b"Patient: 19450161-1232\nOverenskommelse\nMal\nX\n", "text/plain")
        assert parsed.agreement.patient.samordning is True
        assert parsed.agreement.patient.personnummer == "194501611232"


class TestBadInput:
    def test_a_note_without_agreement_section_is_unprocessable(self) -> None:
        with pytest.raises(Unprocessable) as raised:
            text("Aktuellt\nMår bra.\n")
        assert raised.value.status == 422
        assert raised.value.outcome() == {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "error",
                    "code": "invalid",
                    "diagnostics": "the note has no agreement section (keyword 'Överenskommelse')",
                    "expression": ["keywords"],
                }
            ],
        }

    @pytest.mark.parametrize(
        ("patient", "expression"),
        [
            ({"personnummer": "19450101-1234"}, "patient.personnummer"),
            ({"personnummer": "19451301-1235"}, "patient.personnummer"),
            ({"personnummer": "1945"}, "patient.personnummer"),
            ({"samordningsnummer": "19450161-1233"}, "patient.samordningsnummer"),
        ],
    )
    def test_an_invalid_personnummer_is_unprocessable(
        self, patient: dict[str, str], expression: str
    ) -> None:
        body = json_note([{"keyword": "Överenskommelse"}], patient=patient)
        with pytest.raises(Unprocessable) as raised:
            parse_note(body, "application/json")
        assert raised.value.status == 422
        assert raised.value.expression == (expression,)

    def test_a_printout_without_patient_is_unprocessable(self) -> None:
        with pytest.raises(Unprocessable, match="names no patient"):
            parse_note("Överenskommelse\nMål\nX\n".encode(), "text/plain")

    def test_undecodable_bytes_are_a_bad_request(self) -> None:
        with pytest.raises(BadRequest) as raised:
            parse_note((HEADER + "Överenskommelse\n").encode("utf-16"), "text/plain")
        assert raised.value.status == 400

    def test_json_of_the_wrong_shape_is_a_bad_request_with_the_path(self) -> None:
        with pytest.raises(BadRequest) as raised:
            parse_note(
                json_note([{"keyword": "Överenskommelse", "children": "x"}]), "application/json"
            )
        assert raised.value.expression == ("$.keywords[0].children",)


def resources(bundle: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type
    ]


def resource(bundle: dict[str, Any], resource_type: str) -> dict[str, Any]:
    (found,) = resources(bundle, resource_type)
    return found
