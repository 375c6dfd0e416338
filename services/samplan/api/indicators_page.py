"""The staff's follow-up page and its figures as CSV (issue 16).

``GET /portal/indicators`` is the page: each indicator month by month and per
care unit, the seven questions side by side (HTML with SVG, no script).
``GET /portal/indicators.csv`` gives the same figures, one row per indicator,
unit and month.

Query parameters (both routes): ``fran`` and ``till`` (``YYYY-MM``, default the
last 12 months up to this one, at most 36) and ``enhet`` (an Organization id:
only that unit's or provider's patients). The same token rules as the FHIR API:
staff and systems with ``read`` on Measure, over the patients they reach;
patients and relatives get a 403 page. One access-log entry per page or file
(``samplan.security.indicators``). Unit names are read through the gate like any other
search.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Final
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from starlette.responses import Response

from samplan.api.auth import FhirDep
from samplan.api.deps import Services, ServicesDep
from samplan.fhir.dates import now_us
from samplan.fhir.errors import BadRequest, FhirError
from samplan.fhir.identifiers import HSA_SYSTEM, canonical_token
from samplan.followup import measures
from samplan.followup.export import csv_text
from samplan.followup.page import Unit, build_view, render_page, render_problem
from samplan.followup.periods import Month, last_months, months, parse_month
from samplan.followup.tally import Tally, Window
from samplan.security.gate import Access
from samplan.security.indicators import IndicatorRequest, count_indicators

router = APIRouter(tags=["Follow-up"])

MONTHS_SHOWN: Final = 12
MONTHS_AT_MOST: Final = 36
PAGE_POLICY: Final = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
"""No script may run on the page: it needs none."""
NO_STORE: Final = {"Cache-Control": "no-store"}
_ID: Final = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")

FromParam = Annotated[str | None, Query(description="first month, YYYY-MM")]
TillParam = Annotated[str | None, Query(description="last month, YYYY-MM")]
UnitParam = Annotated[str | None, Query(description="Organization id: one care unit or "
                                                    "provider")]


def _months(services: Services, fran: str | None, till: str | None) -> list[Month]:
    tz = ZoneInfo(services.settings.timezone)
    first, last = last_months(datetime.now(tz).date(), MONTHS_SHOWN, tz)
    last = parse_month("till", till, last, tz)
    if fran is None or fran == "":
        index = last.year * 12 + last.month - MONTHS_SHOWN
        first = parse_month("fran", f"{index // 12:04d}-{index % 12 + 1:02d}", first, tz)
    else:
        first = parse_month("fran", fran, first, tz)
    span = months(first, last, tz)
    if not span:
        raise BadRequest(f"till ({last.key}) is before fran ({first.key}).", ["till"],
                         code="value")
    if len(span) > MONTHS_AT_MOST:
        raise BadRequest(f"At most {MONTHS_AT_MOST} months at a time, not {len(span)}.",
                         ["fran"], code="too-costly")
    return span


def _unit(enhet: str | None) -> str | None:
    if enhet is None or enhet == "":
        return None
    if not _ID.match(enhet):
        raise BadRequest(f"enhet must be an Organization id, not {enhet!r}.", ["enhet"],
                         code="value")
    return enhet


async def _counts(
    request: Request, services: Services, access: Access, span: list[Month],
    unit: str | None, *, whole: bool,
) -> dict[str, list[Tally]]:
    windows = [Window(m.period.low, m.period.high) for m in span]
    if whole:
        windows.append(Window(span[0].period.low, span[-1].period.high))
    asked = {k: v for k, v in (("fran", span[0].key), ("till", span[-1].key), ("enhet", unit))
             if v}
    return await count_indicators(
        access,
        IndicatorRequest(measures=tuple(m.id for m in measures.MEASURES), windows=tuple(windows),
                         subject=unit,
                         # the page: units over the whole span; the file: unit by month
                         by_unit=(len(span),) if whole else tuple(range(len(span))),
                         query=f"{request.url.path}?{urlencode(asked)}"),
        seven=services.followup.questions, now=now_us(),
    )


async def _units(access: Access, ids: set[str]) -> dict[str, Unit]:
    """Names of the units counted, read as Organizations by the caller (ids when the
    caller may not read Organizations)."""
    if not ids:
        return {}
    try:
        _, page = await access.search("Organization", [("_id", ",".join(sorted(ids))),
                                                     ("_count", str(len(ids)))])
    except FhirError:
        return {i: Unit(i, i) for i in ids}
    found = {i: Unit(i, i) for i in ids}
    for stored in page.matches:
        body = orjson.loads(stored.content) if stored.content else {}
        hsa = [canonical_token(x.get("system"), str(x.get("value")))
               for x in body.get("identifier") or [] if isinstance(x, dict)]
        found[stored.resource_id] = Unit(
            stored.resource_id, str(body.get("name") or stored.resource_id),
            next((code for system, code in hsa if system == HSA_SYSTEM), None))
    return found


def _problem(error: FhirError) -> Response:
    if error.status in (401, 403):
        title = "Du har inte tillgång till uppföljningen"
        message = ("Uppföljningen räknar andra patienters uppgifter: den är för vårdens "
                   "medarbetare och system med behörighet att läsa Measure.")
    elif error.status == 400 or error.status == 422:
        title, message = "Urvalet går inte att visa", error.diagnostics
    else:
        title, message = "Något gick fel", "Försök igen om en stund."
    return HTMLResponse(render_problem(title, message), status_code=error.status,
                        headers={**NO_STORE, "Content-Security-Policy": PAGE_POLICY})


@router.get("/portal/indicators", operation_id="indicators_page", response_class=HTMLResponse)
async def indicators_page(
    request: Request, services: ServicesDep, access: FhirDep,
    fran: FromParam = None, till: TillParam = None, enhet: UnitParam = None,
) -> Response:
    """The follow-up page: the indicators month by month and per unit, the seven questions."""
    try:
        span = _months(services, fran, till)
        unit = _unit(enhet)
        tallies = await _counts(request, services, access, span, unit, whole=True)
        ids = {t.unit for found in tallies.values() for t in found if t.unit}
        units = await _units(access, ids | ({unit} if unit else set()))
    except FhirError as error:
        return _problem(error)
    query = urlencode({"fran": span[0].key, "till": span[-1].key, **({"enhet": unit} if unit
                                                                       else {})})
    view = build_view(tallies, span, units, services.followup.questions,
                      unit=units.get(unit) if unit else None,
                      csv_href=f"/portal/indicators.csv?{query}")
    return HTMLResponse(render_page(view),
                        headers={**NO_STORE, "Content-Security-Policy": PAGE_POLICY})


@router.get("/portal/indicators.csv", operation_id="indicators_csv")
async def indicators_csv(
    request: Request, services: ServicesDep, access: FhirDep,
    fran: FromParam = None, till: TillParam = None, enhet: UnitParam = None,
) -> Response:
    """The page's figures as CSV: one row per indicator (and question), unit and month."""
    span = _months(services, fran, till)
    unit = _unit(enhet)
    tallies = await _counts(request, services, access, span, unit, whole=False)
    ids = {t.unit for found in tallies.values() for t in found if t.unit}
    units = await _units(access, ids)
    name = f"uppfoljning-{span[0].key}-{span[-1].key}{'-' + unit if unit else ''}.csv"
    return Response(csv_text(tallies, span, units, services.followup.questions),
                    media_type="text/csv; charset=utf-8",
                    headers={**NO_STORE, "Content-Disposition": f'attachment; filename="{name}"'})
