"""Switching subscriptions on: types, write check, hook, CapabilityStatement, topics, operations.

:func:`install` is called once per repository (the API's and each worker's):
it registers ``Subscription`` and ``Basic`` (topics, read-only), puts the
Subscription write check in ``WRITE_CHECKS``, the matching hook on the
repository and the topic advertisement in the CapabilityStatement. The
returned :class:`SubscriptionFeature` then serves ``$status`` and ``$events``
and, for ``samplan serve --with-worker``, runs a worker inside the app.
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
from samplan.fhir.errors import BadRequest, Gone, NotFound
from samplan.fhir.registry import READ_ONLY, ResourceType, SearchParam, register
from samplan.fhir.resource import WRITE_CHECKS, instant
from samplan.interactions import conformance as stored_conformance
from samplan.security.guard import AccessControl
from samplan.security.subscriber import principal_of
from samplan.settings import Settings
from samplan.store.repository import Repository
from samplan.subscriptions import delivery, notifications, store
from samplan.subscriptions.matching import Matcher
from samplan.subscriptions.model import CONTENTS, Content, SubscriptionCheck
from samplan.subscriptions.signing import SecretBox
from samplan.subscriptions.topics import TopicRegistry

if TYPE_CHECKING:
    from samplan.api.deps import Services
    from samplan.security.guard import GuardedFhirService
    from samplan.subscriptions.worker import Worker

EXTRAS_KEY = "subscriptions"
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

    def __init__(self, settings: Settings, repo: Repository, topics: TopicRegistry) -> None:
        self.settings = settings
        self.repo = repo
        self.topics = topics
        key = settings.webhook_secret_key
        self.box = SecretBox(key.get_secret_value() if key else None)
        self.check = SubscriptionCheck(
            topics, self.box, base_url=settings.base_url,
            allow_private=settings.subscriptions_allow_private_endpoints,
        )
        self.matcher = Matcher(topics, base_url=settings.base_url, tz=ZoneInfo(settings.timezone))
        self.worker: Worker | None = None
        self._worker_task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, services: Services) -> None:
        """Store the topics as Basic resources; start the in-process worker if configured."""
        services.extras[EXTRAS_KEY] = self
        await stored_conformance.sync(self.repo, self.topics.resources())
        if self.settings.subscriptions_in_process_worker:
            from samplan.subscriptions.worker import Worker

            self.worker = Worker(self.repo, services.http, self.settings, self.box)
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

    async def _live_resource(self, subscription_id: str) -> None:
        stored = await self.repo.read("Subscription", subscription_id)
        if stored is None:
            raise NotFound(f"Subscription/{subscription_id} does not exist.")
        if stored.deleted:
            raise Gone(f"Subscription/{subscription_id} was deleted.")

    async def status(self, ids: list[str] | None, statuses: list[str] | None) -> dict[str, Any]:
        """``$status``: a searchset Bundle with one SubscriptionStatus per subscription."""
        if ids is not None and len(ids) == 1:
            await self._live_resource(ids[0])
        async with self.repo.engine.connect() as conn:
            found = await store.states(conn, ids, statuses)
            entries = []
            for state in found:
                entries.append({
                    "fullUrl": f"{self.settings.base_url}/Subscription/{state.id}",
                    "resource": await self._status_of(conn, state),
                    "search": {"mode": "match"},
                })
        return {"resourceType": "Bundle", "id": str(uuid.uuid4()),
                "meta": {"lastUpdated": instant(from_us(now_us()))}, "type": "searchset",
                "total": len(entries), "entry": entries}

    async def _status_of(self, conn: Any, state: store.SubscriptionState) -> dict[str, Any]:
        counts = await store.event_counts(conn, state.id)
        dead = await store.dead_letters(conn, state.id, MAX_DEAD_LETTERS_SHOWN)
        oldest = await store.oldest_event(conn, state.id)
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
            base_url=self.settings.base_url, subscription_id=state.id, topic=state.topic,
            status=state.status, kind="query-status", events_count=state.events_count,
            content="id-only", errors=errors, extra=extra,
        )

    # -- $events -------------------------------------------------------------------------------

    async def events(self, subscription_id: str, *, since: str | None, until: str | None,
                     content: str | None, guard: GuardedFhirService | None = None) -> bytes:
        """``$events``: the kept events in a number range, as one notification Bundle.

        Screened like a delivery, for the Subscription's writer *and* the caller
        (``guard``): events either may not see now are withheld (number only),
        full resources need read scope. What is shown is logged (``notify``
        entries, committed before this returns).
        """
        await self._live_resource(subscription_id)
        low = _event_number(since, "eventsSinceNumber") or 1
        high = _event_number(until, "eventsUntilNumber")
        if content is not None and content not in CONTENTS:
            raise BadRequest(f"content must be one of {', '.join(CONTENTS)}.", ["content"])
        async with self.repo.engine.connect() as conn:
            found = await store.states(conn, [subscription_id])
            if not found:
                raise NotFound(f"Subscription/{subscription_id} has no events.")
            state = found[0]
            shape: Content = content or state.config.content
            rows = await store.events_between(conn, subscription_id, low, high,
                                              MAX_EVENTS_PER_QUERY)
            control = guard.control if guard is not None else self.matcher.control
            recipients = [principal_of(state.subscriber)]
            if guard is not None:
                recipients.append(guard.principal)
            screened = (await delivery.screen_events(conn, control, recipients, rows, shape)
                        if control is not None
                        else delivery.Screened(frozenset(), {}, {}))
        if control is not None and guard is not None:
            query = (f"Subscription/{subscription_id}/$events?eventsSinceNumber={low}"
                     + (f"&eventsUntilNumber={high}" if high is not None else "")
                     + f"&content={shape}")
            await control.log(delivery.notification_records(
                guard.principal, subscription_id, rows, screened, description=query,
                client_ip=guard.client_ip))
        parameters = notifications.status_parameters(
            base_url=self.settings.base_url, subscription_id=state.id, topic=state.topic,
            status=state.status, kind="query-event", events_count=state.events_count,
            content=shape, events=rows, withheld=screened.withheld,
        )
        return notifications.bundle(base_url=self.settings.base_url, parameters=parameters,
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


async def stop(services: Services) -> None:
    """Stop the in-process worker, if any (before the engine and HTTP client close)."""
    feature = services.extras.get(EXTRAS_KEY)
    if isinstance(feature, SubscriptionFeature):
        await feature.stop()


def install(settings: Settings, repo: Repository) -> SubscriptionFeature:
    """Switch subscriptions on for ``repo`` (idempotent: apps are built many times in tests)."""
    register_types()
    feature = SubscriptionFeature(settings, repo, TopicRegistry.load(topics_dir(settings)))
    WRITE_CHECKS[:] = [c for c in WRITE_CHECKS if not isinstance(c, SubscriptionCheck)]
    WRITE_CHECKS.append(feature.check)
    repo.before_commit[:] = [h for h in repo.before_commit if not isinstance(h, Matcher)]
    feature.matcher.control = AccessControl(repo, hook=False)
    repo.before_commit.append(feature.matcher)
    contributor = _advertise(feature.topics)
    CONTRIBUTORS[:] = [c for c in CONTRIBUTORS
                       if getattr(c, "__name__", "") != contributor.__name__]
    CONTRIBUTORS.append(contributor)
    return feature
