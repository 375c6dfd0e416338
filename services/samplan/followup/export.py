"""The page's figures as CSV: one row per indicator (and question), unit and month.

The regions' spreadsheets read it, so the shape is fixed: RFC 4180 CSV in UTF-8,
comma-separated, a header row, the Measure id in the first column. ``group`` is
the question's linkId for the seven questions and empty otherwise; ``unit`` is
the Organization id (empty on the row for every patient the caller reaches,
``unit_name`` "Alla"); ``score`` is numerator / denominator with four decimals
and a point, empty when the denominator is 0. Rows come in the Measures'
order, then group, then "Alla" before the units (by name), then month.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Final

from samplan.followup import measures
from samplan.followup.page import Tallied, Unit
from samplan.followup.periods import Month
from samplan.followup.questionnaires import SevenQuestions
from samplan.followup.report import score

COLUMNS: Final = ("measure", "group", "unit", "unit_hsa_id", "unit_name", "month",
                  "initial_population", "denominator", "numerator", "score")
ALL_UNITS: Final = "Alla"


def csv_text(
    tallies: Mapping[str, Sequence[Tallied]],
    months: Sequence[Month],
    units: Mapping[str, Unit],
    seven: SevenQuestions,
) -> str:
    """Windows ``0..len(months)-1`` of ``tallies`` are the months (a later one is ignored)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for definition in measures.MEASURES:
        found = {(t.window, t.group, t.unit): t for t in tallies.get(definition.id, ())}
        questionnaire = definition.questions_of(seven)
        groups = questionnaire.link_ids if questionnaire is not None else ("",)
        counted = sorted({t.unit for t in found.values() if t.unit},
                         key=lambda u: (units[u].name if u in units else u, u))
        rows: list[Unit | None] = [None, *(units.get(u, Unit(u, u)) for u in counted)]
        for group in groups:
            for unit in rows:
                for n, month in enumerate(months):
                    t = found.get((n, group, unit.id if unit else None))
                    initial, den, num = (t.initial, t.denominator, t.numerator) if t else (0, 0, 0)
                    value = score(num, den)
                    writer.writerow((
                        definition.id, group, unit.id if unit else "",
                        (unit.hsa_id or "") if unit else "", unit.name if unit else ALL_UNITS,
                        month.key, initial, den, num, "" if value is None else f"{value:.4f}",
                    ))
    return out.getvalue()
