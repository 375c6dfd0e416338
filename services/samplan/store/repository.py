"""The resource repository: every SQL statement the FHIR interactions need.

Reads are single Core statements on a pooled connection returning the stored
bytes. Writes happen inside :meth:`Repository.transaction`, one database
transaction that holds the new version row, the current-row update, the index
rows and whatever the registered before-commit hooks add (outbox, audit).
No ORM on these paths: it costs ~4x on a read by id (DESIGN.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import orjson
from asyncpg.exceptions import IntegrityConstraintViolationError
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    and_,
    delete,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Select

from samplan.fhir.dates import MAX_US, MIN_US, from_us, now_us
from samplan.fhir.indexing import IndexRows, exact_param, extract
from samplan.fhir.registry import REGISTRY
from samplan.fhir.resource import stamp
from samplan.fhir.search import (
    ANY,
    CareTeamValue,
    DateValue,
    Filter,
    Include,
    ReferenceValue,
    SearchQuery,
    SortKey,
    StringValue,
    TokenValue,
)
from samplan.fhir.stored import (
    HistoryPage,
    SearchPage,
    StoredResource,
    WriteConflict,
)
from samplan.store.database import DriverPool
from samplan.store.driver import begun, driver_of, unavailable
from samplan.store.tables import (
    INDEX_TABLES,
    idx_date,
    idx_reference,
    idx_string,
    idx_token,
    resource_versions,
    resources,
)


@dataclass(slots=True)
class Change:
    """One resource version written in a transaction, for before-commit hooks."""

    resource: StoredResource
    body: dict[str, Any] | None
    previous: StoredResource | None


BeforeCommit = Callable[["WriteTx"], Awaitable[None]]


class NoResources:
    """The writer of a transaction that writes rows of its own, never a resource (the access
    log's group commit, the delivery worker's outbox bookkeeping)."""

    async def before_write(self, tx: WriteTx, resource_type: str, resource_id: str,
                           current: StoredResource | None, body: dict[str, Any] | None) -> None:
        del tx, current, body
        raise RuntimeError(f"{resource_type}/{resource_id}: this transaction writes no resources")

    async def before_commit(self, tx: WriteTx) -> None:
        del tx


class WriteObserver(Protocol):
    """Who is writing, given to every write transaction (never found in a context variable).

    The security layer's implementation checks each write against its writer's
    rights before it is made, and the whole transaction before it commits, where
    it also appends the access log; the store only calls it (it knows no policy).
    """

    async def before_write(
        self, tx: WriteTx, resource_type: str, resource_id: str,
        current: StoredResource | None, body: dict[str, Any] | None,
    ) -> None:
        """Called before each version is written (``body`` None: a deletion)."""

    async def before_commit(self, tx: WriteTx) -> None:
        """Called once, before the service's own hooks (subscriptions) and the commit."""

_RESOURCE_COLUMNS = (
    resources.c.resource_type,
    resources.c.resource_id,
    resources.c.version_id,
    resources.c.last_updated,
    resources.c.deleted,
    resources.c.content,
)


_READ_COLUMNS = "resource_type, resource_id, version_id, last_updated, deleted, content"
_READ_SQLITE = f"SELECT {_READ_COLUMNS} FROM resources WHERE resource_type = ? AND resource_id = ?"
_READ_PG = f"SELECT {_READ_COLUMNS} FROM resources WHERE resource_type = $1 AND resource_id = $2"


def _row_to_stored(row: Any, method: str = "") -> StoredResource:
    return StoredResource(
        row.resource_type,
        row.resource_id,
        row.version_id,
        row.last_updated,
        bool(row.deleted),
        row.content,
        method,
    )


