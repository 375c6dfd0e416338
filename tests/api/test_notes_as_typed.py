"""Keyword notes as regions really type them, over HTTP (issue 13): nothing lost, nothing
internal shown.

Every test posts a note of its own (or one of ``examples/notes/*-as-typed.*``) to
``$import-note`` on SQLite and PostgreSQL, checks the exact lines the agreement
keeps, and checks that nothing written for professionals reaches the patient's
document, page (and, where it matters, paper).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "notes"
KALMAR_TYPED = (EXAMPLES / "kalmar-as-typed.txt").read_text(encoding="utf-8")
REGION_TYPED = json.loads((EXAMPLES / "region-as-typed.json").read_text(encoding="utf-8"))

INLINE_LABEL = (
    "http://hl7.org/fhir/uv/security-label-ds4p/StructureDefinition/extension-inline-sec-label"
)
NOPATIENT = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "NOPATIENT"}
KIND = "https://samplan.se/fhir/CodeSystem/agreement-activity-kind"

KALMAR_INTERNAL = "Pappan behöver tolk. Orosanmälan gjord 2026-10-02, följs av socialtjänsten."
REGION_INTERNAL = "Dottern har fullmakt. Misstänkt kognitiv svikt, utreds."
INTERNAL_WORDS = ("tolk", "Orosanmälan", "socialtjänsten", "fullmakt", "kognitiv svikt",
                  "Intern anteckning", "HEMLIGT")  # fmt: skip
"""Words only internal remarks hold: none may reach the patient or a relative."""

HEADER = (
    "Besöksanteckning sjuksköterska\n"
    "Patient: 19411012-1235 Ingrid Sjöberg\n"
    "Vårdenhet: Hälsocentralen Kvarnholmen (SE2321000073-2001)\n"
    "Signerad: 2026-11-25 09:40 av Karin Ek, distriktssköterska (SE2321000073-1002)\n\n"
)


# -- helpers ---------------------------------------------------------------------------------


async def post_note(
    client: httpx.AsyncClient, body: str | bytes | dict[str, Any], content_type: str = "",
    **headers: str,
) -> httpx.Response:
    if isinstance(body, dict):
        content, content_type = json.dumps(body, ensure_ascii=False).encode(), "application/json"
    else:
        content = body.encode() if isinstance(body, str) else body
        content_type = content_type or "text/plain"
    return await client.post("/fhir/CarePlan/$import-note", content=content,
                             headers={"Content-Type": content_type, **headers})


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


def plan_id(response: httpx.Response) -> str:
    return response.headers["Location"].split("/CarePlan/")[1].split("/")[0]


async def stored(client: httpx.AsyncClient, careplan_id: str) -> dict[str, Any]:
    """The agreement as stored: CarePlan, CareTeam, Patient, Goals, Appointments."""
    plan = ok(await client.get(f"/fhir/CarePlan/{careplan_id}"))
    team_id = plan["careTeam"][0]["reference"].split("/")[-1]
    appointments = ok(await client.get("/fhir/Appointment", params={
        "based-on": f"CarePlan/{careplan_id}", "_count": "100"}))
    goals = ok(await client.get("/fhir/Goal", params={"_count": "100"}))
    return {
        "plan": plan,
        "team": ok(await client.get(f"/fhir/CareTeam/{team_id}")),
        "patient": ok(await client.get(f"/fhir/{plan['subject']['reference']}")),
        "appointments": [e["resource"] for e in appointments.get("entry", [])],
        "goals": [e["resource"] for e in goals.get("entry", [])],
    }


def activities(plan: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(kind, keyword as written, text) of every activity, in order."""
    return [(a["detail"]["code"]["coding"][0]["code"], a["detail"]["code"]["text"],
             a["detail"]["description"]) for a in plan.get("activity", [])]


def contacts(team: dict[str, Any]) -> list[tuple[str, str]]:
    """(keyword as written, text) of every named contact and contact way."""
    found = [(p["role"][0]["text"], next(e["valueString"] for e in p["extension"]
                                         if e["url"].endswith("/note-text")))
             for p in team.get("participant", [])]
    found += [(next(e["valueString"] for e in n["extension"] if e["url"].endswith("note-keyword")),
               n["text"]) for n in team.get("note", [])]
    return found


