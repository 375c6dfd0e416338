"""Transaction and batch Bundles posted to the base (https://hl7.org/fhir/R4/http.html#transaction).

A transaction is all or nothing, rewrites ``urn:uuid:`` references and
resolves conditional ones; a batch runs each entry on its own.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import orjson
import pytest

from factories import (
    PNR_SYSTEM,
    make_appointment,
    make_bundle,
    make_care_team,
    make_careplan,
    make_entry,
    make_goal,
    make_patient,
)
from samplan.api.deps import Services
from samplan.fhir.stored import WriteConflict
from samplan.store.repository import WriteTx

BASE = "http://samplan.test/fhir"
GRETA_CRITERIA = f"identifier={PNR_SYSTEM}|194501011235"
HOLM_CRITERIA = "family=Holm"  # two Patients may share a name (never a personnummer)
CLINICAL = frozenset({"Patient", "CarePlan", "CareTeam", "Appointment", "Goal", "Practitioner"})


async def post_bundle(
    client: httpx.AsyncClient, bundle: dict[str, Any], **headers: str
) -> httpx.Response:
    return await client.post("/fhir", json=bundle, headers=headers)


async def create(client: httpx.AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def read(client: httpx.AsyncClient, reference: str) -> dict[str, Any]:
    response = await client.get(f"/fhir/{reference}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def versions(client: httpx.AsyncClient) -> list[str]:
    """Every version of a clinical resource on the server, to show what was written."""
    response = await client.get("/fhir/_history", params={"_count": "1000"})
    return [e["response"]["etag"] + e["fullUrl"] for e in response.json().get("entry", [])
            if e["fullUrl"].split("/")[-2] in CLINICAL]


def id_of(entry: dict[str, Any]) -> str:
    """The id in a response entry's location (``Type/id/_history/n``)."""
    return str(entry["response"]["location"].split("/")[1])


def plan_bundle(subject: str) -> dict[str, Any]:
    """A transaction: a patient, then a care team, a goal, a plan using all three and an
    appointment based on the plan, all for ``subject`` (e.g. ``urn:uuid:patient``)."""
    return make_bundle("transaction", *_linked(subject))


def _linked(subject: str) -> list[dict[str, Any]]:
    team = make_care_team(patient_id="x")
    team["subject"] = {"reference": subject}
    goal = make_goal(patient_id="x")
    goal["subject"] = {"reference": subject}
    plan = make_careplan(patient_id="x")
    plan["subject"] = {"reference": subject}
    plan["careTeam"] = [{"reference": "urn:uuid:team"}]
    plan["goal"] = [{"reference": "urn:uuid:goal"}]
    appointment = make_appointment(patient_id="x")
    appointment["participant"][0]["actor"] = {"reference": subject, "display": "Greta"}
    appointment["basedOn"] = [{"reference": "urn:uuid:plan"}]
    return [
        make_entry("POST", "Patient", make_patient(pnr="194501011235"),
                   full_url="urn:uuid:patient"),
        make_entry("POST", "CareTeam", team, full_url="urn:uuid:team"),
        make_entry("POST", "Goal", goal, full_url="urn:uuid:goal"),
        make_entry("POST", "CarePlan", plan, full_url="urn:uuid:plan"),
        make_entry("POST", "Appointment", appointment, full_url="urn:uuid:appointment"),
    ]


