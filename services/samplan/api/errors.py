"""The one place errors become HTTP: every 4xx/5xx body is an OperationOutcome.

FastAPI's own errors (unknown route, wrong method, request validation) are
rendered the same way, so a FHIR client never sees ``{"detail": ...}``; an
unexpected exception is logged with its stack and answered with a generic 500
that shows no stack trace and no SQL.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from samplan.api.responses import FhirResponse
from samplan.fhir.errors import (
    BadRequest,
    FhirError,
    Issue,
    MethodNotAllowed,
    NotFound,
    operation_outcome,
)
from samplan.fhir.stored import WriteConflict

log = logging.getLogger("samplan.api")

_HTTP_CODES = {404: NotFound, 405: MethodNotAllowed}


async def fhir_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FhirError)
    return FhirResponse(exc.outcome(), exc.status, dict(exc.headers))


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        err: FhirError = NotFound(f"Nothing is served at {request.url.path}.")
    elif exc.status_code == 405:
        err = MethodNotAllowed(f"{request.method} is not supported on {request.url.path}.")
    else:
        err = FhirError(str(exc.detail))
        return FhirResponse(operation_outcome([Issue("processing", str(exc.detail))]),
                            exc.status_code, dict(exc.headers or {}))
    return FhirResponse(err.outcome(), err.status, dict(exc.headers or {}))


async def validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    issues = [
        Issue("invalid", str(e.get("msg", "invalid")),
              (".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query")),))
        for e in exc.errors()
    ]
    return FhirResponse(BadRequest.from_issues(issues).outcome(), 400)


async def conflict_error(_request: Request, _exc: Exception) -> Response:
    return FhirResponse(
        operation_outcome([Issue("conflict", "A concurrent write won; retry the request.")]), 409
    )


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return FhirResponse(
        operation_outcome([Issue("exception", "An internal error occurred; it has been logged.",
                                 severity="fatal")]),
        500,
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(FhirError, fhir_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(WriteConflict, conflict_error)
    app.add_exception_handler(Exception, unexpected_error)
