"""Bad input: each answered with a FHIR OperationOutcome and the right status, and nothing changes.

Where an element is at fault, ``issue.expression`` holds its FHIRPath. After
every rejected write the test reads or searches to show the store is as it was.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest

from conftest import make_settings
from factories import (
    PNR_OID_SYSTEM,
    PNR_SYSTEM,
    SAMORDNING_SYSTEM,
    make_careplan,
    make_patient,
    make_practitioner,
)
from samplan.fhir.search import encode_cursor
from samplan.main import create_app

FHIR = "application/fhir+json"
PATCH = "application/json-patch+json"


def outcome(
    code: str, diagnostics: str, expression: list[str] | None = None, severity: str = "error"
) -> dict[str, Any]:
    """A one-issue OperationOutcome as the server answers it."""
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression is not None:
        issue["expression"] = expression
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def assert_outcome(response: httpx.Response, status: int, expected: dict[str, Any]) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(FHIR)
    assert response.json() == expected


async def create(client: httpx.AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


CLINICAL = frozenset({"Patient", "CarePlan", "CareTeam", "Appointment", "Goal", "Practitioner",
                      "PractitionerRole", "Organization", "RelatedPerson"})


async def versions(client: httpx.AsyncClient) -> list[str]:
    """Every version of a clinical resource on the server, to show that nothing was written.

    (Conformance resources the app loads at startup are left out.)
    """
    response = await client.get("/fhir/_history", params={"_count": "1000"})
    assert response.status_code == 200
    return [e["response"]["etag"] + e["fullUrl"] for e in response.json().get("entry", [])
            if e["fullUrl"].split("/")[-2] in CLINICAL]


def raw_cursor(json_text: bytes) -> str:
    """A paging cursor holding any JSON (encode_cursor refuses what orjson cannot write)."""
    return base64.urlsafe_b64encode(json_text).decode().rstrip("=")


def json_error(body: bytes) -> str:
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return f"The body is not valid JSON: {exc}"
    raise AssertionError("the body is valid JSON")


class TestMalformedJson:
    @pytest.mark.parametrize("body", [b'{"resourceType": "Patient",', b"{not json}", b"\xff\xfe"])
    async def test_create_with_malformed_json_is_400_and_creates_nothing(
        self, client: httpx.AsyncClient, body: bytes
    ) -> None:
        response = await client.post("/fhir/Patient", content=body)
        assert_outcome(response, 400, outcome("invalid", json_error(body)))
        assert await versions(client) == []

    async def test_update_with_malformed_json_is_400_and_changes_nothing(
        self, client: httpx.AsyncClient
    ) -> None:
        rid = (await create(client, make_patient()))["id"]
        before = await versions(client)
        body = b'{"resourceType": "Patient", "id": "' + rid.encode() + b'",'
        response = await client.put(f"/fhir/Patient/{rid}", content=body)
        assert_outcome(response, 400, outcome("invalid", json_error(body)))
        assert await versions(client) == before

    async def test_empty_body_is_400(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/fhir/Patient", content=b"  ")
        assert_outcome(response, 400, outcome(
            "invalid", "The request body is empty; a FHIR resource was expected."))
        assert await versions(client) == []

    async def test_a_json_array_is_not_a_resource(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/fhir/Patient", json=[make_patient()])
        assert_outcome(response, 400, outcome(
            "invalid", "The body must be a JSON object holding a FHIR resource."))
        assert await versions(client) == []

    async def test_json_nested_too_deep_is_400(self, client: httpx.AsyncClient) -> None:
        patient = make_patient()
        node: dict[str, Any] = {}
        patient["extension"] = [{"url": "http://example.org/deep", "x": node}]
        for _ in range(70):
            node["x"] = {}
            node = node["x"]
        response = await client.post("/fhir/Patient", json=patient)
        assert_outcome(response, 400, outcome(
            "invalid", "The JSON is nested deeper than 64 levels."))
        assert await versions(client) == []


class TestWrongResourceType:
    async def test_create_with_another_type_than_the_url_is_400(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.post("/fhir/Patient", json=make_practitioner())
        assert_outcome(response, 400, outcome(
            "invalid", "resourceType 'Practitioner' does not match the URL's type 'Patient'.",
            ["Practitioner.resourceType"]))
        assert await versions(client) == []

    async def test_update_with_another_type_than_the_url_is_400_and_changes_nothing(
        self, client: httpx.AsyncClient
    ) -> None:
        rid = (await create(client, make_patient()))["id"]
        before = await versions(client)
        practitioner = {**make_practitioner(), "id": rid}
        response = await client.put(f"/fhir/Patient/{rid}", json=practitioner)
        assert response.status_code == 400
        assert response.json()["issue"][0]["expression"] == ["Practitioner.resourceType"]
        assert await versions(client) == before
        assert (await client.get(f"/fhir/Practitioner/{rid}")).status_code == 404

    async def test_missing_resource_type_is_400(self, client: httpx.AsyncClient) -> None:
        patient = make_patient()
        del patient["resourceType"]
        response = await client.post("/fhir/Patient", json=patient)
        assert_outcome(response, 400, outcome(
            "invalid", "The resource has no resourceType.", ["resourceType"]))
        assert await versions(client) == []


class TestIdInBodyDiffersFromUrl:
    async def test_put_with_another_id_in_the_body_is_400_and_changes_nothing(
        self, client: httpx.AsyncClient
    ) -> None:
        rid = (await create(client, make_patient()))["id"]
        before = await versions(client)
        response = await client.put(f"/fhir/Patient/{rid}",
                                    json=make_patient(id="other", family="Fel"))
        assert_outcome(response, 400, outcome(
            "invalid", f"The id in the body ('other') differs from the URL ({rid!r}).",
            ["Patient.id"]))
        assert await versions(client) == before
        assert (await client.get("/fhir/Patient/other")).status_code == 404
        assert (await client.get(f"/fhir/Patient/{rid}")).json()["name"][0]["family"] == "Holm"

    async def test_put_without_an_id_in_the_body_is_400(self, client: httpx.AsyncClient) -> None:
        response = await client.put("/fhir/Patient/greta", json=make_patient())
        assert_outcome(response, 400, outcome(
            "invalid", "The resource in a PUT must have an id.", ["Patient.id"]))
        assert await versions(client) == []


class TestInvalidId:
    @pytest.mark.parametrize("bad_id", ["has$dollar", "a" * 65, "with_underscore", "åäö"])
    async def test_put_with_an_invalid_id_is_400_and_creates_nothing(
        self, client: httpx.AsyncClient, bad_id: str
    ) -> None:
        response = await client.put(f"/fhir/Patient/{bad_id}", json=make_patient(id=bad_id))
        assert_outcome(response, 400, outcome(
            "value", "id must be 1-64 characters of A-Z, a-z, 0-9, '-' and '.'.", ["Patient.id"]))
        assert await versions(client) == []

    async def test_an_id_that_is_not_a_string_is_400(self, client: httpx.AsyncClient) -> None:
        patient = {**make_patient(), "id": 42}
        response = await client.put("/fhir/Patient/42", json=patient)
        assert response.status_code == 400
        assert response.json()["issue"][0]["expression"] == ["Patient.id"]
        assert await versions(client) == []

    async def test_reading_an_invalid_id_is_404(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/fhir/Patient/has$dollar")
        assert_outcome(response, 404, outcome(
            "not-found", "Patient/has$dollar does not exist."))


class TestUnknownElement:
    @pytest.mark.parametrize(
        ("change", "expression"),
        [
            (lambda r: r.update(foo=1), "CarePlan.foo"),
            (lambda r: r["subject"].update(foo="x"), "CarePlan.subject.foo"),
            (lambda r: r["period"].update(middle="2026-12-01"), "CarePlan.period.middle"),
            (lambda r: r["activity"][0]["detail"].update(colour="red"),
             "CarePlan.activity[0].detail.colour"),
        ],
    )
    async def test_unknown_element_is_400_with_its_path(
        self, client: httpx.AsyncClient, change: Callable[[dict[str, Any]], None],
        expression: str,
    ) -> None:
        plan = make_careplan(patient_id="p1")
        change(plan)
        response = await client.post("/fhir/CarePlan", json=plan)
        name = expression.rsplit(".", 1)[1]
        assert_outcome(response, 400, outcome(
            "structure", f"Unknown element {name!r}: R4 does not define it here.", [expression]))
        assert await versions(client) == []

    async def test_unknown_element_on_update_changes_nothing(
        self, client: httpx.AsyncClient
    ) -> None:
        rid = (await create(client, make_patient()))["id"]
        before = await versions(client)
        response = await client.put(f"/fhir/Patient/{rid}", json={**make_patient(id=rid),
                                                                   "foo": True})
        assert_outcome(response, 400, outcome(
            "structure", "Unknown element 'foo': R4 does not define it here.", ["Patient.foo"]))
        assert await versions(client) == before


class TestInvalidValue:
    @pytest.mark.parametrize(
        ("change", "code", "diagnostics", "expression"),
        [
            (lambda r: r.update(status="bogus"), "code-invalid",
             "'bogus' is not one of draft, active, on-hold, revoked, completed, "
             "entered-in-error, unknown.", "CarePlan.status"),
            (lambda r: r.update(intent="wish"), "code-invalid",
             "'wish' is not one of proposal, plan, order, option.", "CarePlan.intent"),
            (lambda r: r["period"].update(start="2026-13-01"), "value",
             "DateTime value string does not match spec regex.", "CarePlan.period.start"),
            (lambda r: r["period"].update(end="20 maj"), "value",
             "DateTime value string does not match spec regex.", "CarePlan.period.end"),
            (lambda r: r["activity"][0]["detail"].update(status="x"), "code-invalid",
             "'x' is not one of not-started, scheduled, in-progress, on-hold, completed, "
             "cancelled, stopped, unknown, entered-in-error.",
             "CarePlan.activity[0].detail.status"),
        ],
    )
    async def test_invalid_value_is_422_with_its_path(
        self, client: httpx.AsyncClient, change: Callable[[dict[str, Any]], None], code: str,
        diagnostics: str, expression: str,
    ) -> None:
        plan = make_careplan(patient_id="p1")
        change(plan)
        response = await client.post("/fhir/CarePlan", json=plan)
        assert_outcome(response, 422, outcome(code, diagnostics, [expression]))
        assert await versions(client) == []

    async def test_invalid_value_on_update_changes_nothing(
        self, client: httpx.AsyncClient
    ) -> None:
        patient = (await create(client, make_patient()))["id"]
        plan = await create(client, make_careplan(patient_id=patient))
        before = await versions(client)
        response = await client.put(f"/fhir/CarePlan/{plan['id']}",
                                    json={**plan, "status": "finished"})
        assert response.status_code == 422
        assert response.json()["issue"][0]["expression"] == ["CarePlan.status"]
        assert await versions(client) == before
        current = await client.get(f"/fhir/CarePlan/{plan['id']}")
        assert current.json()["status"] == "active"
        search = await client.get("/fhir/CarePlan", params={"status": "finished"})
        assert search.json()["total"] == 0

    async def test_wrong_json_type_is_422(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/fhir/Patient", json={**make_patient(), "name": "Greta"})
        assert_outcome(response, 422, outcome("value", "Input should be a valid list",
                                              ["Patient.name"]))
        assert await versions(client) == []


class TestMissingRequiredElement:
    @pytest.mark.parametrize(
        ("element", "diagnostics"),
        [("status", "Value for the field 'status' is required."),
         ("intent", "Value for the field 'intent' is required."),
         ("subject", "Field required")],
    )
    async def test_missing_required_element_is_422(
        self, client: httpx.AsyncClient, element: str, diagnostics: str
    ) -> None:
        plan = make_careplan(patient_id="p1")
        del plan[element]
        response = await client.post("/fhir/CarePlan", json=plan)
        assert_outcome(response, 422, outcome("required", diagnostics, [f"CarePlan.{element}"]))
        assert await versions(client) == []


class TestSwedishIdentifiers:
    @pytest.mark.parametrize(
        ("system", "value", "diagnostics"),
        [
            (PNR_SYSTEM, "194501011234",
             "personnummer check digit is 4, but the Luhn rule gives 5"),
            (PNR_OID_SYSTEM, "450101-1234",
             "personnummer check digit is 4, but the Luhn rule gives 5"),
            (PNR_SYSTEM, "19450101123", "personnummer must have 10 or 12 digits, this one has 11"),
            (PNR_SYSTEM, "194502301235", "personnummer does not contain a valid date of birth"),
            (SAMORDNING_SYSTEM, "196109732394",
             "samordningsnummer check digit is 4, but the Luhn rule gives 3"),
            (SAMORDNING_SYSTEM, "196109132393",
             "samordningsnummer does not contain a valid date of birth (a samordningsnummer "
             "has 60 added to the day of birth)"),
        ],
    )
    async def test_invalid_person_number_is_422_at_the_identifier_value(
        self, client: httpx.AsyncClient, system: str, value: str, diagnostics: str
    ) -> None:
        patient = make_patient(pnr=value)
        patient["identifier"][0]["system"] = system
        response = await client.post("/fhir/Patient", json=patient)
        assert_outcome(response, 422, outcome("value", diagnostics,
                                              ["Patient.identifier[0].value"]))
        assert await versions(client) == []

    async def test_invalid_personnummer_in_a_later_identifier_names_that_one(
        self, client: httpx.AsyncClient
    ) -> None:
        patient = make_patient()
        patient["identifier"].insert(0, {"system": "http://example.org/mrn", "value": "x1"})
        patient["identifier"][1]["value"] = "194501011234"
        response = await client.post("/fhir/Patient", json=patient)
        assert response.status_code == 422
        assert response.json()["issue"][0]["expression"] == ["Patient.identifier[1].value"]

    async def test_invalid_personnummer_on_update_changes_nothing(
        self, client: httpx.AsyncClient
    ) -> None:
        rid = (await create(client, make_patient(pnr="194501011235")))["id"]
        before = await versions(client)
        response = await client.put(f"/fhir/Patient/{rid}",
                                    json=make_patient(id=rid, pnr="194501011234"))
        assert response.status_code == 422
        assert await versions(client) == before
        current = (await client.get(f"/fhir/Patient/{rid}")).json()
        assert current["identifier"][0]["value"] == "194501011235"

    async def test_invalid_hsa_id_is_422(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/fhir/Practitioner",
                                     json=make_practitioner(hsa_id="not-an-hsa-id"))
        assert_outcome(response, 422, outcome(
            "value", "HSA-id must look like SE<organisation number>-<suffix>, e.g. "
            "SE2321000073-1001, at most 31 characters", ["Practitioner.identifier[0].value"]))
        assert await versions(client) == []


class TestUnknownResourceType:
    @pytest.mark.parametrize(
        ("method", "path"),
        [("GET", "/fhir/Foo"), ("POST", "/fhir/Foo"), ("GET", "/fhir/Foo/1"),
         ("PUT", "/fhir/Foo/1"), ("DELETE", "/fhir/Foo/1"), ("GET", "/fhir/Foo/_history"),
         ("GET", "/fhir/Foo/1/_history/1")],
    )
    async def test_unknown_type_is_404(
        self, client: httpx.AsyncClient, method: str, path: str
    ) -> None:
        body = {"resourceType": "Foo", "id": "1"}
        response = await client.request(method, path, json=body if method != "GET" else None)
        assert_outcome(response, 404, outcome(
            "not-found", "Resource type 'Foo' is not supported by this server."))
        assert await versions(client) == []

    async def test_an_unknown_path_is_404_outcome(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/fhir/Patient/1/_history/1/extra")
        assert_outcome(response, 404, outcome(
            "not-found", "Nothing is served at /fhir/Patient/1/_history/1/extra."))


class TestUnsupportedMediaType:
    @pytest.mark.parametrize("content_type", ["text/plain", "application/xml",
                                              "application/fhir+xml"])
    async def test_create_with_a_non_json_type_is_415(
        self, client: httpx.AsyncClient, content_type: str
    ) -> None:
        response = await client.post("/fhir/Patient", content=orjson.dumps(make_patient()),
                                     headers={"Content-Type": content_type})
        assert_outcome(response, 415, outcome(
            "not-supported", f"Content-Type {content_type!r} is not accepted here; use "
            "application/fhir+json or application/json."))
        assert await versions(client) == []

    async def test_update_with_xml_is_415_and_changes_nothing(
        self, client: httpx.AsyncClient
    ) -> None:
        rid = (await create(client, make_patient()))["id"]
        before = await versions(client)
        response = await client.put(f"/fhir/Patient/{rid}", content=b"<Patient/>",
                                    headers={"Content-Type": "application/xml"})
        assert response.status_code == 415
        assert response.json()["issue"][0]["code"] == "not-supported"
        assert await versions(client) == before

    async def test_create_without_a_content_type_is_415(
        self, client: httpx.AsyncClient
    ) -> None:
        request = client.build_request("POST", "/fhir/Patient",
                                       content=orjson.dumps(make_patient()))
        del request.headers["Content-Type"]
        response = await client.send(request)
        assert_outcome(response, 415, outcome(
            "not-supported", "Content-Type '(none)' is not accepted here; use "
            "application/fhir+json or application/json."))

    async def test_patch_with_plain_json_is_415_and_changes_nothing(
        self, client: httpx.AsyncClient
    ) -> None:
        rid = (await create(client, make_patient()))["id"]
        patch = [{"op": "replace", "path": "/name/0/family", "value": "Lund"}]
        response = await client.patch(f"/fhir/Patient/{rid}", json=patch,
                                      headers={"Content-Type": "application/json"})
        assert_outcome(response, 415, outcome(
            "not-supported", "Content-Type 'application/json' is not accepted here; use "
            "application/json-patch+json."))
        assert (await client.get(f"/fhir/Patient/{rid}")).json()["meta"]["versionId"] == "1"

    async def test_transaction_with_xml_is_415(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/fhir", content=b"<Bundle/>",
                                     headers={"Content-Type": "application/fhir+xml"})
        assert response.status_code == 415
        assert response.json()["resourceType"] == "OperationOutcome"

    async def test_content_type_with_charset_is_accepted(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.post(
            "/fhir/Patient", content=orjson.dumps(make_patient()),
            headers={"Content-Type": "application/fhir+json; charset=utf-8"})
        assert response.status_code == 201


class TestMissingAndDeleted:
    async def test_reading_a_missing_resource_is_404(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/fhir/Patient/nobody")
        assert_outcome(response, 404, outcome("not-found", "Patient/nobody does not exist."))

    async def test_vread_of_a_missing_version_is_404(self, client: httpx.AsyncClient) -> None:
        rid = (await create(client, make_patient()))["id"]
        for version in ("2", "x"):
            response = await client.get(f"/fhir/Patient/{rid}/_history/{version}")
            assert response.status_code == 404
            assert response.json()["issue"][0]["code"] == "not-found"

    async def test_patch_and_delete_of_a_missing_resource_are_404(
        self, client: httpx.AsyncClient
    ) -> None:
        patch = await client.patch("/fhir/Patient/nobody", json=[],
                                   headers={"Content-Type": PATCH})
        assert_outcome(patch, 404, outcome("not-found", "Patient/nobody does not exist."))
        delete = await client.delete("/fhir/Patient/nobody")
        assert_outcome(delete, 404, outcome("not-found", "Patient/nobody does not exist."))
        assert await versions(client) == []

    async def test_a_deleted_resource_is_410_with_its_etag(
        self, client: httpx.AsyncClient
    ) -> None:
        rid = (await create(client, make_patient()))["id"]
        await client.delete(f"/fhir/Patient/{rid}")
        response = await client.get(f"/fhir/Patient/{rid}")
        assert_outcome(response, 410, outcome(
            "deleted", f"Patient/{rid} was deleted (version 2)."))
        assert response.headers["ETag"] == 'W/"2"'

    async def test_patching_a_deleted_resource_is_410_and_changes_nothing(
        self, client: httpx.AsyncClient
    ) -> None:
        rid = (await create(client, make_patient()))["id"]
        await client.delete(f"/fhir/Patient/{rid}")
        before = await versions(client)
        response = await client.patch(f"/fhir/Patient/{rid}", json=[],
                                      headers={"Content-Type": PATCH})
        assert_outcome(response, 410, outcome("deleted", f"Patient/{rid} was deleted."))
        assert await versions(client) == before

    async def test_vread_of_the_deletion_is_410(self, client: httpx.AsyncClient) -> None:
        rid = (await create(client, make_patient()))["id"]
        await client.delete(f"/fhir/Patient/{rid}")
        response = await client.get(f"/fhir/Patient/{rid}/_history/2")
        assert_outcome(response, 410, outcome(
            "deleted", f"Version 2 of Patient/{rid} is a deletion."))


class TestStaleIfMatch:
    async def test_patch_with_a_stale_etag_is_412_and_changes_nothing(
        self, client: httpx.AsyncClient
    ) -> None:
        rid = (await create(client, make_patient()))["id"]
        await client.put(f"/fhir/Patient/{rid}", json=make_patient(id=rid, family="Två"))
        before = await versions(client)
        patch = [{"op": "replace", "path": "/name/0/family", "value": "Lund"}]
        response = await client.patch(f"/fhir/Patient/{rid}", json=patch,
                                      headers={"Content-Type": PATCH, "If-Match": 'W/"1"'})
        assert_outcome(response, 412, outcome(
            "conflict", f"If-Match W/\"1\" does not match the current version W/\"2\" of "
            f"Patient/{rid}; read it again and retry.", ["If-Match"]))
        assert response.headers["ETag"] == 'W/"2"'
        assert await versions(client) == before

    async def test_delete_with_a_stale_etag_is_412_and_deletes_nothing(
        self, client: httpx.AsyncClient
    ) -> None:
        rid = (await create(client, make_patient()))["id"]
        response = await client.delete(f"/fhir/Patient/{rid}", headers={"If-Match": 'W/"0"'})
        assert response.status_code == 412
        assert response.json()["issue"][0]["expression"] == ["If-Match"]
        assert (await client.get(f"/fhir/Patient/{rid}")).status_code == 200

    async def test_if_match_on_a_resource_that_does_not_exist_is_412_and_creates_nothing(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.put("/fhir/Patient/greta", json=make_patient(id="greta"),
                                    headers={"If-Match": 'W/"1"'})
        assert_outcome(response, 412, outcome(
            "conflict", "If-Match W/\"1\" given, but Patient/greta has no current version.",
            ["If-Match"]))
        assert await versions(client) == []

    async def test_an_unreadable_etag_never_matches(self, client: httpx.AsyncClient) -> None:
        rid = (await create(client, make_patient()))["id"]
        response = await client.put(f"/fhir/Patient/{rid}", json=make_patient(id=rid),
                                    headers={"If-Match": "banana"})
        assert response.status_code == 412
        assert (await client.get(f"/fhir/Patient/{rid}")).json()["meta"]["versionId"] == "1"


@pytest.fixture
async def small_client(
    database_url: str, services: object
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app that accepts bodies of at most 300 bytes (same database)."""
    del services  # empties the tables
    app = create_app(make_settings(database_url, max_body_bytes=300))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://samplan.test",
                                     headers={"Content-Type": FHIR}) as c:
            yield c