class TestUrnUuidReferences:
    async def test_references_across_entries_point_at_the_new_ids(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await post_bundle(client, plan_bundle("urn:uuid:patient"))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["resourceType"] == "Bundle"
        assert body["type"] == "transaction-response"
        patient, team, goal, plan, appointment = (id_of(e) for e in body["entry"])
        care_team = await read(client, f"CareTeam/{team}")
        care_plan = await read(client, f"CarePlan/{plan}")
        booked = await read(client, f"Appointment/{appointment}")
        assert care_team["subject"] == {"reference": f"Patient/{patient}"}
        assert (await read(client, f"Goal/{goal}"))["subject"] == {
            "reference": f"Patient/{patient}"}
        assert care_plan["subject"] == {"reference": f"Patient/{patient}"}
        assert care_plan["careTeam"] == [{"reference": f"CareTeam/{team}"}]
        assert care_plan["goal"] == [{"reference": f"Goal/{goal}"}]
        assert booked["basedOn"] == [{"reference": f"CarePlan/{plan}"}]
        assert booked["participant"][0]["actor"] == {"reference": f"Patient/{patient}",
                                                     "display": "Greta"}

    async def test_rewritten_references_are_searchable(self, client: httpx.AsyncClient) -> None:
        body = (await post_bundle(client, plan_bundle("urn:uuid:patient"))).json()
        patient, team, _, plan, appointment = (id_of(e) for e in body["entry"])
        found = (await client.get("/fhir/CarePlan", params={
            "patient": patient, "care-team": team, "_revinclude": "Appointment:based-on"})).json()
        assert [e["resource"]["id"] for e in found["entry"]] == [plan, appointment]
        based_on = (await client.get("/fhir/Appointment",
                                     params={"based-on": f"CarePlan/{plan}"})).json()
        assert [e["resource"]["id"] for e in based_on["entry"]] == [appointment]

    async def test_a_reference_to_no_entry_fails_the_whole_transaction(
        self, client: httpx.AsyncClient
    ) -> None:
        bundle = plan_bundle("urn:uuid:patient")
        bundle["entry"][3]["resource"]["goal"] = [{"reference": "urn:uuid:missing"}]
        response = await post_bundle(client, bundle)
        assert response.status_code == 400
        assert response.json() == {
            "resourceType": "OperationOutcome",
            "issue": [{
                "severity": "error",
                "code": "invalid",
                "diagnostics": "Bundle.entry[3]: The reference 'urn:uuid:missing' names no "
                               "entry of this transaction.",
                "expression": ["Bundle.entry[3].resource.goal[0].reference"],
            }],
        }
        assert await versions(client) == []

    async def test_a_put_entry_full_url_maps_to_its_id(self, client: httpx.AsyncClient) -> None:
        plan = make_careplan(patient_id="x")
        plan["subject"] = {"reference": "urn:uuid:greta"}
        bundle = make_bundle(
            "transaction",
            make_entry("POST", "CarePlan", plan),
            make_entry("PUT", "Patient/greta", make_patient(id="greta"), full_url="urn:uuid:greta"),
        )
        response = await post_bundle(client, bundle)
        assert response.status_code == 200, response.text
        assert [e["response"]["status"] for e in response.json()["entry"]] == [
            "201 Created", "201 Created"]
        plan_id = id_of(response.json()["entry"][0])
        assert (await read(client, f"CarePlan/{plan_id}"))["subject"] == {
            "reference": "Patient/greta"}

    async def test_two_entries_with_the_same_full_url_are_400(
        self, client: httpx.AsyncClient
    ) -> None:
        bundle = make_bundle(
            "transaction",
            make_entry("POST", "Patient", make_patient(pnr="194501011235"),
                       full_url="urn:uuid:same"),
            make_entry("POST", "Patient", make_patient(pnr="193803152341"),
                       full_url="urn:uuid:same"),
        )
        response = await post_bundle(client, bundle)
        assert response.status_code == 400
        assert response.json()["issue"][0]["expression"] == ["Bundle.entry.fullUrl"]
        assert await versions(client) == []


class TestConditionalReferences:
    async def test_a_conditional_reference_resolves_to_the_one_match(
        self, client: httpx.AsyncClient
    ) -> None:
        greta = (await create(client, make_patient(pnr="194501011235")))["id"]
        await create(client, make_patient(pnr="193803152341", family="Lund"))
        plan = make_careplan(patient_id="x")
        plan["subject"] = {"reference": f"Patient?{GRETA_CRITERIA}"}
        response = await post_bundle(client, make_bundle(
            "transaction", make_entry("POST", "CarePlan", plan)))
        assert response.status_code == 200, response.text
        stored = await read(client, f"CarePlan/{id_of(response.json()['entry'][0])}")
        assert stored["subject"] == {"reference": f"Patient/{greta}"}

    async def test_a_conditional_reference_may_use_the_oid_and_written_form(
        self, client: httpx.AsyncClient
    ) -> None:
        greta = (await create(client, make_patient(pnr="194501011235")))["id"]
        goal = make_goal(patient_id="x")
        goal["subject"] = {"reference": "Patient?identifier=urn:oid:1.2.752.129.2.1.3.1|"
                                        "450101-1235"}
        response = await post_bundle(client, make_bundle(
            "transaction", make_entry("POST", "Goal", goal)))
        assert response.status_code == 200, response.text
        stored = await read(client, f"Goal/{id_of(response.json()['entry'][0])}")
        assert stored["subject"] == {"reference": f"Patient/{greta}"}

    async def test_a_conditional_reference_matching_nothing_fails_with_412(
        self, client: httpx.AsyncClient
    ) -> None:
        await create(client, make_patient(pnr="193803152341"))
        before = await versions(client)
        response = await post_bundle(client, plan_bundle(f"Patient?{GRETA_CRITERIA}"))
        assert response.status_code == 412
        assert response.json() == {
            "resourceType": "OperationOutcome",
            "issue": [{
                "severity": "error",
                "code": "conflict",
                "diagnostics": f"Bundle.entry[1]: The conditional reference "
                               f"'Patient?{GRETA_CRITERIA}' matches nothing.",
                "expression": ["Bundle.entry[1].resource.subject.reference"],
            }],
        }
        assert await versions(client) == before

    async def test_a_conditional_reference_matching_two_fails_with_412(
        self, client: httpx.AsyncClient
    ) -> None:
        await create(client, make_patient(pnr="194501011235"))
        await create(client, make_patient(family="Holm-Dubblett"))
        before = await versions(client)
        plan = make_careplan(patient_id="x")
        plan["subject"] = {"reference": f"Patient?{HOLM_CRITERIA}"}
        response = await post_bundle(client, make_bundle(
            "transaction",
            make_entry("POST", "Goal", make_goal(patient_id="x")),
            make_entry("POST", "CarePlan", plan),
        ))
        assert response.status_code == 412
        assert response.json() == {
            "resourceType": "OperationOutcome",
            "issue": [{
                "severity": "error",
                "code": "conflict",
                "diagnostics": f"Bundle.entry[1]: reference 'Patient?{HOLM_CRITERIA}' matches "
                               "more than one Patient.",
                "expression": ["Bundle.entry[1].resource.subject.reference"],
            }],
        }
        assert await versions(client) == before


class TestIfNoneExist:
    async def test_a_match_is_returned_with_200_and_references_point_at_it(
        self, client: httpx.AsyncClient
    ) -> None:
        existing = await create(client, make_patient(pnr="194501011235"))
        bundle = plan_bundle("urn:uuid:patient")
        bundle["entry"][0]["request"]["ifNoneExist"] = GRETA_CRITERIA
        response = await post_bundle(client, bundle)
        assert response.status_code == 200, response.text
        first = response.json()["entry"][0]
        assert first["response"]["status"] == "200 OK"
        assert first["response"]["location"] == f"Patient/{existing['id']}/_history/1"
        assert first["response"]["etag"] == 'W/"1"'
        assert first["fullUrl"] == f"{BASE}/Patient/{existing['id']}"
        plan = await read(client, f"CarePlan/{id_of(response.json()['entry'][3])}")
        assert plan["subject"] == {"reference": f"Patient/{existing['id']}"}
        patients = (await client.get("/fhir/Patient", params={"_summary": "count"})).json()
        assert patients["total"] == 1
        assert (await read(client, f"Patient/{existing['id']}"))["meta"]["versionId"] == "1"

    async def test_no_match_creates(self, client: httpx.AsyncClient) -> None:
        await create(client, make_patient(pnr="193803152341"))
        bundle = make_bundle("transaction", make_entry(
            "POST", "Patient", make_patient(pnr="194501011235"), if_none_exist=GRETA_CRITERIA))
        response = await post_bundle(client, bundle)
        assert response.json()["entry"][0]["response"]["status"] == "201 Created"
        patients = (await client.get("/fhir/Patient", params={"_summary": "count"})).json()
        assert patients["total"] == 2

    async def test_if_none_exist_matching_two_fails_the_transaction(
        self, client: httpx.AsyncClient
    ) -> None:
        await create(client, make_patient(pnr="194501011235"))
        await create(client, make_patient(family="Holm-Dubblett"))
        before = await versions(client)
        bundle = make_bundle(
            "transaction",
            make_entry("POST", "Goal", make_goal(patient_id="x")),
            make_entry("POST", "Patient", make_patient(), if_none_exist=HOLM_CRITERIA),
        )
        response = await post_bundle(client, bundle)
        assert response.status_code == 412
        assert response.json()["issue"][0]["expression"] == [
            "Bundle.entry[1].request.ifNoneExist"]
        assert await versions(client) == before


class TestConditionalCreateInTheUrl:
    """``POST Patient?identifier=...`` in an entry is a conditional create, as on the REST
    API (issue 14): fhirpy and others send their get-or-create that way."""

    @pytest.mark.parametrize("kind", ["transaction", "batch"])
    async def test_the_criteria_in_the_url_find_the_existing_patient(
        self, client: httpx.AsyncClient, kind: str
    ) -> None:
        existing = await create(client, make_patient(pnr="194501011235"))
        bundle = make_bundle(kind, make_entry(
            "POST", f"Patient?{GRETA_CRITERIA}", make_patient(pnr="194501011235")))
        response = await post_bundle(client, bundle)
        assert response.status_code == 200, response.text
        entry = response.json()["entry"][0]
        assert entry["response"]["status"] == "200 OK"
        assert entry["response"]["location"].startswith(f"Patient/{existing['id']}/")
        patients = (await client.get("/fhir/Patient", params={"_summary": "count"})).json()
        assert patients["total"] == 1

    async def test_criteria_in_the_url_and_a_different_if_none_exist_are_400(
        self, client: httpx.AsyncClient
    ) -> None:
        before = await versions(client)
        bundle = make_bundle("transaction", make_entry(
            "POST", f"Patient?{GRETA_CRITERIA}", make_patient(pnr="194501011235"),
            if_none_exist="identifier=urn:other|1"))
        response = await post_bundle(client, bundle)
        assert response.status_code == 400
        assert response.json()["issue"][0]["expression"] == ["Bundle.entry[0].request.url"]
        assert await versions(client) == before


class TestAtomicity:
    async def test_an_invalid_last_entry_creates_nothing(self, client: httpx.AsyncClient) -> None:
        bundle = plan_bundle("urn:uuid:patient")
        bundle["entry"][4]["resource"]["status"] = "bogus"
        response = await post_bundle(client, bundle)
        assert response.status_code == 422
        assert response.json() == {
            "resourceType": "OperationOutcome",
            "issue": [{
                "severity": "error",
                "code": "code-invalid",
                "diagnostics": "Bundle.entry[4]: 'bogus' is not one of proposed, pending, "
                               "booked, arrived, fulfilled, cancelled, noshow, entered-in-error, "
                               "checked-in, waitlist.",
                "expression": ["Bundle.entry[4].resource.status"],
            }],
        }
        assert await versions(client) == []

    async def test_a_stale_if_match_in_the_last_entry_rolls_back_the_earlier_ones(
        self, client: httpx.AsyncClient
    ) -> None:
        greta = await create(client, make_patient(pnr="194501011235"))
        await client.put(f"/fhir/Patient/{greta['id']}",
                         json=make_patient(id=greta["id"], family="Två"))
        before = await versions(client)
        bundle = plan_bundle(f"Patient/{greta['id']}")
        bundle["entry"] = bundle["entry"][1:] + [make_entry(
            "PUT", f"Patient/{greta['id']}", make_patient(id=greta["id"], family="Tre"),
            if_match='W/"1"')]
        response = await post_bundle(client, bundle)
        assert response.status_code == 412, response.text
        assert response.json() == {
            "resourceType": "OperationOutcome",
            "issue": [{
                "severity": "error",
                "code": "conflict",
                "diagnostics": f"Bundle.entry[4]: If-Match W/\"1\" does not match the current "
                               f"version W/\"2\" of Patient/{greta['id']}; read it again and "
                               "retry.",
                "expression": ["Bundle.entry[4].request.ifMatch"],
            }],
        }
        assert await versions(client) == before
        assert (await read(client, f"Patient/{greta['id']}"))["name"][0]["family"] == "Två"
        for kind in ("CarePlan", "CareTeam", "Goal", "Appointment"):
            count = (await client.get(f"/fhir/{kind}", params={"_summary": "count"})).json()
            assert count["total"] == 0, kind

    async def test_a_failing_entry_undoes_an_earlier_delete_and_update(
        self, client: httpx.AsyncClient
    ) -> None:
        greta = await create(client, make_patient(pnr="194501011235"))
        goal = await create(client, make_goal(patient_id=greta["id"]))
        before = await versions(client)
        bundle = make_bundle(
            "transaction",
            make_entry("DELETE", f"Goal/{goal['id']}"),
            make_entry("PUT", f"Patient/{greta['id']}", make_patient(id=greta["id"],
                                                                      family="Ny")),
            make_entry("PATCH", f"Patient/{greta['id']}", _binary_patch(
                [{"op": "test", "path": "/name/0/family", "value": "Fel"}])),
        )
        response = await post_bundle(client, bundle)
        assert response.status_code == 422
        assert response.json()["issue"][0]["diagnostics"].startswith("Bundle.entry[2]: ")
        assert await versions(client) == before
        assert (await read(client, f"Goal/{goal['id']}"))["meta"]["versionId"] == "1"

    async def test_a_retried_transaction_keeps_its_references_consistent(
        self, client: httpx.AsyncClient, services: Services
    ) -> None:
        attempts = 0

        async def conflict_once(_tx: WriteTx) -> None:
            nonlocal attempts
            attempts += 1
            if attempts == 1:
                raise WriteConflict("a concurrent writer won (simulated)")

        services.gate.service.repo.before_commit.append(conflict_once)
        try:
            response = await post_bundle(client, plan_bundle("urn:uuid:patient"))
        finally:
            services.gate.service.repo.before_commit.remove(conflict_once)
        assert attempts == 2
        assert response.status_code == 200, response.text
        patient, team, goal, plan, _ = (id_of(e) for e in response.json()["entry"])
        stored = await read(client, f"CarePlan/{plan}")
        assert stored["subject"] == {"reference": f"Patient/{patient}"}
        assert stored["careTeam"] == [{"reference": f"CareTeam/{team}"}]
        assert stored["goal"] == [{"reference": f"Goal/{goal}"}]
        assert len(await versions(client)) == 5


def _binary_patch(operations: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Binary", "contentType": "application/json-patch+json",
            "data": base64.b64encode(orjson.dumps(operations)).decode()}


class TestTransactionResponse:
    async def test_entries_answer_in_request_order_with_status_location_and_etag(
        self, client: httpx.AsyncClient
    ) -> None:
        greta = await create(client, make_patient(pnr="194501011235"))
        goal = await create(client, make_goal(patient_id=greta["id"]))
        bundle = make_bundle(
            "transaction",
            make_entry("GET", f"Patient/{greta['id']}"),
            make_entry("PUT", f"Patient/{greta['id']}", make_patient(id=greta["id"],
                                                                      family="Ny")),
            make_entry("DELETE", f"Goal/{goal['id']}"),
            make_entry("POST", "CarePlan", make_careplan(patient_id=greta["id"])),
            make_entry("PATCH", f"Patient/{greta['id']}", _binary_patch(
                [{"op": "add", "path": "/gender", "value": "female"}])),
        )
        response = await post_bundle(client, bundle, Prefer="return=minimal")
        assert response.status_code == 200, response.text
        entries = response.json()["entry"]
        assert [e["response"]["status"] for e in entries] == [
            "200 OK", "200 OK", "204 No Content", "201 Created", "200 OK"]
        # spec order: DELETE, POST, PUT/PATCH, then GET, which sees the writes
        got, put, _, post, patch = entries
        assert got["resource"]["meta"]["versionId"] == "3"
        assert got["resource"]["gender"] == "female"
        assert put["response"]["location"] == f"Patient/{greta['id']}/_history/2"
        assert put["response"]["etag"] == 'W/"2"'
        assert patch["response"]["etag"] == 'W/"3"'
        plan_id = id_of(post)
        assert post["fullUrl"] == f"{BASE}/CarePlan/{plan_id}"
        assert post["response"]["location"] == f"CarePlan/{plan_id}/_history/1"
        assert post["response"]["etag"] == 'W/"1"'
        assert post["response"]["lastModified"].endswith("Z")
        assert "resource" not in post
        assert (await client.get(f"/fhir/Goal/{goal['id']}")).status_code == 410

    async def test_prefer_representation_includes_the_resources(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await post_bundle(client, plan_bundle("urn:uuid:patient"),
                                     Prefer="return=representation")
        entries = response.json()["entry"]
        for entry in entries:
            resource = entry["resource"]
            assert entry["fullUrl"] == f"{BASE}/{resource['resourceType']}/{resource['id']}"
            assert resource["meta"]["versionId"] == "1"
            assert entry["response"]["location"] == (
                f"{resource['resourceType']}/{resource['id']}/_history/1")
        assert [e["resource"]["resourceType"] for e in entries] == [
            "Patient", "CareTeam", "Goal", "CarePlan", "Appointment"]
        assert entries[3]["resource"]["subject"] == {
            "reference": f"Patient/{entries[0]['resource']['id']}"}

    async def test_prefer_minimal_leaves_the_resources_out(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await post_bundle(client, plan_bundle("urn:uuid:patient"),
                                     Prefer="return=minimal")
        assert all("resource" not in e for e in response.json()["entry"])

    async def test_get_entries_search_and_read_inside_the_transaction(
        self, client: httpx.AsyncClient
    ) -> None:
        greta = await create(client, make_patient(pnr="194501011235"))
        bundle = make_bundle(
            "transaction",
            make_entry("POST", "Goal", make_goal(patient_id=greta["id"])),
            make_entry("GET", f"Goal?patient={greta['id']}"),
            make_entry("GET", "Patient/nobody"),
        )
        response = await post_bundle(client, bundle)
        assert response.status_code == 404
        assert response.json()["issue"][0]["diagnostics"] == (
            "Bundle.entry[2]: Patient/nobody does not exist.")
        assert await versions(client) == [f'W/"1"{BASE}/Patient/{greta["id"]}']
        bundle["entry"].pop()
        response = await post_bundle(client, bundle)
        searchset = response.json()["entry"][1]["resource"]
        assert searchset["type"] == "searchset"
        assert searchset["total"] == 1
        assert searchset["entry"][0]["resource"]["id"] == id_of(response.json()["entry"][0])

    @pytest.mark.parametrize(
        ("bundle", "diagnostics", "expression"),
        [
            ({"resourceType": "Patient"}, "POST to the base takes a Bundle.",
             ["Bundle.resourceType"]),
            ({"resourceType": "Bundle", "type": "collection"},
             "Bundle.type must be batch or transaction, not 'collection'.", ["Bundle.type"]),
            ({"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": {}}]},
             "Bundle.entry[0] has no request.", ["Bundle.entry[0].request"]),
            ({"resourceType": "Bundle", "type": "transaction",
              "entry": [{"request": {"method": "TRACE", "url": "Patient"}}]},
             "Bundle.entry[0].request.method must be GET, POST, PUT, PATCH or DELETE, "
             "not 'TRACE'.", ["Bundle.entry[0].request.method"]),
            ({"resourceType": "Bundle", "type": "transaction",
              "entry": [{"request": {"method": "POST", "url": "Patient"}}]},
             "Bundle.entry[0] needs a resource for POST.", ["Bundle.entry[0].resource"]),
        ],
    )
    async def test_a_malformed_bundle_is_400(
        self, client: httpx.AsyncClient, bundle: dict[str, Any], diagnostics: str,
        expression: list[str],
    ) -> None:
        response = await post_bundle(client, bundle)
        assert response.status_code == 400
        assert response.json() == {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "invalid", "diagnostics": diagnostics,
                       "expression": expression}],
        }

    async def test_put_entry_id_differing_from_its_url_is_400(
        self, client: httpx.AsyncClient
    ) -> None:
        bundle = make_bundle(
            "transaction",
            make_entry("POST", "Goal", make_goal(patient_id="x")),
            make_entry("PUT", "Patient/greta", make_patient(id="other")),
        )
        response = await post_bundle(client, bundle)
        assert response.status_code == 400
        assert response.json()["issue"][0]["expression"] == ["Bundle.entry[1].resource.id"]
        assert await versions(client) == []


