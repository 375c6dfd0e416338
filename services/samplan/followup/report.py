"""Counts -> a summary MeasureReport (R4), as ``$evaluate-measure`` answers it.

R4's MeasureReport: ``status`` complete, ``type`` summary, the ``measure``'s
canonical URL, the ``period``, and one ``group`` per Measure group with the
populations ``initial-population``, ``denominator`` and ``numerator`` (each a
``count``) and a ``measureScore`` (numerator / denominator, a proportion from
0 to 1). With no one in the denominator the score is undefined: the group then
has no ``measureScore``.

R4 does not allow an Organization as ``MeasureReport.subject`` (R5 does); a
report narrowed to one care unit or provider says so with R5's element
through the cross-version extension ``extension-MeasureReport.subject``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final, Protocol

from samplan.fhir.resource import instant
from samplan.followup.measures import (
    IMPROVEMENT_SYSTEM,
    POPULATION_SYSTEM,
    VERSION,
    MeasureDefinition,
    group_code,
)
from samplan.followup.periods import Period
from samplan.followup.questionnaires import SevenQuestions

SUBJECT_EXTENSION: Final = "http://hl7.org/fhir/5.0/StructureDefinition/extension-MeasureReport.subject"
SCORE_DIGITS: Final = 4


class Counted(Protocol):
    """One group's counts (``samplan.followup.tally.Tally`` is one)."""

    @property
    def group(self) -> str: ...
    @property
    def initial(self) -> int: ...
    @property
    def denominator(self) -> int: ...
    @property
    def numerator(self) -> int: ...


def score(numerator: int, denominator: int) -> float | None:
    """The proportion, rounded to four decimals; None when nobody is in the denominator."""
    if denominator <= 0:
        return None
    return round(numerator / denominator, SCORE_DIGITS)


def _population(code: str, count: int) -> dict[str, Any]:
    return {"code": {"coding": [{"system": POPULATION_SYSTEM, "code": code}]}, "count": count}


def group(measure: MeasureDefinition, link_id: str | None, text: str,
          counted: Counted | None) -> dict[str, Any]:
    """One ``MeasureReport.group`` (zeros when nothing was counted)."""
    initial = counted.initial if counted else 0
    denominator = counted.denominator if counted else 0
    numerator = counted.numerator if counted else 0
    found: dict[str, Any] = {
        "code": group_code(measure, link_id, text),
        "population": [_population("initial-population", initial),
                       _population("denominator", denominator),
                       _population("numerator", numerator)],
    }
    value = score(numerator, denominator)
    if value is not None:
        found["measureScore"] = {"value": value}
    return found


def measure_report(
    measure: MeasureDefinition,
    seven: SevenQuestions,
    period: Period,
    counts: Iterable[Counted],
    *,
    generated: datetime,
    subject: str | None = None,
) -> dict[str, Any]:
    """The summary MeasureReport of ``measure`` over ``period``; ``subject``: the
    ``Organization/{id}`` it was narrowed to."""
    by_group = {c.group: c for c in counts}
    questions = measure.questions_of(seven)
    if questions is None:
        groups = [group(measure, None, "", by_group.get(""))]
    else:
        groups = [group(measure, q.link_id, q.text, by_group.get(q.link_id))
                  for q in questions.questions]
    report: dict[str, Any] = {"resourceType": "MeasureReport"}
    if subject is not None:
        report["extension"] = [{"url": SUBJECT_EXTENSION, "valueReference": {"reference": subject}}]
    report.update({
        "status": "complete",
        "type": "summary",
        "measure": f"{measure.url}|{VERSION}",
        "date": instant(generated),
        "period": {"start": period.start, "end": period.end},
        "improvementNotation": {"coding": [{"system": IMPROVEMENT_SYSTEM,
                                            "code": measure.improvement}]},
        "group": groups,
    })
    return report
