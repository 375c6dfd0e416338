"""Who may do what over HTTP: every kind of caller x every kind of interaction, exact statuses.

The world: patient Greta (P1) is cared for by the region's care unit (HSA
SE2321000073-2001) and by the municipality's home-care system (HSA
SE2120000000-3001); patient Olle (P2) only by another care unit
(SE2321000073-9001). Every cell works on Greta's data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from samplan.api.deps import Services

PNR_SYSTEM = "http://electronichealth.se/identifier/personnummer"
HSA_SYSTEM = "urn:oid:1.2.752.29.4.19"
NOPATIENT = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "NOPATIENT"}

UNIT_IN = "SE2321000073-2001"
UNIT_OUT = "SE2321000073-9001"
MUNICIPALITY = "SE2120000000-3001"
UNKNOWN_ORG = "SE2120000000-9999"
GRETA_PNR = "194501011235"
OLLE_PNR = "193803152341"


@dataclass(frozen=True)
class World:
    greta: str
    olle: str
    plan: str
    goal: str
    hidden_goal: str
    olle_plan: str
    unit_in: str
    relative: str


async def _create(services: Services, resource: dict[str, Any]) -> str:
    result = await services.gate.as_service().create(resource["resourceType"], resource)
    return result.stored.resource_id


def _org(hsa: str, name: str) -> dict[str, Any]:
    return {"resourceType": "Organization", "name": name,
            "identifier": [{"system": HSA_SYSTEM, "value": hsa}]}


def _patient(pnr: str, family: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": family}],
            "identifier": [{"system": PNR_SYSTEM, "value": pnr}]}


def _team(patient: str, *orgs: str) -> dict[str, Any]:
    return {"resourceType": "CareTeam", "status": "active",
            "subject": {"reference": f"Patient/{patient}"},
            "participant": [{"member": {"reference": f"Organization/{o}"}} for o in orgs]}


def _plan(patient: str) -> dict[str, Any]:
    return {"resourceType": "CarePlan", "status": "active", "intent": "plan",
            "title": "Överenskommelse", "subject": {"reference": f"Patient/{patient}"}}


def _goal(patient: str, *, hidden: bool = False, by_patient: bool = False) -> dict[str, Any]:
    goal: dict[str, Any] = {"resourceType": "Goal", "lifecycleStatus": "active",
                            "description": {"text": "Gå till affären själv"},
                            "subject": {"reference": f"Patient/{patient}"}}
    if hidden:
        goal["meta"] = {"security": [NOPATIENT]}
    if by_patient:
        goal["expressedBy"] = {"reference": f"Patient/{patient}"}
    return goal


def proxy_grant(patient: str, related_person: str, *, status: str = "active") -> dict[str, Any]:
    """The patient's grant letting a relative read their plan (a permit Consent)."""
    return {
        "resourceType": "Consent", "status": status,
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient}"},
        "performer": [{"reference": f"Patient/{patient}"}],
        "provision": {"type": "permit",
                      "actor": [{"role": {"coding": [{
                          "system": "http://terminology.hl7.org/CodeSystem/v3-RoleClass",
                          "code": "AGNT"}]},
                          "reference": {"reference": f"RelatedPerson/{related_person}"}}]},
    }


def block(patient: str, organisation: str, *, status: str = "active") -> dict[str, Any]:
    """The patient's block (spärr) on a care provider or unit (a deny Consent)."""
    consent = proxy_grant(patient, "x", status=status)
    consent["provision"] = {"type": "deny", "actor": [{
        "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                             "code": "IRCP"}]},
        "reference": {"reference": f"Organization/{organisation}"}}]}
    return consent


@pytest.fixture(name="world")
async def world_fixture(secure_services: Services) -> World:
    s = secure_services
    unit_in = await _create(s, _org(UNIT_IN, "Vårdcentralen Ekbacken"))
    unit_out = await _create(s, _org(UNIT_OUT, "Vårdcentralen Norr"))
    municipality = await _create(s, _org(MUNICIPALITY, "Hemtjänsten Kalmar"))
    greta = await _create(s, _patient(GRETA_PNR, "Holm"))
    olle = await _create(s, _patient(OLLE_PNR, "Berg"))
    await _create(s, _team(greta, unit_in, municipality))
    await _create(s, _team(olle, unit_out))
    relative = await _create(s, {"resourceType": "RelatedPerson", "active": True,
                                 "patient": {"reference": f"Patient/{greta}"}})
    await _create(s, proxy_grant(greta, relative))
    return World(
        greta=greta, olle=olle,
        plan=await _create(s, _plan(greta)),
        goal=await _create(s, _goal(greta)),
        hidden_goal=await _create(s, _goal(greta, hidden=True)),
        olle_plan=await _create(s, _plan(olle)),
        unit_in=unit_in, relative=relative,
    )


