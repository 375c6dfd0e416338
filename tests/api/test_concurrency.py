"""Concurrent writers: nothing silently overwritten, nothing duplicated.

The requests run truly in parallel against the database (separate pooled
connections on PostgreSQL, the write queue on SQLite).
"""

from __future__ import annotations

import asyncio

import httpx

from factories import PNR_SYSTEM, make_patient

RACERS = 12


class TestRacingIfMatch:
    async def test_exactly_one_of_n_writers_with_the_same_etag_wins(
        self, client: httpx.AsyncClient
    ) -> None:
        rid = (await client.post("/fhir/Patient", json=make_patient())).json()["id"]

        async def writer(n: int) -> int:
            response = await client.put(
                f"/fhir/Patient/{rid}", json=make_patient(id=rid, family=f"Writer{n}"),
                headers={"If-Match": 'W/"1"'},
            )
            return response.status_code

        statuses = await asyncio.gather(*(writer(n) for n in range(RACERS)))
        assert sorted(statuses) == [200] + [412] * (RACERS - 1)
        history = (await client.get(f"/fhir/Patient/{rid}/_history")).json()
        assert len(history["entry"]) == 2

    async def test_writers_without_if_match_all_land_as_successive_versions(
        self, client: httpx.AsyncClient
    ) -> None:
        rid = (await client.post("/fhir/Patient", json=make_patient())).json()["id"]

        async def writer(n: int) -> int:
            response = await client.put(f"/fhir/Patient/{rid}",
                                        json=make_patient(id=rid, family=f"W{n}"))
            return response.status_code

        statuses = await asyncio.gather(*(writer(n) for n in range(RACERS)))
        assert statuses == [200] * RACERS
        current = (await client.get(f"/fhir/Patient/{rid}")).json()
        assert current["meta"]["versionId"] == str(RACERS + 1)
        history = (await client.get(f"/fhir/Patient/{rid}/_history?_count=100")).json()
        versions = sorted(int(e["response"]["etag"][3:-1]) for e in history["entry"])
        assert versions == list(range(1, RACERS + 2))

    async def test_parallel_create_on_update_of_one_new_id_makes_one_resource(
        self, client: httpx.AsyncClient
    ) -> None:
        async def writer(n: int) -> int:
            response = await client.put("/fhir/Patient/race-1",
                                        json=make_patient(id="race-1", family=f"W{n}"))
            return response.status_code

        statuses = await asyncio.gather(*(writer(n) for n in range(RACERS)))
        assert statuses.count(201) == 1
        assert statuses.count(200) == RACERS - 1
        current = (await client.get("/fhir/Patient/race-1")).json()
        assert current["meta"]["versionId"] == str(RACERS)


class TestParallelConditionalCreate:
    async def test_parallel_if_none_exist_creates_exactly_one_resource(
        self, client: httpx.AsyncClient
    ) -> None:
        criteria = f"identifier={PNR_SYSTEM}|194501011235"

        async def creator() -> httpx.Response:
            return await client.post("/fhir/Patient", json=make_patient(pnr="194501011235"),
                                     headers={"If-None-Exist": criteria})

        responses = await asyncio.gather(*(creator() for _ in range(RACERS)))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] * (RACERS - 1) + [201]
        assert len({r.json()["id"] for r in responses}) == 1
        count = (await client.get("/fhir/Patient", params={"_summary": "count"})).json()
        assert count["total"] == 1

    async def test_parallel_transactions_with_conditional_creates_make_one_patient(
        self, client: httpx.AsyncClient
    ) -> None:
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": "urn:uuid:6f1c4a8e-1111-4b5e-9a51-000000000001",
                    "resource": make_patient(pnr="194501011235"),
                    "request": {"method": "POST", "url": "Patient",
                                "ifNoneExist": f"identifier={PNR_SYSTEM}|194501011235"},
                },
                {
                    "resource": {
                        "resourceType": "Goal",
                        "lifecycleStatus": "active",
                        "description": {"text": "Promenera varje dag"},
                        "subject": {"reference": "urn:uuid:6f1c4a8e-1111-4b5e-9a51-000000000001"},
                    },
                    "request": {"method": "POST", "url": "Goal"},
                },
            ],
        }
        responses = await asyncio.gather(*(client.post("/fhir", json=bundle) for _ in range(8)))
        assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
        patients = (await client.get("/fhir/Patient", params={"_summary": "count"})).json()
        goals = (await client.get("/fhir/Goal")).json()
        assert patients["total"] == 1
        assert goals["total"] == 8
        subjects = {e["resource"]["subject"]["reference"] for e in goals["entry"]}
        assert len(subjects) == 1
