"""The FHIR REST routes (https://hl7.org/fhir/R4/http.html): HTTP in, HTTP out.

| interaction        | route                                   |
|--------------------|-----------------------------------------|
| capabilities       | GET    /fhir/metadata                    |
| batch/transaction  | POST   /fhir                             |
| history-system     | GET    /fhir/_history                    |
| search-type        | GET    /fhir/{type}, POST /fhir/{type}/_search |
| create             | POST   /fhir/{type}                      |
| history-type       | GET    /fhir/{type}/_history             |
| read               | GET    /fhir/{type}/{id}                 |
| update             | PUT    /fhir/{type}/{id}                 |
| patch              | PATCH  /fhir/{type}/{id}                 |
| delete             | DELETE /fhir/{type}/{id}                 |
| history-instance   | GET    /fhir/{type}/{id}/_history        |
| vread              | GET    /fhir/{type}/{id}/_history/{vid}  |

Links (``self``, ``next``, ``previous``, ``fullUrl``) and ``Location`` start with
the request's own base (``Access.base_url``, from ``api/base_url.py``, computed
once per request where the Access is made). ``POST [type]?[search]`` is a
conditional create (``api/conditional.py``); ``_summary`` and ``_elements``
shape reads and searches (``fhir/subsetting.py``).
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Header, Request
from starlette.responses import Response

from samplan.api.auth import FhirDep, get_fhir, get_principal
from samplan.api.body import media_type, read_body, read_body_json
from samplan.api.conditional import create_criteria
from samplan.api.deps import ServicesDep, get_services, link_base
from samplan.api.responses import (
    FhirResponse,
    prefer_return,
    prefer_strict,
    version_headers,
    write_response,
)
from samplan.fhir import bundle as bundles
from samplan.fhir.dates import parse_range
from samplan.fhir.errors import BadRequest, UnsupportedMediaType
from samplan.fhir.stored import StoredResource
from samplan.fhir.subsetting import Subsetting, read_subsetting

router = APIRouter(prefix="/fhir", tags=["FHIR"])

PreferHeader = Annotated[str | None, Header(alias="Prefer")]
IfMatchHeader = Annotated[str | None, Header(alias="If-Match")]
IfNoneExistHeader = Annotated[str | None, Header(alias="If-None-Exist")]


@router.get("/metadata", operation_id="capabilities")
async def capabilities(request: Request, services: ServicesDep) -> Response:
    """The CapabilityStatement: what this server supports."""
    configured = services.settings.base_url
    base = services.base_url(request.scope)
    content = services.capability
    if base != configured:  # its own url and implementation.url, as the client called it
        for old, new in ((f'"{configured}/metadata"', f'"{base}/metadata"'),
                         (f'"url":"{configured}"', f'"url":"{base}"')):
            content = content.replace(old.encode(), new.encode())
    return FhirResponse(content)


@router.post("", operation_id="batch_or_transaction")
async def batch_or_transaction(
    request: Request, services: ServicesDep, fhir: FhirDep, prefer: PreferHeader = None
) -> Response:
    """Process a batch or transaction Bundle."""
    body = await read_body_json(request, services.settings)
    return FhirResponse(await fhir.bundle(
        body, return_representation=prefer_return(prefer) == "representation"))


@router.get("/_history", operation_id="history_system")
async def history_system(request: Request, services: ServicesDep, fhir: FhirDep) -> Response:
    """All changes on the server, newest first."""
    return await _history(request, services, fhir, None, None)


@router.get("/{resource_type}", operation_id="search_type")
async def search_get(
    resource_type: str,
    request: Request,
    fhir: FhirDep,
    prefer: PreferHeader = None,
) -> Response:
    """Search a type with query parameters."""
    params = list(request.query_params.multi_items())
    return await _search(fhir, resource_type, params, prefer)


@router.post("/{resource_type}/_search", operation_id="search_type_post")
async def search_post(
    resource_type: str,
    request: Request,
    services: ServicesDep,
    fhir: FhirDep,
    prefer: PreferHeader = None,
) -> Response:
    """Search a type with form-encoded parameters (and any in the query string)."""
    if media_type(request) != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType("POST _search takes application/x-www-form-urlencoded.")
    body = await read_body(request, services.settings.max_body_bytes)
    params = list(request.query_params.multi_items())
    params += parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return await _search(fhir, resource_type, params, prefer)


async def _search(
    fhir: FhirDep,
    resource_type: str,
    params: list[tuple[str, str]],
    prefer: str | None,
) -> Response:
    query, page = await fhir.search(resource_type, params, strict=prefer_strict(prefer))
    return FhirResponse(bundles.searchset(link_base(fhir), query, page))


@router.post("/{resource_type}", status_code=201, operation_id="create")
async def create(
    resource_type: str,
    request: Request,
    services: ServicesDep,
    fhir: FhirDep,
    prefer: PreferHeader = None,
    if_none_exist: IfNoneExistHeader = None,
) -> Response:
    """Create a resource with a server-assigned id; conditionally with If-None-Exist or
    search parameters in the query string (``POST [type]?identifier=...``)."""
    fhir.resource_type(resource_type, "create")
    criteria = create_criteria(list(request.query_params.multi_items()), if_none_exist)
    body = await read_body_json(request, services.settings)
    result = await fhir.create(resource_type, body, if_none_exist=criteria)
    return write_response(result.stored, status=201 if result.created else 200,
                          base_url=link_base(fhir), prefer=prefer, location=True,
                          warnings=result.warnings)


@router.get("/{resource_type}/_history", operation_id="history_type")
async def history_type(
    resource_type: str, request: Request, services: ServicesDep, fhir: FhirDep
) -> Response:
    """All versions of all resources of a type, newest first."""
    fhir.resource_type(resource_type, "history-type")
    return await _history(request, services, fhir, resource_type, None)


@router.get("/{resource_type}/{resource_id}", operation_id="read")
async def read(resource_type: str, resource_id: str, request: Request) -> Response:
    """Read the current version of a resource (``_summary``, ``_elements`` for less of it)."""
    # The hottest route: the same objects the dependencies would give, without the
    # dependency machinery (about a tenth of a read's CPU under load, issue 7).
    # Reads without a query string are answered before the router (api/fast_read.py).
    services = await get_services(request)
    shape = read_subsetting(resource_type, list(request.query_params.multi_items()))
    fhir = await get_fhir(request, services, await get_principal(request))
    stored = await fhir.read(resource_type, resource_id)
    return Response(
        _shaped(stored, shape),
        media_type="application/fhir+json",
        headers=version_headers(stored, link_base(fhir), location=False),
    )


@router.put("/{resource_type}/{resource_id}", operation_id="update")
async def update(
    resource_type: str,
    resource_id: str,
    request: Request,
    services: ServicesDep,
    fhir: FhirDep,
    prefer: PreferHeader = None,
    if_match: IfMatchHeader = None,
) -> Response:
    """Update a resource, or create it with this id (If-Match for optimistic locking)."""
    fhir.resource_type(resource_type, "update")
    body = await read_body_json(request, services.settings)
    result = await fhir.update(resource_type, resource_id, body, if_match=if_match)
    return write_response(result.stored, status=201 if result.created else 200,
                          base_url=link_base(fhir), prefer=prefer, location=True,
                          warnings=result.warnings)


@router.patch("/{resource_type}/{resource_id}", operation_id="patch")
async def patch(
    resource_type: str,
    resource_id: str,
    request: Request,
    services: ServicesDep,
    fhir: FhirDep,
    prefer: PreferHeader = None,
    if_match: IfMatchHeader = None,
) -> Response:
    """Apply a JSON Patch (application/json-patch+json) to a resource."""
    fhir.resource_type(resource_type, "patch")
    body = await read_body_json(request, services.settings, ("application/json-patch+json",))
    result = await fhir.patch(resource_type, resource_id, body, if_match=if_match)
    return write_response(result.stored, status=200, base_url=link_base(fhir), prefer=prefer,
                          location=False, warnings=result.warnings)


@router.delete("/{resource_type}/{resource_id}", operation_id="delete")
async def delete(
    resource_type: str,
    resource_id: str,
    fhir: FhirDep,
    if_match: IfMatchHeader = None,
) -> Response:
    """Delete a resource; its history is kept and a read then answers 410 Gone."""
    stored = await fhir.delete(resource_type, resource_id, if_match=if_match)
    headers = {"ETag": stored.etag} if stored else {}
    return Response(status_code=204, headers=headers)


@router.get("/{resource_type}/{resource_id}/_history", operation_id="history_instance")
async def history_instance(
    resource_type: str, resource_id: str, request: Request, services: ServicesDep, fhir: FhirDep
) -> Response:
    """All versions of one resource, newest first (deletions included)."""
    return await _history(request, services, fhir, resource_type, resource_id)


@router.get("/{resource_type}/{resource_id}/_history/{version_id}", operation_id="vread")
async def vread(
    resource_type: str, resource_id: str, version_id: str, request: Request, fhir: FhirDep
) -> Response:
    """Read one version of a resource (``_summary``, ``_elements`` for less of it)."""
    shape = read_subsetting(resource_type, list(request.query_params.multi_items()))
    stored = await fhir.vread(resource_type, resource_id, version_id)
    return FhirResponse(_shaped(stored, shape), 200,
                        version_headers(stored, link_base(fhir), location=False))


def _shaped(stored: StoredResource, shape: Subsetting | None) -> bytes:
    """The stored bytes untouched, unless ``_summary`` / ``_elements`` asked for less."""
    content = stored.content or b""
    return shape.apply(content) if shape is not None and content else content


async def _history(
    request: Request,
    services: ServicesDep,
    fhir: FhirDep,
    resource_type: str | None,
    resource_id: str | None,
) -> Response:
    params = dict(request.query_params)
    count = _int_param(params, "_count")
    before = _int_param(params, "_before_seq")
    since_us = None
    if "_since" in params:
        span = parse_range(params["_since"], services.gate.tz)
        if span is None:
            raise BadRequest("_since must be a FHIR instant.", ["_since"])
        since_us = span[0]
    page = await fhir.history(resource_type, resource_id, count=count,
                                       since_us=since_us, before_seq=before)
    path = "/".join(p for p in (resource_type, resource_id) if p)
    base = link_base(fhir)
    own = f"{base}/{path + '/' if path else ''}_history"
    keep = [(k, v) for k, v in request.query_params.multi_items() if k != "_before_seq"]
    self_url = f"{own}?{urlencode(keep)}" if keep else own
    next_url = None
    if page.next_before_seq is not None:
        next_url = f"{own}?{urlencode(keep + [('_before_seq', str(page.next_before_seq))])}"
    return FhirResponse(bundles.history(base, self_url, page, next_url))


def _int_param(params: dict[str, str], name: str) -> int | None:
    if name not in params:
        return None
    value = params[name]
    if not value.isdigit():
        raise BadRequest(f"{name} must be a whole number.", [name])
    return int(value)
