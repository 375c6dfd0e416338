"""One notification POST: signed, with the subscriber's headers, bounded in time.

The endpoint's name is resolved once per POST and every address checked
(:meth:`~samplan.subscriptions.endpoints.EndpointGuard.target`); the request is
then sent to the address checked, with the endpoint's own ``Host`` and, for
https, its name for SNI and the certificate check (httpx's ``sni_hostname``
request extension), so the connection cannot go anywhere the check did not
see. A kept-alive connection is reused for the same address and port only;
it was made, and its certificate checked, for an address that passed.

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
from samplan.subscriptions.endpoints import EndpointGuard, HostError
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
    guard: EndpointGuard,
) -> DeliveryResult:
    """POST ``body`` to ``endpoint`` and say how it went (never raises for network trouble).

    ``headers`` are the subscriber's, in clear (the worker opens them just before).
    """
    started = time.perf_counter()

    def result(ok: bool, status: int | None, error: str | None) -> DeliveryResult:
        return DeliveryResult(ok, status, error, int((time.perf_counter() - started) * 1e6))

    try:
        async with asyncio.timeout(timeout):
            try:
                target = await guard.target(endpoint)
            except HostError as exc:
                return result(False, None, f"endpoint refused: {exc}")
            host, extensions = target.request_options()
            request = http.build_request(
                "POST", target.url, content=body, timeout=timeout, extensions=extensions,
                headers=[
                    *headers,
                    *host.items(),
                    ("Content-Type", "application/fhir+json"),
                    ("User-Agent", USER_AGENT),
                    (SIGNATURE_HEADER, signature(secret, body)),
                ])
            response = await http.send(request, follow_redirects=False)
            await response.aread()
    except TimeoutError:
        return result(False, None, f"no answer within {timeout:g} s")
    except httpx.HTTPError as exc:
        return result(False, None, f"{type(exc).__name__}: {exc}".strip(": "))
    if 200 <= response.status_code < 300:
        return result(True, response.status_code, None)
    return result(False, response.status_code,
                  f"HTTP {response.status_code} {response.reason_phrase}".strip())
