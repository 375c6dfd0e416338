"""Hardening (issue 6): rate limits, CORS for named origins, security headers, generic errors.

One app with small limits, a portal origin and an https base URL (SQLite; the
middleware does not touch the database). Each test uses its own client address
and token subject, so the in-memory budgets of one test do not leak into another.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import OperationalError

from conftest import SECURE_AUDIENCE, SECURE_ISSUER, make_settings
from samplan.api.hardening import TokenBucket, client_bucket, unauthenticated_bucket
from samplan.main import create_app
from samplan.store import migrate

PORTAL = "https://portal.example.se"
UNIT = "SE2321000073-2001"
_addresses = itertools.count(1)


@pytest.fixture(scope="session")
def hardened_db(sqlite_url: str) -> str:
    migrate.upgrade(sqlite_url)
    return sqlite_url


@pytest.fixture(scope="session")
async def hardened_app(hardened_db: str, dev_key_dir: Path) -> AsyncIterator[Any]:
    settings = make_settings(
        hardened_db, auth_enabled=True, data_dir=dev_key_dir, token_issuer=SECURE_ISSUER,
        token_audience=SECURE_AUDIENCE, public_base_url="https://samplan.test/fhir",
        rate_limit_per_minute=60, rate_limit_burst=3,
        rate_limit_unauthenticated_per_minute=12, cors_origins=[PORTAL],
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
def connect(hardened_app: Any) -> Iterator[Callable[[], httpx.AsyncClient]]:
    """A client from a fresh address (each with its own unauthenticated budget)."""

    def make() -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=hardened_app, raise_app_exceptions=False,
                                        client=(f"10.0.0.{next(_addresses)}", 4711))
        return httpx.AsyncClient(transport=transport, base_url="http://samplan.test")

    return make


def bearer(mint: Callable[..., str], subject: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint('user/*.rs', care_unit=UNIT, subject=subject)}"}


class TestRateLimits:
    async def test_a_client_over_its_budget_gets_429_with_retry_after(
        self, connect: Callable[[], httpx.AsyncClient], mint: Callable[..., str]
    ) -> None:
        async with connect() as client:
            headers = bearer(mint, "busy-client")
            statuses = [(await client.get("/fhir/Patient", headers=headers)).status_code
                        for _ in range(5)]
            assert statuses[:3] == [200, 200, 200]
            refused = await client.get("/fhir/Patient", headers=headers)
            assert refused.status_code == 429
            assert int(refused.headers["Retry-After"]) >= 1
            outcome = refused.json()
            assert outcome["resourceType"] == "OperationOutcome"
            assert outcome["issue"][0]["code"] == "throttled"
            # another client (same address) still has its own budget
            other = await client.get("/fhir/Patient", headers=bearer(mint, "calm-client"))
            assert other.status_code == 200

    async def test_a_client_is_its_app_and_subject_not_one_token(
        self, connect: Callable[[], httpx.AsyncClient], mint: Callable[..., str]
    ) -> None:
        async with connect() as client:
            def token(subject: str, app: str = "journal-app") -> dict[str, str]:
                value = mint("user/*.rs", care_unit=UNIT, subject=subject,
                             extra={"client_id": app})
                return {"Authorization": f"Bearer {value}"}

            fresh_tokens = [(await client.get("/fhir/Patient", headers=token("same-user")))
                            .status_code for _ in range(5)]
            assert fresh_tokens[-1] == 429  # a new token (jti) per request does not help
            other_user = await client.get("/fhir/Patient", headers=token("another-user"))
            other_app = await client.get("/fhir/Patient",
                                         headers=token("same-user", app="portal"))
            assert (other_user.status_code, other_app.status_code) == (200, 200)

    async def test_unauthenticated_requests_are_limited_per_address(
        self, connect: Callable[[], httpx.AsyncClient]
    ) -> None:
        async with connect() as client:
            statuses = [(await client.get("/fhir/Patient")).status_code for _ in range(8)]
            assert statuses[0] == 401
            assert statuses[-1] == 429
        async with connect() as fresh:
            assert (await fresh.get("/fhir/Patient")).status_code == 401

    async def test_forged_tokens_use_up_the_address_budget(
        self, connect: Callable[[], httpx.AsyncClient]
    ) -> None:
        async with connect() as client:
            forged = {"Authorization": "Bearer not.a.token"}
            statuses = [(await client.get("/fhir/Patient", headers=forged)).status_code
                        for _ in range(8)]
            assert statuses[0] == 401
            assert statuses[-1] == 429

    def test_token_bucket_refills_at_its_rate(self) -> None:
        now = [0.0]
        bucket = TokenBucket(per_minute=60, burst=2, clock=lambda: now[0])
        assert [bucket.take("a"), bucket.take("a")] == [0.0, 0.0]
        assert bucket.take("a") == pytest.approx(1.0)
        now[0] += 1.0
        assert bucket.take("a") == 0.0
        assert bucket.wait("b") == 0.0

    def test_limits_are_off_in_tests_unless_set_and_on_by_default(self) -> None:
        assert client_bucket(make_settings("sqlite+aiosqlite:///x")) is None
        assert unauthenticated_bucket(make_settings("sqlite+aiosqlite:///x")) is None
        production_like = make_settings("sqlite+aiosqlite:///x", environment="development")
        bucket = client_bucket(production_like)
        assert bucket is not None
        assert bucket.per_minute == 600
        assert client_bucket(make_settings("sqlite+aiosqlite:///x", environment="development",
                                           rate_limit_per_minute=0)) is None


class TestCors:
    async def test_a_named_portal_may_preflight_and_read_headers(
        self, connect: Callable[[], httpx.AsyncClient], mint: Callable[..., str]
    ) -> None:
        async with connect() as client:
            preflight = await client.options("/fhir/Patient", headers={
                "Origin": PORTAL, "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization"})
            assert preflight.status_code == 204
            assert preflight.headers["Access-Control-Allow-Origin"] == PORTAL
            assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
            response = await client.get("/fhir/Patient",
                                        headers={**bearer(mint, "portal"), "Origin": PORTAL})
            assert response.headers["Access-Control-Allow-Origin"] == PORTAL
            assert "ETag" in response.headers["Access-Control-Expose-Headers"]
            assert "Origin" in response.headers["Vary"]

    async def test_other_origins_get_nothing(
        self, connect: Callable[[], httpx.AsyncClient], mint: Callable[..., str]
    ) -> None:
        async with connect() as client:
            evil = "https://evil.example"
            preflight = await client.options("/fhir/Patient", headers={
                "Origin": evil, "Access-Control-Request-Method": "GET"})
            assert preflight.status_code == 403
            assert "Access-Control-Allow-Origin" not in preflight.headers
            response = await client.get("/fhir/Patient",
                                        headers={**bearer(mint, "evil"), "Origin": evil})
            assert response.status_code == 200
            assert "Access-Control-Allow-Origin" not in response.headers

    async def test_no_origins_by_default(self, client: httpx.AsyncClient) -> None:
        preflight = await client.options("/fhir/Patient", headers={
            "Origin": PORTAL, "Access-Control-Request-Method": "GET"})
        assert preflight.status_code == 403


class TestSecurityHeaders:
    async def test_api_answers(
        self, connect: Callable[[], httpx.AsyncClient], mint: Callable[..., str]
    ) -> None:
        async with connect() as client:
            for response in (await client.get("/fhir/Patient", headers=bearer(mint, "h")),
                             await client.get("/fhir/Patient"),
                             await client.get("/fhir/metadata")):
                assert response.headers["X-Content-Type-Options"] == "nosniff"
                assert response.headers["Referrer-Policy"] == "no-referrer"
                assert response.headers["Content-Security-Policy"].startswith(
                    "default-src 'none'")
                assert "max-age=" in response.headers["Strict-Transport-Security"]
            data = await client.get("/fhir/Patient", headers=bearer(mint, "h"))
            assert data.headers["Cache-Control"] == "no-store"
            smart = await client.get("/.well-known/smart-configuration")
            assert smart.headers["Cache-Control"].startswith("public")

    async def test_no_hsts_over_plain_http(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/fhir/metadata")
        assert "Strict-Transport-Security" not in response.headers
        assert response.headers["X-Content-Type-Options"] == "nosniff"

    async def test_docs_page_keeps_working(
        self, connect: Callable[[], httpx.AsyncClient]
    ) -> None:
        async with connect() as client:
            docs = await client.get("/docs")
        assert docs.status_code == 200
        assert "cdn.jsdelivr.net" in docs.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in docs.headers["Content-Security-Policy"]


class TestErrors:
    async def test_a_database_error_is_a_generic_500_outcome(
        self, connect: Callable[[], httpx.AsyncClient], mint: Callable[..., str],
        hardened_app: Any, monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        async def broken(*_: Any, **__: Any) -> Any:
            raise OperationalError("SELECT content FROM resources WHERE secret = ?",
                                   {"secret": "x"}, Exception("disk I/O error"))

        services = hardened_app.state.services
        monkeypatch.setattr(services.gate.service.repo, "read", broken)
        # a staff read asks for the row and the reach in one statement
        monkeypatch.setattr(services.gate.queries, "read_with_reach", broken)
        async with connect() as client:
            response = await client.get("/fhir/Patient/abc", headers=bearer(mint, "err"))
        assert response.status_code == 500
        body = response.text
        assert response.json()["resourceType"] == "OperationOutcome"
        for leak in ("SELECT", "resources", "Traceback", "OperationalError", "disk I/O",
                     "sqlalchemy", ".py"):
            assert leak not in body
        assert response.headers["X-Content-Type-Options"] == "nosniff"

    async def test_too_deep_json_is_refused(
        self, connect: Callable[[], httpx.AsyncClient], mint: Callable[..., str]
    ) -> None:
        deep: dict[str, Any] = {"resourceType": "Goal"}
        node = deep
        for _ in range(200):
            node["extension"] = [{"url": "x"}]
            node = node["extension"][0]
        headers = {**bearer(mint, "deep"), "Content-Type": "application/fhir+json"}
        async with connect() as client:
            response = await client.post("/fhir/Goal", json=deep, headers=headers)
        assert response.status_code == 400
        assert "nested deeper than 64" in response.json()["issue"][0]["diagnostics"]
        assert "Traceback" not in response.text
