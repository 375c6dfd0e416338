"""The ceiling: the least a FHIR server on these tables can do, as a bare FastAPI app.

Not part of the product. It serves the same stored bytes for the same ids
from the same tables as ``samplan serve`` and does the same version-insert
write, with nothing else: no validation, no index rows, no hooks, no ORM or
SQLAlchemy, the driver directly. Every scenario is reported as a ratio to it
measured in the same run, so a noisy machine still gives comparable numbers.

* ``GET /fhir/{type}/{id}``: ``SELECT version_id, last_updated, deleted, content
  FROM resources WHERE resource_type=$1 AND resource_id=$2`` (the primary
  key), answered with the bytes as stored, ``ETag`` and ``Last-Modified``.
* ``PUT /fhir/{type}/{id}``: one transaction that locks the current row
  (``FOR UPDATE``; on SQLite ``BEGIN IMMEDIATE``), checks ``If-Match`` (412),
  inserts the version row, updates the current row and commits; the body gets
  ``id`` and ``meta.versionId``/``lastUpdated`` first, as SamPlan stores it, so
  the data stays consistent for the scenarios that follow.

Run as its own process (``bench/__main__.py`` does)::

    BENCH_CEILING_DATABASE_URL=postgresql+asyncpg://samplan@127.0.0.1:5432/samplan \\
        .venv/bin/uvicorn bench.ceiling:create_app --factory --port 8081 --no-access-log

PostgreSQL goes through an asyncpg pool (``BENCH_CEILING_POOL``, default 32
connections, no reset query on release); SQLite through aiosqlite, a few
reader connections and one writer, WAL mode as in SamPlan.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Protocol

import orjson
from fastapi import FastAPI, Request
from starlette.responses import Response

FHIR_JSON = "application/fhir+json"

_READ = ("SELECT version_id, last_updated, deleted, content FROM resources "
         "WHERE resource_type = {0} AND resource_id = {1}")
_LOCK = ("SELECT version_id, deleted FROM resources "
         "WHERE resource_type = {0} AND resource_id = {1}")
_INSERT_VERSION = ("INSERT INTO resource_versions (resource_type, resource_id, version_id, "
                   "last_updated, method, deleted, content) "
                   "VALUES ({0}, {1}, {2}, {3}, 'PUT', {4}, {5})")
_UPDATE_CURRENT = ("UPDATE resources SET version_id = {2}, last_updated = {3}, deleted = {4}, "
                   "content = {5} WHERE resource_type = {0} AND resource_id = {1}")


class Row(Protocol):
    def __getitem__(self, index: int) -> Any: ...


class Conflict(Exception):
    def __init__(self, version: int) -> None:
        self.version = version


class Missing(Exception):
    pass


class Store(Protocol):
    async def read(self, rtype: str, rid: str) -> Row | None: ...

    async def write(self, rtype: str, rid: str, expected: int | None,
                    body: dict[str, Any]) -> tuple[int, int, bytes]: ...

    async def close(self) -> None: ...


_last_stamp = 0


def _now_us() -> int:
    global _last_stamp
    _last_stamp = max(time.time_ns() // 1000, _last_stamp + 1)
    return _last_stamp


def _instant(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _stamp(body: dict[str, Any], rid: str, version: int, at: int) -> bytes:
    meta = {k: v for k, v in (body.get("meta") or {}).items()
            if k not in ("versionId", "lastUpdated")}
    out: dict[str, Any] = {"resourceType": body.get("resourceType"), "id": rid,
                           "meta": {"versionId": str(version), "lastUpdated": _instant(at),
                                    **meta}}
    for key, value in body.items():
        if key not in out:
            out[key] = value
    return orjson.dumps(out)


class PostgresStore:
    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.read_sql = _READ.format("$1", "$2")
        self.lock_sql = _LOCK.format("$1", "$2") + " FOR UPDATE"
        self.insert_sql = _INSERT_VERSION.format("$1", "$2", "$3", "$4", "$5", "$6")
        self.update_sql = _UPDATE_CURRENT.format("$1", "$2", "$3", "$4", "$5", "$6")

    @classmethod
    async def open(cls, url: str, size: int) -> PostgresStore:
        import asyncpg

        async def no_reset(_conn: Any) -> None:
            return None

        dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
        pool = await asyncpg.create_pool(dsn, min_size=min(size, 8), max_size=size,
                                         reset=no_reset)
        return cls(pool)

    async def read(self, rtype: str, rid: str) -> Row | None:
        async with self.pool.acquire() as conn:
            row: Row | None = await conn.fetchrow(self.read_sql, rtype, rid)
            return row

    async def write(self, rtype: str, rid: str, expected: int | None,
                    body: dict[str, Any]) -> tuple[int, int, bytes]:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(self.lock_sql, rtype, rid)
            if row is None:
                raise Missing
            if expected is not None and (row[0] != expected or row[1]):
                raise Conflict(row[0])
            version, at = row[0] + 1, _now_us()
            content = _stamp(body, rid, version, at)
            await conn.execute(self.insert_sql, rtype, rid, version, at, False, content)
            await conn.execute(self.update_sql, rtype, rid, version, at, False, content)
            return version, at, content

    async def close(self) -> None:
        await self.pool.close()


class SqliteStore:
    def __init__(self, readers: asyncio.Queue[Any], writer: Any) -> None:
        self.readers = readers
        self.writer = writer
        self.write_lock = asyncio.Lock()
        self.read_sql = _READ.format("?", "?")
        self.lock_sql = _LOCK.format("?", "?")
        self.insert_sql = _INSERT_VERSION.format(*"??????")
        self.update_sql = _UPDATE_CURRENT.format("?5", "?6", "?1", "?2", "?3", "?4")

    @classmethod
    async def open(cls, url: str, size: int) -> SqliteStore:
        import aiosqlite

        path = url.split(":///", 1)[1]

        async def connect() -> Any:
            conn = await aiosqlite.connect(path, isolation_level=None, timeout=30)
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000"):
                await conn.execute(f"PRAGMA {pragma}")
            return conn

        readers: asyncio.Queue[Any] = asyncio.Queue()
        for _ in range(size):
            readers.put_nowait(await connect())
        return cls(readers, await connect())

    async def read(self, rtype: str, rid: str) -> Row | None:
        conn = await self.readers.get()
        try:
            async with conn.execute(self.read_sql, (rtype, rid)) as cursor:
                row: Row | None = await cursor.fetchone()
                return row
        finally:
            self.readers.put_nowait(conn)

    async def write(self, rtype: str, rid: str, expected: int | None,
                    body: dict[str, Any]) -> tuple[int, int, bytes]:
        conn = self.writer
        async with self.write_lock:
            await conn.execute("BEGIN IMMEDIATE")
            try:
                async with conn.execute(self.lock_sql, (rtype, rid)) as cursor:
                    row = await cursor.fetchone()
                if row is None:
                    raise Missing
                if expected is not None and (row[0] != expected or row[1]):
                    raise Conflict(row[0])
                version, at = row[0] + 1, _now_us()
                content = _stamp(body, rid, version, at)
                await conn.execute(self.insert_sql, (rtype, rid, version, at, False, content))
                await conn.execute(self.update_sql, (version, at, False, content, rtype, rid))
                await conn.execute("COMMIT")
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            return version, at, content

    async def close(self) -> None:
        await self.writer.close()
        while not self.readers.empty():
            await self.readers.get_nowait().close()


def _headers(version: int, at: int) -> dict[str, str]:
    return {
        "ETag": f'W/"{version}"',
        "Last-Modified": format_datetime(datetime.fromtimestamp(at / 1e6, UTC), usegmt=True),
    }


def _etag_version(value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip().removeprefix("W/").strip('"')
    return int(text) if text.isdigit() else -1


def create_app() -> FastAPI:
    url = os.environ["BENCH_CEILING_DATABASE_URL"]
    size = int(os.environ.get("BENCH_CEILING_POOL", "32"))
    store: Store

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        nonlocal store
        if url.startswith("sqlite"):
            store = await SqliteStore.open(url, min(size, 8))
        else:
            store = await PostgresStore.open(url, size)
        try:
            yield
        finally:
            await store.close()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.get("/fhir/{rtype}/{rid}")
    async def read(rtype: str, rid: str) -> Response:
        row = await store.read(rtype, rid)
        if row is None or row[2]:
            return Response(b'{"resourceType":"OperationOutcome"}', 404, media_type=FHIR_JSON)
        return Response(row[3], media_type=FHIR_JSON, headers=_headers(row[0], row[1]))

    @app.put("/fhir/{rtype}/{rid}")
    async def update(rtype: str, rid: str, request: Request) -> Response:
        body = orjson.loads(await request.body())
        try:
            version, at, content = await store.write(
                rtype, rid, _etag_version(request.headers.get("if-match")), body)
        except Missing:
            return Response(b'{"resourceType":"OperationOutcome"}', 404, media_type=FHIR_JSON)
        except Conflict as exc:
            return Response(b'{"resourceType":"OperationOutcome"}', 412, media_type=FHIR_JSON,
                            headers={"ETag": f'W/"{exc.version}"'})
        return Response(content, media_type=FHIR_JSON, headers=_headers(version, at))

    return app
