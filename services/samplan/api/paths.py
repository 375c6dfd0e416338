"""One path, with or without a trailing slash (issue 14, item 6).

``POST /fhir/`` must be ``POST /fhir``: fhir-kit-client's ``transaction()`` posts
to the base with a slash, and so do people pasting a base URL. Starlette would
answer a 307 to the path without it, which clients do not all follow for a POST
(and which costs a round trip when they do). :class:`TrailingSlashMiddleware`
removes the slash before anything routes, authenticates or limits the request,
so every path means the same with or without it, and nothing redirects.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class TrailingSlashMiddleware:
    """``/fhir/Patient/`` is ``/fhir/Patient`` (the root ``/`` stays)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if len(path) > 1 and path.endswith("/"):
                trimmed = path.rstrip("/") or "/"
                raw = scope.get("raw_path")
                scope = {**scope, "path": trimmed}
                if isinstance(raw, bytes):
                    scope["raw_path"] = raw.rstrip(b"/") or b"/"
        await self.app(scope, receive, send)
