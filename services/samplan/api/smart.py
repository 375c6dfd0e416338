"""SMART App Launch discovery: ``/.well-known/smart-configuration`` and the development JWKS.

Clients look for the discovery document in two places: at the server's root
(``/.well-known/smart-configuration``) and under the FHIR base
(``/fhir/.well-known/smart-configuration``, which is where SMART says a client
appends it to the base URL it was given). Both answer the same document and
both are public (``api/auth.py``).

This server is a resource server: it verifies tokens, it issues none. The
document therefore advertises only what the configured token issuer provides:
its endpoints come from ``SAMPLAN_AUTHORIZATION_ENDPOINT`` and
``SAMPLAN_TOKEN_ENDPOINT``, and a grant type or launch capability is listed only
when the endpoint it needs is configured (none by default). What the resource
server itself understands (the scope syntax, its scopes, the claims it reads)
is listed always.
"""

from __future__ import annotations

from typing import Any, Final

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from samplan.api.auth import authenticator
from samplan.api.deps import Services, ServicesDep
from samplan.fhir.errors import NotFound
from samplan.fhir.registry import REGISTRY
from samplan.settings import Settings

#: What the resource server understands, whoever issues the tokens.
RESOURCE_SERVER_CAPABILITIES: Final[tuple[str, ...]] = (
    "permission-v1", "permission-v2", "permission-patient", "permission-user",
)
#: Needs the issuer's authorization endpoint (an app launched by a user).
LAUNCH_CAPABILITIES: Final[tuple[str, ...]] = (
    "context-standalone-patient", "context-ehr-patient",
)
#: Needs the issuer's token endpoint (a confidential client signing its assertion).
TOKEN_CAPABILITIES: Final[tuple[str, ...]] = ("client-confidential-asymmetric",)

router = APIRouter(tags=["SMART"])


async def _answer(services: Services, request: Request) -> Response:
    return Response(
        orjson.dumps(smart_document(services, services.base_url(request.scope))),
        media_type="application/json",
        headers={"Cache-Control": "public, max-age=300"},
    )


@router.get("/.well-known/smart-configuration", operation_id="smart_configuration")
async def smart_configuration(services: ServicesDep, request: Request) -> Response:
    """SMART App Launch discovery: who issues tokens, their keys, the scopes we understand."""
    return await _answer(services, request)


@router.get("/fhir/.well-known/smart-configuration", operation_id="smart_configuration_fhir",
            include_in_schema=False)
async def smart_configuration_under_the_base(services: ServicesDep,
                                              request: Request) -> Response:
    """The same document where SMART clients look for it: appended to the FHIR base URL."""
    return await _answer(services, request)


@router.get("/.well-known/jwks.json", operation_id="development_jwks", include_in_schema=False)
async def development_jwks(services: ServicesDep) -> Response:
    """The development key's public JWKS (404 unless the development key is the trusted one)."""
    jwks = authenticator(services).dev_jwks()
    if jwks is None:
        raise NotFound("this server uses its token issuer's keys; see jwks_uri in "
                       "/.well-known/smart-configuration")
    return Response(orjson.dumps(jwks), media_type="application/jwk-set+json")


def grant_types(settings: Settings) -> list[str]:
    """The grants a client can use with the configured issuer's endpoints (none without any)."""
    grants: list[str] = []
    if settings.token_endpoint and settings.authorization_endpoint:
        grants.append("authorization_code")
    if settings.token_endpoint:
        grants.append("client_credentials")
    return grants


def capabilities(settings: Settings) -> list[str]:
    """SMART capabilities: the resource server's own, and the issuer's only when configured."""
    found = list(RESOURCE_SERVER_CAPABILITIES)
    if settings.authorization_endpoint and settings.token_endpoint:
        found += LAUNCH_CAPABILITIES
    if settings.token_endpoint:
        found += TOKEN_CAPABILITIES
    return found


def supported_scopes(settings: Settings) -> list[str]:
    """Every resource scope we understand; the OpenID ones only when users can log in."""
    types = sorted(t for t in REGISTRY if t != "AuditEvent")
    scopes = (["openid", "fhirUser", "launch/patient"]
              if settings.authorization_endpoint and settings.token_endpoint else [])
    for context in ("patient", "user", "system"):
        scopes += [f"{context}/*.cruds", f"{context}/*.rs"]
        scopes += [f"{context}/{t}.{p}" for t in types for p in ("rs", "cruds")]
    scopes += ["user/AuditEvent.rs", "system/AuditEvent.rs", "patient/AuditEvent.rs"]
    return scopes


def smart_document(services: Services, base_url: str | None = None) -> dict[str, Any]:
    """The ``.well-known/smart-configuration`` document for these settings; the development
    key's ``jwks_uri`` on the request's base (``base_url``; the configured one when None)."""
    settings = services.settings
    development_key = authenticator(services).dev_jwks() is not None
    origin = (base_url or settings.base_url).removesuffix("/fhir")
    jwks_uri = settings.jwks_url or (
        f"{origin}/.well-known/jwks.json" if development_key else None
    )
    launch = bool(settings.authorization_endpoint and settings.token_endpoint)
    document: dict[str, Any] = {
        "issuer": settings.token_issuer,
        "jwks_uri": jwks_uri,
        "authorization_endpoint": settings.authorization_endpoint,
        "token_endpoint": settings.token_endpoint,
        "grant_types_supported": grant_types(settings),
        "token_endpoint_auth_methods_supported": (
            ["private_key_jwt"] if settings.token_endpoint else None),
        "token_endpoint_auth_signing_alg_values_supported": (
            ["RS384", "ES384"] if settings.token_endpoint else None),
        "scopes_supported": supported_scopes(settings),
        "response_types_supported": ["code"] if launch else None,
        "code_challenge_methods_supported": ["S256"] if launch else None,
        "capabilities": capabilities(settings),
        "x-samplan-token-service": _token_service(settings, development_key),
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


def _token_service(settings: Settings, development_key: bool) -> str:
    if settings.token_endpoint:
        text = ("This FHIR server is a resource server only: tokens come from the issuer "
                f"{settings.token_issuer}, at the endpoints named in this document.")
    else:
        text = ("This FHIR server is a resource server only: it does not issue tokens. "
                f"Tokens come from the issuer {settings.token_issuer}; no token endpoint is "
                "configured here (SAMPLAN_TOKEN_ENDPOINT), so no grant type is advertised.")
    if development_key:
        text += " In development, mint tokens with `samplan token --scope ...`."
    return text
