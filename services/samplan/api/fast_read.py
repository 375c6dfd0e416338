"""``GET /fhir/{type}/{id}`` answered before routing: the hottest request, without the router.

A read by id is most of what a FHIR server is asked. Through FastAPI's router
(some forty routes matched in turn) and its dependency machinery, the framework
cost more CPU than the read itself (issue 7: ~540 µs per read, of which the
row, the access check and the bytes are a fraction). :class:`FastReadMiddleware`
sits innermost of our middlewares, so everything around a request still applies
(request id, metrics, access log, security headers, authentication, rate
limits), and answers exactly what the ``read`` route in ``api/fhir.py`` answers:
the same call through the gate (:meth:`samplan.security.gate.Access.read`:
scope, reach, NOPATIENT, log), the
same headers, the same OperationOutcome for a :class:`FhirError`. Anything else
(another method, an unregistered type, an id outside the FHIR id pattern, a
query string such as ``_summary`` or ``_elements``) goes on to the router
unchanged, and the route stays, so OpenAPI documents the interaction. So a
read served here sends the stored bytes untouched.

A read has no links (no ``Location``, no ``fullUrl``), so the request's base
(``api/base_url.py``) is not worked out here: the Access keeps the configured
one, which nothing of a read uses.
"""

from __future__ import annotations

from email.utils import format_datetime
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

from samplan.api.asgi import RouteLabel, client_ip, error_response
from samplan.api.deps import Services
from samplan.api.responses import FHIR_JSON
from samplan.fhir.errors import FhirError, Unauthorized
from samplan.fhir.registry import REGISTRY
from samplan.fhir.resource import ID_PATTERN
from samplan.fhir.stored import StoredResource
from samplan.security.principal import Principal

READ_ROUTE: Final = RouteLabel("read")


def read_headers(stored: StoredResource) -> list[tuple[bytes, bytes]]:
    """``ETag`` and ``Last-Modified`` of a read (no ``Location``: it is the resource itself)."""
    return [
        (b"etag", stored.etag.encode()),
        (b"last-modified", format_datetime(stored.last_updated_at, usegmt=True).encode()),
    ]


class FastReadMiddleware:
    """Serve ``GET /fhir/{registered type}/{valid id}``; pass everything else on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("query_string"):
            parts = scope["path"].split("/")
            if (len(parts) == 4 and parts[1] == "fhir" and parts[2] in REGISTRY
                    and ID_PATTERN.match(parts[3])):
                await self._read(parts[2], parts[3], scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _read(self, resource_type: str, resource_id: str,
                    scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = READ_ROUTE
        scope["path_params"] = {"resource_type": resource_type, "resource_id": resource_id}
        services: Services = scope["app"].state.services
        try:
            principal = scope.get("state", {}).get("principal")
            if not isinstance(principal, Principal):
                raise Unauthorized("this request was not authenticated")
            fhir = services.access(principal, client_ip(scope))
            stored = await fhir.read(resource_type, resource_id)
        except FhirError as error:
            await error_response(error)(scope, receive, send)
            return
        body = stored.content or b""
        await send({
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode()),
                        (b"content-type", FHIR_JSON.encode()),
                        *read_headers(stored)],
        })
        await send({"type": "http.response.body", "body": body})
