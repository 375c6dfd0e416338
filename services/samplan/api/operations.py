"""FHIR operations ($validate, and the agreement's $import-note / $export-note / $extract).

One route per operation, each a thin adapter: the work is in fhir/ and agreement/.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from samplan.agreement.notes import AgreementNotes
from samplan.api.auth import FhirDep
from samplan.api.body import read_body_json
from samplan.api.deps import ServicesDep, link_base
from samplan.api.responses import FhirResponse
from samplan.fhir.errors import (
    BadRequest,
    Issue,
    UnsupportedMediaType,
    operation_outcome,
)

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
    fhir: FhirDep,
    profile: Annotated[str | None, Query(description="Validate against this profile")] = None,
) -> Response:
    """Validate a resource against R4, our rules and its profiles, without storing it."""
    fhir.resource_type(resource_type)
    body = await read_body_json(request, services.settings)
    resource, profiles = _resource_from_parameters(body)
    if profile:
        profiles.append(profile)
    issues = await fhir.validate(resource_type, resource, profiles, services.profiles.validate)
    if not issues:
        issues.append(Issue("informational", "No issues found.", severity="information"))
    return FhirResponse(operation_outcome(issues))


NOTE_TYPES = ("application/json", "text/plain")


def _import_response(base_url: str, result: Any, prefer: str | None = None) -> Response:
    """The answer Bundle (warnings in the CarePlan's ``entry.response.outcome``), or with
    ``Prefer: return=OperationOutcome`` the warnings as the body (``minimal``: no body)."""
    from samplan.api.responses import prefer_return
    from samplan.fhir.errors import information

    headers = {"Location": f"{base_url}/CarePlan/"
                           f"{result.careplan.resource_id}/_history/{result.careplan.version_id}",
               "ETag": result.careplan.etag}
    status = 201 if result.created else 200
    mode = prefer_return(prefer)
    if mode == "minimal":
        return FhirResponse(None, status, headers)
    if mode == "OperationOutcome":
        outcome = operation_outcome(result.warnings) if result.warnings else information(
            f"CarePlan/{result.careplan.resource_id} version {result.careplan.version_id} "
            "stored; the note gave no warnings.")
        return FhirResponse(outcome, status, headers)
    return FhirResponse(result.bundle, status, headers)


@router.post("/CarePlan/$import-note", operation_id="import_note")
async def import_note(
    request: Request,
    services: ServicesDep,
    fhir: FhirDep,
    variant: Annotated[str | None, Query(description="Template variant (mappings/*.yaml)")] = None,
) -> Response:
    """Import a Cosmic keyword note (JSON or printed text) as the patient's agreement."""
    from samplan.api.body import media_type, read_body
    from samplan.mapping.importer import parse_note

    kind = media_type(request)
    if kind not in NOTE_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type {kind or '(none)'!r} is not accepted; send application/json "
            "(integration engine) or text/plain (the note as printed)."
        )
    body = await read_body(request, services.settings.max_body_bytes)
    parsed = parse_note(body, request.headers.get("content-type", kind), variant=variant)
    result = await AgreementNotes(fhir).import_note(parsed)
    return _import_response(link_base(fhir), result, request.headers.get("prefer"))


@router.post("/QuestionnaireResponse/$extract", operation_id="extract")
async def extract(request: Request, services: ServicesDep, fhir: FhirDep) -> Response:
    """SDC $extract: a note as a QuestionnaireResponse of a template Questionnaire, stored."""
    from samplan.mapping.questionnaire import extract as extract_note

    s = services.settings
    body = await read_body_json(request, s)
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        found = [p.get("resource") for p in body.get("parameter") or []
                 if p.get("name") == "questionnaire-response"]
        if not found:
            raise BadRequest("Parameters for $extract need 'questionnaire-response'.",
                             ["Parameters.parameter"])
        body = found[0]
    if not isinstance(body, dict) or body.get("resourceType") != "QuestionnaireResponse":
        raise BadRequest("$extract takes a QuestionnaireResponse.", ["resourceType"])
    parsed = extract_note(body)
    result = await AgreementNotes(fhir).import_note(parsed)
    return _import_response(link_base(fhir), result, request.headers.get("prefer"))


@router.get("/CarePlan/{resource_id}/$export-note", operation_id="export_note")
async def export_note(
    resource_id: str,
    request: Request,
    fhir: FhirDep,
    format: Annotated[str | None, Query(alias="_format",
                                        description="text/plain or application/json")] = None,
) -> Response:
    """The agreement as a keyword note again, in the template's order and words."""
    from samplan.mapping.export import EXPORT_MEDIA_TYPES

    wanted = format or request.headers.get("accept", "text/plain")
    fmt = "json" if "json" in wanted else "text"
    body = await AgreementNotes(fhir).export(resource_id, fmt)
    return Response(body, media_type=EXPORT_MEDIA_TYPES[fmt])  # type: ignore[index]