# ------------------------------------------------------------------------- callers

Mint = Callable[..., str]


def _token(mint: Mint, caller: str, world: World) -> str | None:
    """The Authorization header value for each kind of caller (None: no header)."""
    tokens: dict[str, Callable[[], str]] = {
        "patient": lambda: mint("patient/*.cruds", patient=GRETA_PNR),
        "relative": lambda: mint("patient/*.rs", patient=world.greta,
                                 fhir_user=f"RelatedPerson/{world.relative}"),
        "staff-in": lambda: mint("user/*.cruds", user="SE2321000073-1001", care_unit=UNIT_IN),
        "staff-out": lambda: mint("user/*.cruds", user="SE2321000073-1999", care_unit=UNIT_OUT),
        "system-in": lambda: mint("system/*.cruds", org=MUNICIPALITY),
        "system-out": lambda: mint("system/*.cruds", org=UNKNOWN_ORG),
        "expired": lambda: mint("user/*.cruds", care_unit=UNIT_IN, lifetime_s=-3600),
        "wrong-audience": lambda: mint("user/*.cruds", care_unit=UNIT_IN,
                                       audience="https://elsewhere.example/fhir"),
        "wrong-signature": lambda: _resigned(mint("user/*.cruds", care_unit=UNIT_IN),
                                             mint("user/*.rs", care_unit=UNIT_OUT)),
    }
    if caller == "no-token":
        return None
    return f"Bearer {tokens[caller]()}"


def _resigned(token: str, other: str) -> str:
    """``token`` with the signature of ``other``: same key id, forged signature."""
    return token.rsplit(".", 1)[0] + "." + other.rsplit(".", 1)[1]


async def _do(client: httpx.AsyncClient, op: str, world: World,
              auth: str | None) -> httpx.Response:
    headers = {"Authorization": auth} if auth else {}
    if op == "read":
        return await client.get(f"/fhir/CarePlan/{world.plan}", headers=headers)
    if op == "search":
        return await client.get(f"/fhir/CarePlan?patient={world.greta}", headers=headers)
    if op == "write":
        body = {**_plan(world.greta), "id": world.plan, "title": "Ändrad överenskommelse"}
        return await client.put(f"/fhir/CarePlan/{world.plan}", json=body, headers=headers)
    if op == "delete":
        return await client.delete(f"/fhir/Goal/{world.goal}", headers=headers)
    if op == "history":
        return await client.get(f"/fhir/CarePlan/{world.plan}/_history", headers=headers)
    assert op == "include"
    return await client.get(
        f"/fhir/CarePlan?_id={world.plan}&_include=CarePlan:subject", headers=headers
    )


OPS = ("read", "search", "write", "delete", "history", "include")

#: status of each op for each caller; searches also say how many entries come back.
MATRIX: dict[str, dict[str, int | tuple[int, int]]] = {
    "patient": {"read": 200, "search": (200, 1), "write": 403, "delete": 403, "history": 200,
                "include": (200, 2)},
    "relative": {"read": 200, "search": (200, 1), "write": 403, "delete": 403, "history": 200,
                 "include": (200, 2)},
    "staff-in": {"read": 200, "search": (200, 1), "write": 200, "delete": 204, "history": 200,
                 "include": (200, 2)},
    "staff-out": {"read": 404, "search": (200, 0), "write": 404, "delete": 404, "history": 404,
                  "include": (200, 0)},
    "system-in": {"read": 200, "search": (200, 1), "write": 200, "delete": 204, "history": 200,
                  "include": (200, 2)},
    "system-out": {"read": 404, "search": (200, 0), "write": 404, "delete": 404, "history": 404,
                   "include": (200, 0)},
    **{bad: dict.fromkeys(OPS, 401)
       for bad in ("no-token", "expired", "wrong-audience", "wrong-signature")},
}

CELLS = [(caller, op) for caller in MATRIX for op in OPS]


