"""``GET /fhir/Patient/{id}/$agreement`` as a FHIR document, answered before the router.

What a portal asks for most (issue 7). Through FastAPI's router and dependency
machinery the framework costs ~0.1 ms per request, a quarter of a document made
before (``agreement/patient_cache.py``). :class:`AgreementMiddleware` sits inside
the security middlewares (request id, metrics, access log, security headers,
authentication, rate limits all apply) and answers exactly what the route in
``api/patient.py`` answers for a FHIR document: the same service call
(:func:`samplan.api.patient.agreement_document`, with the reader the route would
use), the same headers, the same OperationOutcome for a :class:`FhirError`.
Anything else (a query string such as ``_format``, an ``Accept`` asking for the
page, the PDF or something not offered, another method) goes on to the router
unchanged, and the route stays, so OpenAPI documents the operation.
"""

from __future__ import annotations

from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

from samplan.api.asgi import RouteLabel, client_ip, error_response, header
from samplan.api.deps import Services
from samplan.api.patient import agreement_document, negotiate, reader_of
from samplan.fhir.errors import FhirError

__all__ = ["AgreementMiddleware"]


AGREEMENT_ROUTE: Final = RouteLabel("patient_agreement")


def _wants_document(scope: Scope) -> str | None:
    """The patient id of a plain ``GET /fhir/Patient/{id}/$agreement`` for FHIR JSON."""
    if scope["type"] != "http" or scope["method"] != "GET" or scope.get("query_string"):
        return None
    parts = scope["path"].split("/")
    if len(parts) != 5 or parts[1:3] != ["fhir", "Patient"] or parts[4] != "$agreement":
        return None
    try:
        kind = negotiate(header(scope, b"accept"), None)
    except FhirError:
        return None  # the route answers the 406
    return parts[3] if parts[3] and kind == "fhir" else None


class AgreementMiddleware:
    """Serve the FHIR document of ``$agreement``; pass everything else on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        patient_id = _wants_document(scope)
        if patient_id is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = AGREEMENT_ROUTE
        scope["path_params"] = {"patient_id": patient_id}
        services: Services = scope["app"].state.services
        try:
            reader = reader_of(services, scope.get("state", {}).get("principal"),
                               client_ip(scope), services.base_url(scope))
            response = await agreement_document(services, reader, patient_id)
        except FhirError as error:
            response = error_response(error)
        await response(scope, receive, send)
