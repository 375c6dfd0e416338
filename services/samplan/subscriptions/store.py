"""Every SQL statement of the subscriptions feature (its part of the store layer).

Three tables (``store/tables.py``): ``subscriptions`` (one row per
Subscription resource: its parsed channel, status, event counter and the
worker lease), ``subscription_events`` (the outbox: one row per event per
subscription, numbered from 1 in the subscription's own sequence) and
``subscription_attempts`` (one row per delivery attempt).

Concurrency, in short:

* A writer allocates event numbers with ``UPDATE subscriptions SET
  events_count = events_count + n ... RETURNING``: the row lock (PostgreSQL) or
  the single writer (SQLite) makes numbers gap-free and ordered as commits
  are. Rows are locked in id order, so two writers cannot deadlock.
* A worker *claims* a subscription in a short transaction (``FOR UPDATE SKIP
  LOCKED`` on PostgreSQL, so workers never wait for each other) by setting a
  lease; it then delivers without holding any lock, and a crashed worker's
  lease simply runs out. One lease holder per subscription keeps its events
  in order.
* ``due_at`` says when a subscription next has work. It is recomputed under
  the row lock when a worker lets go, so an event committed meanwhile is
  never left without a due time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from samplan.store.driver import driver_of
from samplan.store.tables import (
    subscription_attempts,
    subscription_events,
    subscriptions,
)
from samplan.subscriptions.model import ChannelConfig

LIVE = ("requested", "active", "error")  # still collecting events
DELIVERING = ("requested", "active")  # a worker has something to do
NOTIFY_CHANNEL = "samplan_subscriptions"

s = subscriptions.c
e = subscription_events.c

_LIVE_PG = ("SELECT id, config, subscriber FROM subscriptions "
            "WHERE topic = ANY($1::varchar[]) AND status = ANY($2::varchar[]) ORDER BY id")


@dataclass(frozen=True, slots=True)
class SubscriptionState:
    id: str
    topic: str
    status: str
    version_id: int
    config: ChannelConfig
    secret: str | None
    events_count: int
    due_at: int | None
    lease_owner: str | None
    lease_until: int | None
    handshake_attempts: int
    last_sent_at: int | None
    last_error: str | None
    created_at: int
    updated_at: int
    subscriber: str | None = None  # security.subscriber.SubscriberAccess as JSON


@dataclass(frozen=True, slots=True)
class EventRow:
    subscription_id: str
    event_number: int
    focus_type: str
    focus_id: str
    focus_version: int
    method: str
    occurred_at: int
    state: str
    attempts: int
    next_attempt_at: int
    delivered_at: int | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class NewEvent:
    focus_type: str
    focus_id: str
    focus_version: int
    method: str
    occurred_at: int


_STATE_COLUMNS = (s.id, s.topic, s.status, s.version_id, s.config, s.secret, s.events_count,
                  s.due_at, s.lease_owner, s.lease_until, s.handshake_attempts, s.last_sent_at,
                  s.last_error, s.created_at, s.updated_at, s.subscriber)
_EVENT_COLUMNS = (e.subscription_id, e.event_number, e.focus_type, e.focus_id, e.focus_version,
                  e.method, e.occurred_at, e.state, e.attempts, e.next_attempt_at,
                  e.delivered_at, e.last_error)


def _state(row: Any) -> SubscriptionState:
    return SubscriptionState(
        row.id, row.topic, row.status, row.version_id, ChannelConfig.from_json(row.config),
        row.secret, row.events_count, row.due_at, row.lease_owner, row.lease_until,
        row.handshake_attempts, row.last_sent_at, row.last_error, row.created_at,
        row.updated_at, row.subscriber,
    )


def _event(row: Any) -> EventRow:
    return EventRow(*row)


# -- inside the write transaction (matching.py) ------------------------------------------


async def live_for_topics(
    conn: AsyncConnection, topics: Iterable[str]
) -> list[tuple[str, ChannelConfig, str | None]]:
    """The subscriptions still collecting events on these topics, by id, with their
    subscriber's access facts (JSON; None: the service itself)."""
    if conn.dialect.name == "postgresql":  # asked on every write: on the driver (issue 7)
        driver = await driver_of(conn)
        found = await driver.fetch(_LIVE_PG, sorted(set(topics)), list(LIVE))
        return [(row[0], ChannelConfig.from_json(row[1]), row[2]) for row in found]
    rows = await conn.execute(
        select(s.id, s.config, s.subscriber).where(s.topic.in_(list(topics)),
                                                   s.status.in_(LIVE))
        .order_by(s.id)
    )
    return [(row.id, ChannelConfig.from_json(row.config), row.subscriber) for row in rows]


