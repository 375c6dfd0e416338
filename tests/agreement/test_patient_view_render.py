"""The page and the paper, rendered from a view: structure, words, escaping, A4."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from samplan.agreement.patient_render import PortalForms, render_html, render_pdf
from samplan.agreement.patient_view import PatientView, Text, build_view

from .test_patient_view import NOW, activity, make_record

SECTIONS = ["Det här gör jag", "Om jag blir sämre", "Det här gör vården", "Mina kontakter",
            "Nästa steg och min nästa tid", "Mina planer", "Det här är viktigt för mig"]


def view() -> PatientView:
    return build_view(make_record().for_patient(), now=NOW)


def flat(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


class TestThePage:
    def test_the_parts_come_in_the_order_a_patient_thinks(self) -> None:
        page = render_html(view())
        assert re.findall(r"<h2[^>]*>([^<]+)</h2>", page) == SECTIONS
        assert re.findall(r'<nav[^>]*>.*?</nav>', page, re.S)
        nav = flat(re.findall(r"<nav.*?</nav>", page, re.S)[0])
        assert nav.split(" Skriv ut")[0] == " ".join(SECTIONS)

    def test_the_page_is_swedish_with_landmarks_and_no_script(self) -> None:
        page = render_html(view())
        assert page.startswith("<!doctype html>\n<html lang=\"sv\">")
        for landmark in ("<header", "<nav", '<main id="innehall"', "<footer"):
            assert landmark in page
        assert page.count("<h1") == 1
        assert "<script" not in page
        assert 'name="viewport" content="width=device-width, initial-scale=1"' in page
        assert "@media print" in page

    def test_every_text_and_tap_to_call_links_are_shown(self) -> None:
        shown = render_html(view())
        for text in view().texts():
            assert text in shown
        assert '<a class="call" href="tel:+4648012341">Ring 0480-123 41</a>' in shown
        assert "Telefontider: måndag–fredag 08.00–17.00; lördag hela dygnet" in shown
        assert "tisdag 1 december 2026 kl. 13.00" in shown
        assert "Du har lagt till det här" in shown
        assert "Du har skrivit det här" in shown

    def test_what_people_wrote_is_escaped(self) -> None:
        record = make_record(careplans=(
            {**make_record().careplans[0],
             "activity": [activity("patient-responsibility", "<script>alert(1)</script>")]},))
        page = render_html(build_view(record.for_patient(), now=NOW))
        assert "<script>" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page

    def test_forms_only_on_the_portal_page_and_only_own_items_can_be_taken_back(self) -> None:
        assert "<form" not in render_html(view())
        page = render_html(view(), portal=PortalForms(base="/portal/patient/p1",
                                                      notice="Tack! Sparat."))
        assert page.count('action="/portal/patient/p1/withdraw"') == 2  # own activity, own goal
        assert 'value="CarePlan/cp1#pa-1"' in page
        assert 'value="Goal/g-own"' in page
        for form in ("goal", "activity", "message"):
            assert f'action="/portal/patient/p1/{form}"' in page
        assert '<div class="notice" role="status">Tack! Sparat.</div>' in page
        labels = re.findall(r'<label for="([^"]+)"', page)
        for field in labels:
            assert f'id="{field}"' in page

    def test_a_patient_without_an_agreement_is_told_so(self) -> None:
        empty = PatientView(patient_id="p1", name="Greta Holm", personnummer=None,
                            printed="1 januari 2027", important=(Text("Mål", "Orka mer."),))
        page = render_html(empty)
        assert "Du har ingen dokumenterad överenskommelse med vården ännu." in page
        assert "Orka mer." in page


def _weasyprint_available() -> bool:
    try:
        import weasyprint  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def need(available: bool, what: str) -> None:
    if not available:
        if os.environ.get("CI"):
            pytest.fail(f"{what} is required in CI")
        pytest.skip(f"{what} is not installed")


class TestThePaper:
    def test_the_pdf_is_a4_with_every_text_and_the_essentials_on_page_one(
        self, tmp_path: Path
    ) -> None:
        need(_weasyprint_available(), "WeasyPrint (Pango)")
        need(shutil.which("pdftotext") is not None, "pdftotext (poppler-utils)")
        pdf = render_pdf(view())
        assert pdf.startswith(b"%PDF-")
        path = tmp_path / "agreement.pdf"
        path.write_bytes(pdf)
        text = subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"], check=True,
                              capture_output=True, text=True).stdout
        words = " ".join(text.split())
        for agreement_text in view().texts():
            assert " ".join(agreement_text.split()) in words, agreement_text
        first = " ".join(text.split("\f")[0].split())
        for essential in ("Greta Holm", "19450101-1235", "Utskriven 23 november 2026",
                          "Gäller från 20 november 2026 till och med 20 maj 2027",
                          "Mina kontakter", "Din fasta läkarkontakt", "Ring 0480-123 41"):
            assert essential in first, essential
        info = subprocess.run(["pdfinfo", str(path)], check=True, capture_output=True,
                              text=True).stdout
        assert "(A4)" in info
        assert re.search(r"Title:\s+Min överenskommelse med vården – Greta Holm", info)
