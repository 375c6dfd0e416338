"""The patient's view over HTTP: GET Patient/{id}/$agreement as a FHIR document, page and PDF."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from typing import Any

import httpx
import orjson
import pytest
from fhir.resources.R4B.bundle import Bundle

from samplan.agreement.fhir_read import read_agreement
from support.patient_view import (
    SECRETS,
    add_contact_details,
    add_linked_plan,
    add_professional_only,
    add_upcoming_visit,
    agreement_of,
    import_examples,
    ok,
)

PART_SYSTEM = "https://samplan.se/fhir/CodeSystem/agreement-part"


async def stored_agreement_texts(client: httpx.AsyncClient, patient_id: str) -> list[str]:
    """Every agreement text the patient may see, read back from the store the way
    $export-note reads it (professional-only test content left out)."""
    plan = await agreement_of(client, patient_id)
    found = ok(await client.get("/fhir/CarePlan", params=[
        ("_id", plan["id"]), ("_include", "CarePlan:care-team"), ("_include", "CarePlan:goal"),
        ("_include", "CarePlan:subject"),
    ]))
    resources = [e["resource"] for e in found["entry"]]
    texts = [item.text for item in read_agreement(resources).items]
    return [t for t in texts if not any(secret in t for secret in SECRETS)]


def words(text: str) -> str:
    return " ".join(text.split())


def narrative(bundle: dict[str, Any]) -> str:
    composition = bundle["entry"][0]["resource"]
    divs = " ".join(s["text"]["div"] for s in composition["section"])
    return words(html.unescape(re.sub(r"<[^>]+>", " ", divs)))


async def full_agreement(client: httpx.AsyncClient) -> dict[str, str]:
    """Both examples, each with a booked time, a SIP, the GP's direct line and a goal of
    the patient's own, and professional-only content that must stay hidden."""
    ids = await import_examples(client)
    for patient_id in ids.values():
        plan = await agreement_of(client, patient_id)
        await add_upcoming_visit(client, patient_id, plan["id"])
        await add_linked_plan(client, patient_id)
        await add_contact_details(client, plan)
        ok(await client.post(f"/fhir/Patient/{patient_id}/$add-goal", content=orjson.dumps({
            "resourceType": "Parameters",
            "parameter": [{"name": "text", "valueString": "Kunna gå till affären själv."}],
        })))
        await add_professional_only(client, patient_id)
    return ids


