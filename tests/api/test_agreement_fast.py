"""$agreement answered before the router (api/agreement_fast.py): the route's answer, exactly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from samplan.api import agreement_fast
from support.patient_view import PNRS, import_examples

from .test_patient_gather import bundle_words
from .test_patient_view_access import bearer, world

Mint = Callable[..., str]


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The patient ids the fast path answered for."""
    seen: list[str] = []
    document = agreement_fast.agreement_document

    async def spy(services: Any, reader: Any, patient_id: str) -> Any:
        seen.append(patient_id)
        return await document(services, reader, patient_id)

    monkeypatch.setattr(agreement_fast, "agreement_document", spy)
    return seen


def same_answer(fast: httpx.Response, routed: httpx.Response) -> None:
    assert fast.status_code == routed.status_code
    for header in ("content-type", "cache-control", "vary"):
        assert fast.headers.get(header) == routed.headers.get(header), header
    if fast.status_code == 200:
        assert bundle_words(orjson.loads(fast.content)) == bundle_words(
            orjson.loads(routed.content))
    else:
        assert fast.json() == routed.json()


class TestTheFastPath:
    async def test_the_document_is_the_routes(
        self, client: httpx.AsyncClient, served: list[str]
    ) -> None:
        patient_id = (await import_examples(client))["region"]
        path = f"/fhir/Patient/{patient_id}/$agreement"
        for accept in (None, "application/fhir+json", "*/*"):
            headers = {"Accept": accept} if accept else {}
            fast = await client.get(path, headers=headers)
            routed = await client.get(path, headers=headers, params={"_format": "json"})
            same_answer(fast, routed)
        assert served == [patient_id] * 3
        missing = await client.get("/fhir/Patient/nobody/$agreement")
        same_answer(missing, await client.get("/fhir/Patient/nobody/$agreement",
                                              params={"_format": "json"}))
        assert missing.status_code == 404

    async def test_pages_and_what_is_not_offered_go_to_the_route(
        self, client: httpx.AsyncClient, served: list[str]
    ) -> None:
        patient_id = (await import_examples(client))["kalmar"]
        path = f"/fhir/Patient/{patient_id}/$agreement"
        assert (await client.get(path, headers={"Accept": "text/html"})).status_code == 200
        assert (await client.get(path, headers={"Accept": "image/png"})).status_code == 406
        assert (await client.post(path)).status_code == 405
        assert served == []

    async def test_the_callers_reach_applies(
        self, secure_client: httpx.AsyncClient, mint: Mint, served: list[str]
    ) -> None:
        ids = await world(secure_client, mint)
        patient = bearer(mint("patient/*.rs", patient=PNRS["region"]))
        for name, status in (("region", 200), ("kalmar", 404)):
            path = f"/fhir/Patient/{ids[name]}/$agreement"
            fast = await secure_client.get(path, headers=patient)
            assert fast.status_code == status
            same_answer(fast, await secure_client.get(path, headers=patient,
                                                      params={"_format": "json"}))
        anonymous = await secure_client.get(f"/fhir/Patient/{ids['region']}/$agreement")
        assert anonymous.status_code == 401
        assert served == [ids["region"], ids["kalmar"]]
