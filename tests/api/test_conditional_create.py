"""Conditional create as clients send it (issue 14, item 3), on both databases.

``POST [type]?[search]`` (fhirpy's ``get_or_create``) is the ``If-None-Exist``
criteria; both together must agree. ``api/conditional.py`` says why.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from factories import PNR_SYSTEM, make_patient

GRETA = f"{PNR_SYSTEM}|194501011235"


def greta() -> dict[str, Any]:
    body: dict[str, Any] = make_patient(pnr="194501011235")
    return body


async def patients(client: httpx.AsyncClient) -> int:
    total: int = (await client.get("/fhir/Patient", params={"_count": "0"})).json()["total"]
    return total


class TestTheQueryString:
    @pytest.mark.parametrize("prefer", [None, "handling=strict", "return=minimal"])
    async def test_a_second_create_finds_the_first(
        self, client: httpx.AsyncClient, prefer: str | None
    ) -> None:
        headers = {"Prefer": prefer} if prefer else {}
        first = await client.post("/fhir/Patient", json=greta(),
                                  params={"identifier": GRETA}, headers=headers)
        again = await client.post("/fhir/Patient", json=greta(),
                                  params={"identifier": GRETA}, headers=headers)
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.headers["Location"] == first.headers["Location"]
        assert await patients(client) == 1

    async def test_no_match_creates(self, client: httpx.AsyncClient) -> None:
        await client.post("/fhir/Patient", json=make_patient(pnr="193803152341"))
        created = await client.post("/fhir/Patient", json=greta(),
                                    params={"identifier": GRETA})
        assert created.status_code == 201
        assert await patients(client) == 2

    async def test_several_matches_are_a_412(self, client: httpx.AsyncClient) -> None:
        for pnr in ("194501011235", "193803152341"):
            await client.post("/fhir/Patient", json=make_patient(pnr=pnr, family="Holm"))
        response = await client.post("/fhir/Patient", json=make_patient(pnr="191212121212"),
                                     params={"family": "Holm"})
        assert response.status_code == 412
        assert await patients(client) == 2

    async def test_a_criterion_we_do_not_search_by_is_a_400(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.post("/fhir/Patient", json=make_patient(),
                                     params={"shoe-size": "42"})
        assert response.status_code == 400
        assert response.json()["resourceType"] == "OperationOutcome"
        assert await patients(client) == 0

    async def test_format_and_pretty_are_not_criteria(self, client: httpx.AsyncClient) -> None:
        for _ in range(2):
            response = await client.post("/fhir/Patient", json=make_patient(pnr=None),
                                         params={"_format": "json", "_pretty": "true"})
            assert response.status_code == 201
        assert await patients(client) == 2


class TestWithIfNoneExist:
    async def test_the_same_criteria_in_both_places(self, client: httpx.AsyncClient) -> None:
        for status in (201, 200):
            response = await client.post(
                "/fhir/Patient", json=greta(), params={"identifier": GRETA},
                headers={"If-None-Exist": f"Patient?identifier={GRETA}"})
            assert response.status_code == status

    async def test_different_criteria_are_a_400(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/fhir/Patient", json=make_patient(), params={"identifier": GRETA},
            headers={"If-None-Exist": "family=Holm"})
        assert response.status_code == 400
        outcome = response.json()
        assert outcome["issue"][0]["expression"] == ["If-None-Exist"]
        assert await patients(client) == 0

    async def test_the_header_alone_still_works(self, client: httpx.AsyncClient) -> None:
        statuses = [(await client.post("/fhir/Patient", json=greta(),
                                       headers={"If-None-Exist": f"identifier={GRETA}"})
                     ).status_code for _ in range(2)]
        assert statuses == [201, 200]
