"""Load the dataset through the service's own write path, in large transactions.

The loader builds the service exactly as ``samplan serve`` does
(:func:`samplan.main.build_services`: engine, repository, FHIR service,
write checks) and creates every resource with ``FhirService.create_in``,
the code a transaction Bundle entry runs, so the stored bytes, version rows
and index rows are the ones the server would have written.

One difference makes it ~10x faster: ``create_in`` runs against a
:class:`_Batcher`, which records the statements the write path issues instead
of sending them one by one (about six per resource), and then sends each
table's rows as one ``executemany`` inside a real ``Repository.transaction()``
(whose before-commit hooks see every change, as they would). Creating a new
resource only inserts; should the write path ever read, update or delete
while creating, the batcher refuses loudly rather than load something the
server would not have written.

What the loader skips is HTTP, JSON parsing of a request Bundle and the
per-resource R4/profile validation (about 1 ms a resource, more than the
write itself). A sample of the agreements (the first ones and one in 500) is
validated with ``validate_resource``, so a generator that drifts from the
profiles fails the load instead of measuring invalid data.

Several transactions run at once on PostgreSQL (each writes ``batch``
agreements); SQLite has one writer, so there the only overlap is generating
the next batch while one is written.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from tqdm import tqdm

from bench import dataset


class _Result:
    rowcount = 1


def _values(statement: Any) -> dict[str, Any]:
    """The column values of ``insert(table).values(**kw)``, without compiling it (slow)."""
    values = getattr(statement, "_values", None)
    if not values or getattr(statement, "_multi_values", None):
        return dict(statement.compile().params)
    out = {}
    for key, value in values.items():
        name = getattr(key, "key", key)
        out[name] = getattr(value, "value", value)
    return out


class _Batcher:
    """Stands in for the connection of a WriteTx: keeps INSERTs, sends them per table."""

    def __init__(self) -> None:
        self.rows: dict[Any, list[dict[str, Any]]] = {}

    async def execute(self, statement: Any, parameters: Any = None) -> _Result:
        from sqlalchemy.sql.dml import Insert

        if not isinstance(statement, Insert):
            raise RuntimeError(
                "the write path of a create now runs more than INSERTs "
                f"({type(statement).__name__}); bench/load.py must learn it"
            )
        table = statement.table
        if parameters is None:
            rows = [_values(statement)]
        else:
            rows = parameters if isinstance(parameters, list) else [parameters]
        self.rows.setdefault(table, []).extend(rows)
        return _Result()

    async def flush(self, conn: Any) -> None:
        from sqlalchemy import insert

        for table, rows in self.rows.items():
            by_keys: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for row in rows:
                by_keys.setdefault(tuple(row), []).append(row)
            for same in by_keys.values():
                await conn.execute(insert(table), same)
        self.rows.clear()


@dataclass(slots=True)
class LoadResult:
    patients: int
    resources: int
    seconds: float
    skipped: bool  # the database already held the dataset


def _settings(database_url: str, data_dir: Path) -> Any:
    from samplan.settings import Settings

    return Settings(database_url=database_url, auth_enabled=False, environment="test",
                    data_dir=data_dir, database_pool_size=8)


async def count_careplans(services: Any) -> int:
    from samplan.store.tables import resources

    stmt = select(func.count()).select_from(resources).where(
        resources.c.resource_type == "CarePlan")
    async with services.gate.engine.connect() as conn:
        return int((await conn.execute(stmt)).scalar_one())


async def load(
    database_url: str,
    patients: int,
    *,
    seed: int,
    data_dir: Path,
    batch: int = 25,
    concurrency: int | None = None,
    progress: bool = True,
) -> LoadResult:
    """Migrate ``database_url`` and load ``patients`` agreements unless they are there."""
    from samplan.fhir.resource import validate_resource
    from samplan.main import build_services, close_services
    from samplan.store import migrate

    await asyncio.to_thread(migrate.upgrade, database_url)
    services = await build_services(_settings(database_url, data_dir))
    try:
        existing = await count_careplans(services)
        if existing >= patients:
            return LoadResult(existing, 0, 0.0, True)
        if existing:
            raise SystemExit(
                f"{database_url} holds {existing} CarePlans, fewer than --patients {patients}: "
                "use an empty database (or the same --patients as when it was loaded)"
            )
        repo = services.gate.service.repo
        writer = services.gate.as_service().writer
        if concurrency is None:
            concurrency = 2 if repo.is_sqlite else 4
        pool, shared = dataset.shared_pool(seed)
        started = time.perf_counter()

        from samplan.store.repository import WriteTx

        async def write(resources: list[dict[str, Any]]) -> None:
            async with repo.transaction(writer()) as tx:
                batcher = _Batcher()
                recording = WriteTx(repo, batcher)  # type: ignore[arg-type]
                for resource in resources:  # as create_in writes them; the dataset's
                    # personnummer are unique by construction, so no per-Patient lookup
                    await recording.write(resource, resource_id=resource["id"], current=None,
                                          method="POST")
                await batcher.flush(tx.conn)
                tx.changes.extend(recording.changes)

        for resource in shared:
            validate_resource(resource)
        await write(shared)

        queue: asyncio.Queue[list[dict[str, Any]] | None] = asyncio.Queue(concurrency * 2)
        bar = tqdm(total=patients, unit="patient", disable=not progress, dynamic_ncols=True,
                   desc=f"load {'sqlite' if repo.is_sqlite else 'postgres'}", smoothing=0.05,
                   mininterval=0.5)
        written = len(shared)

        async def worker() -> None:
            nonlocal written
            while (resources := await queue.get()) is not None:
                await write(resources)
                written += len(resources)
                bar.update(sum(r["resourceType"] == "CarePlan" for r in resources))

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        try:
            for start in range(0, patients, batch):
                resources: list[dict[str, Any]] = []
                for i in range(start, min(start + batch, patients)):
                    agreement = dataset.make_agreement(i, pool, seed)
                    if i < 20 or i % 500 == 0:
                        for resource in agreement.resources():
                            validate_resource(resource)
                    resources.extend(agreement.resources())
                # a worker that failed would leave the queue full: surface its error
                put = asyncio.create_task(queue.put(resources))
                done, _ = await asyncio.wait([put, *workers], return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task is not put:
                        task.result()
                        raise RuntimeError("a loader worker stopped early")
                if put not in done:
                    await put
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            bar.close()
        return LoadResult(patients, written, time.perf_counter() - started, False)
    finally:
        if not services.gate.service.repo.is_sqlite:
            await _analyze(services)
        await close_services(services)


async def _analyze(services: Any) -> None:
    """PostgreSQL: planner statistics now, as autovacuum would soon after a bulk load.

    Left to autovacuum the plans would depend on whether it had woken up yet. SQLite
    is left alone: nothing in SamPlan runs ANALYZE there, so the benchmark shows what
    a SQLite deployment gets.
    """
    from sqlalchemy import text

    async with services.gate.engine.connect() as conn:
        await conn.execute(text("ANALYZE"))
        await conn.commit()


async def sample_ids(database_url: str, k: int, seed: int) -> dict[str, list[Any]]:
    """Random CarePlan ids and (patient id) pairs from the database, for the scenarios."""
    import random

    from sqlalchemy.ext.asyncio import create_async_engine

    from samplan.store.tables import idx_reference

    ref = idx_reference.c
    engine = create_async_engine(database_url)
    try:
        stmt = select(ref.resource_id, ref.target_id).where(
            ref.resource_type == "CarePlan", ref.param == "patient",
            ref.target_type == "Patient",
        ).order_by(func.random()).limit(k)
        async with engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
    finally:
        await engine.dispose()
    pairs = [(r[0], r[1]) for r in rows]
    random.Random(seed).shuffle(pairs)
    return {"careplans": [p[0] for p in pairs], "patients": [p[1] for p in pairs]}
