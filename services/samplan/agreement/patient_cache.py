"""Agreements already made: the view and the document parts, by exactly what they were made of.

Making the view and the document is most of what is left of ``$agreement``'s cost
once its resources are read in one statement (issue 7), and a patient's agreement
changes seldom while it is looked at often (the portal, the app, a refresh). An
entry is found only by the exact inputs it was made from, so it is never stale:

* the key is a SHA-256 digest over every gathered row (type, id, version,
  ``lastUpdated`` and the stored bytes themselves, in the order gathered), what the
  reader was allowed to see of them, and the base URL
  (:meth:`samplan.agreement.patient_gather.Gathered.key`): any write to any of
  those resources, a new one matching a search, another reader's reach, all make
  another key;
* the view depends on the time too, only through the day (``Utskriven``, an
  agreement that has run out) and the booked times still ahead: an entry is used
  only on the local day it was made, and only until the first of its booked times
  starts (:attr:`Made.until_us`), never for an earlier time than it was made at.

What a document has of its own (its id, its time) is added to the cached parts
for each response (:func:`samplan.agreement.patient_document.assemble`). Entries
are immutable (frozen view, JSON fragments) and the cache is bounded (least
recently used out).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final

from samplan.agreement.patient_document import DocumentParts, SerializedParts
from samplan.agreement.patient_view import PatientView
from samplan.agreement.values import to_local
from samplan.fhir.dates import to_us

__all__ = ["DOCUMENTS", "DocumentCache", "Made"]

Key = tuple[str, str]

ENTRIES: Final = 1024
"""How many agreements are kept made (~30 KiB each: the JSON of the document and the view)."""


@dataclass(frozen=True, slots=True)
class Made:
    """One agreement, made: its view and its document parts, and what reading it disclosed."""

    view: PatientView
    parts: SerializedParts
    disclosed: tuple[tuple[str | None, tuple[Key, ...]], ...]
    """What making it disclosed to the reader, by the patient it is logged under."""
    day: date
    """The local day it was made on (and may be used on)."""
    made_us: int
    until_us: int | None
    """The start of the first booked time still ahead: after it, the view changes."""

    @classmethod
    def at(
        cls,
        now: datetime,
        view: PatientView,
        parts: DocumentParts,
        disclosed: tuple[tuple[str | None, tuple[Key, ...]], ...],
    ) -> Made:
        starts = [to_us(v.start) for v in view.visits]
        return cls(view, parts.serialized(), disclosed, to_local(now).date(),
                   to_us(now), min(starts) if starts else None)

    def holds_at(self, now: datetime) -> bool:
        """Whether the view made then is the view made ``now`` (see the module)."""
        return self.made_us <= to_us(now) and not self.over_at(now)

    def over_at(self, now: datetime) -> bool:
        """Whether it will never hold again: its day or its next booked time has passed."""
        moment = to_us(now)
        return (to_local(now).date() > self.day
                or (self.until_us is not None and moment > self.until_us))


class DocumentCache:
    """Made agreements by key, least recently used out (one event loop: no locks needed)."""

    def __init__(self, entries: int = ENTRIES) -> None:
        self.entries = entries
        self._made: OrderedDict[bytes, Made] = OrderedDict()

    def get(self, key: bytes, now: datetime) -> Made | None:
        made = self._made.get(key)
        if made is None:
            return None
        if not made.holds_at(now):
            if made.over_at(now):  # (a request that began before it was made: keep it)
                del self._made[key]
            return None
        self._made.move_to_end(key)
        return made

    def put(self, key: bytes, made: Made) -> None:
        self._made[key] = made
        self._made.move_to_end(key)
        while len(self._made) > self.entries:
            self._made.popitem(last=False)

    def clear(self) -> None:
        self._made.clear()

    def __len__(self) -> int:
        return len(self._made)


DOCUMENTS: Final = DocumentCache()
"""The process's cache (its keys hold everything a document depends on, so one is enough)."""
