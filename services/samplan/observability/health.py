"""Readiness: the database answers and its schema is at the migration head of this code.

A replica started with new code against a database not yet migrated (or an
old replica after a contract migration) reports 503, so the load balancer and
Kubernetes keep traffic away until ``samplan migrate`` has run.
"""

from __future__ import annotations

from functools import lru_cache

from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.responses import Response

from samplan.api.responses import FhirResponse
from samplan.fhir.errors import Issue, operation_outcome
from samplan.store import migrate


@lru_cache(maxsize=1)
def head_revision() -> str | None:
    """The newest migration revision shipped with this code."""
    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    return script.get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at (None when it was never migrated)."""
    async with engine.connect() as conn:
        has_table = await conn.run_sync(
            lambda sync: sync.dialect.has_table(sync, "alembic_version"))
        if not has_table:
            return None
        row = (await conn.execute(text("SELECT version_num FROM alembic_version"))).first()
    return None if row is None else str(row[0])


def _unavailable(diagnostics: str) -> Response:
    outcome = operation_outcome([Issue(code="transient", diagnostics=diagnostics)])
    return FhirResponse(outcome, 503, {"Retry-After": "5"})


async def readiness(engine: AsyncEngine) -> Response:
    """200 when ready; 503 with an OperationOutcome saying why not."""
    try:
        current = await current_revision(engine)
    except Exception as exc:  # any driver error means "not ready", never a 500
        return _unavailable(f"database unreachable: {type(exc).__name__}")
    head = head_revision()
    if current != head:
        return _unavailable(
            f"database schema at revision {current or 'none'}, this code needs {head}: "
            "run `samplan migrate`")
    return Response(b'{"status":"ready"}', media_type="application/json")