class TestBatch:
    @pytest.fixture
    async def greta(self, client: httpx.AsyncClient) -> dict[str, Any]:
        return await create(client, make_patient(pnr="194501011235"))

    async def test_entries_succeed_or_fail_on_their_own(
        self, client: httpx.AsyncClient, greta: dict[str, Any]
    ) -> None:
        bad_plan = make_careplan(patient_id=greta["id"], status="bogus")
        bundle = make_bundle(
            "batch",
            make_entry("POST", "Goal", make_goal(patient_id=greta["id"])),
            make_entry("POST", "CarePlan", bad_plan),
            make_entry("PUT", f"Patient/{greta['id']}", make_patient(id=greta["id"]),
                       if_match='W/"9"'),
            make_entry("GET", "Patient/nobody"),
            make_entry("POST", "CarePlan", make_careplan(patient_id=greta["id"])),
        )
        response = await post_bundle(client, bundle)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["type"] == "batch-response"
        entries = body["entry"]
        assert [e["response"]["status"][:3] for e in entries] == ["201", "422", "412", "404",
                                                                  "201"]
        assert entries[1]["response"]["outcome"] == {
            "resourceType": "OperationOutcome",
            "issue": [{
                "severity": "error",
                "code": "code-invalid",
                "diagnostics": "'bogus' is not one of draft, active, on-hold, revoked, "
                               "completed, entered-in-error, unknown.",
                "expression": ["CarePlan.status"],
            }],
        }
        assert entries[2]["response"]["outcome"]["issue"][0]["code"] == "conflict"
        assert entries[3]["response"]["outcome"]["issue"][0]["code"] == "not-found"
        assert (await read(client, f"Goal/{id_of(entries[0])}"))["meta"]["versionId"] == "1"
        assert (await read(client, f"CarePlan/{id_of(entries[4])}"))["status"] == "active"
        assert (await read(client, f"Patient/{greta['id']}"))["meta"]["versionId"] == "1"
        plans = (await client.get("/fhir/CarePlan", params={"_summary": "count"})).json()
        assert plans["total"] == 1

    async def test_get_entries_read_and_search(
        self, client: httpx.AsyncClient, greta: dict[str, Any]
    ) -> None:
        plan = await create(client, make_careplan(patient_id=greta["id"]))
        bundle = make_bundle(
            "batch",
            make_entry("GET", f"Patient/{greta['id']}"),
            make_entry("GET", f"CarePlan?patient={greta['id']}&_include=CarePlan:subject"),
            make_entry("GET", "Foo/1"),
        )
        entries = (await post_bundle(client, bundle)).json()["entry"]
        assert entries[0]["resource"] == greta
        assert entries[0]["response"]["etag"] == 'W/"1"'
        searchset = entries[1]["resource"]
        assert searchset["type"] == "searchset"
        assert [(e["resource"]["id"], e["search"]["mode"]) for e in searchset["entry"]] == [
            (plan["id"], "match"), (greta["id"], "include")]
        assert entries[2]["response"]["status"] == "404 Not Found"

    async def test_conditional_create_and_delete_in_a_batch(
        self, client: httpx.AsyncClient, greta: dict[str, Any]
    ) -> None:
        goal = await create(client, make_goal(patient_id=greta["id"]))
        bundle = make_bundle(
            "batch",
            make_entry("POST", "Patient", make_patient(pnr="194501011235"),
                       if_none_exist=GRETA_CRITERIA),
            make_entry("DELETE", f"Goal/{goal['id']}"),
        )
        entries = (await post_bundle(client, bundle)).json()["entry"]
        assert entries[0]["response"]["status"] == "200 OK"
        assert entries[0]["response"]["location"] == f"Patient/{greta['id']}/_history/1"
        assert entries[1]["response"]["status"] == "204 No Content"
        assert (await client.get(f"/fhir/Goal/{goal['id']}")).status_code == 410
