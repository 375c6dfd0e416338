"""HTTP hardening: rate limits, CORS for named portal origins, security headers.

Two plain ASGI middlewares (docs/security.md, "Hardening"):

:class:`HardeningMiddleware`, outside authentication, so it also covers 401
answers, public paths and CORS preflights (which carry no token):

* **CORS** only for the origins in ``SAMPLAN_CORS_ORIGINS`` (none by default):
  a preflight from such an origin is answered here (204); from any other
  origin it is a 403 OperationOutcome. Actual requests from an allowed origin
  get ``Access-Control-Allow-Origin`` (the origin itself, never ``*``) and the
  FHIR headers a client needs exposed (``ETag``, ``Location``, ...).
* **Security headers** on every answer: ``X-Content-Type-Options: nosniff``,
  ``Referrer-Policy: no-referrer``, ``X-Frame-Options: DENY``, a
  ``Content-Security-Policy`` (strict for HTML pages that set none themselves,
  ``default-src 'none'`` for everything else; Swagger UI at ``/docs`` gets the
  CDN it loads from), ``Strict-Transport-Security`` when the request came over
  https or the public base URL is https, and ``Cache-Control: no-store`` on
  every non-public answer that does not set its own (patient data must not
  stay in browser or proxy caches).
* **Unauthenticated rate limit**, per client IP: requests without a token,
  and answers 401 to a token, cost from the IP's budget
  (``SAMPLAN_RATE_LIMIT_UNAUTHENTICATED_PER_MINUTE``); an IP that has used it
  up gets 429 for everything until it refills, so a flood of forged tokens
  cannot make us verify signatures forever.

:class:`ClientRateLimitMiddleware`, inside authentication: a budget per
authenticated client, i.e. per (``client_id``/``azp``, ``sub``) of the verified
token (so the users of one portal app each have their own, and a system's
client-credentials tokens share one). The budget fits the kind of caller
(:class:`ClientBudgets`): a journal system's integration engine is one client
sending tens of requests a second, a clinician's app a few per screen, a
patient's portal fewer. ``SAMPLAN_RATE_LIMIT_SYSTEM_PER_MINUTE`` (6000, i.e.
100 a second), ``..._STAFF_...`` (600) and ``..._PATIENT_...`` (300, relatives
too), each falling back on ``SAMPLAN_RATE_LIMIT_PER_MINUTE`` when set; a named
client id gets its own rate from ``SAMPLAN_RATE_LIMIT_CLIENTS``. With auth
switched off (a local demo) there is no per-client limit unless
``SAMPLAN_RATE_LIMIT_PER_MINUTE`` is set, which then limits each address.

Over a limit: ``429`` with ``Retry-After`` (whole seconds) and an
OperationOutcome (``code: throttled``). Budgets are token buckets kept in the
process's memory: with several processes each has its own (a shared store
such as Redis is not used yet).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from samplan.api.responses import FhirResponse
from samplan.fhir.errors import Issue, operation_outcome
from samplan.settings import Settings

#: Default requests per minute per client, by kind of caller (docs/security.md).
DEFAULT_PER_MINUTE: Final[dict[str, int]] = {"system": 6000, "staff": 600, "patient": 300}
DEFAULT_UNAUTHENTICATED_PER_MINUTE: Final[int] = 120
MAX_TRACKED_CLIENTS: Final[int] = 100_000

API_POLICY: Final[str] = "default-src 'none'; frame-ancestors 'none'"
PAGE_POLICY: Final[str] = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
DOCS_POLICY: Final[str] = (
    "default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "img-src 'self' data: https://fastapi.tiangolo.com; connect-src 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
HSTS: Final[str] = "max-age=31536000; includeSubDomains"

CORS_METHODS: Final[str] = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
CORS_ALLOW_HEADERS: Final[str] = (
    "Authorization, Content-Type, Accept, If-Match, If-None-Match, If-None-Exist, "
    "If-Modified-Since, Prefer, X-Request-Id"
)
CORS_EXPOSE_HEADERS: Final[str] = (
    "ETag, Location, Content-Location, Last-Modified, Retry-After, WWW-Authenticate, "
    "X-Request-Id"
)
CORS_MAX_AGE: Final[str] = "600"


@dataclass
class TokenBucket:
    """``per_minute`` requests per minute on average, ``burst`` at once, per key."""

    per_minute: int
    burst: int
    clock: Callable[[], float] = time.monotonic
    _state: dict[str, tuple[float, float]] = field(default_factory=dict)

    def _now(self) -> float:
        return self.clock()

    def _level(self, key: str, now: float) -> float:
        tokens, at = self._state.get(key, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - at) * self.per_minute / 60.0)

    def take(self, key: str) -> float:
        """Spend one request: 0 when allowed, else the seconds until one is."""
        now = self._now()
        tokens = self._level(key, now)
        if tokens >= 1.0:
            self._remember(key, tokens - 1.0, now)
            return 0.0
        self._remember(key, tokens, now)
        return (1.0 - tokens) * 60.0 / self.per_minute

    def wait(self, key: str) -> float:
        """Seconds until ``key`` may send again (0: now), without spending anything."""
        if key not in self._state:
            return 0.0
        tokens = self._level(key, self._now())
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) * 60.0 / self.per_minute

    def _remember(self, key: str, tokens: float, now: float) -> None:
        if key not in self._state and len(self._state) >= MAX_TRACKED_CLIENTS:
            self._forget_full(now)
        self._state[key] = (tokens, now)

    def _forget_full(self, now: float) -> None:
        """Drop keys whose bucket has refilled (they are as good as new)."""
        for key in [k for k in self._state if self._level(k, now) >= self.burst]:
            del self._state[key]
        if len(self._state) >= MAX_TRACKED_CLIENTS:  # all busy: forget the oldest half
            by_age = sorted(self._state, key=lambda k: self._state[k][1])
            for key in by_age[: len(by_age) // 2]:
                del self._state[key]


def _limit(value: int | None, default: int, settings: Settings) -> int:
    if value is not None:
        return max(0, value)
    return 0 if settings.environment == "test" else default


def _bucket(rate: int, settings: Settings) -> TokenBucket:
    burst = settings.rate_limit_burst or max(10, rate // 10)
    return TokenBucket(rate, max(1, burst))


#: The budget kind of each principal kind (a relative uses a patient's portal).
BUDGET_KIND: Final[dict[str, str]] = {
    "system": "system", "staff": "staff", "patient": "patient", "relative": "patient"}


class ClientBudgets:
    """The per-client token buckets: one rate per kind of caller, raisable per client id.

    ``bucket(kind, client_id)`` is the bucket whose rate applies (None: no limit);
    callers then spend from it under their own (client id, subject) key.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        per_kind = {
            "system": settings.rate_limit_system_per_minute,
            "staff": settings.rate_limit_staff_per_minute,
            "patient": settings.rate_limit_patient_per_minute,
        }
        self._kinds: dict[str, TokenBucket | None] = {}
        for kind, value in per_kind.items():
            own = value if value is not None else settings.rate_limit_per_minute
            rate = _limit(own, DEFAULT_PER_MINUTE[kind], settings)
            self._kinds[kind] = _bucket(rate, settings) if rate else None
        self._clients: dict[str, TokenBucket | None] = {
            client: (_bucket(rate, settings) if rate > 0 else None)
            for client, rate in settings.rate_limit_clients.items()
        }
        # auth off: no limit unless the general per-client rate is set explicitly
        demo = settings.rate_limit_per_minute
        self.anonymous: TokenBucket | None = _bucket(demo, settings) if demo else None

    def bucket(self, kind: str, client_id: str | None) -> TokenBucket | None:
        if client_id is not None and client_id in self._clients:
            return self._clients[client_id]
        return self._kinds.get(BUDGET_KIND.get(kind, "patient"))

    @property
    def active(self) -> bool:
        """Whether any caller is limited at all (else the middleware steps aside)."""
        return (self.anonymous is not None or any(self._kinds.values())
                or any(self._clients.values()))


