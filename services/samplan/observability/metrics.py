"""Prometheus metrics (prometheus-client), served at ``/metrics``.

| metric | kind | labels |
|---|---|---|
| ``samplan_http_requests_total`` | counter | interaction, resource_type, method, status |
| ``samplan_http_request_duration_seconds`` | histogram | interaction, resource_type, method |
| ``samplan_http_requests_in_flight`` | gauge | |
| ``samplan_db_pool_size`` / ``_checked_out`` / ``_overflow`` | gauge | |
| ``samplan_outbox_pending_events`` / ``samplan_outbox_dead_events`` | gauge | |
| ``samplan_outbox_oldest_pending_age_seconds`` | gauge | |
| ``samplan_audit_write_failures_total`` | counter | |
| ``samplan_database_up`` | gauge | |

``interaction`` is the route's operationId (``read``, ``search_type``,
``validate``...; ``unauthenticated`` when the auth middleware answered, ``none``
when no route matched), ``resource_type`` a registered FHIR type or empty, so
the label sets stay bounded whatever the callers send. The outbox and pool
gauges are read when Prometheus scrapes (one small query).
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any, Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from samplan.fhir.dates import now_us
from samplan.fhir.registry import REGISTRY as FHIR_TYPES
from samplan.fhir.stored import DatabaseUnavailable
from samplan.subscriptions.store import outbox_backlog

REGISTRY: Final = CollectorRegistry(auto_describe=True)

REQUESTS: Final = Counter(
    "samplan_http_requests", "HTTP requests answered.",
    ["interaction", "resource_type", "method", "status"], registry=REGISTRY,
)
LATENCY: Final = Histogram(
    "samplan_http_request_duration_seconds", "Time to answer an HTTP request.",
    ["interaction", "resource_type", "method"], registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
IN_FLIGHT: Final = Gauge(
    "samplan_http_requests_in_flight", "HTTP requests being answered.", registry=REGISTRY,
)
POOL_SIZE: Final = Gauge(
    "samplan_db_pool_size", "Connections the database pool keeps.", registry=REGISTRY)
POOL_CHECKED_OUT: Final = Gauge(
    "samplan_db_pool_checked_out", "Pool connections in use.", registry=REGISTRY)
POOL_OVERFLOW: Final = Gauge(
    "samplan_db_pool_overflow", "Connections beyond the pool size in use.", registry=REGISTRY)
OUTBOX_PENDING: Final = Gauge(
    "samplan_outbox_pending_events", "Subscription events not yet delivered.", registry=REGISTRY)
OUTBOX_DEAD: Final = Gauge(
    "samplan_outbox_dead_events", "Subscription events dead-lettered.", registry=REGISTRY)
OUTBOX_OLDEST_AGE: Final = Gauge(
    "samplan_outbox_oldest_pending_age_seconds",
    "Age of the oldest undelivered subscription event (0 when none).", registry=REGISTRY,
)
AUDIT_FAILURES: Final = Counter(
    "samplan_audit_write_failures", "AuditEvent appends that failed.", registry=REGISTRY)
DATABASE_UP: Final = Gauge(
    "samplan_database_up", "1 when the last look at the database (a scrape, /readyz) got an "
    "answer, 0 when it could not be reached.", registry=REGISTRY)


def labels_of(scope: MutableMapping[str, Any], status: int | None) -> tuple[str, str]:
    """(interaction, resource_type) of an answered request, from the route that served it."""
    route = scope.get("route")
    interaction = getattr(route, "operation_id", None) or getattr(route, "name", None)
    if interaction is None:
        interaction = "unauthenticated" if status == 401 else "none"
    resource_type = ""
    params = scope.get("path_params") or {}
    candidate = params.get("resource_type")
    if candidate is None:
        parts = scope.get("path", "").split("/")
        candidate = parts[2] if len(parts) > 2 and parts[1] == "fhir" else None
    if candidate in FHIR_TYPES:
        resource_type = candidate
    return str(interaction), resource_type


def observe(scope: MutableMapping[str, Any], status: int, seconds: float,
            labels: tuple[str, str] | None = None) -> None:
    """Count the request and its duration (``labels``: :func:`labels_of`, when known)."""
    interaction, resource_type = labels or labels_of(scope, status)
    method = scope.get("method", "")
    REQUESTS.labels(interaction, resource_type, method, str(status)).inc()
    LATENCY.labels(interaction, resource_type, method).observe(seconds)


def read_pool(engine: AsyncEngine) -> None:
    pool: Any = engine.sync_engine.pool
    for gauge, name in ((POOL_SIZE, "size"), (POOL_CHECKED_OUT, "checkedout"),
                        (POOL_OVERFLOW, "overflow")):
        method = getattr(pool, name, None)
        if callable(method):
            gauge.set(max(0, int(method())))


async def read_outbox(engine: AsyncEngine) -> None:
    found = await outbox_backlog(engine)
    pending, oldest = found.get("pending", (0, None))
    OUTBOX_PENDING.set(pending)
    OUTBOX_DEAD.set(found.get("dead", (0, None))[0])
    OUTBOX_OLDEST_AGE.set(max(0.0, (now_us() - oldest) / 1e6) if oldest else 0.0)


async def exposition(engine: AsyncEngine | None) -> tuple[bytes, str]:
    """The text exposition format, with the gauges read just now.

    While the database cannot be reached the scrape still answers (within the pool
    and connect timeouts): ``samplan_database_up`` 0, the outbox gauges as last read.
    """
    if engine is not None:
        read_pool(engine)
        try:
            await read_outbox(engine)
        except DatabaseUnavailable:
            DATABASE_UP.set(0)
        else:
            DATABASE_UP.set(1)
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def monotonic() -> float:
    return time.perf_counter()
