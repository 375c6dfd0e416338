"""The SQL the access policy needs: who carries which HSA-id, whose CareTeam names whom.

**Reach is defined once, here**: :func:`reached` is the one SQL text of "this
patient has a CareTeam, not ended, that names one of these organisations (as
participant or managing organisation), PractitionerRoles or Practitioners".
It is rendered into the two forms the gate needs:

* :data:`REACH_FACTS` (and :data:`READ_WITH_REACH`): one statement on the
  driver that finds the caller's organisations (their HSA-ids, and, for a care
  provider's system token, every unit under them by ``partOf``), roles and
  practitioner, the Consents naming any of them (spärr), and which of the
  patients a request concerns are reached; with a read by id, the row too.
* :func:`reach_predicate`: the same text correlated to a patient column of a
  search, so a search is restricted to reach however many patients that is,
  without sending their ids.

Everything is answered from the search index tables (``idx_token``,
``idx_reference``), which hold the current, non-deleted version of each
resource, so a CareTeam ended or deleted stops granting access at once. The
patient-by-patient decision (blocks by Consent, the kinds of principal) is
the security layer's; this module only runs SQL.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Collection, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Final

import orjson
from sqlalchemy import ColumnElement, String, and_, bindparam, false, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from samplan.fhir import identifiers
from samplan.fhir.stored import StoredResource
from samplan.store.tables import idx_token, resources

#: The repository's ``driver_connection``: the driver's own connection, autocommit.
DriverConnection = Callable[[], AbstractAsyncContextManager[Any]]

#: CareTeam statuses that no longer grant access.
ENDED_CARE_TEAM_STATUSES: Final = ("inactive", "entered-in-error")
_ENDED_SQL: Final = "(" + ", ".join(f"'{s}'" for s in ENDED_CARE_TEAM_STATUSES) + ")"

#: ``meta.security`` codes indexed under ``_security`` (fhir/indexing.py).
SECURITY_PARAM: Final = "_security"


def reached(patient: str, orgs: str, roles: str, pracs: str, alias: str = "reach") -> str:
    """SQL: the patient in ``patient`` has a (not ended) CareTeam naming one of ``orgs``
    (participant or managing organisation), ``roles`` or ``pracs`` (participants).

    The one definition of care-team reach. ``orgs``, ``roles`` and ``pracs`` are
    SQL sets (``(SELECT ...)`` or an expanding parameter); ``alias`` prefixes the
    inner table aliases so the text can sit inside any statement.
    """
    t, m, s = f"{alias}_t", f"{alias}_m", f"{alias}_s"
    return f"""EXISTS (SELECT 1 FROM idx_reference {t}
  WHERE {t}.resource_type = 'CareTeam' AND {t}.param = 'patient'
    AND {t}.target_type = 'Patient' AND {t}.target_id = {patient}
    AND EXISTS (SELECT 1 FROM idx_reference {m}
      WHERE {m}.resource_type = 'CareTeam' AND {m}.resource_id = {t}.resource_id AND (
           ({m}.param IN ('participant', 'organization') AND {m}.target_type = 'Organization'
            AND {m}.target_id IN {orgs})
        OR ({m}.param = 'participant' AND {m}.target_type = 'PractitionerRole'
            AND {m}.target_id IN {roles})
        OR ({m}.param = 'participant' AND {m}.target_type = 'Practitioner'
            AND {m}.target_id IN {pracs})))
    AND NOT EXISTS (SELECT 1 FROM idx_token {s}
      WHERE {s}.resource_type = 'CareTeam' AND {s}.resource_id = {t}.resource_id
        AND {s}.param = 'status' AND {s}.code IN {_ENDED_SQL}))"""


def reach_predicate(
    patient: str,
    *,
    organisations: Collection[str],
    roles: Collection[str] = (),
    practitioners: Collection[str] = (),
    blocked: Collection[str] = (),
    name: str = "reach",
) -> ColumnElement[bool] | None:
    """:func:`reached` for a search: ``patient`` is the SQL name of the patient column of
    the enclosing query (``resources.resource_id``, ``reach_about.target_id``); minus the
    ``blocked`` patients. None when nothing is named (nobody is reached). ``name``
    prefixes its parameters and aliases: two predicates with other sets in one statement
    need two names (the same one may be repeated)."""
    if not (organisations or roles or practitioners):
        return None
    sql = reached(patient, f":{name}_orgs", f":{name}_roles", f":{name}_pracs", alias=name)
    binds: list[Any] = [
        bindparam(f"{name}_orgs", sorted(organisations), expanding=True, type_=String),
        bindparam(f"{name}_roles", sorted(roles), expanding=True, type_=String),
        bindparam(f"{name}_pracs", sorted(practitioners), expanding=True, type_=String),
    ]
    if blocked:
        sql = f"{patient} NOT IN :{name}_blocked AND {sql}"
        binds.append(bindparam(f"{name}_blocked", sorted(blocked), expanding=True,
                               type_=String))
    clause: ColumnElement[bool] = text(sql).bindparams(*binds)  # type: ignore[assignment]
    return clause


def care_team_reaches(
    patient: ColumnElement[Any],
    *,
    organisations: Collection[str],
    roles: Collection[str] = (),
    practitioners: Collection[str] = (),
    blocked: Collection[str] = (),
    name: str = "reach",
) -> ColumnElement[bool] | None:
    """:func:`reach_predicate` over a column of a named table or alias of the enclosing
    statement (the indicators' counts, ``store/indicators.py``)."""
    table = getattr(patient, "table", None)
    column = getattr(patient, "name", None)
    if table is None or not isinstance(getattr(table, "name", None), str) or not column:
        raise TypeError("care_team_reaches needs a column of a named table or alias")
    return reach_predicate(f"{table.name}.{column}", organisations=organisations, roles=roles,
                           practitioners=practitioners, blocked=blocked, name=name)


def _facts_sql(sqlite: bool, *, with_read: bool, units: bool) -> str:
    """:data:`REACH_FACTS` / :data:`READ_WITH_REACH` in the dialect's words: list
    parameters are JSON arrays on SQLite (``json_each``), arrays on PostgreSQL.

    Parameters: 1 the HSA system, 2 the organisations' HSA-ids, 3 the employee's;
    then 4 the patient ids, or, ``with_read``, 4 a resource type and 5 an id: the
    resource's row comes first (``x``) and its patients, as the ``patient`` search
    parameter indexes them (``a``), stand for the patient ids. ``units``: the
    organisations include every Organization under them by ``partOf`` (a care
    provider's units; a cycle ends the walk, ``UNION`` drops repeats).

    A read concerns the few patients of one resource, so ``with_read`` asks only
    about them: the Consents are those about them, and the organisations under a
    care provider are found by walking ``partOf`` *up* from the organisations their
    CareTeams and Consents name (directly or through a PractitionerRole), not down
    to every unit of the region. The answer for these patients is the same (an
    organisation is under the provider exactly when the provider is above it), and
    its cost does not grow with the number of units (issue 15). The organisations,
    roles and practitioner come back only when a Consent needs them.
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
    # a system token names no employee: without this, PostgreSQL's generic plan reads
    # every Practitioner's identifier to find none
    no_staff = "" if sqlite else " AND cardinality($3::text[]) > 0"
    ctes: list[str] = []
    named = f"""SELECT resource_id FROM idx_token WHERE resource_type = 'Organization'
    AND param = 'identifier' AND system = {p(1)} AND {member('code', 2)}"""
    if with_read:
        ctes.append(f"""pts AS (
  SELECT target_id AS pid FROM idx_reference WHERE resource_type = {p(4)}
    AND resource_id = {p(5)} AND param = 'patient' AND target_type = 'Patient'
  UNION SELECT {p(5)} WHERE {p(4)} = 'Patient'
)""")
    if with_read and units:
        # one step up from each organisation (partOf is 0..1), as an index lookup per
        # row: a join there builds a Bloom filter over idx_reference at every step on
        # SQLite, and on PostgreSQL's generic plan reads every unit's partOf at every
        # step (a cost that grows with the region's units)
        step = """SELECT org, (SELECT l.target_id FROM idx_reference l
    WHERE l.resource_type = 'Organization' AND l.resource_id = up.above
      AND l.param = 'partof' AND l.target_type = 'Organization')
  FROM up WHERE above IS NOT NULL"""
        ctes.append(f"""named AS (
  {named}
), about AS (
  SELECT resource_type, resource_id FROM idx_reference
    WHERE resource_type IN ('CareTeam', 'Consent') AND param = 'patient'
      AND target_type = 'Patient' AND target_id IN (SELECT pid FROM pts)
), mentioned AS (
  SELECT r.target_type, r.target_id FROM idx_reference r JOIN about a
    ON r.resource_type = a.resource_type AND r.resource_id = a.resource_id
    WHERE r.param IN ('participant', 'organization', 'actor')
      AND r.target_type IN ('Organization', 'PractitionerRole')
), candidates(org) AS (
  SELECT target_id FROM mentioned WHERE target_type = 'Organization'
  UNION SELECT w.target_id FROM idx_reference w
    WHERE w.resource_type = 'PractitionerRole' AND w.param = 'organization'
      AND w.target_type = 'Organization'
      AND w.resource_id IN (SELECT target_id FROM mentioned
                            WHERE target_type = 'PractitionerRole')
), up(org, above) AS (
  SELECT org, org FROM candidates
  UNION {step}
), orgs(resource_id) AS (
  SELECT DISTINCT org FROM up WHERE above IN (SELECT resource_id FROM named)
)""")
    elif units and sqlite:
        # SQLite takes the walk's queue for a large table and builds a Bloom filter over
        # all of idx_reference at every step (2 ms for 40 units at 2,000 patients): the
        # partOf links are read once instead (one row per unit), then walked.
        ctes.append(f"""links AS MATERIALIZED (
  SELECT resource_id AS child, target_id AS parent FROM idx_reference
    WHERE resource_type = 'Organization' AND param = 'partof' AND target_type = 'Organization'
), orgs(resource_id) AS (
  {named}
  UNION SELECT l.child FROM orgs o JOIN links l ON l.parent = o.resource_id
)""")
    elif units:
        ctes.append(f"""orgs(resource_id) AS (
  {named}
  UNION SELECT u.resource_id FROM idx_reference u JOIN orgs o ON u.target_id = o.resource_id
    WHERE u.resource_type = 'Organization' AND u.param = 'partof'
      AND u.target_type = 'Organization'
)""")
    else:
        ctes.append(f"orgs AS (\n  {named}\n)")
    about_patients = """
    AND c.resource_id IN (SELECT resource_id FROM idx_reference WHERE resource_type = 'Consent'
      AND param = 'patient' AND target_type = 'Patient' AND target_id IN (SELECT pid FROM pts))"""
    ctes.append(f"""roles AS (
  SELECT resource_id FROM idx_reference WHERE resource_type = 'PractitionerRole'
    AND param = 'organization' AND target_type = 'Organization'
    AND target_id IN (SELECT resource_id FROM orgs)
), pracs AS (
  SELECT resource_id FROM idx_token WHERE resource_type = 'Practitioner'
    AND param = 'identifier' AND system = {p(1)} AND {member('code', 3)}{no_staff}
), cons AS (
  SELECT c.resource_id, c.content FROM resources c
  WHERE c.resource_type = 'Consent' AND c.deleted = {false_}{about_patients if with_read else ''}
    AND c.resource_id IN (
    SELECT k.resource_id FROM idx_reference k
    WHERE k.resource_type = 'Consent' AND k.param = 'actor' AND (
         (k.target_type = 'Organization' AND k.target_id IN (SELECT resource_id FROM orgs))
      OR (k.target_type = 'PractitionerRole' AND k.target_id IN (SELECT resource_id FROM roles))
      OR (k.target_type = 'Practitioner' AND k.target_id IN (SELECT resource_id FROM pracs))))
)""")
    reach = reached("a.pid", "(SELECT resource_id FROM orgs)", "(SELECT resource_id FROM roles)",
                    "(SELECT resource_id FROM pracs)")
    if with_read:
        among = "pts"
        first = [f"""SELECT 'x', resource_id, content, version_id, last_updated, deleted
  FROM resources WHERE resource_type = {p(4)} AND resource_id = {p(5)}""",
                 "SELECT 'a', pid, NULL, NULL, NULL, NULL FROM pts"]
        # organisations, roles and practitioner only to match a Consent's actors: a
        # read needs nothing else of them
        only_with_consents = " WHERE EXISTS (SELECT 1 FROM cons)"
    else:
        among = "(SELECT value AS pid FROM json_each(?4))" if sqlite else \
            "(SELECT unnest($4::text[]) AS pid)"
        first = []
        only_with_consents = ""
    branches = "\nUNION ALL ".join([
        *first,
        f"SELECT 'o', resource_id, {null_bytes}{pad} FROM orgs{only_with_consents}",
        f"SELECT 'r', resource_id, NULL{pad} FROM roles{only_with_consents}",
        f"SELECT 'p', resource_id, NULL{pad} FROM pracs{only_with_consents}",
        f"SELECT 'c', resource_id, content{pad} FROM cons",
        f"SELECT 't', a.pid, NULL{pad} FROM {among} a WHERE {reach}",
    ])
    recursive = "RECURSIVE " if units else ""
    return f"\nWITH {recursive}{', '.join(ctes)}\n{branches}\n"


#: by (sqlite, with_read, units)
_FACTS: Final = {
    (sqlite, with_read, units): _facts_sql(sqlite, with_read=with_read, units=units)
    for sqlite in (False, True) for with_read in (False, True) for units in (False, True)
}


@dataclass(frozen=True, slots=True)
class ReachFacts:
    """What the reach statement found, in one round trip."""

    organisations: frozenset[str]
    roles: frozenset[str]
    practitioners: frozenset[str]
    consents: list[dict[str, Any]]
    patients: frozenset[str]
    """Of the patients asked about, those a not-ended CareTeam names the caller in (blocks
    are not applied here: they are the policy's)."""
    indexed_patients: frozenset[str] = frozenset()
    """With a read: the resource's patients as the ``patient`` search parameter indexes them."""


class AccessQueries:
    """Read-only queries over the index tables.

    Each runs on the driver's autocommit connection or a pooled one of its own, or
    on ``conn`` when given (a write transaction asks on its own connection, so that
    it sees its own changes: the CareTeam it just wrote, the Consent it just added).
    """

    def __init__(self, engine: AsyncEngine, conn: Any = None,
                 *, driver: DriverConnection | None = None) -> None:
        """``conn``: an open SQLAlchemy connection, or a write transaction (anything
        with ``conn`` and ``driver()``, store/repository.py ``WriteTx``)."""
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        self.tx = conn if conn is not None and hasattr(conn, "driver") else None
        self.conn: AsyncConnection | None = (
            self.tx.conn if self.tx is not None else conn)
        self.driver = driver if conn is None else None

    def on(self, conn: Any) -> AccessQueries:
        """The same queries on a connection or write transaction."""
        return AccessQueries(self.engine, conn)

    @contextlib.asynccontextmanager
    async def _connect(self) -> AsyncIterator[AsyncConnection]:
        if self.conn is not None:
            yield self.conn
            return
        async with self.engine.connect() as conn:
            yield conn

    async def _driver_rows(self, sql: str, *params: Any) -> list[Any]:
        """Run a statement of :func:`_facts_sql` (dialect-specific text) wherever this is."""
        if self.tx is not None and not self.sqlite:
            driver = await self.tx.driver()
            return list(await driver.fetch(sql, *params))
        if self.conn is not None:
            result = await self.conn.exec_driver_sql(sql, tuple(params))
            return list(result.all())
        if self.driver is not None:
            async with self.driver() as driver:
                if self.sqlite:
                    return list(await driver.execute_fetchall(sql, params))
                return list(await driver.fetch(sql, *params))
        async with self.engine.connect() as conn:
            result = await conn.exec_driver_sql(sql, tuple(params))
            return list(result.all())

    async def reach_facts(
        self, organisation_hsa_ids: Collection[str], employee_hsa_ids: Collection[str],
        among: Collection[str], *, units: bool = False,
    ) -> ReachFacts:
        """The caller's organisations (``units``: and those under them), roles,
        practitioner and the Consents naming any of them, and which of ``among`` a
        not-ended CareTeam names them in: reach as far as those patients go."""
        system, orgs, staff = _hsa_lists(organisation_hsa_ids, employee_hsa_ids)
        patients = sorted(set(among))
        sql = _FACTS[self.sqlite, False, units]
        if self.sqlite:
            rows = await self._driver_rows(sql, system, _json_list(orgs), _json_list(staff),
                                           _json_list(patients))
        else:
            rows = await self._driver_rows(sql, system, orgs, staff, patients)
        return _facts(rows)[1]

    async def read_with_reach(
        self, resource_type: str, resource_id: str,
        organisation_hsa_ids: Collection[str], employee_hsa_ids: Collection[str],
        *, units: bool = False,
    ) -> tuple[StoredResource | None, ReachFacts]:
        """A resource's current row and :meth:`reach_facts` for its patients as the
        ``patient`` search parameter indexes them (``ReachFacts.indexed_patients``), in
        one statement: a staff member's read by id is one round trip (issue 7).

        The caller compares ``indexed_patients`` with the patients of the body it
        reads and asks again when they differ.
        """
        system, orgs, staff = _hsa_lists(organisation_hsa_ids, employee_hsa_ids)
        sql = _FACTS[self.sqlite, True, units]
        if self.sqlite:
            rows = await self._driver_rows(sql, system, _json_list(orgs), _json_list(staff),
                                           resource_type, resource_id)
        else:
            rows = await self._driver_rows(sql, system, orgs, staff, resource_type,
                                           resource_id)
        return _facts(rows, resource_type)

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

    async def consents_naming(
        self, actors: Iterable[tuple[str, Collection[str]]]
    ) -> list[dict[str, Any]]:
        """The current Consents whose ``provision.actor`` is one of the given resources."""
        from samplan.store.tables import idx_reference

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

    async def labelled(
        self, keys: Collection[tuple[str, str]], system: str, code: str
    ) -> frozenset[tuple[str, str]]:
        """Which of ``keys`` carry the ``meta.security`` label ``system|code`` now."""
        if not keys:
            return frozenset()
        t = idx_token.c
        by_type: dict[str, list[str]] = {}
        for rtype, rid in keys:
            by_type.setdefault(rtype, []).append(rid)
        stmt = select(t.resource_type, t.resource_id).where(
            t.param == SECURITY_PARAM, t.system == system, t.code == code,
            or_(*(and_(t.resource_type == rtype, t.resource_id.in_(ids))
                  for rtype, ids in by_type.items())),
        )
        async with self._connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return frozenset((str(r[0]), str(r[1])) for r in rows)

    async def _ids(self, stmt: Any) -> frozenset[str]:
        async with self._connect() as conn:
            return frozenset(str(row[0]) for row in (await conn.execute(stmt)).all())


def _hsa_lists(
    organisation_hsa_ids: Collection[str], employee_hsa_ids: Collection[str]
) -> tuple[str, list[str], list[str]]:
    system = identifiers.canonical_system(identifiers.HSA_SYSTEM)
    return (system, sorted({v for v in organisation_hsa_ids if v}),
            sorted({v for v in employee_hsa_ids if v}))


def _json_list(values: list[str]) -> str:
    return orjson.dumps(values).decode()


def _facts(
    rows: Iterable[Any], resource_type: str = ""
) -> tuple[StoredResource | None, ReachFacts]:
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
    return stored, ReachFacts(
        frozenset(found["o"]), frozenset(found["r"]), frozenset(found["p"]), consents,
        frozenset(found["t"]), frozenset(found["a"]))