def client_bucket(settings: Settings, kind: str = "staff",
                  client_id: str | None = None) -> TokenBucket | None:
    """The bucket a caller of ``kind`` (with ``client_id``) spends from; None: no limit."""
    return ClientBudgets(settings).bucket(kind, client_id)


def unauthenticated_bucket(settings: Settings) -> TokenBucket | None:
    rate = _limit(settings.rate_limit_unauthenticated_per_minute,
                  DEFAULT_UNAUTHENTICATED_PER_MINUTE, settings)
    return TokenBucket(rate, max(5, rate // 4)) if rate else None


def too_many(wait: float, who: str) -> FhirResponse:
    seconds = max(1, math.ceil(wait))
    return FhirResponse(
        operation_outcome([Issue(
            "throttled",
            f"Too many requests from this {who}; try again in {seconds} s.",
        )]),
        429,
        {"Retry-After": str(seconds)},
    )


def internal_error() -> FhirResponse:
    """The generic 500 (as ``api/errors.py`` answers): no stack trace, no SQL."""
    return FhirResponse(operation_outcome([Issue(
        "exception", "An internal error occurred; it has been logged.", severity="fatal")]), 500)


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {bytes(k).lower(): bytes(v) for k, v in scope.get("headers", ())}


def _client_ip(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class HardeningMiddleware:
    """CORS, security headers and the per-IP limit on unauthenticated requests (outermost)."""

    def __init__(self, app: ASGIApp, settings: Settings,
                 public: Iterable[str] = (), public_prefixes: tuple[str, ...] = ()) -> None:
        self.app = app
        self.origins = frozenset(o.rstrip("/") for o in settings.cors_origins)
        self.https_base = settings.base_url.startswith("https://")
        self.unauthenticated = unauthenticated_bucket(settings)
        self.public = frozenset(public)
        self.public_prefixes = public_prefixes

    def _is_public(self, path: str) -> bool:
        return path.rstrip("/") in self.public or path.startswith(self.public_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        raw_origin = headers.get(b"origin")
        origin = raw_origin.decode("latin-1").rstrip("/") if raw_origin else None
        path = scope["path"]
        extra = self._security_headers(scope, path, headers)
        allowed = False
        if origin is not None:
            allowed = origin in self.origins
            if allowed:
                extra += [(b"access-control-allow-origin", origin.encode("latin-1")),
                          (b"access-control-expose-headers", CORS_EXPOSE_HEADERS.encode())]
            extra.append((b"vary", b"Origin"))

        if scope["method"] == "OPTIONS" and origin is not None \
                and b"access-control-request-method" in headers:
            await self._preflight(allowed, extra, scope, receive, send)
            return

        ip = _client_ip(scope)
        has_token = b"authorization" in headers
        if self.unauthenticated is not None:
            wait = (self.unauthenticated.wait(ip) if has_token
                    else self.unauthenticated.take(ip))
            if wait > 0:
                await self._answer(too_many(wait, "address"), extra, scope, receive, send)
                return
        public = self._is_public(path)
        bucket = self.unauthenticated

        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if bucket is not None and has_token and message["status"] == 401:
                    bucket.take(ip)  # a refused token costs from the address's budget
                message["headers"] = self._merge(list(message.get("headers", [])), extra,
                                                 public)
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            # Answer the generic 500 here, with the security headers; the exception
            # goes on to the server's error handler, which logs it (and sends nothing more).
            if not started:
                await self._answer(internal_error(), extra, scope, receive, send)
            raise

    def _security_headers(self, scope: Scope, path: str,
                          request_headers: dict[bytes, bytes]) -> list[tuple[bytes, bytes]]:
        headers = [(b"x-content-type-options", b"nosniff"),
                   (b"referrer-policy", b"no-referrer"),
                   (b"x-frame-options", b"DENY")]
        forwarded = request_headers.get(b"x-forwarded-proto", b"")
        if scope.get("scheme") == "https" or self.https_base or forwarded == b"https":
            headers.append((b"strict-transport-security", HSTS.encode()))
        if path == "/docs" or path.startswith("/docs/"):
            headers.append((b"x-samplan-csp", DOCS_POLICY.encode()))
        return headers

    @staticmethod
    def _merge(response: list[tuple[bytes, bytes]], extra: list[tuple[bytes, bytes]],
               public: bool) -> list[tuple[bytes, bytes]]:
        present = {bytes(k).lower() for k, _ in response}
        merged = list(response)
        csp: bytes | None = None
        for key, value in extra:
            if key == b"x-samplan-csp":
                csp = value
            elif key == b"vary" and b"vary" in present:
                merged = [(k, (v + b", Origin") if bytes(k).lower() == b"vary" else v)
                          for k, v in merged]
            elif key not in present:
                merged.append((key, value))
        if b"content-security-policy" not in present:
            content_type = next((bytes(v) for k, v in response
                                 if bytes(k).lower() == b"content-type"), b"")
            if csp is None:
                csp = (PAGE_POLICY if content_type.startswith(b"text/html")
                       else API_POLICY).encode()
            merged.append((b"content-security-policy", csp))
        if not public and b"cache-control" not in present:
            merged.append((b"cache-control", b"no-store"))
        return merged

    async def _preflight(self, allowed: bool, extra: list[tuple[bytes, bytes]],
                         scope: Scope, receive: Receive, send: Send) -> None:
        if not allowed:
            refused = FhirResponse(operation_outcome([Issue(
                "security", "This origin may not call the API from a browser (CORS).")]), 403)
            await self._answer(refused, extra, scope, receive, send)
            return
        response = FhirResponse(None, 204, {
            "Access-Control-Allow-Methods": CORS_METHODS,
            "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS,
            "Access-Control-Max-Age": CORS_MAX_AGE,
        })
        await self._answer(response, extra, scope, receive, send)

    async def _answer(self, response: FhirResponse, extra: list[tuple[bytes, bytes]],
                      scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = self._merge(list(message.get("headers", [])), extra,
                                                 False)
            await send(message)

        await response(scope, receive, send_with_headers)


class ClientRateLimitMiddleware:
    """The per-client budget, after authentication (needs ``state["principal"]``)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.budgets = ClientBudgets(settings)
        self.active = self.budgets.active

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.active:
            await self.app(scope, receive, send)
            return
        principal = scope.get("state", {}).get("principal")
        bucket: TokenBucket | None = None
        key = ""
        if principal is not None and getattr(principal, "kind", None) != "anonymous-dev":
            bucket = self.budgets.bucket(principal.kind, principal.client_id)
            key = f"client:{principal.client_id or '-'}:{principal.subject}"
        elif principal is not None:  # auth switched off (local demo): by address, if asked
            bucket = self.budgets.anonymous
            key = f"ip:{_client_ip(scope)}"
        if bucket is not None:
            wait = bucket.take(key)
            if wait > 0:
                await too_many(wait, "client")(scope, receive, send)
                return
        await self.app(scope, receive, send)