def outcome_of(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The issues of the CarePlan entry's ``response.outcome`` in an import's answer."""
    for entry in bundle["entry"]:
        if entry["response"]["location"].startswith("CarePlan/"):
            issues: list[dict[str, Any]] = entry["response"].get("outcome", {}).get("issue", [])
            return issues
    raise AssertionError("no CarePlan entry in the answer")


async def patient_sees(
    client: httpx.AsyncClient, patient_id: str, *, pdf: bool = False, tmp_path: Path | None = None
) -> dict[str, str]:
    """What the patient is given: the document (JSON), the page (HTML), the paper (PDF text)."""
    path = f"/fhir/Patient/{patient_id}/$agreement"
    shown = {
        "document": (await client.get(path)).text,
        "page": (await client.get(path, headers={"Accept": "text/html"})).text,
    }
    if pdf and tmp_path is not None and shutil.which("pdftotext") is not None:
        response = await client.get(path, headers={"Accept": "application/pdf"})
        assert response.status_code == 200
        file = tmp_path / "agreement.pdf"
        file.write_bytes(response.content)
        shown["pdf"] = subprocess.run(["pdftotext", "-enc", "UTF-8", str(file), "-"],
                                      check=True, capture_output=True, text=True).stdout
    return shown


async def assert_nothing_internal_shown(
    client: httpx.AsyncClient, patient_id: str, *, pdf: bool = False,
    tmp_path: Path | None = None, also: tuple[str, ...] = (),
) -> dict[str, str]:
    shown = await patient_sees(client, patient_id, pdf=pdf, tmp_path=tmp_path)
    for where, body in shown.items():
        assert "NOPATIENT" not in body, where
        for word in (*INTERNAL_WORDS, *also):
            assert word not in body, (where, word)
    return shown


async def export_lines(client: httpx.AsyncClient, careplan_id: str) -> list[str]:
    exported = await client.get(f"/fhir/CarePlan/{careplan_id}/$export-note",
                                headers={"Accept": "text/plain"})
    assert exported.status_code == 200, exported.text
    return exported.text.split("\n")


def note(*lines: str, header: str = HEADER) -> str:
    return header + "\n".join(lines) + "\n"


# -- the examples, in both shapes --------------------------------------------------------------

KALMAR_ACTIVITIES = [
    ("patient-responsibility", "Patienten ansvarar för:",
     "Elsa tar sin inhalator morgon och kväll, pappa påminner.\nLäkemedel:\n"
     "Flutide 125 µg, 1 puff två gånger om dagen."),
    ("on-deterioration", "vid  försämring  kan  patienten...",
     "Ringa hemsjukvården. Vid andnöd: ring 112."),
    ("care-responsibility", "Vården ansvarar för",
     "Barnmottagningen följer upp lungfunktionen.\nInformation:\n"
     "Föräldrarna har fått en skriftlig astmaplan."),
    ("next-step", "Fortsatt planering",
     "Ny spirometri i januari.\nÅterbesök 2027-01-20 kl. 08.15, KBT-samtal"),
    ("follow-up", "Tid för uppföljning",
     "tisdag 15 juni 2027 kl. 9.30 på barnmottagningen\n2027-03-15 kl 14.30\nv. 12\n"
     "om 3 månader\n15/3"),
]
KALMAR_CONTACTS = [
    ("Fast vårdkontakt", "Karin Ek, distriktssköterska"),
    ("Patienten kan kontakta vården via...",
     "Telefon 0480-840 00 vardagar 08.00–16.30, telefontid 08.00-09.00.\n"
     "Direktnummer 0480-840 99 (endast för hemsjukvården)."),
]
REGION_ACTIVITIES = [
    ("patient-responsibility", "Patienten ansvarar för",
     "Väga mig varje morgon.\nLäkemedel:\nTa vätskedrivande på morgonen.\nInformation:\n"
     "Jag ringer om vikten ökar 2 kg på tre dagar."),
    ("care-responsibility", "vården ansvarar för.",
     "Hälsocentralen följer upp vikt, blodsocker och njurvärden."),
    ("next-step", "Fortsatt planering", "Ny HbA1c i januari"),
    ("follow-up", "Överenskommen tid",
     "Återbesök 2027-01-20 kl. 08.15, KBT-samtal\n2027-03-15 kl 14.30\nv. 12\nom 3 månader"),
]


class TestTheExamplesAsTyped:
    async def test_the_printed_note_keeps_every_line_and_hides_the_internal_remark(
        self, client: httpx.AsyncClient, tmp_path: Path
    ) -> None:
        response = await post_note(client, KALMAR_TYPED, "text/plain")
        assert response.status_code == 201, response.text
        agreement = await stored(client, plan_id(response))
        assert activities(agreement["plan"]) == KALMAR_ACTIVITIES
        assert contacts(agreement["team"]) == KALMAR_CONTACTS
        (remark,) = agreement["plan"]["note"]
        assert remark == {"extension": [
            {"url": INLINE_LABEL, "valueCoding": NOPATIENT},
            {"url": "https://samplan.se/fhir/StructureDefinition/note-keyword",
             "valueString": "Intern anteckning (visas ej för patienten)"},
        ], "text": KALMAR_INTERNAL}
        # Outside the agreement section: not kept.
        assert "Välkontrollerad" not in json.dumps(agreement, ensure_ascii=False)
        assert "Astma, följs" not in json.dumps(agreement, ensure_ascii=False)
        patient_id = agreement["patient"]["id"]
        shown = await assert_nothing_internal_shown(client, patient_id, pdf=True,
                                                    tmp_path=tmp_path)
        for _, _, text in KALMAR_ACTIVITIES:
            for line in text.split("\n"):
                assert line.replace("–", "&ndash;") in shown["page"] or line in shown["page"]

    async def test_the_json_note_keeps_every_line_and_hides_the_internal_remark(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await post_note(client, REGION_TYPED)
        assert response.status_code == 201, response.text
        agreement = await stored(client, plan_id(response))
        assert activities(agreement["plan"]) == REGION_ACTIVITIES
        assert contacts(agreement["team"]) == [
            ("Fast läkarkontakt i primärvården", "Anna Berg, distriktsläkare"),
            ("Fast omsorgskontakt", "Lena Nord, hemtjänsten. Tel 0480-450 00 mån-fre 08.15-12.00"),
            ("Patienten kan kontakta vården via...",
             "Telefon 0480-123 40 vardagar 08.00–16.30.\n"
             "Sjuksköterskans direktnummer 0480-123 99 (endast för hemsjukvården)."),
        ]
        assert agreement["plan"]["period"]["extension"][1]["valueString"] == (
            "2026-11-25 -- 2027-05-25")
        assert [n["text"] for n in agreement["plan"]["note"]] == [REGION_INTERNAL]
        await assert_nothing_internal_shown(client, agreement["patient"]["id"])

    async def test_the_internal_remark_is_kept_for_care_in_export_note(
        self, client: httpx.AsyncClient
    ) -> None:
        for body, content_type, remark in ((KALMAR_TYPED, "text/plain", KALMAR_INTERNAL),
                                           (REGION_TYPED, "", REGION_INTERNAL)):
            response = await post_note(client, body, content_type)
            lines = await export_lines(client, plan_id(response))
            heading = lines.index("Intern anteckning (visas ej för patienten)")
            assert lines[heading + 1] == remark
            # ... and exporting then importing it again changes nothing
            again = await post_note(client, "\n".join(lines), "text/plain")
            assert again.status_code == 200, again.text
            assert (await stored(client, plan_id(again)))["plan"]["meta"]["versionId"] == "1"


# -- 1. no line is ever lost -------------------------------------------------------------------


class TestNoLineIsLost:
    async def test_a_template_keyword_inside_the_text_is_text(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await post_note(client, note(
            "Aktuellt", "Kontroll av hjärtsvikt.",
            "Överenskommelse",
            "Läkemedel:", "Se läkemedelslistan, inga ändringar.",
            "Patienten ansvarar för", "Väga mig varje morgon.", "Aktuellt",
            "Ta vätskedrivande.",
            "Vården ansvarar för", "Följa upp vikten.",
            "Bedömning", "Stabil.",
        ))
        assert response.status_code == 201, response.text
        agreement = await stored(client, plan_id(response))
        assert agreement["plan"]["description"] == (
            "Läkemedel:\nSe läkemedelslistan, inga ändringar.")
        assert activities(agreement["plan"]) == [
            ("patient-responsibility", "Patienten ansvarar för",
             "Väga mig varje morgon.\nAktuellt\nTa vätskedrivande."),
            ("care-responsibility", "Vården ansvarar för", "Följa upp vikten."),
        ]
        assert [(i["severity"], i["code"], i["expression"]) for i in outcome_of(response.json())
                ] == [("warning", "informational", ["Överenskommelse"]),
                      ("warning", "informational", ["Överenskommelse/Patienten ansvarar för"])]
        await assert_nothing_internal_shown(client, agreement["patient"]["id"],
                                            also=("Stabil.",))

    async def test_a_resigned_note_with_such_a_line_keeps_the_whole_agreement(
        self, client: httpx.AsyncClient
    ) -> None:
        full = ("Överenskommelse", "Patienten ansvarar för", "Väga mig.",
                "Vården ansvarar för", "Följa upp vikten.", "Fortsatt planering", "Blodprov.")
        first = await post_note(client, note("Anteckningsid: n-1", *full))
        resigned = await post_note(client, note(
            "Anteckningsid: n-2", "Överenskommelse", "Information:",
            "Patienten fick broschyr om hjärtsvikt.", *full[1:]))
        assert (first.status_code, resigned.status_code) == (201, 200), resigned.text
        agreement = await stored(client, plan_id(resigned))
        assert agreement["plan"]["meta"]["versionId"] == "2"
        assert agreement["plan"]["description"] == (
            "Information:\nPatienten fick broschyr om hjärtsvikt.")
        assert [text for _, _, text in activities(agreement["plan"])] == [
            "Väga mig.", "Följa upp vikten.", "Blodprov."]
        await assert_nothing_internal_shown(client, agreement["patient"]["id"])

    @pytest.mark.parametrize("shape", ["text", "json"])
    async def test_an_update_that_would_remove_every_activity_is_refused(
        self, client: httpx.AsyncClient, shape: str
    ) -> None:
        first = await post_note(client, note(
            "Anteckningsid: n-1", "Överenskommelse", "Patienten ansvarar för", "Väga mig.",
            "Vården ansvarar för", "Följa upp vikten."))
        if shape == "text":
            body: str | dict[str, Any] = note(
                "Anteckningsid: n-2", "Överenskommelse", "Patienten väger sig och vården",
                "följer upp vikten, som förut.")
        else:
            body = {"noteId": "n-2", "patient": {"personnummer": "19411012-1235"},
                    "careUnit": {"hsaId": "SE2321000073-2001"},
                    "signedAt": "2026-11-26T09:40:00+01:00",
                    "keywords": [{"keyword": "Överenskommelse",
                                  "text": "Patienten väger sig och vården följer upp vikten."}]}
        refused = await post_note(client, body)
        assert refused.status_code == 422, refused.text
        (issue,) = refused.json()["issue"]
        assert (issue["severity"], issue["code"], issue["expression"]) == (
            "error", "invalid", ["Överenskommelse"])
        assert "would remove them all" in issue["diagnostics"]
        agreement = await stored(client, plan_id(first))
        assert agreement["plan"]["meta"]["versionId"] == "1"
        assert [text for _, _, text in activities(agreement["plan"])] == [
            "Väga mig.", "Följa upp vikten."]
        await assert_nothing_internal_shown(client, agreement["patient"]["id"])

    async def test_a_really_empty_section_ends_the_activities(
        self, client: httpx.AsyncClient
    ) -> None:
        await post_note(client, note("Anteckningsid: n-1", "Överenskommelse",
                                     "Patienten ansvarar för", "Väga mig."))
        emptied = await post_note(client, note("Anteckningsid: n-2", "Överenskommelse",
                                               "Bedömning", "Agreement avslutas."))
        assert emptied.status_code == 200, emptied.text
        agreement = await stored(client, plan_id(emptied))
        assert activities(agreement["plan"]) == []
        assert agreement["plan"]["meta"]["versionId"] == "2"
        await assert_nothing_internal_shown(client, agreement["patient"]["id"])

    async def test_lines_under_no_keyword_come_back_as_warnings(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await post_note(client, note(
            "Överenskommelse", "Patienten ansvarar för", "Väga mig.",
            "Signerad: 2026-11-25 09:45 av Karin Ek", "Vidimerad av Anna Berg."))
        assert response.status_code == 201, response.text
        agreement = await stored(client, plan_id(response))
        assert activities(agreement["plan"]) == [
            ("patient-responsibility", "Patienten ansvarar för", "Väga mig.")]
        (issue,) = outcome_of(response.json())
        assert issue["severity"] == "warning"
        assert "'Vidimerad av Anna Berg.'" in issue["diagnostics"]
        await assert_nothing_internal_shown(client, agreement["patient"]["id"])


# -- 2. headings as people type them -------------------------------------------------------------


class TestHeadingsAsTyped:
    LINES = (
        "  ÖVERENSKOMMELSE:",
        "\tpatienten ansvarar för:",
        "Väga mig varje morgon.",
        "VÅRDEN   ANSVARAR  FÖR.",
        "Följa upp vikten.",
        "Patienten kan kontakta vården via...",
        "1177 e-tjänster",
        "Fortsatt planering: Ny HbA1c i januari",
        "Fast vårdkontakt : Karin Ek, distriktssköterska",
    )

    async def test_case_colons_spaces_tabs_dots_and_text_on_the_keyword_line(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await post_note(client, note(*self.LINES))
        assert response.status_code == 201, response.text
        assert outcome_of(response.json()) == []
        agreement = await stored(client, plan_id(response))
        assert activities(agreement["plan"]) == [
            ("patient-responsibility", "patienten ansvarar för:", "Väga mig varje morgon."),
            ("care-responsibility", "VÅRDEN   ANSVARAR  FÖR.", "Följa upp vikten."),
            ("next-step", "Fortsatt planering", "Ny HbA1c i januari"),
        ]
        assert contacts(agreement["team"]) == [
            ("Fast vårdkontakt", "Karin Ek, distriktssköterska"),
            ("Patienten kan kontakta vården via...", "1177 e-tjänster"),
        ]
        await assert_nothing_internal_shown(client, agreement["patient"]["id"])

    async def test_the_same_note_with_any_line_endings_or_trailing_spaces_is_one_note(
        self, client: httpx.AsyncClient
    ) -> None:
        body = note(*self.LINES)
        first = await post_note(client, body)
        variant = first.json()
        for newline in ("\r\n", "\r"):
            spaced = newline.join(line + "  \t" for line in body.split("\n"))
            again = await post_note(client, spaced)
            assert again.status_code == 200, again.text
            assert again.headers["Location"] == first.headers["Location"]
        agreement = await stored(client, plan_id(first))
        assert agreement["plan"]["meta"]["versionId"] == "1"
        extensions = {e["url"].rsplit("/", 1)[1]: e.get("valueString")
                      for e in agreement["plan"]["extension"]}
        assert extensions["keyword-template-variant"] == "region-nested"
        assert variant["type"] == "transaction-response"
        await assert_nothing_internal_shown(client, agreement["patient"]["id"])

    async def test_json_keywords_as_typed(self, client: httpx.AsyncClient) -> None:
        response = await post_note(client, {
            "noteId": "typed-1", "patient": {"personnummer": "19411012-1235"},
            "signedAt": "2026-11-25T09:40:00+01:00",
            "keywords": [{"keyword": "overenskommelse", "children": [
                {"keyword": "PATIENTEN  ANSVARAR FÖR:", "text": "Väga mig."},
                {"keyword": "Fortsatt planering: Ny HbA1c i januari", "text": "Och lipider."},
            ]}]})
        assert response.status_code == 201, response.text
        assert outcome_of(response.json()) == []
        agreement = await stored(client, plan_id(response))
        assert activities(agreement["plan"]) == [
            ("patient-responsibility", "PATIENTEN  ANSVARAR FÖR:", "Väga mig."),
            ("next-step", "Fortsatt planering", "Ny HbA1c i januari\nOch lipider."),
        ]
        await assert_nothing_internal_shown(client, agreement["patient"]["id"])


# -- 3. warnings reach the caller ----------------------------------------------------------------


class TestWarningsReachTheCaller:
    EXPECTED = [
        ("warning", "informational", ["ÖVERENSKOMMELSE/Patienten ansvarar för:"]),
        ("warning", "informational", ["ÖVERENSKOMMELSE/Vården ansvarar för"]),
        ("warning", "value", ["ÖVERENSKOMMELSE/Tid för uppföljning"]),
        ("warning", "value", ["ÖVERENSKOMMELSE/Tid för uppföljning"]),
        ("warning", "value", ["ÖVERENSKOMMELSE/Tid för uppföljning"]),
    ]

    async def test_in_the_careplan_entry_of_the_answer(self, client: httpx.AsyncClient) -> None:
        response = await post_note(client, KALMAR_TYPED, "text/plain")
        issues = outcome_of(response.json())
        assert [(i["severity"], i["code"], i["expression"]) for i in issues] == self.EXPECTED
        assert "line 12 'Läkemedel:'" in issues[0]["diagnostics"]
        assert "'v. 12' as week 12 of 2027" in issues[2]["diagnostics"]
        other = [e for e in response.json()["entry"]
                 if not e["response"]["location"].startswith("CarePlan/")]
        assert all("outcome" not in e["response"] for e in other)
        await assert_nothing_internal_shown(client, (await stored(
            client, plan_id(response)))["patient"]["id"])

    async def test_as_the_body_with_prefer_return_operation_outcome(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await post_note(client, REGION_TYPED, Prefer="return=OperationOutcome")
        assert response.status_code == 201
        assert response.headers["Location"].startswith("http://samplan.test/fhir/CarePlan/")
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert [(i["severity"], i["code"], i["expression"]) for i in outcome["issue"]] == [
            ("warning", "value", ["ÖVERENSKOMMELSE:/Överenskommen tid"]),
            ("warning", "value", ["ÖVERENSKOMMELSE:/Överenskommen tid"]),
        ]
        assert "'om 3 månader' as 2027-02-25" in outcome["issue"][1]["diagnostics"]
        # A note without warnings says so.
        greta = HEADER.replace("19411012-1235 Ingrid Sjöberg", "19450101-1235 Greta Holm")
        clean = await post_note(client, note("Överenskommelse", "Mål", "Gå ut.", header=greta),
                                Prefer="return=OperationOutcome")
        assert [i["severity"] for i in clean.json()["issue"]] == ["information"]
        minimal = await post_note(client, note("Anteckningsid: m", "Överenskommelse", "Mål",
                                               "Gå ut varje dag.", header=greta),
                                  Prefer="return=minimal")
        assert (minimal.status_code, minimal.content) == (200, b"")
        agreement = await stored(client, plan_id(response))
        await assert_nothing_internal_shown(client, agreement["patient"]["id"])


# -- 4. an updated note replaces the plan's times -----------------------------------------------


def _first_note(shape: str) -> str | dict[str, Any]:
    if shape == "text":
        return note("Anteckningsid: upd-1", "Överenskommelse",
                    "Patienten ansvarar för", "Väga mig varje morgon.",
                    "Fortsatt planering", "Återbesök 2031-02-12 kl. 10.00 hos distriktsläkaren",
                    "Överenskommen tid", "2031-01-12 09:30, Hälsocentralen Kvarnholmen",
                    "Sammanhållen planering", "SIP med kommunen.",
                    "Mål", "Klara trappan hemma.")
    return {"noteId": "upd-1", "patient": {"personnummer": "19411012-1235"},
            "careUnit": {"hsaId": "SE2321000073-2001", "name": "Hälsocentralen Kvarnholmen"},
            "signedAt": "2026-11-25T09:40:00+01:00",
            "keywords": [{"keyword": "Överenskommelse", "children": [
                {"keyword": "Patienten ansvarar för", "text": "Väga mig varje morgon."},
                {"keyword": "Fortsatt planering",
                 "text": "Återbesök 2031-02-12 kl. 10.00 hos distriktsläkaren", "children": [
                    {"keyword": "Överenskommen tid",
                     "text": "2031-01-12 09:30, Hälsocentralen Kvarnholmen"},
                    {"keyword": "Sammanhållen planering", "text": "SIP med kommunen.",
                     "children": [{"keyword": "Mål", "text": "Klara trappan hemma."}]}]}]}]}


def _second_note(shape: str, note_id: str = "upd-2", *, time: str = "") -> str | dict[str, Any]:
    """Only the February time is left; the goal and the January time are gone."""
    if shape == "text":
        return note(f"Anteckningsid: {note_id}", "Överenskommelse",
                    "Patienten ansvarar för", "Väga mig varje morgon och kväll.",
                    "Fortsatt planering", "Återbesök 2031-02-12 kl. 10.00 hos distriktsläkaren",
                    *(("Överenskommen tid", time) if time else ()))
    children: list[dict[str, Any]] = (
        [{"keyword": "Överenskommen tid", "text": time}] if time else [])
    return {"noteId": note_id, "patient": {"personnummer": "19411012-1235"},
            "careUnit": {"hsaId": "SE2321000073-2001", "name": "Hälsocentralen Kvarnholmen"},
            "signedAt": "2026-12-01T09:40:00+01:00",
            "keywords": [{"keyword": "Överenskommelse", "children": [
                {"keyword": "Patienten ansvarar för", "text": "Väga mig varje morgon och kväll."},
                {"keyword": "Fortsatt planering",
                 "text": "Återbesök 2031-02-12 kl. 10.00 hos distriktsläkaren",
                 "children": children}]}]}


class TestAnUpdatedNoteReplacesThePlansTimes:
    @pytest.mark.parametrize("shape", ["text", "json"])
    async def test_times_and_goals_no_longer_listed_are_cancelled_the_patients_own_stay(
        self, client: httpx.AsyncClient, shape: str
    ) -> None:
        first = await post_note(client, _first_note(shape))
        assert first.status_code == 201, first.text
        before = await stored(client, plan_id(first))
        patient_id = before["patient"]["id"]
        assert sorted(a["start"] for a in before["appointments"]) == [
            "2031-01-12T09:30:00+01:00", "2031-02-12T10:00:00+01:00"]
        # The patient adds a goal and an activity of their own (co-creation).
        for operation, text in (("$add-goal", "Kunna gå till affären själv."),
                                ("$add-activity", "Jag går en promenad varje dag.")):
            ok(await client.post(f"/fhir/Patient/{patient_id}/{operation}", content=json.dumps(
                {"resourceType": "Parameters",
                 "parameter": [{"name": "text", "valueString": text}]})))
        own_activity = next(a for a in (await stored(client, plan_id(first)))["plan"]["activity"]
                            if a.get("id", "").startswith("pa-"))

        second = await post_note(client, _second_note(shape))
        assert second.status_code == 200, second.text
        after = await stored(client, plan_id(second))
        status = {a["start"]: a["status"] for a in after["appointments"]}
        assert status == {"2031-01-12T09:30:00+01:00": "cancelled",
                          "2031-02-12T10:00:00+01:00": "booked"}
        cancelled = next(a for a in after["appointments"] if a["status"] == "cancelled")
        assert cancelled["description"] == "2031-01-12 09:30, Hälsocentralen Kvarnholmen"
        history = ok(await client.get(f"/fhir/Appointment/{cancelled['id']}/_history"))
        assert [e["resource"]["status"] for e in history["entry"]] == ["cancelled", "booked"]
        goals = {g["description"]["text"]: g["lifecycleStatus"] for g in after["goals"]}
        assert goals == {"Klara trappan hemma.": "cancelled",
                         "Kunna gå till affären själv.": "active"}
        own_goal = next(g for g in after["goals"] if g["lifecycleStatus"] == "active")
        assert {"reference": f"Goal/{own_goal['id']}"} in after["plan"]["goal"]
        assert activities(after["plan"]) == [
            ("patient-responsibility", "Patienten ansvarar för",
             "Väga mig varje morgon och kväll."),
            ("next-step", "Fortsatt planering",
             "Återbesök 2031-02-12 kl. 10.00 hos distriktsläkaren"),
            ("patient-responsibility", "Patienten ansvarar för", "Jag går en promenad varje dag."),
        ]
        assert after["plan"]["activity"][-1] == own_activity
        told = [i for i in outcome_of(second.json()) if i["severity"] == "information"]
        assert [i["expression"] for i in told] == [["Goal"], ["Appointment"]]
        # The patient's next time is the earliest one still booked.
        shown = await assert_nothing_internal_shown(client, patient_id)
        page = shown["page"]
        next_time = page.split("Min nästa tid", 1)[1].split("</div>", 1)[0]
        assert "onsdag 12 februari 2031 kl. 10.00" in next_time
        assert "12 januari 2031" not in page
        assert "Klara trappan hemma." not in page
        assert "Kunna gå till affären själv." in page
        assert "Jag går en promenad varje dag." in page

    @pytest.mark.parametrize("shape", ["text", "json"])
    async def test_a_cancelled_time_listed_again_is_booked_again(
        self, client: httpx.AsyncClient, shape: str
    ) -> None:
        await post_note(client, _first_note(shape))
        await post_note(client, _second_note(shape))
        third = await post_note(client, _second_note(
            shape, "upd-3", time="2031-01-12 09:30, Hälsocentralen Kvarnholmen"))
        assert third.status_code == 200, third.text
        after = await stored(client, plan_id(third))
        assert {a["start"]: a["status"] for a in after["appointments"]} == {
            "2031-01-12T09:30:00+01:00": "booked", "2031-02-12T10:00:00+01:00": "booked"}
        assert len(after["appointments"]) == 2
        await assert_nothing_internal_shown(client, after["patient"]["id"])


# -- 5. times anywhere in the line ----------------------------------------------------------------


class TestTimesAnywhereInTheLine:
    @pytest.mark.parametrize("shape", ["text", "json"])
    async def test_times_become_appointments_in_swedish_time(
        self, client: httpx.AsyncClient, shape: str
    ) -> None:
        body: str | dict[str, Any] = KALMAR_TYPED if shape == "text" else REGION_TYPED
        response = await post_note(client, body, "text/plain" if shape == "text" else "")
        agreement = await stored(client, plan_id(response))
        booked = sorted((a["start"], a["description"], a["participant"][1:])
                        for a in agreement["appointments"])
        expected = [
            ("2027-01-20T08:15:00+01:00", "Återbesök 2027-01-20 kl. 08.15, KBT-samtal", []),
            ("2027-03-15T14:30:00+01:00", "2027-03-15 kl 14.30", []),
        ]
        if shape == "text":
            expected.append(("2027-06-15T09:30:00+02:00",
                             "tisdag 15 juni 2027 kl. 9.30 på barnmottagningen",
                             [{"actor": {"display": "barnmottagningen"}, "status": "accepted"}]))
        assert booked == expected
        await assert_nothing_internal_shown(client, agreement["patient"]["id"])

    @pytest.mark.parametrize("shape", ["text", "json"])
    async def test_weeks_months_and_days_without_year_are_planned_from_the_signing_date(
        self, client: httpx.AsyncClient, shape: str
    ) -> None:
        lines = ["v. 12", "om 3 månader", "15/3"]
        if shape == "text":
            body: str | dict[str, Any] = note("Överenskommelse", "Tid för uppföljning", *lines)
        else:
            body = {"patient": {"personnummer": "19411012-1235"},
                    "signedAt": "2026-11-25T09:40:00+01:00",
                    "keywords": [{"keyword": "Överenskommelse", "children": [
                        {"keyword": "Tid för uppföljning", "text": "\n".join(lines)}]}]}
        response = await post_note(client, body)
        assert response.status_code == 201, response.text
        agreement = await stored(client, plan_id(response))
        assert agreement["appointments"] == []
        (follow_up,) = agreement["plan"]["activity"]
        assert follow_up["detail"]["description"] == "v. 12\nom 3 månader\n15/3"
        assert follow_up["detail"]["status"] == "not-started"
        assert follow_up["detail"]["scheduledPeriod"] == {"start": "2027-02-25",
                                                          "end": "2027-02-25"}
        diagnostics = [i["diagnostics"] for i in outcome_of(response.json())]
        assert [d.split(" is planned for ", 1)[1].split(";")[0] for d in diagnostics] == [
            "'v. 12' as week 12 of 2027",
            "'om 3 månader' as 2027-02-25, from the note's date",
            "'15/3' as 2027-03-15, the first after the note's date",
        ]
        shown = await assert_nothing_internal_shown(client, agreement["patient"]["id"])
        assert "om 3 månader" in shown["page"]


# -- 6. telephone hours are not numbers ---------------------------------------------------------


class TestTelephoneHours:
    @pytest.mark.parametrize("shape", ["text", "json"])
    async def test_hours_are_text_beside_the_number_and_professional_numbers_have_no_button(
        self, client: httpx.AsyncClient, shape: str, tmp_path: Path
    ) -> None:
        body: str | dict[str, Any] = KALMAR_TYPED if shape == "text" else REGION_TYPED
        response = await post_note(client, body, "text/plain" if shape == "text" else "")
        agreement = await stored(client, plan_id(response))
        public, professional = ("0480-840 00", "0480-840 99") if shape == "text" else (
            "0480-123 40", "0480-123 99")
        label = [{"url": INLINE_LABEL, "valueCoding": NOPATIENT}]
        assert agreement["team"]["telecom"] == [
            {"system": "phone", "value": public},
            {"system": "phone", "value": professional, "extension": label},
        ]
        shown = await assert_nothing_internal_shown(client, agreement["patient"]["id"],
                                                    pdf=shape == "text", tmp_path=tmp_path)
        page = shown["page"]
        for hours in ("08001630", "08000900", "08151200", "0800", "+46800"):
            assert f"tel:{hours}" not in page
            assert f"tel:+46{hours}" not in page
        assert not re.search(r'href="tel:\+4680', page)
        digits = "".join(ch for ch in professional if ch.isdigit())[1:]
        assert f"tel:+46{digits}" not in page
        public_digits = "".join(ch for ch in public if ch.isdigit())[1:]
        call = page.split(f'href="tel:+46{public_digits}"', 1)[1].split("</li>", 1)[0]
        assert "Ring " + public in call
        assert "vardagar 08.00–16.30" in call
        document = json.loads(shown["document"])
        telecoms = [r["resource"].get("telecom", []) for r in document["entry"]]
        assert professional not in json.dumps(telecoms, ensure_ascii=False)
        if "pdf" in shown:
            assert "Ring " + public in shown["pdf"]
            assert "Ring " + professional not in shown["pdf"]


# -- 7. internal remarks stay internal ----------------------------------------------------------


class TestInternalRemarks:
    @pytest.mark.parametrize("shape", ["text", "json"])
    async def test_never_merged_into_the_contact_before_it(
        self, client: httpx.AsyncClient, shape: str
    ) -> None:
        secret = "HEMLIGT: hotfull anhörig, träffa patienten ensam."
        if shape == "text":
            body: str | dict[str, Any] = note(
                "Överenskommelse", "Fast vårdkontakt", "Karin Ek, distriktssköterska",
                "INTERN ANTECKNING (visas ej för patienten):", secret,
                "Mål", "Klara trappan.", "Internt: HEMLIGT andra raden.")
        else:
            body = {"patient": {"personnummer": "19411012-1235"},
                    "signedAt": "2026-11-25T09:40:00+01:00", "keywords": [
                {"keyword": "Överenskommelse", "children": [
                    {"keyword": "Fast vårdkontakt", "text": "Karin Ek, distriktssköterska",
                     "children": [{"keyword": "Intern anteckning", "text": secret}]},
                    {"keyword": "Mål", "text": "Klara trappan."},
                    {"keyword": "Internt", "text": "HEMLIGT andra raden."}]}]}
        response = await post_note(client, body)
        assert response.status_code == 201, response.text
        agreement = await stored(client, plan_id(response))
        assert contacts(agreement["team"]) == [("Fast vårdkontakt",
                                                "Karin Ek, distriktssköterska")]
        assert [(n["extension"][0], n["text"]) for n in agreement["plan"]["note"]] == [
            ({"url": INLINE_LABEL, "valueCoding": NOPATIENT}, secret),
            ({"url": INLINE_LABEL, "valueCoding": NOPATIENT}, "HEMLIGT andra raden."),
        ]
        assert [g["description"]["text"] for g in agreement["goals"]] == ["Klara trappan."]
        assert "HEMLIGT" not in json.dumps(agreement["team"], ensure_ascii=False)
        shown = await assert_nothing_internal_shown(client, agreement["patient"]["id"],
                                                    also=("hotfull",))
        assert "Klara trappan." in shown["page"]
        lines = await export_lines(client, plan_id(response))
        assert secret in lines
        assert "HEMLIGT andra raden." in lines


# -- 8. the patient as identified ---------------------------------------------------------------


class TestThePatientAsIdentified:
    async def test_birth_date_and_the_kind_of_number(
        self, client: httpx.AsyncClient, tmp_path: Path
    ) -> None:
        response = await post_note(client, KALMAR_TYPED, "text/plain")
        agreement = await stored(client, plan_id(response))
        patient = agreement["patient"]
        assert patient["birthDate"] == "2016-03-15"
        assert patient["identifier"] == [{
            "system": "http://electronichealth.se/identifier/samordningsnummer",
            "value": "201603751239"}]
        shown = await assert_nothing_internal_shown(client, patient["id"], pdf=True,
                                                    tmp_path=tmp_path)
        assert "samordningsnummer 20160375-1239" in shown["page"]
        assert "ersonnummer" not in shown["page"]
        if "pdf" in shown:
            assert "Samordningsnummer" in shown["pdf"]
            assert "Personnummer" not in shown["pdf"]
        adult = await post_note(client, REGION_TYPED)
        assert (await stored(client, plan_id(adult)))["patient"]["birthDate"] == "1941-10-12"


# -- 9. validity as written ---------------------------------------------------------------------


class TestValidityAsWritten:
    async def test_a_template_without_validity_invents_none(
        self, client: httpx.AsyncClient, tmp_path: Path
    ) -> None:
        response = await post_note(client, KALMAR_TYPED, "text/plain")
        agreement = await stored(client, plan_id(response))
        assert agreement["plan"]["period"] == {"start": "2026-11-18"}  # the note's date only
        shown = await assert_nothing_internal_shown(client, agreement["patient"]["id"],
                                                    pdf=True, tmp_path=tmp_path)
        assert "tills vidare" not in shown["page"]
        assert "Gäller" not in shown["page"]
        if "pdf" in shown:
            assert "Giltighet ej angiven" in " ".join(shown["pdf"].split())
            assert "tills vidare" not in shown["pdf"]
        # A validity that is written is shown as written.
        written = await post_note(client, note("Överenskommelse", "Giltighet", "tillsvidare"))
        shown = await patient_sees(client, (await stored(client, plan_id(written)))[
            "patient"]["id"])
        assert "Gäller från 25 november 2026 tills vidare" in shown["page"]


# -- 10. declared charsets ------------------------------------------------------------------------


class TestDeclaredCharsets:
    @pytest.mark.parametrize(("charset", "codec"), [
        ("windows-1252", "cp1252"), ("iso-8859-1", "cp1252"), ("ISO-8859-1", "latin-1")])
    async def test_decoded_as_declared(
        self, client: httpx.AsyncClient, charset: str, codec: str
    ) -> None:
        body = KALMAR_TYPED if codec == "cp1252" else KALMAR_TYPED.replace("–", "-")
        response = await post_note(client, body.encode(codec), f"text/plain; charset={charset}")
        assert response.status_code == 201, response.text
        agreement = await stored(client, plan_id(response))
        assert activities(agreement["plan"]) == KALMAR_ACTIVITIES
        assert agreement["patient"]["name"][0]["text"] == "Elsa Nyberg"
        await assert_nothing_internal_shown(client, agreement["patient"]["id"])

    async def test_us_ascii(self, client: httpx.AsyncClient) -> None:
        header = "Patient: 19411012-1235 Ingrid Sjoberg\nSignerad: 2026-11-25 09:40\n\n"
        body = note("Overenskommelse", "Patienten ansvarar for", "Vaga mig.",
                    header=header).encode("ascii")
        response = await post_note(client, body, "text/plain; charset=us-ascii")
        assert response.status_code == 201, response.text
        agreement = await stored(client, plan_id(response))
        assert activities(agreement["plan"]) == [
            ("patient-responsibility", "Patienten ansvarar for", "Vaga mig.")]
        await assert_nothing_internal_shown(client, agreement["patient"]["id"])

    async def test_undeclared_bytes_that_are_not_utf8_keep_the_clear_400(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await post_note(client, KALMAR_TYPED.encode("cp1252"), "text/plain")
        assert response.status_code == 400
        (issue,) = response.json()["issue"]
        assert issue["diagnostics"].startswith("the note is not UTF-8: byte 0xf6 at offset")
        declared = await post_note(client, "Överenskommelse".encode(),
                                   "text/plain; charset=us-ascii")
        assert declared.status_code == 400
        assert declared.json()["issue"][0]["expression"] == ["Content-Type"]
        unknown = await post_note(client, b"x", "text/plain; charset=koi8-r")
        assert unknown.status_code == 415


class TestAGuardianReachesTheChild:
    """Item 8 with the access rules on: the birth date from the samordningsnummer is what lets
    a guardian of a child under 13 in, and a relative never sees what is internal."""

    async def test_a_guardian_sees_the_childs_agreement_and_nothing_internal(
        self, secure_client: httpx.AsyncClient, secure_services: Any, mint: Any
    ) -> None:
        staff = mint("user/*.cruds", user="SE2321000073-1002", care_unit="SE2321000073-2002")
        imported = await secure_client.post(
            "/fhir/CarePlan/$import-note", content=KALMAR_TYPED.encode(),
            headers={"Authorization": f"Bearer {staff}", "Content-Type": "text/plain"})
        assert imported.status_code == 201, imported.text
        plan = json.loads((await secure_services.gate.as_service().read(
            "CarePlan", plan_id(imported))).content)
        child = plan["subject"]["reference"].split("/")[1]
        guardian = (await secure_services.gate.as_service().create("RelatedPerson", {
            "resourceType": "RelatedPerson", "patient": {"reference": f"Patient/{child}"},
            "relationship": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                "code": "FTH"}]}]})).stored.resource_id
        token = mint("patient/*.rs", patient=child, fhir_user=f"RelatedPerson/{guardian}")
        headers = {"Authorization": f"Bearer {token}"}
        path = f"/fhir/Patient/{child}/$agreement"
        page = await secure_client.get(path, headers={**headers, "Accept": "text/html"})
        document = await secure_client.get(path, headers=headers)
        patient = await secure_client.get(f"/fhir/Patient/{child}", headers=headers)
        assert (page.status_code, document.status_code, patient.status_code) == (200, 200, 200)
        assert patient.json()["birthDate"] == "2016-03-15"
        assert "samordningsnummer 20160375-1239" in page.text
        for body in (page.text, document.text):
            assert "Elsa tar sin inhalator morgon och kväll, pappa påminner." in body
            assert "NOPATIENT" not in body
            for word in INTERNAL_WORDS:
                assert word not in body

    async def test_a_relatives_fhir_reads_leave_out_what_is_labelled(
        self, secure_client: httpx.AsyncClient, secure_services: Any, mint: Any
    ) -> None:
        staff = mint("user/*.cruds", user="SE2321000073-1002", care_unit="SE2321000073-2002")
        imported = await secure_client.post(
            "/fhir/CarePlan/$import-note", content=KALMAR_TYPED.encode(),
            headers={"Authorization": f"Bearer {staff}", "Content-Type": "text/plain"})
        plan = json.loads((await secure_services.gate.as_service().read(
            "CarePlan", plan_id(imported))).content)
        child = plan["subject"]["reference"].split("/")[1]
        guardian = (await secure_services.gate.as_service().create("RelatedPerson", {
            "resourceType": "RelatedPerson", "patient": {"reference": f"Patient/{child}"},
            "relationship": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                "code": "MTH"}]}]})).stored.resource_id
        token = mint("patient/*.rs", patient=child, fhir_user=f"RelatedPerson/{guardian}")
        headers = {"Authorization": f"Bearer {token}"}
        careplan = await secure_client.get(f"/fhir/CarePlan/{plan['id']}", headers=headers)
        careteam = await secure_client.get(f"/fhir/{plan['careTeam'][0]['reference']}",
                                           headers=headers)
        assert (careplan.status_code, careteam.status_code) == (200, 200)
        for body in (careplan.text, careteam.text):
            assert "NOPATIENT" not in body
            assert "0480-840 99" not in json.dumps(json.loads(body).get("telecom"))
            for word in INTERNAL_WORDS:
                assert word not in body
