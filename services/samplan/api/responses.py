"""FHIR HTTP details in one place (https://hl7.org/fhir/R4/http.html).

``application/fhir+json``; ``ETag: W/"n"``, ``Last-Modified`` and, on 201,
``Location`` with ``_history/n``; ``Prefer: return=minimal |
representation | OperationOutcome`` (https://hl7.org/fhir/R4/http.html#ins-return).
"""

from __future__ import annotations

from email.utils import format_datetime
from typing import Any

import orjson
from starlette.responses import Response

from samplan.fhir.errors import Issue, information, operation_outcome
from samplan.fhir.stored import StoredResource

FHIR_JSON = "application/fhir+json"
JSON_CONTENT_TYPES = ("application/fhir+json", "application/json")


class FhirResponse(Response):
    media_type = FHIR_JSON

    def __init__(self, content: bytes | dict[str, Any] | None, status_code: int = 200,
                 headers: dict[str, str] | None = None) -> None:
        body = orjson.dumps(content) if isinstance(content, dict) else (content or b"")
        super().__init__(body, status_code=status_code, headers=headers,
                         media_type=FHIR_JSON if body else None)


def version_headers(stored: StoredResource, base_url: str, *, location: bool) -> dict[str, str]:
    headers = {
        "ETag": stored.etag,
        "Last-Modified": format_datetime(stored.last_updated_at, usegmt=True),
    }
    if location:
        headers["Location"] = (
            f"{base_url}/{stored.resource_type}/{stored.resource_id}/_history/{stored.version_id}"
        )
    return headers


def prefer_return(prefer: str | None) -> str:
    if not prefer:
        return "representation"
    for part in prefer.split(","):
        for token in part.split(";"):
            key, _, value = token.strip().partition("=")
            if key == "return" and value.strip('"') in (
                "minimal", "representation", "OperationOutcome"
            ):
                return value.strip('"')
    return "representation"


def prefer_strict(prefer: str | None) -> bool:
    if not prefer:
        return False
    return any(
        token.strip().replace(" ", "") == "handling=strict"
        for part in prefer.split(",") for token in part.split(";")
    )


def write_response(
    stored: StoredResource,
    *,
    status: int,
    base_url: str,
    prefer: str | None,
    location: bool,
    warnings: list[Issue] | None = None,
) -> FhirResponse:
    headers = version_headers(stored, base_url, location=location)
    mode = prefer_return(prefer)
    if mode == "minimal":
        return FhirResponse(None, status, headers)
    if mode == "OperationOutcome":
        outcome = (
            operation_outcome(warnings) if warnings
            else information(f"{stored.resource_type}/{stored.resource_id} version "
                             f"{stored.version_id} stored.")
        )
        return FhirResponse(outcome, status, headers)
    return FhirResponse(stored.content, status, headers)
