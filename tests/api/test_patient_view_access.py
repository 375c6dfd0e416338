"""The patient's view with authentication on: who sees which agreement, who may add to it."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import orjson

from support.patient_view import (
    PNRS,
    SECRETS,
    add_professional_only,
    create,
    import_examples,
    ok,
)

Mint = Callable[..., str]
REGION_UNIT = "SE2321000073-2001"
KALMAR_UNIT = "SE2321000073-2002"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def world(client: httpx.AsyncClient, mint: Mint) -> dict[str, str]:
    """Both examples imported by their units' staff; Greta's daughter holds a proxy grant."""
    ids: dict[str, str] = {}
    for name, unit in (("kalmar", KALMAR_UNIT), ("region", REGION_UNIT)):
        # each unit imports its own note (its CareTeam brings the patient into its reach)
        client.headers.update(bearer(mint("user/*.cruds", care_unit=unit)))
        ids[name] = (await import_examples(client, only=name))[name]
    await add_professional_only(client, ids["region"])
    daughter = await create(client, {
        "resourceType": "RelatedPerson", "active": True,
        "patient": {"reference": f"Patient/{ids['region']}"},
        "name": [{"text": "Eva Holm"}],
    })
    await create(client, {
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{ids['region']}"},
        "provision": {"type": "permit", "actor": [{
            "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleClass",
                                 "code": "AGNT"}]},
            "reference": {"reference": f"RelatedPerson/{daughter['id']}"}}]},
    })
    del client.headers["Authorization"]
    return {**ids, "daughter": daughter["id"]}


def goal_parameters(text: str) -> bytes:
    return orjson.dumps({"resourceType": "Parameters",
                         "parameter": [{"name": "text", "valueString": text}]})


class TestWhoSeesTheAgreement:
    async def test_the_patient_sees_their_own_agreement_without_professional_content(
        self, secure_client: httpx.AsyncClient, mint: Mint
    ) -> None:
        ids = await world(secure_client, mint)
        token = mint("patient/*.rs", patient=PNRS["region"])
        for accept in ("application/fhir+json", "text/html"):
            response = await secure_client.get(f"/fhir/Patient/{ids['region']}/$agreement",
                                               headers={**bearer(token), "Accept": accept})
            assert response.status_code == 200, response.text
            assert "Väga mig varje morgon och skriva upp vikten." in response.text
            for secret in SECRETS:
                assert secret not in response.text

    async def test_another_patients_agreement_does_not_exist_for_them(
        self, secure_client: httpx.AsyncClient, mint: Mint
    ) -> None:
        ids = await world(secure_client, mint)
        token = mint("patient/*.rs", patient=PNRS["region"])
        response = await secure_client.get(f"/fhir/Patient/{ids['kalmar']}/$agreement",
                                           headers=bearer(token))
        assert response.status_code == 404
        page = await secure_client.get(f"/portal/patient/{ids['kalmar']}", headers=bearer(token))
        assert page.status_code == 404
        assert "Sidan finns inte" in page.text

    async def test_without_a_token_the_page_is_401(
        self, secure_client: httpx.AsyncClient, mint: Mint
    ) -> None:
        ids = await world(secure_client, mint)
        response = await secure_client.get(f"/fhir/Patient/{ids['region']}/$agreement")
        assert response.status_code == 401


class TestWhoMayAdd:
    async def test_the_patient_adds_a_goal_of_their_own(
        self, secure_client: httpx.AsyncClient, mint: Mint
    ) -> None:
        ids = await world(secure_client, mint)
        token = mint("patient/*.cruds", patient=PNRS["region"],
                     fhir_user=f"Patient/{ids['region']}")
        response = await secure_client.post(f"/fhir/Patient/{ids['region']}/$add-goal",
                                            content=goal_parameters("Orka gå i trappan."),
                                            headers=bearer(token))
        assert response.status_code == 201, response.text
        assert response.json()["expressedBy"] == {"reference": f"Patient/{ids['region']}"}

    async def test_a_relative_with_a_proxy_grant_adds_for_the_patient(
        self, secure_client: httpx.AsyncClient, mint: Mint
    ) -> None:
        ids = await world(secure_client, mint)
        token = mint("patient/*.cruds", patient=ids["region"],
                     fhir_user=f"RelatedPerson/{ids['daughter']}")
        response = await secure_client.post(f"/fhir/Patient/{ids['region']}/$add-goal",
                                            content=goal_parameters("Fira jul hemma."),
                                            headers=bearer(token))
        assert response.status_code == 201, response.text
        goal = response.json()
        assert goal["expressedBy"] == {"reference": f"Patient/{ids['region']}"}
        assert goal["note"][0]["authorReference"] == {
            "reference": f"RelatedPerson/{ids['daughter']}"}
        message = ok(await secure_client.post(
            f"/fhir/Patient/{ids['region']}/$add-message",
            content=goal_parameters("Mamma har svårt att höra i telefon."),
            headers=bearer(token)))
        assert message["sender"] == {"reference": f"RelatedPerson/{ids['daughter']}"}

    async def test_a_relative_without_a_grant_cannot_add(
        self, secure_client: httpx.AsyncClient, mint: Mint
    ) -> None:
        ids = await world(secure_client, mint)
        token = mint("patient/*.cruds", patient=ids["kalmar"],
                     fhir_user=f"RelatedPerson/{ids['daughter']}")
        response = await secure_client.post(f"/fhir/Patient/{ids['kalmar']}/$add-goal",
                                            content=goal_parameters("Något."),
                                            headers=bearer(token))
        assert response.status_code == 404

    async def test_staff_cannot_write_in_the_patients_own_part(
        self, secure_client: httpx.AsyncClient, mint: Mint
    ) -> None:
        ids = await world(secure_client, mint)
        token = mint("user/*.cruds", user="SE2321000073-1001", care_unit=REGION_UNIT)
        response = await secure_client.post(f"/fhir/Patient/{ids['region']}/$add-goal",
                                            content=goal_parameters("Skrivet av personal."),
                                            headers=bearer(token))
        assert response.status_code == 403
        assert response.json() == {"resourceType": "OperationOutcome", "issue": [{
            "severity": "error", "code": "forbidden",
            "diagnostics": "Only the patient, or a relative acting for them, adds to the "
                           "patient's own part of the agreement; staff and systems write in "
                           "the journal.",
        }]}
