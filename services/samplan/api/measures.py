"""``$evaluate-measure``: the follow-up indicators as summary MeasureReports (issue 16).

``GET /fhir/Measure/{id}/$evaluate-measure``, parameters ``periodStart`` and
``periodEnd`` (required, ``date``), ``subject`` (``Organization/{id}``) and
``reportType`` (``population``).

R4's operation (http://hl7.org/fhir/OperationDefinition/Measure-evaluate-measure)
answers a MeasureReport of ``type`` summary; only the population report is
offered (no per-patient or subject-list reports: the callers are staff and
systems following a population, and a list of patients would be a search).
GET only: it changes nothing. The Measures themselves are read and searched
like any conformance resource (``GET /fhir/Measure/{id}``).

Access, counting and the access log: ``samplan.security.indicators``; the SQL:
``samplan.store.indicators``; the report: ``samplan.followup.report``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Final
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query
from starlette.responses import Response

from samplan.api.auth import FhirDep
from samplan.api.deps import ServicesDep
from samplan.api.responses import FhirResponse
from samplan.fhir.dates import now_us
from samplan.fhir.errors import BadRequest, NotFound
from samplan.followup import measures
from samplan.followup.periods import measurement_period
from samplan.followup.report import measure_report
from samplan.followup.tally import Window
from samplan.security.indicators import IndicatorRequest, count_indicators

router = APIRouter(prefix="/fhir/Measure", tags=["Follow-up"])

_ORGANIZATION: Final = re.compile(r"^Organization/([A-Za-z0-9\-.]{1,64})$")
REPORT_TYPES: Final = ("population", "summary")  # R4's name, and R5's for the same report


def subject_organisation(subject: str | None) -> str | None:
    """The Organization id of ``subject``; 400 at ``subject`` for anything else."""
    if subject is None or subject == "":
        return None
    found = _ORGANIZATION.match(subject)
    if found is None:
        raise BadRequest(f"subject must be Organization/{{id}} (a care unit or a care provider: "
                         f"the measures count its patients by CareTeam), not {subject!r}.",
                         ["subject"], code="value")
    return found.group(1)


@router.get("/{measure_id}/$evaluate-measure", operation_id="evaluate_measure")
async def evaluate_measure(
    measure_id: str,
    services: ServicesDep,
    access: FhirDep,
    period_start: Annotated[str | None, Query(
        alias="periodStart", description="Start of the measurement period: YYYY, YYYY-MM or "
        "YYYY-MM-DD (its first moment)")] = None,
    period_end: Annotated[str | None, Query(
        alias="periodEnd", description="End of the measurement period: YYYY, YYYY-MM or "
        "YYYY-MM-DD (its last moment)")] = None,
    subject: Annotated[str | None, Query(
        description="Organization/{id}: only that care unit's or care provider's patients "
        "(by CareTeam; a provider's units by Organization.partOf)")] = None,
    report_type: Annotated[str | None, Query(
        alias="reportType", description="population (the default; the only one offered)")] = None,
) -> Response:
    """Evaluate a follow-up Measure over a period: a summary MeasureReport."""
    definition = measures.definition(measure_id)
    if definition is None:
        raise NotFound(f"Measure/{measure_id} is not one of the follow-up measures "
                       f"({', '.join(m.id for m in measures.MEASURES)}).", ["Measure.id"])
    if report_type not in (None, "", *REPORT_TYPES):
        raise BadRequest(f"reportType {report_type!r} is not offered: only population "
                         "(a summary MeasureReport).", ["reportType"], code="not-supported")
    settings = services.settings
    period = measurement_period(period_start, period_end, ZoneInfo(settings.timezone))
    organisation = subject_organisation(subject)
    asked = {k: v for k, v in (("periodStart", period_start), ("periodEnd", period_end),
                               ("subject", subject)) if v}
    counts = await count_indicators(
        access,
        IndicatorRequest(measures=(measure_id,), windows=(Window(period.low, period.high),),
                         subject=organisation,
                         query=f"Measure/{measure_id}/$evaluate-measure?{urlencode(asked)}"),
        seven=services.followup.questions, now=now_us(),
    )
    report = measure_report(definition, services.followup.questions, period,
                            counts[measure_id], generated=datetime.now(UTC),
                            subject=f"Organization/{organisation}" if organisation else None)
    return FhirResponse(report)
