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

__all__ = ["HistoryPage", "SearchPage", "StoredResource", "WriteConflict"]


class WriteConflict(Exception):
    """Another transaction wrote the same resource first; the caller may retry."""


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
