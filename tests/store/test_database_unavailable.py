"""What a lost database is, and how the store begins its transactions (issue 17).

The failover itself (a real PostgreSQL stopped under load) is
``tests/deploy/test_failover.py``; here the pieces: which errors mean "the
database cannot be reached" (the one list, ``store/driver.py``), the pools'
bounded waits, the 503 the API makes of it, and the write path beginning its
transaction through SQLAlchemy's public API without a statement of its own.
"""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from starlette.requests import Request

from samplan.api import errors as api_errors
from samplan.api.deps import Services
from samplan.fhir.stored import DatabaseUnavailable
from samplan.store.database import DriverPool, Timeouts, create_engine
from samplan.store.driver import unavailable
from support.server import free_port
from support.writers import Anyone


class TestWhatIsUnavailable:
    @pytest.mark.parametrize("error", [
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        asyncpg.InterfaceError("connection is closed"),
        asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is "
                                    "in progress"),
        ConnectionRefusedError(111, "Connection refused"),
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError(),
        sa_exc.TimeoutError("QueuePool limit of size 1 overflow 0 reached"),
        sa_exc.OperationalError("SELECT 1", {}, Exception("lost"), connection_invalidated=True),
    ], ids=type)
    def test_these_mean_the_database_is_away(self, error: Exception) -> None:
        found = unavailable(error)
        assert isinstance(found, DatabaseUnavailable)
        assert found.status == 503
        assert found.outcome()["issue"][0]["code"] == "transient"
        assert int(found.headers["Retry-After"]) > 0

    @pytest.mark.parametrize("error", [
        asyncpg.exceptions.UniqueViolationError("duplicate key"),
        asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"),
        asyncpg.InterfaceError("cannot call Connection.fetch(): connection has been released"),
        sa_exc.IntegrityError("INSERT", {}, Exception("duplicate key")),
        ValueError("a bug"),
    ], ids=type)
    def test_these_do_not(self, error: Exception) -> None:
        assert unavailable(error) is None

    def test_behind_what_sqlalchemy_wraps_and_what_failed_while_handling_it(self) -> None:
        class AdaptedError(Exception):
            pgcode = "57P01"

        wrapped = sa_exc.InternalError("ROLLBACK", {}, AdaptedError("terminating"))
        assert unavailable(wrapped) is not None
        during = RuntimeError("the rollback failed too")  # raised while handling the loss
        during.__context__ = ConnectionResetError(104, "Connection reset by peer")
        assert unavailable(during) is not None
        already = DatabaseUnavailable("down")
        assert unavailable(already) is already

    async def test_the_api_answers_503_also_behind_another_error(self) -> None:
        request = Request({"type": "http", "method": "GET", "path": "/fhir/CarePlan",
                           "headers": [], "query_string": b""})
        try:
            try:
                raise DatabaseUnavailable("The database is unavailable: test.")
            except DatabaseUnavailable:
                raise RuntimeError("cleanup needed the database too") from None
        except RuntimeError as error:
            response = await api_errors.unexpected_error(request, error)
        assert response.status_code == 503
        assert response.headers["retry-after"]
        assert b'"transient"' in bytes(response.body)


@pytest.mark.postgres
class TestBoundedWaits:
    async def test_a_full_pool_answers_within_the_pool_timeout(self, postgres_url: str) -> None:
        engine = create_engine(postgres_url, pool_size=1, timeouts=Timeouts(2.0, 0.3))
        try:
            async with engine.connect():
                started = time.monotonic()
                with pytest.raises(DatabaseUnavailable, match="pool"):
                    async with engine.connect():
                        pass
                assert time.monotonic() - started < 2
        finally:
            await engine.dispose()

    async def test_no_server_answers_at_once_in_both_pools(self) -> None:
        url = f"postgresql+asyncpg://samplan@127.0.0.1:{free_port()}/samplan"
        engine = create_engine(url, pool_size=2, timeouts=Timeouts(2.0, 2.0))
        pool = DriverPool(engine)
        try:
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailable, match="cannot be reached"):
                async with engine.connect():
                    pass
            with pytest.raises(DatabaseUnavailable):
                async with pool.connection():
                    pass
            assert time.monotonic() - started < 2
        finally:
            await pool.close()
            await engine.dispose()


class TestTheWritePathBeginsPublicly:
    """SQLAlchemy begins the transaction with its first statement (no private state); the
    write path's first statement is a useful one, so no statement is added for it."""

    async def test_no_statement_of_its_own_and_the_driver_inside_the_transaction(
        self, services: Services
    ) -> None:
        repo = services.gate.service.repo
        sent: list[str] = []

        def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            sent.append(statement)

        event.listen(repo.engine.sync_engine, "before_cursor_execute", record)
        try:
            body = {"resourceType": "Goal", "lifecycleStatus": "active",
                    "description": {"text": "first"}, "subject": {"reference": "Patient/p"}}
            async with repo.transaction(Anyone()) as tx:  # a create: the write comes first
                await tx.write(body, resource_id="g-public", current=None, method="PUT")
            async with repo.transaction(Anyone()) as tx:  # an update: the lock comes first
                current = await tx.current("Goal", "g-public")
                assert current is not None
                await tx.write({**body, "description": {"text": "second"}},
                               resource_id="g-public", current=current, method="PUT")


            async def abandoned() -> None:
                async with repo.transaction(Anyone()) as tx:
                    current = await tx.current("Goal", "g-public")
                    await tx.write({**body, "description": {"text": "third"}},
                                   resource_id="g-public", current=current, method="PUT")
                    raise RuntimeError("abort")

            with pytest.raises(RuntimeError):  # what the driver wrote is rolled back with it
                await abandoned()
        finally:
            event.remove(repo.engine.sync_engine, "before_cursor_execute", record)
        assert not [s for s in sent if s.strip().upper() == "SELECT 1"]
        if not repo.is_sqlite:  # each transaction's first statement went through SQLAlchemy
            assert [s for s in sent if s.startswith("WITH v AS")]  # the create
            assert len([s for s in sent if s.endswith("FOR UPDATE")]) == 2  # the locks
        stored = await repo.read("Goal", "g-public")
        assert stored is not None
        assert stored.version_id == 2
        assert stored.content is not None
        assert b"second" in stored.content
