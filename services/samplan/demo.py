"""Demo data for `make run`: one patient's documented agreement, loaded idempotently."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from samplan.main import build_services, close_services
from samplan.settings import get_settings

DEMO_BUNDLE = Path(__file__).with_name("demo_data") / "greta-holm.json"


def demo_bundle(path: Path | None = None) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads((path or DEMO_BUNDLE).read_bytes())
    return data


async def load(path: Path | None = None) -> int:
    """Post the demo transaction as the service itself (so it is validated and indexed)."""
    services = await build_services(get_settings())
    try:
        response = orjson.loads(await services.gate.as_service().bundle(
            demo_bundle(path), return_representation=False))
        return len(response.get("entry", []))
    finally:
        await close_services(services)
