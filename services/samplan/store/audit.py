"""The SQL of the access log: append entries, search them, read one.

There is no update and no delete here on purpose: the API can only add to
the log (through the FHIR interactions it records) and read it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from functools import cache

from sqlalchemy import ColumnElement, and_, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from samplan.store.driver import driver_of
from samplan.store.repository import Repository
from samplan.store.tables import audit_events

AuditEntry = Mapping[str, object]
"""One row to append, by column name (``AUDIT_COLUMNS``): what the security layer's
records become (``security/audit.py``); the store knows no policy."""

FailureListener = Callable[[BaseException], None]
failure_listeners: list[FailureListener] = []
"""Told of every append that fails, before it is raised (``Gate.on_audit_failure``: the
metrics count them). The store only reports; what a failure means is the listener's."""


def _report(error: BaseException) -> None:
    for listener in list(failure_listeners):
        listener(error)


@dataclass(frozen=True, slots=True)
class AuditRow:
    event_id: str
    recorded_us: int
    content: bytes


@dataclass(frozen=True, slots=True)
class AuditSearch:
    """What the log can be searched by; each field narrows (AND), list values OR."""

    patients: tuple[str, ...] | None = None
    agents: tuple[str, ...] | None = None
    # groups of (low, high) pairs in microseconds: in every group, ``recorded``
    # falls in one of the pairs (``date=ge2026-01-01&date=lt2026-02-01``)
    recorded: tuple[tuple[tuple[int, int], ...], ...] = ()
    actions: tuple[str, ...] | None = None
    subtypes: tuple[str, ...] | None = None
    outcomes: tuple[str, ...] | None = None
    ids: tuple[str, ...] | None = None
    count: int = 20


async def append(conn: AsyncConnection, rows: Sequence[AuditEntry]) -> None:
    """Insert entries on an open transaction (the write's own, or one of its own)."""
    if not rows:
        return
    try:
        if conn.dialect.name == "postgresql":  # one prepared statement on the driver (issue 7)
            driver = await driver_of(conn)
            await driver.execute(_APPEND_PG, *_pg_arrays(rows))
            return
        await conn.execute(insert(audit_events), rows)
    except Exception as error:
        _report(error)
        raise


async def search(engine: AsyncEngine, criteria: AuditSearch) -> tuple[list[AuditRow], int]:
    """Matching entries, newest first, at most ``count``; and how many match in all."""
    from sqlalchemy import func

    a = audit_events.c
    where: list[ColumnElement[bool]] = []
    if criteria.ids is not None:
        where.append(a.event_id.in_(list(criteria.ids)))
    if criteria.patients is not None:
        where.append(a.patient_id.in_(list(criteria.patients)))
    if criteria.agents is not None:
        values = list(criteria.agents)
        where.append(or_(
            a.agent_subject.in_(values), a.agent_user_hsa_id.in_(values),
            a.agent_unit_hsa_id.in_(values), a.agent_provider_hsa_id.in_(values),
            a.agent_org_hsa_id.in_(values), a.agent_fhir_user.in_(values),
        ))
    for group in criteria.recorded:
        where.append(or_(*(and_(a.recorded >= lo, a.recorded <= hi) for lo, hi in group)))
    if criteria.actions is not None:
        where.append(a.action.in_(list(criteria.actions)))
    if criteria.subtypes is not None:
        where.append(a.interaction.in_(list(criteria.subtypes)))
    if criteria.outcomes is not None:
        where.append(a.outcome.in_(list(criteria.outcomes)))
    stmt = (
        select(a.event_id, a.recorded, a.content)
        .where(*where)
        .order_by(a.seq.desc())
        .limit(criteria.count)
    )
    count_stmt = select(func.count()).select_from(audit_events).where(*where)
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
        total = int((await conn.execute(count_stmt)).scalar_one())
    return [AuditRow(r.event_id, r.recorded, r.content) for r in rows], total


