"""Nothing is lost: a real receiver, real `samplan worker` processes, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from factories import make_bundle, make_care_team, make_careplan, make_entry, make_patient
from samplan.api.deps import Services
from samplan.store.tables import subscription_attempts, subscription_events
from samplan.subscriptions.receiver import Receiver
from subscriptions.helpers import subscribe, subscribe_active, wait_status


async def create(client: httpx.AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def update(client: httpx.AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    response = await client.put(f"/fhir/{resource['resourceType']}/{resource['id']}",
                                json=resource)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def agreement(
    client: httpx.AsyncClient, pnr: str = "194501011235"
) -> tuple[str, dict[str, Any]]:
    patient = await create(client, make_patient(pnr=pnr))
    plan = await create(client, make_careplan(patient_id=patient["id"]))
    return patient["id"], plan


def in_order_without_gaps(numbers: list[int], count: int) -> bool:
    """First arrivals are 1..count in order (later duplicates of a number are allowed)."""
    first: list[int] = []
    for n in numbers:
        if n not in first:
            first.append(n)
    return first == list(range(1, count + 1))


class TestOneNotificationPerChange:
    @pytest.mark.usefixtures("worker")
    async def test_each_change_arrives_once_in_order_signed(
        self, client: httpx.AsyncClient, receiver: Receiver
    ) -> None:
        patient_id, plan = await agreement(client)
        other_id, other_plan = await agreement(client, pnr="193803152341")
        sid = await subscribe_active(client, receiver,
                                     criteria=f"CarePlan?patient=Patient/{patient_id}")
        [handshake] = receiver.notifications(sid, kind="handshake")
        assert handshake.status["status"] == "requested"
        assert handshake.signature_ok

        for i in range(3):
            plan["description"] = f"version {i}"
            plan = await update(client, plan)
        await update(client, {**other_plan, "description": "not followed"})
        team = await create(client, make_care_team(patient_id=patient_id))  # not in a plan yet
        plan = await update(client, {**plan,
                                     "careTeam": [{"reference": f"CareTeam/{team['id']}"}]})
        team = await update(client, {**team, "name": "Hemtjänst Ekbacken"})
        assert (await client.delete(f"/fhir/CarePlan/{plan['id']}")).status_code == 204

        await receiver.wait_for(lambda: len(receiver.event_numbers(sid)) >= 6)
        await asyncio.sleep(0.3)  # nothing more may come
        notes = receiver.notifications(sid)
        assert [n.event_numbers for n in notes] == [[1], [2], [3], [4], [5], [6]]
        assert all(n.signature_ok for n in notes)
        assert all(n.headers["content-type"] == "application/fhir+json" for n in notes)
        focus = [(e["request"]["method"], e["request"]["url"], e["response"]["etag"])
                 for n in notes for e in n.bundle["entry"][1:]]
        assert focus == [
            ("PUT", f"CarePlan/{plan['id']}", 'W/"2"'),
            ("PUT", f"CarePlan/{plan['id']}", 'W/"3"'),
            ("PUT", f"CarePlan/{plan['id']}", 'W/"4"'),
            ("PUT", f"CarePlan/{plan['id']}", 'W/"5"'),
            ("PUT", f"CareTeam/{team['id']}", 'W/"2"'),
            ("DELETE", f"CarePlan/{plan['id']}", 'W/"6"'),
        ]
        assert notes[-1].status["events-since-subscription-start"] == "6"
        assert other_id != patient_id

    @pytest.mark.usefixtures("worker")
    async def test_full_resource_payload_carries_the_version_that_changed(
        self, client: httpx.AsyncClient, receiver: Receiver
    ) -> None:
        patient_id, plan = await agreement(client)
        sid = await subscribe_active(client, receiver, content="full-resource")
        plan = await update(client, {**plan, "description": "first"})
        await update(client, {**plan, "description": "second"})
        await receiver.wait_for(lambda: len(receiver.event_numbers(sid)) >= 2)
        resources = [n.bundle["entry"][1]["resource"] for n in receiver.notifications(sid)]
        assert [(r["meta"]["versionId"], r["description"]) for r in resources] == [
            ("2", "first"), ("3", "second")]
        assert resources[0]["subject"] == {"reference": f"Patient/{patient_id}"}

    @pytest.mark.usefixtures("worker")
    async def test_heartbeats_come_when_nothing_happens(
        self, client: httpx.AsyncClient, receiver: Receiver
    ) -> None:
        sid = await subscribe_active(client, receiver, heartbeat=1)
        await receiver.wait_for(lambda: len(receiver.notifications(sid, kind="heartbeat")) >= 1,
                                timeout=5)
        beat = receiver.notifications(sid, kind="heartbeat")[0]
        assert beat.status["status"] == "active"
        assert beat.signature_ok


class TestReceiverOffline:
    @pytest.mark.usefixtures("worker")
    async def test_fifty_changes_while_down_all_arrive_in_order(
        self, client: httpx.AsyncClient, receiver: Receiver
    ) -> None:
        _, plan = await agreement(client)
        sid = await subscribe_active(client, receiver)
        receiver.stop()
        for i in range(50):
            plan = await update(client, {**plan, "description": f"change {i}"})
        await asyncio.sleep(1.0)  # the worker is retrying meanwhile
        receiver.start()
        await receiver.wait_for(lambda: len(set(receiver.event_numbers(sid))) >= 50, timeout=30)
        numbers = receiver.event_numbers(sid)
        assert numbers == list(range(1, 51))
        events = (await client.get(f"/fhir/Subscription/{sid}/$events")).json()
        listed = [int(p["part"][0]["valueString"])
                  for p in events["entry"][0]["resource"]["parameter"]
                  if p["name"] == "notification-event"]
        assert listed == list(range(1, 51))

    async def test_after_the_last_attempt_error_dead_letters_events_and_reactivation(
        self, client: httpx.AsyncClient, receiver: Receiver, worker_factory: Any
    ) -> None:
        worker_factory(max_attempts="3").start()
        _, plan = await agreement(client)
        sid = await subscribe_active(client, receiver)
        receiver.status = 503
        for i in range(4):
            plan = await update(client, {**plan, "description": f"change {i}"})
        errored = await wait_status(client, sid, "error")
        assert errored["error"].startswith("event 1 attempt 3: HTTP 503")

        status = (await client.get(f"/fhir/Subscription/{sid}/$status")).json()
        params = status["entry"][0]["resource"]["parameter"]
        by_name = {p["name"]: p for p in params}
        assert by_name["status"]["valueCode"] == "error"
        assert by_name["type"]["valueCode"] == "query-status"
        assert by_name["events-since-subscription-start"]["valueString"] == "4"
        assert by_name["dead-letter-events"]["valueInteger"] == 1
        assert by_name["pending-events"]["valueInteger"] == 3
        dead = [p for p in params if p["name"] == "dead-letter"]
        assert [d["part"][0]["valueString"] for d in dead] == ["1"]
        codes = [p["valueCodeableConcept"]["coding"][0]["code"] for p in params
                 if p["name"] == "error"]
        assert codes == ["delivery-failed", "dead-letter"]

        missed = (await client.get(f"/fhir/Subscription/{sid}/$events",
                                   params={"eventsSinceNumber": "1"})).json()
        urls = [e["request"]["url"] for e in missed["entry"][1:]]
        assert urls == [f"CarePlan/{plan['id']}"] * 4

        receiver.status = 200
        current = (await client.get(f"/fhir/Subscription/{sid}")).json()
        assert (await client.put(f"/fhir/Subscription/{sid}", json=current)).status_code == 200
        await wait_status(client, sid, "active")
        await receiver.wait_for(lambda: len(receiver.event_numbers(sid)) >= 4)
        assert receiver.event_numbers(sid) == [1, 2, 3, 4]


class TestWorkerCrash:
    async def test_sigkill_mid_delivery_then_restart_delivers_everything(
        self, client: httpx.AsyncClient, receiver: Receiver, worker_factory: Any
    ) -> None:
        first = worker_factory("first").start()
        _, plan = await agreement(client)
        sid = await subscribe_active(client, receiver)
        receiver.delay = 0.1
        for i in range(20):
            plan = await update(client, {**plan, "description": f"change {i}"})
        await receiver.wait_for(lambda: len(receiver.event_numbers(sid)) >= 5)
        first.kill()
        delivered_before = len(set(receiver.event_numbers(sid)))
        assert delivered_before < 20
        worker_factory("second").start()
        await receiver.wait_for(lambda: len(set(receiver.event_numbers(sid))) >= 20, timeout=30)
        assert in_order_without_gaps(receiver.event_numbers(sid), 20)


class TestTwoWorkers:
    async def test_every_event_is_delivered_exactly_once(
        self, client: httpx.AsyncClient, receiver: Receiver, worker_factory: Any,
        services: Services,
    ) -> None:
        if services.gate.service.repo.is_sqlite:
            pytest.skip("several workers need PostgreSQL (SKIP LOCKED); SQLite runs one")
        for name in ("a", "b"):
            worker_factory(name, worker_concurrency="1").start()
        _, plan = await agreement(client)
        sids = [await subscribe_active(client, receiver) for _ in range(4)]
        receiver.delay = 0.005
        for i in range(25):
            plan = await update(client, {**plan, "description": f"change {i}"})
        await receiver.wait_for(
            lambda: all(len(receiver.event_numbers(s)) >= 25 for s in sids), timeout=30)
        await asyncio.sleep(0.3)
        for sid in sids:
            assert receiver.event_numbers(sid) == list(range(1, 26))
        async with services.gate.engine.connect() as conn:
            workers = (await conn.execute(
                select(func.count(func.distinct(subscription_attempts.c.worker)))
                .where(subscription_attempts.c.kind == "event-notification")
            )).scalar()
        assert workers == 2


class TestRollback:
    @pytest.mark.usefixtures("worker")
    async def test_a_write_that_rolls_back_makes_no_event(
        self, client: httpx.AsyncClient, receiver: Receiver,
        services: Services,
    ) -> None:
        patient_id, plan = await agreement(client)
        sid = await subscribe_active(client, receiver)
        failing = make_bundle(
            "transaction",
            make_entry("PUT", f"CarePlan/{plan['id']}", {**plan, "description": "never"}),
            make_entry("POST", "CarePlan", make_careplan(patient_id=patient_id)),
            make_entry("PUT", f"CarePlan/{plan['id']}", {**plan, "description": "stale"},
                       if_match='W/"99"'),
        )
        response = await client.post("/fhir", json=failing)
        assert response.status_code == 412, response.text
        plan = await update(client, {**plan, "description": "committed"})
        await receiver.wait_for(lambda: len(receiver.event_numbers(sid)) >= 1)
        await asyncio.sleep(0.3)
        [note] = receiver.notifications(sid)
        assert note.event_numbers == [1]
        assert note.bundle["entry"][1]["response"]["etag"] == f'W/"{plan["meta"]["versionId"]}"'
        async with services.gate.engine.connect() as conn:
            count = (await conn.execute(
                select(func.count()).select_from(subscription_events))).scalar()
        assert count == 1

    async def test_a_subscription_deleted_in_a_failed_transaction_stays(
        self, client: httpx.AsyncClient, receiver: Receiver
    ) -> None:
        sid = await subscribe(client, receiver)
        bundle = make_bundle(
            "transaction",
            make_entry("DELETE", f"Subscription/{sid}"),
            make_entry("PUT", "Patient/x", make_patient(), if_match='W/"7"'),
        )
        assert (await client.post("/fhir", json=bundle)).status_code == 412
        assert (await client.get(f"/fhir/Subscription/{sid}")).status_code == 200
        status = await client.get(f"/fhir/Subscription/{sid}/$status")
        assert status.status_code == 200
        assert status.json()["total"] == 1
