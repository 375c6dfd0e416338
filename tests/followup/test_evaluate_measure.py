"""``GET /fhir/Measure/{id}/$evaluate-measure`` on a generated population with known answers.

The population (tests/support/indicator_world.py) is drawn from a seed; what
each measure must count is computed from the same facts in plain Python. Every
test runs on SQLite and on PostgreSQL (the ``client`` fixture), with auth off:
the caller reaches everyone (reach is tested in tests/security/test_http_indicators.py).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fhir.resources.R4B import get_fhir_model_class

from support import read_only_world
from support.indicator_world import (
    PROVIDER,
    UNITS,
    World,
    counts,
    expected,
    month_end,
)

# fixtures: the world loaded once per database for this module, which only reads it
client, world = read_only_world.client, read_only_world.world

MEASURES = (
    "rub5-utan-fast-lakarkontakt",
    "rub5-med-sip",
    "rub45-med-overenskommelse",
    "overenskommelse-med-nasta-tid",
    "overenskommelse-med-fast-vardkontakt",
    "sju-fragor-patient",
    "sju-fragor-personal",
)
POPULATION = "http://terminology.hl7.org/CodeSystem/measure-population"
BASE = "https://samplan.se/fhir"


async def evaluate(client: httpx.AsyncClient, measure: str, **params: str) -> dict[str, Any]:
    response = await client.get(f"/fhir/Measure/{measure}/$evaluate-measure", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


class TestEveryMeasureCountsTheKnownAnswer:
    @pytest.mark.parametrize("measure", MEASURES)
    async def test_over_the_first_half_year(
        self, client: httpx.AsyncClient, world: World, measure: str
    ) -> None:
        report = await evaluate(client, measure, periodStart="2026-01", periodEnd="2026-06")

        assert counts(report) == expected(world, measure, "2026-01-01", "2026-06-30")

    @pytest.mark.parametrize("measure", MEASURES)
    async def test_month_by_month(
        self, client: httpx.AsyncClient, world: World, measure: str
    ) -> None:
        for month in (2, 3, 5):
            report = await evaluate(client, measure, periodStart=f"2026-{month:02d}",
                                    periodEnd=f"2026-{month:02d}")

            assert counts(report) == expected(world, measure, f"2026-{month:02d}-01",
                                              month_end(month)), month

    async def test_the_population_is_not_trivial(self, world: World) -> None:
        """Every measure has someone in its denominator and someone out of its numerator."""
        for measure in MEASURES:
            groups = expected(world, measure, "2026-01-01", "2026-06-30")
            assert all(den > 0 for _, _, den, _ in groups), measure
            assert any(num < den for _, _, den, num in groups), measure
            assert any(ip > den for _, ip, den, _ in groups) or not measure.startswith("rub")


class TestSubjectNarrowsToAUnitOrProvider:
    @pytest.mark.parametrize("measure", MEASURES)
    async def test_one_care_unit(
        self, client: httpx.AsyncClient, world: World, measure: str
    ) -> None:
        unit = UNITS["B"][0]  # some of B's patients are B's through a PractitionerRole
        report = await evaluate(client, measure, periodStart="2026", periodEnd="2026",
                                subject=f"Organization/{unit}")

        assert counts(report) == expected(world, measure, "2026-01-01", "2026-12-31",
                                          units={unit})

    @pytest.mark.parametrize("measure", MEASURES)
    async def test_a_care_provider_counts_its_units(
        self, client: httpx.AsyncClient, world: World, measure: str
    ) -> None:
        report = await evaluate(client, measure, periodStart="2026", periodEnd="2026",
                                subject=f"Organization/{PROVIDER[0]}")

        assert counts(report) == expected(world, measure, "2026-01-01", "2026-12-31",
                                          units={UNITS["A"][0], UNITS["B"][0]})


@pytest.mark.usefixtures("world")
class TestTheReportIsASummaryMeasureReport:
    async def test_shape(self, client: httpx.AsyncClient) -> None:
        report = await evaluate(client, "rub5-med-sip", periodStart="2026-01-01",
                                periodEnd="2026-06-30", subject=f"Organization/{UNITS['A'][0]}")
        ip, den, num = counts(report)[0][1:]

        get_fhir_model_class("MeasureReport").model_validate(report)  # valid R4(B)
        assert report["resourceType"] == "MeasureReport"
        assert (report["status"], report["type"]) == ("complete", "summary")
        assert report["measure"] == f"{BASE}/Measure/rub5-med-sip|0.1.0"
        assert report["period"] == {"start": "2026-01-01", "end": "2026-06-30"}
        assert report["extension"] == [{
            "url": "http://hl7.org/fhir/5.0/StructureDefinition/extension-MeasureReport.subject",
            "valueReference": {"reference": f"Organization/{UNITS['A'][0]}"}}]
        assert report["group"] == [{
            "code": {"coding": [{"system": f"{BASE}/Measure/rub5-med-sip",
                                 "code": "rub5-med-sip"}], "text": "RUB 5 med SIP"},
            "population": [
                {"code": {"coding": [{"system": POPULATION, "code": "initial-population"}]},
                 "count": ip},
                {"code": {"coding": [{"system": POPULATION, "code": "denominator"}]},
                 "count": den},
                {"code": {"coding": [{"system": POPULATION, "code": "numerator"}]},
                 "count": num},
            ],
            "measureScore": {"value": round(num / den, 4)},
        }]

    async def test_the_seven_questions_are_seven_groups_in_order(
        self, client: httpx.AsyncClient
    ) -> None:
        report = await evaluate(client, "sju-fragor-patient", periodStart="2026",
                                periodEnd="2026")

        codes = [g["code"] for g in report["group"]]
        assert [c["coding"][0]["code"] for c in codes] == ["1", "2", "3", "4", "5", "6", "7"]
        assert {c["coding"][0]["system"] for c in codes} == {
            f"{BASE}/Questionnaire/sju-fragor-patient"}
        assert codes[4]["text"] == "Vet du ditt nästa steg?"

    async def test_nobody_in_the_denominator_gives_no_score(
        self, client: httpx.AsyncClient
    ) -> None:
        report = await evaluate(client, "rub5-med-sip", periodStart="2019", periodEnd="2019")

        assert report["group"][0]["population"][1]["count"] == 0
        assert "measureScore" not in report["group"][0]


class TestTheMeasuresArePublished:
    @pytest.mark.parametrize("measure", MEASURES)
    async def test_each_measure_is_read_like_any_conformance_resource(
        self, client: httpx.AsyncClient, measure: str
    ) -> None:
        response = await client.get(f"/fhir/Measure/{measure}")

        assert response.status_code == 200
        body = response.json()
        get_fhir_model_class("Measure").model_validate(body)
        assert (body["id"], body["url"]) == (measure, f"{BASE}/Measure/{measure}")
        assert [p["code"]["coding"][0]["code"] for g in body["group"]
                for p in g["population"]][:3] == [
            "initial-population", "denominator", "numerator"]
        assert len(body["group"]) == (7 if measure.startswith("sju") else 1)

    async def test_the_capability_statement_offers_evaluate_measure(
        self, client: httpx.AsyncClient
    ) -> None:
        statement = (await client.get("/fhir/metadata")).json()
        entry = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Measure")

        assert {"name": "evaluate-measure",
                "definition": "http://hl7.org/fhir/OperationDefinition/Measure-evaluate-measure",
                } in entry["operation"]
        assert [i["code"] for i in entry["interaction"]] == [
            "read", "vread", "search-type", "history-instance"]
