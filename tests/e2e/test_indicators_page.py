"""The follow-up page in a real browser (Debian's chromium, driven by Playwright), real server.

A year of a generated region (tests/support/indicator_world.py ``showcase``) is
loaded into a SQLite file, a real ``samplan serve`` answers on it, and the
browser finds every indicator and the seven questions, each chart with its
accessible name, at phone and desktop width; screenshots go to
``test-artifacts/`` (the README's picture, docs/img/indicators.png, is the
desktop one). axe-core checks WCAG 2.1 A/AA: no violation of serious or
critical impact. With JavaScript off, the filter form narrows the page to one
unit. Needs what tests/e2e/test_portal.py needs (chromium, npm for axe-core).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from e2e.test_portal import (  # noqa: F401 (fixtures)
    ARTIFACTS,
    VIEWPORTS,
    axe_script,
    browser,
    chromium,
    serious_violations,
)
from support.indicator_world import UNITS, load, showcase
from support.server import running_server

pytestmark = [pytest.mark.e2e]

PAGE = "/portal/indicators?fran=2026-01&till=2026-12"
HEADINGS = ["Urval", "RUB 5 utan fast läkarkontakt", "RUB 5 med SIP",
            "RUB 4–5 med överenskommelse", "Överenskommelse med nästa tid",
            "Överenskommelse med fast vårdkontakt", "Sju frågor: patienter och medarbetare"]


async def _load(url: str) -> None:
    from samplan.main import create_app
    from samplan.settings import Settings

    app = create_app(Settings(database_url=url, environment="test", auth_enabled=False,
                              public_base_url="http://127.0.0.1/fhir"))
    async with app.router.lifespan_context(app):
        await load(app.state.services, showcase())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real server on a SQLite file holding a year of the showcase region."""
    from samplan.store import migrate

    folder = tmp_path_factory.mktemp("indicators")
    url = f"sqlite+aiosqlite:///{folder / 'indicators.db'}"
    migrate.upgrade(url)
    asyncio.run(_load(url))
    with running_server(url, log_dir=folder) as base:
        yield base.removesuffix("/fhir")


class TestTheFollowUpPage:
    @pytest.mark.parametrize("width", ["phone", "desktop"])
    async def test_the_browser_finds_every_indicator_and_the_seven_questions(
        self, server: str, browser: Any, width: str  # noqa: F811
    ) -> None:
        context = await browser.new_context(viewport=VIEWPORTS[width], locale="sv-SE")
        page = await context.new_page()
        response = await page.goto(server + PAGE)
        assert response is not None
        assert response.status == 200
        assert await page.get_attribute("html", "lang") == "sv"
        assert await page.locator("h1").inner_text() == "Uppföljning av överenskommelser"
        assert await page.locator("main h2").all_inner_texts() == HEADINGS
        charts = page.get_by_role("img")
        assert await charts.count() == 11
        for name in ("RUB 5 med SIP, månad för månad", "RUB 5 med SIP, per enhet",
                     "Andel ja-svar per fråga, patienter och medarbetare"):
            assert await page.get_by_role("img", name=name).is_visible(), name
        assert await page.locator("svg polyline").count() >= 5  # a line through the months
        questions = page.locator("ol.questions > li")
        assert await questions.count() == 7
        assert "Vet du ditt nästa steg?" in await questions.nth(4).inner_text()
        assert "Vet patienterna alltid sitt nästa steg?" in await questions.nth(4).inner_text()
        for landmark in ("banner", "navigation", "main", "contentinfo"):
            assert await page.get_by_role(landmark).count() >= 1, landmark
        assert await page.evaluate("document.scripts.length") == 0
        if width == "phone":  # nothing wider than the phone: no sideways scrolling
            assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / f"indicators-{width}.png"))
        await page.screenshot(path=str(ARTIFACTS / f"indicators-{width}-full.png"),
                              full_page=True)
        if width == "desktop":  # one indicator, and the seven questions (docs/indicators.md)
            await page.locator("#rub45-med-overenskommelse").screenshot(
                path=str(ARTIFACTS / "indicators-one.png"))
            await page.locator("#sju-fragor figure").screenshot(
                path=str(ARTIFACTS / "indicators-questions.png"))
        await context.close()

    async def test_axe_finds_no_serious_wcag_2_1_aa_violation(
        self, server: str, browser: Any, axe_script: str,  # noqa: F811
    ) -> None:
        for width, viewport in VIEWPORTS.items():
            # the page forbids scripts (CSP); the test bypasses that to inject axe-core only
            context = await browser.new_context(viewport=viewport, bypass_csp=True)
            page = await context.new_page()
            await page.goto(server + PAGE, wait_until="domcontentloaded")
            _, bad = await serious_violations(page, axe_script)
            assert bad == [], (width, bad)
            await context.close()

    async def test_one_unit_is_chosen_without_javascript(
        self, server: str, browser: Any  # noqa: F811
    ) -> None:
        context = await browser.new_context(viewport=VIEWPORTS["desktop"],
                                            java_script_enabled=False)
        page = await context.new_page()
        await page.goto(server + PAGE)
        await page.get_by_label("Enhet", exact=True).select_option(label=UNITS["B"][2])
        await page.get_by_role("button", name="Visa").click()
        await page.wait_for_url(f"**enhet={UNITS['B'][0]}**")
        assert UNITS["B"][2] in await page.locator("header.top").inner_text()
        link = page.get_by_role("link", name="Ladda ner siffrorna (CSV)", exact=True)
        assert (await link.get_attribute("href")).endswith(f"enhet={UNITS['B'][0]}")
        await context.close()
