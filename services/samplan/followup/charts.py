"""Charts as SVG text, drawn on the server: no script, no image requests, readable without CSS.

Three kinds, all proportions from 0 to 100 %:

* :func:`line_chart`: one indicator month by month (a gap where a month has
  nobody in the denominator);
* :func:`bar_chart`: one indicator per care unit, a horizontal bar each;
* :func:`paired_bars`: the seven questions, patients' and staff's "yes" side by
  side (told apart by shade *and* by a label, not by colour alone).

Each SVG is ``role="img"`` with a ``<title>`` and a ``<desc>`` that says the
figures in words; every mark has its own ``<title>`` (the browser's tooltip).
The page shows the same figures in a table too. Text is escaped here; the
result is markup the page template includes as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from markupsafe import Markup, escape

INK: Final = "#1b1b1b"
MUTED: Final = "#3d4650"
GRID: Final = "#c9d1d9"
ACCENT: Final = "#17466f"
SECOND: Final = "#6b8fb3"
FONT: Final = 'font-family="system-ui, -apple-system, Segoe UI, Roboto, DejaVu Sans, sans-serif"'


@dataclass(frozen=True, slots=True)
class Point:
    """One value of a chart: a label, and numerator/denominator (None: no denominator)."""

    label: str
    numerator: int
    denominator: int

    @property
    def share(self) -> float | None:
        return self.numerator / self.denominator if self.denominator else None

    @property
    def words(self) -> str:
        """``42 % (21 av 50)``, or ``inga`` when nobody was in the denominator."""
        share = self.share
        if share is None:
            return "inga i nämnaren"
        return f"{percent(share)} ({self.numerator} av {self.denominator})"


def percent(share: float) -> str:
    """``0.4237`` -> ``42 %`` (Swedish: a space before the sign)."""
    return f"{round(share * 100)} %"


def _svg(width: int, height: int, chart_id: str, title: str, desc: str, body: list[str]) -> Markup:
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
            f'width="100%" role="img" aria-labelledby="{chart_id}-t" '
            f'aria-describedby="{chart_id}-d" {FONT} '
            f'font-size="14" class="chart">'
            f'<title id="{chart_id}-t">{escape(title)}</title>'
            f'<desc id="{chart_id}-d">{escape(desc)}</desc>')
    return Markup(head + "".join(body) + "</svg>")


def _y_axis(left: int, top: int, width: int, height: int) -> list[str]:
    parts = []
    for tick in (0, 25, 50, 75, 100):
        y = top + height - height * tick / 100
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + width}" y2="{y:.1f}" '
                     f'stroke="{GRID}" stroke-width="1"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" '
                     f'fill="{MUTED}">{tick} %</text>')
    return parts


def line_chart(chart_id: str, title: str, points: Sequence[Point]) -> Markup:
    """The indicator month by month: a line through the months that have a value."""
    width, height, left, top, bottom, right = 640, 260, 56, 16, 46, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    step = plot_w / max(len(points) - 1, 1)
    body = _y_axis(left, top, plot_w, plot_h)
    every = 1 if len(points) <= 12 else (len(points) + 11) // 12
    segments: list[list[tuple[float, float]]] = [[]]
    marks: list[str] = []
    for i, point in enumerate(points):
        x = left + (step * i if len(points) > 1 else plot_w / 2)
        if i % every == 0:
            body.append(f'<text x="{x:.1f}" y="{height - bottom + 18}" text-anchor="middle" '
                        f'fill="{MUTED}">{escape(point.label.split(" ")[0])}</text>')
        share = point.share
        if share is None:
            segments.append([])
            continue
        y = top + plot_h - plot_h * share
        segments[-1].append((x, y))
        marks.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{ACCENT}">'
                     f'<title>{escape(point.label)}: {escape(point.words)}</title></circle>')
    years = sorted({p.label.split(" ")[-1] for p in points})
    span = f"{years[0]} – {years[-1]}" if len(years) > 1 else "".join(years)
    body.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle" '
                f'fill="{MUTED}">{escape(span)}</text>')
    for segment in segments:
        if len(segment) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in segment)
            body.append(f'<polyline points="{path}" fill="none" stroke="{ACCENT}" '
                        f'stroke-width="2.5"/>')
    desc = "; ".join(f"{p.label}: {p.words}" for p in points)
    return _svg(width, height, chart_id, title, desc, body + marks)


def bar_chart(chart_id: str, title: str, points: Sequence[Point]) -> Markup:
    """The indicator per care unit: one horizontal bar each, the figures written beside it."""
    label_w, bar_w, value_w, row, top = 230, 280, 130, 28, 8
    width = label_w + bar_w + value_w
    height = top * 2 + row * max(len(points), 1)
    body: list[str] = []
    for i, point in enumerate(points):
        y = top + row * i
        name = point.label if len(point.label) <= 32 else point.label[:31] + "…"
        body.append(f'<text x="{label_w - 8}" y="{y + 18}" text-anchor="end" fill="{INK}">'
                    f'{escape(name)}</text>')
        body.append(f'<rect x="{label_w}" y="{y + 5}" width="{bar_w}" height="{row - 10}" '
                     f'fill="none" stroke="{GRID}"/>')
        share = point.share
        if share is not None and share > 0:
            body.append(f'<rect x="{label_w}" y="{y + 5}" width="{bar_w * share:.1f}" '
                        f'height="{row - 10}" fill="{ACCENT}"><title>{escape(point.label)}: '
                        f'{escape(point.words)}</title></rect>')
        body.append(f'<text x="{label_w + bar_w + 8}" y="{y + 18}" fill="{INK}">'
                    f'{escape(point.words if share is not None else "–")}</text>')
    if not points:
        body.append(f'<text x="{label_w}" y="{top + 18}" fill="{MUTED}">Inga enheter</text>')
    desc = "; ".join(f"{p.label}: {p.words}" for p in points) or "Inga enheter"
    return _svg(width, height, chart_id, title, desc, body)


def paired_bars(chart_id: str, title: str, pairs: Sequence[tuple[str, Point, Point]],
                names: tuple[str, str] = ("Patienter", "Medarbetare")) -> Markup:
    """Two bars per question (patients' and staff's share of "yes"), question by question."""
    left, top, group_w, bar_w, plot_h, bottom = 58, 40, 84, 30, 180, 40
    width = left + group_w * max(len(pairs), 1) + 16
    height = top + plot_h + bottom
    body = _y_axis(left, top, group_w * len(pairs), plot_h)
    for k, (name, fill) in enumerate(zip(names, (ACCENT, SECOND), strict=True)):
        key_x = left + k * 150
        body.append(f'<rect x="{key_x}" y="8" width="14" height="14" fill="{fill}" '
                    f'stroke="{INK}" stroke-width="{1 if k else 0}"/>')
        body.append(f'<text x="{key_x + 20}" y="20" fill="{INK}">{escape(name)}</text>')
    descs = []
    for i, (label, first, second) in enumerate(pairs):
        x0 = left + group_w * i + (group_w - 2 * bar_w - 4) / 2
        for k, (point, fill) in enumerate(((first, ACCENT), (second, SECOND))):
            share = point.share
            x = x0 + k * (bar_w + 4)
            if share is not None:
                h = plot_h * share
                body.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w}" '
                            f'height="{h:.1f}" fill="{fill}" stroke="{INK}" '
                            f'stroke-width="{1 if k else 0}"><title>{escape(label)}, '
                            f'{escape(names[k].lower())}: {escape(point.words)}</title></rect>')
                body.append(f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h - h - 4:.1f}" '
                            f'text-anchor="middle" font-size="11" fill="{INK}">'
                            f'{round(share * 100)}</text>')
        body.append(f'<text x="{left + group_w * i + group_w / 2:.1f}" '
                    f'y="{top + plot_h + 18}" text-anchor="middle" fill="{INK}">'
                    f'{escape(label)}</text>')
        descs.append(f"{label}: {names[0].lower()} {first.words}, "
                     f"{names[1].lower()} {second.words}")
    return _svg(width, height, chart_id, title, "; ".join(descs), body)
