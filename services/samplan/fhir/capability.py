"""The CapabilityStatement, built from the registry so it never drifts from what is served."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from samplan import __version__
from samplan.fhir.registry import COMMON_PARAMS, REGISTRY

# Later features add what they serve (operations, supportedProfile, extensions).
Contributor = Callable[[dict[str, Any]], None]
CONTRIBUTORS: list[Contributor] = []

SECURITY_SERVICE_SYSTEM = "http://terminology.hl7.org/CodeSystem/restful-security-service"
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"

_DOCS = {
    "_id": "Logical id of the resource",
    "_lastUpdated": "When the resource version last changed",
    "_security": "Security labels in meta.security (e.g. NOPATIENT)",
    "_tag": "Tags in meta.tag",
}


def capability_statement(
    base_url: str, *, auth_enabled: bool, authorize_url: str | None = None,
    token_url: str | None = None,
) -> dict[str, Any]:
    """The server's CapabilityStatement; ``authorize_url``/``token_url``: the token issuer's
    OAuth2 endpoints, when configured (see :func:`security`)."""
    resources = []
    for rtype in REGISTRY.values():
        entry: dict[str, Any] = {
            "type": rtype.name,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{rtype.name}",
            "interaction": [{"code": i} for i in rtype.interactions],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": rtype.supports("update"),
            "conditionalCreate": rtype.conditional_create and rtype.supports("create"),
            "conditionalRead": "not-supported",
            "conditionalUpdate": rtype.conditional_update,
            "conditionalDelete": "not-supported",
            "referencePolicy": ["literal", "local"],
            "searchInclude": [f"{rtype.name}:{p}" for p in rtype.includes],
            "searchRevInclude": sorted(
                f"{other.name}:{p.name}"
                for other in REGISTRY.values()
                for p in other.params.values()
                if p.type == "reference" and rtype.name in p.targets
            ),
            "searchParam": [
                {"name": name, "type": ptype, "documentation": _DOCS[name],
                 "definition": f"http://hl7.org/fhir/SearchParameter/Resource-{name.lstrip('_')}"}
                for name, ptype in COMMON_PARAMS.items()
            ]
            + [
                {
                    "name": p.name,
                    "definition": p.definition_url(rtype.name),
                    "type": p.type,
                    "documentation": p.description,
                }
                for p in rtype.params.values()
            ],
        }
        resources.append(entry)
    rest: dict[str, Any] = {
        "mode": "server",
        "documentation": "SamPlan: the documented agreement (dokumenterad överenskommelse) "
        "shared by journal systems, patient portals and municipal home care.",
        "resource": resources,
        "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
    }
    if auth_enabled:
        rest["security"] = security(authorize_url=authorize_url, token_url=token_url)
    statement: dict[str, Any] = {
        "resourceType": "CapabilityStatement",
        "id": "samplan",
        "url": f"{base_url}/metadata",
        "name": "SamPlan",
        "title": "SamPlan shared care plan server",
        "status": "active",
        "experimental": False,
        "date": "2026-11-23",
        "publisher": "SamPlan",
        "kind": "instance",
        "software": {"name": "SamPlan", "version": __version__},
        "implementation": {"description": "SamPlan FHIR R4 server", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [rest],
    }
    for contribute in CONTRIBUTORS:
        contribute(statement)
    return statement


def security(*, authorize_url: str | None, token_url: str | None) -> dict[str, Any]:
    """``rest.security``: SMART on FHIR, and the issuer's endpoints in the oauth-uris extension.

    The extension (SMART App Launch; deprecated there in favour of the
    ``.well-known`` document, still read by clients such as fhirclient and
    fhir-kit-client) is added only when an endpoint is configured: this server
    issues no tokens of its own. Its definition wants both ``authorize`` and
    ``token``; a backend-services-only issuer has no ``authorize``, and a client
    that reads the CapabilityStatement instead of the ``.well-known`` document
    must still find the token endpoint, so the extension names what exists.
    """
    result: dict[str, Any] = {
        "cors": True,
        "service": [{
            "coding": [{"system": SECURITY_SERVICE_SYSTEM, "code": "SMART-on-FHIR",
                        "display": "SMART-on-FHIR"}],
            "text": "OAuth2 bearer tokens with SMART App Launch scopes",
        }],
        "description": "OAuth2 bearer tokens with SMART App Launch v2 scopes; see "
        "/fhir/.well-known/smart-configuration (also at /.well-known/smart-configuration).",
    }
    uris = [{"url": name, "valueUri": url}
            for name, url in (("authorize", authorize_url), ("token", token_url)) if url]
    if uris:
        result["extension"] = [{"url": OAUTH_URIS, "extension": uris}]
    return result
