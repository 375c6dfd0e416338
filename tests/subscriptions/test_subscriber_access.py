"""Notifications carry only what the subscriber may read, and every one is in the access log.

The world is the security matrix's (tests/security/test_http_matrix.py): Greta
is cared for by UNIT_IN and the municipality, Olle by UNIT_OUT. Changes are
written by the service itself, so the only access decisions are the
subscribers'.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from samplan.api.deps import Services
from samplan.security.notifications import screen
from samplan.security.subscriber import SubscriberAccess, principal_of
from samplan.store.tables import audit_events, subscriptions
from samplan.subscriptions.bench import subscription_body
from samplan.subscriptions.receiver import Receiver
from samplan.subscriptions.worker import Worker
from security.test_http_matrix import (  # noqa: F401  (world_fixture is a fixture)
    GRETA_PNR,
    MUNICIPALITY,
    UNIT_IN,
    UNIT_OUT,
    Mint,
    World,
    _goal,
    _plan,
    block,
    world_fixture,
)
from subscriptions.helpers import SECRET


def staff_in(mint: Mint) -> str:
    return mint("user/*.cruds", user="SE2321000073-1001", care_unit=UNIT_IN)


def staff_out(mint: Mint) -> str:
    return mint("user/*.cruds", user="SE2321000073-1999", care_unit=UNIT_OUT)


async def subscribe_as(client: httpx.AsyncClient, token: str, endpoint: str, *,
                       content: str = "id-only", criteria: str | None = None) -> str:
    body = subscription_body(endpoint, SECRET, content=content, criteria=criteria)
    response = await client.post("/fhir/Subscription", json=body,
                                 headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201, response.text
    sid: str = response.json()["id"]
    return sid


async def change(services: Services, world: World, title: str, *, olle: bool = False) -> None:
    """Update Greta's (or Olle's) plan as the service itself."""
    rid = world.olle_plan if olle else world.plan
    body = {**_plan(world.olle if olle else world.greta), "id": rid, "title": title}
    await services.gate.as_service().update("CarePlan", rid, body)


async def events_bundle(client: httpx.AsyncClient, token: str, sid: str,
                        **params: str) -> dict[str, Any]:
    response = await client.get(f"/fhir/Subscription/{sid}/$events", params=params,
                                headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    bundle: dict[str, Any] = response.json()
    return bundle


def notification_events(bundle: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(event number, focus reference or None) of each notification-event."""
    out = []
    for parameter in bundle["entry"][0]["resource"]["parameter"]:
        if parameter["name"] != "notification-event":
            continue
        parts = {p["name"]: p for p in parameter["part"]}
        focus = parts.get("focus")
        out.append((parts["event-number"]["valueString"],
                    focus["valueReference"]["reference"].split("/fhir/")[1] if focus else None))
    return out


def count_of(bundle: dict[str, Any]) -> str:
    return next(p["valueString"] for p in bundle["entry"][0]["resource"]["parameter"]
                if p["name"] == "events-since-subscription-start")


async def notify_entries(services: Services) -> list[Any]:
    a = audit_events.c
    async with services.gate.engine.connect() as conn:
        return list((await conn.execute(
            select(a.patient_id, a.agent_unit_hsa_id, a.agent_org_hsa_id, a.agent_kind,
                   a.content).where(a.interaction == "notify").order_by(a.seq)
        )).all())


