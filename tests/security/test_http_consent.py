"""Consents over HTTP: the patient's block (spärr) on a care provider overrides the care
team, and relatives act only as guardians of young children or with a proxy grant."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from samplan.api.deps import Services
from samplan.fhir.identifiers import (
    PERSONNUMMER_SYSTEM,
    SAMORDNINGSNUMMER_SYSTEM,
    luhn_check_digit,
)

from .test_http_matrix import (
    GRETA_PNR,
    MUNICIPALITY,
    UNIT_IN,
    World,
    block,
    proxy_grant,
    world_fixture,  # noqa: F401  (the `world` fixture)
)

Mint = Callable[..., str]


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _create(services: Services, resource: dict[str, Any]) -> str:
    created = await services.gate.as_service().create(resource["resourceType"], resource)
    return created.stored.resource_id


class TestSparr:
    async def test_a_block_on_the_care_unit_hides_the_patient_at_once(
        self, secure_client: httpx.AsyncClient, secure_services: Services, world: World,
        mint: Mint,
    ) -> None:
        staff = _auth(mint("user/*.rs", care_unit=UNIT_IN))
        plan = f"/fhir/CarePlan/{world.plan}"
        assert (await secure_client.get(plan, headers=staff)).status_code == 200
        consent_id = await _create(secure_services, block(world.greta, world.unit_in))
        assert (await secure_client.get(plan, headers=staff)).status_code == 404
        listed = (await secure_client.get("/fhir/CarePlan", headers=staff)).json()
        assert listed["total"] == 0
        # the municipality, not blocked, still reaches her
        system = _auth(mint("system/*.rs", org=MUNICIPALITY))
        assert (await secure_client.get(plan, headers=system)).status_code == 200
        # lifting the block gives access back at once
        lifted = {**block(world.greta, world.unit_in, status="inactive"), "id": consent_id}
        await secure_services.gate.as_service().update("Consent", consent_id, lifted)
        assert (await secure_client.get(plan, headers=staff)).status_code == 200

    async def test_the_patient_records_a_block_themselves(
        self, secure_client: httpx.AsyncClient, world: World, mint: Mint
    ) -> None:
        patient = _auth(mint("patient/*.rs patient/Consent.cruds", patient=GRETA_PNR))
        created = await secure_client.post("/fhir/Consent", json=block(world.greta, world.unit_in),
                                           headers=patient)
        assert created.status_code == 201, created.text
        staff = _auth(mint("user/*.rs", care_unit=UNIT_IN))
        response = await secure_client.get(f"/fhir/CarePlan/{world.plan}", headers=staff)
        assert response.status_code == 404


class TestRelatives:
    async def test_a_relative_without_a_grant_reaches_nothing(
        self, secure_client: httpx.AsyncClient, secure_services: Services, world: World,
        mint: Mint,
    ) -> None:
        other = await _create(secure_services, {
            "resourceType": "RelatedPerson", "patient": {"reference": f"Patient/{world.greta}"}})
        relative = _auth(mint("patient/*.rs", patient=world.greta,
                              fhir_user=f"RelatedPerson/{other}"))
        response = await secure_client.get(f"/fhir/CarePlan/{world.plan}", headers=relative)
        assert response.status_code == 404

    async def test_a_revoked_grant_stops_working_at_once(
        self, secure_client: httpx.AsyncClient, secure_services: Services, world: World,
        mint: Mint,
    ) -> None:
        relative = _auth(mint("patient/*.rs", patient=world.greta,
                              fhir_user=f"RelatedPerson/{world.relative}"))
        plan = f"/fhir/CarePlan/{world.plan}"
        assert (await secure_client.get(plan, headers=relative)).status_code == 200
        grants = (await secure_services.gate.as_service().search(
            "Consent", [("actor", f"RelatedPerson/{world.relative}")]))[1].matches
        [grant] = grants
        revoked = {**proxy_grant(world.greta, world.relative, status="inactive"),
                   "id": grant.resource_id}
        await secure_services.gate.as_service().update("Consent", grant.resource_id, revoked)
        assert (await secure_client.get(plan, headers=relative)).status_code == 404

    async def test_a_relative_never_sees_professional_only_content(
        self, secure_client: httpx.AsyncClient, world: World, mint: Mint
    ) -> None:
        relative = _auth(mint("patient/*.rs", patient=world.greta,
                              fhir_user=f"RelatedPerson/{world.relative}"))
        response = await secure_client.get(f"/fhir/Goal/{world.hidden_goal}", headers=relative)
        assert response.status_code == 404

    async def test_a_guardian_acts_for_a_child_under_13_only(
        self, secure_client: httpx.AsyncClient, secure_services: Services, mint: Mint,
        world: World,
    ) -> None:
        statuses = [
            await _guardian_reads(secure_client, secure_services, mint, world,
                                  {"resourceType": "Patient", "birthDate": birth})
            for birth in ("2020-05-01", "2001-05-01")
        ]
        assert statuses == [200, 404]

    async def test_a_child_known_by_number_only_is_still_a_child(
        self, secure_client: httpx.AsyncClient, secure_services: Services, mint: Mint,
        world: World,
    ) -> None:
        """A Patient stored without birthDate: the personnummer or samordningsnummer
        (day + 60) says how old the child is."""
        statuses = []
        for system, born in ((PERSONNUMMER_SYSTEM, "20200501"),
                             (SAMORDNINGSNUMMER_SYSTEM, "20200561"),
                             (PERSONNUMMER_SYSTEM, "20010501")):
            number = f"{born}238{luhn_check_digit(born[2:] + '238')}"
            statuses.append(await _guardian_reads(
                secure_client, secure_services, mint, world,
                {"resourceType": "Patient", "identifier": [{"system": system, "value": number}]},
                relationship="FTH"))
        assert statuses == [200, 200, 404]

    async def test_a_relative_may_not_write(
        self, secure_client: httpx.AsyncClient, world: World, mint: Mint
    ) -> None:
        relative = _auth(mint("patient/*.cruds", patient=world.greta,
                              fhir_user=f"RelatedPerson/{world.relative}"))
        goal = {"resourceType": "Goal", "lifecycleStatus": "active",
                "description": {"text": "Promenad"},
                "subject": {"reference": f"Patient/{world.greta}"},
                "expressedBy": {"reference": f"RelatedPerson/{world.relative}"}}
        response = await secure_client.post("/fhir/Goal", json=goal, headers=relative)
        assert response.status_code == 403


async def _guardian_reads(
    client: httpx.AsyncClient, services: Services, mint: Mint, world: World,
    patient: dict[str, Any], *, relationship: str = "MTH",
) -> int:
    """The status of a parent's read of ``patient``, whom a CareTeam of the unit names."""
    child = await _create(services, patient)
    await _create(services, {
        "resourceType": "CareTeam", "status": "active",
        "subject": {"reference": f"Patient/{child}"},
        "participant": [{"member": {"reference": f"Organization/{world.unit_in}"}}]})
    guardian = await _create(services, {
        "resourceType": "RelatedPerson", "patient": {"reference": f"Patient/{child}"},
        "relationship": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
            "code": relationship}]}]})
    token = _auth(mint("patient/*.rs", patient=child, fhir_user=f"RelatedPerson/{guardian}"))
    response = await client.get(f"/fhir/Patient/{child}", headers=token)
    if response.status_code == 200:
        assert response.json().get("birthDate") == patient.get("birthDate")  # none made up
    return response.status_code