class TestTheDocument:
    @pytest.mark.parametrize("example", ["region", "kalmar"])
    async def test_the_bundle_is_a_document_with_every_part_of_the_agreement(
        self, client: httpx.AsyncClient, example: str
    ) -> None:
        patient_id = (await full_agreement(client))[example]
        response = await client.get(f"/fhir/Patient/{patient_id}/$agreement")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/fhir+json")
        assert response.headers["cache-control"] == "no-store"
        bundle = response.json()
        Bundle.model_validate(bundle)  # R4 structure, bdl-* invariants' elements present
        assert bundle["type"] == "document"
        assert bundle["identifier"]["system"] == "urn:ietf:rfc:3986"
        assert bundle["timestamp"]
        composition = bundle["entry"][0]["resource"]
        assert composition["resourceType"] == "Composition"
        assert composition["subject"]["reference"] == f"Patient/{patient_id}"
        assert [s["code"]["coding"][0]["code"] for s in composition["section"]] == [
            "agreement", "contacts", "planning", "coordinated"]
        assert [s["title"] for s in composition["section"]] == [
            "Överenskommelse", "Fast vårdkontakt", "Överenskommen tid / Fortsatt planering",
            "Sammanhållen planering"]

        kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
        for kind in ("Patient", "CarePlan", "CareTeam", "Practitioner", "PractitionerRole",
                     "Organization", "Appointment", "Goal"):
            assert kind in kinds, kind
        plans = [e["resource"] for e in bundle["entry"]
                 if e["resource"]["resourceType"] == "CarePlan"]
        assert {p.get("title") for p in plans} >= {"SIP med Kalmar kommun"}

        # every word of the agreement, in the resources and in the sections' narrative
        texts = await stored_agreement_texts(client, patient_id)
        assert texts
        raw = orjson.dumps(bundle).decode()
        told = narrative(bundle)
        for text in texts:
            assert orjson.dumps(text).decode()[1:-1] in raw, text
            if not re.fullmatch(r"[\d\- ]+", text):  # a validity is told in words
                assert words(text) in told, text

        # every reference inside the document resolves inside it
        urls = {e["fullUrl"] for e in bundle["entry"]}
        base = bundle["entry"][1]["fullUrl"].rsplit("/", 2)[0]
        for reference in re.findall(r'"reference":"([^"]+)"', raw):
            assert f"{base}/{reference}" in urls or reference in urls, reference

    async def test_nothing_labelled_nopatient_reaches_the_document(
        self, client: httpx.AsyncClient
    ) -> None:
        ids = await full_agreement(client)
        for patient_id in ids.values():
            raw = (await client.get(f"/fhir/Patient/{patient_id}/$agreement")).text
            assert "NOPATIENT" not in raw
            for secret in SECRETS:
                assert secret not in raw, secret
            # not even a reference to the withheld goal
            bundle = orjson.loads(raw)
            plan = next(e["resource"] for e in bundle["entry"]
                        if e["resource"]["resourceType"] == "CarePlan"
                        and e["resource"].get("goal"))
            kept = {e["fullUrl"].split("/fhir/")[-1] for e in bundle["entry"]}
            assert all(g["reference"] in kept for g in plan["goal"])

    async def test_an_unknown_patient_is_404(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/fhir/Patient/nobody/$agreement")
        assert response.status_code == 404
        assert response.json() == {"resourceType": "OperationOutcome", "issue": [{
            "severity": "error", "code": "not-found",
            "diagnostics": "Patient/nobody does not exist.",
        }]}

    async def test_a_patient_without_an_agreement_gets_an_empty_document(
        self, client: httpx.AsyncClient
    ) -> None:
        patient = ok(await client.post("/fhir/Patient", content=orjson.dumps({
            "resourceType": "Patient",
            "identifier": [{"system": "http://electronichealth.se/identifier/personnummer",
                            "value": "191212121212"}],
        })))
        bundle = ok(await client.get(f"/fhir/Patient/{patient['id']}/$agreement"))
        Bundle.model_validate(bundle)
        sections = bundle["entry"][0]["resource"]["section"]
        assert all("emptyReason" in s for s in sections)


class TestContentNegotiation:
    @pytest.mark.parametrize(("accept", "fmt", "expected"), [
        (None, None, "application/fhir+json"),
        ("*/*", None, "application/fhir+json"),
        ("application/json", None, "application/fhir+json"),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", None, "text/html"),
        ("application/pdf", None, "application/pdf"),
        ("application/fhir+json;q=0.5, application/pdf", None, "application/pdf"),
        ("text/html", "json", "application/fhir+json"),
        (None, "html", "text/html"),
        (None, "pdf", "application/pdf"),
    ])
    async def test_accept_and_format_choose_the_representation(
        self, client: httpx.AsyncClient, accept: str | None, fmt: str | None, expected: str
    ) -> None:
        patient_id = (await import_examples(client))["kalmar"]
        headers = {"Accept": accept} if accept else {}
        params = {"_format": fmt} if fmt else {}
        response = await client.get(f"/fhir/Patient/{patient_id}/$agreement",
                                    headers=headers, params=params)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith(expected)
        assert response.headers["cache-control"] == "no-store"

    async def test_an_unoffered_type_is_406(self, client: httpx.AsyncClient) -> None:
        patient_id = (await import_examples(client))["kalmar"]
        response = await client.get(f"/fhir/Patient/{patient_id}/$agreement",
                                    headers={"Accept": "image/png"})
        assert response.status_code == 406
        assert response.json() == {"resourceType": "OperationOutcome", "issue": [{
            "severity": "error", "code": "not-supported",
            "diagnostics": "None of Accept: 'image/png' is offered; the agreement is served "
                           "as application/fhir+json, text/html or application/pdf.",
        }]}


class TestThePage:
    async def test_the_page_has_the_seven_parts_in_order_and_the_texts(
        self, client: httpx.AsyncClient
    ) -> None:
        ids = await full_agreement(client)
        for patient_id in ids.values():
            response = await client.get(f"/fhir/Patient/{patient_id}/$agreement",
                                        headers={"Accept": "text/html"})
            assert response.status_code == 200
            assert "script-src" not in response.headers["content-security-policy"]
            page = response.text
            assert '<html lang="sv">' in page
            assert "<script" not in page
            headings = re.findall(r"<h2[^>]*>([^<]+)</h2>", page)
            assert headings == [
                "Det här gör jag", "Om jag blir sämre", "Det här gör vården", "Mina kontakter",
                "Nästa steg och min nästa tid", "Mina planer", "Det här är viktigt för mig"]
            shown = words(html.unescape(re.sub(r"<[^>]+>", " ", page)))
            for text in await stored_agreement_texts(client, patient_id):
                if not re.fullmatch(r"[\d\- ]+", text):
                    assert words(text) in shown, text
            for secret in SECRETS:
                assert secret not in page
            assert 'href="tel:+4648012341"' in page  # the GP's direct line, from the directory
            assert "måndag–fredag 08.00–12.00" in page
            assert "Min nästa tid" in page
            assert "SIP med Kalmar kommun" in page
            assert "Kunna gå till affären själv." in page

    async def test_the_portal_page_has_the_forms_and_a_missing_patient_is_a_404_page(
        self, client: httpx.AsyncClient
    ) -> None:
        patient_id = (await import_examples(client))["region"]
        page = await client.get(f"/portal/patient/{patient_id}")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        for action in ("goal", "activity", "message"):
            assert f'action="/portal/patient/{patient_id}/{action}"' in page.text
        missing = await client.get("/portal/patient/nobody")
        assert missing.status_code == 404
        assert "Sidan finns inte" in missing.text


def missing(what: str) -> None:
    """Skip here; in CI (.ci/run installs poppler-utils) a missing program is a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI")
    pytest.skip(f"{what} is not installed")


def pdf_text(pdf: bytes, tmp_path: Any) -> str:
    path = tmp_path / "agreement.pdf"
    path.write_bytes(pdf)
    if shutil.which("pdftotext") is None:
        missing("pdftotext (poppler-utils)")
    return subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"], check=True,
                          capture_output=True, text=True).stdout


class TestThePdf:
    async def test_the_pdf_has_every_agreement_text_and_page_one_has_the_essentials(
        self, client: httpx.AsyncClient, tmp_path: Any
    ) -> None:
        ids = await full_agreement(client)
        for name, patient_id in ids.items():
            response = await client.get(f"/fhir/Patient/{patient_id}/$agreement",
                                        headers={"Accept": "application/pdf"})
            assert response.status_code == 200
            assert response.content.startswith(b"%PDF-")
            assert response.headers["content-disposition"].startswith("inline; filename=")
            text = pdf_text(response.content, tmp_path)
            flat = words(text)
            for agreement_text in await stored_agreement_texts(client, patient_id):
                if not re.fullmatch(r"[\d\- ]+", agreement_text):
                    assert words(agreement_text) in flat, (name, agreement_text)
            for secret in SECRETS:
                assert secret not in flat
            first_page = words(text.split("\f")[0])
            bundle = ok(await client.get(f"/fhir/Patient/{patient_id}/$agreement"))
            patient = bundle["entry"][1]["resource"]
            pnr = patient["identifier"][0]["value"]
            assert patient["name"][0]["text"] in first_page
            assert f"{pnr[:8]}-{pnr[8:]}" in first_page
            assert "Utskriven" in first_page
            assert "Giltighet" in first_page
            # The Kalmar template has no validity keyword: its plan has no validity (issue 13).
            assert ("Giltighet ej angiven" if name == "kalmar" else "Gäller från") in first_page
            assert "Mina kontakter" in first_page
            assert "Ring 0480-" in first_page

    async def test_the_pdf_is_a4_and_renders_to_png(
        self, client: httpx.AsyncClient, tmp_path: Any
    ) -> None:
        if shutil.which("pdftoppm") is None or shutil.which("pdfinfo") is None:
            missing("pdftoppm and pdfinfo (poppler-utils)")
        patient_id = (await full_agreement(client))["region"]
        pdf = (await client.get(f"/fhir/Patient/{patient_id}/$agreement",
                                params={"_format": "pdf"})).content
        path = tmp_path / "agreement.pdf"
        path.write_bytes(pdf)
        info = subprocess.run(["pdfinfo", str(path)], check=True, capture_output=True,
                              text=True).stdout
        assert "595.276 x 841.89 pts (A4)" in info
        rendered = subprocess.run(["pdftoppm", "-png", "-r", "50", str(path),
                                   str(tmp_path / "page")], capture_output=True, text=True)
        assert rendered.returncode == 0, rendered.stderr
        assert rendered.stderr == ""
        pages = sorted(tmp_path.glob("page*.png"))
        assert pages
        assert all(p.read_bytes().startswith(b"\x89PNG") for p in pages)
