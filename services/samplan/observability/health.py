"""Readiness: the database answers and its schema is at the migration head of this code.

A replica started with new code against a database not yet migrated (or an
old replica after a contract migration) reports 503, so the load balancer and
Kubernetes keep traffic away until ``samplan migrate`` has run; so does a replica
that cannot reach the database (until it can again, without a restart).
"""

from __future__ import annotations

from starlette.responses import Response

from samplan.api.responses import FhirResponse
from samplan.fhir.errors import Issue, operation_outcome
from samplan.fhir.stored import DatabaseUnavailable
from samplan.observability import metrics
from samplan.security.gate import Gate


def _unavailable(diagnostics: str) -> Response:
    outcome = operation_outcome([Issue(code="transient", diagnostics=diagnostics)])
    return FhirResponse(outcome, 503, {"Retry-After": "5"})


async def readiness(gate: Gate) -> Response:
    """200 when ready; 503 with an OperationOutcome saying why not.

    Each probe asks the database anew (a pooled connection, a new one when the pool's
    were lost), within the connect and pool timeouts: 503 while the database cannot
    be reached, 200 again as soon as it answers (issue 17).
    """
    try:
        current, head = await gate.schema_revisions()
    except DatabaseUnavailable as exc:
        metrics.DATABASE_UP.set(0)
        return _unavailable(f"database unreachable: {exc.diagnostics}")
    except Exception as exc:  # any driver error means "not ready", never a 500
        metrics.DATABASE_UP.set(0)
        return _unavailable(f"database unreachable: {type(exc).__name__}")
    metrics.DATABASE_UP.set(1)
    if current != head:
        return _unavailable(
            f"database schema at revision {current or 'none'}, this code needs {head}: "
            "run `samplan migrate`")
    return Response(b'{"status":"ready"}', media_type="application/json")
