"""The worker's steps driven one tick at a time, with httpx.MockTransport as the receiver."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import select, update

from factories import make_careplan, make_patient
from samplan.api.deps import Services
from samplan.fhir.dates import now_us
from samplan.store.tables import subscriptions
from samplan.subscriptions.receiver import Receiver
from samplan.subscriptions.signing import SIGNATURE_HEADER, verify
from samplan.subscriptions.worker import Worker
from subscriptions.helpers import SECRET, subscribe


class Recorder:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.status = 200

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status)

    def kinds(self) -> list[str]:
        out = []
        for request in self.requests:
            params = httpx.Response(200, content=request.content).json()["entry"][0]
            out.append(next(p["valueCode"] for p in params["resource"]["parameter"]
                            if p["name"] == "type"))
        return out


async def run_tick(worker: Worker) -> None:
    await worker.tick()
    while worker.tasks:
        await asyncio.gather(*list(worker.tasks))


def make_worker(services: Services, recorder: Recorder, **settings: Any) -> Worker:
    configured = services.settings.model_copy(update={
        "subscriptions_backoff_base": 0.01, "subscriptions_backoff_cap": 30.0, **settings})
    http = httpx.AsyncClient(transport=httpx.MockTransport(recorder))
    return Worker(services.gate, http, configured, services.subscriptions.box)


class TestWorkerSteps:
    async def test_handshake_then_events_then_nothing(
        self, client: httpx.AsyncClient, services: Services, receiver: Receiver
    ) -> None:
        recorder = Recorder()
        worker = make_worker(services, recorder)
        sid = await subscribe(client, receiver)
        await run_tick(worker)
        assert (await client.get(f"/fhir/Subscription/{sid}")).json()["status"] == "active"
        patient = (await client.post("/fhir/Patient", json=make_patient())).json()
        await client.post("/fhir/CarePlan", json=make_careplan(patient_id=patient["id"]))
        await run_tick(worker)
        await run_tick(worker)  # nothing more is due
        assert recorder.kinds() == ["handshake", "event-notification"]
        assert all(verify(SECRET, r.content, r.headers[SIGNATURE_HEADER])
                   for r in recorder.requests)
        await worker.http.aclose()

    async def test_a_failure_is_retried_later_not_at_once(
        self, client: httpx.AsyncClient, services: Services, receiver: Receiver
    ) -> None:
        recorder = Recorder()
        worker = make_worker(services, recorder, subscriptions_backoff_base=30.0)
        sid = await subscribe(client, receiver)
        recorder.status = 500
        await run_tick(worker)
        await run_tick(worker)
        assert recorder.kinds() == ["handshake"]  # the next attempt waits its backoff
        async with services.gate.engine.connect() as conn:
            row = (await conn.execute(select(subscriptions).where(
                subscriptions.c.id == sid))).one()
        assert row.handshake_attempts == 1
        assert row.due_at > now_us() + 10_000_000
        assert row.last_error == "handshake failed: HTTP 500 Internal Server Error"
        await worker.http.aclose()

    async def test_an_unexpected_error_holds_the_subscription_off(
        self, client: httpx.AsyncClient, services: Services, receiver: Receiver
    ) -> None:
        recorder = Recorder()
        worker = make_worker(services, recorder)
        sid = await subscribe(client, receiver)
        async with services.gate.engine.begin() as conn:  # a secret sealed under another key
            await conn.execute(update(subscriptions).where(subscriptions.c.id == sid)
                               .values(secret="sealed:v1:not-a-token"))
        await run_tick(worker)
        await run_tick(worker)
        assert recorder.requests == []
        async with services.gate.engine.connect() as conn:
            row = (await conn.execute(select(subscriptions).where(
                subscriptions.c.id == sid))).one()
        assert row.due_at > now_us() + 10_000_000
        assert row.last_error.startswith("server error while delivering: ValueError")
        await worker.http.aclose()
