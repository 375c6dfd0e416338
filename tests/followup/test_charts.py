"""The charts are SVG text: named for screen readers, escaped, honest about missing months."""

from __future__ import annotations

from samplan.followup.charts import Point, bar_chart, line_chart, paired_bars, percent


class TestAShareIsWrittenInSwedish:
    def test_percent_and_words(self) -> None:
        assert percent(0.4237) == "42 %"
        assert Point("mar 2026", 21, 50).words == "42 % (21 av 50)"
        assert Point("apr 2026", 0, 0).words == "inga i nämnaren"


class TestTheLineChart:
    def test_a_month_without_a_denominator_breaks_the_line(self) -> None:
        points = [Point("jan 2026", 1, 2), Point("feb 2026", 2, 4), Point("mar 2026", 0, 0),
                  Point("apr 2026", 3, 4), Point("maj 2026", 1, 1)]

        svg = line_chart("x", "X, månad för månad", points)

        assert svg.count("<polyline") == 2
        assert svg.count("<circle") == 4
        assert 'role="img"' in svg
        assert '<title id="x-t">X, månad för månad</title>' in svg
        assert "mar 2026: inga i nämnaren" in svg  # the description says it in words
        assert "<script" not in svg


class TestTheBarCharts:
    def test_names_are_escaped(self) -> None:
        svg = bar_chart("u", "Per enhet", [Point("Vårdcentralen <Norr> & Co", 1, 2)])

        assert "Vårdcentralen &lt;Norr&gt; &amp; Co" in svg
        assert "<Norr>" not in svg

    def test_patients_and_staff_side_by_side_with_a_key(self) -> None:
        svg = paired_bars("q", "Ja-svar", [("Fråga 1", Point("", 3, 4), Point("", 1, 2))])

        assert svg.count("<rect") == 2 + 2  # the key's two squares and the two bars
        assert ">Patienter<" in svg
        assert ">Medarbetare<" in svg
        assert "Fråga 1: patienter 75 % (3 av 4), medarbetare 50 % (1 av 2)" in svg
