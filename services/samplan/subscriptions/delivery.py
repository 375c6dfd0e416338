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
from dataclasses import dataclass

import httpx

from samplan import __version__
from samplan.subscriptions.endpoints import resolve_refusal
from samplan.subscriptions.signing import SIGNATURE_HEADER, signature

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
