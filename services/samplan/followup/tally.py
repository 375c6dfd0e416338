"""What an indicator count asks and answers: periods in, tallies out.

Plain values shared by the counting SQL (``samplan.store.indicators``), the
access decision (``samplan.security.indicators``) and the routes and pages that
ask and show (``api/measures.py``, ``api/indicators_page.py``), so that none of
those above the gate needs to know the store.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Window:
    """One measurement period, ``[low, high]`` in microseconds since the epoch (inclusive)."""

    low: int
    high: int


@dataclass(frozen=True, slots=True)
class Tally:
    """The counts of one group of one measure in one period (and one unit).

    ``window`` indexes the windows asked for; ``group`` is ``""`` or a question's
    linkId; ``unit`` is an Organization id, or None for every patient counted.
    """

    window: int
    group: str
    unit: str | None
    initial: int
    denominator: int
    numerator: int
