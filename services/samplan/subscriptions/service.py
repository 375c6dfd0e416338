"""Switching subscriptions on: types, write check, hook, CapabilityStatement, topics, operations.

:func:`install` is called once per gate (the API's and each worker's): it
registers ``Subscription`` and ``Basic`` (topics, read-only), puts the
Subscription write check in ``WRITE_CHECKS``, the matching hook on the gate
and the topic advertisement in the CapabilityStatement. The returned
:class:`SubscriptionFeature` then serves ``$status`` and ``$events`` (for an
Access the gate gave: the Subscription is read through it first, and the
events are screened and logged by the gate) and, for ``samplan serve
--with-worker``, runs a worker inside the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from samplan.fhir import conformance
from samplan.fhir.capability import CONTRIBUTORS
from samplan.fhir.dates import from_us, now_us
from samplan.fhir.errors import BadRequest, NotFound
from samplan.fhir.registry import READ_ONLY, ResourceType, SearchParam, register
from samplan.fhir.resource import WRITE_CHECKS, instant
from samplan.security import notifications as screening
from samplan.security.gate import Access, Gate
from samplan.security.subscriber import principal_of
from samplan.settings import Settings
from samplan.subscriptions import notifications
from samplan.subscriptions import store as outbox
from samplan.subscriptions.matching import Matcher
from samplan.subscriptions.model import CONTENTS, Content, SubscriptionCheck
from samplan.subscriptions.signing import SecretBox
from samplan.subscriptions.topics import TopicRegistry

if TYPE_CHECKING:
    import httpx

    from samplan.subscriptions.worker import Worker

TOPIC_CANONICAL_EXT = ("http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
                       "capabilitystatement-subscriptiontopic-canonical")
OPERATIONS = "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/"
BACKPORT_IG = ("http://hl7.org/fhir/uv/subscriptions-backport/ImplementationGuide/"
               "hl7.fhir.uv.subscriptions-backport")
MAX_EVENTS_PER_QUERY = 1000
MAX_DEAD_LETTERS_SHOWN = 100


def topics_dir(settings: Settings) -> Path:
    own = (settings.profiles_dir or conformance.DEFAULT_PROFILES_DIR) / "subscription-topics"
    return own if own.is_dir() else conformance.DEFAULT_PROFILES_DIR / "subscription-topics"


def register_types() -> None:
    def p(name: str, type_: Any, path: str, desc: str) -> SearchParam:
        return SearchParam(name, type_, (path,), desc)

    register(ResourceType("Subscription", {x.name: x for x in (
        p("status", "token", "status", "requested | active | error | off"),
        p("url", "token", "channel.endpoint", "The URL notifications are sent to"),
        p("criteria", "string", "criteria", "The topic canonical subscribed to"),
        p("type", "token", "channel.type", "rest-hook (the one channel served)"),
        p("payload", "token", "channel.payload", "The MIME type of notifications"),
    )}))
    register(ResourceType("Basic", {x.name: x for x in (
        p("code", "token", "code", "Kind of resource (SubscriptionTopic for topics)"),
    )}, interactions=READ_ONLY, conditional_create=False))


class SubscriptionFeature:
    """The installed feature: what the API and the in-process worker use."""

    def __init__(self, settings: Settings, gate: Gate, topics: TopicRegistry) -> None:
        self.settings = settings
        self.gate = gate
        self.topics = topics
        key = settings.webhook_secret_key
        self.box = SecretBox(key.get_secret_value() if key else None)
        self.check = SubscriptionCheck(
            topics, self.box, base_url=settings.base_url,
            allow_private=settings.subscriptions_allow_private_endpoints,
        )
        self.matcher = Matcher(topics, base_url=settings.base_url, tz=ZoneInfo(settings.timezone),
                               endpoints=self.check.endpoints)
        self.worker: Worker | None = None
        self._worker_task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, http: httpx.AsyncClient) -> None:
        """Store the topics as Basic resources; start the in-process worker if configured."""
        await self.gate.sync_conformance(self.topics.resources())
        if self.settings.subscriptions_in_process_worker:
            from samplan.subscriptions.worker import Worker

            self.worker = Worker(self.gate, http, self.settings, self.box)
            self.matcher.listeners.append(self.worker.hint)
            self._worker_task = asyncio.create_task(self.worker.run())

    async def stop(self) -> None:
        if self.worker is not None and self._worker_task is not None:
            self.worker.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker_task
            self.matcher.listeners.remove(self.worker.hint)
            self.worker = self._worker_task = None

    # -- $status -------------------------------------------------------------------------------

    async def status(self, access: Access, ids: list[str] | None, statuses: list[str] | None
                     ) -> dict[str, Any]:
        """``$status``: a searchset Bundle with one SubscriptionStatus per subscription the
        caller may see (``ids`` None: all of them); one named that they may not see is a 404."""
        if ids is not None and len(ids) == 1:
            await access.read("Subscription", ids[0])  # 404 / 410, and logged
        search = [("_count", str(self.settings.max_page_size))]
        if ids:
            search.append(("_id", ",".join(ids)))
        _, page = await access.search("Subscription", search)
        ids = [m.resource_id for m in page.matches]
        base = access.base_url or self.settings.base_url  # the request's, for its links
        async with self.gate.engine.connect() as conn:
            found = await outbox.states(conn, ids, statuses)
            entries = []
            for state in found:
                entries.append({
                    "fullUrl": f"{base}/Subscription/{state.id}",
                    "resource": await self._status_of(conn, state, base),
                    "search": {"mode": "match"},
                })
        return {"resourceType": "Bundle", "id": str(uuid.uuid4()),
                "meta": {"lastUpdated": instant(from_us(now_us()))}, "type": "searchset",
                "total": len(entries), "entry": entries}

    async def _status_of(self, conn: Any, state: outbox.SubscriptionState, base: str
                         ) -> dict[str, Any]:
        counts = await outbox.event_counts(conn, state.id)
        dead = await outbox.dead_letters(conn, state.id, MAX_DEAD_LETTERS_SHOWN)
        oldest = await outbox.oldest_event(conn, state.id)
        errors = []
        if state.last_error and state.status in ("error", "requested"):
            code = "handshake-failed" if state.status == "requested" else "delivery-failed"
            errors.append(notifications.error_concept(code, state.last_error))
        errors += [notifications.error_concept(
            "dead-letter",
            f"Event {ev.event_number} was not delivered after {ev.attempts} attempts: "
            f"{ev.last_error}") for ev in dead]
        extra: list[dict[str, Any]] = [
            {"name": "pending-events", "valueInteger": counts.get("pending", 0)},
            {"name": "dead-letter-events", "valueInteger": counts.get("dead", 0)},
        ]
        if oldest is not None:
            extra.append({"name": "oldest-available-event", "valueString": str(oldest)})
        extra += [{"name": "dead-letter", "part": [
            {"name": "event-number", "valueString": str(ev.event_number)},
            {"name": "attempts", "valueInteger": ev.attempts},
            {"name": "last-error", "valueString": ev.last_error or ""},
        ]} for ev in dead]
        return notifications.status_parameters(
            base_url=base, subscription_id=state.id, topic=state.topic,
            status=state.status, kind="query-status", events_count=state.events_count,
            content="id-only", errors=errors, extra=extra,
        )

    # -- $events -------------------------------------------------------------------------------

    async def events(self, access: Access, subscription_id: str, *, since: str | None,
                     until: str | None, content: str | None) -> bytes:
        """``$events``: the kept events in a number range, as one notification Bundle.

        The Subscription is read through ``access`` first (404 unless the caller may see
        it). Screened like a delivery, for the Subscription's writer *and* the caller:
        events either may not see now are withheld (number only), full resources need
        read scope. What is shown is logged (``notify`` entries, committed before this
        returns).
        """
        await access.read("Subscription", subscription_id)
        low = _event_number(since, "eventsSinceNumber") or 1
        high = _event_number(until, "eventsUntilNumber")
        if content is not None and content not in CONTENTS:
            raise BadRequest(f"content must be one of {', '.join(CONTENTS)}.", ["content"])
        async with self.gate.engine.connect() as conn:
            found = await outbox.states(conn, [subscription_id])
            if not found:
                raise NotFound(f"Subscription/{subscription_id} has no events.")
            state = found[0]
            shape: Content = content or state.config.content
            rows = await outbox.events_between(conn, subscription_id, low, high,
                                              MAX_EVENTS_PER_QUERY)
            recipients = [principal_of(state.subscriber), access.principal]
            screened = await screening.screen_events(self.gate, conn, recipients, rows, shape)
        query = (f"Subscription/{subscription_id}/$events?eventsSinceNumber={low}"
                 + (f"&eventsUntilNumber={high}" if high is not None else "")
                 + f"&content={shape}")
        if access.principal is not None:
            await self.gate.log(screening.notification_records(
                access.principal, subscription_id, rows, screened, description=query,
                client_ip=access.client_ip))
        base = access.base_url or self.settings.base_url  # the request's, for its links
        parameters = notifications.status_parameters(
            base_url=base, subscription_id=state.id, topic=state.topic,
            status=state.status, kind="query-event", events_count=state.events_count,
            content=shape, events=rows, withheld=screened.withheld,
        )
        return notifications.bundle(base_url=base, parameters=parameters,
                                    events=rows, content=shape, contents=screened.contents,
                                    withheld=screened.withheld)


def _event_number(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    if not value.isdigit():
        raise BadRequest(f"{name} must be an event number (a whole number).", [name])
    return int(value)


def _advertise(topics: TopicRegistry) -> Any:
    def advertise_subscriptions(statement: dict[str, Any]) -> None:
        rest = statement["rest"][0]
        for entry in rest["resource"]:
            if entry["type"] == "Subscription":
                entry["extension"] = [{"url": TOPIC_CANONICAL_EXT, "valueCanonical": t.url}
                                      for t in topics]
                entry.setdefault("operation", []).extend([
                    {"name": "status", "definition": OPERATIONS + "backport-subscription-status"},
                    {"name": "events", "definition": OPERATIONS + "backport-subscription-events"},
                ])
        guides = statement.setdefault("implementationGuide", [])
        if BACKPORT_IG not in guides:
            guides.append(BACKPORT_IG)

    return advertise_subscriptions


def install(settings: Settings, gate: Gate) -> SubscriptionFeature:
    """Switch subscriptions on for ``gate`` (idempotent: apps are built many times in tests)."""
    register_types()
    feature = SubscriptionFeature(settings, gate, TopicRegistry.load(topics_dir(settings)))
    WRITE_CHECKS[:] = [c for c in WRITE_CHECKS if not isinstance(c, SubscriptionCheck)]
    WRITE_CHECKS.append(feature.check)
    gate.add_commit_hook(feature.matcher)
    contributor = _advertise(feature.topics)
    CONTRIBUTORS[:] = [c for c in CONTRIBUTORS
                       if getattr(c, "__name__", "") != contributor.__name__]
    CONTRIBUTORS.append(contributor)
    return feature
