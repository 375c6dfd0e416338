"""The patient as co-creator: own goals, own activities, messages; never what care wrote."""

from __future__ import annotations

import json
from typing import Any

import httpx
import orjson

from support.patient_view import agreement_of, import_examples, ok, put

EXT_PATIENT_AUTHORED = "https://samplan.se/fhir/StructureDefinition/patient-authored"
CARE_REFUSAL = (
    "What care is responsible for is changed by care, in the journal; you can add your own "
    "goals, your own activities and a message to your care team."
)


def parameters(**values: str) -> bytes:
    return orjson.dumps({
        "resourceType": "Parameters",
        "parameter": [{"name": k, "valueString": v} for k, v in values.items()],
    })


async def operation(
    client: httpx.AsyncClient, patient_id: str, name: str, **values: str
) -> httpx.Response:
    return await client.post(f"/fhir/Patient/{patient_id}/${name}", content=parameters(**values))


async def export(client: httpx.AsyncClient, careplan_id: str, fmt: str = "text/plain") -> str:
    response = await client.get(f"/fhir/CarePlan/{careplan_id}/$export-note",
                                params={"_format": fmt})
    assert response.status_code == 200, response.text
    return response.text


class TestOwnGoals:
    async def test_a_goal_is_expressed_by_the_patient_and_linked_from_the_agreement(
        self, client: httpx.AsyncClient
    ) -> None:
        patient_id = (await import_examples(client))["region"]
        response = await operation(client, patient_id, "add-goal",
                                   text="Kunna gå till affären själv i vår.")
        assert response.status_code == 201, response.text
        goal = response.json()
        assert response.headers["Location"].endswith(f"/Goal/{goal['id']}/_history/1")
        assert goal["expressedBy"] == {"reference": f"Patient/{patient_id}"}
        assert goal["subject"] == {"reference": f"Patient/{patient_id}"}
        assert goal["description"] == {"text": "Kunna gå till affären själv i vår."}
        assert {"url": EXT_PATIENT_AUTHORED, "valueBoolean": True} in goal["extension"]
        plan = await agreement_of(client, patient_id)
        assert {"reference": f"Goal/{goal['id']}"} in plan["goal"]
        assert plan["meta"]["versionId"] == "2"

    async def test_a_patient_goal_round_trips_into_the_export_note(
        self, client: httpx.AsyncClient
    ) -> None:
        patient_id = (await import_examples(client))["region"]
        ok(await operation(client, patient_id, "add-goal",
                           text="Kunna gå till affären själv i vår."))
        plan = await agreement_of(client, patient_id)

        text = await export(client, plan["id"])
        lines = text.splitlines()
        index = lines.index("Mål (patientens tillägg)")
        assert lines[index + 1] == "Kunna gå till affären själv i vår."

        note = json.loads(await export(client, plan["id"], "application/json"))
        section = note["keywords"][0]
        found = [n for n in _walk(section) if n.get("text") == "Kunna gå till affären själv i vår."]
        assert found == [{"keyword": "Mål", "text": "Kunna gå till affären själv i vår.",
                          "patientAuthored": True}]

        # the journal signs a new note from the export: the goal stays the patient's own
        note["noteId"] = "cosmic-note-100232"
        ok(await client.post("/fhir/CarePlan/$import-note", content=json.dumps(note),
                             headers={"Content-Type": "application/json"}))
        again = (await export(client, plan["id"])).splitlines()
        assert again[again.index("Mål (patientens tillägg)") + 1] == (
            "Kunna gå till affären själv i vår.")

    async def test_the_patient_withdraws_their_own_goal_but_not_one_care_set(
        self, client: httpx.AsyncClient
    ) -> None:
        patient_id = (await import_examples(client))["region"]
        own = ok(await operation(client, patient_id, "add-goal", text="Orka gå i trappan."))
        care_goal = ok(await client.post("/fhir/Goal", content=orjson.dumps({
            "resourceType": "Goal", "lifecycleStatus": "active",
            "description": {"text": "Vikten ska vara stabil."},
            "subject": {"reference": f"Patient/{patient_id}"},
        })))

        refused = await operation(client, patient_id, "withdraw", item=f"Goal/{care_goal['id']}")
        assert refused.status_code == 403
        assert refused.json() == {"resourceType": "OperationOutcome", "issue": [{
            "severity": "error", "code": "forbidden",
            "diagnostics": f"This goal was set by care. {CARE_REFUSAL}",
            "expression": ["Goal.expressedBy"],
        }]}

        withdrawn = await operation(client, patient_id, "withdraw", item=f"Goal/{own['id']}")
        assert withdrawn.status_code == 200, withdrawn.text
        assert withdrawn.json()["lifecycleStatus"] == "cancelled"
        plan = await agreement_of(client, patient_id)
        assert {"reference": f"Goal/{own['id']}"} not in plan.get("goal", [])


