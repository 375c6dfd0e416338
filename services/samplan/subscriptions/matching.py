"""The before-commit hook: changes become outbox rows inside the write transaction.

Registered on the repository, it runs at the end of every write transaction
(a single write or a whole transaction Bundle), so an event exists exactly
when its change commits: a write that rolls back leaves no event, and a
committed change always has its events.

Two jobs:

1. A written ``Subscription`` version updates that subscription's state row
   (status, channel, secret; see :func:`samplan.subscriptions.store.sync_state`); a deleted one
   removes it. A client's write is refused (422) here when the endpoint's name
   resolves to a non-public address: the write check cannot wait for DNS, this
   hook can (endpoints.py).
2. Each change of a type some topic triggers on is matched against the live
   subscriptions of that topic; every match is numbered in the subscription's
   sequence and appended to ``subscription_events``.

``agreement-changed`` context: the change must belong to an agreement, i.e. be
a CarePlan, a CareTeam or Goal that a current CarePlan names (``careTeam``,
``goal``), or an Appointment whose ``basedOn`` names a CarePlan. Filters are
then evaluated on the agreement: ``patient`` (the plan's subject, or the
changed resource's own patient), ``category`` (the plan's category) and
``organization`` (``managingOrganization`` or an Organization participant of
the plan's care teams). For an update or delete, the version before counts as
well as the version after, so a plan moved away from a patient still tells
that patient's subscribers.

Access (issue 6): a Subscription written through the API keeps its writer's
access facts (``security/subscriber.py``); a change whose focus that
principal may not read (the version the event points at; for a deletion the
one before) is no event for that subscription. The gate screens it, in the
write transaction (``security/commit.py``: this hook sees a ``CommitView``,
never the store), and again at delivery.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from samplan.fhir.dates import now_us
from samplan.fhir.errors import Unprocessable
from samplan.fhir.indexing import extract
from samplan.fhir.registry import REGISTRY
from samplan.security.commit import Change, CommitView
from samplan.security.subscriber import SubscriberAccess, principal_of
from samplan.subscriptions import store as outbox
from samplan.subscriptions.endpoints import EndpointGuard
from samplan.subscriptions.model import ChannelConfig, FilterCriterion, read_config, sealed_secret
from samplan.subscriptions.topics import AGREEMENT_CHANGED, TopicRegistry

log = logging.getLogger("samplan.subscriptions")

# The plan parameter that names a resource of each type as part of the agreement.
_NAMED_BY_PLAN = {"CareTeam": "care-team", "Goal": "goal"}
SUPPORTED_TOPICS = frozenset({AGREEMENT_CHANGED})


def interaction_of(change: Change) -> str:
    if change.body is None:
        return "delete"
    if change.previous is None or change.previous.deleted:
        return "create"
    return "update"


def _previous_body(change: Change) -> dict[str, Any] | None:
    previous = change.previous
    if previous is None or previous.deleted or previous.content is None:
        return None
    body: dict[str, Any] = orjson.loads(previous.content)
    return body


@dataclass(slots=True)
class AgreementContext:
    """What filters are evaluated on: the agreement the changed resource belongs to."""

    patients: set[str] = field(default_factory=set)
    organizations: set[str] = field(default_factory=set)
    categories: set[tuple[str | None, str]] = field(default_factory=set)

    def satisfies(self, filters: tuple[FilterCriterion, ...]) -> bool:
        """All filters hold (AND); within one filter any value may (OR)."""
        for criterion in filters:
            if criterion.name == "patient":
                ok = any(v in self.patients for v in criterion.values)
            elif criterion.name == "organization":
                ok = any(v in self.organizations for v in criterion.values)
            elif criterion.name == "category":
                ok = any(self._has_token(v) for v in criterion.values)
            else:
                ok = False
            if not ok:
                return False
        return True

    def _has_token(self, value: str) -> bool:
        if "|" not in value:
            return any(code == value for _, code in self.categories)
        system, code = value.split("|", 1)
        return (system or None, code) in self.categories


class Matcher:
    """The repository's before-commit hook for subscriptions (one per repository)."""

    def __init__(self, topics: TopicRegistry, *, base_url: str, tz: ZoneInfo,
                 endpoints: EndpointGuard | None = None) -> None:
        unsupported = {t.url for t in topics} - SUPPORTED_TOPICS
        if unsupported:
            raise ValueError(f"no matching code for topics {sorted(unsupported)}")
        self.topics = topics
        self.base_url = base_url
        self.tz = tz
        self.endpoints = endpoints or EndpointGuard(allow_private=False)
        self.listeners: list[Callable[[], None]] = []

    async def __call__(self, tx: CommitView) -> None:
        if not tx.changes:
            return
        trigger_types = self.topics.trigger_types
        written = [c for c in tx.changes if c.resource.resource_type == "Subscription"]
        relevant = [c for c in tx.changes if c.resource.resource_type in trigger_types]
        if written:
            await self._sync(tx, written)
        if relevant and await self._match(tx, relevant):
            await outbox.wake_workers(tx.conn)
            for listener in self.listeners:
                listener()

    # -- Subscription resources -> state rows ---------------------------------------------

    async def _sync(self, tx: CommitView, changes: list[Change]) -> None:
        now = now_us()
        writer = tx.writer  # None: the service itself (worker status changes)
        subscriber = SubscriberAccess.of(writer).to_json() if writer is not None else None
        for change in changes:
            sid = change.resource.resource_id
            if change.body is None:
                await outbox.forget(tx.conn, sid)
                continue
            config, issues = read_config(change.body, self.topics, base_url=self.base_url,
                                         allow_private=True)
            if config is None:
                # Only possible for a Subscription stored before its topic was withdrawn.
                log.warning("Subscription/%s cannot be served: %s", sid,
                            "; ".join(i.diagnostics for i in issues))
                await outbox.forget(tx.conn, sid)
                continue
            if writer is not None:  # a client's write: the name must resolve to public addresses
                refusal = await self.endpoints.refusal(config.endpoint)
                if refusal:
                    raise Unprocessable(refusal, ["Subscription.channel.endpoint"], code="value")
            await outbox.sync_state(
                tx.conn, subscription_id=sid, version_id=change.resource.version_id,
                status=str(change.body.get("status")), config=config,
                secret=sealed_secret(change.body), now=now,
                subscriber=subscriber, keep_subscriber=writer is None,
            )

    # -- changes -> events ------------------------------------------------------------------

    async def _match(self, tx: CommitView, changes: list[Change]) -> bool:
        hit = {t.url for t in self.topics for c in changes
               if t.triggers_on(c.resource.resource_type, interaction_of(c))}
        if not hit:
            return False
        live = await outbox.live_for_topics(tx.conn, hit)
        if not live:
            return False
        matched: list[tuple[str, str | None, Change]] = []
        for change in changes:
            stored = change.resource
            interaction = interaction_of(change)
            candidates: list[tuple[str, ChannelConfig, str | None]] = []
            for sid, config, subscriber in live:
                topic = self.topics.get(config.topic)
                if topic is not None and topic.triggers_on(stored.resource_type, interaction):
                    candidates.append((sid, config, subscriber))
            if not candidates:
                continue
            context = await self._agreement(tx, change)
            if context is None:
                continue
            matched.extend((sid, subscriber, change) for sid, config, subscriber in candidates
                           if context.satisfies(config.filters))
        events: dict[str, list[outbox.NewEvent]] = {}
        for sid, _, change in await self._readable(tx, matched):
            stored = change.resource
            events.setdefault(sid, []).append(outbox.NewEvent(
                stored.resource_type, stored.resource_id, stored.version_id,
                stored.method or "PUT", stored.last_updated,
            ))
        now = now_us()
        for sid in sorted(events):  # one lock order for every writer: no deadlocks
            await outbox.append_events(tx.conn, sid, events[sid], now)
        return bool(events)

    async def _readable(
        self, tx: CommitView, matched: list[tuple[str, str | None, Change]]
    ) -> list[tuple[str, str | None, Change]]:
        """The matches whose focus their subscriber may read (reach asked in this tx)."""
        by_subscriber: dict[str, list[int]] = {}
        for i, (_, subscriber, _) in enumerate(matched):
            if subscriber is not None:
                by_subscriber.setdefault(subscriber, []).append(i)
        dropped: set[int] = set()
        for subscriber, indexes in by_subscriber.items():
            focuses = [(matched[i][2].resource.resource_type,
                        matched[i][2].body or _previous_body(matched[i][2])) for i in indexes]
            verdicts = await tx.screen([principal_of(subscriber)], focuses)
            dropped.update(i for i, v in zip(indexes, verdicts, strict=True) if not v.visible)
        return [m for i, m in enumerate(matched) if i not in dropped]

    def _rows(self, body: dict[str, Any]) -> Any:
        return extract(body, REGISTRY[body["resourceType"]], self.tz, self.base_url)

    async def _agreement(self, tx: CommitView, change: Change) -> AgreementContext | None:
        """The agreement ``change`` belongs to, or None when it belongs to none."""
        stored = change.resource
        rtype, rid = stored.resource_type, stored.resource_id
        bodies = [b for b in (change.body, _previous_body(change)) if b is not None]
        plans: list[dict[str, Any]]
        if rtype == "CarePlan":
            plans = bodies
        else:
            plan_ids: set[str] = set()
            if rtype in _NAMED_BY_PLAN:
                plan_ids.update(await tx.referring("CarePlan", _NAMED_BY_PLAN[rtype],
                                                   rtype, rid))
            elif rtype == "Appointment":
                for body in bodies:
                    plan_ids.update(i for p, t, i in self._rows(body).references
                                    if p == "based-on" and t == "CarePlan")
            plans = await tx.current_bodies([("CarePlan", i) for i in sorted(plan_ids)])
        if not plans:
            return None
        context = AgreementContext()
        team_ids: set[str] = set()
        for body in [*plans, *bodies]:
            rows = self._rows(body)
            context.patients.update(f"{t}/{i}" for p, t, i in rows.references
                                    if p == "patient" and t == "Patient")
            if body["resourceType"] == "CarePlan":
                context.categories.update((sys, code) for p, sys, code in rows.tokens
                                          if p == "category")
                team_ids.update(i for p, t, i in rows.references
                                if p == "care-team" and t == "CareTeam")
        teams = [b for b in bodies if b["resourceType"] == "CareTeam"]
        if rtype == "CareTeam":
            team_ids.discard(rid)  # its own versions are in ``bodies``
        teams.extend(await tx.current_bodies([("CareTeam", i) for i in sorted(team_ids)]))
        for team in teams:
            context.organizations.update(
                f"{t}/{i}" for p, t, i in self._rows(team).references
                if p in ("organization", "participant") and t == "Organization"
            )
        return context
