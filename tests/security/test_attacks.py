"""Tried as an attacker would: every door of issue 12, against a real server, on both databases.

Each test is one finding of issue 12, run over HTTP against a real `samplan serve`
with authentication on, using nothing but tokens the service itself trusts (the
session's development key). The world is test_http_matrix's: Greta (cared for by
UNIT_IN and the municipality, with a professional-only Goal), Olle (UNIT_OUT's).
Every new door is tried with another patient's token (docs/security.md, "The gate").
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest

from conftest import SECURE_AUDIENCE, SECURE_ISSUER
from samplan.api.deps import Services
from samplan.store import audit as audit_store
from security.test_http_matrix import (
    GRETA_PNR,
    HSA_SYSTEM,
    MUNICIPALITY,
    NOPATIENT,
    OLLE_PNR,
    PNR_SYSTEM,
    UNIT_IN,
    UNIT_OUT,
    Mint,
    World,
    _create,
    _goal,
    block,
    world_fixture,  # noqa: F401 (the world, for these tests too)
)
from support.server import running_server

pytestmark = pytest.mark.e2e

INLINE = {"url": "http://hl7.org/fhir/uv/security-label-ds4p/StructureDefinition/"
                 "extension-inline-sec-label", "valueCoding": NOPATIENT}
SECRET_ACTIVITY = "Bedömning av missbruk (endast för vården)"


@pytest.fixture(scope="module")
def server(database_url: str, dev_key_dir: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[str]:
    """A real server with auth on, trusting the session's development key, on this database."""
    env = {"SAMPLAN_AUTH_ENABLED": "true", "SAMPLAN_DATA_DIR": str(dev_key_dir),
           "SAMPLAN_TOKEN_ISSUER": SECURE_ISSUER, "SAMPLAN_TOKEN_AUDIENCE": SECURE_AUDIENCE}
    with running_server(database_url, env=env,
                        log_dir=tmp_path_factory.mktemp("attack-logs")) as base:
        yield base


