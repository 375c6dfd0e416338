"""The access log over HTTP: every access to patient data leaves an AuditEvent, and only
those with an audit scope (or the patient, for their own) can read the log."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.auditevent import AuditEvent
from sqlalchemy import text

from samplan.api.deps import Services
from samplan.store import audit as audit_store

from .test_http_matrix import (
    GRETA_PNR,
    UNIT_IN,
    UNIT_OUT,
    World,
    _goal,
    _plan,
    world_fixture,  # noqa: F401  (the `world` fixture)
)

Mint = Callable[..., str]
STAFF_HSA = "SE2321000073-1001"


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _log(client: httpx.AsyncClient, admin: str, query: str) -> list[dict[str, Any]]:
    response = await client.get(f"/fhir/AuditEvent?{query}", headers=_auth(admin))
    assert response.status_code == 200, response.text
    return [e["resource"] for e in response.json().get("entry", [])]


def _summary(event: dict[str, Any]) -> tuple[str, str, str, str]:
    """(interaction, who, outcome, what) of one AuditEvent."""
    who = event["agent"][0]["who"]
    name = who.get("identifier", {}).get("value") or who.get("reference") or who.get("display")
    what = next((e["what"]["reference"] for e in event.get("entity", [])
                 if "what" in e and not e["what"]["reference"].startswith("Patient/")), "")
    return event["subtype"][0]["code"], name, event["outcome"], what.split("/_history")[0]


class TestScriptedSession:
    async def test_every_access_to_gretas_data_is_in_the_log(
        self, secure_client: httpx.AsyncClient, world: World, mint: Mint
    ) -> None:
        staff = _auth(mint("user/*.cruds", user=STAFF_HSA, care_unit=UNIT_IN))
        patient = _auth(mint("patient/*.rs", patient=GRETA_PNR))
        outsider = _auth(mint("user/*.rs", user="SE2321000073-1999", care_unit=UNIT_OUT))
        plan = f"CarePlan/{world.plan}"

        assert (await secure_client.get(f"/fhir/{plan}", headers=staff)).status_code == 200
        assert (await secure_client.get(f"/fhir/CarePlan?patient={world.greta}",
                                        headers=staff)).status_code == 200
        body = {**_plan(world.greta), "id": world.plan, "title": "Ny"}
        assert (await secure_client.put(f"/fhir/{plan}", json=body,
                                        headers=staff)).status_code == 200
        assert (await secure_client.delete(f"/fhir/Goal/{world.goal}",
                                           headers=staff)).status_code == 204
        assert (await secure_client.get(f"/fhir/{plan}", headers=patient)).status_code == 200
        assert (await secure_client.get(f"/fhir/{plan}", headers=outsider)).status_code == 404

        admin = mint("user/AuditEvent.rs", user="SE2321000073-0001", care_unit=UNIT_IN)
        events = await _log(secure_client, admin, f"patient={world.greta}&_count=100")
        for event in events:
            AuditEvent.model_validate(event)
            assert event["entity"][0]["what"]["reference"] == f"Patient/{world.greta}"
        session = [e for e in events if e["agent"][0]["who"].get("display") != "samplan"]
        assert all(e["agent"][0]["network"]["address"] for e in session)  # from where
        mine = [_summary(e) for e in session]
        assert mine == [  # newest first
            ("read", "SE2321000073-1999", "4", plan),
            ("read", GRETA_PNR, "0", plan),
            ("delete", STAFF_HSA, "0", f"Goal/{world.goal}"),
            ("update", STAFF_HSA, "0", plan),
            ("search-type", STAFF_HSA, "0", plan),
            ("read", STAFF_HSA, "0", plan),
        ]

    async def test_staff_entries_name_their_care_unit(
        self, secure_client: httpx.AsyncClient, world: World, mint: Mint
    ) -> None:
        staff = _auth(mint("user/*.rs", user=STAFF_HSA, care_unit=UNIT_IN))
        await secure_client.get(f"/fhir/CarePlan/{world.plan}", headers=staff)
        admin = mint("user/AuditEvent.rs", care_unit=UNIT_IN)
        [event] = await _log(secure_client, admin, f"agent={STAFF_HSA}")
        units = [a["who"]["identifier"]["value"] for a in event["agent"][1:]]
        assert units == [UNIT_IN]
        assert event["action"] == "R"


# "Disk full" for the access log only: every insert into it fails inside the database.
_REFUSE_LOG = {
    "sqlite": ["CREATE TRIGGER refuse_log BEFORE INSERT ON audit_events "
               "BEGIN SELECT RAISE(ABORT, 'disk full'); END"],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION refuse_log() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'disk full'; END $$",
        "CREATE TRIGGER refuse_log BEFORE INSERT ON audit_events "
        "FOR EACH ROW EXECUTE FUNCTION refuse_log()",
    ],
}


class TestWritesLogInTheirTransaction:
    async def test_a_refused_write_commits_no_success_entry(
        self, secure_client: httpx.AsyncClient, world: World, mint: Mint
    ) -> None:
        staff = _auth(mint("user/*.cruds", user=STAFF_HSA, care_unit=UNIT_IN))
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"request": {"method": "POST", "url": "Goal"}, "resource": _goal(world.greta)},
            {"request": {"method": "POST", "url": "Goal"}, "resource": _goal(world.olle)},
        ]}
        assert (await secure_client.post("/fhir", json=bundle, headers=staff)).status_code == 403
        admin = mint("user/AuditEvent.rs", care_unit=UNIT_IN)
        created = await _log(secure_client, admin, f"agent={STAFF_HSA}&subtype=create")
        assert [e["outcome"] for e in created] == ["4"]  # only the refusal

    async def test_reads_fail_closed_when_the_log_cannot_be_written(
        self, secure_app_services: tuple[object, Services], world: World, mint: Mint,
    ) -> None:
        """The database itself refuses the log entry (a trigger, not a patched function):
        the read answers 500 and shows nothing of the plan."""
        app, services = secure_app_services
        engine = services.gate.engine
        staff = _auth(mint("user/*.rs", care_unit=UNIT_IN))
        async with engine.begin() as conn:
            for statement in _REFUSE_LOG[engine.dialect.name]:
                await conn.execute(text(statement))
        try:
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url="http://samplan.test") as c:
                response = await c.get(f"/fhir/CarePlan/{world.plan}", headers=staff)
        finally:
            async with engine.begin() as conn:
                await conn.execute(text("DROP TRIGGER IF EXISTS refuse_log"
                                        + (" ON audit_events" if engine.dialect.name != "sqlite"
                                           else "")))
        assert response.status_code == 500
        assert response.json()["issue"][0]["code"] == "exception"
        assert "Överenskommelse" not in response.text
        assert "Överenskommelse" not in response.text


class TestReadingTheLog:
    @pytest.mark.usefixtures("world")
    async def test_needs_a_scope_that_names_audit_event(
        self, secure_client: httpx.AsyncClient, mint: Mint
    ) -> None:
        staff = _auth(mint("user/*.cruds", care_unit=UNIT_IN))
        response = await secure_client.get("/fhir/AuditEvent", headers=staff)
        assert response.status_code == 403

    @pytest.mark.parametrize(("method", "path"), [
        ("POST", "/fhir/AuditEvent"), ("PUT", "/fhir/AuditEvent/x"),
        ("DELETE", "/fhir/AuditEvent/x"), ("PATCH", "/fhir/AuditEvent/x"),
    ])
    async def test_cannot_be_changed_through_the_api(
        self, secure_client: httpx.AsyncClient, mint: Mint, method: str, path: str
    ) -> None:
        admin = _auth(mint("user/AuditEvent.cruds", care_unit=UNIT_IN))
        body = {"resourceType": "AuditEvent", "id": "x"}
        headers = {**admin, "Content-Type": "application/json-patch+json"
                   if method == "PATCH" else "application/fhir+json"}
        response = await secure_client.request(method, path, json=[] if method == "PATCH"
                                               else body, headers=headers)
        assert response.status_code == 405
        assert response.json()["issue"][0]["code"] == "not-supported"

    async def test_patient_gets_their_own_extract_only(
        self, secure_client: httpx.AsyncClient, world: World, mint: Mint
    ) -> None:
        staff_in = _auth(mint("user/*.rs", user=STAFF_HSA, care_unit=UNIT_IN))
        staff_out = _auth(mint("user/*.rs", care_unit=UNIT_OUT))
        await secure_client.get(f"/fhir/CarePlan/{world.plan}", headers=staff_in)
        await secure_client.get(f"/fhir/CarePlan/{world.olle_plan}", headers=staff_out)
        greta = mint("patient/AuditEvent.rs patient/*.rs", patient=GRETA_PNR)
        own = await _log(secure_client, greta, "")
        assert {e["entity"][0]["what"]["reference"] for e in own} == {f"Patient/{world.greta}"}
        assert await _log(secure_client, greta, f"patient={world.olle}") == []
        one = own[0]["id"]
        response = await secure_client.get(f"/fhir/AuditEvent/{one}", headers=_auth(greta))
        assert response.status_code == 200
        olles = await _log(secure_client, mint("user/AuditEvent.rs", care_unit=UNIT_IN),
                           f"patient={world.olle}")
        hidden = await secure_client.get(f"/fhir/AuditEvent/{olles[0]['id']}",
                                         headers=_auth(greta))
        assert hidden.status_code == 404

    async def test_search_by_date(
        self, secure_client: httpx.AsyncClient, world: World, mint: Mint
    ) -> None:
        staff = _auth(mint("user/*.rs", care_unit=UNIT_IN))
        await secure_client.get(f"/fhir/CarePlan/{world.plan}", headers=staff)
        admin = mint("user/AuditEvent.rs", care_unit=UNIT_IN)
        assert await _log(secure_client, admin, "date=lt2000-01-01") == []
        recent = await _log(secure_client, admin, "date=ge2020-01-01&date=lt2999-01-01&action=R")
        assert recent
        assert {e["action"] for e in recent} == {"R"}


async def test_internal_writes_are_logged_as_the_service(
    secure_services: Services, world: World
) -> None:
    rows, total = await audit_store.search(
        secure_services.gate.engine, audit_store.AuditSearch(patients=(world.greta,), count=100)
    )
    assert total >= 5  # the seeded resources, written by the service itself
    assert all(b'"display":"samplan"' in r.content for r in rows)
