"""The indicators' statements on PostgreSQL run set-based and are never JIT-compiled.

With nested loops off (``PG_SET_BASED``) a plan that still needs one (the month
windows are a range join) carries the planner's penalty for a disabled node, and its
estimated cost is far above ``jit_above_cost``. Left at the server's default, every
indicator statement was compiled with LLVM inlining and optimisation first: seconds
for a statement that runs in milliseconds, at any size. These tests EXPLAIN ANALYZE
each measure's statement as ``tally`` runs it, on a small population.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from samplan.api.deps import Services
from samplan.followup import codes
from samplan.followup.tally import Window
from samplan.store.indicators import PG_SET_BASED, tally_statement
from support.indicator_world import generate, load

MONTH_US = 2_678_400_000_000
JANUARY_US = 1_767_222_000_000_000
# six windows, as the CSV export asks (a month at a time)
HALF_YEAR = [Window(JANUARY_US + m * MONTH_US, JANUARY_US + (m + 1) * MONTH_US - 1)
             for m in range(6)]
NOW = 1_782_856_799_999_999
QUESTIONS = ("q1", "q2")


async def explain(conn: AsyncConnection, measure: str) -> dict[str, Any]:
    """EXPLAIN ANALYZE of the statement with its values bound, as the driver sends it."""
    stmt = tally_statement(measure, HALF_YEAR, restrict=None, now=NOW, by_unit=True,
                           questions=QUESTIONS, sets=True)
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    values = tuple(compiled.params[name] for name in compiled.positiontup or ())
    found = (await conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {compiled}",
                                        values)).scalar_one()
    plan: dict[str, Any] = (json.loads(found) if isinstance(found, str) else found)[0]
    return plan


@pytest.fixture
async def conn(services: Services) -> AsyncIterator[AsyncConnection]:
    await load(services, generate(count=12))
    async with services.gate.engine.connect() as connection:
        yield connection


# PostgreSQL's planner settings only: SQLite asks each criterion from the row at hand.
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
class TestSetBasedSettings:
    async def test_no_measure_is_jit_compiled(self, conn: AsyncConnection) -> None:
        for measure in codes.MEASURE_IDS:
            async with conn.begin():
                for setting in PG_SET_BASED:
                    await conn.execute(text(setting))
                plan = await explain(conn, measure)
            assert "JIT" not in plan, (measure, plan.get("JIT"))

    async def test_without_jit_off_the_same_statement_would_be_compiled(
        self, conn: AsyncConnection
    ) -> None:
        """The control: the test above can fail (when the server has JIT at all)."""
        async with conn.begin():
            if not (await conn.execute(text("SELECT pg_jit_available()"))).scalar_one():
                pytest.skip("this PostgreSQL has no JIT provider")
            for setting in PG_SET_BASED:
                if "jit" not in setting:
                    await conn.execute(text(setting))
            plan = await explain(conn, codes.MEASURE_IDS[0])
        assert plan["JIT"]["Functions"] > 0