class TestAccessMatrix:
    @pytest.mark.parametrize(("caller", "op"), CELLS, ids=[f"{c}-{o}" for c, o in CELLS])
    async def test_cell(
        self, secure_client: httpx.AsyncClient, world: World, mint: Mint, caller: str, op: str
    ) -> None:
        response = await _do(secure_client, op, world, _token(mint, caller, world))
        expected = MATRIX[caller][op]
        status, entries = expected if isinstance(expected, tuple) else (expected, None)
        assert response.status_code == status, response.text
        if status >= 400:
            body = response.json()
            assert body["resourceType"] == "OperationOutcome"
            assert body["issue"][0]["severity"] == "error"
        if status == 401:
            assert response.headers["WWW-Authenticate"].startswith('Bearer realm="samplan"')
            if caller != "no-token":
                assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
        if entries is not None:
            assert len(response.json().get("entry", [])) == entries


class TestNoExistenceLeaks:
    async def test_reading_another_patients_plan_is_404_exactly_like_a_missing_one(
        self, secure_client: httpx.AsyncClient, world: World, mint: Mint
    ) -> None:
        auth = {"Authorization": f"Bearer {mint('user/*.rs', care_unit=UNIT_IN)}"}
        outside = await secure_client.get(f"/fhir/CarePlan/{world.olle_plan}", headers=auth)
        missing = await secure_client.get("/fhir/CarePlan/does-not-exist", headers=auth)
        assert outside.status_code == missing.status_code == 404
        assert outside.json()["issue"][0]["code"] == missing.json()["issue"][0]["code"]

    async def test_an_unfiltered_search_returns_only_patients_in_reach(
        self, secure_client: httpx.AsyncClient, world: World, mint: Mint
    ) -> None:
        auth = {"Authorization": f"Bearer {mint('user/*.rs', care_unit=UNIT_IN)}"}
        plans = (await secure_client.get("/fhir/CarePlan", headers=auth)).json()
        assert [e["resource"]["id"] for e in plans["entry"]] == [world.plan]
        assert plans["total"] == 1
        patients = (await secure_client.get("/fhir/Patient", headers=auth)).json()
        assert [e["resource"]["id"] for e in patients["entry"]] == [world.greta]

    async def test_revinclude_does_not_pull_in_what_is_out_of_reach(
        self, secure_client: httpx.AsyncClient, world: World, mint: Mint
    ) -> None:
        auth = {"Authorization": f"Bearer {mint('patient/*.rs', patient=GRETA_PNR)}"}
        response = await secure_client.get(
            f"/fhir/Patient?_id={world.greta}&_revinclude=Goal:patient", headers=auth
        )
        ids = {e["resource"]["id"] for e in response.json()["entry"]}
        assert ids == {world.greta, world.goal}  # not the NOPATIENT goal


class TestProfessionalOnlyContent:
    async def test_patient_cannot_read_a_nopatient_goal(
        self, secure_client: httpx.AsyncClient, world: World, mint: Mint
    ) -> None:
        auth = {"Authorization": f"Bearer {mint('patient/*.rs', patient=GRETA_PNR)}"}
        response = await secure_client.get(f"/fhir/Goal/{world.hidden_goal}", headers=auth)
        assert response.status_code == 404

    async def test_patient_search_leaves_nopatient_content_out(
        self, secure_client: httpx.AsyncClient, world: World, mint: Mint
    ) -> None:
        auth = {"Authorization": f"Bearer {mint('patient/*.rs', patient=world.greta)}"}
        bundle = (await secure_client.get("/fhir/Goal", headers=auth)).json()
        assert [e["resource"]["id"] for e in bundle["entry"]] == [world.goal]
        assert bundle["total"] == 1

    async def test_staff_in_the_care_team_see_it(
        self, secure_client: httpx.AsyncClient, world: World, mint: Mint
    ) -> None:
        auth = {"Authorization": f"Bearer {mint('user/*.rs', care_unit=UNIT_IN)}"}
        response = await secure_client.get(f"/fhir/Goal/{world.hidden_goal}", headers=auth)
        assert response.status_code == 200


