"""No personal data in logs: personnummer and samordningsnummer are masked wherever they occur.

Both the 12-digit (``194501011235``, ``19450101-1235``) and the 10-digit
(``4501011235``, ``450101-1235``, ``450101+1235``) forms are masked when the
month is 01-12 and the day 01-31 (61-91 for a samordningsnummer), so that
timestamps, HSA-ids (``SE2321000073-1001``) and counters stay readable.
"""

from __future__ import annotations

import re
from typing import Final

MASK: Final[str] = "[personnummer]"

PERSONNUMMER: Final[re.Pattern[str]] = re.compile(
    r"(?<!\d)"
    r"(?:(?:18|19|20)\d{2}|\d{2})"      # century+year or year
    r"(?:0[1-9]|1[0-2])"                # month
    r"(?:0[1-9]|[12]\d|3[01]|6[1-9]|[78]\d|9[01])"  # day (samordningsnummer: +60)
    r"[-+]?\d{4}"
    r"(?!\d)"
)


def mask(text: str) -> str:
    """``text`` with every personnummer-shaped number replaced by ``[personnummer]``."""
    return PERSONNUMMER.sub(MASK, text)
