"""Wiring: the request middleware, ``/metrics``, the audit-failure counter, optional tracing."""

from __future__ import annotations

import hmac
import logging

from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from samplan.api.deps import Services
from samplan.api.responses import FhirResponse
from samplan.fhir.errors import FhirError, Issue, operation_outcome
from samplan.fhir.stored import DatabaseUnavailable
from samplan.observability import metrics
from samplan.observability.logs import REQUEST_ID, request_id_from
from samplan.settings import Settings

access_log = logging.getLogger("samplan.access")

QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class RequestMiddleware:
    """Request id in and out, one metrics observation and one access-log line per request.

    The access line has method, path (never the query string: it may hold
    names), status, duration, interaction and resource type; the formatter
    masks personnummer in the path.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = None
        for key, value in scope.get("headers", ()):
            if key == b"x-request-id":
                sent = bytes(value).decode("latin-1")
                break
        request_id = request_id_from(sent)
        token = REQUEST_ID.set(request_id)
        status = 500
        started = metrics.monotonic()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        metrics.IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            metrics.IN_FLIGHT.dec()
            elapsed = metrics.monotonic() - started
            labels = metrics.labels_of(scope, status)
            metrics.observe(scope, status, elapsed, labels)
            if scope.get("path") not in QUIET_PATHS:
                interaction, resource_type = labels
                access_log.info(
                    "%s %s %d", scope.get("method"), scope.get("path"), status,
                    extra={"request_id": request_id, "method": scope.get("method"),
                           "path": scope.get("path"),
                           "status": status, "duration_ms": round(elapsed * 1000, 2),
                           "interaction": interaction, "resource_type": resource_type},
                )
            REQUEST_ID.reset(token)


def _metrics_allowed(request: Request, settings: Settings) -> bool:
    if settings.metrics_token is None:
        return True
    expected = f"Bearer {settings.metrics_token.get_secret_value()}"
    return hmac.compare_digest(request.headers.get("authorization", ""), expected)


def install(app: FastAPI, settings: Settings) -> None:
    """Add the request middleware (outermost) and ``GET /metrics``; tracing when switched on."""
    if settings.otel_enabled:
        install_tracing(app)
    app.add_middleware(RequestMiddleware)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics(request: Request) -> Response:
        if not _metrics_allowed(request, settings):
            outcome = operation_outcome([Issue(code="login", diagnostics=(
                "/metrics needs the scrape token (SAMPLAN_METRICS_TOKEN) as a bearer token"))])
            return FhirResponse(outcome, 401, {"WWW-Authenticate": 'Bearer realm="metrics"'})
        services: Services | None = getattr(request.app.state, "services", None)
        body, content_type = await metrics.exposition(
            services.gate.engine if services is not None else None)
        return Response(body, media_type=content_type)


def attach(services: Services) -> None:
    """Count failed access-log appends, whatever path wrote them (the gate tells us)."""
    services.gate.on_audit_failure(_count_audit_failure)


def _count_audit_failure(error: BaseException) -> None:
    if isinstance(error, FhirError) and not isinstance(error, DatabaseUnavailable):
        return  # refused, not failed
    metrics.AUDIT_FAILURES.inc()
    if not isinstance(error, DatabaseUnavailable):  # its stack is no news (the store logs why)
        logging.getLogger("samplan.audit").exception("writing AuditEvents failed",
                                                     exc_info=error)


def install_tracing(app: FastAPI) -> None:
    """OpenTelemetry spans per request, exported over OTLP (``OTEL_EXPORTER_OTLP_*`` env)."""
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise RuntimeError(
            "SAMPLAN_OTEL_ENABLED=true needs the tracing extras: pip install 'samplan[otel]'"
        ) from exc
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider(resource=Resource.create({"service.name": "samplan"}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
    app.add_middleware(OpenTelemetryMiddleware)
