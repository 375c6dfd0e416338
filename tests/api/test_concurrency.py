"""Concurrent writers: nothing silently overwritten, nothing duplicated.

The requests run truly in parallel against the database (separate pooled
connections on PostgreSQL, the write queue on SQLite).
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from factories import PNR_SYSTEM, make_patient
from samplan.api.deps import Services
from samplan.fhir.identifiers import HSA_SYSTEM
from support.writers import Anyone

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


class TestConditionalCreatesOfOneExistingResource:
    """Transactions whose conditional creates match the same existing resource (every note
    of a care unit names the unit) do not wait for each other; two that would create the
    same new one still do, so that one is made (PostgreSQL: SQLite's writers take turns)."""

    async def test_a_match_is_not_locked_and_a_miss_is(self, services: Services) -> None:
        repo, service = services.gate.service.repo, services.gate.service
        if repo.is_sqlite:
            pytest.skip("SQLite runs one writer at a time")
        hsa = "SE2321000073-1001"
        await services.gate.as_service().create("Organization", {
            "resourceType": "Organization", "name": "Vårdcentralen",
            "identifier": [{"system": HSA_SYSTEM, "value": hsa}]})
        there = ("Organization", f"identifier={HSA_SYSTEM}|{hsa}")
        new = ("Patient", f"identifier={PNR_SYSTEM}|194501011235")

        async def ask(wanted: tuple[str, str]) -> list[str]:
            async with repo.transaction(Anyone()) as tx:
                await tx.lock(f"a statement first: {wanted}")
                found = await service.prefetch_matches(tx, [wanted])
                return [m.resource_id for m in found[wanted]]

        async with repo.transaction(Anyone()) as first:
            await first.lock("a statement first")  # (a key of its own)
            matched = await service.prefetch_matches(first, [there, new])
            assert len(matched[there]) == 1
            assert matched[new] == []
            # while the first is open: the existing unit answers at once ...
            assert await asyncio.wait_for(ask(there), timeout=10) == [
                matched[there][0].resource_id]
            # ... and the new patient waits for the first to end
            waiting = asyncio.create_task(ask(new))
            done, _ = await asyncio.wait({waiting}, timeout=1.0)
            assert not done
        assert await asyncio.wait_for(waiting, timeout=30) == []
