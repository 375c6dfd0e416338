"""The generated indicator world, loaded once per database for a module that only reads it.

Bind both fixtures in such a module (``client, world = read_only_world.client,
read_only_world.world``; an import by name would be shadowed by every test's
parameters of the same names): ``world`` empties the tables and loads :func:`generate` once
per database for the module, and ``client`` replaces the shared one, which
empties the tables before every test. Pytest runs a module's tests for one
database together, so nothing else writes in between; a module whose tests
write (answers, token tests that load their own) keeps the per-test fixtures.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from conftest import empty_tables
from samplan.api.deps import Services
from support.indicator_world import World, generate, load


@pytest.fixture(scope="module")
async def world(app_services: tuple[object, Services]) -> World:
    _, services = app_services
    await empty_tables(services)
    generated = generate()
    await load(services, generated)
    return generated


@pytest.fixture
async def client(
    app_services: tuple[object, Services], world: World,  # noqa: ARG001 (loaded, not emptied)
) -> AsyncIterator[httpx.AsyncClient]:
    app, _ = app_services
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://samplan.test") as c:
        yield c
