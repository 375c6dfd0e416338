"""Create, read, vread, update, patch, delete and history, as FHIR R4 specifies them."""

from __future__ import annotations

import httpx

from factories import make_careplan, make_patient

FHIR = "application/fhir+json"


async def create(client: httpx.AsyncClient, resource: dict, **headers: str) -> httpx.Response:
    response = await client.post(f"/fhir/{resource['resourceType']}", json=resource,
                                 headers=headers)
    assert response.status_code in (200, 201), response.text
    return response


class TestCreate:
    async def test_create_assigns_id_and_version_and_answers_201_with_location(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.post("/fhir/Patient", json=make_patient())
        assert response.status_code == 201
        body = response.json()
        assert body["resourceType"] == "Patient"
        assert body["meta"]["versionId"] == "1"
        assert response.headers["ETag"] == 'W/"1"'
        assert response.headers["Location"] == (
            f"http://samplan.test/fhir/Patient/{body['id']}/_history/1"
        )
        assert response.headers["Last-Modified"].endswith("GMT")
        assert response.headers["content-type"].startswith(FHIR)
        assert list(body)[:3] == ["resourceType", "id", "meta"]

    async def test_client_id_in_body_is_replaced_on_create(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.post("/fhir/Patient", json=make_patient(id="mine"))
        assert response.json()["id"] != "mine"

    async def test_prefer_minimal_returns_no_body(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/fhir/Patient", json=make_patient(),
                                     headers={"Prefer": "return=minimal"})
        assert response.status_code == 201
        assert response.content == b""
        assert response.headers["Location"]

    async def test_prefer_operation_outcome_returns_an_outcome(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.post("/fhir/Patient", json=make_patient(),
                                     headers={"Prefer": "return=OperationOutcome"})
        assert response.status_code == 201
        body = response.json()
        assert body["resourceType"] == "OperationOutcome"
        assert body["issue"][0]["severity"] == "information"

    async def test_personnummer_is_stored_as_twelve_digits(
        self, client: httpx.AsyncClient
    ) -> None:
        patient = make_patient(pnr="450101-1235")
        patient["identifier"][0]["system"] = "urn:oid:1.2.752.129.2.1.3.1"
        body = (await create(client, patient)).json()
        assert body["identifier"][0] == {
            "system": "http://electronichealth.se/identifier/personnummer",
            "value": "194501011235",
        }


class TestConditionalCreate:
    async def test_if_none_exist_with_a_match_returns_the_match_with_200(
        self, client: httpx.AsyncClient
    ) -> None:
        first = await create(client, make_patient(pnr="194501011235"))
        criteria = "identifier=http://electronichealth.se/identifier/personnummer|194501011235"
        again = await client.post("/fhir/Patient", json=make_patient(pnr="194501011235"),
                                  headers={"If-None-Exist": criteria})
        assert again.status_code == 200
        assert again.json()["id"] == first.json()["id"]
        search = await client.get("/fhir/Patient", params={"_summary": "count"})
        assert search.json()["total"] == 1

    async def test_if_none_exist_without_a_match_creates(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/fhir/Patient", json=make_patient(),
            headers={"If-None-Exist": "identifier=http://electronichealth.se/identifier/"
                                      "personnummer|193803152341"},
        )
        assert response.status_code == 201

    async def test_if_none_exist_matching_two_is_412(self, client: httpx.AsyncClient) -> None:
        await create(client, make_patient(family="Holm"))
        await create(client, make_patient(family="Holmberg", pnr="193803152341"))
        response = await client.post("/fhir/Patient", json=make_patient(),
                                     headers={"If-None-Exist": "family=holm"})
        assert response.status_code == 412
        assert response.json()["issue"][0]["code"] == "conflict"


class TestReadAndVread:
    async def test_read_returns_the_stored_bytes_with_etag(
        self, client: httpx.AsyncClient
    ) -> None:
        created = await create(client, make_patient())
        rid = created.json()["id"]
        read = await client.get(f"/fhir/Patient/{rid}")
        assert read.status_code == 200
        assert read.content == created.content
        assert read.headers["ETag"] == 'W/"1"'
        assert read.headers["content-type"].startswith(FHIR)

    async def test_vread_returns_each_version(self, client: httpx.AsyncClient) -> None:
        rid = (await create(client, make_patient())).json()["id"]
        await client.put(f"/fhir/Patient/{rid}", json=make_patient(id=rid, family="Ny"))
        v1 = await client.get(f"/fhir/Patient/{rid}/_history/1")
        v2 = await client.get(f"/fhir/Patient/{rid}/_history/2")
        assert v1.json()["name"][0]["family"] == "Holm"
        assert v2.json()["name"][0]["family"] == "Ny"
        assert v2.headers["ETag"] == 'W/"2"'
        missing = await client.get(f"/fhir/Patient/{rid}/_history/3")
        assert missing.status_code == 404


class TestUpdate:
    async def test_update_makes_a_new_version(self, client: httpx.AsyncClient) -> None:
        rid = (await create(client, make_patient())).json()["id"]
        response = await client.put(f"/fhir/Patient/{rid}", json=make_patient(id=rid, family="Ny"))
        assert response.status_code == 200
        assert response.json()["meta"]["versionId"] == "2"
        assert response.headers["ETag"] == 'W/"2"'
        assert response.headers["Location"].endswith(f"/Patient/{rid}/_history/2")

    async def test_update_with_a_new_client_id_creates_with_201(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.put("/fhir/Patient/greta-1", json=make_patient(id="greta-1"))
        assert response.status_code == 201
        assert response.json()["id"] == "greta-1"
        assert (await client.get("/fhir/Patient/greta-1")).status_code == 200

    async def test_matching_if_match_updates(self, client: httpx.AsyncClient) -> None:
        rid = (await create(client, make_patient())).json()["id"]
        response = await client.put(f"/fhir/Patient/{rid}", json=make_patient(id=rid),
                                    headers={"If-Match": 'W/"1"'})
        assert response.status_code == 200

    async def test_stale_if_match_returns_412_outcome_and_changes_nothing(
        self, client: httpx.AsyncClient
    ) -> None:
        rid = (await create(client, make_patient())).json()["id"]
        await client.put(f"/fhir/Patient/{rid}", json=make_patient(id=rid, family="Två"))
        response = await client.put(f"/fhir/Patient/{rid}", json=make_patient(id=rid, family="X"),
                                    headers={"If-Match": 'W/"1"'})
        assert response.status_code == 412
        assert response.json() == {
            "resourceType": "OperationOutcome",
            "issue": [{
                "severity": "error",
                "code": "conflict",
                "diagnostics": f"If-Match W/\"1\" does not match the current version W/\"2\" of "
                               f"Patient/{rid}; read it again and retry.",
                "expression": ["If-Match"],
            }],
        }
        current = await client.get(f"/fhir/Patient/{rid}")
        assert current.json()["name"][0]["family"] == "Två"


class TestPatch:
    async def test_json_patch_changes_the_resource(self, client: httpx.AsyncClient) -> None:
        patient = (await create(client, make_patient())).json()
        patch = [{"op": "replace", "path": "/name/0/family", "value": "Lund"}]
        response = await client.patch(
            f"/fhir/Patient/{patient['id']}", json=patch,
            headers={"Content-Type": "application/json-patch+json", "If-Match": 'W/"1"'},
        )
        assert response.status_code == 200, response.text
        assert response.json()["name"][0]["family"] == "Lund"
        assert response.json()["meta"]["versionId"] == "2"

    async def test_failed_patch_test_op_is_422_and_changes_nothing(
        self, client: httpx.AsyncClient
    ) -> None:
        patient = (await create(client, make_patient())).json()
        patch = [{"op": "test", "path": "/name/0/family", "value": "Fel"},
                 {"op": "replace", "path": "/name/0/family", "value": "Lund"}]
        response = await client.patch(f"/fhir/Patient/{patient['id']}", json=patch,
                                      headers={"Content-Type": "application/json-patch+json"})
        assert response.status_code == 422
        assert response.json()["resourceType"] == "OperationOutcome"
        read = await client.get(f"/fhir/Patient/{patient['id']}")
        assert read.json()["meta"]["versionId"] == "1"

    async def test_patch_that_makes_the_resource_invalid_is_422(
        self, client: httpx.AsyncClient
    ) -> None:
        patient = (await create(client, make_patient())).json()
        patch = [{"op": "add", "path": "/gender", "value": "robot"}]
        response = await client.patch(f"/fhir/Patient/{patient['id']}", json=patch,
                                      headers={"Content-Type": "application/json-patch+json"})
        assert response.status_code == 422
        assert response.json()["issue"][0]["expression"] == ["Patient.gender"]


class TestDelete:
    async def test_delete_then_read_is_410_and_history_keeps_it(
        self, client: httpx.AsyncClient
    ) -> None:
        rid = (await create(client, make_patient())).json()["id"]
        deleted = await client.delete(f"/fhir/Patient/{rid}")
        assert deleted.status_code == 204
        gone = await client.get(f"/fhir/Patient/{rid}")
        assert gone.status_code == 410
        assert gone.json()["issue"][0]["code"] == "deleted"
        history = (await client.get(f"/fhir/Patient/{rid}/_history")).json()
        assert history["type"] == "history"
        assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "POST"]
        assert "resource" not in history["entry"][0]
        assert (await client.get(f"/fhir/Patient/{rid}/_history/1")).status_code == 200

    async def test_deleted_resource_is_not_found_by_search(self, client: httpx.AsyncClient) -> None:
        rid = (await create(client, make_patient())).json()["id"]
        await client.delete(f"/fhir/Patient/{rid}")
        search = await client.get("/fhir/Patient", params={"_id": rid})
        assert search.json()["total"] == 0

    async def test_delete_twice_is_not_an_error(self, client: httpx.AsyncClient) -> None:
        rid = (await create(client, make_patient())).json()["id"]
        assert (await client.delete(f"/fhir/Patient/{rid}")).status_code == 204
        assert (await client.delete(f"/fhir/Patient/{rid}")).status_code == 204

    async def test_delete_with_stale_if_match_is_412(self, client: httpx.AsyncClient) -> None:
        rid = (await create(client, make_patient())).json()["id"]
        response = await client.delete(f"/fhir/Patient/{rid}", headers={"If-Match": 'W/"7"'})
        assert response.status_code == 412
        assert (await client.get(f"/fhir/Patient/{rid}")).status_code == 200

    async def test_update_after_delete_revives_with_next_version(
        self, client: httpx.AsyncClient
    ) -> None:
        rid = (await create(client, make_patient())).json()["id"]
        await client.delete(f"/fhir/Patient/{rid}")
        response = await client.put(f"/fhir/Patient/{rid}", json=make_patient(id=rid))
        assert response.status_code == 201
        assert response.json()["meta"]["versionId"] == "3"


class TestHistory:
    async def test_type_history_lists_every_version_newest_first(
        self, client: httpx.AsyncClient
    ) -> None:
        patient = (await create(client, make_patient())).json()
        plan = (await create(client, make_careplan(patient_id=patient["id"]))).json()
        await client.put(f"/fhir/CarePlan/{plan['id']}", json={**plan, "status": "completed"})
        history = (await client.get("/fhir/CarePlan/_history")).json()
        assert [e["response"]["etag"] for e in history["entry"]] == ['W/"2"', 'W/"1"']
        system = (await client.get("/fhir/_history", params={"_count": 500})).json()
        written = [e for e in system["entry"]
                   if e["fullUrl"].split("/")[-2] in ("Patient", "CarePlan")]
        assert len(written) == 3

    async def test_history_pages_with_next_links(self, client: httpx.AsyncClient) -> None:
        rid = (await create(client, make_patient())).json()["id"]
        for i in range(4):
            await client.put(f"/fhir/Patient/{rid}", json=make_patient(id=rid, family=f"F{i}"))
        seen = []
        url: str | None = f"/fhir/Patient/{rid}/_history?_count=2"
        while url:
            page = (await client.get(url)).json()
            seen += [e["response"]["etag"] for e in page["entry"]]
            url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
        assert seen == [f'W/"{v}"' for v in range(5, 0, -1)]

    async def test_history_of_unknown_resource_is_404(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/fhir/Patient/nobody/_history")
        assert response.status_code == 404
