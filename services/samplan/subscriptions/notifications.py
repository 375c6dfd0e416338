"""Notification Bundles in the backport IG's R4 form.

Every notification (handshake, heartbeat, event-notification) and the answer of
``$events`` is a ``history`` Bundle whose first entry is a ``Parameters``
resource with the ``backport-subscription-status-r4`` profile (the R4 stand-in
for R5's SubscriptionStatus)::

    subscription                     valueReference   Subscription/[id] (absolute)
    topic                            valueCanonical   (not for `empty` payloads)
    status                           valueCode        requested | active | error | off
    type                             valueCode        handshake | heartbeat | event-notification
                                                      | query-status | query-event
    events-since-subscription-start  valueString      the subscription's event counter
    notification-event (0..*)        part: event-number (valueString), timestamp
                                     (valueInstant), focus (valueReference; not for `empty`)
    error (0..*)                     valueCodeableConcept

After it, for ``id-only`` and ``full-resource`` payloads, one entry per event
focus with ``request`` (the method that made the version) and ``response``
(``etag`` = the version); ``full-resource`` adds the resource as it was stored
at that version (the stored bytes, embedded without re-serialising). A
deletion has no resource.

Access (``security/subscriber.py``): an event the recipient may no longer
see is *withheld*: its ``notification-event`` keeps the number and timestamp
(so there is no gap) but has no focus, and it has no entry. A full-resource
entry carries the resource only where the recipient may read its type.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Literal

import orjson

from samplan.fhir.dates import from_us, now_us
from samplan.fhir.resource import instant
from samplan.subscriptions.model import BACKPORT, Content
from samplan.subscriptions.store import EventRow

STATUS_PROFILE = BACKPORT + "backport-subscription-status-r4"
ERROR_SYSTEM = "https://samplan.se/fhir/CodeSystem/subscription-error"
NotificationType = Literal[
    "handshake", "heartbeat", "event-notification", "query-status", "query-event"
]
FocusKey = tuple[str, str, int]


def _instant(us: int) -> str:
    return instant(from_us(us))


def error_concept(code: str, text: str) -> dict[str, Any]:
    return {"coding": [{"system": ERROR_SYSTEM, "code": code}], "text": text}


def status_parameters(
    *,
    base_url: str,
    subscription_id: str,
    topic: str,
    status: str,
    kind: NotificationType,
    events_count: int,
    content: Content,
    events: Sequence[EventRow] = (),
    errors: Sequence[dict[str, Any]] = (),
    extra: Sequence[dict[str, Any]] = (),
    withheld: Collection[int] = (),
) -> dict[str, Any]:
    """The SubscriptionStatus (R4: Parameters) of one notification or query."""
    parameters: list[dict[str, Any]] = [
        {"name": "subscription",
         "valueReference": {"reference": f"{base_url}/Subscription/{subscription_id}"}},
    ]
    if content != "empty":
        parameters.append({"name": "topic", "valueCanonical": topic})
    parameters += [
        {"name": "status", "valueCode": status},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(events_count)},
    ]
    for event in events:
        parts: list[dict[str, Any]] = [
            {"name": "event-number", "valueString": str(event.event_number)},
            {"name": "timestamp", "valueInstant": _instant(event.occurred_at)},
        ]
        if content != "empty" and event.event_number not in withheld:
            parts.append({"name": "focus", "valueReference": {
                "reference": f"{base_url}/{event.focus_type}/{event.focus_id}"}})
        parameters.append({"name": "notification-event", "part": parts})
    parameters += [{"name": "error", "valueCodeableConcept": e} for e in errors]
    parameters += extra
    return {
        "resourceType": "Parameters",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [STATUS_PROFILE]},
        "parameter": parameters,
    }


def _focus_entry(base_url: str, event: EventRow, content: Content,
                 stored: bytes | None) -> dict[str, Any]:
    method = event.method if event.method in ("POST", "PUT", "PATCH", "DELETE") else "PUT"
    entry: dict[str, Any] = {"fullUrl": f"{base_url}/{event.focus_type}/{event.focus_id}"}
    if content == "full-resource" and stored is not None and method != "DELETE":
        entry["resource"] = orjson.Fragment(stored)
    entry["request"] = {
        "method": method,
        "url": event.focus_type if method == "POST" else f"{event.focus_type}/{event.focus_id}",
    }
    entry["response"] = {
        "status": {"POST": "201", "DELETE": "204"}.get(method, "200"),
        "etag": f'W/"{event.focus_version}"',
        "lastModified": _instant(event.occurred_at),
    }
    return entry


def bundle(
    *,
    base_url: str,
    parameters: dict[str, Any],
    events: Sequence[EventRow] = (),
    content: Content = "empty",
    contents: Mapping[FocusKey, bytes | None] | None = None,
    withheld: Collection[int] = (),
) -> bytes:
    """A notification Bundle (type ``history``), the status Parameters first."""
    at = _instant(now_us())
    sid = next(p["valueReference"]["reference"] for p in parameters["parameter"]
               if p["name"] == "subscription").rsplit("/", 1)[-1]
    entries: list[dict[str, Any]] = [{
        "fullUrl": f"urn:uuid:{parameters['id']}",
        "resource": parameters,
        "request": {"method": "GET", "url": f"Subscription/{sid}/$status"},
        "response": {"status": "200"},
    }]
    if content != "empty":
        contents = contents or {}
        entries.extend(
            _focus_entry(base_url, ev, content,
                         contents.get((ev.focus_type, ev.focus_id, ev.focus_version)))
            for ev in events if ev.event_number not in withheld
        )
    return orjson.dumps({
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": at},
        "type": "history",
        "timestamp": at,
        "entry": entries,
    })
