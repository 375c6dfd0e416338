"""Engines for the two supported databases, with the per-dialect settings that matter.

SQLite (the embedded default) runs in WAL mode so readers never wait for the
writer, and writes start with ``BEGIN IMMEDIATE`` so two writers queue at the
start of their transaction instead of failing half-way when one upgrades its
lock. PostgreSQL runs through asyncpg with a pool sized by settings.

PostgreSQL may go away (a failover, a restart, a maintenance window) and come
back, or refuse connections (``max_connections``): issue 17. Every pool here then
answers within a bound (a connect timeout, a pool acquire timeout) with
:class:`~samplan.fhir.stored.DatabaseUnavailable` (a 503), never hangs, and heals
by itself: a connection the server closed is never handed out again (checked at
checkout, without I/O), one found lost by a statement is invalidated (SQLAlchemy's
``handle_error``, the driver pool's ``expire_connections``), and the next checkout
opens a new one.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine, ExceptionContext, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, NullPool, PoolProxiedConnection

from samplan.fhir.stored import DatabaseUnavailable
from samplan.store.driver import track_begin, unavailable


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long a request may wait for the database before it is answered 503."""

    connect: float = 5.0
    """Seconds to open a connection (``SAMPLAN_DATABASE_CONNECT_TIMEOUT``)."""
    pool: float = 5.0
    """Seconds to wait for a free pooled connection (``SAMPLAN_DATABASE_POOL_TIMEOUT``)."""

    @classmethod
    def configured(cls) -> Timeouts:
        """The process's settings (``SAMPLAN_DATABASE_*_TIMEOUT``)."""
        from samplan.settings import get_settings

        settings = get_settings()
        return cls(settings.database_connect_timeout, settings.database_pool_timeout)


_TIMEOUTS: weakref.WeakKeyDictionary[Engine, Timeouts] = weakref.WeakKeyDictionary()


class _Pool(AsyncAdaptedQueuePool):
    """SQLAlchemy's asyncio queue pool, whose checkout fails as :class:`DatabaseUnavailable`
    when no connection can be had: refused, timed out, the server starting up or full,
    or none free within the pool timeout (each of which it raises in its own way)."""

    def connect(self) -> PoolProxiedConnection:
        try:
            return super().connect()
        except Exception as error:
            translated = unavailable(error)
            if translated is None or translated is error:
                raise
            raise translated from error


def create_engine(database_url: str, *, pool_size: int = 20,
                  timeouts: Timeouts | None = None) -> AsyncEngine:
    """``timeouts``: by default the process's settings."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(database_url, pool_size=pool_size)
    timeouts = timeouts or Timeouts.configured()
    # No overflow: a connection opened for a burst and closed after it costs far more
    # (a TLS/auth handshake; on SQLite a new thread) than waiting for a pooled one.
    engine = create_async_engine(
        database_url,
        poolclass=_Pool,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=timeouts.pool,
        # no pre-ping (a round trip per checkout): the checkout event of _heal sees a
        # connection the server closed without one
        pool_pre_ping=False,
        pool_recycle=3600,
        # The driver's own statement cache makes repeated statements cheap. Its
        # prepared statements would switch to PostgreSQL's generic plan after five
        # runs; for a search the right plan depends on the values (one patient's
        # CarePlans vs. an organisation named by every CareTeam): at 1M agreements
        # the generic plan of a staff search hashed every CareTeam, 600 ms instead
        # of 9 (issue 7). So these connections plan each statement for its values;
        # the driver pool's fixed-shape hot statements keep their generic plans.
        connect_args={"statement_cache_size": 512, "timeout": timeouts.connect,
                      "server_settings": {"plan_cache_mode": "force_custom_plan"}},
    )
    _TIMEOUTS[engine.sync_engine] = timeouts
    _heal(engine)
    track_begin(engine)
    return engine


def timeouts_of(engine: AsyncEngine) -> Timeouts:
    """The timeouts ``engine`` was created with (the driver pool keeps the same)."""
    return _TIMEOUTS.get(engine.sync_engine) or Timeouts.configured()


def _heal(engine: AsyncEngine) -> None:
    """Keep lost connections out of ``engine``'s pool (PostgreSQL)."""

    @event.listens_for(engine.sync_engine, "checkout")
    def _closed_by_the_server(_dbapi: Any, record: Any, _proxy: Any) -> None:
        # asyncpg marks a connection closed as soon as the server ends it (a restart, a
        # failover, an idle timeout, pg_terminate_backend): no I/O to find out. SQLAlchemy
        # then invalidates it and checks out another (or connects anew).
        driver = record.driver_connection
        if driver is not None and driver.is_closed():
            raise sa_exc.DisconnectionError("the server closed this connection")

    @event.listens_for(engine.sync_engine, "handle_error")
    def _lost(context: ExceptionContext) -> BaseException | None:
        # A statement, commit or rollback that failed because the database went away:
        # invalidate the connection (and with it the pool's older ones: SQLAlchemy
        # recycles them at their next checkout), and answer DatabaseUnavailable.
        if context.is_pre_ping:
            return None
        translated = unavailable(context.original_exception)
        if translated is None and context.is_disconnect:
            translated = DatabaseUnavailable(
                "The database is unavailable: the connection was lost; retry the request.")
        if translated is not None:
            context.is_disconnect = True
        return translated


