"""``$evaluate-measure`` with bad input: an OperationOutcome with the status and the parameter.

Each case is the whole OperationOutcome the caller gets, so the wording is part
of the specification: it must say what is wrong and what would be right.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

URL = "/fhir/Measure/{}/$evaluate-measure"
GOOD = {"periodStart": "2026-01", "periodEnd": "2026-06"}


def outcome(code: str, diagnostics: str, *expression: str) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": "error", "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = list(expression)
    return {"resourceType": "OperationOutcome", "issue": [issue]}


async def ask(client: httpx.AsyncClient, measure: str = "rub5-med-sip",
              **params: str) -> httpx.Response:
    return await client.get(URL.format(measure), params=params)


class TestBadPeriods:
    async def test_a_missing_period_start(self, client: httpx.AsyncClient) -> None:
        response = await ask(client, periodEnd="2026-06")

        assert response.status_code == 400
        assert response.json() == outcome(
            "invalid", "periodStart is required: a date (YYYY, YYYY-MM or YYYY-MM-DD).",
            "periodStart")

    async def test_a_missing_period_end(self, client: httpx.AsyncClient) -> None:
        response = await ask(client, periodStart="2026-01")

        assert response.status_code == 400
        assert response.json() == outcome(
            "invalid", "periodEnd is required: a date (YYYY, YYYY-MM or YYYY-MM-DD).",
            "periodEnd")

    @pytest.mark.parametrize("value", ["2026-13", "2026-02-30", "yesterday",
                                       "2026-01-01T10:00:00+01:00"])
    async def test_a_period_end_that_is_not_a_date(
        self, client: httpx.AsyncClient, value: str
    ) -> None:
        response = await ask(client, periodStart="2026-01", periodEnd=value)

        assert response.status_code == 400
        assert response.json() == outcome(
            "value", f"periodEnd must be a date (YYYY, YYYY-MM or YYYY-MM-DD), not {value!r}.",
            "periodEnd")

    async def test_a_period_that_ends_before_it_starts(self, client: httpx.AsyncClient) -> None:
        response = await ask(client, periodStart="2026-06", periodEnd="2026-01-31")

        assert response.status_code == 400
        assert response.json() == outcome(
            "value", "periodEnd (2026-01-31) is before periodStart (2026-06).", "periodEnd")


class TestUnknownMeasure:
    async def test_an_id_that_is_no_follow_up_measure(self, client: httpx.AsyncClient) -> None:
        response = await ask(client, "rub5-utan-lakare", **GOOD)

        assert response.status_code == 404
        assert response.json() == outcome(
            "not-found",
            "Measure/rub5-utan-lakare is not one of the follow-up measures "
            "(rub5-utan-fast-lakarkontakt, rub5-med-sip, rub45-med-overenskommelse, "
            "overenskommelse-med-nasta-tid, overenskommelse-med-fast-vardkontakt, "
            "sju-fragor-patient, sju-fragor-personal).", "Measure.id")


class TestBadSubject:
    @pytest.mark.parametrize("subject", ["Patient/p01", "Organization/", "unit-a",
                                         "Organization/a/_history/1"])
    async def test_a_subject_that_is_not_an_organization(
        self, client: httpx.AsyncClient, subject: str
    ) -> None:
        response = await ask(client, subject=subject, **GOOD)

        assert response.status_code == 400
        assert response.json() == outcome(
            "value", "subject must be Organization/{id} (a care unit or a care provider: the "
            f"measures count its patients by CareTeam), not {subject!r}.", "subject")

    async def test_an_organization_that_does_not_exist(self, client: httpx.AsyncClient) -> None:
        response = await ask(client, subject="Organization/nowhere", **GOOD)

        assert response.status_code == 422
        assert response.json() == outcome(
            "not-found", "subject Organization/nowhere does not exist.", "subject")


class TestReportType:
    @pytest.mark.parametrize("report_type", ["subject", "subject-list", "individual"])
    async def test_only_the_population_report_is_offered(
        self, client: httpx.AsyncClient, report_type: str
    ) -> None:
        response = await ask(client, reportType=report_type, **GOOD)

        assert response.status_code == 400
        assert response.json() == outcome(
            "not-supported", f"reportType {report_type!r} is not offered: only population "
            "(a summary MeasureReport).", "reportType")

    async def test_population_is_the_default(self, client: httpx.AsyncClient) -> None:
        response = await ask(client, reportType="population", **GOOD)

        assert response.status_code == 200
        assert response.json()["type"] == "summary"
