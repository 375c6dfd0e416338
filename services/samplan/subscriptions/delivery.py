"""One notification POST: signed, with the subscriber's headers, bounded in time.

The worker owns one shared ``httpx.AsyncClient`` and passes it in (tests pass
one built on ``httpx.MockTransport``). A delivery succeeds on any 2xx answer;
redirects are not followed (a 3xx is a failure: the endpoint is what the
subscriber registered). The whole exchange, connection included, is bounded
by the channel's timeout.

Retries are not a loop here: a failed attempt is written back to the outbox
with its next attempt time (:func:`backoff`), so a retry survives a worker
crash and a waiting retry holds no worker. That is also why no retry library
(tenacity and the like, which retry by sleeping inside one process) is used;
the one formula they would contribute is below.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from samplan import __version__
from samplan.security.audit import Agent, AuditRecord
from samplan.security.principal import Principal
from samplan.security.subscriber import screen
from samplan.subscriptions import store
from samplan.subscriptions.endpoints import resolve_refusal
from samplan.subscriptions.signing import SIGNATURE_HEADER, signature
from samplan.subscriptions.store import EventRow

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from samplan.security.guard import AccessControl

USER_AGENT = f"SamPlan/{__version__} (subscription notifications)"


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    ok: bool
    status_code: int | None
    error: str | None
    duration_us: int


def backoff(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after the ``attempt``-th failure: exponential, capped, jittered.

    "Equal jitter": half of ``min(cap, base * 2**(attempt-1))`` fixed, half
    random, so retries of many subscribers spread out but never come sooner
    than half the exponential step.
    """
    step = min(cap, base * 2.0 ** max(0, attempt - 1))
    jitter: float = (rng or random).uniform(0, step / 2)
    return step / 2 + jitter


async def post(
    http: httpx.AsyncClient,
    endpoint: str,
    body: bytes,
    *,
    secret: str,
    headers: tuple[tuple[str, str], ...],
    timeout: float,
    allow_private: bool,
) -> DeliveryResult:
    """POST ``body`` to ``endpoint`` and say how it went (never raises for network trouble)."""
    started = time.perf_counter()

    def result(ok: bool, status: int | None, error: str | None) -> DeliveryResult:
        return DeliveryResult(ok, status, error, int((time.perf_counter() - started) * 1e6))

    refusal = await resolve_refusal(endpoint, allow_private=allow_private)
    if refusal:
        return result(False, None, f"endpoint refused: {refusal}")
    request_headers = [
        *headers,
        ("Content-Type", "application/fhir+json"),
        ("User-Agent", USER_AGENT),
        (SIGNATURE_HEADER, signature(secret, body)),
    ]
    try:
        async with asyncio.timeout(timeout):
            response = await http.post(endpoint, content=body, headers=request_headers,
                                       timeout=timeout, follow_redirects=False)
            await response.aread()
    except TimeoutError:
        return result(False, None, f"no answer within {timeout:g} s")
    except httpx.HTTPError as exc:
        return result(False, None, f"{type(exc).__name__}: {exc}".strip(": "))
    if 200 <= response.status_code < 300:
        return result(True, response.status_code, None)
    return result(False, response.status_code,
                  f"HTTP {response.status_code} {response.reason_phrase}".strip())


# -- what a notification may carry (security/subscriber.py) and its access-log entries ----------


@dataclass(frozen=True, slots=True)
class Screened:
    """Events screened for their recipients: which to withhold, what content may go."""

    withheld: frozenset[int]  # event numbers sent without focus or entry
    contents: dict[tuple[str, str, int], bytes | None]  # full-resource payloads allowed
    patients: dict[int, tuple[str, ...]]  # per event number sent with its focus: whose data


async def screen_events(
    conn: AsyncConnection,
    control: AccessControl,
    recipients: Sequence[Principal | None],
    events: Sequence[EventRow],
    content: str,
) -> Screened:
    """Judge each event's focus for every recipient with the read policy (reach as it is now)."""
    if not events:
        return Screened(frozenset(), {}, {})
    keys = [(ev.focus_type, ev.focus_id, ev.focus_version) for ev in events]
    bodies = await store.focus_bodies(conn, keys)
    focuses: list[tuple[str, dict[str, Any] | None]] = []
    for ev, key in zip(events, keys, strict=True):
        raw = bodies.get(key)
        body = orjson.loads(raw) if raw else None
        focuses.append((ev.focus_type, body if isinstance(body, dict) else None))
    verdicts = await screen(control, recipients, focuses, conn=conn)  # one connection each
    withheld = frozenset(ev.event_number for ev, v in zip(events, verdicts, strict=True)
                         if not v.visible)
    contents: dict[tuple[str, str, int], bytes | None] = {}
    if content == "full-resource":
        allowed = [k for k, v in zip(keys, verdicts, strict=True) if v.full]
        contents = await store.focus_contents(conn, allowed) if allowed else {}
    patients = {ev.event_number: v.patients for ev, v in zip(events, verdicts, strict=True)
                if v.visible}
    return Screened(withheld, contents, patients)


def notification_records(
    recipient: Principal | None,
    subscription_id: str,
    events: Sequence[EventRow],
    screened: Screened,
    *,
    description: str,
    client_ip: str | None = None,
) -> list[AuditRecord]:
    """One ``notify`` entry per patient whose data the notification carried."""
    by_patient: dict[str, list[tuple[str, str]]] = {}
    for ev in events:
        for patient in screened.patients.get(ev.event_number, ()):
            by_patient.setdefault(patient, []).append((ev.focus_type, ev.focus_id))
    agent = Agent.of(recipient)
    return [
        AuditRecord(interaction="notify", agent=agent, patient_id=patient,
                    entity_type="Subscription", entity_id=subscription_id,
                    entities=tuple(dict.fromkeys(found)), query=description,
                    client_ip=client_ip)
        for patient, found in sorted(by_patient.items())
    ]
