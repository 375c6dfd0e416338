"""``/portal/indicators`` and its CSV over HTTP: the figures are the measures' figures.

The page's tables and the CSV are compared with the generated population's known
answers, month by month and unit by unit, on both databases (the ``client``
fixture, auth off); who may see them is checked with tokens (``secure_client``).
The page in a real browser: tests/e2e/test_indicators_page.py.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from html.parser import HTMLParser

import httpx
import pytest
from sqlalchemy import select

from samplan.api.deps import Services
from samplan.store.tables import audit_events
from support import read_only_world
from support.indicator_world import UNITS, World, expected, generate, load, month_end

# fixtures: the world loaded once per database for the readers (the token tests at the
# end load their own into the secure app's emptied tables)
client, world = read_only_world.client, read_only_world.world

Mint = Callable[..., str]
TRENDS = ("rub5-utan-fast-lakarkontakt", "rub5-med-sip", "rub45-med-overenskommelse",
          "overenskommelse-med-nasta-tid", "overenskommelse-med-fast-vardkontakt")
MEASURES = (*TRENDS, "sju-fragor-patient", "sju-fragor-personal")
MONTHS = range(1, 7)
SHORT = ("jan", "feb", "mar", "apr", "maj", "jun")
HALF_YEAR = {"fran": "2026-01", "till": "2026-06"}


class Tables(HTMLParser):
    """Every ``<table>``'s caption and rows (cell texts), in order."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[tuple[str, list[list[str]]]] = []
        self._cell: list[str] | None = None
        self._caption: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:  # noqa: ARG002
        if tag == "table":
            self.tables.append(("", []))
        elif tag == "caption":
            self._caption = []
        elif tag == "tr" and self.tables:
            self.tables[-1][1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "caption" and self._caption is not None:
            self.tables[-1] = ("".join(self._caption).strip(), self.tables[-1][1])
            self._caption = None
        elif tag in ("td", "th") and self._cell is not None:
            self.tables[-1][1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        for part in (self._cell, self._caption):
            if part is not None:
                part.append(data)


def tables_of(html: str) -> dict[str, list[list[str]]]:
    parser = Tables()
    parser.feed(html)
    return dict(parser.tables)


def share(num: int, den: int) -> str:
    return f"{round(num / den * 100)} %" if den else "–"


class TestThePageShowsEachIndicatorMonthByMonthAndPerUnit:
    async def test_the_monthly_tables_are_the_measures(
        self, client: httpx.AsyncClient, world: World
    ) -> None:
        response = await client.get("/portal/indicators", params=HALF_YEAR)

        assert response.status_code == 200
        tables = tables_of(response.text)
        titles = {"rub5-utan-fast-lakarkontakt": "RUB 5 utan fast läkarkontakt",
                  "rub5-med-sip": "RUB 5 med SIP",
                  "rub45-med-overenskommelse": "RUB 4–5 med överenskommelse",
                  "overenskommelse-med-nasta-tid": "Överenskommelse med nästa tid",
                  "overenskommelse-med-fast-vardkontakt": "Överenskommelse med fast vårdkontakt"}
        for measure, title in titles.items():
            rows = tables[f"{title}, månad för månad"][1:]
            wanted = []
            for month, short in zip(MONTHS, SHORT, strict=True):
                _, _, den, num = expected(world, measure, f"2026-{month:02d}-01",
                                          month_end(month))[0]
                wanted.append([f"{short} 2026", str(num), str(den), share(num, den)])
            assert rows == wanted, measure

    async def test_the_unit_tables_count_the_whole_span(
        self, client: httpx.AsyncClient, world: World
    ) -> None:
        response = await client.get("/portal/indicators", params=HALF_YEAR)

        rows = tables_of(response.text)[
            "Överenskommelse med nästa tid, per enhet, jan 2026 – jun 2026"][1:]
        wanted = []
        for unit in sorted(UNITS.values(), key=lambda u: u[2]):
            _, _, den, num = expected(world, "overenskommelse-med-nasta-tid", "2026-01-01",
                                      "2026-06-30", units={unit[0]})[0]
            if den:
                wanted.append([unit[2], str(num), str(den), share(num, den)])
        assert rows == wanted

    async def test_the_seven_questions_side_by_side(
        self, client: httpx.AsyncClient, world: World
    ) -> None:
        response = await client.get("/portal/indicators", params=HALF_YEAR)

        patients = expected(world, "sju-fragor-patient", "2026-01-01", "2026-06-30")
        staff = expected(world, "sju-fragor-personal", "2026-01-01", "2026-06-30")
        text = " ".join(response.text.split())
        for (q, _, pden, pnum), (_, _, sden, snum) in zip(patients, staff, strict=True):
            assert (f"<h3>Fråga {q}</h3>" in text), q
            assert f"Patienterna: {share(pnum, pden)} ({pnum} av {pden})" in text
            assert f"Medarbetarna: {share(snum, sden)} ({snum} av {sden})" in text
        assert "Vet du ditt nästa steg?" in text
        assert "Vet patienterna alltid sitt nästa steg?" in text

    async def test_svg_drawn_on_the_server_and_no_script(
        self, client: httpx.AsyncClient, world: World
    ) -> None:
        response = await client.get("/portal/indicators", params=HALF_YEAR)

        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert "script-src" not in response.headers["content-security-policy"]
        assert response.headers["content-security-policy"].startswith("default-src 'none'")
        assert "<script" not in response.text.lower()
        assert response.text.count('<svg xmlns="http://www.w3.org/2000/svg"') == 2 * 5 + 1
        assert response.text.count('role="img"') == 11
        assert world.patients

    async def test_one_unit(self, client: httpx.AsyncClient, world: World) -> None:
        unit = UNITS["A"]

        response = await client.get("/portal/indicators", params={**HALF_YEAR, "enhet": unit[0]})

        rows = tables_of(response.text)["RUB 4–5 med överenskommelse, månad för månad"][1:]
        _, _, den, num = expected(world, "rub45-med-overenskommelse", "2026-03-01",
                                  "2026-03-31", units={unit[0]})[0]
        assert rows[2] == ["mar 2026", str(num), str(den), share(num, den)]
        assert f"jan 2026 – jun 2026 · {unit[2]}" in response.text


class TestTheCsvHasTheSameFigures:
    async def test_one_row_per_indicator_unit_and_month_with_the_measure_first(
        self, client: httpx.AsyncClient, world: World
    ) -> None:
        response = await client.get("/portal/indicators.csv", params=HALF_YEAR)

        assert response.status_code == 200
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert response.headers["content-disposition"] == (
            'attachment; filename="uppfoljning-2026-01-2026-06.csv"')
        rows = list(csv.reader(io.StringIO(response.text)))
        assert rows[0] == ["measure", "group", "unit", "unit_hsa_id", "unit_name", "month",
                           "initial_population", "denominator", "numerator", "score"]
        got = {(r[0], r[1], r[2], r[5]): (int(r[6]), int(r[7]), int(r[8]), r[9])
               for r in rows[1:]}
        assert len(got) == len(rows) - 1
        assert [r[0] for r in rows[1:]] == sorted(
            (r[0] for r in rows[1:]), key=MEASURES.index)
        for measure in MEASURES:
            for month in MONTHS:
                low, high = f"2026-{month:02d}-01", month_end(month)
                for unit in (None, *(u[0] for u in UNITS.values())):
                    units = {unit} if unit else None
                    for group, ip, den, num in expected(world, measure, low, high, units=units):
                        key = (measure, group, unit or "", f"2026-{month:02d}")
                        if unit and key not in got:
                            assert ip == 0, key  # a unit never counted has no rows
                            continue
                        score = f"{num / den:.4f}" if den else ""
                        assert got[key] == (ip, den, num, score), key

    async def test_a_unit_row_names_the_unit(
        self, client: httpx.AsyncClient, world: World
    ) -> None:
        response = await client.get("/portal/indicators.csv", params=HALF_YEAR)

        rows = [r for r in csv.reader(io.StringIO(response.text)) if r[2] == UNITS["B"][0]]
        assert rows
        assert {(r[3], r[4]) for r in rows} == {(UNITS["B"][1], UNITS["B"][2])}
        assert world.staff


class TestBadChoices:
    @pytest.mark.parametrize(("params", "message"), [
        ({"fran": "2026-13"}, "fran must be a month, YYYY-MM, not '2026-13'."),
        ({"fran": "2026-06", "till": "2026-01"}, "till (2026-01) is before fran (2026-06)."),
        ({"fran": "2020-01", "till": "2026-01"}, "At most 36 months at a time, not 73."),
        ({"enhet": "Organization/x"}, "enhet must be an Organization id, not 'Organization/x'."),
    ])
    async def test_the_page_says_what_is_wrong(
        self, client: httpx.AsyncClient, params: dict[str, str], message: str
    ) -> None:
        response = await client.get("/portal/indicators", params=params)

        assert response.status_code == 400
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert "Urvalet går inte att visa" in response.text
        assert message.replace("'", "&#39;") in response.text

    async def test_the_csv_answers_an_operation_outcome(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/portal/indicators.csv", params={"till": "2026-1"})

        assert response.status_code == 400
        assert response.json() == {"resourceType": "OperationOutcome", "issue": [{
            "severity": "error", "code": "value",
            "diagnostics": "till must be a month, YYYY-MM, not '2026-1'.",
            "expression": ["till"]}]}


class TestTheSameTokenRules:
    async def test_a_patient_gets_a_403_page_and_the_csv_a_403(
        self, secure_client: httpx.AsyncClient, secure_services: Services, mint: Mint
    ) -> None:
        await secure_services.gate.as_service().create(
            "Patient", {"resourceType": "Patient", "id": "x"})
        token = {"Authorization": f"Bearer {mint('patient/*.rs', patient='x')}"}

        page = await secure_client.get("/portal/indicators", headers=token)
        data = await secure_client.get("/portal/indicators.csv", headers=token)

        assert page.status_code == 403
        assert "Du har inte tillgång till uppföljningen" in page.text
        assert data.status_code == 403
        assert data.json()["issue"][0]["code"] == "forbidden"

    async def test_staff_see_the_page_and_it_is_logged_once(
        self, secure_client: httpx.AsyncClient, secure_services: Services, mint: Mint
    ) -> None:
        await load(secure_services, generate())
        token = {"Authorization": "Bearer " + mint("user/*.rs", care_unit=UNITS["A"][1])}

        response = await secure_client.get("/portal/indicators", params=HALF_YEAR,
                                           headers=token)

        assert response.status_code == 200
        per_unit = tables_of(response.text)[
            "Överenskommelse med nästa tid, per enhet, jan 2026 – jun 2026"][1:]
        assert [row[0] for row in per_unit] == ["Vårdcentralen Ekbacken"]  # A's reach only
        c = audit_events.c
        async with secure_services.gate.engine.connect() as conn:
            logged = (await conn.execute(select(c.interaction, c.patient_id, c.content).where(
                c.entity_type == "Measure"))).all()
        assert [(r[0], r[1]) for r in logged] == [("search", None)]
        assert b"/portal/indicators?fran=2026-01&till=2026-06" in logged[0][2]
        assert logged[0][2].count(b"Measure/") >= len(MEASURES)
