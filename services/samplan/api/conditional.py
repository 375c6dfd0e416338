"""Conditional create as clients send it (issue 14, item 3).

R4 names the criteria of a conditional create in the ``If-None-Exist`` header
(http.html#ccreate). Clients also send them as the query string of the create
itself, ``POST [type]?[search]``: fhirpy's ``SearchSet.get_or_create`` does (its
search parameters become the URL's), and nothing in R4 gives that query another
meaning. Ignoring it made a duplicate on every call, so it is read as the
``If-None-Exist`` criteria: the same search, under the same lock, with the same
answers (201 created, 200 with the one match, 412 for several, 400 for a
criterion we do not search by, as ``Prefer: handling=strict`` would).

Only ``_format`` and ``_pretty`` (which any interaction may carry) are not
criteria. With both a query and the header, they must ask the same (the same
parameters and values, in any order): anything else is a 400, as we cannot tell
which of the two the client meant.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qsl, urlencode

from samplan.fhir.errors import BadRequest

NOT_CRITERIA: Final = frozenset({"_format", "_pretty"})


def create_criteria(query: list[tuple[str, str]], if_none_exist: str | None) -> str | None:
    """The conditional-create criteria of a ``POST [type]``: its query string, or the
    ``If-None-Exist`` header, or both when they agree; None for a plain create."""
    pairs = [(k, v) for k, v in query if k not in NOT_CRITERIA]
    if not pairs:
        return if_none_exist
    if if_none_exist is not None:
        text = if_none_exist.split("?", 1)[1] if "?" in if_none_exist else if_none_exist
        if sorted(parse_qsl(text, keep_blank_values=True)) != sorted(pairs):
            raise BadRequest(
                "The query string and If-None-Exist name different criteria for this "
                "conditional create; send them once (If-None-Exist, or the query string).",
                ["If-None-Exist"])
    return urlencode(pairs)
