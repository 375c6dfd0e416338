"""GET /fhir/metadata is a true CapabilityStatement of what the server does."""

from __future__ import annotations

import httpx
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from samplan.fhir.registry import REGISTRY


class TestCapabilityStatement:
    async def test_it_is_a_valid_r4_capability_statement(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/fhir/metadata")
        assert response.status_code == 200
        body = response.json()
        CapabilityStatement.model_validate(body)
        assert body["fhirVersion"] == "4.0.1"
        assert body["kind"] == "instance"
        assert "application/fhir+json" in body["format"]

    async def test_every_registered_type_is_listed_with_interactions_and_params(
        self, client: httpx.AsyncClient
    ) -> None:
        rest = (await client.get("/fhir/metadata")).json()["rest"][0]
        listed = {r["type"]: r for r in rest["resource"]}
        for name in ("CarePlan", "CareTeam", "Appointment", "Goal", "Patient", "Practitioner",
                     "PractitionerRole", "Organization", "RelatedPerson"):
            assert name in listed
            entry = listed[name]
            codes = {i["code"] for i in entry["interaction"]}
            assert {"read", "vread", "update", "patch", "delete", "history-instance",
                    "history-type", "create", "search-type"} <= codes
            params = {p["name"] for p in entry["searchParam"]}
            common = {"_id", "_lastUpdated", "_security", "_tag"}
            assert set(REGISTRY[name].params) | common == params
        careplan = listed["CarePlan"]
        assert "CarePlan:care-team" in careplan["searchInclude"]
        assert "Appointment:based-on" in careplan["searchRevInclude"]
        assert {i["code"] for i in rest["interaction"]} >= {"transaction", "batch"}

    async def test_metadata_is_public_json(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/fhir/metadata", headers={"Authorization": ""})
        assert response.headers["content-type"].startswith("application/fhir+json")
