"""The staff's follow-up page: each indicator month by month and per care unit, the seven
questions with patients and staff side by side, as one HTML page with SVG and no script.

The route (``api/indicators_page.py``) asks the security layer for the counts
of every measure over the months shown plus the whole span (the last window),
totals and per unit, in one request; this module turns them into a view and
the view into HTML (``templates/indicators.html``, Jinja2, autoescaped; the
CSS is inlined, as on the patient's page, so the page stands alone).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from markupsafe import Markup

from samplan import html_pages
from samplan.followup import codes, measures
from samplan.followup.charts import Point, bar_chart, line_chart, paired_bars, percent
from samplan.followup.periods import Month
from samplan.followup.questionnaires import SevenQuestions
from samplan.followup.report import Counted

#: The indicators drawn month by month (the seven questions have a part of their own).
TRENDS: tuple[str, ...] = tuple(m.id for m in measures.MEASURES if not m.is_questionnaire)


class Tallied(Counted, Protocol):
    """Counts of one period (``window``) and unit (None: all) (``followup.tally.Tally``)."""

    @property
    def window(self) -> int: ...
    @property
    def unit(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Unit:
    """A care unit as the page names it."""

    id: str
    name: str
    hsa_id: str | None = None


@dataclass(frozen=True, slots=True)
class IndicatorView:
    id: str
    title: str
    description: str
    better: str
    latest: Point | None
    months: list[Point]
    units: list[Point]
    line: Markup
    bars: Markup


@dataclass(frozen=True, slots=True)
class QuestionView:
    number: str
    patient_text: str
    staff_text: str
    patients: Point
    staff: Point


@dataclass(frozen=True, slots=True)
class PageView:
    span: str
    unit: Unit | None
    units: list[Unit]
    first: str
    last: str
    indicators: list[IndicatorView]
    questions: list[QuestionView]
    pairs: Markup
    csv_href: str


def _point(label: str, counted: Counted | None) -> Point:
    return Point(label, counted.numerator if counted else 0,
                 counted.denominator if counted else 0)


def _index(tallies: Sequence[Tallied]) -> dict[tuple[int, str, str | None], Tallied]:
    return {(t.window, t.group, t.unit): t for t in tallies}


def build_view(
    tallies: Mapping[str, Sequence[Tallied]],
    months: Sequence[Month],
    units: Mapping[str, Unit],
    seven: SevenQuestions,
    *,
    unit: Unit | None,
    csv_href: str,
) -> PageView:
    """The page from the counts: windows ``0..len(months)-1`` are the months, the last
    window (``len(months)``) the whole span; ``units`` names the units counted."""
    whole = len(months)
    indicators = []
    for measure_id in TRENDS:
        definition = measures.BY_ID[measure_id]
        found = _index(tallies.get(measure_id, ()))
        series = [_point(m.short, found.get((n, "", None))) for n, m in enumerate(months)]
        counted_units = sorted({t.unit for t in tallies.get(measure_id, ()) if t.unit},
                               key=lambda u: (units[u].name if u in units else u))
        per_unit = [_point(units[u].name if u in units else u, found.get((whole, "", u)))
                    for u in counted_units]
        latest = next((p for p in reversed(series) if p.denominator), None)
        indicators.append(IndicatorView(
            id=measure_id, title=definition.title, description=definition.description,
            better="Lägre är bättre." if definition.improvement == "decrease"
            else "Högre är bättre.",
            latest=latest, months=series, units=per_unit,
            line=line_chart(f"{measure_id}-trend", f"{definition.title}, månad för månad",
                            series),
            bars=bar_chart(f"{measure_id}-units", f"{definition.title}, per enhet", per_unit),
        ))
    patients = _index(tallies.get(codes.SJU_FRAGOR_PATIENT, ()))
    staff = _index(tallies.get(codes.SJU_FRAGOR_PERSONAL, ()))
    questions = [
        QuestionView(
            number=p.prefix.rstrip(".") or p.link_id, patient_text=p.text, staff_text=s.text,
            patients=_point(f"Fråga {p.link_id}", patients.get((whole, p.link_id, None))),
            staff=_point(f"Fråga {p.link_id}", staff.get((whole, s.link_id, None))),
        )
        for p, s in seven.pairs()
    ]
    pairs = paired_bars("sju-fragor-chart", "Andel ja-svar per fråga, patienter och medarbetare",
                        [(f"Fråga {q.number}", q.patients, q.staff) for q in questions])
    options = sorted(units.values(), key=lambda u: u.name)
    return PageView(
        span=f"{months[0].short} – {months[-1].short}" if len(months) > 1 else months[0].short,
        unit=unit, units=options, first=months[0].key, last=months[-1].key,
        indicators=indicators, questions=questions, pairs=pairs, csv_href=csv_href,
    )


def _render(template: str, **context: Any) -> str:
    html_pages.environment().filters["percent"] = percent
    return html_pages.render(template, **context)


def render_page(view: PageView) -> str:
    return _render("indicators.html", view=view)


def render_problem(title: str, message: str) -> str:
    """A plain page saying why the figures cannot be shown (403, a bad month)."""
    return html_pages.render_error(title, message,
                                   back=("/portal/indicators", "Till uppföljningen"))
