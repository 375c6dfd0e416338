"""The migration chain upgrades from nothing to head and downgrades back, on both databases."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from samplan.store import migrate
from samplan.store.database import create_engine
from samplan.store.tables import metadata


async def _tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


@pytest.fixture
def fresh_sqlite_url(tmp_path: pytest.TempPathFactory) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/migrations.db"  # type: ignore[operator]


class TestMigrationChain:
    async def test_upgrade_creates_every_table_and_downgrade_removes_them(
        self, fresh_sqlite_url: str
    ) -> None:
        await asyncio.to_thread(migrate.upgrade, fresh_sqlite_url)
        engine = create_engine(fresh_sqlite_url)
        try:
            assert {t.name for t in metadata.sorted_tables} <= await _tables(engine)
            await asyncio.to_thread(migrate.downgrade, fresh_sqlite_url, "base")
            assert await _tables(engine) <= {"alembic_version"}
            await asyncio.to_thread(migrate.upgrade, fresh_sqlite_url)
            assert {t.name for t in metadata.sorted_tables} <= await _tables(engine)
        finally:
            await engine.dispose()

    async def test_the_session_databases_are_at_head(self, database_url: str) -> None:
        engine = create_engine(database_url)
        try:
            assert {t.name for t in metadata.sorted_tables} <= await _tables(engine)
        finally:
            await engine.dispose()
