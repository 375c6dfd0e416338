"""Reach is defined once (``store/access.py``), and every form of it agrees.

The one SQL definition of care-team reach is rendered into a statement that
answers "which of these patients" (``reach_facts``: on the driver, on a plain
connection, inside a write transaction), one that reads a resource with its
reach (``read_with_reach``, a staff read in one round trip) and a predicate
that restricts a search. Over care teams naming an organisation, a
PractitionerRole of it, a Practitioner, a managing organisation, an ended team
and a block, all of them must say the same for every kind of caller, and a read
through the gate must answer what the policy says.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from samplan.api.deps import Services
from samplan.fhir.errors import NotFound
from samplan.security import policy
from samplan.security.gate import Access
from samplan.security.principal import Principal
from samplan.store.access import AccessQueries
from security.test_reach_subquery import PRINCIPALS, _create, patients  # noqa: F401


def _principal(claims: dict[str, Any]) -> Principal:
    return Principal.from_claims({"sub": "tester", **claims})


async def _outcome(access: Access, rtype: str, rid: str) -> str:
    try:
        stored = await access.read(rtype, rid)
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
async def test_every_form_of_reach_agrees(
    secure_services: Services, patients: dict[str, str], who: str  # noqa: F811
) -> None:
    gate = secure_services.gate
    principal = _principal(PRINCIPALS[who])
    orgs, staff = gate.resolver.hsa_ids(principal)
    on_driver = await gate.queries.reach_facts(orgs, staff, patients.values())
    async with gate.engine.connect() as conn:
        on_conn = await AccessQueries(gate.engine, conn).reach_facts(orgs, staff,
                                                                     patients.values())
    assert on_driver == on_conn
    # the search predicate reaches the same patients (before blocks, which are the policy's)
    access = gate.access(principal)
    _, page = await access.search("Patient", [("_count", "100")])
    reach = gate.resolver.from_facts(on_driver)
    assert {m.resource_id for m in page.matches} == set(reach.patients)
    for pid in patients.values():
        one = await gate.queries.reach_facts(orgs, staff, [pid])
        assert one.patients == on_driver.patients & {pid}, (who, pid)
        assert (one.organisations, one.roles, one.practitioners) == (
            on_driver.organisations, on_driver.roles, on_driver.practitioners)
    naming = sorted(c["id"] for c in on_driver.consents)
    if who in ("unit-staff", "unit-and-nurse"):
        assert len(naming) == 1  # the block of the unit
    for rtype, rid in await _resources(secure_services, patients):
        stored, facts = await gate.queries.read_with_reach(rtype, rid, orgs, staff)
        assert stored == await gate.service.repo.read(rtype, rid)
        assert stored is not None
        assert stored.content is not None
        ids = policy.patient_ids(rtype, orjson.loads(stored.content))
        assert facts.indexed_patients == (ids or frozenset()), (rtype, rid)
        assert facts.patients == on_driver.patients & facts.indexed_patients, (rtype, rid)
        assert sorted(c["id"] for c in facts.consents) == naming, (rtype, rid)


@pytest.mark.parametrize("who", sorted(PRINCIPALS))
async def test_reads_answer_what_the_policy_says(
    secure_services: Services, patients: dict[str, str], who: str,  # noqa: F811
) -> None:
    gate = secure_services.gate
    principal = _principal(PRINCIPALS[who])
    for rtype, rid in await _resources(secure_services, patients):
        stored = await gate.service.repo.read(rtype, rid)
        assert stored is not None
        assert stored.content is not None
        body = orjson.loads(stored.content)
        reach = await gate.resolver.among(
            principal, policy.patient_ids(rtype, body) or ())
        expected = f"200 v{stored.version_id}" if policy.visible(
            principal, reach, rtype, body) else "404"
        assert await _outcome(gate.access(principal), rtype, rid) == expected, (rtype, rid)
    if who == "unit-and-nurse":
        access = gate.access(principal)
        assert (await _outcome(access, "Patient", patients["by_org"])).startswith("200")
        assert await _outcome(access, "Patient", patients["blocked"]) == "404"
        assert await _outcome(access, "Patient", patients["ended"]) == "404"


async def test_a_missing_resource_is_not_found_in_one_statement(
    secure_services: Services,
) -> None:
    gate = secure_services.gate
    principal = _principal(PRINCIPALS["unit-staff"])
    stored, _ = await gate.queries.read_with_reach("CarePlan", "no-such-plan",
                                                   *gate.resolver.hsa_ids(principal))
    assert stored is None
    assert await _outcome(gate.access(principal), "CarePlan", "no-such-plan") == "404"
