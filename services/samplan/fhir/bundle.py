"""Bundles assembled around stored bytes (searchset, history, transaction responses).

Stored resources are embedded as ``orjson.Fragment``: the bytes go into the
Bundle as they are, never parsed and re-serialised (DESIGN.md, issue 7), unless
the search asked for less of them (``_summary``, ``_elements``: ``subsetting.py``).

Every link and ``fullUrl`` starts with the ``base_url`` the caller passes: the
request's own base (``api/base_url.py``), so a client that called ``localhost``
gets ``localhost`` links.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

import orjson

from samplan.fhir.dates import now_us
from samplan.fhir.errors import Issue, operation_outcome
from samplan.fhir.resource import instant
from samplan.fhir.search import SearchQuery, encode_cursor
from samplan.fhir.stored import HistoryPage, SearchPage, StoredResource
from samplan.fhir.subsetting import Subsetting


def full_url(base_url: str, stored: StoredResource) -> str:
    return f"{base_url}/{stored.resource_type}/{stored.resource_id}"


def _meta() -> dict[str, Any]:
    from samplan.fhir.dates import from_us

    return {"lastUpdated": instant(from_us(now_us()))}


def searchset(base_url: str, query: SearchQuery, page: SearchPage) -> bytes:
    own = f"{base_url}/{query.resource_type}"
    params = list(query.link_params)
    count = [("_count", str(query.count))]
    links = [{"relation": "self", "url": f"{own}?{urlencode(params + count)}"}]
    if page.next_cursor is not None:
        after = [("_page_after", encode_cursor(page.next_cursor))]
        links.append({"relation": "next", "url": f"{own}?{urlencode(params + count + after)}"})
    if page.previous_cursor is not None:
        before = [("_page_before", encode_cursor(page.previous_cursor))]
        links.append(
            {"relation": "previous", "url": f"{own}?{urlencode(params + count + before)}"}
        )
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": _meta(),
        "type": "searchset",
    }
    if page.total is not None:
        bundle["total"] = page.total
    bundle["link"] = links
    shape = query.subsetting
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": full_url(base_url, m),
            "resource": _embedded(m, shape),
            "search": {"mode": "match"},
        }
        for m in page.matches
    ]
    entries.extend(
        {
            "fullUrl": full_url(base_url, i),
            "resource": _embedded(i, shape if shape and shape.applies_to_includes else None),
            "search": {"mode": "include"},
        }
        for i in page.includes
    )
    if query.warnings:
        entries.append(
            {
                "resource": operation_outcome(query.warnings),
                "search": {"mode": "outcome"},
            }
        )
    if entries:
        bundle["entry"] = entries
    return orjson.dumps(bundle)


def _embedded(stored: StoredResource, shape: Subsetting | None) -> orjson.Fragment:
    """The stored bytes as they are, or cut to what ``_summary`` / ``_elements`` asked."""
    content = stored.content or b"{}"
    return orjson.Fragment(shape.apply(content) if shape is not None else content)


def history(base_url: str, self_url: str, page: HistoryPage, next_url: str | None) -> bytes:
    links = [{"relation": "self", "url": self_url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    entries = []
    for e in page.entries:
        entry: dict[str, Any] = {"fullUrl": full_url(base_url, e)}
        if e.content is not None and not e.deleted:
            entry["resource"] = orjson.Fragment(e.content)
        method = e.method if e.method in ("POST", "PUT", "PATCH", "DELETE") else "PUT"
        url = f"{e.resource_type}" if method == "POST" else f"{e.resource_type}/{e.resource_id}"
        entry["request"] = {"method": method, "url": url}
        entry["response"] = {
            "status": "201 Created" if method == "POST" else ("204 No Content" if e.deleted
                                                               else "200 OK"),
            "etag": e.etag,
            "lastModified": instant(e.last_updated_at),
        }
        entries.append(entry)
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": _meta(),
        "type": "history",
    }
    if page.total is not None:
        bundle["total"] = page.total
    bundle["link"] = links
    if entries:
        bundle["entry"] = entries
    return orjson.dumps(bundle)


def response_entry(
    status: str,
    stored: StoredResource | None = None,
    *,
    base_url: str,
    include_resource: bool = False,
    outcome: list[Issue] | None = None,
) -> dict[str, Any]:
    """One ``Bundle.entry`` of a transaction-response or batch-response."""
    entry: dict[str, Any] = {}
    response: dict[str, Any] = {"status": status}
    if stored is not None:
        entry["fullUrl"] = full_url(base_url, stored)
        if include_resource and stored.content is not None and not stored.deleted:
            entry["resource"] = orjson.Fragment(stored.content)
        response["location"] = (
            f"{stored.resource_type}/{stored.resource_id}/_history/{stored.version_id}"
        )
        response["etag"] = stored.etag
        response["lastModified"] = instant(stored.last_updated_at)
    if outcome:
        response["outcome"] = operation_outcome(outcome)
    entry["response"] = response
    return entry
