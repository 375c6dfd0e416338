"""Reading request bodies: size limit (413), media type (415), JSON (400)."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from samplan.api.responses import JSON_CONTENT_TYPES
from samplan.fhir.errors import PayloadTooLarge, UnsupportedMediaType
from samplan.fhir.resource import parse_json
from samplan.settings import Settings


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The body is larger than the limit of {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The body is larger than the limit of {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(
    request: Request, *, limit: int, max_depth: int, accepted: tuple[str, ...]
) -> Any:
    kind = media_type(request)
    if kind not in accepted:
        raise UnsupportedMediaType(
            f"Content-Type {kind or '(none)'!r} is not accepted here; use {' or '.join(accepted)}."
        )
    return parse_json(await read_body(request, limit), max_depth=max_depth)


async def read_body_json(
    request: Request, settings: Settings, accepted: tuple[str, ...] = JSON_CONTENT_TYPES
) -> Any:
    """The request's JSON under the configured size and depth limits."""
    return await read_json(request, limit=settings.max_body_bytes,
                           max_depth=settings.max_json_depth, accepted=accepted)