class TestBodyTooLarge:
    async def test_body_over_the_default_1_mib_is_413_and_creates_nothing(
        self, client: httpx.AsyncClient
    ) -> None:
        patient = make_patient()
        patient["text"] = {"status": "generated",
                           "div": f"<div xmlns=\"http://www.w3.org/1999/xhtml\">{'x' * 1_100_000}"
                                  "</div>"}
        response = await client.post("/fhir/Patient", json=patient)
        assert_outcome(response, 413, outcome(
            "too-costly", "The body is larger than the limit of 1048576 bytes."))
        assert await versions(client) == []

    async def test_a_configured_limit_applies_to_create_update_and_bundles(
        self, small_client: httpx.AsyncClient
    ) -> None:
        small = {"resourceType": "Patient", "id": "p1"}
        assert (await small_client.put("/fhir/Patient/p1", json=small)).status_code == 201
        big = make_patient(id="p1", family="x" * 300)
        expected = outcome("too-costly", "The body is larger than the limit of 300 bytes.")
        for method, path in (("POST", "/fhir/Patient"), ("PUT", "/fhir/Patient/p1"),
                             ("POST", "/fhir")):
            response = await small_client.request(method, path, json=big)
            assert_outcome(response, 413, expected)
        form = {"name": "x" * 400}
        search = await small_client.post(
            "/fhir/Patient/_search", data=form,
            headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert_outcome(search, 413, expected)
        assert await versions(small_client) == ['W/"1"http://samplan.test/fhir/Patient/p1']

    async def test_a_streamed_body_without_content_length_is_cut_off(
        self, small_client: httpx.AsyncClient
    ) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b" " * 100

        response = await small_client.post("/fhir/Patient", content=chunks())
        assert_outcome(response, 413, outcome(
            "too-costly", "The body is larger than the limit of 300 bytes."))
        assert await versions(small_client) == []


class TestUnsupportedInteraction:
    @pytest.mark.parametrize(
        ("method", "path"),
        [("POST", "/fhir/Patient/123"), ("DELETE", "/fhir/Patient"), ("PUT", "/fhir/Patient"),
         ("PATCH", "/fhir/Patient"), ("DELETE", "/fhir/Patient/123/_history/1"),
         ("PUT", "/fhir/metadata"), ("DELETE", "/fhir"), ("POST", "/fhir/Patient/_history")],
    )
    async def test_method_the_path_does_not_allow_is_405(
        self, client: httpx.AsyncClient, method: str, path: str
    ) -> None:
        response = await client.request(method, path, json=make_patient())
        assert_outcome(response, 405, outcome(
            "not-supported", f"{method} is not supported on {path}."))
        assert "Allow" in response.headers
        assert await versions(client) == []


class TestBadSearch:
    @pytest.mark.parametrize(
        ("params", "diagnostics", "expression"),
        [
            ({"_count": "ten"}, "_count must be a whole number, not 'ten'.", ["_count"]),
            ({"_count": "-1"}, "_count must not be negative.", ["_count"]),
            ({"birthdate": "1945-13"},
             "Cannot read the date '1945-13' for 'birthdate': use "
             "[prefix]YYYY[-MM[-DD[Thh:mm[:ss][zone]]]].", ["birthdate"]),
            ({"_lastUpdated": "yesterday"},
             "Cannot read the date 'yesterday' for '_lastUpdated': use "
             "[prefix]YYYY[-MM[-DD[Thh:mm[:ss][zone]]]].", ["_lastUpdated"]),
            ({"birthdate": "9999-12-31"},
             "Cannot read the date '9999-12-31' for 'birthdate': use "
             "[prefix]YYYY[-MM[-DD[Thh:mm[:ss][zone]]]].", ["birthdate"]),
            ({"birthdate": "ap1945"},
             "Cannot read the date 'ap1945' for 'birthdate': use "
             "[prefix]YYYY[-MM[-DD[Thh:mm[:ss][zone]]]].", ["birthdate"]),
            ({"_total": "all"}, "_total must be none, estimate or accurate.", ["_total"]),
            ({"_include": "Patient"}, "_include must be Type:param[:target], not 'Patient'.",
             ["_include"]),
            ({"_include": "CarePlan:subject"},
             "_include=CarePlan:subject: 'CarePlan' cannot be included here.", ["_include"]),
            ({"_revinclude": "CarePlan:status"},
             "_revinclude=CarePlan:status: 'status' is not a reference parameter of CarePlan.",
             ["_revinclude"]),
            ({"organization": "http://elsewhere.example/Organization/1"},
             "Cannot read the reference 'http://elsewhere.example/Organization/1' for "
             "'organization'.", ["organization"]),
        ],
    )
    async def test_unreadable_search_is_400(
        self, client: httpx.AsyncClient, params: dict[str, str], diagnostics: str,
        expression: list[str],
    ) -> None:
        code = "value" if "date" in diagnostics else "invalid"
        response = await client.get("/fhir/Patient", params=params)
        assert_outcome(response, 400, outcome(code, diagnostics, expression))

    @pytest.mark.parametrize(
        "cursor",
        [
            "not base64 at all!",
            "e30",  # {}
            encode_cursor(()),
            encode_cursor(("abc", "def")),
            encode_cursor((1.5, "id")),
            encode_cursor((None, "id")),
            encode_cursor(([1], "id")),
            raw_cursor(b'[9223372036854775808, "id"]'),
            raw_cursor(b'[1e300, "id"]'),
            encode_cursor((1, 2)),
            encode_cursor((1, "id", 3)),
        ],
    )
    @pytest.mark.parametrize("direction", ["_page_after", "_page_before"])
    async def test_a_bad_paging_cursor_is_400(
        self, client: httpx.AsyncClient, cursor: str, direction: str
    ) -> None:
        response = await client.get("/fhir/Patient", params={direction: cursor})
        assert response.status_code == 400, response.text
        body = response.json()
        assert body["resourceType"] == "OperationOutcome"
        assert body["issue"][0]["code"] == "invalid"
        assert body["issue"][0]["expression"] == [direction]
        assert "start" in body["issue"][0]["diagnostics"]

    async def test_a_cursor_from_another_sort_is_400(self, client: httpx.AsyncClient) -> None:
        patient = (await create(client, make_patient()))["id"]
        for _ in range(2):
            await create(client, make_careplan(patient_id=patient))
        first = (await client.get("/fhir/CarePlan",
                                  params={"_count": "1", "_sort": "date"})).json()
        next_url = next(lk["url"] for lk in first["link"] if lk["relation"] == "next")
        wrong = next_url.replace("_sort=date", "_sort=date%2C_lastUpdated")
        response = await client.get(wrong)
        assert response.status_code == 400
        assert response.json()["issue"][0]["expression"] == ["_page_after"]

    async def test_history_with_a_bad_count_or_since_is_400(
        self, client: httpx.AsyncClient
    ) -> None:
        count = await client.get("/fhir/Patient/_history", params={"_count": "x"})
        assert_outcome(count, 400, outcome("invalid", "_count must be a whole number.",
                                           ["_count"]))
        since = await client.get("/fhir/_history", params={"_since": "last week"})
        assert_outcome(since, 400, outcome("invalid", "_since must be a FHIR instant.",
                                           ["_since"]))


class TestNeverDetail:
    """No error anywhere is FastAPI's ``{"detail": ...}``: always an OperationOutcome."""

    @pytest.mark.parametrize(
        ("method", "path", "headers", "body"),
        [
            ("GET", "/nothing-here", {}, None),
            ("GET", "/fhir/Patient/x/y/z/w", {}, None),
            ("POST", "/fhir/metadata", {}, b"{}"),
            ("POST", "/fhir", {}, b"[]"),
            ("POST", "/fhir", {}, b'{"resourceType": "Bundle", "type": "collection"}'),
            ("POST", "/fhir", {}, b"{"),
            ("PUT", "/fhir/Patient/1", {"If-Match": "W/\"x\""}, b'{"resourceType":"Patient"}'),
            ("PATCH", "/fhir/Patient/1", {"Content-Type": PATCH}, b'{"op": "add"}'),
            ("GET", "/fhir/Patient", {}, None),
            ("GET", "/fhir/Patient/_history?_before_seq=-1", {}, None),
        ],
    )
    async def test_every_error_body_is_an_operation_outcome(
        self, client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str],
        body: bytes | None,
    ) -> None:
        response = await client.request(method, path, headers=headers, content=body)
        if response.status_code < 400:
            return
        data = response.json()
        assert "detail" not in data
        assert data["resourceType"] == "OperationOutcome"
        assert data["issue"][0]["severity"] in ("error", "fatal")

    async def test_patch_with_a_non_array_body_is_400(self, client: httpx.AsyncClient) -> None:
        rid = (await create(client, make_patient()))["id"]
        response = await client.patch(f"/fhir/Patient/{rid}", json={"op": "add"},
                                      headers={"Content-Type": PATCH})
        assert_outcome(response, 400, outcome(
            "invalid", "A JSON Patch body must be an array of operations."))
        assert (await client.get(f"/fhir/Patient/{rid}")).json()["meta"]["versionId"] == "1"
