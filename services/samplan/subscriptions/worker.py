"""The delivery worker: turns outbox rows into signed notification POSTs, in order.

Run as its own process (``samplan worker``; any number of them on
PostgreSQL, one on SQLite) or inside ``samplan serve --with-worker``.

The loop: wake up (a PostgreSQL ``NOTIFY`` sent at commit by the matching hook,
an in-process signal, or the poll interval), look whether any subscription is
due (a plain read), claim up to ``concurrency`` of them with a lease
(:func:`samplan.subscriptions.store.claim`, ``FOR UPDATE SKIP LOCKED``), and deliver each one's
work as its own task:

* ``requested``: send the handshake; a 2xx makes the Subscription ``active``.
* ``active``: send the next pending events (``backport-max-count`` per POST,
  default 1) in event-number order; on success mark them delivered and go on,
  on failure record the attempt and schedule the next one with exponential
  backoff and jitter. After ``subscriptions_max_attempts`` failures the events
  are dead-lettered and the Subscription goes to ``error`` (visible in
  ``$status``; its events stay available through ``$events``; a client update
  of the Subscription re-handshakes and re-queues the dead letters).
* idle with a ``backport-heartbeat-period``: send a heartbeat when it is due.

Each notification carries only what the Subscription's writer may read now
(``delivery.screen_events``: events outside their reach are withheld, full
resources only with read scope), and a delivered one leaves a ``notify``
entry per patient in the access log, written with the "delivered" mark.

Status changes are written as new versions of the Subscription resource (so a
client reading it, or its history, sees them). Delivery is at-least-once: an
event is marked delivered after the receiver's 2xx, so a crash between the two
sends it again, and receivers drop duplicates by event number.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx
import orjson

from samplan.fhir.dates import now_us
from samplan.fhir.stored import DatabaseUnavailable
from samplan.security import notifications as screening
from samplan.security.gate import Gate, ServiceTx, open_gate
from samplan.security.subscriber import principal_of
from samplan.settings import Settings
from samplan.subscriptions import delivery, notifications
from samplan.subscriptions import store as outbox
from samplan.subscriptions.endpoints import EndpointGuard
from samplan.subscriptions.signing import SecretBox
from samplan.subscriptions.store import EventRow, SubscriptionState

log = logging.getLogger("samplan.subscriptions.worker")

_US = 1_000_000
PURGE_EVERY_US = 3600 * _US
DOWN_RETRY = 0.5  # seconds between tries while the database is unavailable
LISTEN_RETRY_MIN, LISTEN_RETRY_MAX = 0.25, 1.0  # seconds between tries to LISTEN again


async def set_status(tx: ServiceTx, subscription_id: str, status: str, *, error: str | None,
                     expected_version: int) -> bool:
    """Write a new version of the Subscription with ``status`` (if nobody changed it since)."""
    current = await tx.current("Subscription", subscription_id)
    if (current is None or current.deleted or current.content is None
            or current.version_id != expected_version):
        return False
    body: dict[str, Any] = orjson.loads(current.content)
    body["status"] = status
    if error:
        body["error"] = error[:1000]
    else:
        body.pop("error", None)
    await tx.write(body, current)
    return True


class Worker:
    """One delivery worker (one per process is plenty: it delivers concurrently)."""

    def __init__(
        self,
        gate: Gate,
        http: httpx.AsyncClient,
        settings: Settings,
        box: SecretBox,
        *,
        name: str | None = None,
        rng: random.Random | None = None,
        endpoints: EndpointGuard | None = None,
    ) -> None:
        self.gate = gate
        self.http = http
        self.settings = settings
        self.box = box
        self.endpoints = endpoints or EndpointGuard(settings.subscriptions_allow_private_endpoints)
        self.base_url = settings.base_url
        self.owner = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.rng = rng or random.Random()
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        self._last_purge = 0
        self._hinted = False
        self._listener: Any = None  # PostgreSQL: the connection LISTENing for NOTIFY
        self._listen_at = 0.0  # (monotonic) when to try to LISTEN again after losing it
        self._listen_delay = LISTEN_RETRY_MIN
        self._listened = False
        self._down_since: float | None = None  # the database unavailable since (monotonic)
        self._active: set[str] = set()  # subscriptions being delivered by this worker
        self._unreleased: set[str] = set()  # claims not let go (the database was away)

    # -- timing knobs ----------------------------------------------------------------------

    def _lease_until(self, now: int, timeout: float) -> int:
        return now + int((timeout + self.settings.subscriptions_lease_margin) * _US)

    def _timeout(self, state: SubscriptionState) -> float:
        return state.config.timeout or self.settings.subscriptions_timeout

    def _retry_at(self, now: int, attempts: int) -> int:
        seconds = delivery.backoff(attempts, base=self.settings.subscriptions_backoff_base,
                                   cap=self.settings.subscriptions_backoff_cap, rng=self.rng)
        return now + int(seconds * _US)

    # -- the loop ----------------------------------------------------------------------------

    def hint(self) -> None:
        """New events in this process (called before their commit): claim without looking first.

        The claim is a write transaction, which on SQLite queues behind the
        writer's own and so sees its events; on PostgreSQL the NOTIFY at commit
        wakes the worker again in case the claim came too early.
        """
        self._hinted = True
        self.wake.set()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    async def run(self) -> None:
        """Deliver until :meth:`stop`; in-flight deliveries finish, leases are let go.

        The database may go away and come back (a failover, a restart; issue 17): the
        loop keeps going, retries twice a second meanwhile, LISTENs again as soon
        as it can (and then looks for work, as events may have been committed while
        nobody listened) and lets go of the claims it could not release.
        """
        await self._listen()
        log.info("subscription worker %s started", self.owner)
        try:
            while not self.stopping.is_set():
                self.wake.clear()
                if self._listen_lost() and time.monotonic() >= self._listen_at:
                    await self._listen()
                wait = self.settings.subscriptions_worker_poll_interval
                try:
                    await self.tick()
                except DatabaseUnavailable as exc:
                    self._database_down(exc)
                    wait = min(wait, DOWN_RETRY)
                except Exception:  # a hiccup must not end the worker
                    log.exception("subscription worker %s: tick failed", self.owner)
                else:
                    self._database_up()
                if self._listen_lost():
                    wait = min(wait, max(0.0, self._listen_at - time.monotonic()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), wait)
        finally:
            listener, self._listener = self._listener, None
            if listener is not None:
                with contextlib.suppress(Exception):
                    await listener.close()
            await self._drain()
            log.info("subscription worker %s stopped", self.owner)

    def _database_down(self, exc: DatabaseUnavailable) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("subscription worker %s: %s; retrying", self.owner, exc.diagnostics)

    def _database_up(self) -> None:
        if self._down_since is not None:
            log.info("subscription worker %s: the database is back after %.1f s", self.owner,
                     time.monotonic() - self._down_since)
            self._down_since = None

    async def tick(self) -> None:
        """Claim what is due (as far as there are free slots) and start delivering it."""
        now = now_us()
        if now - self._last_purge > PURGE_EVERY_US:
            await self.purge(now)
        free = self.settings.subscriptions_worker_concurrency - len(self.tasks)
        if free <= 0:
            return
        hinted, self._hinted = self._hinted, False
        await self._release_leftovers()
        if not hinted:
            async with self.gate.engine.connect() as conn:
                if not await outbox.anything_due(conn, now):
                    return
        async with self.gate.service_tx() as tx:
            now = now_us()
            claimed = await outbox.claim(
                tx.conn, owner=self.owner, now=now, limit=free,
                lease_until=self._lease_until(now, self.settings.subscriptions_timeout),
            )
        log.debug("claimed %s", claimed)
        for subscription_id in claimed:
            self._unreleased.discard(subscription_id)
            task = asyncio.create_task(self._process(subscription_id))
            self.tasks.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.wake.set()  # a slot is free, and there may be more work

    async def purge(self, now: int) -> None:
        self._last_purge = now
        before = now - int(self.settings.subscriptions_retention_days * 86400 * _US)
        async with self.gate.service_tx() as tx:
            dropped = await outbox.purge(tx.conn, before)
        if dropped:
            log.info("dropped %d subscription events past the retention", dropped)

    async def _drain(self) -> None:
        if self.tasks:
            _, pending = await asyncio.wait(self.tasks, timeout=5)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        with contextlib.suppress(Exception):
            async with self.gate.service_tx() as tx:
                await outbox.release_all(tx.conn, self.owner)

    async def _release_leftovers(self) -> None:
        """Let go of claims whose release failed (the database was away): else they would
        wait for their lease to run out before anyone delivers again."""
        for subscription_id in sorted(self._unreleased - self._active):
            try:
                async with self.gate.service_tx() as tx:
                    await outbox.release(tx.conn, subscription_id, self.owner)
            except DatabaseUnavailable:
                raise
            except Exception:  # its lease runs out instead
                log.exception("releasing Subscription/%s failed", subscription_id)
            self._unreleased.discard(subscription_id)

    def _notified(self, *_: object) -> None:
        log.debug("notified")
        self.wake.set()

    def _listen_lost(self) -> bool:
        if self.gate.is_sqlite:
            return False
        return self._listener is None or self._listener.is_closed()

    def _listener_closed(self, _conn: object) -> None:
        if not self.stopping.is_set():
            self._listen_at = time.monotonic()  # try again at once (then back off)
            self.wake.set()

    async def _listen(self) -> None:
        """PostgreSQL: a connection LISTENing for the matching hook's NOTIFY (again, when
        the last one was lost); polling meanwhile, retried with a growing delay."""
        if self.gate.is_sqlite:
            return
        import asyncpg

        url = self.gate.engine.url.set(drivername="postgresql")
        conn = None
        try:
            conn = await asyncpg.connect(url.render_as_string(hide_password=False),
                                         timeout=self.settings.database_connect_timeout)
            await conn.add_listener(outbox.NOTIFY_CHANNEL, self._notified)
            conn.add_termination_listener(self._listener_closed)
        except Exception as exc:
            if conn is not None:
                conn.terminate()
            if self._listen_delay == LISTEN_RETRY_MIN:
                log.warning("subscription worker %s cannot LISTEN for new events (%s: %s); "
                            "polling, and trying again", self.owner, type(exc).__name__, exc)
            self._listen_at = time.monotonic() + self._listen_delay
            self._listen_delay = min(self._listen_delay * 2, LISTEN_RETRY_MAX)
            return
        self._listener = conn
        self._listen_delay = LISTEN_RETRY_MIN
        if self._listened:
            log.info("subscription worker %s LISTENs again", self.owner)
            self.wake.set()  # events committed while nobody listened: look now
        self._listened = True

    # -- one subscription ------------------------------------------------------------------

    async def _process(self, subscription_id: str) -> None:
        not_before: int | None = None
        error: str | None = None
        self._active.add(subscription_id)
        try:
            while not self.stopping.is_set() and await self._step(subscription_id):
                pass
        except DatabaseUnavailable as exc:  # not the subscription's doing: no hold-off
            self._database_down(exc)
        except Exception as exc:  # e.g. a secret sealed under another key: hold off, retry
            log.exception("delivery for Subscription/%s failed", subscription_id)
            not_before = now_us() + int(self.settings.subscriptions_backoff_cap * _US)
            error = f"server error while delivering: {type(exc).__name__}: {exc}"
        finally:
            self._active.discard(subscription_id)
            try:
                async with self.gate.service_tx() as tx:
                    await outbox.release(tx.conn, subscription_id, self.owner,
                                        not_before=not_before, error=error)
            except Exception:
                self._unreleased.add(subscription_id)  # at the next tick that gets through

    async def _step(self, subscription_id: str) -> bool:
        """Do the next piece of work; True when there may be more right away."""
        now = now_us()
        events: list[EventRow] = []
        screened = screening.Screened(frozenset(), {}, {})
        async with self.gate.engine.connect() as conn:
            state = await outbox.load_state(conn, subscription_id)
            if state is None or state.lease_owner != self.owner:
                return False
            if state.status == "active":
                pending = await outbox.pending_events(conn, subscription_id,
                                                     state.config.max_count)
                events = [ev for ev in pending if ev.next_attempt_at <= now]
                if events:
                    screened = await screening.screen_events(
                        self.gate, conn, [principal_of(state.subscriber)], events,
                        state.config.content)
        if state.status == "requested":
            if state.due_at is not None and state.due_at > now:
                return False
            return await self._handshake(state)
        if state.status != "active":
            return False
        if events:
            return await self._notify(state, events, screened)
        heartbeat = state.config.heartbeat
        if heartbeat and now >= (state.last_sent_at or state.updated_at) + heartbeat * _US:
            await self._heartbeat(state)
        return False

    async def _ensure_lease(self, state: SubscriptionState) -> bool:
        now = now_us()
        timeout = self._timeout(state)
        if state.lease_until is not None and state.lease_until - now > timeout * _US:
            return True
        async with self.gate.service_tx() as tx:
            return await outbox.renew(tx.conn, state.id, self.owner,
                                     self._lease_until(now, timeout))

    async def _send(self, state: SubscriptionState, body: bytes) -> delivery.DeliveryResult:
        secret = self.box.open(state.secret) if state.secret else ""
        headers = self.box.open_headers(state.config.headers, state.config.endpoint)
        return await delivery.post(
            self.http, state.config.endpoint, body, secret=secret, headers=headers,
            timeout=self._timeout(state), guard=self.endpoints,
        )

    def _body(self, state: SubscriptionState, kind: notifications.NotificationType,
              status: str, events: list[EventRow] | None = None,
              screened: screening.Screened | None = None) -> bytes:
        withheld = screened.withheld if screened is not None else frozenset()
        parameters = notifications.status_parameters(
            base_url=self.base_url, subscription_id=state.id, topic=state.topic, status=status,
            kind=kind, events_count=state.events_count, content=state.config.content,
            events=events or (), withheld=withheld,
        )
        return notifications.bundle(base_url=self.base_url, parameters=parameters,
                                    events=events or (), content=state.config.content,
                                    contents=screened.contents if screened else None,
                                    withheld=withheld)

    async def _attempt(self, tx: ServiceTx, state: SubscriptionState, kind: str,
                       result: delivery.DeliveryResult, events: Sequence[EventRow] = ()) -> None:
        await outbox.record_attempt(
            tx.conn, subscription_id=state.id, kind=kind,
            first_event=events[0].event_number if events else None,
            last_event=events[-1].event_number if events else None,
            at=now_us(), duration_us=result.duration_us, status_code=result.status_code,
            ok=result.ok, error=result.error, worker=self.owner,
        )

    async def _handshake(self, state: SubscriptionState) -> bool:
        if not await self._ensure_lease(state):
            return False
        result = await self._send(state, self._body(state, "handshake", "requested"))
        now = now_us()
        lease = self._lease_until(now, self._timeout(state))
        async with self.gate.service_tx() as tx:
            if result.ok:
                activated = await set_status(tx, state.id, "active", error=None,
                                             expected_version=state.version_id)
                still_mine = await outbox.renew(tx.conn, state.id, self.owner, lease,
                                               last_sent_at=now, last_error=None)
            else:
                attempts = state.handshake_attempts + 1
                error = f"handshake failed: {result.error}"
                activated = False
                if attempts >= self.settings.subscriptions_max_attempts:
                    await set_status(tx, state.id, "error", error=error,
                                     expected_version=state.version_id)
                still_mine = await outbox.renew(
                    tx.conn, state.id, self.owner, lease, handshake_attempts=attempts,
                    due_at=self._retry_at(now, attempts), last_error=error,
                )
            await self._attempt(tx, state, "handshake", result)
        if result.ok:
            log.info("Subscription/%s handshake ok%s", state.id,
                     "" if activated else " (changed meanwhile: handshake again)")
        else:
            log.info("Subscription/%s handshake failed: %s", state.id, result.error)
        return result.ok and still_mine

    async def _notify(self, state: SubscriptionState, events: list[EventRow],
                      screened: screening.Screened) -> bool:
        if not await self._ensure_lease(state):
            return False
        body = self._body(state, "event-notification", "active", events, screened)
        result = await self._send(state, body)
        now = now_us()
        numbers = [ev.event_number for ev in events]
        lease = self._lease_until(now, self._timeout(state))
        async with self.gate.service_tx() as tx:
            if result.ok:
                still_mine = await outbox.renew(tx.conn, state.id, self.owner, lease,
                                               last_sent_at=now, last_error=None)
                await outbox.mark_delivered(tx.conn, state.id, numbers, now)
                span = (f"{numbers[0]}-{numbers[-1]}" if len(numbers) > 1 else f"{numbers[0]}")
                await tx.log(screening.notification_records(
                    principal_of(state.subscriber), state.id, events, screened,
                    description=f"notification (event {span}, {state.config.content}) "
                                f"to {state.config.endpoint}",
                ))
            else:
                attempts = max(ev.attempts for ev in events) + 1
                dead = attempts >= self.settings.subscriptions_max_attempts
                error = (f"events {numbers[0]}-{numbers[-1]}" if len(numbers) > 1
                         else f"event {numbers[0]}") + f" attempt {attempts}: {result.error}"
                if dead:  # (not when the Subscription changed meanwhile: it re-handshakes)
                    dead = await set_status(tx, state.id, "error",
                                            error=f"{error}; dead-lettered, see $status",
                                            expected_version=state.version_id)
                still_mine = await outbox.renew(tx.conn, state.id, self.owner, lease,
                                               last_error=error)
                await outbox.mark_failed(tx.conn, state.id, numbers, error=error,
                                        next_attempt_at=self._retry_at(now, attempts), dead=dead)
            await self._attempt(tx, state, "event-notification", result, events)
        if not result.ok:
            log.info("Subscription/%s: %s", state.id, result.error)
        return result.ok and still_mine

    async def _heartbeat(self, state: SubscriptionState) -> None:
        if not await self._ensure_lease(state):
            return
        result = await self._send(state, self._body(state, "heartbeat", "active"))
        now = now_us()
        async with self.gate.service_tx() as tx:
            await outbox.renew(tx.conn, state.id, self.owner,
                              self._lease_until(now, self._timeout(state)), last_sent_at=now)
            await self._attempt(tx, state, "heartbeat", result)


def http_client() -> httpx.AsyncClient:
    """The one client a worker sends everything through (timeouts are set per request)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(10.0),
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        follow_redirects=False,
        trust_env=False,
    )


async def run_worker(settings: Settings,
                     ready: Callable[[Worker], Awaitable[None]] | None = None) -> None:
    """The ``samplan worker`` process: its own gate (engine, store) and HTTP client."""
    from samplan.subscriptions.service import install

    gate = await open_gate(settings, pool_size=max(
        4, min(settings.database_pool_size, settings.subscriptions_worker_concurrency + 2)))
    feature = install(settings, gate)
    http = http_client()
    worker = Worker(gate, http, settings, feature.box)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, worker.stop)
    try:
        if ready is not None:
            await ready(worker)
        await worker.run()
    finally:
        await http.aclose()
        await gate.close()
