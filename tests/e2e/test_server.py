"""A real `samplan serve` (uvicorn) driven by real clients: httpx and the fhirpy FHIR client."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fhirpy import AsyncFHIRClient

from factories import PNR_SYSTEM, make_careplan, make_patient
from support.server import running_server

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("services")]


@pytest.fixture(scope="module")
def server(database_url: str) -> Iterator[str]:
    with running_server(database_url) as base:
        yield base


class TestMetadata:
    def test_capability_statement_is_served_over_http(self, server: str) -> None:
        response = httpx.get(f"{server}/metadata")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/fhir+json")
        body = response.json()
        assert body["resourceType"] == "CapabilityStatement"
        assert body["fhirVersion"] == "4.0.1"


class TestWithFhirpy:
    async def test_an_integrating_system_creates_reads_searches_and_updates_a_plan(
        self, server: str
    ) -> None:
        client = AsyncFHIRClient(server, extra_headers={"Content-Type": "application/fhir+json"})
        pnr = "191212121212"
        patient = client.resource("Patient", **{k: v for k, v in make_patient(pnr=pnr).items()
                                                if k != "resourceType"})
        await patient.save()
        assert patient.id

        plan_body = make_careplan(patient_id=patient.id)
        plan = client.resource("CarePlan", **{k: v for k, v in plan_body.items()
                                              if k != "resourceType"})
        await plan.save()
        assert plan["meta"]["versionId"] == "1"

        found = await client.resources("Patient").search(
            identifier=f"{PNR_SYSTEM}|{pnr}").fetch_all()
        assert [p.id for p in found] == [patient.id]

        plans = await client.resources("CarePlan").search(patient=patient.id,
                                                          status="active").fetch_all()
        assert [p.id for p in plans] == [plan.id]

        plan["status"] = "completed"
        await plan.save()
        fetched = await client.reference("CarePlan", plan.id).to_resource()
        assert fetched["status"] == "completed"
        assert fetched["meta"]["versionId"] == "2"

        await plan.delete()
        with httpx.Client() as http:
            assert http.get(f"{server}/CarePlan/{plan.id}").status_code == 410


class TestHttpOverTheWire:
    def test_errors_over_the_wire_are_operation_outcomes(self, server: str) -> None:
        with httpx.Client() as http:
            response = http.post(f"{server}/Patient", content=b"{not json",
                                 headers={"Content-Type": "application/fhir+json"})
            assert response.status_code == 400
            assert response.json()["resourceType"] == "OperationOutcome"
            response = http.get(f"{server}/NoSuchType/1")
            assert response.status_code == 404
            assert response.json()["resourceType"] == "OperationOutcome"

    def test_racing_writers_over_http_one_wins(self, server: str) -> None:
        import concurrent.futures

        with httpx.Client() as http:
            rid = http.post(f"{server}/Patient", json=make_patient(pnr="193803152341"),
                            headers={"Content-Type": "application/fhir+json"}).json()["id"]

            def put(n: int) -> int:
                with httpx.Client() as c:
                    return c.put(f"{server}/Patient/{rid}",
                                 json=make_patient(id=rid, pnr="193803152341", family=f"F{n}"),
                                 headers={"Content-Type": "application/fhir+json",
                                          "If-Match": 'W/"1"'}).status_code

            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                statuses = list(pool.map(put, range(8)))
        assert sorted(statuses) == [200] + [412] * 7