async def read(engine: AsyncEngine, event_id: str) -> AuditRow | None:
    a = audit_events.c
    stmt = select(a.event_id, a.recorded, a.content, a.patient_id).where(a.event_id == event_id)
    async with engine.connect() as conn:
        row = (await conn.execute(stmt)).first()
    return AuditRow(row.event_id, row.recorded, row.content) if row else None


async def patient_of(engine: AsyncEngine, event_id: str) -> str | None:
    a = audit_events.c
    async with engine.connect() as conn:
        row = (await conn.execute(select(a.patient_id).where(a.event_id == event_id))).first()
    return row.patient_id if row else None


AUDIT_COLUMNS = ("event_id", "recorded", "action", "interaction", "outcome", "agent_kind",
            "agent_subject", "agent_user_hsa_id", "agent_unit_hsa_id", "agent_provider_hsa_id",
            "agent_org_hsa_id", "agent_fhir_user", "client_id", "patient_id", "entity_type",
            "entity_id", "client_ip", "content")
_PG_TYPES = {"recorded": "bigint", "content": "bytea"}
# One statement for any number of entries (arrays unnested into rows): atomic by
# itself, so it needs no BEGIN/COMMIT around it, and asyncpg prepares it once.
_APPEND_PG = (
    f"INSERT INTO audit_events ({', '.join(AUDIT_COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"${i}::{_PG_TYPES.get(c, 'text')}[]" for i, c in enumerate(AUDIT_COLUMNS, 1))
    + ")"
)


def _pg_arrays(rows: Sequence[AuditEntry]) -> list[list[object]]:
    """The entries as one array per column, the parameters of ``_APPEND_PG``."""
    return [[row[c] for row in rows] for c in AUDIT_COLUMNS]


def committer(repo: Repository) -> Callable[[Sequence[AuditEntry]], Awaitable[None]] | None:
    """A function that commits entries in one round trip, or None where there is none.

    :func:`append_committed`: one statement on an autocommit driver connection, on
    PostgreSQL and on a SQLite file. None for an in-memory SQLite database (tests),
    where the entries go through the repository's write transaction (:func:`append`).
    """
    if not repo.has_autocommit_writer:
        return None

    async def commit(rows: Sequence[AuditEntry]) -> None:
        await append_committed(repo, rows)

    return commit


@cache  # one text per batch size (at most _SQLITE_CHUNK): sqlite3 caches its plan by text
def _append_sqlite(count: int) -> str:
    """One multi-row INSERT: SQLite makes a single statement atomic, as PostgreSQL does."""
    row = f"({', '.join('?' * len(AUDIT_COLUMNS))})"
    return (f"INSERT INTO audit_events ({', '.join(AUDIT_COLUMNS)}) VALUES "
            + ", ".join([row] * count))


# entries per SQLite statement: 18 columns each, well under SQLite's 32,766 parameters
_SQLITE_CHUNK = 500


async def append_committed(repo: Repository, rows: Sequence[AuditEntry]) -> None:
    """Insert entries with one statement on an autocommit driver connection: committed
    when this returns. PostgreSQL: ``INSERT ... SELECT FROM unnest(...)``; SQLite: a
    multi-row ``INSERT ... VALUES`` in the process's write slot (a batch larger than
    ``_SQLITE_CHUNK`` is one transaction of several)."""
    if not rows:
        return
    try:
        async with repo.autocommit_writer() as driver:
            if not repo.is_sqlite:
                await driver.execute(_APPEND_PG, *_pg_arrays(rows))
                return
            chunks = [rows[i:i + _SQLITE_CHUNK] for i in range(0, len(rows), _SQLITE_CHUNK)]
            several = len(chunks) > 1  # one statement is atomic by itself; several need BEGIN
            if several:
                await driver.execute("BEGIN IMMEDIATE")
            try:
                for chunk in chunks:
                    await driver.execute(_append_sqlite(len(chunk)),
                                         [row[c] for row in chunk for c in AUDIT_COLUMNS])
                if several:
                    await driver.execute("COMMIT")
            except BaseException:
                if several:
                    with suppress(Exception):  # the statement's own error is the one to raise
                        await driver.execute("ROLLBACK")
                raise
    except Exception as error:
        _report(error)
        raise
