"""Which changes become events for which subscription, and $status / $events (no worker needed).

Events are collected from the moment a Subscription is stored (also while it
is still ``requested``), so these tests read them back through ``$events``.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.parameters import Parameters

from factories import (
    CATEGORY_SYSTEM,
    make_appointment,
    make_care_team,
    make_careplan,
    make_goal,
    make_organization,
    make_patient,
)
from samplan.subscriptions.notifications import STATUS_PROFILE
from samplan.subscriptions.receiver import Receiver
from subscriptions.helpers import subscribe


async def create(client: httpx.AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def events(client: httpx.AsyncClient, sid: str, **params: str) -> list[tuple[str, str]]:
    """(method, url) of every event of ``sid``, in event-number order."""
    response = await client.get(f"/fhir/Subscription/{sid}/$events", params=params)
    assert response.status_code == 200, response.text
    bundle = response.json()
    return [(e["request"]["method"], e["request"]["url"]) for e in bundle["entry"][1:]]


class TestWhatBelongsToAnAgreement:
    async def test_filters_by_patient_organisation_and_category(
        self, client: httpx.AsyncClient, receiver: Receiver
    ) -> None:
        greta = await create(client, make_patient(pnr="194501011235"))
        sven = await create(client, make_patient(pnr="193803152341"))
        org = await create(client, make_organization())
        by_org = await subscribe(client, receiver,
                                 criteria=f"CarePlan?organization=Organization/{org['id']}")
        by_category = await subscribe(
            client, receiver,
            criteria=f"CarePlan?category={CATEGORY_SYSTEM}|dokumenterad-overenskommelse")
        by_other_category = await subscribe(client, receiver, criteria="category=annan-plan")
        by_both = await subscribe(
            client, receiver,
            criteria=f"CarePlan?patient=Patient/{greta['id']}&category=dokumenterad-overenskommelse")
        everything = await subscribe(client, receiver)

        team = await create(client, {**make_care_team(patient_id=greta["id"]),
                                     "managingOrganization": [{
                                         "reference": f"Organization/{org['id']}"}]})
        goal = await create(client, make_goal(patient_id=greta["id"]))
        loose_team = await create(client, make_care_team(patient_id=greta["id"]))
        plan = await create(client, make_careplan(patient_id=greta["id"], care_team_id=team["id"],
                                                  goal_id=goal["id"]))
        appointment = await create(client, make_appointment(patient_id=greta["id"],
                                                            careplan_id=plan["id"]))
        await create(client, make_appointment(patient_id=greta["id"]))  # not based on a plan
        other_plan = await create(client, make_careplan(patient_id=sven["id"]))
        goal["description"]["text"] = "Gå till affären och tillbaka"
        assert (await client.put(f"/fhir/Goal/{goal['id']}", json=goal)).status_code == 200
        loose_team["name"] = "ingen plan nämner mig"
        assert (await client.put(f"/fhir/CareTeam/{loose_team['id']}",
                                 json=loose_team)).status_code == 200

        greta_changes = [
            ("POST", "CarePlan"), ("POST", "Appointment"), ("PUT", f"Goal/{goal['id']}"),
        ]
        assert await events(client, by_org) == greta_changes
        assert await events(client, by_both) == greta_changes
        assert await events(client, by_category) == [*greta_changes[:2], ("POST", "CarePlan"),
                                                     greta_changes[2]]
        assert await events(client, by_other_category) == []
        assert await events(client, everything) == await events(client, by_category)
        assert appointment["id"] != other_plan["id"]

    async def test_a_care_team_change_reaches_the_plan_s_subscribers(
        self, client: httpx.AsyncClient, receiver: Receiver
    ) -> None:
        greta = await create(client, make_patient())
        team = await create(client, make_care_team(patient_id=greta["id"]))
        await create(client, make_careplan(patient_id=greta["id"], care_team_id=team["id"]))
        sid = await subscribe(client, receiver, criteria=f"patient=Patient/{greta['id']}")
        team["status"] = "inactive"
        assert (await client.put(f"/fhir/CareTeam/{team['id']}", json=team)).status_code == 200
        assert (await client.delete(f"/fhir/CareTeam/{team['id']}")).status_code == 204
        assert await events(client, sid) == [("PUT", f"CareTeam/{team['id']}"),
                                             ("DELETE", f"CareTeam/{team['id']}")]

    async def test_an_off_subscription_collects_nothing(
        self, client: httpx.AsyncClient, receiver: Receiver
    ) -> None:
        greta = await create(client, make_patient())
        sid = await subscribe(client, receiver)
        current = (await client.get(f"/fhir/Subscription/{sid}")).json()
        current["status"] = "off"
        assert (await client.put(f"/fhir/Subscription/{sid}", json=current)).status_code == 200
        await create(client, make_careplan(patient_id=greta["id"]))
        assert await events(client, sid) == []


class TestEventsOperation:
    async def test_a_range_of_events_as_a_valid_notification_bundle(
        self, client: httpx.AsyncClient, receiver: Receiver
    ) -> None:
        greta = await create(client, make_patient())
        sid = await subscribe(client, receiver, content="full-resource")
        plan = await create(client, make_careplan(patient_id=greta["id"]))
        for i in range(4):
            plan["description"] = f"ändring {i}"
            plan = (await client.put(f"/fhir/CarePlan/{plan['id']}", json=plan)).json()
        response = await client.get(f"/fhir/Subscription/{sid}/$events",
                                    params={"eventsSinceNumber": "2", "eventsUntilNumber": "4"})
        bundle = response.json()
        Bundle.model_validate(bundle)
        assert bundle["type"] == "history"
        status = bundle["entry"][0]["resource"]
        Parameters.model_validate(status)
        assert status["meta"]["profile"] == [STATUS_PROFILE]
        by_name = {p["name"]: p for p in status["parameter"]}
        assert by_name["type"] == {"name": "type", "valueCode": "query-event"}
        assert by_name["events-since-subscription-start"]["valueString"] == "5"
        numbers = [p["part"][0]["valueString"] for p in status["parameter"]
                   if p["name"] == "notification-event"]
        assert numbers == ["2", "3", "4"]
        assert [e["resource"]["meta"]["versionId"] for e in bundle["entry"][1:]] == ["2", "3", "4"]

    async def test_content_can_be_asked_for_per_call(
        self, client: httpx.AsyncClient, receiver: Receiver
    ) -> None:
        greta = await create(client, make_patient())
        sid = await subscribe(client, receiver, content="full-resource")
        await create(client, make_careplan(patient_id=greta["id"]))
        empty = (await client.get(f"/fhir/Subscription/{sid}/$events",
                                  params={"content": "empty"})).json()
        assert len(empty["entry"]) == 1
        part_names = [part["name"] for p in empty["entry"][0]["resource"]["parameter"]
                      if p["name"] == "notification-event" for part in p["part"]]
        assert part_names == ["event-number", "timestamp"]
        posted = await client.post(f"/fhir/Subscription/{sid}/$events", json={
            "resourceType": "Parameters",
            "parameter": [{"name": "content", "valueCode": "id-only"}]})
        entry = posted.json()["entry"][1]
        assert "resource" not in entry

    @pytest.mark.parametrize(("params", "status"), [
        ({"eventsSinceNumber": "abc"}, 400),
        ({"content": "everything"}, 400),
    ])
    async def test_bad_parameters_are_400(
        self, client: httpx.AsyncClient, receiver: Receiver, params: dict[str, str], status: int
    ) -> None:
        sid = await subscribe(client, receiver)
        response = await client.get(f"/fhir/Subscription/{sid}/$events", params=params)
        assert response.status_code == status
        assert response.json()["resourceType"] == "OperationOutcome"

    async def test_unknown_and_deleted_subscriptions(
        self, client: httpx.AsyncClient, receiver: Receiver
    ) -> None:
        assert (await client.get("/fhir/Subscription/nope/$events")).status_code == 404
        sid = await subscribe(client, receiver)
        assert (await client.delete(f"/fhir/Subscription/{sid}")).status_code == 204
        assert (await client.get(f"/fhir/Subscription/{sid}/$events")).status_code == 410
        assert (await client.get(f"/fhir/Subscription/{sid}/$status")).status_code == 410


class TestStatusOperation:
    async def test_type_level_status_filters_by_id_and_status(
        self, client: httpx.AsyncClient, receiver: Receiver
    ) -> None:
        first = await subscribe(client, receiver)
        second = await subscribe(client, receiver)
        current = (await client.get(f"/fhir/Subscription/{second}")).json()
        current["status"] = "off"
        await client.put(f"/fhir/Subscription/{second}", json=current)

        everything = (await client.get("/fhir/Subscription/$status")).json()
        assert everything["type"] == "searchset"
        assert everything["total"] == 2
        requested = (await client.get("/fhir/Subscription/$status",
                                      params={"status": "requested"})).json()
        assert [e["fullUrl"].rsplit("/", 1)[-1] for e in requested["entry"]] == [first]
        one = (await client.post("/fhir/Subscription/$status", json={
            "resourceType": "Parameters", "parameter": [{"name": "id", "valueId": second}]}))
        params = one.json()["entry"][0]["resource"]["parameter"]
        assert {p["name"]: p.get("valueCode") for p in params}["status"] == "off"
        bad = await client.get("/fhir/Subscription/$status", params={"status": "broken"})
        assert bad.status_code == 400