async def append_events(
    conn: AsyncConnection, subscription_id: str, events: Sequence[NewEvent], now: int
) -> list[int]:
    """Number ``events`` in the subscription's sequence (locking its counter) and store them."""
    result = await conn.execute(
        update(subscriptions)
        .where(s.id == subscription_id)
        .values(events_count=s.events_count + len(events),
                due_at=func.coalesce(s.due_at, now))
        .returning(s.events_count)
    )
    last = int(result.scalar_one())
    first = last - len(events) + 1
    await conn.execute(insert(subscription_events), [
        {
            "subscription_id": subscription_id,
            "event_number": first + i,
            "focus_type": ev.focus_type,
            "focus_id": ev.focus_id,
            "focus_version": ev.focus_version,
            "method": ev.method,
            "occurred_at": ev.occurred_at,
            "state": "pending",
            "attempts": 0,
            "next_attempt_at": now,
        }
        for i, ev in enumerate(events)
    ])
    return list(range(first, last + 1))


async def wake_workers(conn: AsyncConnection) -> None:
    """PostgreSQL: tell listening workers at commit (NOTIFY is transactional)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))


async def sync_state(
    conn: AsyncConnection,
    *,
    subscription_id: str,
    version_id: int,
    status: str,
    config: ChannelConfig,
    secret: str | None,
    now: int,
    subscriber: str | None = None,
    keep_subscriber: bool = False,
) -> None:
    """Make the state row follow a newly written version of the Subscription resource.

    ``subscriber``: the access facts of the principal who wrote it (JSON, see
    ``security/subscriber.py``); ``keep_subscriber`` when the service itself
    wrote the version (the worker's status changes): the facts stay.

    A move to ``requested`` (a client wrote it) restarts the handshake and puts
    dead-lettered events back in the queue; ``active`` (the worker's handshake
    succeeded) makes pending events due; ``error`` and ``off`` stop delivery,
    and ``off`` also stops collecting events.
    """
    old = (await conn.execute(
        select(*_STATE_COLUMNS).where(s.id == subscription_id).with_for_update()
    )).first()
    config_json = config.to_json()
    values: dict[str, Any] = {
        "topic": config.topic, "status": status, "version_id": version_id,
        "config": config_json, "secret": secret, "updated_at": now,
    }
    if not keep_subscriber or old is None:
        values["subscriber"] = subscriber
    if old is None:
        await conn.execute(insert(subscriptions).values(
            id=subscription_id, events_count=0, handshake_attempts=0, created_at=now,
            due_at=now if status == "requested" else None, **values,
        ))
        return
    if status == "requested":
        if old.status != "requested" or old.config != config_json:
            values.update(handshake_attempts=0, due_at=now, last_error=None)
            await conn.execute(
                update(subscription_events)
                .where(e.subscription_id == subscription_id, e.state == "dead")
                .values(state="pending", attempts=0, next_attempt_at=now)
            )
        else:
            values["due_at"] = func.coalesce(s.due_at, now)
    elif status == "active":
        values.update(due_at=now, handshake_attempts=0)
    else:
        values["due_at"] = None
    await conn.execute(update(subscriptions).where(s.id == subscription_id).values(**values))


async def forget(conn: AsyncConnection, subscription_id: str) -> None:
    """The Subscription was deleted: its state, events and attempts go."""
    for table, column in ((subscription_attempts, subscription_attempts.c.subscription_id),
                          (subscription_events, e.subscription_id),
                          (subscriptions, s.id)):
        await conn.execute(delete(table).where(column == subscription_id))


# -- the worker ------------------------------------------------------------------------------


async def anything_due(conn: AsyncConnection, now: int) -> bool:
    """A cheap read (no lock) before trying to claim."""
    row = (await conn.execute(
        select(s.id).where(s.status.in_(DELIVERING), s.due_at <= now,
                           or_(s.lease_until.is_(None), s.lease_until < now)).limit(1)
    )).first()
    return row is not None


async def claim(
    conn: AsyncConnection, *, owner: str, now: int, lease_until: int, limit: int
) -> list[str]:
    """Lease up to ``limit`` subscriptions with due work to ``owner``."""
    ids = [row.id for row in await conn.execute(
        select(s.id)
        .where(s.status.in_(DELIVERING), s.due_at <= now,
               or_(s.lease_until.is_(None), s.lease_until < now))
        .order_by(s.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )]
    if ids:
        await conn.execute(update(subscriptions).where(s.id.in_(ids))
                           .values(lease_owner=owner, lease_until=lease_until))
    return ids


async def load_state(conn: AsyncConnection, subscription_id: str) -> SubscriptionState | None:
    row = (await conn.execute(select(*_STATE_COLUMNS).where(s.id == subscription_id))).first()
    return _state(row) if row else None


async def pending_events(conn: AsyncConnection, subscription_id: str, limit: int) -> list[EventRow]:
    """The first ``limit`` undelivered events, in order (the head decides when they are due)."""
    rows = await conn.execute(
        select(*_EVENT_COLUMNS)
        .where(e.subscription_id == subscription_id, e.state == "pending")
        .order_by(e.event_number)
        .limit(limit)
    )
    return [_event(r) for r in rows]


async def renew(conn: AsyncConnection, subscription_id: str, owner: str, lease_until: int,
                **values: Any) -> bool:
    """Extend the lease (and set ``values``) if ``owner`` still holds it."""
    result = await conn.execute(
        update(subscriptions)
        .where(s.id == subscription_id, s.lease_owner == owner)
        .values(lease_until=lease_until, **values)
    )
    return bool(result.rowcount)


async def mark_delivered(conn: AsyncConnection, subscription_id: str, numbers: Sequence[int],
                         now: int) -> None:
    await conn.execute(
        update(subscription_events)
        .where(e.subscription_id == subscription_id, e.event_number.in_(list(numbers)),
               e.state == "pending")
        .values(state="delivered", delivered_at=now, attempts=e.attempts + 1, last_error=None)
    )


async def mark_failed(conn: AsyncConnection, subscription_id: str, numbers: Sequence[int], *,
                      error: str, next_attempt_at: int, dead: bool) -> None:
    await conn.execute(
        update(subscription_events)
        .where(e.subscription_id == subscription_id, e.event_number.in_(list(numbers)),
               e.state == "pending")
        .values(attempts=e.attempts + 1, last_error=error[:2000],
                next_attempt_at=next_attempt_at, state="dead" if dead else "pending")
    )


async def release(conn: AsyncConnection, subscription_id: str, owner: str, *,
                  not_before: int | None = None, error: str | None = None) -> None:
    """Let go of a subscription, setting when it next has work (under its row lock).

    ``not_before`` holds off work after an unexpected failure (no hot loop).
    """
    row = (await conn.execute(
        select(*_STATE_COLUMNS).where(s.id == subscription_id).with_for_update()
    )).first()
    if row is None or row.lease_owner != owner:
        return
    due: int | None = None
    if row.status == "requested":
        due = row.due_at
    elif row.status == "active":
        head = (await conn.execute(
            select(e.next_attempt_at)
            .where(e.subscription_id == subscription_id, e.state == "pending")
            .order_by(e.event_number).limit(1)
        )).scalar()
        heartbeat = ChannelConfig.from_json(row.config).heartbeat
        beat = ((row.last_sent_at or row.updated_at) + heartbeat * 1_000_000
                if heartbeat else None)
        candidates = [t for t in (head, beat) if t is not None]
        due = min(candidates) if candidates else None
    values: dict[str, Any] = {"due_at": due, "lease_owner": None, "lease_until": None}
    if not_before is not None and due is not None:
        values["due_at"] = max(due, not_before)
    if error is not None:
        values["last_error"] = error[:2000]
    await conn.execute(
        update(subscriptions).where(s.id == subscription_id, s.lease_owner == owner)
        .values(**values)
    )


async def release_all(conn: AsyncConnection, owner: str) -> None:
    """A worker stopping: its leases end now (the next worker need not wait them out)."""
    await conn.execute(update(subscriptions).where(s.lease_owner == owner)
                       .values(lease_owner=None, lease_until=None))


async def record_attempt(conn: AsyncConnection, **values: Any) -> None:
    await conn.execute(insert(subscription_attempts).values(**values))


async def purge(conn: AsyncConnection, before: int) -> int:
    """Drop events and attempts older than the retention (``before``, microseconds)."""
    result = await conn.execute(delete(subscription_events).where(e.occurred_at < before))
    await conn.execute(delete(subscription_attempts).where(subscription_attempts.c.at < before))
    return int(result.rowcount or 0)


# -- the operations ($status, $events) ----------------------------------------------------------


async def states(
    conn: AsyncConnection, ids: Sequence[str] | None = None,
    statuses: Sequence[str] | None = None,
) -> list[SubscriptionState]:
    stmt = select(*_STATE_COLUMNS).order_by(s.id)
    if ids is not None:
        stmt = stmt.where(s.id.in_(list(ids)))
    if statuses is not None:
        stmt = stmt.where(s.status.in_(list(statuses)))
    return [_state(r) for r in await conn.execute(stmt)]


async def events_between(conn: AsyncConnection, subscription_id: str, since: int,
                         until: int | None, limit: int) -> list[EventRow]:
    stmt = select(*_EVENT_COLUMNS).where(e.subscription_id == subscription_id,
                                         e.event_number >= since)
    if until is not None:
        stmt = stmt.where(e.event_number <= until)
    rows = await conn.execute(stmt.order_by(e.event_number).limit(limit))
    return [_event(r) for r in rows]


async def event_counts(conn: AsyncConnection, subscription_id: str) -> dict[str, int]:
    rows = await conn.execute(
        select(e.state, func.count()).where(e.subscription_id == subscription_id)
        .group_by(e.state)
    )
    return {row[0]: int(row[1]) for row in rows}


async def dead_letters(conn: AsyncConnection, subscription_id: str, limit: int) -> list[EventRow]:
    rows = await conn.execute(
        select(*_EVENT_COLUMNS).where(e.subscription_id == subscription_id, e.state == "dead")
        .order_by(e.event_number).limit(limit)
    )
    return [_event(r) for r in rows]


async def oldest_event(conn: AsyncConnection, subscription_id: str) -> int | None:
    """The lowest event number still kept (older ones passed the retention)."""
    value = (await conn.execute(
        select(func.min(e.event_number)).where(e.subscription_id == subscription_id)
    )).scalar()
    return int(value) if value is not None else None


async def outbox_backlog(engine: AsyncEngine) -> dict[str, tuple[int, int | None]]:
    """Per state ("pending", "dead"): how many events, and when the oldest occurred (µs)."""
    e = subscription_events.c
    async with engine.connect() as conn:
        rows = (await conn.execute(
            select(e.state, func.count(), func.min(e.occurred_at))
            .where(e.state.in_(("pending", "dead"))).group_by(e.state)
        )).all()
    return {str(state): (int(count), oldest) for state, count, oldest in rows}
