"""Reads for notifications: the resource versions events point at, and the agreement a
change belongs to. The security layer alone calls these (``security/notifications.py``
screens what a subscriber may be told; ``security/commit.py`` lets the subscription
matcher see an agreement's plans and teams inside the write transaction).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import and_, false, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from samplan.store.tables import idx_reference, resource_versions, resources

__all__ = ["current_bodies", "focus_bodies", "focus_contents", "referring"]


async def referring(
    conn: AsyncConnection, resource_type: str, param: str, target_type: str, target_id: str
) -> list[str]:
    """Ids of current ``resource_type`` resources whose ``param`` points at the target."""
    r = idx_reference.c
    rows = await conn.execute(
        select(r.resource_id).where(
            r.target_id == target_id, r.target_type == target_type, r.param == param,
            r.resource_type == resource_type,
        ).distinct()
    )
    return sorted(row.resource_id for row in rows)


async def current_bodies(
    conn: AsyncConnection, keys: Sequence[tuple[str, str]]
) -> list[dict[str, Any]]:
    """The current (not deleted) JSON of these resources, for matching an agreement's
    filters inside the write transaction (what a notification carries is the gate's)."""
    if not keys:
        return []
    r = resources.c
    found: list[dict[str, Any]] = []
    by_type: dict[str, list[str]] = {}
    for rtype, rid in keys:
        by_type.setdefault(rtype, []).append(rid)
    for rtype, ids in by_type.items():
        rows = await conn.execute(select(r.content).where(
            r.resource_type == rtype, r.resource_id.in_(ids), r.deleted == false()))
        found += [orjson.loads(row.content) for row in rows if row.content]
    return found




async def focus_contents(
    conn: AsyncConnection, keys: Iterable[tuple[str, str, int]]
) -> dict[tuple[str, str, int], bytes | None]:
    """The stored bytes of exact resource versions (None for a deletion)."""
    v = resource_versions.c
    wanted = list(dict.fromkeys(keys))
    found: dict[tuple[str, str, int], bytes | None] = {}
    for start in range(0, len(wanted), 200):
        chunk = wanted[start:start + 200]
        rows = await conn.execute(
            select(v.resource_type, v.resource_id, v.version_id, v.content, v.deleted).where(
                or_(*(and_(v.resource_type == t, v.resource_id == i, v.version_id == n)
                      for t, i, n in chunk))
            )
        )
        for row in rows:
            found[(row.resource_type, row.resource_id, row.version_id)] = (
                None if row.deleted else row.content
            )
    return found


async def focus_bodies(
    conn: AsyncConnection, keys: Iterable[tuple[str, str, int]]
) -> dict[tuple[str, str, int], bytes | None]:
    """The bytes that decide who may see each focus version: that version, or for a
    deletion the last version before it (None when nothing is kept)."""
    wanted = list(dict.fromkeys(keys))
    found = await focus_contents(conn, wanted)
    v = resource_versions.c
    for key in wanted:
        if found.get(key) is not None:
            continue
        rtype, rid, number = key
        found[key] = (await conn.execute(
            select(v.content).where(v.resource_type == rtype, v.resource_id == rid,
                                    v.version_id < number, v.deleted == false())
            .order_by(v.version_id.desc()).limit(1)
        )).scalar()
    return found


