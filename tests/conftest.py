"""Shared fixtures: real databases (SQLite and a temporary PostgreSQL), migrated once per session.

Every storage-facing test takes ``client`` (or ``services``) and so runs twice,
once per backend. Between tests the tables are emptied, which is cheaper than
re-migrating and keeps each test independent.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).parent))

from samplan.api.deps import Services  # noqa: E402
from samplan.fhir.conformance import CONFORMANCE_TYPES  # noqa: E402
from samplan.main import create_app  # noqa: E402
from samplan.settings import Settings  # noqa: E402
from samplan.store import migrate  # noqa: E402
from samplan.store.tables import metadata  # noqa: E402
from support.pgcluster import PostgresUnavailable, postgres_cluster  # noqa: E402
from support.repo_bounds import ROOT, OutsideReadGuard, install  # noqa: E402

# Every read above the repository root fails, and fails the session (issue 14, item 1).
REPO_BOUNDS = install(OutsideReadGuard(ROOT))

BASE_URL = "http://samplan.test/fhir"
BACKENDS = ["sqlite", "postgres"]


def pytest_sessionfinish(session: pytest.Session) -> None:
    if REPO_BOUNDS.violations:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPO_BOUNDS.violations:
        terminalreporter.section("reads above the repository root", red=True)
        for violation in dict.fromkeys(REPO_BOUNDS.violations):
            terminalreporter.line(violation)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec and callspec.params.get("database_url") == "postgres":
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    if os.environ.get("SAMPLAN_TEST_SKIP_POSTGRES"):
        pytest.skip("SAMPLAN_TEST_SKIP_POSTGRES is set")
    try:
        with postgres_cluster() as url:
            yield url
    except PostgresUnavailable as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no PostgreSQL here: {exc}")


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite') / 'samplan.db'}"


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str:
    """A migrated database of each kind (the test runs once per backend)."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    migrate.upgrade(url)
    return url


def make_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "environment": "test",
        "auth_enabled": False,
        "public_base_url": BASE_URL,
        "database_pool_size": 10,
        "subscriptions_allow_private_endpoints": True,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
async def app_services(database_url: str) -> AsyncIterator[tuple[object, Services]]:
    app = create_app(make_settings(database_url))
    async with app.router.lifespan_context(app):
        yield app, app.state.services


KEEP = ", ".join(f"'{t}'" for t in CONFORMANCE_TYPES)


async def empty_tables(services: Services) -> None:
    """Remove every row a test may have written; the conformance resources loaded at start stay."""
    async with services.gate.engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            if "resource_type" in table.c:
                await conn.execute(
                    text(f"DELETE FROM {table.name} WHERE resource_type NOT IN ({KEEP})")
                )
            else:
                await conn.execute(text(f"DELETE FROM {table.name}"))


@pytest.fixture
async def services(app_services: tuple[object, Services]) -> Services:
    _, svc = app_services
    await empty_tables(svc)
    return svc


@pytest.fixture
async def client(
    app_services: tuple[object, Services], services: Services,  # noqa: ARG001 (empties tables)
) -> AsyncIterator[httpx.AsyncClient]:
    app, _ = app_services
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://samplan.test",
        headers={"Content-Type": "application/fhir+json"},
    ) as c:
        yield c


# --------------------------------------------------------------------------------------------
# Security (issue 6): an app with auth switched on, tokens from a per-session development key,
# and a small world of patients, care teams and organisations to test access rules against.

SECURE_ISSUER = "https://samplan.test/dev"
SECURE_AUDIENCE = "https://samplan.test/fhir"


@pytest.fixture(scope="session")
def dev_key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("secure-data")


@pytest.fixture(scope="session")
async def secure_app_services(
    database_url: str, dev_key_dir: Path
) -> AsyncIterator[tuple[object, Services]]:
    """The app with ``auth_enabled=True``, trusting the session's development key."""
    settings = make_settings(database_url, auth_enabled=True, data_dir=dev_key_dir,
                             token_issuer=SECURE_ISSUER, token_audience=SECURE_AUDIENCE)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app, app.state.services


@pytest.fixture
async def secure_services(secure_app_services: tuple[object, Services]) -> Services:
    _, svc = secure_app_services
    await empty_tables(svc)
    return svc


@pytest.fixture
async def secure_client(
    secure_app_services: tuple[object, Services], secure_services: Services,  # noqa: ARG001
) -> AsyncIterator[httpx.AsyncClient]:
    app, _ = secure_app_services
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://samplan.test",
        headers={"Content-Type": "application/fhir+json"},
    ) as c:
        yield c


@pytest.fixture(scope="session")
def mint(dev_key_dir: Path) -> Callable[..., str]:
    """``mint(scopes="user/*.rs", care_unit=..., ...)``: a token the secure app trusts."""
    from samplan.security.devkeys import load_or_create_dev_key

    key = load_or_create_dev_key(dev_key_dir)

    def _mint(scopes: str, **claims: Any) -> str:
        claims.setdefault("issuer", SECURE_ISSUER)
        claims.setdefault("audience", SECURE_AUDIENCE)
        return key.mint(scopes=scopes, **claims)

    return _mint
