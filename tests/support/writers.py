"""A write observer for tests that open a repository transaction themselves."""

from __future__ import annotations

from typing import Any

from samplan.fhir.stored import StoredResource
from samplan.store.repository import WriteTx


class Anyone:
    """A writer that allows every write (the gate's TxGuard is tested elsewhere)."""

    async def before_write(self, tx: WriteTx, resource_type: str, resource_id: str,
                           current: StoredResource | None, body: dict[str, Any] | None) -> None:
        del tx, resource_type, resource_id, current, body

    async def before_commit(self, tx: WriteTx) -> None:
        del tx
