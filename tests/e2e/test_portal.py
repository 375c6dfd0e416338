"""The patient's page in a real browser (Debian's chromium, driven by Playwright), real server.

Each example agreement is loaded from a running ``samplan serve``; the browser
finds every part and the patient's texts, screenshots the page at phone and
desktop width into ``test-artifacts/`` (git-ignored), and axe-core checks it
against WCAG 2.1 A/AA: no violation of serious or critical impact. A browser
with JavaScript switched off adds a goal through the page's form.

Needs ``/usr/bin/chromium`` (Debian package ``chromium``; never ``playwright
install``) and ``npm`` to fetch axe-core into ``var/test-tools``. Without them
the tests skip, except in CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

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
from support.server import running_server

pytestmark = [pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
TOOLS = ROOT / "var" / "test-tools"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
AXE_VERSION = "4.10.3"
VIEWPORTS = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 900}}
SECTIONS = ["Det här gör jag", "Om jag blir sämre", "Det här gör vården", "Mina kontakter",
            "Nästa steg och min nästa tid", "Mina planer", "Det här är viktigt för mig"]
PATIENT_TEXTS = {
    "region": ["Väga mig varje morgon och skriva upp vikten.",
               "Hälsocentralen följer upp vikt och blodprover och justerar läkemedel.",
               "Karin Ek, distriktssköterska, samordningsansvar. Tel 0480-123 46",
               "Återbesök hos distriktsläkare om 3 månader med blodprover veckan innan.",
               "SIP upprättad 2026-10-01 tillsammans med Kalmar kommun.",
               "Kunna gå till affären själv."],
    "kalmar": ["Ta inhalationer morgon och kväll.",
               "Ringa hemsjukvårdens sjuksköterska dygnet runt, 0480-840 10.",
               "Hemsjukvården kontrollerar syremättnad varje vecka.",
               "Per Ström, specialist i allmänmedicin, Hälsocentralen Lindsdal",
               "Spirometri i januari. Hembesök av läkare inom 6 veckor.",
               "Kunna gå till affären själv."],
}


def unavailable(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI")
    pytest.skip(f"{what} is not available here")


@pytest.fixture(scope="module")
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        unavailable(f"Debian's chromium ({CHROMIUM})")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        unavailable("the playwright Python package")
    return CHROMIUM


async def serious_violations(page: Any, axe_script: str) -> tuple[dict[str, Any], list[Any]]:
    """axe-core's WCAG 2.1 A/AA run on the page, and its serious or critical violations
    (rule, impact, the first three elements)."""
    await page.add_script_tag(content=axe_script)
    result: dict[str, Any] = await page.evaluate("""() => axe.run(document, {
        runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']},
        resultTypes: ['violations'],
    })""")
    bad = [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
        for v in result["violations"] if v["impact"] in ("serious", "critical")
    ]
    return result, bad


@pytest.fixture(scope="module")
def axe_script() -> str:
    """axe-core's browser script, installed with npm into a folder the tests own."""
    script = TOOLS / "node_modules" / "axe-core" / "axe.min.js"
    if not script.exists():
        npm = shutil.which("npm")
        if npm is None:
            unavailable("npm (to install axe-core)")
        assert npm is not None
        TOOLS.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [npm, "install", "--prefix", str(TOOLS), "--no-audit", "--no-fund",
             "--no-save", "--loglevel=error", f"axe-core@{AXE_VERSION}"],
            capture_output=True, text=True, timeout=300,
        )
        if done.returncode != 0 or not script.exists():
            unavailable(f"axe-core from npm ({done.stderr[-500:]})")
    return script.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real server on its own SQLite file (the page is what is tested here, not storage)."""
    folder = tmp_path_factory.mktemp("portal")
    with running_server(f"sqlite+aiosqlite:///{folder / 'portal.db'}",
                        log_dir=folder) as base:
        yield base.removesuffix("/fhir")


@pytest.fixture(scope="module")
async def world(server: str) -> dict[str, str]:
    """Both example agreements, made full: a booked time, a SIP, the GP's direct line, the
    patient's own goal, and professional-only content that must not show."""
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        ids = await import_examples(client)
        for patient_id in ids.values():
            plan = await agreement_of(client, patient_id)
            await add_upcoming_visit(client, patient_id, plan["id"])
            await add_linked_plan(client, patient_id)
            await add_contact_details(client, plan)
            ok(await client.post(
                f"/fhir/Patient/{patient_id}/$add-goal",
                content=b'{"resourceType":"Parameters","parameter":[{"name":"text",'
                        b'"valueString":"Kunna g\xc3\xa5 till aff\xc3\xa4ren sj\xc3\xa4lv."}]}',
                headers={"Content-Type": "application/fhir+json"}))
            await add_professional_only(client, patient_id)
    return ids


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium,
                                                    args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


