"""Notification latency from commit to receipt, at a steady write rate (for bench/).

:func:`measure_latency` drives a running server (``samplan serve`` plus a
worker, or ``--with-worker``) through its FHIR API: it subscribes a local
:class:`~samplan.subscriptions.receiver.Receiver` to one patient's agreement,
waits for the handshake, then updates the agreement's CarePlan ``writes``
times at ``rate`` per second. Each notification's event ``timestamp`` is the
write's own time (taken inside its transaction, just before commit), so
receipt time minus timestamp is the commit-to-receipt latency (same host,
same clock).
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from samplan.subscriptions.model import EXT_CONTENT, EXT_FILTER
from samplan.subscriptions.receiver import Receiver
from samplan.subscriptions.signing import EXT_SECRET
from samplan.subscriptions.topics import AGREEMENT_CHANGED


@dataclass(frozen=True, slots=True)
class LatencyReport:
    writes: int
    received: int
    rate: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    missing: int
    duplicates: int

    def __str__(self) -> str:
        return (f"{self.received}/{self.writes} notifications at {self.rate:g} writes/s: "
                f"p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, max {self.max_ms:.1f} ms, "
                f"missing {self.missing}, duplicates {self.duplicates}")


def subscription_body(endpoint: str, secret: str, *, criteria: str | None = None,
                      content: str = "id-only", **channel_extensions: int) -> dict[str, Any]:
    """A backport Subscription to ``agreement-changed`` (filter like ``CarePlan?patient=..``)."""
    urls = {
        "heartbeat": "backport-heartbeat-period", "timeout": "backport-timeout",
        "max_count": "backport-max-count",
    }
    extensions: list[dict[str, Any]] = [{"url": EXT_SECRET, "valueString": secret}]
    for name, value in channel_extensions.items():
        key = "valuePositiveInt" if name == "max_count" else "valueUnsignedInt"
        extensions.append({
            "url": f"http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/{urls[name]}",
            key: value,
        })
    body: dict[str, Any] = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "Follow the agreement",
        "criteria": AGREEMENT_CHANGED,
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": EXT_CONTENT, "valueCode": content}]},
            "extension": extensions,
        },
    }
    if criteria:
        body["_criteria"] = {"extension": [{"url": EXT_FILTER, "valueString": criteria}]}
    return body


async def wait_active(client: httpx.AsyncClient, subscription_id: str,
                      timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = await client.get(f"Subscription/{subscription_id}")
        body: dict[str, Any] = response.json()
        if body.get("status") in ("active", "error"):
            return body
        if time.monotonic() > deadline:
            raise TimeoutError(f"Subscription/{subscription_id} stayed {body.get('status')}")
        await asyncio.sleep(0.05)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def measure_latency(
    fhir_base: str,
    *,
    writes: int = 200,
    rate: float = 20.0,
    headers: dict[str, str] | None = None,
    settle: float = 10.0,
) -> LatencyReport:
    """Write ``writes`` CarePlan updates at ``rate``/s and measure commit-to-receipt latency."""
    secret = uuid.uuid4().hex
    patient_id = f"bench-{uuid.uuid4().hex[:12]}"
    with Receiver(secret) as receiver:
        async with httpx.AsyncClient(
            base_url=fhir_base.rstrip("/") + "/", timeout=30,
            headers={"Content-Type": "application/fhir+json", **(headers or {})},
        ) as client:
            plan: dict[str, Any] = {
                "resourceType": "CarePlan", "status": "active", "intent": "plan",
                "title": "Bench", "subject": {"reference": f"Patient/{patient_id}"},
            }
            created = await client.post("CarePlan", json=plan)
            created.raise_for_status()
            plan = created.json()
            sub = await client.post("Subscription", json=subscription_body(
                receiver.url, secret, criteria=f"CarePlan?patient=Patient/{patient_id}"))
            sub.raise_for_status()
            sub_id = sub.json()["id"]
            if (await wait_active(client, sub_id)).get("status") != "active":
                raise RuntimeError("the bench subscription did not become active")
            started = time.monotonic()
            for i in range(writes):
                plan["description"] = f"write {i}"
                (await client.put(f"CarePlan/{plan['id']}", json=plan)).raise_for_status()
                delay = started + (i + 1) / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            try:
                await receiver.wait_for(
                    lambda: len(set(receiver.event_numbers(sub_id))) >= writes, settle)
            except TimeoutError:
                pass
            await client.delete(f"Subscription/{sub_id}")
    latencies: list[float] = []
    seen: set[int] = set()
    duplicates = 0
    for item in receiver.notifications(sub_id):
        for number, stamp in zip(item.event_numbers, item.event_timestamps, strict=True):
            if number in seen:
                duplicates += 1
                continue
            seen.add(number)
            written = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
            latencies.append((item.at - written) * 1000)
    return LatencyReport(
        writes=writes, received=len(seen), rate=rate,
        p50_ms=statistics.median(latencies) if latencies else float("nan"),
        p99_ms=_percentile(latencies, 0.99), max_ms=max(latencies, default=float("nan")),
        missing=writes - len(seen), duplicates=duplicates,
    )
