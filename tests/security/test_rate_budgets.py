"""Rate limits that fit the callers (issue 14, item 7).

A journal system's integration engine is one client sending tens of requests a
second; a clinician's app sends a few per screen, a patient's portal fewer.
Budgets are set per kind of caller, can be raised per client id, and with auth
off (a local demo) nobody is limited unless asked.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import SECURE_AUDIENCE, SECURE_ISSUER, make_settings
from samplan.api.hardening import ClientBudgets, TokenBucket
from samplan.main import create_app
from samplan.store import migrate

UNIT = "SE2321000073-2001"
ORG = "SE2321000073-5001"
_addresses = itertools.count(1)


def defaults(**overrides: Any) -> Any:
    """Settings as a deployment has them (limits on), not as tests do."""
    return make_settings("sqlite+aiosqlite:///unused", environment="development", **overrides)


def on_a_fake_clock(bucket: TokenBucket | None) -> tuple[TokenBucket, list[float]]:
    assert bucket is not None
    now = [0.0]
    bucket.clock = lambda: now[0]
    return bucket, now


def refused(bucket: TokenBucket, now: list[float], *, per_second: int, seconds: int) -> int:
    """Send ``per_second`` requests a second, evenly, for ``seconds``; count the 429s."""
    count = 0
    for _ in range(per_second * seconds):
        now[0] += 1.0 / per_second
        count += bucket.take("client:journal:engine") > 0
    return count


class TestBudgetsByKind:
    def test_a_system_client_holds_fifty_requests_a_second_sustained(self) -> None:
        bucket, now = on_a_fake_clock(ClientBudgets(defaults()).bucket("system", "engine"))
        assert refused(bucket, now, per_second=50, seconds=300) == 0
        assert refused(bucket, now, per_second=100, seconds=60) == 0  # the default: 100/s
        assert refused(bucket, now, per_second=200, seconds=60) > 0  # but not unlimited

    def test_each_kind_has_its_own_default(self) -> None:
        budgets = ClientBudgets(defaults())
        rates = {kind: getattr(budgets.bucket(kind, None), "per_minute", None)
                 for kind in ("system", "staff", "patient", "relative")}
        assert rates == {"system": 6000, "staff": 600, "patient": 300, "relative": 300}
        assert budgets.bucket("staff", None) is not budgets.bucket("system", None)

    def test_a_kind_setting_wins_over_the_general_one(self) -> None:
        budgets = ClientBudgets(defaults(rate_limit_per_minute=60,
                                         rate_limit_system_per_minute=12000))
        assert getattr(budgets.bucket("system", None), "per_minute", None) == 12000
        assert getattr(budgets.bucket("staff", None), "per_minute", None) == 60
        assert getattr(budgets.bucket("patient", None), "per_minute", None) == 60

    def test_zero_switches_a_kind_off(self) -> None:
        budgets = ClientBudgets(defaults(rate_limit_system_per_minute=0))
        assert budgets.bucket("system", None) is None
        assert budgets.bucket("staff", None) is not None
        assert ClientBudgets(defaults(rate_limit_per_minute=0)).active is False

    def test_off_in_tests_unless_set(self) -> None:
        assert ClientBudgets(make_settings("sqlite+aiosqlite:///x")).active is False


class TestRaisedPerClient:
    def test_a_named_client_gets_its_own_rate(self) -> None:
        budgets = ClientBudgets(defaults(rate_limit_clients={"engine": 30000, "free": 0}))
        raised = budgets.bucket("system", "engine")
        assert raised is not None
        assert (raised.per_minute, raised.burst) == (30000, 3000)
        assert budgets.bucket("system", "free") is None  # 0: no limit for that client
        assert getattr(budgets.bucket("system", "other"), "per_minute", None) == 6000

    def test_the_settings_read_it_as_json(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from samplan.settings import Settings

        monkeypatch.setenv("SAMPLAN_RATE_LIMIT_CLIENTS", '{"journal-engine": 30000}')
        assert Settings().rate_limit_clients == {"journal-engine": 30000}


class TestWithAuthOff:
    def test_no_per_client_limit_by_default(self) -> None:
        budgets = ClientBudgets(defaults(auth_enabled=False))
        assert budgets.anonymous is None

    def test_the_general_setting_limits_each_address(self) -> None:
        budgets = ClientBudgets(defaults(auth_enabled=False, rate_limit_per_minute=60))
        assert getattr(budgets.anonymous, "per_minute", None) == 60


# ------------------------------------------------------------------ over HTTP


@pytest.fixture(scope="module")
def budget_db(sqlite_url: str) -> str:
    migrate.upgrade(sqlite_url)
    return sqlite_url


@pytest.fixture(scope="module")
async def limited_app(budget_db: str, dev_key_dir: Path) -> AsyncIterator[Any]:
    settings = make_settings(
        budget_db, auth_enabled=True, data_dir=dev_key_dir, token_issuer=SECURE_ISSUER,
        token_audience=SECURE_AUDIENCE, rate_limit_staff_per_minute=60,
        rate_limit_system_per_minute=3000, rate_limit_clients={"ward-app": 6000},
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="module")
async def demo_app(budget_db: str, dev_key_dir: Path) -> AsyncIterator[Any]:
    """Auth off with limits on (not the test environment), and budgets so small that any
    limit on the demo caller would show."""
    settings = make_settings(budget_db, auth_enabled=False, environment="development",
                             data_dir=dev_key_dir, rate_limit_staff_per_minute=1,
                             rate_limit_patient_per_minute=1, rate_limit_burst=1,
                             rate_limit_unauthenticated_per_minute=0)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


def client_of(app: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(f"10.9.0.{next(_addresses)}", 4711))
    return httpx.AsyncClient(transport=transport, base_url="http://samplan.test")


async def statuses(client: httpx.AsyncClient, count: int, token: str | None = None) -> list[int]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return [(await client.get("/fhir/Organization", headers=headers)).status_code
            for _ in range(count)]


class TestOverHttp:
    async def test_a_system_client_outlasts_a_staff_budget(
        self, limited_app: Any, mint: Callable[..., str]
    ) -> None:
        async with client_of(limited_app) as client:
            staff = await statuses(client, 20, mint("user/*.rs", care_unit=UNIT,
                                                    subject="nurse"))
            system = await statuses(client, 60, mint("system/*.rs", org=ORG))
        assert staff[:10] == [200] * 10
        assert staff[-1] == 429
        assert set(system) == {200}

    async def test_a_raised_client_id_is_not_held_to_its_kind(
        self, limited_app: Any, mint: Callable[..., str]
    ) -> None:
        token = mint("user/*.rs", care_unit=UNIT, subject="ward-user",
                     extra={"client_id": "ward-app"})
        async with client_of(limited_app) as client:
            assert set(await statuses(client, 20, token)) == {200}

    async def test_the_demo_caller_is_not_limited(self, demo_app: Any) -> None:
        async with client_of(demo_app) as client:
            assert set(await statuses(client, 10)) == {200}
