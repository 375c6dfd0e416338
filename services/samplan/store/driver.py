"""The driver connection under an open SQLAlchemy connection (the write path's hot statements).

No data of its own: the store's modules and the subscriptions' outbox SQL send
their hottest statements through it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["driver_of"]


async def driver_of(conn: AsyncConnection) -> Any:
    """The asyncpg connection under ``conn``, inside ``conn``'s open transaction.

    For the write path's hottest statements (issue 7): sent to the driver they
    skip SQLAlchemy's statement building, compiling and result wrapping, and
    several can be one. SQLAlchemy's asyncpg adapter sends BEGIN only with the
    first statement it runs itself; a statement sent to the driver before that
    would run outside the transaction, so the transaction is begun here (the
    adapter's own way, so that its commit and rollback then end it).
    """
    # inside the transaction the pooled connection is checked out and valid: no I/O here
    raw = conn.sync_connection.connection if conn.sync_connection is not None else (
        await conn.get_raw_connection())
    adapted: Any = raw.dbapi_connection
    if conn.in_transaction() and adapted._transaction is None:
        await adapted._start_transaction()
    return raw.driver_connection
