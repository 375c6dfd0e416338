"""Keyword notes over HTTP: $import-note, $extract, $export-note, and the Questionnaires."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from factories import PNR_SYSTEM

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "notes"
REGION = (EXAMPLES / "region-nested.json").read_bytes()
KALMAR = (EXAMPLES / "kalmar-flat.txt").read_bytes()


async def import_note(client: httpx.AsyncClient, body: bytes, content_type: str,
                      **params: str) -> httpx.Response:
    return await client.post("/fhir/CarePlan/$import-note", content=body, params=params,
                             headers={"Content-Type": content_type})


async def count(client: httpx.AsyncClient, resource_type: str) -> int:
    response = await client.get(f"/fhir/{resource_type}", params={"_summary": "count"})
    total: int = response.json()["total"]
    return total


class TestImportNote:
    async def test_json_note_creates_the_agreement_with_201_and_location(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await import_note(client, REGION, "application/json")
        assert response.status_code == 201, response.text
        assert "/fhir/CarePlan/" in response.headers["Location"]
        bundle = response.json()
        assert bundle["type"] == "transaction-response"
        kinds = {e["resource"]["resourceType"] for e in bundle["entry"] if "resource" in e}
        assert {"Patient", "CarePlan", "CareTeam"} <= kinds
        plan = (await client.get(response.headers["Location"])).json()
        texts = [a["detail"]["description"] for a in plan["activity"]]
        assert any("Väga mig varje morgon" in t for t in texts)

    async def test_printed_text_note_with_windows_line_endings_imports(
        self, client: httpx.AsyncClient
    ) -> None:
        body = KALMAR.replace(b"\n", b"\r\n")
        response = await import_note(client, body, "text/plain; charset=utf-8")
        assert response.status_code == 201, response.text
        appointments = (await client.get("/fhir/Appointment")).json()
        assert appointments["total"] == 1
        assert appointments["entry"][0]["resource"]["start"] == "2027-01-12T09:30:00+01:00"

    async def test_the_same_note_twice_changes_nothing(self, client: httpx.AsyncClient) -> None:
        first = await import_note(client, REGION, "application/json")
        history_before = (await client.get("/fhir/_history", params={"_count": 1000})).json()
        again = await import_note(client, REGION, "application/json")
        assert again.status_code == 200
        history_after = (await client.get("/fhir/_history", params={"_count": 1000})).json()
        assert len(history_after["entry"]) == len(history_before["entry"])
        assert again.headers["Location"] == first.headers["Location"]

    async def test_a_new_note_for_the_same_patient_and_unit_makes_a_new_version(
        self, client: httpx.AsyncClient
    ) -> None:
        first = await import_note(client, REGION, "application/json")
        note = json.loads(REGION)
        note["noteId"] = "cosmic-note-100999"
        note["keywords"][1]["children"][1]["text"] = "Väga mig varje morgon."
        second = await import_note(client, json.dumps(note).encode(), "application/json")
        assert second.status_code == 200, second.text
        plan_url = first.headers["Location"].rsplit("/_history", 1)[0]
        assert second.headers["Location"].startswith(plan_url)
        assert second.headers["Location"].endswith("/_history/2")
        assert await count(client, "CarePlan") == 1
        assert await count(client, "CareTeam") == 1
        # the first note stays idempotent after the second
        again = await import_note(client, REGION, "application/json")
        assert again.status_code == 200
        plan = (await client.get(plan_url)).json()
        assert plan["meta"]["versionId"] == "2"

    async def test_parallel_imports_of_one_patient_make_one_agreement(
        self, client: httpx.AsyncClient
    ) -> None:
        import asyncio

        notes = []
        for n in range(6):
            note = json.loads(REGION)
            note["noteId"] = f"cosmic-note-{n}"
            notes.append(json.dumps(note).encode())
        responses = await asyncio.gather(
            *(import_note(client, body, "application/json") for body in notes)
        )
        assert sorted(r.status_code for r in responses) == [200] * 5 + [201]
        assert await count(client, "CarePlan") == 1
        assert await count(client, "Patient") == 1


class TestImportNoteBadInput:
    async def test_note_without_agreement_section_is_422_and_stores_nothing(
        self, client: httpx.AsyncClient
    ) -> None:
        note = json.loads(REGION)
        note["keywords"] = [k for k in note["keywords"] if k["keyword"] != "Överenskommelse"]
        response = await import_note(client, json.dumps(note).encode(), "application/json")
        assert response.status_code == 422
        assert response.json()["resourceType"] == "OperationOutcome"
        assert await count(client, "Patient") == 0

    async def test_invalid_personnummer_is_422(self, client: httpx.AsyncClient) -> None:
        note = json.loads(REGION)
        note["patient"]["personnummer"] = "19450101-1234"
        response = await import_note(client, json.dumps(note).encode(), "application/json")
        assert response.status_code == 422
        assert await count(client, "CarePlan") == 0

    async def test_undecodable_bytes_are_400(self, client: httpx.AsyncClient) -> None:
        response = await import_note(client, b"\xff\xfe\x00Overenskommelse", "text/plain")
        assert response.status_code == 400
        assert response.json()["resourceType"] == "OperationOutcome"

    async def test_json_of_the_wrong_shape_is_400_with_the_path(
        self, client: httpx.AsyncClient
    ) -> None:
        note = json.loads(REGION)
        note["keywords"][0]["children"] = "not a list"
        response = await import_note(client, json.dumps(note).encode(), "application/json")
        assert response.status_code == 400
        expressions = [e for i in response.json()["issue"] for e in i.get("expression", [])]
        assert any("keywords[0]" in e for e in expressions)

    async def test_other_media_types_are_415(self, client: httpx.AsyncClient) -> None:
        response = await import_note(client, REGION, "application/xml")
        assert response.status_code == 415


class TestExportNote:
    async def test_export_of_an_import_reproduces_every_line(
        self, client: httpx.AsyncClient
    ) -> None:
        created = await import_note(client, KALMAR, "text/plain")
        plan_id = created.headers["Location"].split("/CarePlan/")[1].split("/")[0]
        exported = await client.get(f"/fhir/CarePlan/{plan_id}/$export-note",
                                    headers={"Accept": "text/plain"})
        assert exported.status_code == 200
        assert exported.headers["content-type"].startswith("text/plain")
        text = exported.text
        agreement_part = KALMAR.decode().split("Överenskommelse", 1)[1]
        for line in agreement_part.strip().splitlines():
            assert line.strip() in text, line

    async def test_importing_an_export_changes_nothing(self, client: httpx.AsyncClient) -> None:
        created = await import_note(client, REGION, "application/json")
        plan_id = created.headers["Location"].split("/CarePlan/")[1].split("/")[0]
        exported = await client.get(f"/fhir/CarePlan/{plan_id}/$export-note",
                                    params={"_format": "application/json"})
        assert exported.headers["content-type"].startswith("application/json")
        before = (await client.get(f"/fhir/CarePlan/{plan_id}")).json()
        again = await import_note(client, exported.content, "application/json")
        assert again.status_code == 200
        after = (await client.get(f"/fhir/CarePlan/{plan_id}")).json()
        assert after["meta"]["versionId"] == before["meta"]["versionId"]

    async def test_export_of_a_missing_plan_is_404(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/fhir/CarePlan/nope/$export-note")
        assert response.status_code == 404


class TestQuestionnaires:
    async def test_each_template_variant_is_published_as_a_questionnaire(
        self, client: httpx.AsyncClient
    ) -> None:
        bundle = (await client.get("/fhir/Questionnaire")).json()
        ids = {e["resource"]["id"] for e in bundle["entry"]}
        assert {"region-nested", "kalmar-flat"} <= ids

    async def test_extract_imports_a_questionnaire_response(
        self, client: httpx.AsyncClient
    ) -> None:
        questionnaire = (await client.get("/fhir/Questionnaire/kalmar-flat")).json()

        def answer(items: list[dict]) -> list[dict]:
            out = []
            for item in items:
                entry: dict = {"linkId": item["linkId"]}
                if item.get("type") in ("string", "text"):
                    entry["answer"] = [{"valueString": f"Svar för {item.get('text')}"}]
                if item.get("item"):
                    entry["item"] = answer(item["item"])
                if "answer" in entry or "item" in entry:
                    out.append(entry)
            return out

        response_body = {
            "resourceType": "QuestionnaireResponse",
            "questionnaire": questionnaire["url"],
            "status": "completed",
            "subject": {"identifier": {"system": PNR_SYSTEM, "value": "193803152341"},
                        "display": "Sven Lund"},
            "authored": "2026-11-18T14:02:00+01:00",
            "item": answer(questionnaire["item"]),
        }
        response = await client.post("/fhir/QuestionnaireResponse/$extract", json=response_body)
        assert response.status_code == 201, response.text
        assert await count(client, "CarePlan") == 1