def _walk(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = [node]
    for child in node.get("children", []):
        found += _walk(child)
    return found


class TestOwnActivities:
    async def test_an_activity_is_marked_patient_authored_with_the_patient_as_performer(
        self, client: httpx.AsyncClient
    ) -> None:
        patient_id = (await import_examples(client))["kalmar"]
        response = await operation(client, patient_id, "add-activity",
                                   text="Gå på kören på torsdagar.")
        assert response.status_code == 200, response.text
        plan = response.json()
        assert response.headers["ETag"] == 'W/"2"'
        activity = plan["activity"][-1]
        assert activity["extension"] == [{"url": EXT_PATIENT_AUTHORED, "valueBoolean": True}]
        assert activity["id"].startswith("pa-")
        assert activity["detail"]["performer"] == [{"reference": f"Patient/{patient_id}"}]
        assert activity["detail"]["code"]["coding"][0]["code"] == "patient-responsibility"
        assert activity["detail"]["description"] == "Gå på kören på torsdagar."

        lines = (await export(client, plan["id"])).splitlines()
        index = lines.index("Patienten ansvarar för (patientens tillägg)")
        assert lines[index + 1] == "Gå på kören på torsdagar."

        page = (await client.get(f"/portal/patient/{patient_id}")).text
        assert "Gå på kören på torsdagar." in page
        assert "Du har lagt till det här" in page

    async def test_the_patient_cannot_add_to_what_care_is_responsible_for(
        self, client: httpx.AsyncClient
    ) -> None:
        patient_id = (await import_examples(client))["kalmar"]
        response = await operation(client, patient_id, "add-activity",
                                   text="Läkaren ska ringa mig varje dag.",
                                   kind="care-responsibility")
        assert response.status_code == 403
        assert response.json() == {"resourceType": "OperationOutcome", "issue": [{
            "severity": "error", "code": "forbidden",
            "diagnostics": f"'Vården ansvarar för' is care's part. {CARE_REFUSAL}",
            "expression": ["kind"],
        }]}
        plan = await agreement_of(client, patient_id)
        assert plan["meta"]["versionId"] == "1"

    async def test_the_patient_cannot_withdraw_an_activity_care_wrote(
        self, client: httpx.AsyncClient
    ) -> None:
        patient_id = (await import_examples(client))["kalmar"]
        plan = await agreement_of(client, patient_id)
        plan["activity"][2]["id"] = "care-1"  # a care activity a client can name
        await put(client, plan)
        refused = await operation(client, patient_id, "withdraw",
                                  item=f"CarePlan/{plan['id']}#care-1")
        assert refused.status_code == 403
        assert refused.json() == {"resourceType": "OperationOutcome", "issue": [{
            "severity": "error", "code": "forbidden",
            "diagnostics": f"This activity was written by care. {CARE_REFUSAL}",
            "expression": ["CarePlan.activity[2]"],
        }]}

    async def test_the_patient_withdraws_their_own_activity(
        self, client: httpx.AsyncClient
    ) -> None:
        patient_id = (await import_examples(client))["kalmar"]
        plan = ok(await operation(client, patient_id, "add-activity", text="Vila efter maten."))
        own = plan["activity"][-1]["id"]
        after = ok(await operation(client, patient_id, "withdraw",
                                   item=f"CarePlan/{plan['id']}#{own}"))
        assert all(a.get("id") != own for a in after["activity"])
        assert len(after["activity"]) == len(plan["activity"]) - 1

    async def test_without_an_agreement_an_activity_is_422(
        self, client: httpx.AsyncClient
    ) -> None:
        patient = ok(await client.post("/fhir/Patient", content=orjson.dumps({
            "resourceType": "Patient",
            "identifier": [{"system": "http://electronichealth.se/identifier/personnummer",
                            "value": "191212121212"}],
        })))
        response = await operation(client, patient["id"], "add-activity", text="Promenera.")
        assert response.status_code == 422
        assert response.json()["issue"][0]["expression"] == ["careplan"]

    async def test_an_empty_text_is_422(self, client: httpx.AsyncClient) -> None:
        patient_id = (await import_examples(client))["kalmar"]
        response = await operation(client, patient_id, "add-activity", text="  \n ")
        assert response.status_code == 422
        assert response.json() == {"resourceType": "OperationOutcome", "issue": [{
            "severity": "error", "code": "invalid",
            "diagnostics": "'text' is empty: write what you want to add.",
            "expression": ["text"],
        }]}


class TestMessages:
    async def test_a_question_to_the_care_team_is_a_communication_from_the_patient(
        self, client: httpx.AsyncClient
    ) -> None:
        patient_id = (await import_examples(client))["region"]
        response = await operation(client, patient_id, "add-message",
                                   text="Kan jag flytta min tid i februari?")
        assert response.status_code == 201, response.text
        message = response.json()
        plan = await agreement_of(client, patient_id)
        assert message["resourceType"] == "Communication"
        assert message["status"] == "completed"
        assert message["sender"] == {"reference": f"Patient/{patient_id}"}
        assert message["subject"] == {"reference": f"Patient/{patient_id}"}
        assert message["recipient"] == [{"reference": plan["careTeam"][0]["reference"]}]
        assert message["about"] == [{"reference": f"CarePlan/{plan['id']}"}]
        assert message["payload"] == [{"contentString": "Kan jag flytta min tid i februari?"}]
        assert plan["meta"]["versionId"] == "1"  # the agreement itself is untouched

        found = ok(await client.get("/fhir/Communication", params={"patient": patient_id}))
        assert found["total"] == 1
        page = (await client.get(f"/portal/patient/{patient_id}")).text
        assert "Kan jag flytta min tid i februari?" in page


class TestPortalForms:
    async def test_a_form_post_saves_and_redirects_back_to_the_page(
        self, client: httpx.AsyncClient
    ) -> None:
        patient_id = (await import_examples(client))["region"]
        response = await client.post(
            f"/portal/patient/{patient_id}/goal", content="text=Se+barnbarnen+i+sommar.",
            headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert response.status_code == 303
        assert response.headers["location"] == (
            f"/portal/patient/{patient_id}?sparat=mal#viktigt")
        page = await client.get(response.headers["location"])
        assert "Tack! Det som är viktigt för dig är sparat." in page.text
        assert "Se barnbarnen i sommar." in page.text

    async def test_a_refused_form_post_shows_the_page_with_the_reason(
        self, client: httpx.AsyncClient
    ) -> None:
        patient_id = (await import_examples(client))["region"]
        care_goal = ok(await client.post("/fhir/Goal", content=orjson.dumps({
            "resourceType": "Goal", "lifecycleStatus": "active",
            "description": {"text": "Vikten ska vara stabil."},
            "subject": {"reference": f"Patient/{patient_id}"},
        })))
        response = await client.post(
            f"/portal/patient/{patient_id}/withdraw", content=f"item=Goal/{care_goal['id']}",
            headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert response.status_code == 403
        assert response.headers["content-type"].startswith("text/html")
        assert "Det här kan bara vården ändra." in response.text