def _sqlite_engine(database_url: str, *, pool_size: int) -> AsyncEngine:
    url = make_url(database_url)
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    if url.database in (None, "", ":memory:"):
        pooling: dict[str, Any] = {"poolclass": NullPool}
    else:
        pooling = {"pool_size": pool_size, "max_overflow": 0}
    engine = create_async_engine(
        database_url,
        connect_args={"timeout": 30, "check_same_thread": False},
        **pooling,
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when a transaction begins.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get("sqlite_immediate", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def create_reader(engine: AsyncEngine) -> AsyncEngine:
    """The pool the hot read by id takes its driver connection from.

    PostgreSQL: the same pool (asyncpg outside a transaction is autocommit).
    SQLite: a second small pool of autocommit connections, kept apart so the
    writer's BEGIN IMMEDIATE handling never meets a connection in autocommit.
    """
    if engine.dialect.name != "sqlite":
        return engine
    size = engine.pool.size() if hasattr(engine.pool, "size") else 5
    reader = create_async_engine(
        engine.url,
        connect_args={"timeout": 30, "check_same_thread": False},
        pool_size=min(size, 8),  # more threads than cores only adds GIL hand-offs
        max_overflow=0,
        pool_reset_on_return=None,  # nothing to roll back: these never begin
    )

    @event.listens_for(reader.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # autocommit: no implicit BEGIN
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    return reader


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


# Typical shape of a county-scale store (rows, then rows per distinct prefix of
# each index's columns), given to SQLite's planner until ANALYZE has real numbers.
# Without statistics SQLite walks a type's whole (type, last_updated) index for
# `CarePlan?patient=X` instead of looking the few matches up by primary key:
# 36 ms instead of 0.3 ms at 10,000 patients (bench/BASELINE.md).
_SQLITE_STATS = {
    ("resources", "ix_resources_type_updated"): "100000 10000 1",
    ("resources", "sqlite_autoindex_resources_1"): "100000 10000 1",
    ("resource_versions", "uq_resource_versions_key"): "200000 20000 2 1",
    ("resource_versions", "ix_resource_versions_type_seq"): "200000 20000 1",
    ("idx_token", "ix_idx_token_search"): "600000 60000 20000 10 10",
    ("idx_token", "ix_idx_token_owner"): "600000 60000 6",
    ("idx_reference", "ix_idx_reference_search"): "500000 3 3 2 2",
    ("idx_reference", "ix_idx_reference_owner"): "500000 50000 5",
    ("idx_date", "ix_idx_date_search"): "200000 20000 20000 2 2",
    ("idx_date", "ix_idx_date_owner"): "200000 20000 2",
    ("idx_string", "ix_idx_string_search"): "200000 20000 5000 3",
    ("idx_string", "ix_idx_string_owner"): "200000 20000 4",
}


async def seed_sqlite_statistics(engine: AsyncEngine) -> None:
    """Give SQLite's planner index statistics where it has none (never overwrites ANALYZE's)."""
    if engine.dialect.name != "sqlite":
        return
    async with engine.begin() as conn:
        await conn.exec_driver_sql("ANALYZE sqlite_schema")  # creates sqlite_stat1 if missing
        stats = await conn.exec_driver_sql("SELECT tbl, idx FROM sqlite_stat1")
        stat_rows: list[Any] = list(stats.all())
        existing = {(str(row[0]), str(row[1])) for row in stat_rows}
        schema = await conn.exec_driver_sql(
            "SELECT tbl_name, name FROM sqlite_schema WHERE type = 'index'")
        index_rows: list[Any] = list(schema.all())
        indexes = {(str(row[0]), str(row[1])) for row in index_rows}
        missing = [
            (table, index, stat) for (table, index), stat in _SQLITE_STATS.items()
            if (table, index) in indexes and (table, index) not in existing
        ]
        for table, index, stat in missing:
            await conn.exec_driver_sql(
                "INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (?, ?, ?)", (table, index, stat)
            )
        if missing:
            await conn.exec_driver_sql("ANALYZE sqlite_schema")  # reload the statistics


class DriverPool:
    """The driver's own connections (asyncpg, aiosqlite), in autocommit, for one statement each.

    The hottest statements (a read by id, a staff read's access check, the access
    log's append) skip SQLAlchemy: through its cursor adaptation one statement is
    a BEGIN, a cursor, a fetch and a ROLLBACK, each a round trip, and a pool
    checkout through a greenlet. PostgreSQL: an asyncpg pool of its own (opened on
    first use, in the loop that uses it), without the reset query on release:
    these connections never hold a transaction, a lock or a setting. SQLite: the
    small autocommit pool of :func:`create_reader`.
    """

    def __init__(self, engine: AsyncEngine, *, size: int = 8) -> None:
        self.engine = engine
        self.size = size
        sqlite = engine.dialect.name == "sqlite"
        self._file = engine.url.database if sqlite and engine.url.database not in (
            None, "", ":memory:") else None
        # an in-memory SQLite database is per connection: only the engine's own reach it
        self._reader = create_reader(engine) if sqlite and self._file is None else None
        self._pg: Any = None
        self._timeouts = timeouts_of(engine) if not sqlite else Timeouts()
        self._sqlite: asyncio.Queue[Any] | None = None
        self._sqlite_all: list[Any] = []
        self._opening = asyncio.Lock()

    @property
    def reaches_database(self) -> bool:
        """False for an in-memory SQLite database: that lives in the engine's connection,
        and a connection of this pool would open an empty one of its own."""
        return self.engine.dialect.name != "sqlite" or self._file is not None

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        if self._file is not None:
            # aiosqlite connections of our own, in a queue: no SQLAlchemy pool checkout
            # through a greenlet (a fifth of an embedded read's CPU, issue 7)
            queue = self._sqlite if self._sqlite is not None else await self._open_sqlite()
            conn = await queue.get()
            try:
                yield conn
            finally:
                queue.put_nowait(conn)
            return
        if self._reader is not None:
            raw = await self._reader.raw_connection()
            try:
                yield raw.driver_connection
            finally:
                raw.close()
            return
        # Every failure that means the database is unreachable leaves as DatabaseUnavailable:
        # opening the pool, a connection or waiting for one (bounded by the timeouts), or
        # the statement finding its connection lost; then this pool's other connections
        # are replaced at their next acquire, as SQLAlchemy's are.
        try:
            pool = self._pg if self._pg is not None else await self._open()
            async with asyncio.timeout(self._timeouts.pool):  # a timer, not a task as
                conn = await pool.acquire()                    # acquire(timeout=) makes
        except Exception as error:
            translated = unavailable(error)
            if translated is None or translated is error:
                raise
            raise translated from error
        try:
            yield conn
        except Exception as error:
            translated = unavailable(error)
            if translated is None or translated is error:
                raise
            await pool.expire_connections()
            raise translated from error
        finally:
            try:
                await pool.release(conn)
            except Exception as error:  # the server dropped it meanwhile: asyncpg let it go
                if unavailable(error) is None:
                    raise

    async def _open_sqlite(self) -> asyncio.Queue[Any]:
        async with self._opening:
            if self._sqlite is None:
                import aiosqlite

                queue: asyncio.Queue[Any] = asyncio.Queue()
                for _ in range(self.size):
                    conn = await aiosqlite.connect(self._file or "", isolation_level=None,
                                                   timeout=30)
                    await conn.execute("PRAGMA busy_timeout=30000")
                    # as the writer's: a commit made here (the access log's) is durable
                    # at the next checkpoint in WAL mode, not fsynced one by one
                    await conn.execute("PRAGMA synchronous=NORMAL")
                    self._sqlite_all.append(conn)
                    queue.put_nowait(conn)
                self._sqlite = queue
        return self._sqlite

    async def _open(self) -> Any:
        async with self._opening:
            if self._pg is None:
                import asyncpg

                async def no_reset(_conn: Any) -> None:
                    return None

                dsn = self.engine.url.set(drivername="postgresql").render_as_string(
                    hide_password=False)
                self._pg = await asyncpg.create_pool(
                    dsn, min_size=1, max_size=self.size, reset=no_reset,
                    statement_cache_size=512, timeout=self._timeouts.connect)
        return self._pg

    async def close(self) -> None:
        if self._pg is not None:
            await self._pg.close()
            self._pg = None
        for conn in self._sqlite_all:
            await conn.close()
        self._sqlite_all, self._sqlite = [], None
        if self._reader is not None and self._reader.pool is not self.engine.pool:
            await self._reader.dispose()
