"""Search requests parsed into a typed query the store turns into SQL.

Semantics follow https://hl7.org/fhir/R4/search.html: repeated parameters are
AND, comma-separated values are OR; token ``[system]|[code]``; reference
``[Type/]id`` with a ``:Type`` modifier; date with ``eq ne gt lt ge le sa eb``
prefixes at the value's precision; string is a case- and accent-insensitive
prefix match (``:exact``, ``:contains``). Unknown parameters are ignored and
reported under the default lenient handling, and rejected with ``Prefer:
handling=strict``.

Result parameters: ``_count=0`` asks for the total alone, as ``_summary=count``
does (search.html: "_count=0 ... the server returns a count of the matching
resources"); ``_summary=true|text|data|false`` and ``_elements`` become the
query's :class:`~samplan.fhir.subsetting.Subsetting`, applied where the Bundle
is made (``fhir/bundle.py``). Their unknown values are a 400, never ignored: a
client asking for less and getting everything, or the reverse, cannot tell.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

import orjson

from samplan.fhir import identifiers
from samplan.fhir.dates import parse_range
from samplan.fhir.errors import BadRequest, Issue
from samplan.fhir.indexing import normalise_string, parse_reference
from samplan.fhir.registry import (
    COMMON_PARAMS,
    REGISTRY,
    RESULT_PARAMS,
    ParamType,
    ResourceType,
)
from samplan.fhir.subsetting import Subsetting, parse_summary, single, subsetting

DatePrefix = Literal["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"]
_PREFIXES: tuple[DatePrefix, ...] = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb")
ANY = "\x00any"  # token system "not given": matches any system


@dataclass(frozen=True, slots=True)
class TokenValue:
    system: str | None  # ANY, None (the "|code" form: no system), or a system
    code: str | None  # None: any code in the system ("system|")


@dataclass(frozen=True, slots=True)
class ReferenceValue:
    target_type: str | None
    target_id: str


@dataclass(frozen=True, slots=True)
class DateValue:
    prefix: DatePrefix
    low: int
    high: int


@dataclass(frozen=True, slots=True)
class StringValue:
    value: str
    mode: Literal["start", "exact", "contains"]
    raw: str


@dataclass(frozen=True, slots=True)
class CareTeamValue:
    """A prebuilt access restriction (never parsed from a URL): the patients of the
    CareTeams (not ended) naming one of these Organization / PractitionerRole /
    Practitioner ids as participant (organisations also as managing
    organisation), minus ``blocked``. Put in a ``patient`` filter (``_id`` for
    Patient) by the access guard; the store compiles it to a subquery over the
    index tables, so reach is never sent to the database as a list of ids.
    """

    organisations: tuple[str, ...]
    roles: tuple[str, ...] = ()
    practitioners: tuple[str, ...] = ()
    blocked: tuple[str, ...] = ()


Value = TokenValue | ReferenceValue | DateValue | StringValue | CareTeamValue


@dataclass(frozen=True, slots=True)
class Filter:
    """One search parameter occurrence: any of ``values`` may match (OR)."""

    name: str
    type: ParamType
    values: tuple[Value, ...]
    modifier: str | None = None


@dataclass(frozen=True, slots=True)
class Include:
    source_type: str
    param: str
    target_type: str | None
    reverse: bool


@dataclass(frozen=True, slots=True)
class SortKey:
    name: str  # "_lastUpdated", "_id" or a date/string parameter
    descending: bool


@dataclass(slots=True)
class SearchQuery:
    resource_type: str
    filters: list[Filter] = field(default_factory=list)
    sort: list[SortKey] = field(default_factory=list)
    count: int = 20
    total: Literal["none", "estimate", "accurate"] | None = None
    summary_count: bool = False
    includes: list[Include] = field(default_factory=list)
    cursor: tuple[Any, ...] | None = None  # sort values of the row to continue after/before
    cursor_before: bool = False
    warnings: list[Issue] = field(default_factory=list)
    # the parameters as given, for self/next/previous links (result params excluded)
    link_params: list[tuple[str, str]] = field(default_factory=list)
    # _summary=true|text|data or _elements: what of each resource is shown
    subsetting: Subsetting | None = None


def single_identifier(query: SearchQuery) -> tuple[str | None, str] | None:
    """``(system, code)`` when the search is exactly one identifier value with a system:
    the one a repository can answer by its identifier lookup (``WriteTx.by_identifiers``)
    instead of a search."""
    if (len(query.filters) != 1 or query.includes or query.sort or query.total
            or query.summary_count):
        return None
    flt = query.filters[0]
    if flt.name != "identifier" or flt.modifier is not None or len(flt.values) != 1:
        return None
    value = flt.values[0]
    if not isinstance(value, TokenValue) or value.code is None or value.system in (None, ANY):
        return None
    return value.system, value.code


def parse_search(
    resource_type: str,
    params: list[tuple[str, str]],
    *,
    tz: ZoneInfo,
    base_url: str = "",
    strict: bool = False,
    default_count: int = 20,
    max_count: int = 1000,
) -> SearchQuery:
    rtype = REGISTRY[resource_type]
    query = SearchQuery(resource_type=resource_type, count=default_count)
    summary = single(params, "_summary")
    if summary is not None:
        query.summary_count = parse_summary(summary, search=True) == "count"
    query.subsetting = subsetting(resource_type, None if query.summary_count else summary,
                                  single(params, "_elements"))
    for raw_name, raw_value in params:
        name, _, modifier = raw_name.partition(":")
        mod = modifier or None
        if name in RESULT_PARAMS:
            _result_param(query, rtype, name, mod, raw_value, strict, max_count)
            if name not in ("_page_after", "_page_before", "_count"):
                query.link_params.append((raw_name, raw_value))
            continue
        query.link_params.append((raw_name, raw_value))
        ptype: ParamType | None = COMMON_PARAMS.get(name)
        param = rtype.params.get(name)
        if param is not None:
            ptype = param.type
        if ptype is None:
            _unknown(query, strict, f"Unknown search parameter {raw_name!r} for {resource_type}.",
                     raw_name)
            continue
        if mod and not _modifier_ok(ptype, mod, param.targets if param else ()):
            _unknown(query, strict, f"Unsupported modifier ':{mod}' on {name!r}.", raw_name)
            continue
        values = tuple(
            _parse_value(ptype, name, mod, v, tz, base_url) for v in _split_or(raw_value)
        )
        if param is not None and len(param.targets) == 1:
            # `patient=123` can only mean Patient/123: say so, so the index is used in full
            values = tuple(
                ReferenceValue(param.targets[0], v.target_id)
                if isinstance(v, ReferenceValue) and v.target_type is None else v
                for v in values
            )
        if name == "identifier":
            values += _person_number_forms(values)
        if values:
            query.filters.append(Filter(name, ptype, values, mod))
    return query


def _unknown(query: SearchQuery, strict: bool, message: str, name: str) -> None:
    if strict:
        raise BadRequest(message, [name], code="not-supported")
    query.warnings.append(
        Issue(
            code="not-supported",
            diagnostics=message + " It was ignored.",
            expression=(name,),
            severity="warning",
        )
    )


def _modifier_ok(ptype: ParamType, mod: str, targets: tuple[str, ...]) -> bool:
    if ptype == "string":
        return mod in ("exact", "contains")
    if ptype == "reference":
        return mod in targets or mod in REGISTRY
    if ptype == "token":
        return mod == "not"
    return False


def _split_or(raw: str) -> list[str]:
    """Split on commas not escaped with a backslash, then unescape."""
    parts: list[str] = []
    current = ""
    escaped = False
    for char in raw:
        if escaped:
            current += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p for p in parts if p != ""]


def _parse_value(
    ptype: ParamType, name: str, mod: str | None, raw: str, tz: ZoneInfo, base_url: str
) -> Value:
    if ptype == "token":
        if name == "_id":
            return TokenValue(ANY, raw)
        if "|" in raw:
            system, _, code = raw.partition("|")
            canon_system, canon_code = identifiers.canonical_token(system or None, code or None)
            return TokenValue(canon_system if system else None, canon_code or None)
        return TokenValue(ANY, raw)
    if ptype == "reference":
        target = parse_reference(raw, base_url)
        if target:
            return ReferenceValue(target[0], target[1])
        if "/" in raw or "://" in raw:
            raise BadRequest(f"Cannot read the reference {raw!r} for {name!r}.", [name])
        return ReferenceValue(mod, raw)
    if ptype == "date":
        prefix: DatePrefix = "eq"
        text = raw
        if len(raw) > 2 and raw[:2] in _PREFIXES:
            prefix = raw[:2]  # type: ignore[assignment]
            text = raw[2:]
        span = parse_range(text, tz)
        if span is None:
            raise BadRequest(
                f"Cannot read the date {raw!r} for {name!r}: use [prefix]YYYY[-MM[-DD[Thh:mm[:ss]"
                "[zone]]]].",
                [name],
                code="value",
            )
        return DateValue(prefix, span[0], span[1])
    value = normalise_string(raw)
    mode: Literal["start", "exact", "contains"] = "start"
    if mod == "exact":
        mode = "exact"
    elif mod == "contains":
        mode = "contains"
    return StringValue(value, mode, raw)


def _person_number_forms(values: tuple[Value, ...]) -> tuple[Value, ...]:
    """A code without a system written as a personnummer/samordningsnummer (``450101-1235``)
    also matches the stored 12 digits under that system."""
    extra: list[Value] = []
    for value in values:
        if not (isinstance(value, TokenValue) and value.system == ANY and value.code):
            continue
        for system in (identifiers.PERSONNUMMER_SYSTEM, identifiers.SAMORDNINGSNUMMER_SYSTEM):
            canon_system, canon_code = identifiers.canonical_token(system, value.code)
            if canon_code != value.code:
                extra.append(TokenValue(canon_system, canon_code))
    return tuple(extra)


def _result_param(
    query: SearchQuery,
    rtype: ResourceType,
    name: str,
    mod: str | None,
    raw: str,
    strict: bool,
    max_count: int,
) -> None:
    if name == "_count":
        try:
            count = int(raw)
        except ValueError:
            raise BadRequest(f"_count must be a whole number, not {raw!r}.", ["_count"]) from None
        if count < 0:
            raise BadRequest("_count must not be negative.", ["_count"])
        query.count = min(count, max_count)
        if count == 0:  # the total alone (search.html#count)
            query.summary_count = True
    elif name == "_sort":
        for key in raw.split(","):
            desc = key.startswith("-")
            key_name = key.lstrip("-")
            param = rtype.params.get(key_name)
            if key_name in ("_lastUpdated", "_id") or (param and param.type in ("date", "string")):
                query.sort.append(SortKey(key_name, desc))
            else:
                _unknown(query, strict, f"Cannot sort {rtype.name} by {key_name!r}.", "_sort")
    elif name == "_total":
        if raw not in ("none", "estimate", "accurate"):
            raise BadRequest("_total must be none, estimate or accurate.", ["_total"])
        query.total = raw  # type: ignore[assignment]
    elif name in ("_summary", "_elements"):
        pass  # read before the other parameters (parse_search)
    elif name in ("_include", "_revinclude"):
        query.includes.append(_parse_include(rtype, name, raw))
    elif name in ("_page_after", "_page_before"):
        query.cursor = decode_cursor(raw, name)
        query.cursor_before = name == "_page_before"
    elif name in ("_format", "_pretty", "_contained"):
        if name == "_format" and raw not in ("json", "application/json", "application/fhir+json"):
            _unknown(query, strict, "Only JSON is served.", "_format")
    _ = mod


def _parse_include(rtype: ResourceType, name: str, raw: str) -> Include:
    parts = raw.split(":")
    if len(parts) not in (2, 3):
        raise BadRequest(f"{name} must be Type:param[:target], not {raw!r}.", [name])
    source, param_name = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    reverse = name == "_revinclude"
    source_type = REGISTRY.get(source)
    if source_type is None or (not reverse and source != rtype.name):
        raise BadRequest(f"{name}={raw}: {source!r} cannot be included here.", [name])
    param = source_type.params.get(param_name)
    if param is None or param.type != "reference":
        raise BadRequest(f"{name}={raw}: {param_name!r} is not a reference parameter of "
                         f"{source}.", [name])
    if reverse and param.targets and rtype.name not in param.targets:
        raise BadRequest(f"{name}={raw}: {source}.{param_name} never points to {rtype.name}.",
                         [name])
    return Include(source, param_name, target, reverse)


def encode_cursor(values: tuple[Any, ...]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(values))).decode().rstrip("=")


def decode_cursor(raw: str, name: str = "_page_after") -> tuple[Any, ...]:
    try:
        padded = raw + "=" * (-len(raw) % 4)
        values = orjson.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, orjson.JSONDecodeError):
        raise BadRequest("The paging cursor is not valid; start the search again.",
                         [name]) from None
    if not isinstance(values, list):
        raise BadRequest("The paging cursor is not valid; start the search again.", [name])
    return tuple(values)
