"""A region's journal system: one token for every unit of its care provider (issue 15).

A care unit belongs to its care provider (``Organization.partOf``, both named by
HSA-id). A system token whose organisation or care-provider claim is the
provider reaches the patients whose CareTeam names any unit under it (any depth)
and imports notes for all of them; a unit's token stays in its unit; staff stay
at their care unit (unless SAMPLAN_STAFF_REACH_PROVIDER says otherwise); another
region reaches nothing. A cycle in ``partOf`` is refused.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from samplan.api.deps import Services
from samplan.fhir.identifiers import luhn_check_digit

HSA = "urn:oid:1.2.752.29.4.19"
REGION = "SE2321000073-0001"
OTHER_REGION = "SE2321000081-0001"
UNIT_A = "SE2321000073-2001"
UNIT_B = "SE2321000073-2002"
SUB_UNIT = "SE2321000073-2101"  # under UNIT_A: two levels below the region
NEW_UNIT = "SE2321000073-2003"
NOTE = orjson.loads((Path(__file__).resolve().parents[2] / "examples" / "notes" /
                     "region-nested.json").read_bytes())

Mint = Callable[..., str]


def pnr(serial: int) -> str:
    nine = f"450101{serial:03d}"
    return f"19{nine[:6]}-{nine[6:]}{luhn_check_digit(nine)}"


def note(*, unit: str, patient: str, note_id: str, provider: dict[str, str] | None = None
         ) -> bytes:
    body: dict[str, Any] = copy.deepcopy(NOTE)
    body["noteId"] = note_id
    body["patient"] = {"personnummer": patient, "name": "Test Testsson"}
    body["careUnit"] = {"hsaId": unit, "name": f"Enhet {unit[-4:]}"}
    if provider is not None:
        body["careProvider"] = provider
    return orjson.dumps(body)


def printed(*, unit: str, patient: str, provider: str) -> bytes:
    return (f"Besöksanteckning läkare\nAnteckningsid: printed-{unit}\n"
            f"Patient: {patient} Test Testsson\n"
            f"Vårdenhet: Hälsocentralen Ny ({unit})\n"
            f"Vårdgivare: Region Kalmar län ({provider})\n"
            "Signerad: 2026-11-20 10:15 av Anna Berg, distriktsläkare (SE2321000073-1001)\n\n"
            "Överenskommelse\nPatienten ansvarar för\nGå en promenad varje dag.\n"
            "Vården ansvarar för\nFölja upp blodtrycket.\n").encode()


def bearer(token: str, content_type: str = "application/fhir+json") -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": content_type}


async def organisation(services: Services, hsa: str, name: str, part_of: str | None = None
                       ) -> str:
    body: dict[str, Any] = {"resourceType": "Organization", "name": name,
                            "identifier": [{"system": HSA, "value": hsa}]}
    if part_of:
        body["partOf"] = {"reference": f"Organization/{part_of}"}
    return (await services.gate.as_service().create("Organization", body)).stored.resource_id


@pytest.fixture
async def region(secure_services: Services) -> dict[str, str]:
    """The region, its units (one two levels down) and another region."""
    ids = {"region": await organisation(secure_services, REGION, "Region Kalmar län"),
           "other": await organisation(secure_services, OTHER_REGION, "Region Annan")}
    ids["a"] = await organisation(secure_services, UNIT_A, "Hälsocentralen A", ids["region"])
    ids["b"] = await organisation(secure_services, UNIT_B, "Hälsocentralen B", ids["region"])
    ids["sub"] = await organisation(secure_services, SUB_UNIT, "Mottagning A2", ids["a"])
    return ids


async def import_note(client: httpx.AsyncClient, token: str, body: bytes,
                      content_type: str = "application/json") -> httpx.Response:
    return await client.post("/fhir/CarePlan/$import-note", content=body,
                             headers=bearer(token, content_type))


def plan_of(response: httpx.Response) -> str:
    return response.headers["Location"].split("/CarePlan/")[1].split("/")[0]


class TestOneTokenPerCareProvider:
    async def test_a_region_token_imports_for_its_registered_units_and_reads_them(
        self, secure_client: httpx.AsyncClient, region: dict[str, str], mint: Mint,
    ) -> None:
        del region
        token = mint("system/*.cruds", org=REGION)
        plans = []
        for serial, unit in enumerate((UNIT_A, UNIT_B, SUB_UNIT), start=1):
            response = await import_note(secure_client, token, note(
                unit=unit, patient=pnr(serial), note_id=f"n-{unit}"))
            assert response.status_code == 201, response.text
            plans.append(plan_of(response))
        for plan in plans:
            read = await secure_client.get(f"/fhir/CarePlan/{plan}", headers=bearer(token))
            assert read.status_code == 200
        found = (await secure_client.get("/fhir/CarePlan", headers=bearer(token))).json()
        assert found["total"] == 3

    async def test_a_new_unit_named_with_its_provider_is_registered_under_it(
        self, secure_client: httpx.AsyncClient, region: dict[str, str], mint: Mint,
    ) -> None:
        token = mint("system/*.cruds", org=REGION)
        provider = {"hsaId": REGION, "name": "Region Kalmar län"}
        response = await import_note(secure_client, token, note(
            unit=NEW_UNIT, patient=pnr(7), note_id="n-new", provider=provider))
        assert response.status_code == 201, response.text
        found = (await secure_client.get(
            "/fhir/Organization", params={"identifier": f"{HSA}|{NEW_UNIT}"},
            headers=bearer(token))).json()
        assert found["entry"][0]["resource"]["partOf"]["reference"] == \
            f"Organization/{region['region']}"
        printed_unit = "SE2321000073-2004"
        response = await import_note(secure_client, token, printed(
            unit=printed_unit, patient=pnr(8), provider=REGION), "text/plain")
        assert response.status_code == 201, response.text
        plan = (await secure_client.get(f"/fhir/CarePlan/{plan_of(response)}",
                                        headers=bearer(token)))
        assert plan.status_code == 200

    async def test_a_new_unit_without_its_provider_is_outside_the_regions_reach(
        self, secure_client: httpx.AsyncClient, region: dict[str, str], mint: Mint,
    ) -> None:
        del region
        response = await import_note(secure_client, mint("system/*.cruds", org=REGION), note(
            unit=NEW_UNIT, patient=pnr(9), note_id="n-lost"))
        assert response.status_code == 403, response.text

    async def test_a_units_token_stays_in_its_unit(
        self, secure_client: httpx.AsyncClient, region: dict[str, str], mint: Mint,
    ) -> None:
        del region
        region_token = mint("system/*.cruds", org=REGION)
        in_a = plan_of(await import_note(secure_client, region_token, note(
            unit=UNIT_A, patient=pnr(1), note_id="n-a")))
        in_b = plan_of(await import_note(secure_client, region_token, note(
            unit=UNIT_B, patient=pnr(2), note_id="n-b")))
        unit_token = mint("system/*.cruds", org=UNIT_B)
        assert (await secure_client.get(f"/fhir/CarePlan/{in_b}",
                                        headers=bearer(unit_token))).status_code == 200
        assert (await secure_client.get(f"/fhir/CarePlan/{in_a}",
                                        headers=bearer(unit_token))).status_code == 404
        staff = mint("user/*.cruds", care_unit=UNIT_B, care_provider=REGION)
        assert (await secure_client.get(f"/fhir/CarePlan/{in_b}",
                                        headers=bearer(staff))).status_code == 200
        assert (await secure_client.get(f"/fhir/CarePlan/{in_a}",
                                        headers=bearer(staff))).status_code == 404
        response = await import_note(secure_client, unit_token, note(
            unit=UNIT_A, patient=pnr(3), note_id="n-a-by-b"))
        assert response.status_code == 403, response.text

    async def test_another_regions_token_reaches_nothing(
        self, secure_client: httpx.AsyncClient, region: dict[str, str], mint: Mint,
    ) -> None:
        del region
        in_a = plan_of(await import_note(secure_client, mint("system/*.cruds", org=REGION), note(
            unit=UNIT_A, patient=pnr(1), note_id="n-a")))
        other = mint("system/*.cruds", org=OTHER_REGION)
        assert (await secure_client.get(f"/fhir/CarePlan/{in_a}",
                                        headers=bearer(other))).status_code == 404
        assert (await secure_client.get("/fhir/CarePlan",
                                        headers=bearer(other))).json()["total"] == 0
        response = await import_note(secure_client, other, note(
            unit=UNIT_B, patient=pnr(4), note_id="n-b-by-other"))
        assert response.status_code == 403, response.text


class TestStaffReachTheirUnit:
    async def test_staff_stay_at_their_unit_unless_the_setting_says_otherwise(
        self, secure_client: httpx.AsyncClient, secure_services: Services,
        region: dict[str, str], mint: Mint, monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        del region
        in_a = plan_of(await import_note(secure_client, mint("system/*.cruds", org=REGION), note(
            unit=UNIT_A, patient=pnr(1), note_id="n-a")))
        staff = mint("user/*.rs", care_unit=UNIT_B, care_provider=REGION)
        assert (await secure_client.get(f"/fhir/CarePlan/{in_a}",
                                        headers=bearer(staff))).status_code == 404
        monkeypatch.setattr(secure_services.gate.resolver, "provider_units", True)
        assert (await secure_client.get(f"/fhir/CarePlan/{in_a}",
                                        headers=bearer(staff))).status_code == 200


class TestTheHierarchy:
    async def test_a_cycle_in_part_of_is_refused_with_422(
        self, secure_client: httpx.AsyncClient, region: dict[str, str], mint: Mint,
    ) -> None:
        token = mint("system/*.cruds", org=REGION)
        current = (await secure_client.get(f"/fhir/Organization/{region['region']}",
                                           headers=bearer(token))).json()
        current["partOf"] = {"reference": f"Organization/{region['sub']}"}
        response = await secure_client.put(f"/fhir/Organization/{region['region']}",
                                           json=current, headers=bearer(token))
        assert response.status_code == 422, response.text
        outcome = response.json()
        assert outcome["issue"][0]["code"] == "business-rule"
        assert outcome["issue"][0]["expression"] == ["Organization.partOf"]
        itself = dict(current, partOf={"reference": f"Organization/{region['region']}"})
        response = await secure_client.put(f"/fhir/Organization/{region['region']}",
                                           json=itself, headers=bearer(token))
        assert response.status_code == 422
        unchanged = (await secure_client.get(f"/fhir/Organization/{region['region']}",
                                             headers=bearer(token))).json()
        assert "partOf" not in unchanged
