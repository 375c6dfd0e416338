"""The variants as Questionnaires, and QuestionnaireResponses read as notes ($extract)."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from samplan.agreement.model import Part
from samplan.fhir.errors import BadRequest, Unprocessable
from samplan.mapping.questionnaire import extract, link_id, questionnaire, questionnaire_url
from samplan.mapping.spec import default_mappings

REGION = default_mappings().by_id["region-nested"]


def answer(keyword: str, *texts: str) -> dict[str, Any]:
    return {
        "linkId": link_id(keyword),
        "text": keyword,
        "answer": [{"valueString": text} for text in texts],
    }


def response(**fields: Any) -> dict[str, Any]:
    return {
        "resourceType": "QuestionnaireResponse",
        "identifier": {"system": "urn:cosmic", "value": "qr-1"},
        "questionnaire": questionnaire_url(REGION) + "|1",
        "status": "completed",
        "subject": {
            "identifier": {
                "system": "urn:oid:1.2.752.129.2.1.3.1",
                "value": "194501011235",
            },
            "display": "Greta Holm",
        },
        "authored": "2026-11-20T10:15:00+01:00",
        "author": {
            "identifier": {"system": "urn:oid:1.2.752.29.4.19", "value": "SE2321000073-1001"},
            "display": "Anna Berg",
        },
        "item": [
            {
                "linkId": "overenskommelse",
                "item": [
                    {"linkId": "overenskommelse.text", "answer": [{"valueString": "Gemensam."}]},
                    answer("Överenskommelsens giltighet", "2026-11-20 -- 2027-05-20"),
                    answer("Patienten ansvarar för", "Väga mig.", "Gå promenad."),
                    {
                        "linkId": link_id("Vården ansvarar för"),
                        "item": [
                            {
                                "linkId": link_id("Vården ansvarar för") + ".text",
                                "answer": [{"valueString": "Följa upp vikt."}],
                            },
                            answer("Fast vårdkontakt", "Karin Ek (SE2321000073-1002)"),
                        ],
                    },
                    answer("Hjälpmedel", "Rollator."),
                ],
            }
        ],
    } | fields


class TestQuestionnaire:
    @pytest.mark.parametrize("variant", sorted(default_mappings().by_id))
    def test_each_variant_is_a_valid_questionnaire(self, variant: str) -> None:
        mapping = default_mappings().by_id[variant]
        resource = questionnaire(mapping)
        get_fhir_model_class("Questionnaire").model_validate(resource)
        assert resource["url"] == f"https://samplan.se/fhir/Questionnaire/{variant}"
        (section,) = resource["item"]
        assert section["linkId"] == "overenskommelse"
        assert section["item"][0]["linkId"] == "overenskommelse.text"

    def test_nested_keywords_are_groups_with_their_own_text_first(self) -> None:
        (section,) = questionnaire(REGION)["item"]
        care = next(i for i in section["item"] if i["text"] == "Vården ansvarar för")
        assert care["type"] == "group"
        assert care["item"][0] == {
            "linkId": "varden-ansvarar-for.text",
            "text": "Vården ansvarar för",
            "type": "text",
        }
        assert care["item"][1]["linkId"] == "fast-lakarkontakt-i-primarvarden"


class TestExtract:
    def test_a_response_becomes_the_agreement(self) -> None:
        parsed = extract(response())
        agreement = parsed.agreement
        assert parsed.mapping.id == "region-nested"
        assert agreement.note_id == "qr-1"
        assert agreement.patient.personnummer == "194501011235"
        assert agreement.section_text == "Gemensam."
        assert agreement.author is not None
        assert agreement.author.hsa_id == "SE2321000073-1001"
        assert [(i.part, i.keyword, i.text, i.hsa_id) for i in agreement.items] == [
            (Part.VALIDITY, "Överenskommelsens giltighet", "2026-11-20 -- 2027-05-20", None),
            (Part.PATIENT_RESPONSIBILITY, "Patienten ansvarar för", "Väga mig.", None),
            (Part.PATIENT_RESPONSIBILITY, "Patienten ansvarar för", "Gå promenad.", None),
            (Part.CARE_RESPONSIBILITY, "Vården ansvarar för", "Följa upp vikt.", None),
            (Part.CARE_CONTACT, "Fast vårdkontakt", "Karin Ek (SE2321000073-1002)",
             "SE2321000073-1002"),
            (Part.OTHER, "Hjälpmedel", "Rollator.", None),
        ]  # fmt: skip
        assert [w.expression for w in parsed.warnings] == [("Överenskommelse/Hjälpmedel",)]

    def test_the_internal_keyword_is_asked_last_and_read_as_internal(self) -> None:
        (section,) = questionnaire(REGION)["item"]
        assert section["item"][-1] == {"linkId": "intern-anteckning", "text": "Intern anteckning",
                                       "type": "text", "repeats": True}
        items = [*response()["item"][0]["item"],
                 {"linkId": "intern-anteckning", "answer": [{"valueString": "Hotfull son."}]}]
        parsed = extract(response(item=[{"linkId": "overenskommelse", "item": items}]))
        assert [(i.keyword, i.text) for i in parsed.agreement.of(Part.INTERNAL)] == [
            ("Intern anteckning", "Hotfull son.")]

    def test_a_response_without_patient_identifier_is_unprocessable(self) -> None:
        with pytest.raises(Unprocessable) as raised:
            extract(response(subject={"reference": "Patient/1"}))
        assert raised.value.expression == ("QuestionnaireResponse.subject",)

    def test_an_invalid_response_is_a_bad_request_naming_the_element(self) -> None:
        with pytest.raises(BadRequest) as raised:
            extract(response(authored="yesterday"))
        assert raised.value.expression == ("QuestionnaireResponse.authored",)

    def test_a_response_without_the_section_is_unprocessable(self) -> None:
        with pytest.raises(Unprocessable, match="no agreement section"):
            extract(response(item=[answer("Aktuellt", "Mår bra.")]))
