"""Reach in searches: the care-team predicate gives exactly what the list of patient ids gives.

Staff and systems are restricted by reach as a correlated SQL predicate
(``fhir.search.CareTeamValue``, rendered by ``store/access.py`` from the one
definition of reach); the same searches restricted instead by the list of the
patients that definition reaches (asked with ``reach_facts``, as patients and
relatives always are) must agree on ids and totals, over care teams naming an
organisation, a PractitionerRole of it, a Practitioner, a managing
organisation, an ended team and a block.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from samplan.api.deps import Services
from samplan.fhir.search import CareTeamValue, Filter
from samplan.security.gate import Access
from samplan.security.principal import Principal
from security.test_http_matrix import HSA_SYSTEM, NOPATIENT, _goal, _org, _plan, block

UNIT = "SE2321000073-2001"
PROVIDER = "SE2321000073-0001"
OTHER = "SE2321000073-9001"
NURSE = "SE2321000073-1001"


async def _create(services: Services, resource: dict[str, Any]) -> str:
    created = await services.gate.as_service().create(resource["resourceType"], resource)
    return created.stored.resource_id


def _team(patient: str, *members: str, status: str = "active",
          managing: str | None = None) -> dict[str, Any]:
    team: dict[str, Any] = {
        "resourceType": "CareTeam", "status": status,
        "subject": {"reference": f"Patient/{patient}"},
        "participant": [{"member": {"reference": m}} for m in members],
    }
    if managing:
        team["managingOrganization"] = [{"reference": f"Organization/{managing}"}]
    return team


@pytest.fixture
async def patients(secure_services: Services) -> dict[str, str]:
    s = secure_services
    unit = await _create(s, _org(UNIT, "Vårdcentralen"))
    provider = await _create(s, _org(PROVIDER, "Regionen"))
    other = await _create(s, _org(OTHER, "Annan"))
    role = await _create(s, {"resourceType": "PractitionerRole",
                             "organization": {"reference": f"Organization/{unit}"}})
    nurse = await _create(s, {"resourceType": "Practitioner",
                              "identifier": [{"system": HSA_SYSTEM, "value": NURSE}]})
    names = ["by_org", "by_role", "by_nurse", "by_provider", "managed", "ended", "blocked",
             "other"]
    ids = {n: await _create(s, {"resourceType": "Patient", "name": [{"family": n}]})
           for n in names}
    await _create(s, _team(ids["by_org"], f"Organization/{unit}"))
    await _create(s, _team(ids["by_role"], f"PractitionerRole/{role}"))
    await _create(s, _team(ids["by_nurse"], f"Practitioner/{nurse}"))
    await _create(s, _team(ids["by_provider"], f"Organization/{provider}"))
    await _create(s, _team(ids["managed"], managing=unit))
    await _create(s, _team(ids["ended"], f"Organization/{unit}", status="inactive"))
    await _create(s, _team(ids["blocked"], f"Organization/{unit}"))
    await _create(s, block(ids["blocked"], unit))
    await _create(s, _team(ids["other"], f"Organization/{other}"))
    for pid in ids.values():
        await _create(s, _plan(pid))
        await _create(s, _goal(pid))
        await _create(s, _goal(pid, hidden=True))
    return ids


PRINCIPALS = {
    "unit-staff": {"scope": "user/*.rs", "commissionHsaId": UNIT},
    "provider-staff": {"scope": "user/*.rs", "healthCareProviderHsaId": PROVIDER},
    "nurse": {"scope": "user/*.rs", "employeeHsaId": NURSE},
    "unit-and-nurse": {"scope": "user/*.rs", "commissionHsaId": UNIT, "employeeHsaId": NURSE},
    "system": {"scope": "system/*.rs", "organizationHsaId": UNIT},
    "nobody": {"scope": "user/*.rs", "commissionHsaId": "SE0000000000-0000"},
}

SEARCHES = [
    ("Patient", [("_total", "accurate")]),
    ("Patient", [("_count", "3"), ("_total", "accurate")]),
    ("CarePlan", [("_total", "accurate")]),
    ("Goal", [("_total", "accurate"), ("_count", "100")]),
    ("CarePlan", [("_include", "CarePlan:subject")]),
    ("Goal", [("_summary", "count")]),
]


async def _run(services: Services, claims: dict[str, Any], subquery: bool,
               rtype: str, params: list[tuple[str, str]],
               monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[Any, ...]:
    principal = Principal.from_claims({"sub": "tester", **claims})
    guard = services.gate.access(principal)
    if not subquery:
        assert monkeypatch is not None
        every = [m.resource_id for m in (await services.gate.as_service().search(
            "Patient", [("_count", "1000")]))[1].matches]
        original = Access._search_reach

        async def by_ids(self: Access, grant: Any) -> Any:
            if self.principal is None or self.principal.kind not in ("staff", "system"):
                return await original(self, grant)
            reach = await self.gate.resolver.among(self.principal, every, grant=grant)
            return replace(reach, by_care_team=False)

        monkeypatch.setattr(Access, "_search_reach", by_ids)
    query, page = await guard.search(rtype, list(params))
    if monkeypatch is not None:
        monkeypatch.undo()
    used = [f for f in query.filters if f.values and isinstance(f.values[0], CareTeamValue)]
    return (sorted(m.resource_id for m in page.matches),
            sorted(i.resource_id for i in page.includes), page.total, bool(used))


@pytest.mark.parametrize("who", sorted(PRINCIPALS))
@pytest.mark.usefixtures("patients")
async def test_subquery_and_id_list_agree(
    secure_services: Services, who: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for rtype, params in SEARCHES:
        by_subquery = await _run(secure_services, PRINCIPALS[who], True, rtype, params)
        by_ids = await _run(secure_services, PRINCIPALS[who], False, rtype, params,
                            monkeypatch)
        assert by_subquery[:3] == by_ids[:3], (who, rtype, params)
        assert by_subquery[3]
        assert not by_ids[3]


async def test_the_subquery_reaches_what_the_policy_says(
    secure_services: Services, patients: dict[str, str]
) -> None:
    found, _, total, _ = await _run(secure_services, PRINCIPALS["unit-and-nurse"], True,
                                    "Patient", [("_total", "accurate")])
    expected = {patients[n] for n in ("by_org", "by_role", "by_nurse", "managed")}
    assert set(found) == expected
    assert total == 4
    # staff stay at their care unit: the care provider's own CareTeams are not theirs
    provider, *_ = await _run(secure_services, PRINCIPALS["provider-staff"], True, "Patient", [])
    assert provider == []
    system, *_ = await _run(secure_services, {"scope": "system/*.rs",
                                              "healthCareProviderHsaId": PROVIDER},
                            True, "Patient", [])
    assert system == [patients["by_provider"]]


async def test_patients_keep_the_id_list(
    secure_services: Services, patients: dict[str, str]
) -> None:
    claims = {"scope": "patient/*.rs", "patient": patients["by_org"]}
    found, _, _, subquery = await _run(secure_services, claims, True, "Goal", [])
    assert not subquery
    assert len(found) == 1
    assert NOPATIENT["code"] == "NOPATIENT"


def test_an_empty_care_team_value_matches_nothing() -> None:
    from samplan.store.repository import _care_team_clause

    clause = _care_team_clause("Goal", CareTeamValue(organisations=()))
    assert str(clause.compile(compile_kwargs={"literal_binds": True})) in ("false", "0", "0 = 1")
    assert Filter("patient", "reference", (CareTeamValue(("o",)),)).values[0].organisations