class Repository:
    """Storage of FHIR resources: current rows, append-only history, search indexes."""

    def __init__(self, engine: AsyncEngine, *, tz: ZoneInfo, base_url: str = "") -> None:
        self.engine = engine
        self.tz = tz
        self.base_url = base_url
        self.is_sqlite = engine.dialect.name == "sqlite"
        # A read by id is one statement: run it without BEGIN/ROLLBACK around it.
        self._driver = DriverPool(engine)
        self.before_commit: list[BeforeCommit] = []
        # SQLite has one writer at a time; queue them here rather than in busy-wait.
        self._sqlite_write_lock = asyncio.Lock()
        self._last_stamp = 0

    # -- reads ---------------------------------------------------------------------------

    @asynccontextmanager
    async def driver_connection(self) -> AsyncIterator[Any]:
        """The driver's own connection (asyncpg / aiosqlite), in autocommit, for one statement.

        For the hottest statements (issue 7; ``store/database.py`` ``DriverPool``).
        Each statement commits by itself: use it only where one statement is the
        whole unit.
        """
        async with self._driver.connection() as conn:
            yield conn

    @property
    def has_autocommit_writer(self) -> bool:
        """Whether :meth:`autocommit_writer` reaches this database (not an in-memory SQLite
        one: that lives in the engine's own connection only)."""
        return self._driver.reaches_database

    @asynccontextmanager
    async def autocommit_writer(self) -> AsyncIterator[Any]:
        """A driver connection for a write that is one self-committing statement (the
        access log's group commit): a statement, not a BEGIN, a statement and a COMMIT
        through SQLAlchemy. On SQLite it waits for the process's write slot, as every
        write does, so it never meets another writer in the busy handler."""
        slot: AbstractAsyncContextManager[object] = (
            self._sqlite_write_lock if self.is_sqlite else nullcontext())
        async with slot, self._driver.connection() as conn:
            yield conn

    async def read(self, resource_type: str, resource_id: str) -> StoredResource | None:
        async with self.driver_connection() as driver:
            if self.is_sqlite:
                rows = await driver.execute_fetchall(_READ_SQLITE, (resource_type, resource_id))
                row = rows[0] if rows else None
            else:
                row = await driver.fetchrow(_READ_PG, resource_type, resource_id)
        if row is None:
            return None
        return StoredResource(row[0], row[1], row[2], row[3], bool(row[4]), row[5])

    async def read_many(self, keys: Sequence[tuple[str, str]]) -> list[StoredResource]:
        if not keys:
            return []
        async with self.engine.connect() as conn:
            return await _read_many(conn, keys)

    async def vread(
        self, resource_type: str, resource_id: str, version_id: int
    ) -> StoredResource | None:
        v = resource_versions.c
        stmt = select(
            v.resource_type, v.resource_id, v.version_id, v.last_updated, v.deleted, v.content,
            v.method,
        ).where(v.resource_type == resource_type, v.resource_id == resource_id,
                v.version_id == version_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return _row_to_stored(row, row.method) if row else None

    async def history(
        self,
        resource_type: str | None,
        resource_id: str | None,
        *,
        count: int,
        since_us: int | None = None,
        before_seq: int | None = None,
    ) -> HistoryPage:
        v = resource_versions.c
        stmt = select(
            v.seq, v.resource_type, v.resource_id, v.version_id, v.last_updated, v.deleted,
            v.content, v.method,
        )
        if resource_type is not None:
            stmt = stmt.where(v.resource_type == resource_type)
        if resource_id is not None:
            stmt = stmt.where(v.resource_id == resource_id)
        if since_us is not None:
            stmt = stmt.where(v.last_updated >= since_us)
        if before_seq is not None:
            stmt = stmt.where(v.seq < before_seq)
        stmt = stmt.order_by(v.seq.desc()).limit(count + 1)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        more = len(rows) > count
        rows = rows[:count]
        entries = [_row_to_stored(r, r.method) for r in rows]
        return HistoryPage(entries, rows[-1].seq if more and rows else None)

    async def search(self, query: SearchQuery) -> SearchPage:
        async with self.engine.connect() as conn:
            return await _search(conn, query)

    async def close(self) -> None:
        """Close the driver connections (the engine is the application's to dispose of)."""
        await self._driver.close()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    # -- writes --------------------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self, writer: WriteObserver) -> AsyncIterator[WriteTx]:
        """One database transaction for a whole write (or a whole transaction Bundle),
        made by ``writer``, who is asked before each write and before the commit."""
        if self.is_sqlite:
            async with self._sqlite_write_lock:
                async with self._begin(writer) as tx:
                    yield tx
        else:
            async with self._begin(writer) as tx:
                yield tx

    @asynccontextmanager
    async def _begin(self, writer: WriteObserver) -> AsyncIterator[WriteTx]:
        async with self.engine.connect() as conn:
            if self.is_sqlite:
                conn = await conn.execution_options(sqlite_immediate=True)
            try:
                async with conn.begin():
                    tx = WriteTx(self, conn, writer=writer)
                    try:
                        yield tx
                        await writer.before_commit(tx)
                        for hook in self.before_commit:
                            await hook(tx)
                    except IntegrityError as exc:
                        raise WriteConflict(str(exc.orig)) from exc
                    except (IntegrityConstraintViolationError,  # from the drivers themselves
                            sqlite3.IntegrityError) as exc:
                        raise WriteConflict(str(exc)) from exc
            except Exception as exc:
                # SQLAlchemy invalidates a connection its own statements found lost; one a
                # driver statement found lost (tx.driver()) is invalidated here, so that it
                # never goes back to the pool (issue 17). Either way: DatabaseUnavailable.
                lost = unavailable(exc)
                if lost is None:
                    raise
                if not conn.invalidated:
                    await conn.invalidate(exc)
                if lost is exc:
                    raise
                raise lost from exc

    def next_stamp(self) -> int:
        """A strictly increasing write time in this process (ties break ETag-free clients)."""
        stamp_us = max(now_us(), self._last_stamp + 1)
        self._last_stamp = stamp_us
        return stamp_us


@dataclass
class WriteTx:
    """The open write transaction: what the FHIR interactions and hooks write through."""

    repo: Repository
    conn: AsyncConnection
    changes: list[Change] = field(default_factory=list)
    writer: WriteObserver | None = None
    """Asked before each write (None: a bulk load's stand-in, bench/load.py)."""
    _locked: set[int] = field(default_factory=set)
    _driver: Any = field(default=None, repr=False)

    async def driver(self) -> Any:
        """The driver's connection of this transaction: asyncpg (see :func:`driver_of`), or
        aiosqlite, whose transaction ``conn.begin()`` opened at once (``BEGIN IMMEDIATE``
        in the engine's begin event, store/database.py), so no statement is needed first."""
        if self._driver is None:
            if self.repo.is_sqlite:
                sync = self.conn.sync_connection
                assert sync is not None, "a connection checked out"
                assert sync.in_transaction(), "inside the write's transaction"
                self._driver = sync.connection.driver_connection
            else:
                self._driver = await driver_of(self.conn)
        return self._driver

    async def _first_or_driver(self, sql: str, *args: Any) -> Any:
        """The first row of ``sql`` (``$n`` parameters), sent to the driver; or through
        SQLAlchemy while this transaction has run nothing yet, so that SQLAlchemy sends
        BEGIN with it (no statement of its own for that: :func:`driver_of`)."""
        if self._driver is None and not begun(self.conn):
            return (await self.conn.exec_driver_sql(sql, args)).first()
        return await (await self.driver()).fetchrow(sql, *args)

    @property
    def on_driver(self) -> bool:
        """Whether the write statements go to the driver (PostgreSQL, issue 7); else they
        are SQLAlchemy statements on ``conn``: SQLite, or a stand-in connection (the
        bench's loader collects a load's INSERTs through one, bench/load.py)."""
        return not self.repo.is_sqlite and isinstance(self.conn, AsyncConnection)

    @property
    def on_sqlite_driver(self) -> bool:
        """SQLite: the write statements go to aiosqlite itself, in the transaction that
        ``conn.begin()`` opened (``BEGIN IMMEDIATE``, store/database.py): the same
        statements without SQLAlchemy's building and result wrapping for each (a third
        to a quarter of an embedded write's time went to it)."""
        return self.repo.is_sqlite and isinstance(self.conn, AsyncConnection)

    async def current(self, resource_type: str, resource_id: str) -> StoredResource | None:
        """The current row, locked against other writers until this transaction ends."""
        if self.on_driver:
            pg = await self._first_or_driver(_LOCK_PG, resource_type, resource_id)
            if pg is None:
                return None
            return StoredResource(pg[0], pg[1], pg[2], pg[3], pg[4], pg[5])
        if self.on_sqlite_driver:
            rows = await (await self.driver()).execute_fetchall(
                _READ_SQLITE, (resource_type, resource_id))
            if not rows:
                return None
            r = rows[0]
            return StoredResource(r[0], r[1], r[2], r[3], bool(r[4]), r[5])
        stmt = select(*_RESOURCE_COLUMNS).where(
            resources.c.resource_type == resource_type, resources.c.resource_id == resource_id
        )
        if not self.repo.is_sqlite:
            stmt = stmt.with_for_update()
        row = (await self.conn.execute(stmt)).first()
        return _row_to_stored(row) if row else None

    async def lock(self, key: str) -> None:
        """Serialise transactions that must not interleave (e.g. equal conditional creates).

        PostgreSQL: a transaction-scoped advisory lock. SQLite: writers are already
        serial, so nothing to do.
        """
        await self.lock_many([key])

    async def lock_many(self, keys: Sequence[str]) -> None:
        """:meth:`lock` for several keys in one round trip (a transaction Bundle's
        conditional creates), taken in one order by every writer."""
        if self.repo.is_sqlite:
            return
        numbers = sorted({_lock_number(k) for k in keys} - self._locked)
        if not numbers:
            return
        if self.on_driver:
            await self._first_or_driver(_LOCK_MANY_PG, numbers)
        else:
            for number in numbers:
                await self.conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": number})
        self._locked.update(numbers)

    async def by_identifiers(
        self, wanted: Sequence[tuple[str, str | None, str]]
    ) -> dict[tuple[str, str | None, str], list[StoredResource]]:
        """The current resources carrying each ``(type, system, code)`` identifier, as the
        ``identifier`` search parameter indexes them, for many in one statement."""
        found: dict[tuple[str, str | None, str], list[StoredResource]] = {w: [] for w in wanted}
        if not wanted:
            return found
        rows: Any
        if self.on_sqlite_driver or (self.on_driver and (
                self._driver is not None or begun(self.conn))):
            # fixed SQL (issue 15): building the OR of one clause per identifier with
            # SQLAlchemy cost a note's import more than the database's answer did (on
            # PostgreSQL once the transaction has begun: see _first_or_driver)
            driver = await self.driver()
            if self.on_driver:
                types, systems, codes = (list(column) for column in zip(*wanted, strict=True))
                rows = await driver.fetch(_BY_IDENTIFIERS_PG, types, systems, codes)
            else:
                rows = await driver.execute_fetchall(
                    _BY_IDENTIFIERS_SQLITE, (orjson.dumps(wanted).decode(),))
        else:
            t, r = idx_token.c, resources.c
            rows = (await self.conn.execute(select(
                t.resource_type, t.system, t.code, *_RESOURCE_COLUMNS).join(
                resources, and_(r.resource_type == t.resource_type,
                                r.resource_id == t.resource_id)).where(
                t.param == "identifier", r.deleted == false(),
                or_(*(and_(t.resource_type == rtype,
                           t.system.is_(None) if system is None else t.system == system,
                           t.code == code) for rtype, system, code in wanted)),
            ).order_by(r.last_updated, r.resource_id))).all()
        for row in rows:
            key = (row[0], row[1], row[2])
            if key in found:
                found[key].append(StoredResource(row[3], row[4], row[5], row[6], bool(row[7]),
                                                 row[8]))
        return found

    async def search(self, query: SearchQuery) -> SearchPage:
        return await _search(self.conn, query)

    async def read_many(self, keys: Sequence[tuple[str, str]]) -> list[StoredResource]:
        return await _read_many(self.conn, keys)

    async def write(
        self,
        resource: dict[str, Any],
        *,
        resource_id: str,
        current: StoredResource | None,
        method: str,
    ) -> StoredResource:
        """Store a new version of ``resource`` after ``current`` (None: it is new)."""
        resource_type = resource["resourceType"]
        if self.writer is not None:
            await self.writer.before_write(self, resource_type, resource_id, current, resource)
        version = (current.version_id + 1) if current else 1
        at = self.repo.next_stamp()
        content = stamp(resource, resource_id=resource_id, version_id=version, at=from_us(at))
        stored = StoredResource(resource_type, resource_id, version, at, False, content, method)
        rows = extract(resource, REGISTRY[resource_type], self.repo.tz, self.repo.base_url)
        if self.on_driver:
            await self._write_pg(stored, current, rows)
            self.changes.append(Change(stored, resource, current))
            return stored
        if self.on_sqlite_driver:
            await self._write_sqlite(stored, current, rows)
            self.changes.append(Change(stored, resource, current))
            return stored
        await self._append(stored, method, current)
        key = {"resource_type": resource_type, "resource_id": resource_id}
        if rows.tokens:
            await self.conn.execute(insert(idx_token), [
                {**key, "param": p, "system": s, "code": c[:255]} for p, s, c in rows.tokens
            ])
        if rows.references:
            await self.conn.execute(insert(idx_reference), [
                {**key, "param": p, "target_type": t, "target_id": i}
                for p, t, i in rows.references
            ])
        if rows.dates:
            await self.conn.execute(insert(idx_date), [
                {**key, "param": p, "low": lo, "high": hi} for p, lo, hi in rows.dates
            ])
        if rows.strings:
            await self.conn.execute(insert(idx_string), [
                {**key, "param": p, "value": v} for p, v in rows.strings
            ])
        self.changes.append(Change(stored, resource, current))
        return stored

    async def delete(self, current: StoredResource) -> StoredResource:
        if self.writer is not None:
            await self.writer.before_write(self, current.resource_type, current.resource_id,
                                           current, None)
        at = self.repo.next_stamp()
        stored = StoredResource(
            current.resource_type, current.resource_id, current.version_id + 1, at, True, None,
            "DELETE",
        )
        if self.on_driver:
            await self._write_pg(stored, current, None)
        elif self.on_sqlite_driver:
            await self._write_sqlite(stored, current, None)
        else:
            await self._append(stored, "DELETE", current)
        self.changes.append(Change(stored, None, current))
        return stored

    async def _write_pg(
        self, stored: StoredResource, current: StoredResource | None, rows: IndexRows | None
    ) -> None:
        """PostgreSQL: the version row, the current row and the index rows in one statement.

        What :meth:`_append` and the index inserts do in up to ten round trips
        through SQLAlchemy (issue 7): here one, prepared once per connection
        (see :func:`_write_pg_sql`). ``rows`` None: a deletion.
        """
        replaced = () if current is None else (current.version_id,)
        arrays: list[list[Any]] = []
        if rows is not None:  # one array per column, tables and columns as _INDEX_COLUMNS
            for table_rows, columns in zip(_by_table(rows), _INDEX_COLUMNS.values(),
                                           strict=True):
                arrays += [[row[i] for row in table_rows] for i in range(len(columns))]
        row = await self._first_or_driver(
            _WRITE_PG[current is not None, rows is not None],
            stored.resource_type, stored.resource_id, stored.version_id, stored.last_updated,
            stored.method, stored.deleted, stored.content, *replaced, *arrays,
        )
        changed = row[0] if row is not None else None
        if changed != 1:
            raise WriteConflict(f"{stored.resource_type}/{stored.resource_id} changed")

    async def _write_sqlite(
        self, stored: StoredResource, current: StoredResource | None, rows: IndexRows | None
    ) -> None:
        """SQLite: what :meth:`_append` and the index inserts do, sent to aiosqlite (one
        ``executemany`` an index table). ``rows`` None: a deletion."""
        driver = await self.driver()
        key = (stored.resource_type, stored.resource_id)
        await driver.execute(_INSERT_VERSION_SQLITE, (
            *key, stored.version_id, stored.last_updated, stored.method, stored.deleted,
            stored.content))
        if current is None:
            await driver.execute(_INSERT_CURRENT_SQLITE, (
                *key, stored.version_id, stored.last_updated, stored.deleted, stored.content))
        else:
            cursor = await driver.execute(_UPDATE_CURRENT_SQLITE, (
                stored.version_id, stored.last_updated, stored.deleted, stored.content, *key,
                current.version_id))
            if cursor.rowcount != 1:
                raise WriteConflict(f"{stored.resource_type}/{stored.resource_id} changed")
            for delete_sql in _DELETE_INDEX_SQLITE:
                await driver.execute(delete_sql, key)
        if rows is None:
            return
        for insert_sql, table_rows in zip(_INSERT_INDEX_SQLITE, _by_table(rows), strict=True):
            if table_rows:
                await driver.executemany(insert_sql, [(*key, *row) for row in table_rows])

    async def _append(
        self, stored: StoredResource, method: str, current: StoredResource | None
    ) -> None:
        values = {
            "resource_type": stored.resource_type,
            "resource_id": stored.resource_id,
            "version_id": stored.version_id,
            "last_updated": stored.last_updated,
            "deleted": stored.deleted,
            "content": stored.content,
        }
        await self.conn.execute(insert(resource_versions).values(method=method, **values))
        if current is None:
            await self.conn.execute(insert(resources).values(**values))
        else:
            result = await self.conn.execute(
                update(resources)
                .where(
                    resources.c.resource_type == stored.resource_type,
                    resources.c.resource_id == stored.resource_id,
                    resources.c.version_id == current.version_id,
                )
                .values(**values)
            )
            if result.rowcount != 1:
                raise WriteConflict(f"{stored.resource_type}/{stored.resource_id} changed")
            for table in INDEX_TABLES:
                await self.conn.execute(
                    delete(table).where(
                        table.c.resource_type == stored.resource_type,
                        table.c.resource_id == stored.resource_id,
                    )
                )


_LOCK_PG = _READ_PG + " FOR UPDATE"
# the keys come sorted: unnest keeps an array's order, so every writer locks in one order
_LOCK_MANY_PG = "SELECT count(pg_advisory_xact_lock(k)) FROM unnest($1::bigint[]) AS k"
# WriteTx.by_identifiers: the wanted (type, system, code) as three arrays, or as one JSON
# array of triples on SQLite; an absent system matches a token without one
_BY_IDENTIFIERS_COLUMNS = ("t.resource_type, t.system, t.code, r.resource_type, r.resource_id, "
                           "r.version_id, r.last_updated, r.deleted, r.content")
_BY_IDENTIFIERS_PG = f"""SELECT {_BY_IDENTIFIERS_COLUMNS}
FROM unnest($1::text[], $2::text[], $3::text[]) AS w(resource_type, system, code)
JOIN idx_token t ON t.resource_type = w.resource_type AND t.param = 'identifier'
  AND t.code = w.code AND t.system IS NOT DISTINCT FROM w.system
JOIN resources r ON r.resource_type = t.resource_type AND r.resource_id = t.resource_id
WHERE NOT r.deleted ORDER BY r.last_updated, r.resource_id"""
_BY_IDENTIFIERS_SQLITE = f"""SELECT {_BY_IDENTIFIERS_COLUMNS}
FROM json_each(?) AS w
JOIN idx_token t ON t.resource_type = json_extract(w.value, '$[0]') AND t.param = 'identifier'
  AND t.code = json_extract(w.value, '$[2]')
  AND t.system IS json_extract(w.value, '$[1]')
JOIN resources r ON r.resource_type = t.resource_type AND r.resource_id = t.resource_id
WHERE r.deleted = 0 ORDER BY r.last_updated, r.resource_id"""


def _lock_number(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)


# per index table (in the order of IndexRows' fields): its own columns and their SQL types
_INDEX_COLUMNS = {
    table.name: tuple((c.name, "bigint" if isinstance(c.type, BigInteger) else "varchar")
                      for c in table.c if c.name not in ("resource_type", "resource_id"))
    for table in INDEX_TABLES
}


def _by_table(rows: IndexRows) -> tuple[Sequence[tuple[Any, ...]], ...]:
    """The index rows per table, in ``_INDEX_COLUMNS``' order (a token's code as stored:
    at most 255 characters)."""
    tokens = [(p, s, c[:255]) for p, s, c in rows.tokens]
    return tokens, rows.references, rows.dates, rows.strings


def _write_pg_sql(*, replacing: bool, index: bool) -> str:
    """The write statement: ``replacing`` the current row (update, delete) or adding it;
    with ``index``, the new index rows as arrays (an update or create; a delete has none).

    Parameters: $1 type, $2 id, $3 version, $4 last_updated, $5 method, $6 deleted,
    $7 content, when replacing $8 the version replaced, then the index rows as arrays,
    one per column of each index table. Data-modifying CTEs all run, to completion, on
    one snapshot, taken after the current row was locked. An update rewrites the rows
    of an index table only when they differ from the stored ones (as sorted lists of
    rows): rewriting identical rows is most of a small update's work for the database.
    It answers how many current rows it wrote: 1, or 0 when the version replaced is no
    longer current.
    """
    key = "$1::varchar, $2::varchar"
    owner = "resource_type = $1::varchar AND resource_id = $2::varchar"
    parts = [
        "v AS (INSERT INTO resource_versions (resource_type, resource_id, version_id, "
        f"last_updated, method, deleted, content) VALUES ({key}, $3::integer, $4::bigint, "
        "$5::varchar, $6::boolean, $7::bytea))",
    ]
    if replacing:
        parts.append(
            "c AS (UPDATE resources SET version_id = $3::integer, last_updated = $4::bigint, "
            f"deleted = $6::boolean, content = $7::bytea WHERE {owner} "
            "AND version_id = $8::integer RETURNING 1)"
        )
    else:
        parts.append(
            "c AS (INSERT INTO resources (resource_type, resource_id, version_id, last_updated, "
            f"deleted, content) VALUES ({key}, $3::integer, $4::bigint, $6::boolean, "
            "$7::bytea) RETURNING 1)"
        )
    n = 8 if replacing else 7  # the arrays' parameters follow
    for table, columns in _INDEX_COLUMNS.items():
        names = ", ".join(name for name, _ in columns)
        arrays = ", ".join(f"${n + i}::{kind}[]" for i, (_, kind) in enumerate(columns, 1))
        n += len(columns) if index else 0
        new = f"unnest({arrays}) AS n({names})"
        if not replacing:
            parts.append(f"i_{table} AS (INSERT INTO {table} (resource_type, resource_id, "
                         f"{names}) SELECT {key}, {names} FROM {new})")
            continue
        if not index:
            parts.append(f"d_{table} AS (DELETE FROM {table} WHERE {owner})")
            continue
        stored_rows = f"SELECT ROW({names})::text AS r FROM {table} WHERE {owner}"
        new_rows = f"SELECT ROW({names})::text AS r FROM {new}"
        parts += [
            f"s_{table} AS (SELECT coalesce((SELECT array_agg(r ORDER BY r) FROM ({stored_rows}) "
            f"o), '{{}}') = coalesce((SELECT array_agg(r ORDER BY r) FROM ({new_rows}) w), "
            "'{}') AS same)",
            f"d_{table} AS (DELETE FROM {table} WHERE {owner} "
            f"AND NOT (SELECT same FROM s_{table}))",
            f"i_{table} AS (INSERT INTO {table} (resource_type, resource_id, {names}) "
            f"SELECT {key}, {names} FROM {new} WHERE NOT (SELECT same FROM s_{table}))",
        ]
    return "WITH " + ", ".join(parts) + " SELECT count(*) FROM c"


# by (replacing, index)
_WRITE_PG = {(replacing, index): _write_pg_sql(replacing=replacing, index=index)
             for replacing in (False, True) for index in (False, True)}

# SQLite's write statements (WriteTx._write_sqlite); the index tables in IndexRows' order
_INSERT_VERSION_SQLITE = (
    "INSERT INTO resource_versions (resource_type, resource_id, version_id, last_updated, "
    "method, deleted, content) VALUES (?, ?, ?, ?, ?, ?, ?)")
_INSERT_CURRENT_SQLITE = (
    "INSERT INTO resources (resource_type, resource_id, version_id, last_updated, deleted, "
    "content) VALUES (?, ?, ?, ?, ?, ?)")
_UPDATE_CURRENT_SQLITE = (
    "UPDATE resources SET version_id = ?, last_updated = ?, deleted = ?, content = ? "
    "WHERE resource_type = ? AND resource_id = ? AND version_id = ?")
_DELETE_INDEX_SQLITE = tuple(
    f"DELETE FROM {name} WHERE resource_type = ? AND resource_id = ?" for name in _INDEX_COLUMNS)
_INSERT_INDEX_SQLITE = tuple(
    f"INSERT INTO {name} (resource_type, resource_id, {', '.join(c for c, _ in columns)}) "
    f"VALUES (?, ?, {', '.join('?' * len(columns))})" for name, columns in _INDEX_COLUMNS.items())


# -- search SQL ------------------------------------------------------------------------------


async def _read_many(
    conn: AsyncConnection, keys: Sequence[tuple[str, str]]
) -> list[StoredResource]:
    by_type: dict[str, list[str]] = {}
    for rtype, rid in keys:
        by_type.setdefault(rtype, []).append(rid)
    found: dict[tuple[str, str], StoredResource] = {}
    for rtype, ids in by_type.items():
        stmt = select(*_RESOURCE_COLUMNS).where(
            resources.c.resource_type == rtype, resources.c.resource_id.in_(ids),
            resources.c.deleted == false(),
        )
        for row in (await conn.execute(stmt)).all():
            found[(row.resource_type, row.resource_id)] = _row_to_stored(row)
    return [found[k] for k in dict.fromkeys(keys) if k in found]


def _owner(table: Any, rtype: str, name: str) -> Select[Any]:
    return select(table.c.resource_id).where(table.c.resource_type == rtype, table.c.param == name)


def _filter_clause(query: SearchQuery, flt: Filter) -> ColumnElement[bool]:
    rtype = query.resource_type
    r = resources.c
    if flt.values and isinstance(flt.values[0], CareTeamValue):
        return _care_team_clause(rtype, flt.values[0])
    if flt.name == "_id":
        ids = [v.code for v in flt.values if isinstance(v, TokenValue) and v.code]
        if flt.modifier == "not":
            return r.resource_id.not_in(ids)
        return r.resource_id.in_(ids)
    if flt.name == "_lastUpdated":
        return or_(*(_date_condition(r.last_updated, r.last_updated, v)
                     for v in flt.values if isinstance(v, DateValue)))
    if flt.type == "token":
        conds = [_token_condition(v) for v in flt.values if isinstance(v, TokenValue)]
        sub = _owner(idx_token, rtype, flt.name).where(or_(*conds))
        if flt.modifier == "not":
            return r.resource_id.not_in(sub)
        return r.resource_id.in_(sub)
    if flt.type == "reference":
        conds = []
        for v in flt.values:
            assert isinstance(v, ReferenceValue)
            cond = idx_reference.c.target_id == v.target_id
            if v.target_type:
                cond = and_(cond, idx_reference.c.target_type == v.target_type)
            conds.append(cond)
        return r.resource_id.in_(_owner(idx_reference, rtype, flt.name).where(or_(*conds)))
    if flt.type == "date":
        dconds = [_date_condition(idx_date.c.low, idx_date.c.high, v)
                  for v in flt.values if isinstance(v, DateValue)]
        return r.resource_id.in_(_owner(idx_date, rtype, flt.name).where(or_(*dconds)))
    sconds = [_string_condition(v) for v in flt.values if isinstance(v, StringValue)]
    key = exact_param(flt.name) if flt.modifier == "exact" else flt.name
    return r.resource_id.in_(_owner(idx_string, rtype, key).where(or_(*sconds)))


def _care_team_clause(rtype: str, v: CareTeamValue) -> ColumnElement[bool]:
    """Resources about a patient of the care teams ``v`` names (an access restriction):
    reach as ``store/access.py`` defines it, correlated to the rows searched."""
    from samplan.store.access import reach_predicate

    def reaches(patient: str) -> ColumnElement[bool] | None:
        return reach_predicate(patient, organisations=v.organisations, roles=v.roles,
                               practitioners=v.practitioners, blocked=v.blocked)

    if rtype == "Patient":
        own = reaches("resources.resource_id")
        return own if own is not None else false()
    about = idx_reference.alias("reach_about")
    reached = reaches("reach_about.target_id")
    if reached is None:
        return false()
    return select(about.c.resource_id).where(
        about.c.resource_type == rtype, about.c.resource_id == resources.c.resource_id,
        about.c.param == "patient", about.c.target_type == "Patient", reached,
    ).exists()


def _token_condition(v: TokenValue) -> ColumnElement[bool]:
    c = idx_token.c
    conds: list[ColumnElement[bool]] = []
    if v.code is not None:
        conds.append(c.code == v.code)
    if v.system is None:
        conds.append(c.system.is_(None))
    elif v.system != ANY:
        conds.append(c.system == v.system)
    return and_(*conds) if conds else true()


def _date_condition(
    low: ColumnElement[int], high: ColumnElement[int], v: DateValue
) -> ColumnElement[bool]:
    # Ranges compared as in https://hl7.org/fhir/R4/search.html#prefix
    if v.prefix == "eq":
        return and_(low >= v.low, high <= v.high)
    if v.prefix == "ne":
        return or_(low < v.low, high > v.high)
    if v.prefix == "gt":
        return high > v.high
    if v.prefix == "lt":
        return low < v.low
    if v.prefix == "ge":
        return high >= v.low
    if v.prefix == "le":
        return low <= v.high
    if v.prefix == "sa":
        return low > v.high
    return high < v.low  # eb


def _string_condition(v: StringValue) -> ColumnElement[bool]:
    col = idx_string.c.value
    if v.mode == "exact":
        return col == v.raw
    escaped = v.value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    if v.mode == "contains":
        return col.like(f"%{escaped}%", escape="\\")
    return col.like(f"{escaped}%", escape="\\")


def _sort_expression(query: SearchQuery, key: SortKey) -> ColumnElement[Any]:
    r = resources.c
    if key.name == "_lastUpdated":
        return r.last_updated
    if key.name == "_id":
        return r.resource_id
    param = REGISTRY[query.resource_type].params[key.name]
    if param.type == "date":
        agg = func.max(idx_date.c.high) if key.descending else func.min(idx_date.c.low)
        sentinel = MIN_US if key.descending else MAX_US
        sub = (
            select(agg)
            .where(idx_date.c.resource_type == r.resource_type,
                   idx_date.c.resource_id == r.resource_id, idx_date.c.param == key.name)
            .scalar_subquery()
        )
        return func.coalesce(sub, literal(sentinel))
    sub_s = (
        select(func.min(idx_string.c.value))
        .where(idx_string.c.resource_type == r.resource_type,
               idx_string.c.resource_id == r.resource_id, idx_string.c.param == key.name)
        .scalar_subquery()
    )
    return func.coalesce(sub_s, literal(""))


def _keyset(
    exprs: list[tuple[ColumnElement[Any], bool]], values: tuple[Any, ...]
) -> ColumnElement[bool]:
    """Rows strictly after ``values`` in the (mixed-direction) order of ``exprs``."""
    clauses: list[ColumnElement[bool]] = []
    for i, (expr, desc) in enumerate(exprs):
        equal_prefix = [e == values[j] for j, (e, _) in enumerate(exprs[:i])]
        step = expr < values[i] if desc else expr > values[i]
        clauses.append(and_(*equal_prefix, step))
    return or_(*clauses)


def _cursor_fits(query: SearchQuery, sort_keys: list[SortKey], cursor: tuple[Any, ...]) -> bool:
    """A cursor holds one value per sort key plus the id, each of the key's SQL type.

    Cursors come from clients: a value of the wrong type would make the database
    fail (PostgreSQL) or compare nonsense (SQLite).
    """
    if len(cursor) != len(sort_keys) + 1:
        return False
    params = REGISTRY[query.resource_type].params
    for key, value in zip([*sort_keys, SortKey("_id", False)], cursor, strict=True):
        is_int = key.name == "_lastUpdated" or (
            key.name in params and params[key.name].type == "date")
        if is_int:
            if isinstance(value, bool) or not isinstance(value, int):
                return False
            if not -(2**63) <= value < 2**63:
                return False
        elif not isinstance(value, str):
            return False
    return True


async def _search(conn: AsyncConnection, query: SearchQuery) -> SearchPage:
    r = resources.c
    where: list[ColumnElement[bool]] = [r.resource_type == query.resource_type,
                                        r.deleted == false()]
    where.extend(_filter_clause(query, f) for f in query.filters)

    total: int | None = None
    if query.summary_count or query.total in ("accurate", "estimate"):
        count_stmt = select(func.count()).select_from(resources).where(*where)
        total = int((await conn.execute(count_stmt)).scalar_one())
    if query.summary_count or query.count == 0:
        return SearchPage([], [], total, None, None)

    sort_keys = query.sort or [SortKey("_lastUpdated", False)]
    exprs = [(_sort_expression(query, k), k.descending) for k in sort_keys]
    exprs.append((r.resource_id, False))
    backwards = query.cursor_before
    order_exprs = [(e, (not d) if backwards else d) for e, d in exprs]
    stmt = select(*_RESOURCE_COLUMNS, *(e.label(f"_sort{i}") for i, (e, _) in enumerate(exprs)))
    stmt = stmt.where(*where)
    if query.cursor is not None:
        if not _cursor_fits(query, sort_keys, query.cursor):
            from samplan.fhir.errors import BadRequest

            raise BadRequest("The paging cursor does not fit this search; start it again.",
                             ["_page_before" if backwards else "_page_after"])
        stmt = stmt.where(_keyset(order_exprs, query.cursor))
    stmt = stmt.order_by(*(e.desc() if d else e.asc() for e, d in order_exprs))
    stmt = stmt.limit(query.count + 1)
    rows = (await conn.execute(stmt)).all()
    more = len(rows) > query.count
    rows = list(rows[: query.count])
    if backwards:
        rows.reverse()

    def cursor_of(row: Any) -> tuple[Any, ...]:
        return tuple(getattr(row, f"_sort{i}") for i in range(len(exprs)))

    next_cursor = previous_cursor = None
    if rows:
        if backwards:
            next_cursor = cursor_of(rows[-1])
            previous_cursor = cursor_of(rows[0]) if more else None
        else:
            next_cursor = cursor_of(rows[-1]) if more else None
            previous_cursor = cursor_of(rows[0]) if query.cursor is not None else None
    matches = [_row_to_stored(row) for row in rows]
    if total is None and query.cursor is None and not more and query.total != "none":
        total = len(matches)
    includes = await _includes(conn, query, matches) if query.includes and matches else []
    return SearchPage(matches, includes, total, next_cursor, previous_cursor)


async def _includes(
    conn: AsyncConnection, query: SearchQuery, matches: list[StoredResource]
) -> list[StoredResource]:
    ids = [m.resource_id for m in matches]
    seen = {(m.resource_type, m.resource_id) for m in matches}
    keys: list[tuple[str, str]] = []
    ref = idx_reference.c
    for inc in query.includes:
        conditions: list[ColumnElement[bool]]
        if inc.reverse:
            columns = (ref.resource_type, ref.resource_id)
            conditions = [ref.resource_type == inc.source_type, ref.param == inc.param,
                          ref.target_type == query.resource_type, ref.target_id.in_(ids)]
        else:
            columns = (ref.target_type, ref.target_id)
            conditions = [ref.resource_type == query.resource_type, ref.param == inc.param,
                          ref.resource_id.in_(ids)]
            if inc.target_type:
                conditions.append(ref.target_type == inc.target_type)
        stmt = select(*columns).where(*conditions)
        for row in (await conn.execute(stmt)).all():
            key = (row[0], row[1])
            if key not in seen:
                seen.add(key)
                keys.append(key)
    return await _read_many(conn, keys)


__all__ = [
    "Change",
    "HistoryPage",
    "Include",
    "Repository",
    "SearchPage",
    "StoredResource",
    "WriteConflict",
    "WriteTx",
]
