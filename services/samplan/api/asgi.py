"""Small pieces the routes answered before the router share (``fast_read``, ``agreement_fast``)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import Scope

from samplan.api.responses import FhirResponse
from samplan.fhir.errors import FhirError


@dataclass(frozen=True, slots=True)
class RouteLabel:
    """What ``scope["route"]`` holds for the metrics labels (``observability/metrics.py``)."""

    operation_id: str

    @property
    def name(self) -> str:
        return self.operation_id


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of request header ``name`` (lower case), if sent."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def client_ip(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def error_response(error: FhirError) -> FhirResponse:
    """The OperationOutcome ``api/errors.py`` answers for a :class:`FhirError`."""
    return FhirResponse(error.outcome(), error.status, dict(error.headers))
