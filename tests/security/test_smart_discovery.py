"""SMART discovery where clients look (issue 14, item 5).

``/fhir/.well-known/smart-configuration`` (the FHIR base plus the well-known
path, where SMART clients append it) and ``/.well-known/smart-configuration``
answer the same public document. It advertises a grant type or a launch
capability only when the token issuer's endpoint it needs is configured; the
CapabilityStatement carries the SMART-on-FHIR service coding and, with
endpoints, the oauth-uris extension.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import SECURE_AUDIENCE, SECURE_ISSUER, make_settings
from samplan.api.smart import capabilities, grant_types, supported_scopes
from samplan.fhir.capability import OAUTH_URIS, SECURITY_SERVICE_SYSTEM
from samplan.main import create_app
from samplan.store import migrate

AUTHORIZE = "https://idp.example.se/oauth2/authorize"
TOKEN = "https://idp.example.se/oauth2/token"
PATHS = ["/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"]


def settings(**endpoints: str) -> Any:
    return make_settings("sqlite+aiosqlite:///unused", auth_enabled=True, **endpoints)


@pytest.fixture(scope="module")
def issuer_db(sqlite_url: str) -> str:
    migrate.upgrade(sqlite_url)
    return sqlite_url


@pytest.fixture(scope="module")
async def issuer_client(issuer_db: str, dev_key_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An app whose token issuer has both endpoints configured."""
    app = create_app(make_settings(
        issuer_db, auth_enabled=True, data_dir=dev_key_dir, token_issuer=SECURE_ISSUER,
        token_audience=SECURE_AUDIENCE, authorization_endpoint=AUTHORIZE, token_endpoint=TOKEN))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://samplan.test") as c:
            yield c


class TestWhereClientsLook:
    @pytest.mark.parametrize("path", PATHS)
    async def test_both_paths_are_public(self, secure_client: httpx.AsyncClient,
                                         path: str) -> None:
        response = await secure_client.get(path)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        assert response.headers["Cache-Control"].startswith("public")

    async def test_both_paths_answer_the_same_document(
        self, secure_client: httpx.AsyncClient
    ) -> None:
        root, under_base = [(await secure_client.get(p)).json() for p in PATHS]
        assert root == under_base
        assert root["issuer"] == SECURE_ISSUER

    async def test_only_the_smart_document_is_public_under_the_base(
        self, secure_client: httpx.AsyncClient
    ) -> None:
        response = await secure_client.get("/fhir/.well-known/openid-configuration")
        assert response.status_code == 401


class TestOnlyWhatTheIssuerProvides:
    async def test_without_endpoints_no_grant_type_and_no_issuer_capability(
        self, secure_client: httpx.AsyncClient
    ) -> None:
        config = (await secure_client.get(PATHS[1])).json()
        assert "token_endpoint" not in config
        assert "authorization_endpoint" not in config
        assert config["grant_types_supported"] == []
        assert set(config["capabilities"]) == {
            "permission-v1", "permission-v2", "permission-patient", "permission-user"}
        assert "response_types_supported" not in config
        assert "code_challenge_methods_supported" not in config
        assert "openid" not in config["scopes_supported"]
        assert "system/*.cruds" in config["scopes_supported"]
        assert "SAMPLAN_TOKEN_ENDPOINT" in config["x-samplan-token-service"]

    def test_a_token_endpoint_alone_is_client_credentials(self) -> None:
        backend = settings(token_endpoint=TOKEN)
        assert grant_types(backend) == ["client_credentials"]
        assert "client-confidential-asymmetric" in capabilities(backend)
        assert "context-standalone-patient" not in capabilities(backend)
        assert "openid" not in supported_scopes(backend)

    def test_an_authorization_endpoint_alone_grants_nothing(self) -> None:
        half = settings(authorization_endpoint=AUTHORIZE)
        assert grant_types(half) == []
        assert "context-ehr-patient" not in capabilities(half)

    async def test_both_endpoints_are_published_with_their_grants(
        self, issuer_client: httpx.AsyncClient
    ) -> None:
        config = (await issuer_client.get(PATHS[1])).json()
        assert config["authorization_endpoint"] == AUTHORIZE
        assert config["token_endpoint"] == TOKEN
        assert config["grant_types_supported"] == ["authorization_code", "client_credentials"]
        assert {"context-standalone-patient", "context-ehr-patient",
                "client-confidential-asymmetric"} <= set(config["capabilities"])
        assert config["response_types_supported"] == ["code"]
        assert config["code_challenge_methods_supported"] == ["S256"]
        assert config["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
        assert {"openid", "fhirUser", "launch/patient"} <= set(config["scopes_supported"])


class TestCapabilityStatementSecurity:
    async def test_names_smart_on_fhir_without_endpoints_by_default(
        self, secure_client: httpx.AsyncClient
    ) -> None:
        security = (await secure_client.get("/fhir/metadata")).json()["rest"][0]["security"]
        codings = [c for s in security["service"] for c in s["coding"]]
        assert {"system": SECURITY_SERVICE_SYSTEM, "code": "SMART-on-FHIR",
                "display": "SMART-on-FHIR"} in codings
        assert "extension" not in security  # no endpoint to name

    async def test_names_the_issuers_endpoints_in_the_oauth_uris_extension(
        self, issuer_client: httpx.AsyncClient
    ) -> None:
        statement = (await issuer_client.get("/fhir/metadata")).json()
        security = statement["rest"][0]["security"]
        [uris] = [e for e in security["extension"] if e["url"] == OAUTH_URIS]
        assert uris["extension"] == [{"url": "authorize", "valueUri": AUTHORIZE},
                                     {"url": "token", "valueUri": TOKEN}]
        from fhir.resources.R4B.capabilitystatement import CapabilityStatement

        CapabilityStatement.model_validate(statement)  # still a valid R4 resource
