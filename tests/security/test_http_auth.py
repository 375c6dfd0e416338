"""Bearer authentication at the HTTP edge: public routes, 401 challenges, SMART discovery,
the development token command, and production refusing unsafe key configurations."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from joserfc.jwk import ECKey
from typer.testing import CliRunner

from conftest import SECURE_AUDIENCE, SECURE_ISSUER, make_settings  # tests/ is on sys.path
from samplan.api.deps import Services
from samplan.cli import app as cli
from samplan.main import create_app
from samplan.security.authn import UnsafeConfiguration, build_authenticator
from samplan.security.devkeys import load_or_create_dev_key
from samplan.security.tokens import StaticJwks, TokenVerifier
from samplan.settings import Settings, get_settings

Mint = Callable[..., str]


class TestPublicRoutes:
    # The ignore is about the OpenAPI document's content (checked elsewhere), not its access.
    @pytest.mark.filterwarnings("ignore:Duplicate Operation ID:UserWarning")
    @pytest.mark.parametrize("path", ["/fhir/metadata", "/healthz", "/readyz",
                                      "/.well-known/smart-configuration", "/openapi.json",
                                      "/.well-known/jwks.json", "/docs"])
    async def test_answer_without_a_token(
        self, secure_client: httpx.AsyncClient, path: str
    ) -> None:
        response = await secure_client.get(path)
        assert response.status_code == 200, response.text

    @pytest.mark.parametrize("path", ["/fhir/Patient", "/fhir/CarePlan/x", "/fhir/_history",
                                      "/fhir/Nonsense", "/nothing-here", "/fhir/metadata/x"])
    async def test_everything_else_is_401_with_a_bare_challenge(
        self, secure_client: httpx.AsyncClient, path: str
    ) -> None:
        response = await secure_client.get(path)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="samplan"'
        assert response.headers["content-type"].startswith("application/fhir+json")
        assert response.json() == {
            "resourceType": "OperationOutcome",
            "issue": [{
                "severity": "error",
                "code": "login",
                "diagnostics": "this request needs a bearer token (Authorization: Bearer <token>)",
            }],
        }

    async def test_basic_credentials_are_no_credentials(
        self, secure_client: httpx.AsyncClient
    ) -> None:
        response = await secure_client.get("/fhir/Patient",
                                           headers={"Authorization": "Basic dXNlcjpwdw=="})
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="samplan"'

    async def test_a_token_without_resource_scopes_is_403(
        self, secure_client: httpx.AsyncClient, mint: Mint
    ) -> None:
        response = await secure_client.get(
            "/fhir/Patient", headers={"Authorization": f"Bearer {mint('openid fhirUser')}"}
        )
        assert response.status_code == 403
        assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


class TestSmartConfiguration:
    async def test_names_the_issuer_its_keys_and_the_scopes(
        self, secure_client: httpx.AsyncClient
    ) -> None:
        config = (await secure_client.get("/.well-known/smart-configuration")).json()
        assert config["issuer"] == SECURE_ISSUER
        assert config["jwks_uri"] == "http://samplan.test/.well-known/jwks.json"
        assert {"permission-v2", "permission-v1", "permission-patient"} <= set(
            config["capabilities"])
        assert {"patient/CarePlan.rs", "user/*.cruds", "system/*.cruds",
                "user/AuditEvent.rs"} <= set(config["scopes_supported"])
        assert "token_endpoint" not in config  # not ours: the issuer's
        assert "does not issue tokens" in config["x-samplan-token-service"]

    async def test_publishes_the_development_key_it_trusts(
        self, secure_client: httpx.AsyncClient, dev_key_dir: Path
    ) -> None:
        jwks = (await secure_client.get("/.well-known/jwks.json")).json()
        assert jwks == load_or_create_dev_key(dev_key_dir).jwks()
        assert "d" not in jwks["keys"][0]


class TestTokenCommand:
    def test_prints_a_verifiable_token_alone_on_the_last_line(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("SAMPLAN_DATA_DIR", str(tmp_path))
        monkeypatch.setenv("SAMPLAN_ENVIRONMENT", "development")
        get_settings.cache_clear()
        try:
            result = CliRunner().invoke(cli, [
                "token", "--scope", "user/*.rs", "--user", "SE2321000073-1001",
                "--care-unit", "SE2321000073-2001", "--fhir-user", "Practitioner/7",
            ])
            settings = get_settings()
        finally:
            get_settings.cache_clear()
        assert result.exit_code == 0, result.output
        token = result.stdout.strip().splitlines()[-1]
        verifier = TokenVerifier(issuer=settings.token_issuer, audience=settings.token_audience,
                                 keys=StaticJwks(load_or_create_dev_key(tmp_path).jwks()))

        import asyncio

        principal = asyncio.run(verifier.verify(token))
        assert (principal.kind, principal.employee_hsa_id, principal.care_unit_hsa_id,
                principal.fhir_user) == ("staff", "SE2321000073-1001", "SE2321000073-2001",
                                         "Practitioner/7")

    def test_refuses_in_production(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("SAMPLAN_DATA_DIR", str(tmp_path))
        monkeypatch.setenv("SAMPLAN_ENVIRONMENT", "production")
        monkeypatch.setenv("SAMPLAN_WEBHOOK_SECRET_KEY", "a-production-secret-key-of-32-chars!")
        get_settings.cache_clear()
        try:
            result = CliRunner().invoke(cli, ["token", "--scope", "user/*.rs"])
        finally:
            get_settings.cache_clear()
        assert result.exit_code == 2
        assert not (tmp_path / "dev-signing-key.json").exists()


def _production(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "environment": "production", "auth_enabled": True, "data_dir": tmp_path,
        "database_url": f"sqlite+aiosqlite:///{tmp_path}/p.db",
        "token_issuer": SECURE_ISSUER, "token_audience": SECURE_AUDIENCE,
        "webhook_secret_key": "a-production-secret-key-of-32-chars!",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


class TestProductionRefusesUnsafeKeys:
    async def test_without_a_jwks(self, tmp_path: Path) -> None:
        async with httpx.AsyncClient() as http:
            with pytest.raises(UnsafeConfiguration, match="SAMPLAN_JWKS_URL or SAMPLAN_JWKS_FILE"):
                await build_authenticator(_production(tmp_path), http)
        assert not (tmp_path / "dev-signing-key.json").exists()

    async def test_with_the_development_key_in_its_jwks(self, tmp_path: Path) -> None:
        jwks = tmp_path / "jwks.json"
        jwks.write_text(json.dumps(load_or_create_dev_key(tmp_path / "dev").jwks()))
        async with httpx.AsyncClient() as http:
            with pytest.raises(UnsafeConfiguration, match="development signing key"):
                await build_authenticator(_production(tmp_path, jwks_file=jwks), http)

    async def test_the_app_does_not_start(self, tmp_path: Path) -> None:
        app = create_app(_production(tmp_path))
        with pytest.raises(UnsafeConfiguration):
            async with app.router.lifespan_context(app):
                pass  # pragma: no cover

    async def test_accepts_the_issuers_own_keys(self, tmp_path: Path) -> None:
        key = ECKey.generate_key("P-256", private=True)
        public = {**key.as_dict(private=False), "kid": "idp-2026", "use": "sig", "alg": "ES256"}
        jwks = tmp_path / "jwks.json"
        jwks.write_text(json.dumps({"keys": [public]}))
        async with httpx.AsyncClient() as http:
            auth = await build_authenticator(_production(tmp_path, jwks_file=jwks), http)
        assert auth.enabled
        assert auth.dev_jwks() is None


class TestAuthDisabled:
    async def test_the_anonymous_development_principal_reaches_everything(
        self, client: httpx.AsyncClient, services: Services
    ) -> None:
        assert not services.settings.auth_enabled
        created = await client.post("/fhir/Patient", json={"resourceType": "Patient"})
        assert created.status_code == 201
        assert (await client.get("/fhir/Patient")).json()["total"] == 1


def test_make_settings_keeps_auth_off_for_the_other_tests() -> None:
    assert make_settings("sqlite+aiosqlite:///x.db").auth_enabled is False
