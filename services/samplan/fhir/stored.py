"""What the store hands back: stored resource versions and pages of them.

Plain data, shared by every layer: the store fills them, the FHIR rules
assemble Bundles around them, the gate decides who may see them. The bytes
are the JSON exactly as served (DESIGN.md: no parse and re-dump per read).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from samplan.fhir.dates import from_us
from samplan.fhir.errors import FhirError

__all__ = ["DatabaseUnavailable", "HistoryPage", "SearchPage", "StoredResource",
           "WriteConflict"]

#: what a client is told to wait before retrying while the database cannot be reached
RETRY_AFTER_SECONDS = 2


class WriteConflict(Exception):
    """Another transaction wrote the same resource first; the caller may retry."""


class DatabaseUnavailable(FhirError):
    """The database cannot be reached now (down, failing over, refusing connections, no pool
    connection free in time): 503 ``transient`` with ``Retry-After``; the caller may retry.

    The store raises it for every driver and pool error that means this
    (``store/driver.py`` :func:`~samplan.store.driver.unavailable`, the one list of
    them), on every path, so each layer above sees one error class and the API one
    answer. Nothing was done: a write that fails with it was not committed, unless its
    COMMIT itself was cut off (then it may have been; the client's retry with
    ``If-Match`` or its own id tells).
    """

    status = 503
    default_code = "transient"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.headers.setdefault("Retry-After", str(RETRY_AFTER_SECONDS))


@dataclass(frozen=True, slots=True)
class StoredResource:
    resource_type: str
    resource_id: str
    version_id: int
    last_updated: int  # microseconds since the epoch
    deleted: bool
    content: bytes | None
    method: str = ""

    @property
    def etag(self) -> str:
        return f'W/"{self.version_id}"'

    @property
    def last_updated_at(self) -> datetime:
        return from_us(self.last_updated)


@dataclass(slots=True)
class SearchPage:
    matches: list[StoredResource]
    includes: list[StoredResource]
    total: int | None
    next_cursor: tuple[Any, ...] | None
    previous_cursor: tuple[Any, ...] | None


@dataclass(slots=True)
class HistoryPage:
    entries: list[StoredResource]
    next_before_seq: int | None
    total: int | None = None
