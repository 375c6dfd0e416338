"""The SQL the access policy needs: who carries which HSA-id, whose CareTeam includes whom.

Everything is answered from the search index tables (``idx_token``,
``idx_reference``), which hold the current, non-deleted version of each
resource, so a CareTeam ended by a delete stops granting access at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Collection, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Final

import orjson
from sqlalchemy import ColumnElement, Select, and_, false, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from samplan.fhir import identifiers
from samplan.fhir.stored import StoredResource
from samplan.store.tables import idx_reference, idx_token, resources

#: The repository's ``driver_connection``: the driver's own connection, autocommit.
DriverConnection = Callable[[], AbstractAsyncContextManager[Any]]

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


def care_team_reaches(
    patient: ColumnElement[Any],
    *,
    organisations: Collection[str],
    roles: Collection[str] = (),
    practitioners: Collection[str] = (),
    blocked: Collection[str] = (),
) -> ColumnElement[bool] | None:
    """Whether the patient in ``patient`` (a column of the enclosing query) has a (not
    ended) CareTeam naming one of these, and does not block them: :func:`care_team_patients`
    asked about one patient at a time.

    Searches embed this (``fhir.search.CareTeamValue``): correlated to the rows a
    search looks at, it costs a few index lookups per row, however many patients a
    care provider reaches (an ``IN`` over every reached patient was read whole, 73 ms
    a search at 100,000 patients). ``None`` when nothing is named.
    """
    m = idx_reference.alias("reach_member")
    members: list[ColumnElement[bool]] = []
    if organisations:
        members.append(and_(m.c.param.in_(("participant", "organization")),
                            m.c.target_type == "Organization",
                            m.c.target_id.in_(list(organisations))))
    for kind, ids in (("PractitionerRole", roles), ("Practitioner", practitioners)):
        if ids:
            members.append(and_(m.c.param == "participant", m.c.target_type == kind,
                                m.c.target_id.in_(list(ids))))
    if not members:
        return None
    p = idx_reference.alias("reach_team")
    s = idx_token.alias("reach_team_status")
    named = select(m.c.resource_id).where(
        m.c.resource_type == "CareTeam", m.c.resource_id == p.c.resource_id, or_(*members))
    ended = select(s.c.resource_id).where(
        s.c.resource_type == "CareTeam", s.c.resource_id == p.c.resource_id,
        s.c.param == "status", s.c.code.in_(ENDED_CARE_TEAM_STATUSES))
    team = select(p.c.resource_id).where(
        p.c.resource_type == "CareTeam", p.c.param == "patient", p.c.target_type == "Patient",
        p.c.target_id == patient, named.exists(), ~ended.exists())
    reached = team.exists()
    if blocked:
        return and_(patient.not_in(list(blocked)), reached)
    return reached


class AccessQueries:
    """Read-only queries over the index tables.

    Each runs on a pooled connection of its own, or on ``conn`` when given
    (the matching hook asks inside the write transaction, so that it sees
    that transaction's own changes).
    """

    def __init__(self, engine: AsyncEngine, conn: AsyncConnection | None = None,
                 *, driver: DriverConnection | None = None) -> None:
        """``driver``: the repository's autocommit driver connection, for
        :meth:`staff_reach_among` (not given inside a write transaction)."""
        self.engine = engine
        self.conn = conn
        self.driver = driver if conn is None else None

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

    async def staff_reach_among(
        self, organisation_hsa_ids: Collection[str], employee_hsa_ids: Collection[str],
        among: Collection[str],
    ) -> StaffReach | None:
        """A staff member's or system's reach as far as ``among`` is concerned, in one
        statement: the organisations carrying the HSA-ids, their PractitionerRoles, the
        Practitioner carrying the employee HSA-id, the Consents naming any of them, and
        the patients of ``among`` whose (not ended) CareTeam names one of them.

        The same answers as :meth:`with_identifier`, :meth:`referring`,
        :meth:`consents_naming` and :meth:`patients_of_care_teams` (five round trips,
        each a BEGIN and a ROLLBACK too): a read by id asks this once (issue 7).
        None when there is no driver connection to ask on.
        """
        if self.driver is None:
            return None
        system, orgs, staff = _hsa_lists(organisation_hsa_ids, employee_hsa_ids)
        patients = sorted(set(among))
        async with self.driver() as driver:
            if self.engine.dialect.name == "sqlite":
                rows = await driver.execute_fetchall(STAFF_REACH_SQLITE, (
                    system, _json_list(orgs), _json_list(staff), _json_list(patients)))
            else:
                rows = await driver.fetch(STAFF_REACH_PG, system, orgs, staff, patients)
        return _staff_reach(rows)[1]

    async def read_with_staff_reach(
        self, resource_type: str, resource_id: str,
        organisation_hsa_ids: Collection[str], employee_hsa_ids: Collection[str],
    ) -> tuple[StoredResource | None, StaffReach] | None:
        """A resource's current row and :meth:`staff_reach_among` for its patients as
        the ``patient`` search parameter indexes them (``StaffReach.indexed_patients``),
        in one statement: a staff member's read by id is one round trip (issue 7).

        The caller compares ``indexed_patients`` with the patients of the body it
        reads and asks again when they differ. None without a driver connection.
        """
        if self.driver is None:
            return None
        system, orgs, staff = _hsa_lists(organisation_hsa_ids, employee_hsa_ids)
        async with self.driver() as driver:
            if self.engine.dialect.name == "sqlite":
                rows = await driver.execute_fetchall(READ_WITH_STAFF_REACH_SQLITE, (
                    system, _json_list(orgs), _json_list(staff), resource_type, resource_id))
            else:
                rows = await driver.fetch(READ_WITH_STAFF_REACH_PG, system, orgs, staff,
                                          resource_type, resource_id)
        return _staff_reach(rows, resource_type)

    async def _ids(self, stmt: Any) -> frozenset[str]:
        async with self._connect() as conn:
            return await ids_of(conn, stmt)


async def ids_of(conn: AsyncConnection, stmt: Any) -> frozenset[str]:
    return frozenset(str(row[0]) for row in (await conn.execute(stmt)).all())


# --------------------------------------------------------- a staff read, in one statement

_ENDED_SQL = "(" + ", ".join(f"'{s}'" for s in ENDED_CARE_TEAM_STATUSES) + ")"


@dataclass(frozen=True, slots=True)
class StaffReach:
    """What :func:`AccessQueries.staff_reach_among` found, in one round trip."""

    organisations: frozenset[str]
    roles: frozenset[str]
    practitioners: frozenset[str]
    consents: list[dict[str, Any]]
    patients: frozenset[str]
    indexed_patients: frozenset[str] = frozenset()


def _hsa_lists(
    organisation_hsa_ids: Collection[str], employee_hsa_ids: Collection[str]
) -> tuple[str, list[str], list[str]]:
    system = identifiers.canonical_system(identifiers.HSA_SYSTEM)
    return (system, sorted({v for v in organisation_hsa_ids if v}),
            sorted({v for v in employee_hsa_ids if v}))


def _json_list(values: list[str]) -> str:
    return orjson.dumps(values).decode()


def _staff_reach(
    rows: Iterable[Any], resource_type: str = ""
) -> tuple[StoredResource | None, StaffReach]:
    found: dict[str, set[str]] = {"o": set(), "r": set(), "p": set(), "t": set(), "a": set()}
    consents: list[dict[str, Any]] = []
    stored: StoredResource | None = None
    for row in rows:
        kind = row[0]
        if kind == "x":
            stored = StoredResource(resource_type, row[1], row[3], row[4], bool(row[5]), row[2])
        elif kind == "c":
            body = orjson.loads(row[2]) if row[2] else None
            if isinstance(body, dict):
                consents.append(body)
        else:
            found[kind].add(str(row[1]))
    return stored, StaffReach(
        frozenset(found["o"]), frozenset(found["r"]), frozenset(found["p"]), consents,
        frozenset(found["t"]), frozenset(found["a"]))


def _staff_reach_sql(sqlite: bool, *, with_read: bool = False) -> str:
    """The statement in the dialect's words: list parameters are JSON arrays on
    SQLite (``json_each``), arrays on PostgreSQL.

    Parameters: 1 the HSA system, 2 the organisations' HSA-ids, 3 the employee's;
    then 4 the patient ids, or, ``with_read``, 4 a resource type and 5 an id: the
    resource's row comes first (``x``) and its patients, as the ``patient``
    search parameter indexes them (``a``), stand for the patient ids.
    """

    def member(column: str, n: int) -> str:
        if sqlite:
            return f"{column} IN (SELECT value FROM json_each(?{n}))"
        return f"{column} = ANY(${n}::text[])"

    def p(n: int) -> str:
        return f"?{n}" if sqlite else f"${n}"

    false_ = "0" if sqlite else "false"
    pad = ", NULL, NULL, NULL" if with_read else ""
    null_bytes = "NULL" if sqlite else "NULL::bytea"  # the first branch types the column
    patients = member("p.target_id", 4)
    first = f"SELECT 'o', resource_id, {null_bytes}{pad} FROM orgs"
    extra_cte = ""
    if with_read:
        patients = "p.target_id IN (SELECT pid FROM pts)"
        extra_cte = f""", pts AS (
  SELECT target_id AS pid FROM idx_reference WHERE resource_type = {p(4)}
    AND resource_id = {p(5)} AND param = 'patient' AND target_type = 'Patient'
  UNION SELECT {p(5)} WHERE {p(4)} = 'Patient'
)"""
        first = f"""SELECT 'x', resource_id, content, version_id, last_updated, deleted
  FROM resources WHERE resource_type = {p(4)} AND resource_id = {p(5)}
UNION ALL SELECT 'a', pid, NULL, NULL, NULL, NULL FROM pts
UNION ALL SELECT 'o', resource_id, NULL{pad} FROM orgs"""
    return f"""
WITH orgs AS (
  SELECT resource_id FROM idx_token WHERE resource_type = 'Organization'
    AND param = 'identifier' AND system = {p(1)} AND {member('code', 2)}
), roles AS (
  SELECT resource_id FROM idx_reference WHERE resource_type = 'PractitionerRole'
    AND param = 'organization' AND target_type = 'Organization'
    AND target_id IN (SELECT resource_id FROM orgs)
), pracs AS (
  SELECT resource_id FROM idx_token WHERE resource_type = 'Practitioner'
    AND param = 'identifier' AND system = {p(1)} AND {member('code', 3)}
){extra_cte}
{first}
UNION ALL SELECT 'r', resource_id, NULL{pad} FROM roles
UNION ALL SELECT 'p', resource_id, NULL{pad} FROM pracs
UNION ALL SELECT 'c', c.resource_id, c.content{pad} FROM resources c
  WHERE c.resource_type = 'Consent' AND c.deleted = {false_} AND c.resource_id IN (
    SELECT a.resource_id FROM idx_reference a
    WHERE a.resource_type = 'Consent' AND a.param = 'actor' AND (
         (a.target_type = 'Organization' AND a.target_id IN (SELECT resource_id FROM orgs))
      OR (a.target_type = 'PractitionerRole' AND a.target_id IN (SELECT resource_id FROM roles))
      OR (a.target_type = 'Practitioner' AND a.target_id IN (SELECT resource_id FROM pracs))))
UNION ALL SELECT 't', p.target_id, NULL{pad} FROM idx_reference p
  WHERE p.resource_type = 'CareTeam' AND p.param = 'patient' AND p.target_type = 'Patient'
    AND {patients}
    AND EXISTS (SELECT 1 FROM idx_reference m
      WHERE m.resource_type = 'CareTeam' AND m.resource_id = p.resource_id AND (
           (m.param IN ('participant', 'organization') AND m.target_type = 'Organization'
            AND m.target_id IN (SELECT resource_id FROM orgs))
        OR (m.param = 'participant' AND m.target_type = 'PractitionerRole'
            AND m.target_id IN (SELECT resource_id FROM roles))
        OR (m.param = 'participant' AND m.target_type = 'Practitioner'
            AND m.target_id IN (SELECT resource_id FROM pracs))))
    AND NOT EXISTS (SELECT 1 FROM idx_token s
      WHERE s.resource_type = 'CareTeam' AND s.resource_id = p.resource_id
        AND s.param = 'status' AND s.code IN {_ENDED_SQL})
"""


STAFF_REACH_PG: Final = _staff_reach_sql(sqlite=False)
STAFF_REACH_SQLITE: Final = _staff_reach_sql(sqlite=True)
READ_WITH_STAFF_REACH_PG: Final = _staff_reach_sql(sqlite=False, with_read=True)
READ_WITH_STAFF_REACH_SQLITE: Final = _staff_reach_sql(sqlite=True, with_read=True)
