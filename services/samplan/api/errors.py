"""The one place errors become HTTP: every 4xx/5xx body is an OperationOutcome.

FastAPI's own errors (unknown route, wrong method, request validation) are
rendered the same way, so a FHIR client never sees ``{"detail": ...}``; a
database that cannot be reached is a 503 ``transient`` with ``Retry-After``
(:class:`DatabaseUnavailable`, also raised on the paths answered before the
router, which render every ``FhirError`` as here); an unexpected exception is
logged with its stack and answered with a generic 500 that shows no stack trace
and no SQL.
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
from samplan.fhir.stored import DatabaseUnavailable, WriteConflict

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


def database_unavailable(exc: BaseException) -> DatabaseUnavailable | None:
    """The :class:`DatabaseUnavailable` ``exc`` is or was raised while handling, if any.

    The store raises it for every error that means the database cannot be reached
    (``store/driver.py`` keeps the one list of the driver's and SQLAlchemy's); here
    it is also found behind an error raised while handling it (a cleanup that needed
    the database too), so that such a request is a 503 as well, never a 500.
    """
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, DatabaseUnavailable):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


async def unavailable_error(_request: Request, exc: Exception) -> Response:
    """503 ``transient`` with ``Retry-After``: the database cannot be reached now (a
    failover, a restart, a full server); nothing was done, the client may retry."""
    found = database_unavailable(exc)
    assert found is not None
    return FhirResponse(found.outcome(), found.status, dict(found.headers))


async def unexpected_error(request: Request, exc: Exception) -> Response:
    if database_unavailable(exc) is not None:
        return await unavailable_error(request, exc)
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
    app.add_exception_handler(DatabaseUnavailable, unavailable_error)
    app.add_exception_handler(Exception, unexpected_error)