class TestPatientAuthoring:
    async def test_patient_adds_own_goal_marked_as_patient_authored(
        self, secure_client: httpx.AsyncClient, world: World, mint: Mint
    ) -> None:
        auth = {"Authorization": f"Bearer {mint('patient/Goal.cruds', patient=GRETA_PNR)}"}
        response = await secure_client.post(
            "/fhir/Goal", json=_goal(world.greta, by_patient=True), headers=auth
        )
        assert response.status_code == 201, response.text

    async def test_patient_goal_without_expressed_by_is_refused(
        self, secure_client: httpx.AsyncClient, world: World, mint: Mint
    ) -> None:
        auth = {"Authorization": f"Bearer {mint('patient/Goal.cruds', patient=GRETA_PNR)}"}
        response = await secure_client.post("/fhir/Goal", json=_goal(world.greta), headers=auth)
        assert response.status_code == 403
        assert response.json()["issue"][0]["code"] == "forbidden"

    async def test_patient_cannot_write_for_someone_else(
        self, secure_client: httpx.AsyncClient, world: World, mint: Mint
    ) -> None:
        auth = {"Authorization": f"Bearer {mint('patient/Goal.cruds', patient=GRETA_PNR)}"}
        goal = _goal(world.olle)
        goal["expressedBy"] = {"reference": f"Patient/{world.olle}"}
        response = await secure_client.post("/fhir/Goal", json=goal, headers=auth)
        assert response.status_code == 403


class TestScopes:
    async def test_a_type_the_scopes_do_not_name_is_403_insufficient_scope(
        self, secure_client: httpx.AsyncClient, world: World, mint: Mint
    ) -> None:
        auth = {"Authorization": f"Bearer {mint('user/Goal.rs', care_unit=UNIT_IN)}"}
        response = await secure_client.get(f"/fhir/CarePlan/{world.plan}", headers=auth)
        assert response.status_code == 403
        assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]

    async def test_read_scope_does_not_allow_search(
        self, secure_client: httpx.AsyncClient, world: World, mint: Mint
    ) -> None:
        auth = {"Authorization": f"Bearer {mint('user/CarePlan.r', care_unit=UNIT_IN)}"}
        assert (await secure_client.get(f"/fhir/CarePlan/{world.plan}",
                                        headers=auth)).status_code == 200
        assert (await secure_client.get("/fhir/CarePlan", headers=auth)).status_code == 403

    async def test_v1_read_scope_does_not_allow_writes(
        self, secure_client: httpx.AsyncClient, world: World, mint: Mint
    ) -> None:
        auth = {"Authorization": f"Bearer {mint('system/*.read', org=MUNICIPALITY)}"}
        response = await secure_client.delete(f"/fhir/Goal/{world.goal}", headers=auth)
        assert response.status_code == 403

    async def test_staff_create_careplan_for_patient_in_reach(
        self, secure_client: httpx.AsyncClient, world: World, mint: Mint
    ) -> None:
        auth = {"Authorization": f"Bearer {mint('user/*.cruds', care_unit=UNIT_IN)}"}
        ok = await secure_client.post("/fhir/CarePlan", json=_plan(world.greta), headers=auth)
        refused = await secure_client.post("/fhir/CarePlan", json=_plan(world.olle),
                                           headers=auth)
        assert (ok.status_code, refused.status_code) == (201, 403)

    async def test_staff_bring_a_patient_into_reach_with_a_care_team_naming_their_unit(
        self, secure_client: httpx.AsyncClient, world: World, mint: Mint
    ) -> None:
        auth = {"Authorization": f"Bearer {mint('user/*.cruds', care_unit=UNIT_IN)}"}
        assert (await secure_client.get(f"/fhir/CarePlan/{world.olle_plan}",
                                        headers=auth)).status_code == 404
        team = await secure_client.post("/fhir/CareTeam", json=_team(world.olle, world.unit_in),
                                        headers=auth)
        assert team.status_code == 201
        assert (await secure_client.get(f"/fhir/CarePlan/{world.olle_plan}",
                                        headers=auth)).status_code == 200


