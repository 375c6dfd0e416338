"""Running the Alembic migrations from code (`samplan migrate`, tests, `make run`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url)
    config.set_main_option("file_template",
                           "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


@dataclass(frozen=True)
class Migration:
    """What an upgrade did, so ``samplan migrate`` can say it in one line."""

    database: str  # the URL without its password
    before: str | None
    after: str | None

    @property
    def outcome(self) -> Literal["created", "upgraded", "unchanged"]:
        if self.before is None:
            return "created"
        return "unchanged" if self.before == self.after else "upgraded"

    def message(self) -> str:
        if self.outcome == "created":
            return f"created the schema at revision {self.after} in {self.database}"
        if self.outcome == "upgraded":
            return (f"upgraded the schema from revision {self.before} to {self.after} "
                    f"in {self.database}")
        return (f"the schema in {self.database} is already at the newest revision "
                f"({self.after}): left as it is")


def upgrade_reporting(database_url: str) -> Migration:
    """:func:`upgrade` to the head, and what it did (the revision before and after)."""
    before = asyncio.run(_revision_of(database_url))
    upgrade(database_url)
    after = asyncio.run(_revision_of(database_url))
    shown = make_url(database_url).render_as_string(hide_password=True)
    return Migration(shown, before, after)


async def _revision_of(database_url: str) -> str | None:
    from samplan.store.database import create_engine

    engine = create_engine(database_url, pool_size=1)
    try:
        return await current_revision(engine)
    finally:
        await engine.dispose()


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


@lru_cache(maxsize=1)
def head_revision() -> str | None:
    """The newest migration revision shipped with this code."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
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