def words(text: str) -> str:
    return " ".join(text.split())


class TestThePortalPage:
    @pytest.mark.parametrize("example", ["region", "kalmar"])
    @pytest.mark.parametrize("width", ["phone", "desktop"])
    async def test_the_browser_finds_every_part_and_the_patients_texts(
        self, server: str, world: dict[str, str], browser: Any, example: str, width: str
    ) -> None:
        context = await browser.new_context(viewport=VIEWPORTS[width], locale="sv-SE")
        page = await context.new_page()
        response = await page.goto(f"{server}/portal/patient/{world[example]}")
        assert response is not None
        assert response.status == 200
        assert await page.get_attribute("html", "lang") == "sv"
        assert await page.locator("h1").inner_text() == "Min överenskommelse med vården"
        assert await page.locator("main h2").all_inner_texts() == SECTIONS
        for name in SECTIONS:
            heading = page.get_by_role("heading", name=name, level=2)
            assert await heading.is_visible()
        for landmark in ("banner", "navigation", "main", "contentinfo"):
            assert await page.get_by_role(landmark).count() >= 1, landmark
        shown = words(await page.locator("main").inner_text())
        for text in PATIENT_TEXTS[example]:
            assert words(text) in shown, text
        for secret in SECRETS:
            assert secret not in shown
        calls = await page.locator("a.call").evaluate_all("els => els.map(e => e.href)")
        assert calls
        assert all(re.fullmatch(r"tel:\+?\d+", href) for href in calls)
        assert await page.get_by_role("heading", name="Min nästa tid", exact=True).is_visible()
        if width == "phone":  # nothing wider than the phone: no sideways scrolling
            assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / f"portal-{example}-{width}.png"))
        await page.screenshot(path=str(ARTIFACTS / f"portal-{example}-{width}-full.png"),
                              full_page=True)
        await context.close()

    @pytest.mark.parametrize("path", ["/portal/patient/{id}", "/fhir/Patient/{id}/$agreement"])
    async def test_axe_finds_no_serious_wcag_2_1_aa_violation(
        self, server: str, world: dict[str, str], browser: Any, axe_script: str, path: str
    ) -> None:
        for width, viewport in VIEWPORTS.items():
            # the page forbids scripts (CSP); the test bypasses that to inject axe-core only
            context = await browser.new_context(viewport=viewport, bypass_csp=True)
            page = await context.new_page()
            await page.goto(server + path.format(id=world["region"]),
                            wait_until="domcontentloaded")
            result, bad = await serious_violations(page, axe_script)
            assert bad == [], (width, bad)
            assert result["passes"] or result["incomplete"] is not None
            await context.close()

    async def test_a_goal_is_added_through_the_form_without_javascript(
        self, server: str, world: dict[str, str], browser: Any
    ) -> None:
        context = await browser.new_context(viewport=VIEWPORTS["phone"],
                                            java_script_enabled=False)
        page = await context.new_page()
        await page.goto(f"{server}/portal/patient/{world['kalmar']}")
        await page.get_by_text("Lägg till något som är viktigt för dig").click()  # <details>
        await page.get_by_label("Skriv vad som är viktigt för dig").fill(
            "Kunna sjunga i kören igen.")
        await page.get_by_role("button", name="Spara det som är viktigt").click()
        await page.wait_for_url(re.compile(r"sparat=mal"))
        assert await page.get_by_role("status").inner_text() == (
            "Tack! Det som är viktigt för dig är sparat.")
        important = page.locator("#viktigt")
        assert "Kunna sjunga i kören igen." in await important.inner_text()
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "portal-kalmar-after-form.png"))
        await context.close()

    async def test_the_print_stylesheet_leaves_out_navigation_and_forms(
        self, server: str, world: dict[str, str], browser: Any
    ) -> None:
        context = await browser.new_context(viewport=VIEWPORTS["desktop"])
        page = await context.new_page()
        await page.goto(f"{server}/portal/patient/{world['region']}")
        await page.emulate_media(media="print")
        assert await page.locator("nav.toc").is_hidden()
        assert all([await form.is_hidden() for form in await page.locator("form").all()])
        assert await page.locator("main h2").all_inner_texts() == SECTIONS
        pdf = await page.pdf(format="A4")
        assert pdf.startswith(b"%PDF-")
        await context.close()
