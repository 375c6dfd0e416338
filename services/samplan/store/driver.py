"""The driver connection under an open SQLAlchemy connection, and what a lost database means.

No data of its own: the store's modules and the subscriptions' outbox SQL send
their hottest statements through :func:`driver_of`, and every path to the
database turns the errors that mean "the database cannot be reached now" into
:class:`~samplan.fhir.stored.DatabaseUnavailable` with :func:`unavailable` (the
one list of them).

Only SQLAlchemy's public API is used (issue 17): the transaction is begun by
SQLAlchemy itself (its first statement), then the driver connection is taken
with ``Connection.connection`` (``AsyncConnection.get_raw_connection()``) and
``driver_connection``. So
SQLAlchemy's disconnect handling sees every failure of its own statements,
commits and rollbacks, and the repository invalidates a connection whose
driver statement found it lost (``Repository.transaction``).
"""

from __future__ import annotations

import logging
import time
import weakref
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from samplan.fhir.stored import DatabaseUnavailable

__all__ = ["begun", "driver_of", "track_begin", "unavailable"]

log = logging.getLogger("samplan.store")

# -- what "the database cannot be reached" is --------------------------------------------------

#: SQLSTATEs of a lost or refused connection: class 08 (connection exception), the
#: server shutting down or starting up (57P01-57P03), max_connections reached (53300)
_UNAVAILABLE_STATES = frozenset({"57P01", "57P02", "57P03", "53300"})
_CLOSED_MESSAGES = ("connection is closed", "connection was closed", "pool is closing",
                    "pool is closed")
_LOG_EVERY_S = 5.0
_last_logged = 0.0


def _reason(error: BaseException) -> str | None:
    """Why ``error`` (one link of a chain) means the database is unreachable, or None."""
    if isinstance(error, DatabaseUnavailable):
        return error.diagnostics
    if isinstance(error, sa_exc.TimeoutError):  # QueuePool: no connection free in time
        return "no database connection free in time (the pool is exhausted)"
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return "the database connection was lost"
    if isinstance(error, sa_exc.DisconnectionError):
        return "the database connection was lost"
    state = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    if isinstance(state, str) and (state.startswith("08") or state in _UNAVAILABLE_STATES):
        if state == "53300":
            return "the database refuses new connections (max_connections reached)"
        if state == "57P03":
            return "the database is starting up or shutting down"
        return "the database connection was lost"
    if isinstance(error, asyncpg.InterfaceError | sa_exc.InterfaceError) and any(
            m in str(error) for m in _CLOSED_MESSAGES):
        return "the database connection was lost"
    if isinstance(error, asyncpg.InternalClientError) and "another operation" in str(error):
        # the server ended the connection while it was idle (its FATAL message arrived, its
        # end not yet): the protocol waits for an answer that never comes
        return "the database connection was lost"
    if isinstance(error, TimeoutError):  # connect timeout, or the driver pool's acquire
        return "the database did not answer in time"
    if isinstance(error, OSError):  # refused, reset, unreachable, name not resolved
        return f"the database cannot be reached ({type(error).__name__})"
    return None


def unavailable(error: BaseException) -> DatabaseUnavailable | None:
    """The :class:`DatabaseUnavailable` that ``error`` means, or None when it means
    something else (a constraint, a bad statement, a bug).

    Looks through the chain SQLAlchemy and the drivers build (``orig``,
    ``__cause__``) and at what was being handled (``__context__``: a rollback that
    failed after the connection was lost). Logs a warning at most every few seconds
    while it happens, so an outage is visible in the log without a line (or a
    stack) per request.
    """
    queue: list[BaseException] = [error]
    seen: set[int] = set()
    while queue and len(seen) < 12:
        link = queue.pop(0)
        if id(link) in seen:
            continue
        seen.add(id(link))
        reason = _reason(link)
        if reason is not None:
            if isinstance(link, DatabaseUnavailable):
                return link
            _log(reason, link)
            return DatabaseUnavailable(f"The database is unavailable: {reason}; "
                                       "retry the request.")
        queue += [e for e in (getattr(link, "orig", None), link.__cause__, link.__context__)
                  if isinstance(e, BaseException)]
    return None


def _log(reason: str, error: BaseException) -> None:
    global _last_logged
    now = time.monotonic()
    if now - _last_logged >= _LOG_EVERY_S:
        _last_logged = now
        log.warning("database unavailable: %s (%s: %s); answering 503 until it is back",
                    reason, type(error).__name__, str(error)[:200])


# -- the driver connection, inside a transaction SQLAlchemy began ------------------------------

_BEGUN = "samplan.begun"  # in Connection.info: a weak reference to the transaction begun


def track_begin(engine: AsyncEngine) -> None:
    """Remember, per connection, which transaction has run a statement through SQLAlchemy
    (so its BEGIN has been sent): :func:`driver_of` then needs no statement of its own."""

    @event.listens_for(engine.sync_engine, "after_cursor_execute")
    def _executed(conn: Connection, *_: Any) -> None:
        transaction = conn.get_transaction()
        if transaction is not None:
            conn.info[_BEGUN] = weakref.ref(transaction)


def begun(conn: AsyncConnection) -> bool:
    """Whether ``conn``'s transaction has run a statement through SQLAlchemy (no I/O)."""
    sync = conn.sync_connection
    if sync is None:
        return False
    transaction = sync.get_transaction()
    ref = sync.info.get(_BEGUN)
    return transaction is not None and ref is not None and ref() is transaction


async def driver_of(conn: AsyncConnection) -> Any:
    """The asyncpg connection under ``conn``, inside ``conn``'s open transaction.

    For the write path's hottest statements (issue 7): sent to the driver they
    skip SQLAlchemy's statement building, compiling and result wrapping, and
    several can be one. SQLAlchemy's asyncpg adapter sends BEGIN with the first
    statement it runs; a statement sent to the driver before that would run
    outside the transaction, so when none has run yet one is run here (callers
    that have a useful first statement run it through SQLAlchemy instead:
    ``WriteTx.current``).
    """
    if conn.in_transaction() and not begun(conn):
        await conn.exec_driver_sql("SELECT 1")
    sync = conn.sync_connection
    if sync is not None and not sync.closed and not sync.invalidated:
        # checked out and valid: Connection.connection is then an attribute, no I/O (and
        # no greenlet, which get_raw_connection() spawns in case it has to reconnect)
        return sync.connection.driver_connection
    return (await conn.get_raw_connection()).driver_connection
