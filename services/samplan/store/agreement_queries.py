"""The SQL of the patient's agreement: all ``Patient/{id}/$agreement`` draws on, one statement.

:meth:`~samplan.agreement.patient_service.PatientAgreements.record` gathers a
patient's agreement with a read and eight searches (issue 5). Through the search
engine that is some twenty statements, each built, compiled and sent on its own
(issue 7: ~12 ms of CPU per document, 26 reads' worth). :func:`gather` answers the
same searches in one statement on the driver's own connection, from the same
tables and with the same criteria, order and limits the search engine uses
(``store/repository.py``: ``_search``, ``_includes``):

=====================  ======================================================================
part                   rows
=====================  ======================================================================
``patient``            ``Patient/{id}``, deleted or not (the caller decides 404/410)
``plans``              ``CarePlan?patient={id}&status={plan_status}&_sort=_lastUpdated``
``included``           their ``_include`` of ``care-team``, ``goal`` and ``author``, and the
                       ``_revinclude`` of ``Appointment:based-on`` (not deleted, each once)
``goals``              ``Goal?patient={id}&lifecycle-status={goal_statuses}``
``visits``             ``Appointment?patient={id}&date=ge{visits_from}&_sort=date``
``messages``           ``Communication?patient={id}&_sort=-sent``
``directory``          the people and places the plans' CareTeams and authors name, as far
                       as the search index can follow them: the PractitionerRoles,
                       Practitioners and Organizations the CareTeams (``participant``,
                       ``organization``) and the plans (``author``) point at, the
                       Practitioners and Organizations of those PractitionerRoles, every
                       PractitionerRole of those Practitioners, and their Organizations
=====================  ======================================================================

The directory part is what the follow-up searches by ``_id`` and by
``practitioner`` would ask for; :attr:`AgreementRows.asked` and
:attr:`AgreementRows.roles_asked` say exactly which keys it looked up (also
those that do not exist), so the caller can tell "looked up, not there" from
"not looked up" (a reference the index does not hold, e.g.
``CareTeam.participant.onBehalfOf``) and search for the latter itself.

No access decisions here: the caller filters by scopes and reach, and logs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from samplan.fhir.dates import MAX_US, MIN_US
from samplan.fhir.stored import StoredResource
from samplan.store.repository import Repository

__all__ = ["AgreementRows", "gather"]

Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class AgreementRows:
    """What :func:`gather` found, each part in the order its search returns it."""

    patient: StoredResource | None
    plans: list[StoredResource]
    included: list[StoredResource]
    goals: list[StoredResource]
    visits: list[StoredResource]
    messages: list[StoredResource]
    directory: dict[Key, StoredResource]
    """Directory resources that exist (not deleted), by (type, id)."""
    asked: frozenset[Key]
    """Every (type, id) the directory part looked up, found or not."""
    roles_asked: frozenset[str]
    """The Practitioner ids whose PractitionerRoles the directory part looked up (all of them)."""


# Parts, in the order the statement returns them.
_PATIENT, _PLAN, _INCLUDED, _GOAL, _VISIT, _MESSAGE, _DIRECTORY, _ROLES_OF = range(8)

_COLUMNS: Final = (
    "r.resource_type, r.resource_id, r.version_id, r.last_updated, r.deleted, r.content"
)
_NULLS: Final = "NULL, NULL, NULL, NULL"

# ``:name`` marks a parameter; :func:`_statement` numbers them for the dialect.
_TEMPLATE: Final = f"""
WITH plan_hit AS (
    SELECT r.resource_id, ROW_NUMBER() OVER (ORDER BY r.last_updated, r.resource_id) AS pos
    FROM resources r
    WHERE r.resource_type = 'CarePlan' AND NOT r.deleted
      AND r.resource_id IN (
        SELECT x.resource_id FROM idx_reference x
        WHERE x.resource_type = 'CarePlan' AND x.param = 'patient'
          AND x.target_type = 'Patient' AND x.target_id = :patient)
      AND r.resource_id IN (
        SELECT t.resource_id FROM idx_token t
        WHERE t.resource_type = 'CarePlan' AND t.param = 'status' AND t.code = :plan_status)
    ORDER BY r.last_updated, r.resource_id
    LIMIT :plan_count
),
include_ref AS (
    SELECT x.target_type AS resource_type, x.target_id AS resource_id,
           CASE x.param WHEN 'care-team' THEN 0 WHEN 'goal' THEN 1 ELSE 2 END AS step
    FROM idx_reference x
    WHERE x.resource_type = 'CarePlan' AND x.param IN ('care-team', 'goal', 'author')
      AND x.resource_id IN (SELECT resource_id FROM plan_hit)
    UNION ALL
    SELECT x.resource_type, x.resource_id, 3
    FROM idx_reference x
    WHERE x.resource_type = 'Appointment' AND x.param = 'based-on'
      AND x.target_type = 'CarePlan' AND x.target_id IN (SELECT resource_id FROM plan_hit)
),
include_key AS (
    SELECT resource_type, resource_id, MIN(step) AS step
    FROM include_ref GROUP BY resource_type, resource_id
),
named AS (
    SELECT x.target_type, x.target_id FROM idx_reference x
    WHERE x.resource_type = 'CareTeam' AND x.param IN ('participant', 'organization')
      AND x.resource_id IN (
        SELECT resource_id FROM include_key WHERE resource_type = 'CareTeam')
    UNION
    SELECT resource_type, resource_id FROM include_ref WHERE step = 2
),
role_named AS (
    SELECT target_id AS id FROM named WHERE target_type = 'PractitionerRole'
),
practitioner AS (
    SELECT target_id AS id FROM named WHERE target_type = 'Practitioner'
    UNION
    SELECT x.target_id FROM idx_reference x
    WHERE x.resource_type = 'PractitionerRole' AND x.param = 'practitioner'
      AND x.target_type = 'Practitioner' AND x.resource_id IN (SELECT id FROM role_named)
),
role AS (
    SELECT id FROM role_named
    UNION
    SELECT x.resource_id FROM idx_reference x
    WHERE x.resource_type = 'PractitionerRole' AND x.param = 'practitioner'
      AND x.target_type = 'Practitioner' AND x.target_id IN (SELECT id FROM practitioner)
),
organization AS (
    SELECT target_id AS id FROM named WHERE target_type = 'Organization'
    UNION
    SELECT x.target_id FROM idx_reference x
    WHERE x.resource_type = 'PractitionerRole' AND x.param = 'organization'
      AND x.target_type = 'Organization' AND x.resource_id IN (SELECT id FROM role)
),
directory_key AS (
    SELECT 'PractitionerRole' AS resource_type, id AS resource_id FROM role
    UNION SELECT 'Practitioner', id FROM practitioner
    UNION SELECT 'Organization', id FROM organization
),
goal_hit AS (
    SELECT r.resource_id, ROW_NUMBER() OVER (ORDER BY r.last_updated, r.resource_id) AS pos
    FROM resources r
    WHERE r.resource_type = 'Goal' AND NOT r.deleted
      AND r.resource_id IN (
        SELECT x.resource_id FROM idx_reference x
        WHERE x.resource_type = 'Goal' AND x.param = 'patient'
          AND x.target_type = 'Patient' AND x.target_id = :patient)
      AND r.resource_id IN (
        SELECT t.resource_id FROM idx_token t
        WHERE t.resource_type = 'Goal' AND t.param = 'lifecycle-status'
          AND t.code IN (:goal_statuses))
    ORDER BY r.last_updated, r.resource_id
    LIMIT :goal_count
),
visit_sorted AS (
    SELECT r.resource_id, COALESCE((
        SELECT MIN(d.low) FROM idx_date d
        WHERE d.resource_type = r.resource_type AND d.resource_id = r.resource_id
          AND d.param = 'date'), {MAX_US}) AS start
    FROM resources r
    WHERE r.resource_type = 'Appointment' AND NOT r.deleted
      AND r.resource_id IN (
        SELECT x.resource_id FROM idx_reference x
        WHERE x.resource_type = 'Appointment' AND x.param = 'patient'
          AND x.target_type = 'Patient' AND x.target_id = :patient)
      AND r.resource_id IN (
        SELECT d.resource_id FROM idx_date d
        WHERE d.resource_type = 'Appointment' AND d.param = 'date' AND d.high >= :visits_from)
),
visit_hit AS (
    SELECT resource_id, ROW_NUMBER() OVER (ORDER BY start, resource_id) AS pos
    FROM visit_sorted ORDER BY start, resource_id LIMIT :visit_count
),
message_sorted AS (
    SELECT r.resource_id, COALESCE((
        SELECT MAX(d.high) FROM idx_date d
        WHERE d.resource_type = r.resource_type AND d.resource_id = r.resource_id
          AND d.param = 'sent'), {MIN_US}) AS sent
    FROM resources r
    WHERE r.resource_type = 'Communication' AND NOT r.deleted
      AND r.resource_id IN (
        SELECT x.resource_id FROM idx_reference x
        WHERE x.resource_type = 'Communication' AND x.param = 'patient'
          AND x.target_type = 'Patient' AND x.target_id = :patient)
),
message_hit AS (
    SELECT resource_id, ROW_NUMBER() OVER (ORDER BY sent DESC, resource_id) AS pos
    FROM message_sorted ORDER BY sent DESC, resource_id LIMIT :message_count
)
SELECT {_PATIENT} AS part, 0 AS pos, {_COLUMNS}
FROM resources r WHERE r.resource_type = 'Patient' AND r.resource_id = :patient
UNION ALL
SELECT {_PLAN}, h.pos, {_COLUMNS}
FROM plan_hit h JOIN resources r
  ON r.resource_type = 'CarePlan' AND r.resource_id = h.resource_id
