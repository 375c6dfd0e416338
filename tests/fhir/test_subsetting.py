"""``_summary`` and ``_elements`` on one resource (``fhir/subsetting.py``), and where their
definitions come from: the fhir.resources R4B models, checked against R4 here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fhirpathpy
import orjson
import pytest

from samplan.fhir.errors import BadRequest
from samplan.fhir.registry import REGISTRY
from samplan.fhir.subsetting import (
    SUBSETTED_TAG,
    Subsetting,
    read_subsetting,
    resource_definition,
)

R4_PATHS = Path(fhirpathpy.__file__).parent / "models" / "r4" / "path2Type.json"


class TestTheDefinitions:
    @pytest.mark.parametrize("resource_type", sorted(REGISTRY))
    def test_the_r4b_models_have_the_elements_of_r4(self, resource_type: str) -> None:
        """R4B left the resources we serve as R4 (4.0.1) had them: the same JSON keys as
        fhirpathpy's R4 model lists."""
        paths = json.loads(R4_PATHS.read_text())
        r4 = {p.split(".")[1] for p in paths if p.startswith(f"{resource_type}.")}
        definition = resource_definition(resource_type)
        assert definition is not None
        assert set(definition.base) == r4

    def test_r4s_summary_elements_of_patient(self) -> None:
        definition = resource_definition("Patient")
        assert definition is not None
        assert definition.summary == {
            "id", "meta", "implicitRules", "identifier", "active", "name", "telecom", "gender",
            "birthDate", "deceased", "address", "managingOrganization", "link"}

    def test_r4s_summary_and_mandatory_elements_of_careplan(self) -> None:
        definition = resource_definition("CarePlan")
        assert definition is not None
        assert definition.summary == {
            "id", "meta", "implicitRules", "identifier", "instantiatesCanonical",
            "instantiatesUri", "basedOn", "replaces", "partOf", "status", "intent", "category",
            "title", "description", "subject", "encounter", "period", "created", "author",
            "addresses"}
        assert definition.mandatory == {"status", "intent", "subject"}
        assert set(definition.backbone) == {"activity"}

    def test_mandatory_elements_of_goal(self) -> None:
        definition = resource_definition("Goal")
        assert definition is not None
        assert definition.mandatory == {"lifecycleStatus", "description", "subject"}


CONSENT: dict[str, Any] = {
    "resourceType": "Consent", "id": "c1",
    "meta": {"versionId": "2", "tag": [{"system": "urn:x", "code": "y"}]},
    "text": {"status": "generated", "div": "<div>x</div>"},
    "status": "active",
    "scope": {"text": "privacy"},
    "category": [{"text": "spärr"}],
    "patient": {"reference": "Patient/p1"},
    "policy": [{"uri": "https://lagen.nu/2008:355"}],
    "provision": {"type": "deny", "period": {"start": "2026-01-01"},
                  "actor": [{"role": {"text": "x"}, "reference": {"reference": "Organization/o"}}]},
}


def shaped(shape: Subsetting, body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = orjson.loads(shape.apply(orjson.dumps(body)))
    return result


class TestSummary:
    def test_true_follows_the_backbone_elements(self) -> None:
        consent = shaped(Subsetting(summary="true"), CONSENT)
        assert "text" not in consent
        assert "policy" not in consent
        assert consent["provision"] == {"type": "deny", "period": {"start": "2026-01-01"}}
        assert consent["scope"] == {"text": "privacy"}  # a data type is kept whole

    def test_the_tag_is_added_once_and_other_tags_stay(self) -> None:
        once = shaped(Subsetting(summary="data"), CONSENT)
        twice = shaped(Subsetting(summary="data"), once)
        assert twice["meta"]["tag"] == [{"system": "urn:x", "code": "y"}, SUBSETTED_TAG]
        assert twice["meta"]["versionId"] == "2"
        assert list(twice)[:3] == ["resourceType", "id", "meta"]

    def test_text(self) -> None:
        assert set(shaped(Subsetting(summary="text"), CONSENT)) == {
            "resourceType", "id", "meta", "text", "status", "scope", "category"}

    def test_a_primitives_extensions_go_with_it(self) -> None:
        body = {"resourceType": "Patient", "id": "p", "meta": {},
                "birthDate": "1945-01-01", "_birthDate": {"extension": []},
                "maritalStatus": {"text": "gift"}}
        assert set(shaped(Subsetting(summary="true"), body)) == {
            "resourceType", "id", "meta", "birthDate", "_birthDate"}

    def test_meta_is_made_after_the_id_when_missing(self) -> None:
        body = shaped(Subsetting(summary="data"), {"resourceType": "Patient", "id": "p",
                                                   "gender": "female"})
        assert list(body) == ["resourceType", "id", "meta", "gender"]


class TestReadParameters:
    def test_none_asked(self) -> None:
        assert read_subsetting("Patient", [("_format", "json")]) is None
        assert read_subsetting("Patient", [("_summary", "false")]) is None

    @pytest.mark.parametrize(("params", "name"), [
        ([("_summary", "count")], "_summary"),
        ([("_summary", "true"), ("_summary", "true")], "_summary"),
        ([("_elements", "name"), ("_elements", "gender")], "_elements"),
        ([("_elements", "contact.name")], "_elements"),
    ])
    def test_refused(self, params: list[tuple[str, str]], name: str) -> None:
        with pytest.raises(BadRequest) as caught:
            read_subsetting("Patient", params)
        assert caught.value.expression == [name]
