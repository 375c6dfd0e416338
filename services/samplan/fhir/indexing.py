"""Search index rows extracted from a resource at write time.

One row per indexed value, in four shapes (token, reference, date, string),
so that search is SQL over narrow tables and never a scan of stored JSON
(DESIGN.md, as HAPI and Medplum do it).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from samplan.fhir import identifiers
from samplan.fhir.dates import MAX_US, MIN_US, parse_range
from samplan.fhir.registry import ResourceType, SearchParam


@dataclass(slots=True)
class IndexRows:
    tokens: list[tuple[str, str | None, str]] = field(default_factory=list)
    references: list[tuple[str, str, str]] = field(default_factory=list)
    dates: list[tuple[str, int, int]] = field(default_factory=list)
    strings: list[tuple[str, str]] = field(default_factory=list)


def normalise_string(value: str) -> str:
    """Case- and accent-insensitive form used for string search (ö matches o)."""
    decomposed = unicodedata.normalize("NFKD", value.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).strip()


def exact_param(name: str) -> str:
    """The index key of a string parameter's values as written (for ``:exact``)."""
    return f"{name}:exact"


def values_at(resource: dict[str, Any], path: str) -> Iterator[Any]:
    """Every value at a dotted element path, lists flattened at each step."""
    nodes: list[Any] = [resource]
    for part in path.split("."):
        next_nodes: list[Any] = []
        for node in nodes:
            if isinstance(node, dict) and part in node:
                value = node[part]
                if isinstance(value, list):
                    next_nodes.extend(value)
                else:
                    next_nodes.append(value)
        nodes = next_nodes
    yield from nodes


def parse_reference(reference: str, base_url: str = "") -> tuple[str, str] | None:
    """(type, id) of a literal reference to this server, relative or absolute."""
    ref = reference
    if base_url and ref.startswith(base_url + "/"):
        ref = ref[len(base_url) + 1 :]
    if "://" in ref or ref.startswith(("urn:", "#")):
        return None
    parts = ref.split("/")
    if len(parts) == 2 or (len(parts) == 4 and parts[2] == "_history"):
        if parts[0] and parts[1]:
            return parts[0], parts[1]
    return None


def extract(
    resource: dict[str, Any], resource_type: ResourceType, tz: ZoneInfo, base_url: str = ""
) -> IndexRows:
    rows = IndexRows()
    for param in resource_type.params.values():
        if param.extractor is not None:
            for value in param.extractor(resource):
                _index_value(rows, param, value, tz, base_url)
            continue
        for path in param.paths:
            for value in values_at(resource, path):
                _index_value(rows, param, value, tz, base_url)
    meta = resource.get("meta")
    if isinstance(meta, dict):  # _security and _tag: every type (search.html#all)
        for name, key in (("_security", "security"), ("_tag", "tag")):
            for coding in meta.get(key) or ():
                if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                    system = coding.get("system")
                    rows.tokens.append((name, system if isinstance(system, str) else None,
                                        coding["code"]))
    return rows


def _index_value(
    rows: IndexRows, param: SearchParam, value: Any, tz: ZoneInfo, base_url: str
) -> None:
    if param.type == "token":
        rows.tokens.extend((param.name, s, c) for s, c in _tokens(value))
    elif param.type == "reference":
        if isinstance(value, dict) and isinstance(value.get("reference"), str):
            target = parse_reference(value["reference"], base_url)
            if target and (not param.targets or target[0] in param.targets):
                rows.references.append((param.name, target[0], target[1]))
    elif param.type == "date":
        span = _date_span(value, tz)
        if span:
            rows.dates.append((param.name, span[0], span[1]))
    elif param.type == "string":
        for text in _strings(value):
            normalised = normalise_string(text)
            if normalised:
                rows.strings.append((param.name, normalised[:255]))
                # :exact compares case and accents too, so it needs the text as written
                rows.strings.append((exact_param(param.name), text[:255]))


def _tokens(value: Any) -> Iterator[tuple[str | None, str]]:
    if isinstance(value, bool):
        yield None, "true" if value else "false"
    elif isinstance(value, int):  # an integer value (Observation.valueInteger: the RUB level)
        yield None, str(value)
    elif isinstance(value, str):
        yield None, value
    elif isinstance(value, dict):
        if "coding" in value:
            for coding in value.get("coding") or []:
                if isinstance(coding, dict) and coding.get("code"):
                    yield coding.get("system"), str(coding["code"])
        elif "code" in value:
            if value.get("code"):
                yield value.get("system"), str(value["code"])
        elif value.get("value"):
            system, code = identifiers.canonical_token(value.get("system"), str(value["value"]))
            if code:
                yield system, code


def _date_span(value: Any, tz: ZoneInfo) -> tuple[int, int] | None:
    if isinstance(value, str):
        return parse_range(value, tz)
    if isinstance(value, dict) and ("start" in value or "end" in value):
        low, high = MIN_US, MAX_US
        if isinstance(value.get("start"), str):
            start = parse_range(value["start"], tz)
            if start:
                low = start[0]
        if isinstance(value.get("end"), str):
            end = parse_range(value["end"], tz)
            if end:
                high = end[1]
        return low, high
    return None


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key in ("text", "family", "given", "prefix", "suffix", "line", "city", "district",
                    "state", "postalCode", "country"):
            item = value.get(key)
            if isinstance(item, str):
                yield item
            elif isinstance(item, list):
                yield from (i for i in item if isinstance(i, str))