class TestStoredFacts:
    @pytest.mark.usefixtures("world")
    async def test_the_writer_s_access_facts_are_kept_not_the_token(
        self, secure_client: httpx.AsyncClient, secure_services: Services,
        mint: Mint, receiver: Receiver,
    ) -> None:
        token = staff_in(mint)
        sid = await subscribe_as(secure_client, token, receiver.url)
        async with secure_services.gate.engine.connect() as conn:
            stored = (await conn.execute(
                select(subscriptions.c.subscriber).where(subscriptions.c.id == sid))).scalar()
        assert stored is not None
        assert token not in stored
        facts = SubscriberAccess.from_json(stored)
        assert facts is not None
        assert (facts.kind, facts.care_unit_hsa_id, facts.scopes) == ("staff", UNIT_IN,
                                                                       "user/*.cruds")
        # a write by the service itself (as the worker's status changes) keeps the facts
        service = secure_services.gate.as_service()
        current = orjson.loads((await service.read("Subscription", sid)).content)
        await service.update("Subscription", sid, {**current, "reason": "ny"})
        async with secure_services.gate.engine.connect() as conn:
            again = (await conn.execute(
                select(subscriptions.c.subscriber).where(subscriptions.c.id == sid))).scalar()
        assert again == stored

    def test_facts_round_trip_and_unreadable_facts_reach_nobody(self) -> None:
        facts = SubscriberAccess(kind="system", subject="s", scopes="system/CarePlan.rs",
                                 organisation_hsa_id=MUNICIPALITY)
        assert SubscriberAccess.from_json(facts.to_json()) == facts
        assert principal_of(None) is None
        broken = principal_of("{not json")
        assert broken is not None
        assert broken.kind == "patient"
        assert broken.patient is None


