"""Operating the service: readiness at the migration head, /metrics, request ids, masked logs."""

from __future__ import annotations

import asyncio
import io
import logging

import httpx
import orjson
import pytest

from conftest import make_settings
from samplan.api.deps import Services
from samplan.main import create_app
from samplan.observability import health
from samplan.observability.logs import JsonFormatter, request_id_from
from samplan.observability.masking import MASK, mask
from samplan.security.gate import open_gate
from samplan.store import migrate


class TestReadiness:
    async def test_ready_when_the_database_is_at_head(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/readyz")
        assert response.status_code == 200
        assert (await client.get("/healthz")).status_code == 200

    async def test_not_ready_before_the_last_migration(self, tmp_path: object) -> None:
        url = f"sqlite+aiosqlite:///{tmp_path}/behind.db"
        await asyncio.to_thread(migrate.upgrade, url, _first_revision())
        gate = await open_gate(make_settings(url))
        try:
            response = await health.readiness(gate)
        finally:
            await gate.close()
        assert response.status_code == 503
        body = orjson.loads(response.body)
        assert body["resourceType"] == "OperationOutcome"
        assert "samplan migrate" in body["issue"][0]["diagnostics"]

    async def test_not_ready_when_the_database_is_unreachable(self) -> None:
        gate = await open_gate(make_settings("postgresql+asyncpg://nobody@127.0.0.1:1/none"))
        try:
            response = await health.readiness(gate)
        finally:
            await gate.close()
        assert response.status_code == 503
        assert orjson.loads(response.body)["resourceType"] == "OperationOutcome"


def _first_revision() -> str:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    return [r.revision for r in script.walk_revisions()][-1]


class TestMetrics:
    async def test_requests_are_counted_per_interaction_and_type(
        self, client: httpx.AsyncClient, services: Services,  # noqa: ARG002
    ) -> None:
        created = await client.post("/fhir/Patient", content=b'{"resourceType":"Patient"}')
        assert created.status_code == 201
        await client.get(f"/fhir/Patient/{created.json()['id']}")
        text = (await client.get("/metrics")).text
        assert 'samplan_http_requests_total{interaction="create",method="POST",' \
               'resource_type="Patient",status="201"}' in text
        assert 'samplan_http_request_duration_seconds_bucket{interaction="read",' in text
        for name in ("samplan_db_pool_checked_out", "samplan_outbox_pending_events",
                     "samplan_outbox_oldest_pending_age_seconds",
                     "samplan_audit_write_failures_total", "samplan_http_requests_in_flight"):
            assert name in text

    async def test_metrics_needs_the_scrape_token_when_one_is_set(
        self, database_url: str
    ) -> None:
        app = create_app(make_settings(database_url, metrics_token="scrape-me"))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                refused = await c.get("/metrics")
                allowed = await c.get("/metrics",
                                      headers={"Authorization": "Bearer scrape-me"})
        assert refused.status_code == 401
        assert refused.json()["resourceType"] == "OperationOutcome"
        assert allowed.status_code == 200
        assert "samplan_http_requests_total" in allowed.text


class TestWithAuth:
    async def test_a_401_is_counted_and_carries_the_request_id(
        self, secure_client: httpx.AsyncClient
    ) -> None:
        refused = await secure_client.get("/fhir/Patient", headers={"X-Request-ID": "no-token"})
        assert refused.status_code == 401
        assert refused.headers["x-request-id"] == "no-token"
        text = (await secure_client.get("/metrics")).text  # public: no bearer token needed
        assert 'interaction="unauthenticated",method="GET",resource_type="Patient",' \
               'status="401"' in text


class TestRequestIds:
    async def test_a_sane_request_id_is_returned(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/fhir/metadata", headers={"X-Request-ID": "abc-123"})
        assert response.headers["x-request-id"] == "abc-123"

    async def test_one_is_made_when_missing_or_odd(self, client: httpx.AsyncClient) -> None:
        made = (await client.get("/fhir/metadata")).headers["x-request-id"]
        odd = (await client.get("/fhir/metadata",
                                headers={"X-Request-ID": "a b\tc" * 40})).headers["x-request-id"]
        assert len(made) == 32
        assert len(odd) == 32
        assert made != odd

    def test_request_id_from(self) -> None:
        assert request_id_from("trace-1") == "trace-1"
        assert request_id_from("<script>") != "<script>"

    async def test_the_access_log_line_carries_the_id_and_no_personnummer(
        self, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.INFO, logger="samplan.access"):
            await client.get("/fhir/Patient/194501011235", headers={"X-Request-ID": "r-42"})
            await client.get("/fhir/Patient", params={"identifier": "19450101-1235"})
        records = [r for r in caplog.records if r.name == "samplan.access"]
        assert records
        lines = [JsonFormatter().format(r) for r in records]
        assert all("194501011235" not in line and "1235" not in line.split('"path"')[1][:40]
                   for line in lines)
        first = orjson.loads(lines[0])
        assert first["request_id"] == "r-42"
        assert first["path"] == f"/fhir/Patient/{MASK}"
        assert first["status"] == 404
        assert first["interaction"] == "read"
        assert "identifier" not in lines[1]  # the query string is never logged


class TestMasking:
    @pytest.mark.parametrize("text", [
        "194501011235", "19450101-1235", "4501011235", "450101-1235", "450101+1235",
        "201212121212", "199001611234",  # samordningsnummer: day + 60
        "Patient?identifier=http://electronichealth.se/identifier/personnummer|194501011235",
        "identifier=%7C194501011235",
    ])
    def test_personnummer_are_masked(self, text: str) -> None:
        assert MASK in mask(text)
        assert "1235" not in mask(text).replace(MASK, "") or text.count("1235") > 1

    @pytest.mark.parametrize("text", [
        "SE2321000073-1001", "1763900000123456", "took 1234 ms", "Patient/abc-1",
        "version 2026-11-23",
    ])
    def test_other_numbers_stay(self, text: str) -> None:
        assert mask(text) == text

    def test_the_formatter_masks_messages_arguments_and_extras(self) -> None:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "patient %s", ("194501011235",),
                                   None)
        record.detail = "pnr 450101-1235"
        line = orjson.loads(JsonFormatter().format(record))
        assert line["msg"] == f"patient {MASK}"
        assert line["detail"] == f"pnr {MASK}"

    def test_exceptions_are_masked(self) -> None:
        try:
            raise ValueError("bad 194501011235")
        except ValueError:
            import sys

            record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (),
                                       sys.exc_info())
        assert "194501011235" not in JsonFormatter().format(record)


