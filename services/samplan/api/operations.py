"""FHIR operations ($validate, and the agreement's $import-note / $export-note / $extract).

One route per operation, each a thin adapter: the work is in fhir/ and agreement/.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from samplan.api.body import read_json
from samplan.api.deps import ServicesDep
from samplan.api.responses import JSON_CONTENT_TYPES, FhirResponse
from samplan.fhir.errors import BadRequest, FhirError, Issue, operation_outcome
from samplan.fhir.resource import validate_resource

router = APIRouter(prefix="/fhir", tags=["FHIR operations"])


def _resource_from_parameters(body: Any) -> tuple[Any, list[str]]:
    """$validate takes the resource itself, or Parameters with `resource` (and `profile`)."""
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        resource = None
        profiles: list[str] = []
        for p in body.get("parameter") or []:
            if p.get("name") == "resource":
                resource = p.get("resource")
            elif p.get("name") == "profile" and isinstance(p.get("valueUri")
                                                            or p.get("valueCanonical"), str):
                profiles.append(p.get("valueUri") or p.get("valueCanonical"))
        if resource is None:
            raise BadRequest("Parameters for $validate need a 'resource' parameter.",
                             ["Parameters.parameter"])
        return resource, profiles
    return body, []


@router.post("/{resource_type}/$validate", operation_id="validate")
async def validate(
    resource_type: str,
    request: Request,
    services: ServicesDep,
    profile: Annotated[str | None, Query(description="Validate against this profile")] = None,
) -> Response:
    """Validate a resource against R4, our rules and its profiles, without storing it."""
    services.fhir.resource_type(resource_type)
    s = services.settings
    body = await read_json(request, limit=s.max_body_bytes, max_depth=s.max_json_depth,
                           accepted=JSON_CONTENT_TYPES)
    resource, profiles = _resource_from_parameters(body)
    if profile:
        profiles.append(profile)
    issues: list[Issue] = []
    try:
        checked = validate_resource(resource, resource_type)
        registry = services.extras.get("profiles")
        if profiles and registry is not None:
            issues.extend(registry.validate(checked, profiles))
    except FhirError as exc:
        issues.extend(exc.issues)
    if not issues:
        issues.append(Issue("informational", "No issues found.", severity="information"))
    return FhirResponse(operation_outcome(issues))