class TestBundles:
    async def test_transaction_writing_out_of_reach_rolls_back_entirely(
        self, secure_client: httpx.AsyncClient, world: World, mint: Mint
    ) -> None:
        auth = {"Authorization": f"Bearer {mint('user/*.cruds', care_unit=UNIT_IN)}"}
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"request": {"method": "POST", "url": "Goal"}, "resource": _goal(world.greta)},
            {"request": {"method": "POST", "url": "Goal"}, "resource": _goal(world.olle)},
        ]}
        response = await secure_client.post("/fhir", json=bundle, headers=auth)
        assert response.status_code == 403
        goals = (await secure_client.get(f"/fhir/Goal?patient={world.greta}",
                                         headers=auth)).json()
        assert len(goals["entry"]) == 2  # the two seeded goals only: nothing was written

    async def test_transaction_entry_without_scope_is_403_pointing_at_the_entry(
        self, secure_client: httpx.AsyncClient, world: World, mint: Mint
    ) -> None:
        auth = {"Authorization": f"Bearer {mint('user/Goal.cruds', care_unit=UNIT_IN)}"}
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"request": {"method": "POST", "url": "Goal"}, "resource": _goal(world.greta)},
            {"request": {"method": "POST", "url": "CarePlan"}, "resource": _plan(world.greta)},
        ]}
        response = await secure_client.post("/fhir", json=bundle, headers=auth)
        assert response.status_code == 403
        assert response.json()["issue"][0]["expression"] == ["Bundle.entry[1]"]

    async def test_batch_reads_are_filtered_per_entry(
        self, secure_client: httpx.AsyncClient, world: World, mint: Mint
    ) -> None:
        auth = {"Authorization": f"Bearer {mint('user/*.rs', care_unit=UNIT_IN)}"}
        bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": f"CarePlan/{world.plan}"}},
            {"request": {"method": "GET", "url": f"CarePlan/{world.olle_plan}"}},
            {"request": {"method": "DELETE", "url": f"Goal/{world.goal}"}},
        ]}
        response = await secure_client.post("/fhir", json=bundle, headers=auth)
        assert response.status_code == 200
        statuses = [e["response"]["status"] for e in response.json()["entry"]]
        assert statuses == ["200 OK", "404 Not Found", "403 Forbidden"]


class TestHistoryAndConditionals:
    async def test_system_history_shows_only_what_is_in_reach(
        self, secure_client: httpx.AsyncClient, world: World, mint: Mint
    ) -> None:
        auth = {"Authorization": f"Bearer {mint('user/*.rs', care_unit=UNIT_OUT)}"}
        bundle = (await secure_client.get("/fhir/_history?_count=100", headers=auth)).json()
        seen = {(e["resource"]["resourceType"], e["resource"]["id"])
                for e in bundle.get("entry", []) if "resource" in e}
        assert ("CarePlan", world.olle_plan) in seen
        assert ("CarePlan", world.plan) not in seen
        assert ("Patient", world.greta) not in seen

    async def test_if_none_exist_matching_a_hidden_resource_does_not_return_it(
        self, secure_client: httpx.AsyncClient, world: World, mint: Mint
    ) -> None:
        auth = {"Authorization": f"Bearer {mint('user/*.cruds', care_unit=UNIT_OUT)}",
                "If-None-Exist": f"identifier={PNR_SYSTEM}|{GRETA_PNR}"}
        response = await secure_client.post("/fhir/Patient", json=_patient(GRETA_PNR, "Holm"),
                                            headers=auth)
        # one personnummer names one Patient: staff learn it is registered (as a second
        # registration would, 409), never which Patient it is or what it holds
        assert response.status_code == 403
        assert world.greta not in response.text
        assert "Holm" not in response.text


class TestWritesThatChangeThePatient:
    """A write is checked on the version it replaces and on the new one (issue 7: the
    reach is asked among the new version's patients first, and again for the old one's)."""

    async def test_moving_a_plan_in_reach_to_a_patient_out_of_reach_is_403(
        self, secure_client: httpx.AsyncClient, world: World, mint: Mint
    ) -> None:
        auth = {"Authorization": f"Bearer {mint('user/*.cruds', care_unit=UNIT_IN)}"}
        body = {**_plan(world.olle), "id": world.plan}
        response = await secure_client.put(f"/fhir/CarePlan/{world.plan}", json=body,
                                           headers=auth)
        assert response.status_code == 403, response.text
        kept = await secure_client.get(f"/fhir/CarePlan/{world.plan}", headers=auth)
        assert kept.json()["subject"] == {"reference": f"Patient/{world.greta}"}

    async def test_taking_over_a_plan_out_of_reach_for_a_patient_in_reach_is_404(
        self, secure_client: httpx.AsyncClient, world: World, mint: Mint
    ) -> None:
        auth = {"Authorization": f"Bearer {mint('user/*.cruds', care_unit=UNIT_IN)}"}
        body = {**_plan(world.greta), "id": world.olle_plan}
        response = await secure_client.put(f"/fhir/CarePlan/{world.olle_plan}", json=body,
                                           headers=auth)
        missing = await secure_client.put("/fhir/CarePlan/does-not-exist", headers=auth,
                                          json={**_plan(world.olle), "id": "does-not-exist"})
        assert (response.status_code, missing.status_code) == (404, 403)
        other = {"Authorization": f"Bearer {mint('user/*.cruds', care_unit=UNIT_OUT)}"}
        kept = await secure_client.get(f"/fhir/CarePlan/{world.olle_plan}", headers=other)
        assert kept.json()["subject"] == {"reference": f"Patient/{world.olle}"}
