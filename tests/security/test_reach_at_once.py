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
        # a read asks only about its own patients: the Consents naming the caller about
        # them, and the caller's organisations only when one of those needs matching
        about = sorted(c["id"] for c in on_driver.consents
                       if (policy.patient_ids("Consent", c) or frozenset())
                       & facts.indexed_patients)
        assert sorted(c["id"] for c in facts.consents) == about, (rtype, rid)
        if facts.consents:
            assert facts.organisations <= on_driver.organisations, (rtype, rid)
            assert facts.roles <= on_driver.roles, (rtype, rid)
            assert facts.practitioners == on_driver.practitioners, (rtype, rid)
        else:
            assert not (facts.organisations)
            assert not (facts.roles)
            assert not (facts.practitioners)
        assert gate.resolver.from_facts(facts).patients == (
            reach.patients & facts.indexed_patients), (rtype, rid)


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


REGION = "SE2321000073-0001"
UNIT_A = "SE2321000073-2001"
SUB_UNIT = "SE2321000073-2101"
UNIT_B = "SE2321000073-2002"
ELSEWHERE = "SE2321000081-2001"


@pytest.fixture
async def region(secure_services: Services) -> dict[str, str]:
    """A care provider with a unit, a unit under that unit and a second unit, plus a
    unit of another provider; CareTeams and blocks naming them at every depth."""
    from security.test_http_matrix import _org, block
    from security.test_reach_subquery import _team

    s = secure_services

    async def org(hsa: str, parent: str | None = None) -> str:
        body = _org(hsa, hsa)
        if parent:
            body["partOf"] = {"reference": f"Organization/{parent}"}
        return await _create(s, body)

    top = await org(REGION)
    unit_a = await org(UNIT_A, top)
    sub = await org(SUB_UNIT, unit_a)
    unit_b = await org(UNIT_B, top)
    elsewhere = await org(ELSEWHERE)
    sub_role = await _create(s, {"resourceType": "PractitionerRole",
                                 "organization": {"reference": f"Organization/{sub}"}})
    names = ["sub", "sub_role", "b_managed", "top", "elsewhere", "blocked_above",
             "blocked_role", "ended"]
    ids = {n: await _create(s, {"resourceType": "Patient", "name": [{"family": n}]})
           for n in names}
    await _create(s, _team(ids["sub"], f"Organization/{sub}"))
    await _create(s, _team(ids["sub_role"], f"PractitionerRole/{sub_role}"))
    await _create(s, _team(ids["b_managed"], managing=unit_b))
    await _create(s, _team(ids["top"], f"Organization/{top}"))
    await _create(s, _team(ids["elsewhere"], f"Organization/{elsewhere}"))
    await _create(s, _team(ids["blocked_above"], f"Organization/{sub}"))
    await _create(s, block(ids["blocked_above"], unit_a))  # a block on the unit above
    await _create(s, _team(ids["blocked_role"], f"PractitionerRole/{sub_role}"))
    role_block = block(ids["blocked_role"], sub)
    role_block["provision"]["actor"][0]["reference"] = {
        "reference": f"PractitionerRole/{sub_role}"}
    await _create(s, role_block)
    await _create(s, _team(ids["ended"], f"Organization/{sub}", status="inactive"))
    for pid in ids.values():
        await _create(s, {"resourceType": "CarePlan", "status": "active", "intent": "plan",
                          "subject": {"reference": f"Patient/{pid}"}})
    return ids


@pytest.mark.parametrize("org", [REGION, UNIT_A, SUB_UNIT, ELSEWHERE])
async def test_a_read_walks_up_as_far_as_the_search_walks_down(
    secure_services: Services, region: dict[str, str], org: str
) -> None:
    """A system token's read looks up from its resource's CareTeams and Consents; the
    care provider's whole reach, walked down from it, must say the same for each."""
    gate = secure_services.gate
    principal = _principal({"scope": "system/*.rs", "organizationHsaId": org})
    orgs, staff = gate.resolver.hsa_ids(principal)
    whole = await gate.queries.reach_facts(orgs, staff, region.values(), units=True)
    reach = gate.resolver.from_facts(whole)
    for rtype, rid in await _resources(secure_services, region):
        stored, facts = await gate.queries.read_with_reach(rtype, rid, orgs, staff, units=True)
        assert stored is not None
        assert stored.content is not None
        read = gate.resolver.from_facts(facts)
        assert read.patients == reach.patients & facts.indexed_patients, (org, rtype, rid)
    expected = {
        REGION: {"sub", "sub_role", "b_managed", "top"},
        UNIT_A: {"sub", "sub_role"},
        # a block names the unit above, not this one (blocks name what they name)
        SUB_UNIT: {"sub", "sub_role", "blocked_above"},
        ELSEWHERE: {"elsewhere"},
    }[org]
    assert reach.patients == {region[n] for n in expected}
