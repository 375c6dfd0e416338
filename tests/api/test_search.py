"""Search as FHIR R4 specifies it (https://hl7.org/fhir/R4/search.html).

Parameters of each type, token/reference/date/string semantics, paging with
keyset cursors, sorting, totals, _include/_revinclude, unknown parameters and
POST _search. Every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from factories import (
    CATEGORY_SYSTEM,
    HSA_RIVTA_SYSTEM,
    HSA_SYSTEM,
    PNR_OID_SYSTEM,
    PNR_SYSTEM,
    SAMORDNING_SYSTEM,
    make_appointment,
    make_care_team,
    make_careplan,
    make_goal,
    make_organization,
    make_patient,
    make_practitioner,
)

BASE = "http://samplan.test/fhir"
Params = list[tuple[str, str]] | dict[str, str]


async def create(client: httpx.AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def search(
    client: httpx.AsyncClient, resource_type: str, params: Params | None = None,
    **headers: str,
) -> dict[str, Any]:
    response = await client.get(f"/fhir/{resource_type}", params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["resourceType"] == "Bundle"
    assert body["type"] == "searchset"
    return body


async def get(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    response = await client.get(url)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def matches(bundle: dict[str, Any]) -> list[str]:
    """Ids of the matches, in the order served."""
    return [e["resource"]["id"] for e in bundle.get("entry", [])
            if e["search"]["mode"] == "match"]


def included(bundle: dict[str, Any]) -> list[str]:
    """Type/id of the included resources, in the order served."""
    return [f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for e in bundle.get("entry", []) if e["search"]["mode"] == "include"]


def link(bundle: dict[str, Any], relation: str) -> str | None:
    return next((lk["url"] for lk in bundle["link"] if lk["relation"] == relation), None)


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


Case = tuple[Params, list[str]]


async def check(
    client: httpx.AsyncClient, resource_type: str, names: dict[str, str], cases: list[Case]
) -> None:
    """Run every (params, expected names) search and report all that differ, by name."""
    by_id = {rid: name for name, rid in names.items() if isinstance(rid, str)}
    wrong = []
    for params, expected in cases:
        got = [by_id.get(rid, rid) for rid in matches(await search(client, resource_type,
                                                                    params))]
        if got != expected:
            wrong.append((params, "got", got, "expected", expected))
    assert wrong == []


@dataclass
class World:
    """A small shared plan: two patients, staff, a team, a goal, plans and an appointment."""

    greta: str = ""
    sven: str = ""
    practitioner: str = ""
    team: str = ""
    other_team: str = ""
    goal: str = ""
    plan: str = ""
    draft_plan: str = ""
    appointment: str = ""


@pytest.fixture
async def world(client: httpx.AsyncClient) -> World:
    w = World()
    w.greta = (await create(client, make_patient()))["id"]
    w.sven = (await create(client, make_patient(pnr="193803152341", family="Lund",
                                                given="Sven", birth_date="1938-03-15")))["id"]
    w.practitioner = (await create(client, make_practitioner()))["id"]
    w.team = (await create(client, make_care_team(patient_id=w.greta,
                                                  practitioner_id=w.practitioner)))["id"]
    w.other_team = (await create(client, make_care_team(patient_id=w.sven,
                                                        status="proposed")))["id"]
    w.goal = (await create(client, make_goal(patient_id=w.greta)))["id"]
    w.plan = (await create(client, make_careplan(patient_id=w.greta, care_team_id=w.team,
                                                 goal_id=w.goal)))["id"]
    w.draft_plan = (await create(client, make_careplan(
        patient_id=w.sven, status="draft", category="vardplan", start="2025-01-01",
        end="2025-06-30")))["id"]
    appointment = make_appointment(patient_id=w.greta, careplan_id=w.plan)
    appointment["participant"].append(
        {"actor": {"reference": f"Practitioner/{w.practitioner}"}, "status": "accepted"})
    w.appointment = (await create(client, appointment))["id"]
    return w


class TestSearchById:
    async def test_id_finds_only_that_resource(
        self, client: httpx.AsyncClient, world: World
    ) -> None:
        bundle = await search(client, "Patient", {"_id": world.greta})
        assert matches(bundle) == [world.greta]
        assert bundle["total"] == 1
        assert bundle["entry"][0]["fullUrl"] == f"{BASE}/Patient/{world.greta}"

    async def test_comma_separated_ids_are_or(
        self, client: httpx.AsyncClient, world: World
    ) -> None:
        bundle = await search(client, "Patient", {"_id": f"{world.greta},{world.sven}"})
        assert sorted(matches(bundle)) == sorted([world.greta, world.sven])

    async def test_repeated_ids_are_and(self, client: httpx.AsyncClient, world: World) -> None:
        both = await search(client, "Patient", [("_id", world.greta), ("_id", world.sven)])
        assert matches(both) == []
        same = await search(client, "Patient", [("_id", f"{world.greta},{world.sven}"),
                                                ("_id", world.sven)])
        assert matches(same) == [world.sven]

    async def test_not_modifier_excludes_the_ids(
        self, client: httpx.AsyncClient, world: World
    ) -> None:
        bundle = await search(client, "Patient", {"_id:not": world.greta})
        assert matches(bundle) == [world.sven]

    @pytest.mark.usefixtures("world")
    async def test_unknown_id_finds_nothing(self, client: httpx.AsyncClient) -> None:
        bundle = await search(client, "Patient", {"_id": "nobody"})
        assert bundle["total"] == 0
        assert "entry" not in bundle


class TestSearchByLastUpdated:
    async def test_prefixes_at_microsecond_precision_split_the_versions(
        self, client: httpx.AsyncClient
    ) -> None:
        created = [await create(client, make_patient(family=f"F{i}")) for i in range(3)]
        ids = [p["id"] for p in created]
        middle = created[1]["meta"]["lastUpdated"]
        cases = {
            middle: [ids[1]],
            f"eq{middle}": [ids[1]],
            f"ne{middle}": [ids[0], ids[2]],
            f"gt{middle}": [ids[2]],
            f"ge{middle}": [ids[1], ids[2]],
            f"lt{middle}": [ids[0]],
            f"le{middle}": [ids[0], ids[1]],
            f"sa{middle}": [ids[2]],
            f"eb{middle}": [ids[0]],
        }
        for value, expected in cases.items():
            bundle = await search(client, "Patient", {"_lastUpdated": value})
            assert matches(bundle) == expected, value

    async def test_prefixes_at_year_precision(self, client: httpx.AsyncClient) -> None:
        rid = (await create(client, make_patient()))["id"]
        for value, expected in (("ge2020", [rid]), ("lt2020", []), ("sa2020", [rid]),
                                ("eb2020", []), ("gt2100", []), ("le2100", [rid]),
                                ("ne2020", [rid]), ("2020", [])):
            bundle = await search(client, "Patient", {"_lastUpdated": value})
            assert matches(bundle) == expected, value

    async def test_a_later_update_moves_the_resource_past_the_bound(
        self, client: httpx.AsyncClient
    ) -> None:
        first = await create(client, make_patient())
        second = await create(client, make_patient(family="Lund"))
        bound = second["meta"]["lastUpdated"]
        await client.put(f"/fhir/Patient/{first['id']}",
                         json=make_patient(id=first["id"], family="Ny"))
        bundle = await search(client, "Patient", {"_lastUpdated": f"gt{bound}"})
        assert matches(bundle) == [first["id"]]


class TestPaging:
    async def test_next_links_visit_every_result_once_in_order_and_previous_links_go_back(
        self, client: httpx.AsyncClient
    ) -> None:
        ids = [(await create(client, make_patient(family=f"F{i}")))["id"] for i in range(7)]
        pages: list[list[str]] = []
        bundle = await search(client, "Patient", {"_count": "3"})
        assert link(bundle, "previous") is None
        while True:
            pages.append(matches(bundle))
            next_url = link(bundle, "next")
            if next_url is None:
                break
            assert "_page_after" in query_of(next_url)
            assert query_of(next_url)["_count"] == ["3"]
            bundle = await get(client, next_url)
        assert pages == [ids[0:3], ids[3:6], ids[6:7]]

        back: list[list[str]] = [matches(bundle)]
        while (previous_url := link(bundle, "previous")) is not None:
            assert "_page_before" in query_of(previous_url)
            bundle = await get(client, previous_url)
            back.append(matches(bundle))
        assert back == list(reversed(pages))
        # the first page reached backwards links forward again, and not further back
        assert link(bundle, "previous") is None
        assert matches(await get(client, link(bundle, "next") or "")) == ids[3:6]

    async def test_descending_pages_visit_every_result_once(
        self, client: httpx.AsyncClient
    ) -> None:
        ids = [(await create(client, make_patient(family=f"F{i}")))["id"] for i in range(5)]
        seen = await follow_next(client, "/fhir/Patient?_sort=-_lastUpdated&_count=2")
        assert seen == list(reversed(ids))

    async def test_links_keep_the_search_parameters(
        self, client: httpx.AsyncClient
    ) -> None:
        for i in range(3):
            await create(client, make_patient(family=f"Holm{i}"))
        await create(client, make_patient(family="Lund"))
        bundle = await search(client, "Patient", {"name": "holm", "_count": "2"})
        for relation in ("self", "next"):
            url = link(bundle, relation)
            assert url is not None
            assert url.startswith(f"{BASE}/Patient?")
            assert query_of(url)["name"] == ["holm"]
        rest = await get(client, link(bundle, "next") or "")
        assert len(matches(rest)) == 1
        assert link(rest, "next") is None

    async def test_a_create_between_pages_neither_repeats_nor_skips_earlier_results(
        self, client: httpx.AsyncClient
    ) -> None:
        ids = [(await create(client, make_patient(family=f"F{i}")))["id"] for i in range(5)]
        first = await search(client, "Patient", {"_count": "2"})
        late = (await create(client, make_patient(family="Late")))["id"]
        seen = matches(first) + await follow_next(client, link(first, "next"))
        assert seen == [*ids, late]

    async def test_a_create_between_descending_pages_does_not_shift_them(
        self, client: httpx.AsyncClient
    ) -> None:
        ids = [(await create(client, make_patient(family=f"F{i}")))["id"] for i in range(5)]
        first = await search(client, "Patient", {"_count": "2", "_sort": "-_lastUpdated"})
        await create(client, make_patient(family="Late"))
        seen = matches(first) + await follow_next(client, link(first, "next"))
        assert seen == list(reversed(ids))

    async def test_a_delete_between_pages_does_not_skip_a_result(
        self, client: httpx.AsyncClient
    ) -> None:
        ids = [(await create(client, make_patient(family=f"F{i}")))["id"] for i in range(5)]
        first = await search(client, "Patient", {"_count": "2"})
        assert (await client.delete(f"/fhir/Patient/{ids[0]}")).status_code == 204
        rest = await follow_next(client, link(first, "next"))
        assert rest == ids[2:]

    async def test_pages_sorted_by_a_date_with_ties_visit_every_result_once(
        self, client: httpx.AsyncClient
    ) -> None:
        patient = (await create(client, make_patient()))["id"]
        ids = [(await create(client, make_careplan(patient_id=patient)))["id"]
               for _ in range(5)]
        for sort in ("date", "-date"):
            seen = await follow_next(client, f"/fhir/CarePlan?_sort={sort}&_count=2")
            assert seen == sorted(ids), sort
            last = await get(client, f"/fhir/CarePlan?_sort={sort}&_count=2")
            while (next_url := link(last, "next")) is not None:
                last = await get(client, next_url)
            back = matches(last)
            while (previous_url := link(last, "previous")) is not None:
                last = await get(client, previous_url)
                back = matches(last) + back
            assert back == sorted(ids), sort

    async def test_count_zero_gives_no_entries_and_no_next_link(
        self, client: httpx.AsyncClient
    ) -> None:
        await create(client, make_patient())
        bundle = await search(client, "Patient", {"_count": "0"})
        assert "entry" not in bundle
        assert link(bundle, "next") is None

    async def test_default_page_size_is_20(self, client: httpx.AsyncClient) -> None:
        for i in range(21):
            await create(client, make_patient(family=f"F{i}"))
        bundle = await search(client, "Patient")
        assert len(matches(bundle)) == 20
        assert link(bundle, "next") is not None


async def follow_next(client: httpx.AsyncClient, url: str | None) -> list[str]:
    """Ids of every match on this page and all pages after it."""
    seen: list[str] = []
    while url:
        bundle = await get(client, url)
        seen += matches(bundle)
        url = link(bundle, "next")
    return seen


class TestSort:
    @pytest.fixture
    async def plans(self, client: httpx.AsyncClient) -> dict[str, str]:
        patient = (await create(client, make_patient()))["id"]
        periods = {"jan": ("2026-01-10", "2026-03-01"), "feb": ("2026-02-01", "2026-02-28"),
                   "open": ("2025-06-01", None)}
        return {
            name: (await create(client, make_careplan(patient_id=patient, start=start,
                                                      end=end)))["id"]
            for name, (start, end) in periods.items()
        }

    async def test_default_order_is_last_updated_ascending(
        self, client: httpx.AsyncClient, plans: dict[str, str]
    ) -> None:
        bundle = await search(client, "CarePlan")
        assert matches(bundle) == [plans["jan"], plans["feb"], plans["open"]]

    async def test_sort_by_last_updated_both_ways(
        self, client: httpx.AsyncClient, plans: dict[str, str]
    ) -> None:
        up = await search(client, "CarePlan", {"_sort": "_lastUpdated"})
        down = await search(client, "CarePlan", {"_sort": "-_lastUpdated"})
        assert matches(up) == [plans["jan"], plans["feb"], plans["open"]]
        assert matches(down) == [plans["open"], plans["feb"], plans["jan"]]

    async def test_sort_by_date_uses_the_period_start_ascending(
        self, client: httpx.AsyncClient, plans: dict[str, str]
    ) -> None:
        bundle = await search(client, "CarePlan", {"_sort": "date"})
        assert matches(bundle) == [plans["open"], plans["jan"], plans["feb"]]

    async def test_sort_by_date_descending_uses_the_period_end_open_end_first(
        self, client: httpx.AsyncClient, plans: dict[str, str]
    ) -> None:
        bundle = await search(client, "CarePlan", {"_sort": "-date"})
        assert matches(bundle) == [plans["open"], plans["jan"], plans["feb"]]

    async def test_sort_appointments_by_date(self, client: httpx.AsyncClient) -> None:
        patient = (await create(client, make_patient()))["id"]
        starts = ["2027-03-01T09:30:00+01:00", "2027-01-12T09:30:00+01:00",
                  "2027-02-01T09:30:00+01:00"]
        ids = [(await create(client, make_appointment(patient_id=patient, start=s)))["id"]
               for s in starts]
        up = await search(client, "Appointment", {"_sort": "date"})
        down = await search(client, "Appointment", {"_sort": "-date"})
        assert matches(up) == [ids[1], ids[2], ids[0]]
        assert matches(down) == [ids[0], ids[2], ids[1]]

    async def test_resources_without_the_date_sort_last_both_ways(
        self, client: httpx.AsyncClient
    ) -> None:
        patient = (await create(client, make_patient()))["id"]
        dated = (await create(client, make_appointment(patient_id=patient)))["id"]
        undated_body = make_appointment(patient_id=patient, status="proposed")
        del undated_body["start"], undated_body["end"]
        undated = (await create(client, undated_body))["id"]
        assert matches(await search(client, "Appointment", {"_sort": "date"})) == [dated, undated]
        assert matches(await search(client, "Appointment", {"_sort": "-date"})) == [
            dated, undated]


class TestTotalAndSummary:
    async def test_total_accurate_counts_all_matches_not_just_the_page(
        self, client: httpx.AsyncClient
    ) -> None:
        for i in range(5):
            await create(client, make_patient(family=f"F{i}"))
        bundle = await search(client, "Patient", {"_count": "2", "_total": "accurate"})
        assert bundle["total"] == 5
        assert len(matches(bundle)) == 2
        following = await get(client, link(bundle, "next") or "")
        assert following["total"] == 5

    @pytest.mark.usefixtures("world")
    async def test_total_accurate_counts_only_what_matches(
        self, client: httpx.AsyncClient
    ) -> None:
        bundle = await search(client, "CarePlan", {"status": "active", "_total": "accurate"})
        assert bundle["total"] == 1

    @pytest.mark.usefixtures("world")
    async def test_summary_count_gives_the_total_and_no_entries(
        self, client: httpx.AsyncClient
    ) -> None:
        bundle = await search(client, "Patient", {"_summary": "count"})
        assert bundle["total"] == 2
        assert "entry" not in bundle
        assert link(bundle, "next") is None
        filtered = await search(client, "CareTeam", {"_summary": "count", "status": "active"})
        assert filtered["total"] == 1


class TestIncludes:
    async def test_include_care_team_goal_and_subject(
        self, client: httpx.AsyncClient, world: World
    ) -> None:
        for param, expected in (("care-team", f"CareTeam/{world.team}"),
                                ("goal", f"Goal/{world.goal}"),
                                ("subject", f"Patient/{world.greta}")):
            bundle = await search(client, "CarePlan",
                                  {"_id": world.plan, "_include": f"CarePlan:{param}"})
            assert matches(bundle) == [world.plan]
            assert included(bundle) == [expected], param
            assert bundle["total"] == 1

    async def test_several_includes_at_once_are_marked_include(
        self, client: httpx.AsyncClient, world: World
    ) -> None:
        bundle = await search(client, "CarePlan", [
            ("_id", world.plan), ("_include", "CarePlan:care-team"),
            ("_include", "CarePlan:goal"), ("_include", "CarePlan:subject"),
        ])
        assert sorted(included(bundle)) == sorted([
            f"CareTeam/{world.team}", f"Goal/{world.goal}", f"Patient/{world.greta}"])
        modes = [e["search"]["mode"] for e in bundle["entry"]]
        assert modes == ["match", "include", "include", "include"]
        assert {e["fullUrl"] for e in bundle["entry"][1:]} == {
            f"{BASE}/CareTeam/{world.team}", f"{BASE}/Goal/{world.goal}",
            f"{BASE}/Patient/{world.greta}"}

    async def test_a_resource_referenced_twice_is_included_once(
        self, client: httpx.AsyncClient, world: World
    ) -> None:
        await create(client, make_careplan(patient_id=world.greta, status="completed"))
        bundle = await search(client, "CarePlan",
                              {"patient": world.greta, "_include": "CarePlan:subject"})
        assert len(matches(bundle)) == 2
        assert included(bundle) == [f"Patient/{world.greta}"]

    async def test_include_with_a_target_type(
        self, client: httpx.AsyncClient, world: World
    ) -> None:
        patient = await search(client, "CarePlan", {"_id": world.plan,
                                                    "_include": "CarePlan:subject:Patient"})
        group = await search(client, "CarePlan", {"_id": world.plan,
                                                  "_include": "CarePlan:subject:Group"})
        assert included(patient) == [f"Patient/{world.greta}"]
        assert included(group) == []

    async def test_revinclude_appointments_based_on_the_plan(
        self, client: httpx.AsyncClient, world: World
    ) -> None:
        bundle = await search(client, "CarePlan", {"status": "active",
                                                   "_revinclude": "Appointment:based-on"})
        assert matches(bundle) == [world.plan]
        assert included(bundle) == [f"Appointment/{world.appointment}"]
        assert bundle["entry"][1]["search"] == {"mode": "include"}

    async def test_includes_follow_the_page_they_belong_to(
        self, client: httpx.AsyncClient, world: World
    ) -> None:
        bundle = await search(client, "CarePlan", {"_count": "1", "_include": "CarePlan:subject"})
        assert matches(bundle) == [world.plan]
        assert included(bundle) == [f"Patient/{world.greta}"]
        second = await get(client, link(bundle, "next") or "")
        assert matches(second) == [world.draft_plan]
        assert included(second) == [f"Patient/{world.sven}"]

    async def test_a_deleted_target_is_not_included(
        self, client: httpx.AsyncClient, world: World
    ) -> None:
        await client.delete(f"/fhir/Goal/{world.goal}")
        bundle = await search(client, "CarePlan", {"_id": world.plan,
                                                   "_include": "CarePlan:goal"})
        assert included(bundle) == []

    async def test_appointment_include_patient(
        self, client: httpx.AsyncClient, world: World
    ) -> None:
        bundle = await search(client, "Appointment", {"_include": "Appointment:patient"})
        assert included(bundle) == [f"Patient/{world.greta}"]


class TestCarePlanParameters:
    async def test_patient_subject_status_category_date_care_team_and_goal(
        self, client: httpx.AsyncClient, world: World
    ) -> None:
        w = world
        await check(client, "CarePlan", vars(w), [
            ({"patient": w.greta}, ["plan"]),
            ({"patient": f"Patient/{w.sven}"}, ["draft_plan"]),
            ({"subject": f"Patient/{w.greta}"}, ["plan"]),
            ({"subject": w.sven}, ["draft_plan"]),
            ({"status": "active"}, ["plan"]),
            ({"status": "draft"}, ["draft_plan"]),
            ({"status": "active,draft"}, ["plan", "draft_plan"]),
            ({"status": "completed"}, []),
            ({"category": "dokumenterad-overenskommelse"}, ["plan"]),
            ({"category": f"{CATEGORY_SYSTEM}|vardplan"}, ["draft_plan"]),
            ({"date": "2025"}, ["draft_plan"]),
            ({"date": "ge2026"}, ["plan"]),
            ({"care-team": f"CareTeam/{w.team}"}, ["plan"]),
            ({"care-team": w.other_team}, []),
            ({"goal": f"Goal/{w.goal}"}, ["plan"]),
            ({"goal": w.goal}, ["plan"]),
            ([("patient", w.greta), ("status", "draft")], []),
        ])


class TestCareTeamParameters:
    async def test_patient_participant_and_status(
        self, client: httpx.AsyncClient, world: World
    ) -> None:
        w = world
        await check(client, "CareTeam", vars(w), [
            ({"patient": w.greta}, ["team"]),
            ({"patient": f"Patient/{w.sven}"}, ["other_team"]),
            ({"participant": f"Practitioner/{w.practitioner}"}, ["team"]),
            ({"participant": w.practitioner}, ["team"]),
            ({"participant": f"Patient/{w.practitioner}"}, []),
            ({"status": "active"}, ["team"]),
            ({"status": "proposed"}, ["other_team"]),
            ({"status": "inactive"}, []),
        ])


class TestAppointmentParameters:
    async def test_patient_actor_date_status_and_based_on(
        self, client: httpx.AsyncClient, world: World
    ) -> None:
        w = world
        await check(client, "Appointment", vars(w), [
            ({"patient": w.greta}, ["appointment"]),
            ({"patient": w.sven}, []),
            ({"patient": w.practitioner}, []),
            ({"actor": f"Practitioner/{w.practitioner}"}, ["appointment"]),
            ({"actor": f"Patient/{w.greta}"}, ["appointment"]),
            ({"date": "2027-01-12"}, ["appointment"]),
            ({"date": "2027-01-13"}, []),
            ({"status": "booked"}, ["appointment"]),
            ({"status": "cancelled"}, []),
            ({"based-on": f"CarePlan/{w.plan}"}, ["appointment"]),
            ({"based-on": w.draft_plan}, []),
        ])


class TestGoalParameters:
    async def test_patient_and_lifecycle_status(
        self, client: httpx.AsyncClient, world: World
    ) -> None:
        proposed = (await create(client, make_goal(patient_id=world.sven,
                                                   lifecycle_status="proposed")))["id"]
        assert matches(await search(client, "Goal", {"patient": world.greta})) == [world.goal]
        assert matches(await search(client, "Goal", {"patient": f"Patient/{world.sven}"})) == [
            proposed]
        assert matches(await search(client, "Goal", {"lifecycle-status": "active"})) == [
            world.goal]
        assert matches(await search(client, "Goal", {"lifecycle-status": "proposed"})) == [
            proposed]
        both = [("patient", world.greta), ("lifecycle-status", "proposed")]
        assert matches(await search(client, "Goal", both)) == []


class TestPatientParameters:
    @pytest.fixture
    async def patients(self, client: httpx.AsyncClient) -> dict[str, str]:
        people = {
            "holm": make_patient(family="Holm", given="Greta"),
            "holmberg": make_patient(pnr="193803152341", family="Holmberg", given="Sven",
                                     birth_date="1938-03-15"),
            "oberg": make_patient(pnr="191212121212", family="Öberg", given="Åsa",
                                  birth_date="1912-12-12"),
        }
        return {name: (await create(client, p))["id"] for name, p in people.items()}

    async def test_name_family_and_given_are_case_and_accent_insensitive_prefixes(
        self, client: httpx.AsyncClient, patients: dict[str, str]
    ) -> None:
        await check(client, "Patient", patients, [
            ({"name": "holm"}, ["holm", "holmberg"]),
            ({"name": "HOLM"}, ["holm", "holmberg"]),
            ({"name": "gre"}, ["holm"]),
            ({"name": "oberg"}, ["oberg"]),
            ({"name": "ÖBERG"}, ["oberg"]),
            ({"name": "asa"}, ["oberg"]),
            ({"name": "berg"}, []),
            ({"name": "holm,oberg"}, ["holm", "holmberg", "oberg"]),
            ({"family": "holm"}, ["holm", "holmberg"]),
            ({"family": "greta"}, []),
            ({"given": "sv"}, ["holmberg"]),
        ])

    async def test_contains_matches_anywhere_and_exact_matches_the_text_as_written(
        self, client: httpx.AsyncClient, patients: dict[str, str]
    ) -> None:
        await check(client, "Patient", patients, [
            ({"name:contains": "berg"}, ["holmberg", "oberg"]),
            ({"name:contains": "OLM"}, ["holm", "holmberg"]),
            ({"name:exact": "Holm"}, ["holm"]),
            ({"name:exact": "holm"}, []),
            ({"name:exact": "Hol"}, []),
            ({"name:exact": "Öberg"}, ["oberg"]),
            ({"name:exact": "Oberg"}, []),
            ({"given:exact": "Åsa"}, ["oberg"]),
            ({"family:exact": "Holmberg,Öberg"}, ["holmberg", "oberg"]),
        ])

    async def test_birthdate(self, client: httpx.AsyncClient, patients: dict[str, str]) -> None:
        await check(client, "Patient", patients, [
            ({"birthdate": "1945-01-01"}, ["holm"]),
            ({"birthdate": "1945"}, ["holm"]),
            ({"birthdate": "lt1940"}, ["holmberg", "oberg"]),
            ({"birthdate": "ge1938-03-15"}, ["holm", "holmberg"]),
            ({"birthdate": "1938-03"}, ["holmberg"]),
            ({"birthdate": "1945-01-02"}, []),
        ])

    async def test_identifier(self, client: httpx.AsyncClient, patients: dict[str, str]) -> None:
        await check(client, "Patient", patients, [
            ({"identifier": f"{PNR_SYSTEM}|193803152341"}, ["holmberg"]),
            ({"identifier": "191212121212,193803152341"}, ["holmberg", "oberg"]),
        ])

    async def test_repeated_name_is_and(
        self, client: httpx.AsyncClient, patients: dict[str, str]
    ) -> None:
        bundle = await search(client, "Patient", [("name", "holm"), ("name", "sven")])
        assert matches(bundle) == [patients["holmberg"]]

    @pytest.mark.usefixtures("patients")
    async def test_escaped_comma_is_part_of_the_value(self, client: httpx.AsyncClient) -> None:
        await create(client, make_patient(family="Holm, Greta"))
        bundle = await search(client, "Patient", {"family:exact": "Holm\\, Greta"})
        assert len(matches(bundle)) == 1


class TestPersonnummerSearch:
    async def test_any_accepted_form_finds_the_stored_twelve_digits(
        self, client: httpx.AsyncClient
    ) -> None:
        greta = (await create(client, make_patient(pnr="194501011235")))["id"]
        sven = (await create(client, make_patient(pnr="193803152341", family="Lund")))["id"]
        await check(client, "Patient", {"greta": greta, "sven": sven}, [
            ({"identifier": f"{PNR_SYSTEM}|194501011235"}, ["greta"]),
            ({"identifier": f"{PNR_SYSTEM}|450101-1235"}, ["greta"]),
            ({"identifier": f"{PNR_SYSTEM}|19450101-1235"}, ["greta"]),
            ({"identifier": f"{PNR_SYSTEM}|4501011235"}, ["greta"]),
            ({"identifier": f"{PNR_OID_SYSTEM}|194501011235"}, ["greta"]),
            ({"identifier": f"{PNR_OID_SYSTEM}|450101-1235"}, ["greta"]),
            ({"identifier": "1.2.752.129.2.1.3.1|19450101-1235"}, ["greta"]),
            ({"identifier": "194501011235"}, ["greta"]),
            ({"identifier": "19450101-1235"}, ["greta"]),
            ({"identifier": "450101-1235"}, ["greta"]),
            ({"identifier": f"{PNR_SYSTEM}|"}, ["greta", "sven"]),
            ({"identifier": f"{PNR_OID_SYSTEM}|"}, ["greta", "sven"]),
        ])

    async def test_a_personnummer_is_not_found_under_another_system_or_number(
        self, client: httpx.AsyncClient
    ) -> None:
        greta = (await create(client, make_patient()))["id"]
        await check(client, "Patient", {"greta": greta}, [
            ({"identifier": f"{SAMORDNING_SYSTEM}|194501011235"}, []),
            ({"identifier": "|194501011235"}, []),
            ({"identifier": f"{PNR_SYSTEM}|193803152341"}, []),
            ({"identifier": f"{PNR_SYSTEM}|450101-1234"}, []),
        ])

    async def test_samordningsnummer_is_found_in_written_form(
        self, client: httpx.AsyncClient
    ) -> None:
        patient = make_patient(pnr="610973-2393", birth_date=None)
        patient["identifier"][0]["system"] = "urn:oid:1.2.752.129.2.1.3.3"
        rid = (await create(client, patient))["id"]
        assert patient["identifier"][0]["value"] == "610973-2393"
        await check(client, "Patient", {"samordning": rid}, [
            ({"identifier": f"{SAMORDNING_SYSTEM}|19610973-2393"}, ["samordning"]),
            ({"identifier": f"{SAMORDNING_SYSTEM}|196109732393"}, ["samordning"]),
            ({"identifier": "610973-2393"}, ["samordning"]),
            ({"identifier": f"{PNR_SYSTEM}|196109732393"}, []),
        ])


class TestHsaIdSearch:
    async def test_both_hsa_systems_match_as_one(self, client: httpx.AsyncClient) -> None:
        hl7 = (await create(client, make_practitioner()))["id"]
        rivta_body = make_practitioner(hsa_id="SE2321000073-1002", family="Ek")
        rivta_body["identifier"][0]["system"] = HSA_RIVTA_SYSTEM
        rivta = (await create(client, rivta_body))["id"]
        await check(client, "Practitioner", {"hl7": hl7, "rivta": rivta}, [
            ({"identifier": f"{HSA_SYSTEM}|SE2321000073-1001"}, ["hl7"]),
            ({"identifier": f"{HSA_RIVTA_SYSTEM}|SE2321000073-1001"}, ["hl7"]),
            ({"identifier": f"{HSA_SYSTEM}|SE2321000073-1002"}, ["rivta"]),
            ({"identifier": f"{HSA_RIVTA_SYSTEM}|SE2321000073-1002"}, ["rivta"]),
            ({"identifier": "1.2.752.129.2.1.4.1|SE2321000073-1002"}, ["rivta"]),
            ({"identifier": f"{HSA_SYSTEM}|"}, ["hl7", "rivta"]),
            ({"identifier": f"{HSA_RIVTA_SYSTEM}|"}, ["hl7", "rivta"]),
            ({"identifier": "SE2321000073-1002"}, ["rivta"]),
        ])

    async def test_organization_by_hsa_id_under_either_system_and_bare(
        self, client: httpx.AsyncClient
    ) -> None:
        rid = (await create(client, make_organization(system=HSA_RIVTA_SYSTEM)))["id"]
        await check(client, "Organization", {"unit": rid}, [
            ({"identifier": f"{HSA_SYSTEM}|SE2321000073-2001"}, ["unit"]),
            ({"identifier": f"{HSA_RIVTA_SYSTEM}|SE2321000073-2001"}, ["unit"]),
            ({"identifier": "SE2321000073-2001"}, ["unit"]),
            ({"identifier": "SE2321000073-2002"}, []),
        ])


class TestPractitionerAndOrganizationName:
    async def test_practitioner_name(self, client: httpx.AsyncClient) -> None:
        anna = (await create(client, make_practitioner()))["id"]
        await create(client, make_practitioner(hsa_id="SE2321000073-1002", family="Ek",
                                               given="Örjan"))
        assert matches(await search(client, "Practitioner", {"name": "ber"})) == [anna]
        assert matches(await search(client, "Practitioner", {"name": "ANNA"})) == [anna]
        assert len(matches(await search(client, "Practitioner", {"name": "orjan"}))) == 1

    async def test_organization_name_and_alias(self, client: httpx.AsyncClient) -> None:
        ekbacken = (await create(client, make_organization(alias="VC Ekbacken")))["id"]
        await create(client, make_organization(name="Hemtjänsten Norr",
                                               hsa_id="SE2321000073-2002"))
        assert matches(await search(client, "Organization", {"name": "vardcentralen"})) == [
            ekbacken]
        assert matches(await search(client, "Organization", {"name": "vc ek"})) == [ekbacken]
        assert matches(await search(client, "Organization", {"name:contains": "ekbacken"})) == [
            ekbacken]


class TestTokenSemantics:
    @pytest.fixture
    async def plans(self, client: httpx.AsyncClient) -> dict[str, str]:
        patient = (await create(client, make_patient()))["id"]
        uncoded = make_careplan(patient_id=patient)
        uncoded["category"] = [{"coding": [{"code": "dokumenterad-overenskommelse"}]}]
        other = make_careplan(patient_id=patient)
        other["category"] = [{"coding": [{"system": "http://example.org/other",
                                          "code": "dokumenterad-overenskommelse"}]}]
        return {
            "ours": (await create(client, make_careplan(patient_id=patient)))["id"],
            "uncoded": (await create(client, uncoded))["id"],
            "other": (await create(client, other))["id"],
        }

    async def test_code_system_bar_code_bar_code_and_system_bar(
        self, client: httpx.AsyncClient, plans: dict[str, str]
    ) -> None:
        code = "dokumenterad-overenskommelse"
        await check(client, "CarePlan", plans, [
            ({"category": code}, ["ours", "uncoded", "other"]),
            ({"category": f"{CATEGORY_SYSTEM}|{code}"}, ["ours"]),
            ({"category": f"http://example.org/other|{code}"}, ["other"]),
            ({"category": f"|{code}"}, ["uncoded"]),
            ({"category": f"{CATEGORY_SYSTEM}|"}, ["ours"]),
            ({"category": "http://example.org/other|"}, ["other"]),
            ({"category": "http://example.org/nothing|"}, []),
            ({"category": "Dokumenterad-Overenskommelse"}, []),
            ({"category": f"{CATEGORY_SYSTEM}|vardplan"}, []),
            ({"category": f"{CATEGORY_SYSTEM}|vardplan,|{code}"}, ["uncoded"]),
        ])

    async def test_not_modifier_excludes_the_code(
        self, client: httpx.AsyncClient, world: World
    ) -> None:
        bundle = await search(client, "CarePlan", {"status:not": "active"})
        assert matches(bundle) == [world.draft_plan]


class TestReferenceSemantics:
    async def test_forms_of_the_same_reference(
        self, client: httpx.AsyncClient, world: World
    ) -> None:
        g = world.greta
        await check(client, "CarePlan", vars(world), [
            ({"subject": f"Patient/{g}"}, ["plan"]),
            ({"subject": g}, ["plan"]),
            ({"subject": f"{BASE}/Patient/{g}"}, ["plan"]),
            ({"subject": f"Patient/{g}/_history/1"}, ["plan"]),
            ({"subject": f"Group/{g}"}, []),
        ])

    async def test_type_modifier_restricts_the_target_type(
        self, client: httpx.AsyncClient, world: World
    ) -> None:
        as_patient = await search(client, "CarePlan", {"subject:Patient": world.greta})
        as_group = await search(client, "CarePlan", {"subject:Group": world.greta})
        assert matches(as_patient) == [world.plan]
        assert matches(as_group) == []

    async def test_absolute_reference_with_our_base_in_the_resource_is_indexed(
        self, client: httpx.AsyncClient, world: World
    ) -> None:
        plan = make_careplan(patient_id=world.sven)
        plan["subject"] = {"reference": f"{BASE}/Patient/{world.sven}"}
        rid = (await create(client, plan))["id"]
        bundle = await search(client, "CarePlan", {"patient": f"Patient/{world.sven}"})
        assert matches(bundle) == [world.draft_plan, rid]

    async def test_a_reference_to_another_server_is_not_indexed_as_ours(
        self, client: httpx.AsyncClient, world: World
    ) -> None:
        plan = make_careplan(patient_id=world.sven)
        plan["subject"] = {"reference": f"http://elsewhere.example/fhir/Patient/{world.sven}"}
        await create(client, plan)
        bundle = await search(client, "CarePlan", {"patient": world.sven})
        assert matches(bundle) == [world.draft_plan]

    async def test_comma_is_or_and_repeated_is_and(
        self, client: httpx.AsyncClient, world: World
    ) -> None:
        either = await search(client, "CarePlan",
                              {"patient": f"Patient/{world.greta},Patient/{world.sven}"})
        assert matches(either) == [world.plan, world.draft_plan]
        both = await search(client, "Appointment", [
            ("actor", f"Patient/{world.greta}"), ("actor", f"Practitioner/{world.practitioner}")])
        assert matches(both) == [world.appointment]
        neither = await search(client, "Appointment", [
            ("actor", f"Patient/{world.greta}"), ("actor", f"Patient/{world.sven}")])
        assert matches(neither) == []


class TestDateSemantics:
    """Prefixes against Periods (CarePlan.period) and instants (Appointment.start).

    Plain dates are days in Europe/Stockholm: 2027-01-12T23:30:00Z is the 13th there.
    """

    @pytest.fixture
    async def dated(self, client: httpx.AsyncClient) -> dict[str, str]:
        patient = (await create(client, make_patient()))["id"]
        ids: dict[str, str] = {}
        for name, start, end in (("p1", "2026-01-10", "2026-01-20"),
                                 ("p2", "2026-01-15", "2026-03-31"),
                                 ("p3", "2025-12-01", None)):
            plan = make_careplan(patient_id=patient, start=start, end=end)
            ids[name] = (await create(client, plan))["id"]
        for name, start in (("a1", "2027-01-12T09:30:00+01:00"),
                            ("a2", "2027-01-12T23:30:00Z"),
                            ("a3", "2027-02-01T08:00:00+01:00")):
            ids[name] = (await create(client, make_appointment(patient_id=patient,
                                                               start=start)))["id"]
        return ids

    async def test_careplan_period(
        self, client: httpx.AsyncClient, dated: dict[str, str]
    ) -> None:
        await check(client, "CarePlan", dated, [({"date": value}, expected) for value, expected in [
            ("2026", ["p1", "p2"]),
            ("eq2026-01", ["p1"]),
            ("ne2026", ["p3"]),
            ("gt2026-01-20", ["p2", "p3"]),
            ("lt2026-01-10", ["p3"]),
            ("ge2026-01-20", ["p1", "p2", "p3"]),
            ("ge2026-01-21", ["p2", "p3"]),
            ("le2026-01-14", ["p1", "p3"]),
            ("sa2026-01-09", ["p1", "p2"]),
            ("eb2026-01-21", ["p1"]),
            ("eb2026", []),
            ("sa2025", ["p1", "p2"]),
            ("ge2026-01-20T23:59:59", ["p1", "p2", "p3"]),
            ("gt2026-01-20T23:59:59", ["p2", "p3"]),
            ("lt2026-01-10T00:00:00", ["p3"]),
            ("le2026-01-10T00:00:00", ["p1", "p3"]),
            ("le2026-01-09T23:00:00Z", ["p1", "p3"]),
            ("lt2026-01-09T23:00:00Z", ["p3"]),
            ("ge2026-04,lt2025-12-02", ["p3"]),
        ]])

    async def test_appointment_start(
        self, client: httpx.AsyncClient, dated: dict[str, str]
    ) -> None:
        await check(client, "Appointment", dated, [
            ({"date": value}, expected) for value, expected in [
                ("2027-01-12", ["a1"]),
                ("2027-01-13", ["a2"]),
                ("2027-01", ["a1", "a2"]),
                ("2027", ["a1", "a2", "a3"]),
                ("2027-01-12T09:30:00+01:00", ["a1"]),
                ("2027-01-12T08:30:00Z", ["a1"]),
                ("2027-01-12T09:30:00", ["a1"]),
                ("2027-01-12T09:30:01", []),
                ("2027-01-12T09:30", ["a1"]),
                ("ne2027-01-12", ["a2", "a3"]),
                ("gt2027-01-12", ["a2", "a3"]),
                ("ge2027-01-13", ["a2", "a3"]),
                ("lt2027-01-13", ["a1"]),
                ("le2027-01-12T23:30:00Z", ["a1", "a2"]),
                ("lt2027-01-12T23:30:00Z", ["a1"]),
                ("sa2027-01-12", ["a2", "a3"]),
                ("eb2027-02", ["a1", "a2"]),
                ("2027-01-12,2027-02-01", ["a1", "a3"]),
            ]
        ])

    async def test_repeated_dates_are_and(
        self, client: httpx.AsyncClient, dated: dict[str, str]
    ) -> None:
        bundle = await search(client, "Appointment", [("date", "ge2027-01-12"),
                                                      ("date", "lt2027-02")])
        assert matches(bundle) == [dated["a1"], dated["a2"]]


class TestUnknownParameters:
    async def test_are_ignored_and_reported_in_an_outcome_entry(
        self, client: httpx.AsyncClient, world: World
    ) -> None:
        bundle = await search(client, "Patient", {"foo": "bar", "name": "holm"})
        assert matches(bundle) == [world.greta]
        assert bundle["entry"][-1] == {
            "resource": {
                "resourceType": "OperationOutcome",
                "issue": [{
                    "severity": "warning",
                    "code": "not-supported",
                    "diagnostics": "Unknown search parameter 'foo' for Patient. It was ignored.",
                    "expression": ["foo"],
                }],
            },
            "search": {"mode": "outcome"},
        }

    async def test_unknown_modifier_is_reported_too(
        self, client: httpx.AsyncClient, world: World
    ) -> None:
        bundle = await search(client, "Patient", {"name:fuzzy": "holm"})
        assert sorted(matches(bundle)) == sorted([world.greta, world.sven])
        outcome = bundle["entry"][-1]
        assert outcome["search"] == {"mode": "outcome"}
        assert outcome["resource"]["issue"] == [{
            "severity": "warning",
            "code": "not-supported",
            "diagnostics": "Unsupported modifier ':fuzzy' on 'name'. It was ignored.",
            "expression": ["name:fuzzy"],
        }]

    @pytest.mark.usefixtures("world")
    async def test_strict_handling_rejects_them_with_400(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/fhir/Patient", params={"foo": "bar"},
                                    headers={"Prefer": "handling=strict"})
        assert response.status_code == 400
        assert response.json() == {
            "resourceType": "OperationOutcome",
            "issue": [{
                "severity": "error",
                "code": "not-supported",
                "diagnostics": "Unknown search parameter 'foo' for Patient.",
                "expression": ["foo"],
            }],
        }

    async def test_strict_handling_accepts_known_parameters(
        self, client: httpx.AsyncClient, world: World
    ) -> None:
        bundle = await search(client, "Patient", {"name": "holm", "_count": "5"},
                              Prefer="handling=strict")
        assert matches(bundle) == [world.greta]
        assert all(e["search"]["mode"] == "match" for e in bundle["entry"])

    @pytest.mark.usefixtures("world")
    async def test_lenient_handling_said_out_loud_is_the_default(
        self, client: httpx.AsyncClient
    ) -> None:
        bundle = await search(client, "Patient", {"foo": "bar"}, Prefer="handling=lenient")
        assert bundle["entry"][-1]["search"] == {"mode": "outcome"}


class TestPostSearch:
    async def test_form_body_gives_the_same_result_as_get(
        self, client: httpx.AsyncClient, world: World
    ) -> None:
        form = {"patient": world.greta, "_include": "CarePlan:care-team", "status": "active"}
        got = await search(client, "CarePlan", form)
        response = await client.post(
            "/fhir/CarePlan/_search", data=form,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 200, response.text
        posted = response.json()
        assert matches(posted) == matches(got) == [world.plan]
        assert included(posted) == included(got) == [f"CareTeam/{world.team}"]
        assert posted["link"] == got["link"]

    async def test_query_string_and_form_body_combine_as_and(
        self, client: httpx.AsyncClient, world: World
    ) -> None:
        response = await client.post(
            "/fhir/CarePlan/_search?status=draft", data={"patient": world.sven},
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert matches(response.json()) == [world.draft_plan]
        response = await client.post(
            "/fhir/CarePlan/_search?status=draft", data={"patient": world.greta},
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert matches(response.json()) == []

    @pytest.mark.usefixtures("world")
    async def test_json_body_is_415(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/fhir/CarePlan/_search", json={"status": "active"})
        assert response.status_code == 415
        assert response.json() == {
            "resourceType": "OperationOutcome",
            "issue": [{
                "severity": "error",
                "code": "not-supported",
                "diagnostics": "POST _search takes application/x-www-form-urlencoded.",
            }],
        }


class TestFreshness:
    async def test_search_sees_each_write_as_soon_as_it_commits(
        self, client: httpx.AsyncClient
    ) -> None:
        patient = (await create(client, make_patient()))["id"]
        assert matches(await search(client, "CarePlan", {"patient": patient})) == []
        plan = await create(client, make_careplan(patient_id=patient, status="draft"))
        assert matches(await search(client, "CarePlan", {"status": "draft"})) == [plan["id"]]
        await client.put(f"/fhir/CarePlan/{plan['id']}", json={**plan, "status": "active"})
        assert matches(await search(client, "CarePlan", {"status": "draft"})) == []
        assert matches(await search(client, "CarePlan", {"status": "active"})) == [plan["id"]]
        patch = [{"op": "replace", "path": "/status", "value": "completed"}]
        await client.patch(f"/fhir/CarePlan/{plan['id']}", json=patch,
                           headers={"Content-Type": "application/json-patch+json"})
        assert matches(await search(client, "CarePlan", {"status": "completed"})) == [plan["id"]]
        await client.delete(f"/fhir/CarePlan/{plan['id']}")
        assert matches(await search(client, "CarePlan", {"patient": patient})) == []
        assert (await search(client, "CarePlan", {"_summary": "count"}))["total"] == 0

    async def test_an_update_replaces_the_old_index_values(
        self, client: httpx.AsyncClient
    ) -> None:
        rid = (await create(client, make_patient(family="Holm")))["id"]
        await client.put(f"/fhir/Patient/{rid}", json=make_patient(id=rid, family="Lund"))
        assert matches(await search(client, "Patient", {"family": "holm"})) == []
        assert matches(await search(client, "Patient", {"family": "lund"})) == [rid]