UNION ALL
SELECT {_INCLUDED}, k.step, {_COLUMNS}
FROM include_key k JOIN resources r
  ON r.resource_type = k.resource_type AND r.resource_id = k.resource_id AND NOT r.deleted
UNION ALL
SELECT {_GOAL}, h.pos, {_COLUMNS}
FROM goal_hit h JOIN resources r ON r.resource_type = 'Goal' AND r.resource_id = h.resource_id
UNION ALL
SELECT {_VISIT}, h.pos, {_COLUMNS}
FROM visit_hit h JOIN resources r
  ON r.resource_type = 'Appointment' AND r.resource_id = h.resource_id
UNION ALL
SELECT {_MESSAGE}, h.pos, {_COLUMNS}
FROM message_hit h JOIN resources r
  ON r.resource_type = 'Communication' AND r.resource_id = h.resource_id
UNION ALL
SELECT {_DIRECTORY}, 0, k.resource_type, k.resource_id, r.version_id, r.last_updated,
       r.deleted, r.content
FROM directory_key k LEFT JOIN resources r
  ON r.resource_type = k.resource_type AND r.resource_id = k.resource_id AND NOT r.deleted
UNION ALL
SELECT {_ROLES_OF}, 0, 'Practitioner', p.id, {_NULLS}
FROM practitioner p
ORDER BY 1, 2, 3, 4
"""

_PARAM = re.compile(r":([a-z][a-z_0-9]*)")


@lru_cache(maxsize=16)
def _statement(sqlite: bool, goal_statuses: int) -> tuple[str, tuple[str, ...]]:
    """The statement for one dialect (``$n`` or ``?n``) and the parameter names in order."""
    template = _TEMPLATE.replace(
        ":goal_statuses", ", ".join(f":goal_status_{i}" for i in range(goal_statuses))
    )
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match[1] not in names:
            names.append(match[1])
        index = names.index(match[1]) + 1
        return f"?{index}" if sqlite else f"${index}"

    return _PARAM.sub(number, template), tuple(names)


def _stored(row: Any) -> StoredResource:
    return StoredResource(row[2], row[3], row[4], row[5], bool(row[6]), row[7])


async def gather(
    repo: Repository,
    patient_id: str,
    *,
    plan_status: str,
    goal_statuses: Sequence[str],
    visits_from_us: int,
    plan_count: int,
    goal_count: int,
    visit_count: int,
    message_count: int,
) -> AgreementRows:
    """Everything the patient's agreement draws on (see the module's table), one round trip."""
    sql, names = _statement(repo.is_sqlite, len(goal_statuses))
    values: dict[str, Any] = {
        "patient": patient_id, "plan_status": plan_status, "visits_from": visits_from_us,
        "plan_count": plan_count, "goal_count": goal_count, "visit_count": visit_count,
        "message_count": message_count,
        **{f"goal_status_{i}": status for i, status in enumerate(goal_statuses)},
    }
    args = [values[name] for name in names]
    async with repo.driver_connection() as driver:
        if repo.is_sqlite:
            rows = await driver.execute_fetchall(sql, args)
        else:
            rows = await driver.fetch(sql, *args)
    patient: StoredResource | None = None
    parts: list[list[StoredResource]] = [[] for _ in range(_DIRECTORY)]
    directory: dict[Key, StoredResource] = {}
    asked: set[Key] = set()
    roles_asked: set[str] = set()
    for row in rows:
        part = row[0]
        if part == _PATIENT:
            patient = _stored(row)
        elif part == _DIRECTORY:
            key = (row[2], row[3])
            asked.add(key)
            if row[4] is not None:
                directory[key] = _stored(row)
        elif part == _ROLES_OF:
            roles_asked.add(row[3])
        else:
            parts[part].append(_stored(row))
    return AgreementRows(
        patient=patient,
        plans=parts[_PLAN],
        included=parts[_INCLUDED],
        goals=parts[_GOAL],
        visits=parts[_VISIT],
        messages=parts[_MESSAGE],
        directory=directory,
        asked=frozenset(asked),
        roles_asked=frozenset(roles_asked),
    )
