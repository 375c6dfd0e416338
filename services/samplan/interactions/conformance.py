"""Storing our conformance resources at start (what ``fhir/conformance.py`` describes).

Each one that is new or changed is written, so they are read and searched like
any other resource, with history.
"""

from __future__ import annotations

from typing import Any

import orjson

from samplan.fhir.conformance import without_meta
from samplan.fhir.resource import validate_resource
from samplan.interactions.service import FhirService, Writer
from samplan.store.repository import WriteTx


async def sync(service: FhirService, resources: list[dict[str, Any]], writer: Writer) -> int:
    """Store every conformance resource that is new or changed; return how many were written."""

    async def unit(tx: WriteTx) -> int:
        written = 0
        for resource in resources:
            checked = validate_resource(dict(resource))
            rid = checked.get("id")
            if not isinstance(rid, str):
                raise ValueError(f"conformance resource without id: {checked.get('url')}")
            current = await tx.current(checked["resourceType"], rid)
            if current is not None and not current.deleted and current.content is not None:
                if without_meta(orjson.loads(current.content)) == without_meta(checked):
                    continue
            await tx.write(checked, resource_id=rid, current=current, method="PUT")
            written += 1
        return written

    return await service.run(unit, writer)