class TestMatchTime:
    async def test_a_change_outside_reach_is_no_event(
        self, secure_client: httpx.AsyncClient, secure_services: Services, world: World,
        mint: Mint, receiver: Receiver,
    ) -> None:
        inside, outside = staff_in(mint), staff_out(mint)
        sid_in = await subscribe_as(secure_client, inside, receiver.url)
        sid_out = await subscribe_as(secure_client, outside, receiver.url)
        await change(secure_services, world, "Gretas plan, ändrad")
        await change(secure_services, world, "Olles plan, ändrad", olle=True)
        seen_in = await events_bundle(secure_client, inside, sid_in)
        seen_out = await events_bundle(secure_client, outside, sid_out)
        assert notification_events(seen_in) == [("1", f"CarePlan/{world.plan}")]
        assert notification_events(seen_out) == [("1", f"CarePlan/{world.olle_plan}")]
        assert count_of(seen_in) == count_of(seen_out) == "1"

    async def test_reach_is_asked_inside_the_write_transaction(
        self, secure_client: httpx.AsyncClient, world: World, mint: Mint, receiver: Receiver,
    ) -> None:
        """A care team and plan created together: the plan's event sees the new team."""
        token = staff_in(mint)
        sid = await subscribe_as(secure_client, token, receiver.url)
        patient, team = "urn:uuid:0d6c1a52-8a4b-4a43-9a55-0c1e2f3a4b5c", \
            "urn:uuid:5b1f0e2d-3c4a-4b6d-8e7f-9a0b1c2d3e4f"
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": patient, "resource": {"resourceType": "Patient",
                                              "name": [{"family": "Ny"}]},
             "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": team, "resource": {
                "resourceType": "CareTeam", "status": "active",
                "subject": {"reference": patient},
                "participant": [{"member": {"reference": f"Organization/{world.unit_in}"}}]},
             "request": {"method": "POST", "url": "CareTeam"}},
            {"resource": {**_plan("x"), "subject": {"reference": patient},
                          "careTeam": [{"reference": team}]},
             "request": {"method": "POST", "url": "CarePlan"}},
        ]}
        response = await secure_client.post("/fhir", json=bundle,
                                            headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text
        seen = notification_events(await events_bundle(secure_client, token, sid))
        assert [(n, (f or "withheld").split("/")[0]) for n, f in seen] == [
            ("1", "CareTeam"), ("2", "CarePlan")]

    async def test_a_blocked_patient_s_changes_are_no_events(
        self, secure_client: httpx.AsyncClient, secure_services: Services, world: World,
        mint: Mint, receiver: Receiver,
    ) -> None:
        token = staff_in(mint)
        sid = await subscribe_as(secure_client, token, receiver.url)
        await secure_services.gate.as_service().create("Consent", block(world.greta, world.unit_in))
        await change(secure_services, world, "efter spärren")
        assert count_of(await events_bundle(secure_client, token, sid)) == "0"

    async def test_a_type_the_scopes_do_not_name_is_no_event(
        self, secure_client: httpx.AsyncClient, secure_services: Services, world: World,
        mint: Mint, receiver: Receiver,
    ) -> None:
        token = mint("system/Subscription.cruds system/Goal.rs", org=MUNICIPALITY)
        sid = await subscribe_as(secure_client, token, receiver.url)
        await change(secure_services, world, "planen ändras")
        assert count_of(await events_bundle(secure_client, token, sid)) == "0"


class TestAtDeliveryAndEvents:
    async def test_an_event_no_longer_visible_is_withheld_but_keeps_its_number(
        self, secure_client: httpx.AsyncClient, secure_services: Services, world: World,
        mint: Mint, receiver: Receiver,
    ) -> None:
        token = staff_in(mint)
        sid = await subscribe_as(secure_client, token, receiver.url, content="full-resource")
        await change(secure_services, world, "före spärren")
        before = await events_bundle(secure_client, token, sid)
        assert notification_events(before) == [("1", f"CarePlan/{world.plan}")]
        assert before["entry"][1]["resource"]["title"] == "före spärren"
        await secure_services.gate.as_service().create("Consent", block(world.greta, world.unit_in))
        after = await events_bundle(secure_client, token, sid)
        assert notification_events(after) == [("1", None)]
        assert len(after["entry"]) == 1  # no focus entry, no resource

    async def test_events_are_screened_for_the_caller_too(
        self, secure_client: httpx.AsyncClient, secure_services: Services, world: World,
        mint: Mint, receiver: Receiver,
    ) -> None:
        sid = await subscribe_as(secure_client, staff_in(mint), receiver.url)
        await change(secure_services, world, "ändrad")
        # a colleague at the same unit whose scopes name no CarePlan: the event is withheld
        colleague = mint("user/Subscription.rs", user="SE2321000073-1002", care_unit=UNIT_IN)
        other = await events_bundle(secure_client, colleague, sid)
        assert notification_events(other) == [("1", None)]
        assert len(other["entry"]) == 1
        # another unit: the Subscription is not theirs, so it does not exist for them
        response = await secure_client.get(
            f"/fhir/Subscription/{sid}/$events",
            headers={"Authorization": f"Bearer {staff_out(mint)}"})
        assert response.status_code == 404

    async def test_full_resources_only_with_read_scope(
        self, secure_client: httpx.AsyncClient, secure_services: Services, world: World,
        mint: Mint, receiver: Receiver,
    ) -> None:
        search_only = mint("system/Subscription.cruds system/CarePlan.s", org=MUNICIPALITY)
        reader = mint("system/Subscription.cruds system/CarePlan.rs", org=MUNICIPALITY)
        sid = await subscribe_as(secure_client, search_only, receiver.url,
                                 content="full-resource")
        sid_reader = await subscribe_as(secure_client, reader, receiver.url,
                                        content="full-resource")
        await change(secure_services, world, "med full resurs")
        bare = await events_bundle(secure_client, search_only, sid)
        assert notification_events(bare) == [("1", f"CarePlan/{world.plan}")]
        assert "resource" not in bare["entry"][1]
        full = await events_bundle(secure_client, reader, sid_reader)
        assert full["entry"][1]["resource"]["title"] == "med full resurs"

    async def test_events_fetched_are_in_the_access_log(
        self, secure_client: httpx.AsyncClient, secure_services: Services, world: World,
        mint: Mint, receiver: Receiver,
    ) -> None:
        token = staff_in(mint)
        sid = await subscribe_as(secure_client, token, receiver.url)
        await change(secure_services, world, "loggas")
        await events_bundle(secure_client, token, sid)
        entries = await notify_entries(secure_services)
        assert [(e.patient_id, e.agent_unit_hsa_id) for e in entries] == [(world.greta, UNIT_IN)]
        event = orjson.loads(entries[0].content)
        assert event["subtype"][0]["code"] == "notify"
        assert {"reference": f"CarePlan/{world.plan}"} in [e["what"] for e in event["entity"]
                                                           if "what" in e]
        # and the patient sees it in their own extract
        patient = mint("patient/*.rs patient/AuditEvent.rs", patient=GRETA_PNR)
        extract = await secure_client.get("/fhir/AuditEvent?subtype=notify",
                                          headers={"Authorization": f"Bearer {patient}"})
        assert extract.status_code == 200
        assert extract.json()["total"] == 1


class Recorder:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(orjson.loads(request.content))
        return httpx.Response(200)


async def run_tick(worker: Worker) -> None:
    await worker.tick()
    while worker.tasks:
        await asyncio.gather(*list(worker.tasks))


class TestWorkerDelivery:
    async def test_delivered_notifications_are_screened_and_logged(
        self, secure_client: httpx.AsyncClient, secure_services: Services, world: World,
        mint: Mint, receiver: Receiver,
    ) -> None:
        recorder = Recorder()
        http = httpx.AsyncClient(transport=httpx.MockTransport(recorder))
        worker = Worker(secure_services.gate, http, secure_services.settings,
                        secure_services.subscriptions.box)
        sid = await subscribe_as(secure_client, mint("system/*.cruds", org=MUNICIPALITY),
                                 receiver.url, content="full-resource")
        await run_tick(worker)  # handshake
        await change(secure_services, world, "första")
        await run_tick(worker)
        await change(secure_services, world, "andra")
        await secure_services.gate.as_service().create("Consent", block(world.greta,
                                                           await _municipality(secure_services)))
        await run_tick(worker)
        await http.aclose()
        first, second = recorder.bodies[1], recorder.bodies[2]
        assert notification_events(first) == [("1", f"CarePlan/{world.plan}")]
        assert first["entry"][1]["resource"]["title"] == "första"
        assert notification_events(second) == [("2", None)]
        assert len(second["entry"]) == 1
        entries = await notify_entries(secure_services)
        assert [(e.patient_id, e.agent_kind, e.agent_org_hsa_id) for e in entries] == [
            (world.greta, "system", MUNICIPALITY)]
        assert sid in orjson.loads(entries[0].content)["entity"][1]["what"]["reference"]


async def _municipality(services: Services) -> str:
    _, page = await services.gate.as_service().search(
        "Organization", [("identifier", f"urn:oid:1.2.752.29.4.19|{MUNICIPALITY}")])
    return page.matches[0].resource_id


class TestScreenPolicy:
    async def test_nopatient_content_never_to_patients_or_relatives(
        self, secure_services: Services, world: World,
    ) -> None:
        control = secure_services.gate.resolver
        hidden = {**_goal(world.greta, hidden=True), "id": world.hidden_goal}
        plain = {**_goal(world.greta), "id": world.goal}
        patient = SubscriberAccess(kind="patient", subject="greta", scopes="patient/*.rs",
                                   patient=GRETA_PNR).principal()
        relative = SubscriberAccess(kind="relative", subject="anna", scopes="patient/*.rs",
                                    patient=world.greta,
                                    fhir_user=f"RelatedPerson/{world.relative}").principal()
        staff = SubscriberAccess(kind="staff", subject="s", scopes="user/*.rs",
                                 care_unit_hsa_id=UNIT_IN).principal()
        focuses = [("Goal", hidden), ("Goal", plain)]
        for who in (patient, relative):
            verdicts = await screen(control, [who], focuses)
            assert [v.visible for v in verdicts] == [False, True]
        verdicts = await screen(control, [staff], focuses)
        assert [v.visible for v in verdicts] == [True, True]
        assert verdicts[0].patients == (world.greta,)
        assert [v.visible for v in await screen(control, [None], focuses)] == [True, True]
        assert [v.visible for v in await screen(control, [staff, patient], focuses)] == [
            False, True]
