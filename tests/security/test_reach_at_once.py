"""A staff read in one statement gives exactly what the five separate queries give.

``AccessQueries.read_with_staff_reach`` and ``staff_reach_among`` (one round
trip, issue 7) must agree with ``care_team_basis`` + ``patients_of_care_teams``
(the queries searches and writes use) over care teams naming an organisation,
a PractitionerRole of it, a Practitioner, a managing organisation, an ended
team and a block; and a read must answer the same with the one-statement path
switched off (no driver connection).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from samplan.security.guard import AccessControl, GuardedFhirService, _basis_hsa_ids

from samplan.api.deps import Services
from samplan.fhir.errors import NotFound
from samplan.security import policy
from samplan.security.principal import Principal
from samplan.store.access import AccessQueries
from security.test_reach_subquery import PRINCIPALS, _create, patients  # noqa: F401


def _principal(claims: dict[str, Any]) -> Principal:
    return Principal.from_claims({"sub": "tester", **claims})


def _control(services: Services) -> AccessControl:
    control: AccessControl = services.extras["access_control"]
    return control


async def _outcome(guard: GuardedFhirService, rtype: str, rid: str) -> str:
    try:
        stored = await guard.read(rtype, rid)
    except NotFound:
        return "404"
    return f"200 v{stored.version_id}"


async def _resources(services: Services, ids: dict[str, str]) -> list[tuple[str, str]]:
    found = [("Patient", pid) for pid in ids.values()]
    for rtype in ("CarePlan", "Goal", "CareTeam", "Consent", "Organization"):
        _, page = await services.gate.as_service().search(rtype, [("_count", "100")])
        found += [(rtype, m.resource_id) for m in page.matches]
    return found


@pytest.mark.parametrize("who", sorted(PRINCIPALS))
async def test_one_statement_and_separate_queries_agree(
    secure_services: Services, patients: dict[str, str], who: str  # noqa: F811
) -> None:
    principal = _principal(PRINCIPALS[who])
    control = _control(secure_services)
    separate = AccessQueries(secure_services.gate.service.repo.engine)  # no driver: the five queries
    basis = await control.care_team_basis(principal, separate)
    for pid in patients.values():
        reached = await separate.patients_of_care_teams(
            organisations=basis.organisations, roles=basis.roles,
            practitioners=basis.practitioners, among=[pid])
        at_once = await control.queries.staff_reach_among(*_basis_hsa_ids(principal), [pid])
        assert at_once is not None
        assert (at_once.organisations, at_once.roles, at_once.practitioners) == (
            basis.organisations, basis.roles, basis.practitioners)
        assert at_once.patients == reached, (who, pid)
    naming = sorted(c["id"] for c in await separate.consents_naming([
        ("Organization", basis.organisations), ("PractitionerRole", basis.roles),
        ("Practitioner", basis.practitioners)]))
    if who in ("unit-staff", "unit-and-nurse"):
        assert len(naming) == 1  # the block of the unit
    for rtype, rid in await _resources(secure_services, patients):
        found = await control.queries.read_with_staff_reach(
            rtype, rid, *_basis_hsa_ids(principal))
        assert found is not None
        stored, facts = found
        assert stored == await secure_services.gate.service.repo.read(rtype, rid)
        assert stored is not None
        assert stored.content is not None
        ids = policy.patient_ids(rtype, orjson.loads(stored.content))
        assert facts.indexed_patients == (ids or frozenset()), (rtype, rid)
        assert sorted(c["id"] for c in facts.consents) == naming, (rtype, rid)


@pytest.mark.parametrize("who", sorted(PRINCIPALS))
async def test_reads_answer_the_same_either_way(
    secure_services: Services, patients: dict[str, str], who: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    control = _control(secure_services)
    principal = _principal(PRINCIPALS[who])
    resources = await _resources(secure_services, patients)
    at_once = [await _outcome(GuardedFhirService(secure_services.gate.as_service(), control, principal),
                              rtype, rid) for rtype, rid in resources]
    monkeypatch.setattr(control.queries, "driver", None)
    separate = [await _outcome(GuardedFhirService(secure_services.gate.as_service(), control, principal),
                               rtype, rid) for rtype, rid in resources]
    assert at_once == separate
    if who == "unit-and-nurse":
        assert at_once[list(patients.values()).index(patients["by_org"])].startswith("200")
        assert at_once[list(patients.values()).index(patients["blocked"])] == "404"
        assert at_once[list(patients.values()).index(patients["ended"])] == "404"


async def test_a_missing_resource_is_not_found_in_one_statement(
    secure_services: Services,
) -> None:
    principal = _principal(PRINCIPALS["unit-staff"])
    found = await _control(secure_services).queries.read_with_staff_reach(
        "CarePlan", "no-such-plan", *_basis_hsa_ids(principal))
    assert found is not None
    assert found[0] is None
    guard = GuardedFhirService(secure_services.gate.as_service(), _control(secure_services), principal)
    assert await _outcome(guard, "CarePlan", "no-such-plan") == "404"
