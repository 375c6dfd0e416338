"""The CapabilityStatement, built from the registry so it never drifts from what is served."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from samplan import __version__
from samplan.fhir.registry import COMMON_PARAMS, REGISTRY

# Later features add what they serve (operations, supportedProfile, extensions).
Contributor = Callable[[dict[str, Any]], None]
CONTRIBUTORS: list[Contributor] = []

_DOCS = {
    "_id": "Logical id of the resource",
    "_lastUpdated": "When the resource version last changed",
    "_security": "Security labels in meta.security (e.g. NOPATIENT)",
    "_tag": "Tags in meta.tag",
}


def capability_statement(base_url: str, *, auth_enabled: bool) -> dict[str, Any]:
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
        rest["security"] = {
            "cors": True,
            "service": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                            "code": "SMART-on-FHIR",
                        }
                    ]
                }
            ],
            "description": "OAuth2 bearer tokens with SMART App Launch v2 scopes; see "
            "/.well-known/smart-configuration.",
        }
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
