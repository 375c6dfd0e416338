"""Subscription operations of the backport IG: ``$status`` and ``$events``.

| operation | route | parameters |
|---|---|---|
| $status (type)     | GET/POST /fhir/Subscription/$status      | id, status |
| $status (instance) | GET/POST /fhir/Subscription/{id}/$status | |
| $events            | GET/POST /fhir/Subscription/{id}/$events | eventsSinceNumber, |
|                    |                                          | eventsUntilNumber, content |

POST takes the same parameters as a ``Parameters`` resource. Creating,
reading and changing Subscriptions is the plain FHIR REST API (api/fhir.py).
Included before the generic routes, so ``Subscription/$status`` is not read
as an id.

Access: an operation on a Subscription needs read access to that
Subscription (it belongs to its writer's organisation), checked and logged by
the gate exactly as a read; the type-level ``$status`` answers for the
Subscriptions the caller may search. ``$events`` is screened for the
Subscription's writer and the caller, and logged, by the gate.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from samplan.api.auth import FhirDep
from samplan.api.body import read_json
from samplan.api.deps import ServicesDep
from samplan.api.responses import JSON_CONTENT_TYPES, FhirResponse
from samplan.fhir.errors import BadRequest

router = APIRouter(prefix="/fhir/Subscription", tags=["Subscriptions"])

STATUS_CODES = ("requested", "active", "error", "off")


async def _parameters(request: Request, services: ServicesDep) -> list[tuple[str, str]]:
    """The operation's input: the query string, plus a Parameters body on POST."""
    params = list(request.query_params.multi_items())
    if request.method != "POST":
        return params
    s = services.settings
    body: Any = await read_json(request, limit=s.max_body_bytes, max_depth=s.max_json_depth,
                                accepted=JSON_CONTENT_TYPES)
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise BadRequest("The operation takes a Parameters resource.", ["Parameters"])
    for parameter in body.get("parameter") or []:
        if not isinstance(parameter, dict) or not isinstance(parameter.get("name"), str):
            raise BadRequest("Each parameter needs a name.", ["Parameters.parameter"])
        values = [v for k, v in parameter.items() if k.startswith("value")]
        if len(values) != 1 or not isinstance(values[0], str | int):
            raise BadRequest(f"Parameter {parameter['name']} needs one simple value.",
                             ["Parameters.parameter"])
        params.append((parameter["name"], str(values[0])))
    return params


def _one(params: list[tuple[str, str]], name: str) -> str | None:
    values = [v for k, v in params if k == name]
    if len(values) > 1:
        raise BadRequest(f"{name} may be given once.", [name])
    return values[0] if values else None


def _many(params: list[tuple[str, str]], name: str) -> list[str] | None:
    values = [part for k, v in params if k == name for part in v.split(",") if part]
    return values or None


@router.get("/$status", operation_id="subscription_status_type")
@router.post("/$status", operation_id="subscription_status_type_post")
async def status_type(request: Request, services: ServicesDep, fhir: FhirDep) -> Response:
    """The status of the Subscriptions named by `id` (all when none), filtered by `status`."""
    params = await _parameters(request, services)
    statuses = _many(params, "status")
    for status in statuses or []:
        if status not in STATUS_CODES:
            raise BadRequest(f"status must be one of {', '.join(STATUS_CODES)}.", ["status"])
    ids = _many(params, "id")
    return FhirResponse(await services.subscriptions.status(fhir, ids, statuses))


@router.get("/{subscription_id}/$status", operation_id="subscription_status")
@router.post("/{subscription_id}/$status", operation_id="subscription_status_post")
async def status_instance(subscription_id: str, request: Request,
                          services: ServicesDep, fhir: FhirDep) -> Response:
    """The status of one Subscription: counters, errors and dead-lettered events."""
    await _parameters(request, services)
    return FhirResponse(await services.subscriptions.status(fhir, [subscription_id], None))


@router.get("/{subscription_id}/$events", operation_id="subscription_events")
@router.post("/{subscription_id}/$events", operation_id="subscription_events_post")
async def events(subscription_id: str, request: Request, services: ServicesDep,
                 fhir: FhirDep) -> Response:
    """Events of one Subscription by number (at most 1000 per call), as a notification Bundle."""
    params = await _parameters(request, services)
    body = await services.subscriptions.events(
        fhir, subscription_id,
        since=_one(params, "eventsSinceNumber"),
        until=_one(params, "eventsUntilNumber"),
        content=_one(params, "content"),
    )
    return FhirResponse(body)
