"""Who may count whose patients: ``$evaluate-measure`` through the security layer.

The generated population (tests/support/indicator_world.py) on the app with auth
on. Staff and systems count the patients they reach (their CareTeams, minus the
patients who block them); patients and relatives are refused; every evaluation
leaves one access-log entry naming the Measure and no patient.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from samplan.api.deps import Services
from samplan.store.tables import audit_events
from support.indicator_world import (
    UNITS,
    World,
    counts,
    expected,
    load_with_proxy,
    reached_by_unit_a,
)

Mint = Callable[..., str]
MEASURES = (
    "rub5-utan-fast-lakarkontakt", "rub5-med-sip", "rub45-med-overenskommelse",
    "overenskommelse-med-nasta-tid", "overenskommelse-med-fast-vardkontakt",
    "sju-fragor-patient", "sju-fragor-personal",
)
PERIOD = {"periodStart": "2026-01", "periodEnd": "2026-06"}
RELATIVE = "relative-p00"


@pytest.fixture
async def world(secure_services: Services) -> World:
    return await load_with_proxy(secure_services, "p00", RELATIVE)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def evaluate(client: httpx.AsyncClient, token: str, measure: str) -> httpx.Response:
    return await client.get(f"/fhir/Measure/{measure}/$evaluate-measure", params=PERIOD,
                            headers=bearer(token))


async def log_of(services: Services) -> list[tuple[Any, ...]]:
    c = audit_events.c
    stmt = select(c.interaction, c.outcome, c.agent_kind, c.entity_type, c.entity_id,
                  c.patient_id).where(c.entity_type == "Measure").order_by(c.seq)
    async with services.gate.engine.connect() as conn:
        return [tuple(row) for row in await conn.execute(stmt)]


class TestStaffAndSystemsCountThePatientsTheyReach:
    @pytest.mark.parametrize("measure", MEASURES)
    async def test_staff_of_a_unit_count_its_patients_minus_those_blocking_it(
        self, secure_client: httpx.AsyncClient, world: World, mint: Mint, measure: str
    ) -> None:
        token = mint("user/*.rs", user="SE2321000073-1001", care_unit=UNITS["A"][1])

        response = await evaluate(secure_client, token, measure)

        assert response.status_code == 200, response.text
        reached = None if measure == "sju-fragor-personal" else reached_by_unit_a(world)
        assert counts(response.json()) == expected(world, measure, "2026-01-01", "2026-06-30",
                                                   patients=reached)

    async def test_a_system_counts_its_organisations_patients_also_through_roles(
        self, secure_client: httpx.AsyncClient, world: World, mint: Mint
    ) -> None:
        token = mint("system/Measure.r", org=UNITS["B"][1])

        response = await evaluate(secure_client, token, "overenskommelse-med-nasta-tid")

        assert response.status_code == 200, response.text
        assert counts(response.json()) == expected(
            world, "overenskommelse-med-nasta-tid", "2026-01-01", "2026-06-30",
            units={UNITS["B"][0]})

    async def test_staff_reaching_nobody_count_nobody(
        self, secure_client: httpx.AsyncClient, world: World, mint: Mint
    ) -> None:
        token = mint("user/Measure.r", care_unit="SE2321000073-9999")

        response = await evaluate(secure_client, token, "rub45-med-overenskommelse")

        assert counts(response.json()) == [("", 0, 0, 0)]
        assert world.patients


@pytest.mark.usefixtures("world")
class TestPatientsAndRelativesAreRefused:
    async def test_a_patient(self, secure_client: httpx.AsyncClient, mint: Mint) -> None:
        response = await evaluate(secure_client, mint("patient/*.cruds", patient="p00"),
                                  "rub5-med-sip")

        assert response.status_code == 403
        assert response.json() == {"resourceType": "OperationOutcome", "issue": [{
            "severity": "error", "code": "forbidden",
            "diagnostics": "Indicators count other patients' data: they are for staff and "
                           "systems, not for a patient."}]}

    async def test_a_relative(self, secure_client: httpx.AsyncClient, mint: Mint) -> None:
        token = mint("patient/*.rs", patient="p00", fhir_user=f"RelatedPerson/{RELATIVE}")

        response = await evaluate(secure_client, token, "sju-fragor-patient")

        assert response.status_code == 403
        assert response.json()["issue"][0]["diagnostics"].endswith("not for a relative.")

    async def test_staff_without_a_scope_on_measure(
        self, secure_client: httpx.AsyncClient, mint: Mint
    ) -> None:
        token = mint("user/CarePlan.rs", care_unit=UNITS["A"][1])

        response = await evaluate(secure_client, token, "rub5-med-sip")

        assert response.status_code == 403
        assert response.json() == {"resourceType": "OperationOutcome", "issue": [{
            "severity": "error", "code": "forbidden",
            "diagnostics": "the token's scopes do not allow read on Measure "
                           "(needs e.g. user/Measure.r)"}]}
        assert "insufficient_scope" in response.headers["WWW-Authenticate"]

    async def test_no_token(self, secure_client: httpx.AsyncClient) -> None:
        response = await secure_client.get("/fhir/Measure/rub5-med-sip/$evaluate-measure",
                                           params=PERIOD)

        assert response.status_code == 401


@pytest.mark.usefixtures("world")
class TestEveryEvaluationIsLogged:
    async def test_one_entry_naming_the_measure_and_no_patient(
        self, secure_client: httpx.AsyncClient, secure_services: Services, mint: Mint
    ) -> None:
        token = mint("user/*.rs", user="SE2321000073-1001", care_unit=UNITS["A"][1])

        await evaluate(secure_client, token, "rub5-med-sip")

        assert await log_of(secure_services) == [
            ("search", "0", "staff", "Measure", "rub5-med-sip", None)]
        c = audit_events.c
        async with secure_services.gate.engine.connect() as conn:
            content = (await conn.execute(select(c.content).where(
                c.entity_type == "Measure"))).scalar_one()
        assert (b"Measure/rub5-med-sip/$evaluate-measure?periodStart=2026-01"
                b"&periodEnd=2026-06") in content

    async def test_a_refusal_is_logged_too(
        self, secure_client: httpx.AsyncClient, secure_services: Services, mint: Mint
    ) -> None:
        await evaluate(secure_client, mint("patient/*.cruds", patient="p00"), "rub5-med-sip")

        assert await log_of(secure_services) == [
            ("search", "4", "patient", "Measure", "rub5-med-sip", None)]
