"""Group commit: every caller's rows are committed before it returns, in fewer transactions."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from samplan.api.deps import Services
from samplan.store.group_commit import GroupCommitter
from samplan.store.tables import idx_string

CALLERS = 60


class TestGroupCommit:
    async def test_concurrent_callers_share_commits_and_all_rows_land(
        self, services: Services
    ) -> None:
        commits = 0

        async def append(conn: AsyncConnection, rows: Sequence[str]) -> None:
            nonlocal commits
            commits += 1
            await conn.execute(insert(idx_string), [
                {"resource_type": "Test", "resource_id": r, "param": "p", "value": r}
                for r in rows
            ])

        committer = GroupCommitter(services.gate.service.repo, append)
        await asyncio.gather(*(committer.submit([f"row-{i}"]) for i in range(CALLERS)))
        async with services.gate.engine.connect() as conn:
            count = (await conn.execute(
                select(func.count()).select_from(idx_string)
                .where(idx_string.c.resource_type == "Test"))).scalar_one()
        assert count == CALLERS
        assert commits < CALLERS

    async def test_a_failing_commit_fails_every_caller_of_its_batch_and_stores_nothing(
        self, services: Services
    ) -> None:
        async def append(conn: AsyncConnection, rows: Sequence[str]) -> None:
            await conn.execute(insert(idx_string), [
                {"resource_type": "Test", "resource_id": r, "param": "p", "value": r}
                for r in rows
            ])
            raise RuntimeError("disk full")

        committer = GroupCommitter(services.gate.service.repo, append)
        results = await asyncio.gather(*(committer.submit([f"r{i}"]) for i in range(10)),
                                       return_exceptions=True)
        assert all(isinstance(r, RuntimeError) for r in results)
        async with services.gate.engine.connect() as conn:
            count = (await conn.execute(
                select(func.count()).select_from(idx_string)
                .where(idx_string.c.resource_type == "Test"))).scalar_one()
        assert count == 0

    async def test_nothing_to_append_returns_at_once(self, services: Services) -> None:
        async def append(_conn: AsyncConnection, _rows: Sequence[str]) -> None:
            pytest.fail("no transaction for no rows")

        await GroupCommitter(services.gate.service.repo, append).submit([])
