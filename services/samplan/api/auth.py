"""Bearer authentication for every route but the public ones.

:class:`BearerAuthMiddleware` (plain ASGI, so it also covers unknown routes and
405s) verifies the token and puts the :class:`Principal` on
``request.state.principal``; a missing or bad token is answered here with a 401
OperationOutcome carrying ``WWW-Authenticate`` (RFC 6750). Public:
``/fhir/metadata``, ``/healthz``, ``/readyz``, ``/.well-known/*`` and
``/fhir/.well-known/smart-configuration`` (SMART discovery, ``api/smart.py``), ``/docs``,
``/openapi.json``, ``/metrics`` (guarded by its own scrape token when
``SAMPLAN_METRICS_TOKEN`` is set). With auth switched off the principal is
``Principal.anonymous_dev()``.

Routes take ``PrincipalDep`` (who is calling) or ``FhirDep`` (the gate's
:class:`~samplan.security.gate.Access`: the FHIR service as that principal may
use it, with scopes, reach, NOPATIENT and the access log).
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import Depends, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from samplan.api.asgi import header
from samplan.api.deps import Services, ServicesDep
from samplan.api.responses import FhirResponse
from samplan.fhir.errors import FhirError, Unauthorized
from samplan.security.authn import Authenticator
from samplan.security.gate import Access
from samplan.security.principal import Principal

PUBLIC_PATHS: Final[frozenset[str]] = frozenset(
    {"/fhir/metadata", "/fhir/.well-known/smart-configuration", "/healthz", "/readyz", "/docs",
     "/docs/oauth2-redirect", "/openapi.json",
     "/metrics"}  # /metrics: its own scrape token (SAMPLAN_METRICS_TOKEN), see observability/
)
PUBLIC_PREFIXES: Final[tuple[str, ...]] = ("/.well-known/",)



def is_public(path: str) -> bool:
    return path.rstrip("/") in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def authenticator(services: Services) -> Authenticator:
    return services.authenticator


class BearerAuthMiddleware:
    """Authenticate each HTTP request before routing (plain ASGI middleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        if is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        services: Services = scope["app"].state.services
        authorization = header(scope, b"authorization")
        try:
            state["principal"] = await authenticator(services).authenticate(authorization)
        except FhirError as error:
            response = FhirResponse(error.outcome(), error.status, dict(error.headers))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)



async def get_principal(request: Request) -> Principal:
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):
        raise Unauthorized("this request was not authenticated")
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


async def get_fhir(
    request: Request, services: ServicesDep, principal: PrincipalDep
) -> Access:
    """The FHIR service as this request's principal may use it (the gate), with the
    request's own base for its links (computed once, here)."""
    return services.access(principal, client_address(request),
                           services.base_url(request.scope))


FhirDep = Annotated[Access, Depends(get_fhir)]