@pytest.fixture
async def http(server: str, secure_services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the real server (``secure_services`` empties the tables first)."""
    del secure_services
    async with httpx.AsyncClient(base_url=server, timeout=30,
                                 headers={"Content-Type": "application/fhir+json"}) as client:
        yield client


async def post_bundle(http: httpx.AsyncClient, headers: dict[str, str], bundle: dict[str, Any]
                      ) -> httpx.Response:
    """POST to the base itself (``.../fhir``, no trailing slash)."""
    return await http.post(str(http.base_url).rstrip("/"), headers=headers, json=bundle)


def bearer(token: str, **more: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **more}


def patient_token(mint: Mint, scopes: str = "patient/*.cruds", pnr: str = GRETA_PNR) -> str:
    return mint(scopes, patient=pnr)


def staff_out(mint: Mint, scopes: str = "user/*.cruds") -> str:
    return mint(scopes, user="SE2321000073-1999", care_unit=UNIT_OUT)


def staff_in(mint: Mint, scopes: str = "user/*.cruds") -> str:
    return mint(scopes, user="SE2321000073-1001", care_unit=UNIT_IN)


async def log_of(services: Services, patient: str) -> list[dict[str, Any]]:
    rows, _ = await audit_store.search(
        services.gate.engine, audit_store.AuditSearch(patients=(patient,), count=1000))
    return [orjson.loads(r.content) for r in rows]


def outcome(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return body


class TestFinding01UnknownMethods:
    """A Bundle entry whose method is not GET/POST/PUT/PATCH/DELETE is a 400, never run."""

    @pytest.mark.parametrize("kind", ["transaction", "batch"])
    async def test_a_head_entry_is_refused_naming_the_method(
        self, http: httpx.AsyncClient, world: World, mint: Mint, secure_services: Services,
        kind: str,
    ) -> None:
        token = patient_token(mint, "patient/Organization.r")
        before = await log_of(secure_services, world.greta)
        for url in ("CarePlan", f"Goal/{world.hidden_goal}"):
            response = await post_bundle(http, bearer(token), {
                "resourceType": "Bundle", "type": kind,
                "entry": [{"request": {"method": "HEAD", "url": url}}]})
            assert response.status_code == 400
            assert outcome(response)["issue"][0]["expression"] == [
                "Bundle.entry[0].request.method"]
            assert "NOPATIENT" not in response.text
            assert world.plan not in response.text
        staff = bearer(staff_in(mint))
        assert (await http.get(f"/Goal/{world.hidden_goal}", headers=staff)).status_code == 200
        assert len(await log_of(secure_services, world.greta)) == len(before) + 1  # staff read


class TestFinding02ConditionalCreateMatches:
    async def test_a_match_of_another_patient_is_no_match_and_is_not_returned(
        self, http: httpx.AsyncClient, world: World, mint: Mint, secure_services: Services,
    ) -> None:
        goal = _goal(world.greta)
        goal["identifier"] = [{"system": "urn:test", "value": "greta-goal"}]
        await _create(secure_services, goal)
        entry = {"request": {"method": "POST", "url": "Goal",
                             "ifNoneExist": "identifier=urn:test|greta-goal"},
                 "resource": _goal(world.olle)}
        response = await post_bundle(
            http, bearer(staff_out(mint), Prefer="return=representation"),
            {"resourceType": "Bundle", "type": "transaction", "entry": [entry]})
        # not Greta's goal: Olle's new one, which UNIT_OUT may write
        assert response.status_code == 200, response.text
        created = response.json()["entry"][0]
        assert created["response"]["status"] == "201 Created"
        assert created["resource"]["subject"] == {"reference": f"Patient/{world.olle}"}
        assert world.greta not in response.text


class TestFinding03Block:
    async def test_a_blocked_unit_gets_no_reach_from_a_care_team_it_writes(
        self, http: httpx.AsyncClient, world: World, mint: Mint, secure_services: Services,
    ) -> None:
        ids = {
            "unit_out": (await http.get(
                "/Organization", params={"identifier": f"{HSA_SYSTEM}|{UNIT_OUT}"},
                headers=bearer(staff_out(mint)))).json()["entry"][0]["resource"]["id"]}
        await _create(secure_services, block(world.greta, ids["unit_out"]))
        team = {"resourceType": "CareTeam", "status": "active",
                "subject": {"reference": f"Patient/{world.greta}"},
                "participant": [{"member": {"reference": f"Organization/{ids['unit_out']}"}}]}
        plan_change = {"resourceType": "CarePlan", "id": world.plan, "status": "revoked",
                       "intent": "plan", "subject": {"reference": f"Patient/{world.greta}"}}
        response = await post_bundle(http, bearer(staff_out(mint)), {
            "resourceType": "Bundle", "type": "transaction", "entry": [
                {"request": {"method": "POST", "url": "CareTeam"}, "resource": team},
                {"request": {"method": "PUT", "url": f"CarePlan/{world.plan}"},
                 "resource": plan_change},
                {"request": {"method": "GET", "url": f"CarePlan/{world.plan}"}}]})
        assert response.status_code in (403, 404), response.text
        assert "Överenskommelse" not in response.text
        plan = (await http.get(f"/CarePlan/{world.plan}", headers=bearer(staff_in(mint)))).json()
        assert plan["status"] == "active"  # unchanged
        read = await http.get(f"/CarePlan/{world.plan}", headers=bearer(staff_out(mint)))
        assert read.status_code == 404


class TestFinding04InlineLabels:
    async def test_no_path_shows_a_patient_an_inline_labelled_element(
        self, http: httpx.AsyncClient, world: World, mint: Mint,
    ) -> None:
        staff = bearer(staff_in(mint))
        plan = (await http.get(f"/CarePlan/{world.plan}", headers=staff)).json()
        plan["activity"] = [
            {"detail": {"status": "scheduled", "description": "Promenad varje dag"}},
            {"extension": [INLINE],
             "detail": {"status": "scheduled", "description": SECRET_ACTIVITY}}]
        plan["goal"] = [{"reference": f"Goal/{world.goal}"},
                        {"reference": f"Goal/{world.hidden_goal}"}]
        plan["category"] = [{"coding": [{
            "system": "https://samplan.se/fhir/CodeSystem/careplan-category",
            "code": "dokumenterad-overenskommelse"}]}]
        assert (await http.put(f"/CarePlan/{world.plan}", json=plan,
                               headers=staff)).status_code == 200
        assert SECRET_ACTIVITY in (await http.get(f"/CarePlan/{world.plan}",
                                                  headers=staff)).text  # care sees it
        patient = bearer(patient_token(mint))
        paths = [
            f"/CarePlan/{world.plan}", f"/CarePlan/{world.plan}/_history/2",
            f"/CarePlan/{world.plan}/_history", "/CarePlan", "/_history",
            f"/Patient?_id={world.greta}&_revinclude=CarePlan:subject",
            f"/Goal?patient={world.greta}&_revinclude=CarePlan:goal",
            f"/CarePlan/{world.plan}/$export-note?_format=application/json",
            f"/Patient/{world.greta}/$agreement",
        ]
        for path in paths:
            response = await http.get(path, headers=patient)
            assert response.status_code == 200, (path, response.text)
            assert SECRET_ACTIVITY not in response.text, path
            assert world.hidden_goal not in response.text, path
        shown = (await http.get(f"/CarePlan/{world.plan}", headers=patient)).json()
        assert [a["detail"]["description"] for a in shown["activity"]] == ["Promenad varje dag"]
        assert shown["goal"] == [{"reference": f"Goal/{world.goal}"}]


class TestFinding05PatientAdditions:
    async def test_read_only_scopes_add_nothing(
        self, http: httpx.AsyncClient, world: World, mint: Mint,
    ) -> None:
        token = patient_token(mint, "patient/*.rs")
        for operation in ("$add-goal", "$add-activity"):
            response = await http.post(
                f"/Patient/{world.greta}/{operation}", headers=bearer(token),
                json={"resourceType": "Parameters",
                      "parameter": [{"name": "text", "valueString": "Jag vill cykla."}]})
            assert response.status_code == 403, (operation, response.text)

    async def test_a_plan_hidden_from_the_patient_is_never_written_into_or_shown(
        self, http: httpx.AsyncClient, world: World, mint: Mint, secure_services: Services,
    ) -> None:
        agreement = {"system": "https://samplan.se/fhir/CodeSystem/careplan-category",
                     "code": "dokumenterad-overenskommelse"}
        hidden = {"resourceType": "CarePlan", "status": "active", "intent": "plan",
                  "title": "Intern vårdplan", "meta": {"security": [NOPATIENT]},
                  "category": [{"coding": [agreement]}],
                  "subject": {"reference": f"Patient/{world.greta}"}}
        hidden_id = await _create(secure_services, hidden)
        response = await http.post(
            f"/Patient/{world.greta}/$add-activity", headers=bearer(patient_token(mint)),
            json={"resourceType": "Parameters",
                  "parameter": [{"name": "text", "valueString": "Jag går ut varje dag."}]})
        assert response.status_code == 422, response.text  # no agreement of hers to add to
        assert hidden_id not in response.text
        assert "Intern vårdplan" not in response.text
        stored = (await http.get(f"/CarePlan/{hidden_id}", headers=bearer(staff_in(mint)))).json()
        assert "activity" not in stored


class TestFinding06Subscriptions:
    async def test_a_subscription_is_its_writers_organisations_alone(
        self, http: httpx.AsyncClient, world: World, mint: Mint,
    ) -> None:
        owner = bearer(mint("system/*.cruds", org=MUNICIPALITY))
        subscription = {
            "resourceType": "Subscription", "status": "requested", "reason": "Hemtjänst",
            "criteria": "https://samplan.se/fhir/SubscriptionTopic/agreement-changed",
            "_criteria": {"extension": [{
                "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
                       "backport-filter-criteria",
                "valueString": f"CarePlan?patient=Patient/{world.greta}"}]},
            "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/hook",
                        "payload": "application/fhir+json",
                        "header": ["Authorization: Bearer receivers-secret"],
                        "extension": [{"url": "https://samplan.se/fhir/StructureDefinition/"
                                              "subscription-signing-secret",
                                       "valueString": "s" * 32}]}}
        created = await http.post("/Subscription", json=subscription, headers=owner)
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        assert (await http.get(f"/Subscription/{sid}", headers=owner)).status_code == 200
        for other in (bearer(staff_out(mint)), bearer(mint("system/*.cruds", org=UNIT_OUT)),
                      bearer(patient_token(mint))):
            assert (await http.get(f"/Subscription/{sid}", headers=other)).status_code == 404
            listed = (await http.get("/Subscription", headers=other)).json()
            assert listed.get("total", 0) == 0
            assert sid not in str(listed)
            changed = await http.put(f"/Subscription/{sid}", headers=other,
                                     json={**created.json(), "reason": "kapad"})
            assert changed.status_code in (403, 404)
            assert (await http.delete(f"/Subscription/{sid}", headers=other)).status_code \
                in (403, 404)
            for op in ("$status", "$events"):
                response = await http.get(f"/Subscription/{sid}/{op}", headers=other)
                assert response.status_code == 404, (op, response.text)
        assert (await http.get(f"/Subscription/{sid}", headers=owner)).json()["reason"] \
            == "Hemtjänst"


class TestFinding07OnePersonnummer:
    async def test_a_second_patient_with_a_personnummer_is_409(
        self, http: httpx.AsyncClient, world: World, mint: Mint,
    ) -> None:
        del world
        for token in (staff_in(mint), staff_out(mint)):
            response = await http.post("/Patient", headers=bearer(token), json={
                "resourceType": "Patient",
                "identifier": [{"system": PNR_SYSTEM, "value": GRETA_PNR}]})
            assert response.status_code == 409, response.text
            assert outcome(response)["issue"][0]["expression"] == ["Patient.identifier"]
        own = await http.get("/Patient", headers=bearer(patient_token(mint)))
        assert own.json()["total"] == 1  # her token still names one Patient


class TestFinding08ImportedNotes:
    async def test_a_note_id_of_another_unit_answers_nothing_of_its_plan(
        self, http: httpx.AsyncClient, mint: Mint, secure_services: Services,
    ) -> None:
        del secure_services
        note = Path(__file__).resolve().parents[2] / "examples" / "notes" / "region-nested.json"
        body = note.read_bytes()
        json_note = {"Content-Type": "application/json"}
        first = await http.post("/CarePlan/$import-note", content=body, headers=bearer(
            mint("user/*.cruds", user="SE2321000073-1001", care_unit=UNIT_IN), **json_note))
        assert first.status_code == 201, first.text
        plan_id = first.headers["Location"].split("/CarePlan/")[1].split("/")[0]
        again = await http.post("/CarePlan/$import-note", content=body,
                                headers=bearer(staff_out(mint), **json_note))
        assert again.status_code == 409, again.text
        assert plan_id not in again.text
        assert "CarePlan/" not in again.text
        assert "Patient/" not in again.text
        assert "Väga mig" not in again.text


class TestFinding09Cursors:
    async def test_a_patients_paging_links_name_nothing_hidden(
        self, http: httpx.AsyncClient, world: World, mint: Mint, secure_services: Services,
    ) -> None:
        for _ in range(3):
            await _create(secure_services, _goal(world.greta, hidden=True))
            await _create(secure_services, _goal(world.greta))
        token = bearer(patient_token(mint))
        url: str | None = "/Goal?_count=1&_total=accurate"
        seen: list[str] = []
        while url:
            page = (await http.get(url, headers=token)).json()
            seen += [e["resource"]["id"] for e in page.get("entry", [])
                     if e.get("search", {}).get("mode") == "match"]
            links = {link["relation"]: link["url"] for link in page["link"]}
            for link in links.values():
                for value in parse_qs(urlsplit(link).query).get("_page_after", []):
                    decoded = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
                    assert world.hidden_goal.encode() not in decoded
            assert page["total"] == 4
            url = links.get("next")
            url = url[len(str(http.base_url)):] if url else None
        assert len(seen) == 4
        assert world.hidden_goal not in seen


class TestFinding10Oracles:
    async def test_out_of_reach_looks_exactly_like_missing(
        self, http: httpx.AsyncClient, world: World, mint: Mint,
    ) -> None:
        token = patient_token(mint)

        def goal_with(identifier: str) -> dict[str, Any]:
            goal = _goal(world.greta, by_patient=True)
            goal["identifier"] = [{"system": "urn:test", "value": identifier}]
            return goal

        answers = []
        for criteria in (f"identifier={PNR_SYSTEM}|{OLLE_PNR}",
                         f"identifier={PNR_SYSTEM}|191212121212"):
            response = await http.post("/Patient", json={"resourceType": "Patient"},
                                       headers=bearer(token, **{"If-None-Exist": criteria}))
            answers.append((response.status_code, outcome(response)["issue"]))
        assert answers[0] == answers[1]
        assert answers[0][0] == 403
        for item in (f"Goal/{world.hidden_goal}", "Goal/no-such-goal"):
            response = await http.post(
                f"/Patient/{world.greta}/$withdraw", headers=bearer(token),
                json={"resourceType": "Parameters",
                      "parameter": [{"name": "item", "valueString": item}]})
            answers.append((response.status_code,
                            outcome(response)["issue"][0]["diagnostics"]
                            .replace(world.hidden_goal, "X").replace("no-such-goal", "X")))
        assert answers[2] == answers[3]
        assert answers[2][0] == 404
        for careplan in (world.olle_plan, "no-such-plan"):
            response = await http.post(
                f"/Patient/{world.greta}/$add-activity", headers=bearer(token),
                json={"resourceType": "Parameters", "parameter": [
                    {"name": "text", "valueString": "Jag cyklar."},
                    {"name": "careplan", "valueReference": {"reference": f"CarePlan/{careplan}"}}]})
            answers.append((response.status_code,
                            outcome(response)["issue"][0]["diagnostics"]
                            .replace(world.olle_plan, "X").replace("no-such-plan", "X")))
        assert answers[4] == answers[5]
        assert answers[4][0] == 404


class TestFinding11AuditGaps:
    async def test_refusals_and_empty_answers_about_a_patient_are_in_their_log(
        self, http: httpx.AsyncClient, world: World, mint: Mint, secure_services: Services,
    ) -> None:
        before = len(await log_of(secure_services, world.greta))
        outsider = bearer(staff_out(mint))
        response = await post_bundle(http, outsider, {
            "resourceType": "Bundle", "type": "transaction",
            "entry": [{"request": {"method": "GET", "url": f"CarePlan/{world.plan}"}}]})
        assert response.status_code == 404
        empty = await http.get(f"/CarePlan?patient={world.greta}", headers=outsider)
        assert empty.status_code == 200
        assert empty.json()["total"] == 0
        refused = await http.get(f"/CarePlan?patient={world.greta}",
                                 headers=bearer(mint("user/Patient.rs", care_unit=UNIT_OUT)))
        assert refused.status_code == 403
        everything = await log_of(secure_services, world.greta)  # newest first
        entries = everything[: len(everything) - before]
        outcomes = sorted((e["subtype"][0]["code"], e["outcome"]) for e in entries)
        assert outcomes == [("read", "4"), ("search-type", "0"), ("search-type", "4")]


class TestFollowUpDoors:
    """Issue 16's doors: the seven questions' answers and the indicators' counts."""

    PERIOD = "periodStart=2026-01-01&periodEnd=2026-12-31"

    @staticmethod
    def answer(subject: str, questionnaire: str = "sju-fragor-patient") -> dict[str, Any]:
        return {"resourceType": "QuestionnaireResponse", "status": "completed",
                "questionnaire": f"https://samplan.se/fhir/Questionnaire/{questionnaire}",
                "subject": {"reference": subject}, "authored": "2026-11-30T09:00:00+01:00",
                "item": [{"linkId": str(q), "answer": [{"valueBoolean": True}]}
                         for q in range(1, 8)]}

    async def test_a_patient_may_not_count_other_patients_on_any_door(
        self, http: httpx.AsyncClient, server: str, world: World, mint: Mint,
        secure_services: Services,
    ) -> None:
        del world  # there are patients to count
        greta = bearer(patient_token(mint))
        root = server.rsplit("/fhir", 1)[0]
        answers = [
            await http.get(f"/Measure/sju-fragor-patient/$evaluate-measure?{self.PERIOD}",
                           headers=greta),
            await http.get(f"{root}/portal/indicators", headers=greta),
            await http.get(f"{root}/portal/indicators.csv", headers=greta),
        ]
        assert [a.status_code for a in answers] == [403, 403, 403]
        assert all("Indicator" not in a.text or "not for a patient" in a.text
                   for a in answers)
        refused, _ = await audit_store.search(secure_services.gate.engine,
                                              audit_store.AuditSearch(outcomes=("4",)))
        assert sum(1 for r in refused if b"Measure" in r.content) == 3  # each door logs

    async def test_a_patient_answers_only_about_themselves(
        self, http: httpx.AsyncClient, world: World, mint: Mint, secure_services: Services,
    ) -> None:
        greta = bearer(patient_token(mint))

        about_olle = await http.post("/QuestionnaireResponse", headers=greta,
                                     json=self.answer(f"Patient/{world.olle}"))
        in_a_bundle = await post_bundle(http, greta, {
            "resourceType": "Bundle", "type": "transaction", "entry": [{
                "resource": self.answer(f"Patient/{world.olle}"),
                "request": {"method": "POST", "url": "QuestionnaireResponse"}}]})
        about_herself = await http.post("/QuestionnaireResponse", headers=greta,
                                        json=self.answer(f"Patient/{world.greta}"))

        assert (about_olle.status_code, in_a_bundle.status_code) == (403, 403)
        assert about_herself.status_code == 201, about_herself.text
        _, stored = await secure_services.gate.as_service().search("QuestionnaireResponse", [])
        assert [s.resource_id for s in stored.matches] == [about_herself.json()["id"]]

    async def test_staff_answer_only_about_their_own_unit(
        self, http: httpx.AsyncClient, world: World, mint: Mint,
    ) -> None:
        response = await http.post(
            "/QuestionnaireResponse", headers=bearer(staff_out(mint)),
            json=self.answer(f"Organization/{world.unit_in}", "sju-fragor-personal"))

        assert response.status_code == 403

    async def test_counts_include_only_the_patients_the_caller_reaches(
        self, http: httpx.AsyncClient, world: World, mint: Mint,
    ) -> None:
        created = await http.post("/QuestionnaireResponse", headers=bearer(patient_token(mint)),
                                  json=self.answer(f"Patient/{world.greta}"))
        assert created.status_code == 201
        url = f"/Measure/sju-fragor-patient/$evaluate-measure?{self.PERIOD}"

        def answered(report: dict[str, Any]) -> int:
            return sum(p["count"] for g in report["group"] for p in g["population"]
                       if p["code"]["coding"][0]["code"] == "initial-population")

        inside = await http.get(url, headers=bearer(staff_in(mint)))
        outside = await http.get(url, headers=bearer(staff_out(mint)))
        told = await http.get(f"{url}&subject=Organization/{world.unit_in}",
                              headers=bearer(staff_out(mint)))

        assert (inside.status_code, outside.status_code, told.status_code) == (200, 200, 200)
        assert answered(inside.json()) == 7  # Greta's seven answers
        assert answered(outside.json()) == answered(told.json()) == 0
