"""The access log's one-statement commit: every entry lands, or none of a batch does."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from samplan.api.deps import Services
from samplan.store import audit as audit_store
from samplan.store.tables import audit_events
from support.writers import Anyone

# more than one SQLite statement's worth (500 entries each), so the batch spans three
ENTRIES = 1_201


def entry(n: int, event_id: str | None = None) -> audit_store.AuditEntry:
    row: dict[str, object] = dict.fromkeys(audit_store.AUDIT_COLUMNS)
    row.update(event_id=event_id or f"ev-{n}", recorded=1_700_000_000_000_000 + n,
               action="R", interaction="read", outcome="0", agent_kind="system",
               agent_subject="bench", patient_id=f"p-{n % 7}", content=b"{}")
    return row


async def logged(services: Services) -> int:
    async with services.gate.engine.connect() as conn:
        return int((await conn.execute(
            select(func.count()).select_from(audit_events))).scalar_one())


class TestAppendCommitted:
    async def test_a_batch_larger_than_one_statement_lands_whole(
        self, services: Services
    ) -> None:
        repo = services.gate.service.repo
        assert repo.has_autocommit_writer, "the test databases are files and servers"
        await audit_store.append_committed(repo, [entry(n) for n in range(ENTRIES)])
        assert await logged(services) == ENTRIES

    async def test_a_failure_in_the_last_statement_stores_nothing_of_the_batch(
        self, services: Services
    ) -> None:
        repo = services.gate.service.repo
        rows = [entry(n) for n in range(ENTRIES)]
        rows[-1] = entry(ENTRIES, event_id="ev-0")  # event_id is unique
        with pytest.raises(Exception, match="(?i)unique|duplicate"):
            await audit_store.append_committed(repo, rows)
        assert await logged(services) == 0
        # and the write slot is free again: the next batch commits
        await audit_store.append_committed(repo, [entry(n) for n in range(3)])
        assert await logged(services) == 3


class TestAppendInAWriteTransaction:
    """Entries appended in a write's own transaction (the gate's TxGuard) commit with the
    write and are rolled back with it, on the driver path of both databases."""

    async def test_they_commit_with_the_write_in_several_statements(
        self, services: Services
    ) -> None:
        async with services.gate.service.repo.transaction(Anyone()) as tx:
            await audit_store.append(tx.conn, [entry(n) for n in range(ENTRIES)])
        assert await logged(services) == ENTRIES

    async def test_they_are_rolled_back_with_it(self, services: Services) -> None:
        class Failed(Exception):
            pass

        async def append_then_fail() -> None:
            async with services.gate.service.repo.transaction(Anyone()) as tx:
                await audit_store.append(tx.conn, [entry(n) for n in range(3)])
                raise Failed

        with pytest.raises(Failed):
            await append_then_fail()
        assert await logged(services) == 0
