"""``SAMPLAN_AUDIT_ENABLED``: the access log can be switched off only where nobody real calls.

Off is for a local demo or a benchmark's baseline (issue 7's "auth and audit
off"), and only together with auth off; in production, or with auth on, the
settings refuse it. With auth off and the log left on (the default), reads and
writes are still logged.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from conftest import make_settings
from samplan.main import create_app
from samplan.store.tables import audit_events
from security.test_http_auth import _production


def test_the_log_cannot_be_switched_off_with_auth_on(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="SAMPLAN_AUDIT_ENABLED=false needs"):
        make_settings(f"sqlite+aiosqlite:///{tmp_path}/a.db", auth_enabled=True,
                      audit_enabled=False)


def test_the_log_cannot_be_switched_off_in_production(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="SAMPLAN_AUDIT_ENABLED"):
        _production(tmp_path, audit_enabled=False)


@pytest.mark.parametrize("audit", [True, False])
async def test_reads_and_writes_are_logged_unless_switched_off(
    database_url: str, audit: bool
) -> None:
    app = create_app(make_settings(database_url, audit_enabled=audit))
    async with app.router.lifespan_context(app):
        services = app.state.services
        async with services.gate.engine.connect() as conn:
            before = (await conn.execute(select(func.count()).select_from(audit_events))).scalar()
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://samplan.test") as c:
            created = await c.post("/fhir/Patient", json={"resourceType": "Patient"})
            assert created.status_code == 201
            read = await c.get(f"/fhir/Patient/{created.json()['id']}")
            assert read.status_code == 200
        async with services.gate.engine.connect() as conn:
            after = (await conn.execute(select(func.count()).select_from(audit_events))).scalar()
    assert after - before == (2 if audit else 0)
