"""The SQL the access policy needs: who carries which HSA-id, whose CareTeam includes whom.

Everything is answered from the search index tables (``idx_token``,
``idx_reference``), which hold the current, non-deleted version of each
resource, so a CareTeam ended by a delete stops granting access at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Collection, Iterable
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Select, and_, false, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from samplan.fhir import identifiers
from samplan.store.tables import idx_reference, idx_token, resources

#: CareTeam statuses that no longer grant access.
ENDED_CARE_TEAM_STATUSES = ("inactive", "entered-in-error")


def care_team_patients(
    *,
    organisations: Collection[str],
    roles: Collection[str] = (),
    practitioners: Collection[str] = (),
    blocked: Collection[str] = (),
) -> Select[Any] | None:
    """``SELECT patient id``: patients whose (not ended) CareTeam has one of these as
    participant, or is managed by one of the organisations, minus ``blocked``.

    The one definition of care-team reach in SQL: :meth:`AccessQueries.patients_of_care_teams`
    runs it to get the ids, and the repository's search embeds it as a subquery
    (``fhir.search.CareTeamValue``) so that a care provider reaching 100 000
    patients never sends their ids back and forth. ``None`` when nothing is named.
    """
    r = idx_reference.c
    members = [
        ("Organization", organisations),
        ("PractitionerRole", roles),
        ("Practitioner", practitioners),
    ]
    conditions: list[ColumnElement[bool]] = [
        and_(r.param == "participant", r.target_type == kind, r.target_id.in_(list(ids)))
        for kind, ids in members
        if ids
    ]
    if organisations:
        conditions.append(
            and_(r.param == "organization", r.target_type == "Organization",
                 r.target_id.in_(list(organisations)))
        )
    if not conditions:
        return None
    teams = select(r.resource_id).where(r.resource_type == "CareTeam", or_(*conditions))
    t = idx_token.c
    ended = select(t.resource_id).where(
        t.resource_type == "CareTeam", t.param == "status",
        t.code.in_(ENDED_CARE_TEAM_STATUSES),
    )
    p = idx_reference.alias("reach_team_patient")
    stmt = select(p.c.target_id).where(
        p.c.resource_type == "CareTeam",
        p.c.param == "patient",
        p.c.target_type == "Patient",
        p.c.resource_id.in_(teams),
        p.c.resource_id.not_in(ended),
    )
    if blocked:
        stmt = stmt.where(p.c.target_id.not_in(list(blocked)))
    return stmt


class AccessQueries:
    """Read-only queries over the index tables.

    Each runs on a pooled connection of its own, or on ``conn`` when given
    (the matching hook asks inside the write transaction, so that it sees
    that transaction's own changes).
    """

    def __init__(self, engine: AsyncEngine, conn: AsyncConnection | None = None) -> None:
        self.engine = engine
        self.conn = conn

    @contextlib.asynccontextmanager
    async def _connect(self) -> AsyncIterator[AsyncConnection]:
        if self.conn is not None:
            yield self.conn
            return
        async with self.engine.connect() as conn:
            yield conn

    async def with_identifier(
        self, resource_type: str, system: str, values: Iterable[str]
    ) -> frozenset[str]:
        """Ids of ``resource_type`` resources carrying ``system|value`` for any value.

        Values are canonicalised as at indexing time (both HSA OIDs are one
        system; personnummer in 12 digits).
        """
        pairs = {identifiers.canonical_token(system, v) for v in values if v}
        if not pairs:
            return frozenset()
        t = idx_token.c
        stmt = select(t.resource_id).where(
            t.resource_type == resource_type,
            t.param == "identifier",
            or_(*(and_(t.system == s, t.code == c) for s, c in pairs)),
        )
        return await self._ids(stmt)

    async def referring(
        self, resource_type: str, param: str, target_type: str, target_ids: Collection[str]
    ) -> frozenset[str]:
        """Ids of ``resource_type`` resources whose ``param`` points at one of the targets."""
        if not target_ids:
            return frozenset()
        r = idx_reference.c
        stmt = select(r.resource_id).where(
            r.resource_type == resource_type,
            r.param == param,
            r.target_type == target_type,
            r.target_id.in_(list(target_ids)),
        )
        return await self._ids(stmt)

    async def patients_of_care_teams(
        self,
        *,
        organisations: Collection[str],
        roles: Collection[str] = (),
        practitioners: Collection[str] = (),
        among: Collection[str] | None = None,
    ) -> frozenset[str]:
        """Patients whose (not ended) CareTeam has one of these as participant, or is
        managed by one of the organisations; only those ``among`` when given."""
        stmt = care_team_patients(organisations=organisations, roles=roles,
                                  practitioners=practitioners)
        if stmt is None or (among is not None and not among):
            return frozenset()
        if among is not None:
            stmt = stmt.where(stmt.selected_columns[0].in_(list(among)))
        return await self._ids(stmt)

    async def consents_naming(
        self, actors: Iterable[tuple[str, Collection[str]]]
    ) -> list[dict[str, Any]]:
        """The current Consents whose ``provision.actor`` is one of the given resources."""
        r = idx_reference.c
        conditions = [
            and_(r.target_type == kind, r.target_id.in_(list(ids))) for kind, ids in actors if ids
        ]
        if not conditions:
            return []
        ids = select(r.resource_id).where(
            r.resource_type == "Consent", r.param == "actor", or_(*conditions)
        )
        c = resources.c
        stmt = select(c.content).where(
            c.resource_type == "Consent", c.resource_id.in_(ids), c.deleted == false()
        )
        async with self._connect() as conn:
            rows = (await conn.execute(stmt)).all()
        bodies = [orjson.loads(row.content) for row in rows if row.content]
        return [b for b in bodies if isinstance(b, dict)]

    async def exists(self, resource_type: str, resource_id: str) -> bool:
        c = resources.c
        stmt = select(c.resource_id).where(
            c.resource_type == resource_type, c.resource_id == resource_id, c.deleted == false()
        )
        async with self._connect() as conn:
            return (await conn.execute(stmt)).first() is not None

    async def current_body(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        """The current JSON of a resource, ``None`` when absent or deleted."""
        c = resources.c
        stmt = select(c.content).where(
            c.resource_type == resource_type, c.resource_id == resource_id, c.deleted == false()
        )
        async with self._connect() as conn:
            row = (await conn.execute(stmt)).first()
        if row is None or row.content is None:
            return None
        body = orjson.loads(row.content)
        return body if isinstance(body, dict) else None

    async def _ids(self, stmt: Any) -> frozenset[str]:
        async with self._connect() as conn:
            return await ids_of(conn, stmt)


async def ids_of(conn: AsyncConnection, stmt: Any) -> frozenset[str]:
    return frozenset(str(row[0]) for row in (await conn.execute(stmt)).all())
