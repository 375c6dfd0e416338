"""Our profiles at work over HTTP: served, advertised, enforced on write, and $validate."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "fhir_profiles" / "examples"
CARETEAM_PROFILE = "https://samplan.se/fhir/StructureDefinition/samplan-careteam"
GP = {"system": "urn:oid:1.2.752.129.5.1.69", "code": "2"}


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    data.pop("id", None)
    return data


def two_gps(team: dict[str, Any]) -> dict[str, Any]:
    bad = copy.deepcopy(team)
    bad["participant"].append({"role": [{"coding": [GP]}], "member": {"display": "Dr Två"}})
    return bad


class TestConformanceResourcesAreServed:
    async def test_structure_definitions_are_readable_and_searchable(
        self, client: httpx.AsyncClient
    ) -> None:
        bundle = (await client.get("/fhir/StructureDefinition", params={"url": CARETEAM_PROFILE})
                  ).json()
        assert bundle["total"] == 1
        sd = bundle["entry"][0]["resource"]
        assert sd["type"] == "CareTeam"
        read = await client.get(f"/fhir/StructureDefinition/{sd['id']}")
        assert read.status_code == 200

    async def test_code_systems_and_value_sets_are_served(self, client: httpx.AsyncClient) -> None:
        for rtype in ("CodeSystem", "ValueSet"):
            bundle = (await client.get(f"/fhir/{rtype}")).json()
            assert bundle["total"] >= 1

    async def test_conformance_resources_cannot_be_written_by_clients(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.post("/fhir/StructureDefinition",
                                     json={"resourceType": "StructureDefinition"})
        assert response.status_code == 405
        assert response.json()["resourceType"] == "OperationOutcome"

    async def test_capability_statement_lists_supported_profiles(
        self, client: httpx.AsyncClient
    ) -> None:
        rest = (await client.get("/fhir/metadata")).json()["rest"][0]
        careteam = next(r for r in rest["resource"] if r["type"] == "CareTeam")
        assert CARETEAM_PROFILE in careteam["supportedProfile"]


class TestProfilesAreEnforcedOnWrite:
    @pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.json")))
    async def test_every_profile_example_is_accepted(
        self, client: httpx.AsyncClient, name: str
    ) -> None:
        resource = example(name)
        response = await client.post(f"/fhir/{resource['resourceType']}", json=resource)
        assert response.status_code == 201, response.text

    async def test_a_second_gp_in_a_care_team_is_422_naming_the_element(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.post("/fhir/CareTeam",
                                     json=two_gps(example("CareTeam-contacts-greta.json")))
        assert response.status_code == 422
        body = response.json()
        assert body["resourceType"] == "OperationOutcome"
        assert any(i["expression"][0].startswith("CareTeam") for i in body["issue"])
        count = (await client.get("/fhir/CareTeam", params={"_summary": "count"})).json()
        assert count["total"] == 0

    async def test_without_a_profile_claim_the_rule_is_not_applied(
        self, client: httpx.AsyncClient
    ) -> None:
        team = two_gps(example("CareTeam-contacts-greta.json"))
        team.pop("meta")
        response = await client.post("/fhir/CareTeam", json=team)
        assert response.status_code == 201


class TestValidateOperation:
    async def test_valid_resource_gives_an_informational_outcome(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.post("/fhir/CareTeam/$validate",
                                     json=example("CareTeam-contacts-greta.json"))
        assert response.status_code == 200
        assert response.json()["issue"] == [
            {"severity": "information", "code": "informational",
             "diagnostics": "No issues found."}
        ]

    async def test_invalid_resource_lists_its_issues_and_stores_nothing(
        self, client: httpx.AsyncClient
    ) -> None:
        body = {"resourceType": "Parameters", "parameter": [
            {"name": "resource", "resource": two_gps(example("CareTeam-contacts-greta.json"))},
        ]}
        response = await client.post("/fhir/CareTeam/$validate", json=body)
        assert response.status_code == 200
        issues = response.json()["issue"]
        assert any(i["severity"] == "error" for i in issues)
        count = (await client.get("/fhir/CareTeam", params={"_summary": "count"})).json()
        assert count["total"] == 0

    async def test_profile_parameter_validates_against_that_profile(
        self, client: httpx.AsyncClient
    ) -> None:
        team = example("CareTeam-contacts-greta.json")
        team.pop("meta")
        del team["subject"]
        response = await client.post("/fhir/CareTeam/$validate",
                                     params={"profile": CARETEAM_PROFILE}, json=team)
        issues = response.json()["issue"]
        assert any("CareTeam.subject" in i.get("expression", [""])[0] for i in issues)
