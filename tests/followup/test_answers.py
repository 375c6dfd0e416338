"""Answering the seven questions: who may answer about whom, and answers checked item by item.

Patients (and relatives acting for them) answer ``sju-fragor-patient`` about
themselves; staff answer ``sju-fragor-personal`` about their unit. Every answer
is checked against its Questionnaire: a 422 names the item at fault.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from samplan.api.deps import Services
from samplan.store.tables import audit_events
from support.indicator_world import (
    PATIENT_Q,
    STAFF_Q,
    UNITS,
    World,
    counts,
    load_with_proxy,
)

Mint = Callable[..., str]
RELATIVE = "relative-p03"


def answer(subject: str, questionnaire: str = PATIENT_Q, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse", "questionnaire": questionnaire,
        "status": "completed", "subject": {"reference": subject},
        "authored": "2026-11-30T09:00:00+01:00",
        "item": [{"linkId": str(q), "answer": [{"valueBoolean": q != 5}]} for q in range(1, 8)],
    }
    body.update(fields)
    return body


def outcome(code: str, diagnostics: str, *expression: str) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": "error", "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = list(expression)
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def world(secure_services: Services) -> World:
    return await load_with_proxy(secure_services, "p03", RELATIVE)


@pytest.mark.usefixtures("world")
class TestAPatientAnswersAboutThemselves:
    async def test_the_answer_is_stored_logged_and_counted(
        self, secure_client: httpx.AsyncClient, secure_services: Services, mint: Mint
    ) -> None:
        patient = mint("patient/QuestionnaireResponse.c patient/QuestionnaireResponse.rs",
                       patient="p03")

        created = await secure_client.post("/fhir/QuestionnaireResponse",
                                           json=answer("Patient/p03"), headers=bearer(patient))

        assert created.status_code == 201, created.text
        location = created.headers["Location"].split("/fhir/")[1].split("/_history")[0]
        read = await secure_client.get(f"/fhir/{location}", headers=bearer(patient))
        assert read.status_code == 200
        assert read.json()["item"][4] == {"linkId": "5", "answer": [{"valueBoolean": False}]}
        c = audit_events.c
        async with secure_services.gate.engine.connect() as conn:
            logged = (await conn.execute(select(c.interaction, c.agent_kind, c.patient_id).where(
                c.entity_type == "QuestionnaireResponse", c.interaction == "create",
                c.agent_kind != "internal"))).all()
        assert [tuple(r) for r in logged] == [("create", "patient", "p03")]
        staff = mint("user/*.rs", care_unit=UNITS["A"][1])
        report = await secure_client.get(
            "/fhir/Measure/sju-fragor-patient/$evaluate-measure",
            params={"periodStart": "2026-11-30", "periodEnd": "2026-11-30"},
            headers=bearer(staff))
        assert counts(report.json()) == [(str(q), 1, 1, 0 if q == 5 else 1) for q in range(1, 8)]

    async def test_not_about_another_patient(
        self, secure_client: httpx.AsyncClient, mint: Mint
    ) -> None:
        patient = mint("patient/*.cruds", patient="p03")

        response = await secure_client.post("/fhir/QuestionnaireResponse",
                                            json=answer("Patient/p06"), headers=bearer(patient))

        assert response.status_code == 403
        assert response.json() == outcome(
            "forbidden", "An answer is about yourself (or the patient you act for): subject "
            "must be that Patient.", "QuestionnaireResponse.subject")

    async def test_not_the_staff_questions(
        self, secure_client: httpx.AsyncClient, mint: Mint
    ) -> None:
        patient = mint("patient/*.cruds", patient="p03")

        response = await secure_client.post(
            "/fhir/QuestionnaireResponse", json=answer(f"Organization/{UNITS['A'][0]}", STAFF_Q),
            headers=bearer(patient))

        assert response.status_code == 403, response.text
        assert response.json() == outcome(
            "forbidden", f"A patient answers {PATIENT_Q}, not {STAFF_Q}.",
            "QuestionnaireResponse.questionnaire")

    async def test_not_as_someone_else(
        self, secure_client: httpx.AsyncClient, mint: Mint
    ) -> None:
        patient = mint("patient/*.cruds", patient="p03")

        response = await secure_client.post(
            "/fhir/QuestionnaireResponse",
            json=answer("Patient/p03", source={"reference": "Practitioner/x"}),
            headers=bearer(patient))

        assert response.status_code == 403
        assert response.json() == outcome("forbidden", "source is who answered: yourself.",
                                          "QuestionnaireResponse.source")

    async def test_not_without_a_write_scope(
        self, secure_client: httpx.AsyncClient, mint: Mint
    ) -> None:
        patient = mint("patient/*.rs", patient="p03")

        response = await secure_client.post("/fhir/QuestionnaireResponse",
                                            json=answer("Patient/p03"), headers=bearer(patient))

        assert response.status_code == 403
        assert response.json() == outcome(
            "forbidden", "the token's scopes do not allow create on QuestionnaireResponse "
            "(needs e.g. patient/QuestionnaireResponse.c)")

    async def test_and_cannot_change_it_afterwards(
        self, secure_client: httpx.AsyncClient, mint: Mint
    ) -> None:
        patient = mint("patient/*.cruds", patient="p03")
        created = await secure_client.post("/fhir/QuestionnaireResponse",
                                           json=answer("Patient/p03"), headers=bearer(patient))
        rid = created.json()["id"]

        changed = await secure_client.put(f"/fhir/QuestionnaireResponse/{rid}",
                                          json={**answer("Patient/p03"), "id": rid},
                                          headers=bearer(patient))

        assert changed.status_code == 403


@pytest.mark.usefixtures("world")
class TestARelativeAnswersForThePatientTheyActFor:
    async def test_with_a_proxy_grant(self, secure_client: httpx.AsyncClient, mint: Mint) -> None:
        relative = mint("patient/QuestionnaireResponse.c", patient="p03",
                        fhir_user=f"RelatedPerson/{RELATIVE}")

        response = await secure_client.post(
            "/fhir/QuestionnaireResponse",
            json=answer("Patient/p03", source={"reference": f"RelatedPerson/{RELATIVE}"}),
            headers=bearer(relative))

        assert response.status_code == 201, response.text

    async def test_not_for_another_patient(
        self, secure_client: httpx.AsyncClient, mint: Mint
    ) -> None:
        relative = mint("patient/QuestionnaireResponse.c", patient="p03",
                        fhir_user=f"RelatedPerson/{RELATIVE}")

        response = await secure_client.post("/fhir/QuestionnaireResponse",
                                            json=answer("Patient/p00"), headers=bearer(relative))

        assert response.status_code == 403


@pytest.mark.usefixtures("world")
class TestStaffAnswerAboutTheirUnit:
    async def test_their_own_unit(self, secure_client: httpx.AsyncClient, mint: Mint) -> None:
        staff = mint("user/QuestionnaireResponse.c", user="SE2321000073-1001",
                     care_unit=UNITS["A"][1])

        response = await secure_client.post(
            "/fhir/QuestionnaireResponse",
            json=answer(f"Organization/{UNITS['A'][0]}", STAFF_Q), headers=bearer(staff))

        assert response.status_code == 201, response.text

    async def test_not_another_unit(self, secure_client: httpx.AsyncClient, mint: Mint) -> None:
        staff = mint("user/QuestionnaireResponse.c", care_unit=UNITS["A"][1])

        response = await secure_client.post(
            "/fhir/QuestionnaireResponse",
            json=answer(f"Organization/{UNITS['B'][0]}", STAFF_Q), headers=bearer(staff))

        assert response.status_code == 403
        assert response.json() == outcome(
            "forbidden", "Staff answer about their own unit: subject must be an Organization "
            "carrying your care unit's or organisation's HSA-id.",
            "QuestionnaireResponse.subject")

    async def test_a_patients_paper_answer_about_a_patient_in_reach(
        self, secure_client: httpx.AsyncClient, mint: Mint
    ) -> None:
        staff = mint("user/QuestionnaireResponse.c", care_unit=UNITS["A"][1])

        in_reach = await secure_client.post("/fhir/QuestionnaireResponse",
                                            json=answer("Patient/p03"), headers=bearer(staff))
        out_of_reach = await secure_client.post("/fhir/QuestionnaireResponse",
                                                json=answer("Patient/p01"), headers=bearer(staff))

        assert in_reach.status_code == 201, in_reach.text
        assert out_of_reach.status_code == 403


class TestAnswersAreCheckedAgainstTheQuestionnaire:
    """Through the plain API (auth off): the check applies whoever writes."""

    @pytest.fixture
    async def patient(self, client: httpx.AsyncClient) -> str:
        created = await client.post("/fhir/Patient", json={"resourceType": "Patient"})
        return str(created.json()["id"])

    @pytest.mark.parametrize(("change", "code", "diagnostics", "expression"), [
        (lambda b: b["item"][4]["answer"][0].update({"valueString": "ja"}) or
         b["item"][4]["answer"][0].pop("valueBoolean"),
         "value", "fråga 5 (Vet du ditt nästa steg?) is answered ja or nej (valueBoolean), not "
         "valueString.", "QuestionnaireResponse.item[4].answer[0]"),
        (lambda b: b["item"][1].update({"linkId": "8"}),
         "value", "QuestionnaireResponse.item[1]: linkId '8' is not a question of "
         "sju-fragor-patient (its questions: 1, 2, 3, 4, 5, 6, 7).",
         "QuestionnaireResponse.item[1].linkId"),
        (lambda b: b["item"][0]["answer"].append({"valueBoolean": False}),
         "structure", "fråga 1 (Känner du att du kan ha fokus på att leva ditt liv och litar du "
         "på att du lätt får hjälp från vården när du behöver det?) takes one answer, not 2.",
         "QuestionnaireResponse.item[0].answer[1]"),
        (lambda b: b["item"].append({"linkId": "3", "answer": [{"valueBoolean": True}]}),
         "structure", "fråga 3 (Har du enkla sätt att ta kontakt med vården?) is answered "
         "twice: one item per question.", "QuestionnaireResponse.item[7]"),
        (lambda b: b.pop("authored"),
         "required", "authored (when the questions were answered) is required: the follow-up "
         "counts answers by it.", "QuestionnaireResponse.authored"),
        (lambda b: b.update({"questionnaire": "https://samplan.se/fhir/Questionnaire/x"}),
         "value", "https://samplan.se/fhir/Questionnaire/x is not a Questionnaire this server "
         "publishes (known: https://samplan.se/fhir/Questionnaire/sju-fragor-patient, "
         "https://samplan.se/fhir/Questionnaire/sju-fragor-personal).",
         "QuestionnaireResponse.questionnaire"),
        (lambda b: b.update({"questionnaire": STAFF_Q}),
         "value", "'Du och vården - hur funkar det? Frågorna till medarbetarna' "
         "(sju-fragor-personal) is answered about: Organization; subject must be a reference "
         "Organization/{id}.", "QuestionnaireResponse.subject"),
    ], ids=["string-for-boolean", "unknown-question", "two-answers", "question-twice",
            "no-authored", "unknown-questionnaire", "staff-questions-about-a-patient"])
    async def test_a_bad_answer_is_a_422_naming_the_item(
        self, client: httpx.AsyncClient, patient: str, change: Callable[[dict[str, Any]], Any],
        code: str, diagnostics: str, expression: str,
    ) -> None:
        body = answer(f"Patient/{patient}")
        change(body)

        response = await client.post("/fhir/QuestionnaireResponse", json=body)

        assert response.status_code == 422, response.text
        assert response.json() == outcome(code, diagnostics, expression)

    async def test_a_question_may_be_left_unanswered(
        self, client: httpx.AsyncClient, patient: str
    ) -> None:
        body = answer(f"Patient/{patient}")
        del body["item"][3]

        response = await client.post("/fhir/QuestionnaireResponse", json=body)

        assert response.status_code == 201, response.text

    async def test_a_versioned_canonical_is_the_same_questionnaire(
        self, client: httpx.AsyncClient, patient: str
    ) -> None:
        body = answer(f"Patient/{patient}", f"{PATIENT_Q}|0.1.0")

        response = await client.post("/fhir/QuestionnaireResponse", json=body)

        assert response.status_code == 201, response.text
        found = await client.get("/fhir/QuestionnaireResponse",
                                 params={"item-answer": "5|false", "patient": patient})
        assert found.json()["total"] == 1


class TestObservationsAreRubLevelsOnly:
    async def test_an_observation_without_the_rub_profile_is_refused(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.post("/fhir/Observation", json={
            "resourceType": "Observation", "status": "final",
            "code": {"text": "Blodtryck"}, "valueInteger": 120})

        assert response.status_code == 422
        assert response.json() == outcome(
            "required", "SamPlan stores only RUB levels as Observation: meta.profile must name "
            "https://samplan.se/fhir/StructureDefinition/samplan-rub-observation.",
            "Observation.meta.profile")

    async def test_a_rub_level_out_of_range_is_refused(self, client: httpx.AsyncClient) -> None:
        patient = (await client.post("/fhir/Patient", json={"resourceType": "Patient"})).json()
        body = {"resourceType": "Observation",
                "meta": {"profile": ["https://samplan.se/fhir/StructureDefinition/"
                                     "samplan-rub-observation"]},
                "status": "final",
                "code": {"coding": [{"system": "https://samplan.se/fhir/CodeSystem/"
                                               "indicator-observation", "code": "rub"}]},
                "subject": {"reference": f"Patient/{patient['id']}"},
                "effectiveDateTime": "2026-10-01", "valueInteger": 7}

        refused = await client.post("/fhir/Observation", json=body)
        body["valueInteger"] = 5
        stored = await client.post("/fhir/Observation", json=body)

        assert refused.status_code == 422
        assert refused.json()["issue"][0]["expression"] == ["Observation"]
        assert stored.status_code == 201
        found = await client.get("/fhir/Observation", params={
            "patient": patient["id"], "value-integer": "5", "date": "2026-10"})
        assert found.json()["total"] == 1
