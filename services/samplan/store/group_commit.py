"""Group commit: many concurrent callers' rows appended in one transaction.

Every read of patient data must leave an access-log entry that is committed
before the data is sent (a crash must not lose the entry of something already
shown). One transaction per read makes the database's commit the ceiling of
read throughput: on PostgreSQL a WAL flush per read, on SQLite the single
writer slot per read. Here each caller still waits until *its* rows are
committed, but the rows of everyone who arrived while the previous commit was
in flight go into the next one: one commit per batch, not per read. No timer
and no added latency when idle: a lone caller is committed at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from samplan.store.repository import NoResources, Repository

T = TypeVar("T")

Append = Callable[[AsyncConnection, Sequence[T]], Awaitable[None]]
Commit = Callable[[Sequence[T]], Awaitable[None]]


class GroupCommitter(Generic[T]):
    """Appends rows with :func:`append`, batching callers that arrive during a commit."""

    def __init__(self, repo: Repository, append: Append[T], *, max_batch: int = 500,
                 commit: Commit[T] | None = None) -> None:
        """``commit``: commits a batch by itself (one atomic statement); else ``append``
        runs in a repository write transaction."""
        self.repo = repo
        self.append = append
        self.commit = commit
        self.max_batch = max_batch
        self._pending: list[tuple[list[T], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, rows: Sequence[T]) -> None:
        """Return when ``rows`` are committed; raise what the commit raised."""
        if not rows:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((list(rows), future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await asyncio.shield(future)

    async def _flush(self) -> None:
        while self._pending:
            batch: list[tuple[list[T], asyncio.Future[None]]] = []
            size = 0
            while self._pending and (not batch or size < self.max_batch):
                rows, future = self._pending.pop(0)
                batch.append((rows, future))
                size += len(rows)
            try:
                rows_of_batch = [r for rows, _ in batch for r in rows]
                if self.commit is not None:
                    await self.commit(rows_of_batch)
                else:
                    async with self.repo.transaction(NoResources()) as tx:
                        await self.append(tx.conn, rows_of_batch)
            except asyncio.CancelledError:
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as exc:  # every waiter of the batch must learn the outcome
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)