class TestLoggingConfig:
    def test_configure_logging_writes_json(self) -> None:
        from samplan.observability.logs import logging_config

        config = logging_config("json", "INFO")
        assert config["root"]["level"] == "INFO"
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter())
        logger = logging.getLogger("samplan.test.json")
        logger.addHandler(handler)
        logger.propagate = False
        try:
            logger.warning("hello %s", "450101-1235")
        finally:
            logger.removeHandler(handler)
        assert orjson.loads(stream.getvalue())["msg"] == f"hello {MASK}"


class TestTracing:
    def test_switching_it_on_without_the_extras_says_what_to_install(
        self, database_url: str
    ) -> None:
        pytest.importorskip("opentelemetry")
        try:
            import opentelemetry.sdk  # noqa: F401
        except ImportError:
            with pytest.raises(RuntimeError, match=r"samplan\[otel\]"):
                create_app(make_settings(database_url, otel_enabled=True))
        else:
            pytest.skip("the tracing extras are installed")


class TestAuditFailures:
    async def test_a_failed_audit_append_is_counted(self, services: Services) -> None:
        from samplan.observability import metrics
        from samplan.store import audit as audit_store

        assert audit_store.failure_listeners  # attached at startup, through the gate
        before = metrics.AUDIT_FAILURES._value.get()
        with pytest.raises(Exception):  # noqa: B017, PT011 (any driver error counts)
            await audit_store.append(object(), [object()])  # type: ignore[arg-type, list-item]
        assert metrics.AUDIT_FAILURES._value.get() == before + 1
        assert services is not None
