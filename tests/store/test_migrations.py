"""The migration chain upgrades from nothing to head and downgrades back, on both databases."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

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


def _revisions() -> list[str]:
    """Every revision, oldest first."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


@pytest.fixture(params=["sqlite", "postgres"])
async def fresh_database_url(request: pytest.FixtureRequest, tmp_path: object) -> Any:
    """An empty database of each kind (on PostgreSQL: a new database in the session cluster)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/steps.db"
        return
    from sqlalchemy import text

    base_url: str = request.getfixturevalue("postgres_url")
    name = f"samplan_steps_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base_url)
    try:
        async with admin.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield base_url.rsplit("/", 1)[0] + f"/{name}"
        async with admin.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    finally:
        await admin.dispose()


class TestEveryRevision:
    """Each revision upgrades from the one before and downgrades to it (expand/contract safety)."""

    async def test_step_by_step_up_and_down(self, fresh_database_url: str) -> None:
        from samplan.store.migrate import current_revision

        revisions = _revisions()
        assert len(revisions) >= 3
        engine = create_engine(fresh_database_url)
        try:
            for revision in revisions:
                await asyncio.to_thread(migrate.upgrade, fresh_database_url, revision)
                assert await current_revision(engine) == revision
            assert {t.name for t in metadata.sorted_tables} <= await _tables(engine)
            for previous in reversed([None, *revisions[:-1]]):
                await asyncio.to_thread(migrate.downgrade, fresh_database_url,
                                        previous or "base")
                assert await current_revision(engine) == previous
            assert await _tables(engine) <= {"alembic_version"}
            await asyncio.to_thread(migrate.upgrade, fresh_database_url)
            assert await current_revision(engine) == revisions[-1]
        finally:
            await engine.dispose()
