"""Search and read as clients use them (issue 14, item 6), on both databases.

``_count=0`` is the total alone; ``_summary=true|text|data|false`` and
``_elements`` subset what is shown and tag it ``SUBSETTED`` (read, vread,
search; ``fhir/subsetting.py``); unknown values are a 400 naming the parameter;
a trailing slash changes nothing and redirects nowhere.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from factories import make_bundle, make_care_team, make_careplan, make_entry, make_patient
from samplan.api.deps import Services
from samplan.fhir.subsetting import SUBSETTED_SYSTEM

SUBSETTED = {"system": SUBSETTED_SYSTEM, "code": "SUBSETTED"}


def subsetted(resource: dict[str, Any]) -> bool:
    return SUBSETTED in [{k: t.get(k) for k in ("system", "code")}
                         for t in resource.get("meta", {}).get("tag", [])]


async def a_plan(client: httpx.AsyncClient) -> tuple[str, str]:
    """A Patient and a CarePlan (with text, activities and a care team) about them."""
    patient = (await client.post("/fhir/Patient", json=make_patient())).json()["id"]
    team = (await client.post("/fhir/CareTeam", json={
        **make_care_team(patient_id=patient),
        "participant": [{"member": {"reference": f"Patient/{patient}"},
                         "period": {"start": "2026-01-01"}}]})).json()["id"]
    plan = make_careplan(patient_id=patient, care_team_id=team)
    plan["text"] = {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">'
                                                  "Överenskommelse</div>"}
    created = await client.post("/fhir/CarePlan", json=plan)
    assert created.status_code == 201, created.text
    return patient, created.json()["id"]


class TestCountZero:
    async def test_is_the_total_alone(self, client: httpx.AsyncClient) -> None:
        for _ in range(3):
            await client.post("/fhir/Patient", json=make_patient())
        bundle = (await client.get("/fhir/Patient", params={"_count": "0"})).json()
        assert bundle["total"] == 3
        assert "entry" not in bundle
        assert [link["relation"] for link in bundle["link"]] == ["self"]
        assert "_count=0" in bundle["link"][0]["url"]

    async def test_with_criteria_and_by_post(self, client: httpx.AsyncClient) -> None:
        patient, _ = await a_plan(client)
        await client.post("/fhir/CarePlan", json=make_careplan(patient_id=patient))
        found = await client.post("/fhir/CarePlan/_search", content=f"patient={patient}&_count=0",
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert found.json()["total"] == 2


class TestSummary:
    async def test_true_keeps_the_summary_elements(self, client: httpx.AsyncClient) -> None:
        patient, plan_id = await a_plan(client)
        bundle = (await client.get("/fhir/CarePlan", params={
            "patient": patient, "_summary": "true",
            "_include": "CarePlan:care-team"})).json()
        [plan] = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "match"]
        [team] = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "include"]
        assert plan["id"] == plan_id
        assert subsetted(plan)
        assert {"status", "intent", "subject", "title", "period", "category"} <= set(plan)
        assert not {"text", "activity", "careTeam"} & set(plan)  # not summary in R4
        assert subsetted(team)  # _summary shapes the included resources too
        assert "participant" not in team
        assert team["subject"] == {
            "reference": f"Patient/{patient}"}
        assert "_summary=true" in bundle["link"][0]["url"]

    async def test_text_keeps_text_id_meta_and_the_mandatory(
        self, client: httpx.AsyncClient
    ) -> None:
        _, plan_id = await a_plan(client)
        plan = (await client.get(f"/fhir/CarePlan/{plan_id}",
                                 params={"_summary": "text"})).json()
        assert set(plan) == {"resourceType", "id", "meta", "text", "status", "intent",
                             "subject"}
        assert subsetted(plan)

    async def test_data_removes_the_text(self, client: httpx.AsyncClient) -> None:
        _, plan_id = await a_plan(client)
        whole = (await client.get(f"/fhir/CarePlan/{plan_id}")).json()
        plan = (await client.get(f"/fhir/CarePlan/{plan_id}/_history/1",
                                 params={"_summary": "data"})).json()
        assert set(plan) == set(whole) - {"text"}
        assert plan["activity"] == whole["activity"]
        assert subsetted(plan)
        assert not subsetted(whole)

    async def test_false_is_the_whole_resource(
        self, client: httpx.AsyncClient, services: Services
    ) -> None:
        _, plan_id = await a_plan(client)
        stored = await services.gate.as_service().read("CarePlan", plan_id)
        for params in ({}, {"_summary": "false"}):
            response = await client.get(f"/fhir/CarePlan/{plan_id}", params=params)
            assert response.content == stored.content  # the stored bytes, untouched

    async def test_the_version_headers_stay(self, client: httpx.AsyncClient) -> None:
        _, plan_id = await a_plan(client)
        whole = await client.get(f"/fhir/CarePlan/{plan_id}")
        summary = await client.get(f"/fhir/CarePlan/{plan_id}", params={"_summary": "true"})
        assert summary.headers["ETag"] == whole.headers["ETag"]
        assert summary.headers["Last-Modified"] == whole.headers["Last-Modified"]

    @pytest.mark.parametrize("value", ["all", "TRUE", "", "count"])
    async def test_an_unknown_value_on_a_read_is_a_400(
        self, client: httpx.AsyncClient, value: str
    ) -> None:
        _, plan_id = await a_plan(client)
        response = await client.get(f"/fhir/CarePlan/{plan_id}", params={"_summary": value})
        assert response.status_code == 400
        assert response.json()["issue"][0]["expression"] == ["_summary"]

    async def test_an_unknown_value_on_a_search_is_a_400_even_when_lenient(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/fhir/CarePlan", params={"_summary": "short"})
        assert response.status_code == 400
        assert response.json()["issue"][0]["expression"] == ["_summary"]


class TestElements:
    async def test_search_keeps_the_listed_and_the_mandatory(
        self, client: httpx.AsyncClient
    ) -> None:
        patient, _ = await a_plan(client)
        bundle = (await client.get("/fhir/CarePlan", params={
            "patient": patient, "_elements": "title,id,resourceType",
            "_include": "CarePlan:care-team"})).json()
        [plan] = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "match"]
        [team] = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "include"]
        assert set(plan) == {"resourceType", "id", "meta", "title", "status", "intent",
                             "subject"}
        assert subsetted(plan)
        assert "participant" in team
        assert not subsetted(team)

    async def test_read_and_a_choice_element_by_its_base_name(
        self, client: httpx.AsyncClient
    ) -> None:
        patient = make_patient()
        patient["deceasedBoolean"] = False
        created = (await client.post("/fhir/Patient", json=patient)).json()
        shown = (await client.get(f"/fhir/Patient/{created['id']}",
                                  params={"_elements": "deceased,gender"})).json()
        assert set(shown) == {"resourceType", "id", "meta", "deceasedBoolean"}
        assert subsetted(shown)

    @pytest.mark.parametrize("value", ["shoeSize", "name.family", "-name", ""])
    async def test_an_unknown_element_is_a_400(
        self, client: httpx.AsyncClient, value: str
    ) -> None:
        search = await client.get("/fhir/Patient", params={"_elements": value})
        assert search.status_code == 400
        assert search.json()["issue"][0]["expression"] == ["_elements"]

    async def test_with_summary_is_a_400(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/fhir/Patient",
                                    params={"_elements": "name", "_summary": "true"})
        assert response.status_code == 400

    async def test_a_transaction_search_entry_is_shaped_too(
        self, client: httpx.AsyncClient
    ) -> None:
        patient, _ = await a_plan(client)
        bundle = make_bundle("batch", make_entry(
            "GET", f"CarePlan?patient={patient}&_elements=title"))
        answer = (await client.post("/fhir", json=bundle)).json()
        [plan] = [e["resource"] for e in answer["entry"][0]["resource"]["entry"]]
        assert "title" in plan
        assert "activity" not in plan
        assert subsetted(plan)


class TestTrailingSlash:
    async def test_a_transaction_posted_to_the_base_with_a_slash(
        self, client: httpx.AsyncClient
    ) -> None:
        bundle = make_bundle("transaction", make_entry("POST", "Patient", make_patient()))
        response = await client.post("/fhir/", content=orjson.dumps(bundle))
        assert response.status_code == 200, response.text
        assert response.json()["type"] == "transaction-response"

    async def test_every_path_with_a_slash(self, client: httpx.AsyncClient) -> None:
        created = await client.post("/fhir/Patient/", json=make_patient())
        assert created.status_code == 201
        patient = created.json()["id"]
        for path in (f"/fhir/Patient/{patient}/", "/fhir/Patient/", "/fhir/metadata/",
                     f"/fhir/Patient/{patient}/_history/", f"/fhir/Patient/{patient}/_history/1/"):
            response = await client.get(path)
            assert response.status_code == 200, (path, response.status_code)
        updated = await client.put(f"/fhir/Patient/{patient}/",
                                   json={**make_patient(), "id": patient})
        assert updated.status_code == 200
