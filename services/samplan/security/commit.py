"""What the service's own before-commit hooks (the subscription matcher) get to see.

A hook runs at the end of every write transaction, after the writer's checks
and its access-log entries (``writes.py``). It does not read the store itself:
it gets a :class:`CommitView`, which offers the transaction's changes, who
wrote them, the few reads that matching an agreement's filters needs (inside
the transaction, never shown to anyone), and the gate's screening of what a
subscriber may be told, asked on the transaction's connection.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from samplan.security.notifications import Verdict, screen
from samplan.security.principal import Principal
from samplan.security.writes import TxGuard
from samplan.store import focus
from samplan.store.repository import Change, WriteTx

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from samplan.security.gate import Gate

__all__ = ["Change", "CommitHook", "CommitView"]


class CommitView:
    """One write transaction as a hook sees it."""

    def __init__(self, gate: Gate, tx: WriteTx) -> None:
        self._gate = gate
        self._tx = tx

    @property
    def changes(self) -> list[Change]:
        return self._tx.changes

    @property
    def conn(self) -> AsyncConnection:
        """The transaction's connection, for the hook's own tables (the outbox)."""
        return self._tx.conn

    @property
    def writer(self) -> Principal | None:
        """Who wrote (None: the service itself)."""
        guard = self._tx.writer
        return guard.principal if isinstance(guard, TxGuard) else None

    async def referring(self, resource_type: str, param: str, target_type: str,
                        target_id: str) -> list[str]:
        """Ids of current ``resource_type`` resources whose ``param`` points at the target."""
        return await focus.referring(self._tx.conn, resource_type, param, target_type,
                                     target_id)

    async def current_bodies(self, keys: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        """The current JSON of these resources (as this transaction sees them)."""
        return await focus.current_bodies(self._tx.conn, keys)

    async def screen(self, recipients: Sequence[Principal | None],
                     focuses: Sequence[tuple[str, Mapping[str, Any] | None]]) -> list[Verdict]:
        """What each recipient may be told of each focus, reach asked in this transaction."""
        return await screen(self._gate.resolver, recipients, focuses, on=self._tx)


CommitHook = Callable[[CommitView], Awaitable[None]]
