"""Bearer authentication for every route but the public ones, and the SMART discovery document.

:class:`BearerAuthMiddleware` (plain ASGI, so it also covers unknown routes and
405s) verifies the token and puts the :class:`Principal` on
``request.state.principal``; a missing or bad token is answered here with a 401
OperationOutcome carrying ``WWW-Authenticate`` (RFC 6750). Public:
``/fhir/metadata``, ``/healthz``, ``/readyz``, ``/.well-known/*``, ``/docs``,
``/openapi.json``, ``/metrics`` (guarded by its own scrape token when
``SAMPLAN_METRICS_TOKEN`` is set). With auth switched off the principal is
``Principal.anonymous_dev()``.

Routes take ``PrincipalDep`` (who is calling) or ``FhirDep`` (the gate's
:class:`~samplan.security.gate.Access`: the FHIR service as that principal may
use it, with scopes, reach, NOPATIENT and the access log).
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from samplan.api.asgi import header
from samplan.api.deps import Services, ServicesDep
from samplan.api.responses import FhirResponse
from samplan.fhir.errors import FhirError, Unauthorized
from samplan.fhir.registry import REGISTRY
from samplan.security.authn import Authenticator
from samplan.security.gate import Access
from samplan.security.principal import Principal

PUBLIC_PATHS: Final[frozenset[str]] = frozenset(
    {"/fhir/metadata", "/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/openapi.json",
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
    """The FHIR service as this request's principal may use it (the gate)."""
    return services.access(principal, client_address(request))


FhirDep = Annotated[Access, Depends(get_fhir)]


# ------------------------------------------------------------- SMART discovery

router = APIRouter(tags=["SMART"])


@router.get("/.well-known/smart-configuration", operation_id="smart_configuration")
async def smart_configuration(services: ServicesDep) -> Response:
    """SMART App Launch discovery: who issues tokens, their keys, the scopes we understand."""
    return Response(
        _json(smart_document(services)), media_type="application/json",
        headers={"Cache-Control": "public, max-age=300"},
    )


@router.get("/.well-known/jwks.json", operation_id="development_jwks", include_in_schema=False)
async def development_jwks(services: ServicesDep) -> Response:
    """The development key's public JWKS (404 unless the development key is the trusted one)."""
    jwks = authenticator(services).dev_jwks()
    if jwks is None:
        from samplan.fhir.errors import NotFound

        raise NotFound("this server uses its token issuer's keys; see jwks_uri in "
                       "/.well-known/smart-configuration")
    return Response(_json(jwks), media_type="application/jwk-set+json")


def smart_document(services: Services) -> dict[str, Any]:
    settings = services.settings
    auth = authenticator(services)
    origin = settings.base_url.removesuffix("/fhir")
    jwks_uri = settings.jwks_url or (
        f"{origin}/.well-known/jwks.json" if auth.dev_jwks() is not None else None
    )
    types = sorted(t for t in REGISTRY if t != "AuditEvent")
    scopes = ["openid", "fhirUser", "launch/patient", "offline_access"]
    for context in ("patient", "user", "system"):
        scopes += [f"{context}/*.cruds", f"{context}/*.rs"]
        scopes += [f"{context}/{t}.{p}" for t in types for p in ("rs", "cruds")]
    scopes += ["user/AuditEvent.rs", "system/AuditEvent.rs", "patient/AuditEvent.rs"]
    document: dict[str, Any] = {
        "issuer": settings.token_issuer,
        "jwks_uri": jwks_uri,
        "grant_types_supported": ["authorization_code", "client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "scopes_supported": scopes,
        "response_types_supported": ["code"],
        "capabilities": [
            "permission-v1", "permission-v2", "permission-patient", "permission-user",
            "context-standalone-patient", "context-ehr-patient", "client-confidential-asymmetric",
        ],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint": None,
        "authorization_endpoint": None,
        "x-samplan-token-service": (
            "This FHIR server is a resource server only: it does not issue tokens. "
            f"Tokens come from the issuer {settings.token_issuer}; use that issuer's "
            "authorization and token endpoints (its /.well-known/openid-configuration)."
            + (" In development, mint tokens with `samplan token --scope ...`."
               if auth.dev_jwks() is not None else "")
        ),
        "x-samplan-claims": {
            "patient": "a Patient id or a personnummer",
            "fhirUser": "Patient/, RelatedPerson/, Practitioner/ or PractitionerRole/ reference",
            "employeeHsaId": "staff HSA-id",
            "healthCareProviderHsaId": "the staff member's care provider (vårdgivare) HSA-id",
            "commissionHsaId": "the staff member's care unit (vårdenhet) HSA-id",
            "organizationHsaId": "a system's organisation HSA-id",
        },
    }
    return {k: v for k, v in document.items() if v is not None}


def _json(value: Any) -> bytes:
    import orjson

    return orjson.dumps(value)
