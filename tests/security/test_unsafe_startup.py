"""Issue 12, finding 12: production refuses the development key by its material, whatever its
kid, and every command refuses before a database (SQLite file) exists."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from samplan.fhir.errors import Unauthorized
from samplan.security.authn import UnsafeConfiguration, build_authenticator
from samplan.security.devkeys import load_or_create_dev_key
from samplan.settings import Settings

ISSUER = "https://idp.example.se"
AUDIENCE = "https://samplan.example.se/fhir"
SAMPLAN = Path(sys.executable).with_name("samplan")


def renamed(jwks: dict[str, Any], kid: str) -> dict[str, Any]:
    """The same public keys under another kid (and nothing else that says 'development')."""
    return {"keys": [{**k, "kid": kid} for k in jwks["keys"]]}


def issuer_key(kid: str = "idp-2026") -> dict[str, Any]:
    key = ECKey.generate_key("P-256", private=True)
    return {**key.as_dict(private=False), "kid": kid, "use": "sig", "alg": "ES256"}


def production(tmp_path: Path, jwks: dict[str, Any]) -> Settings:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks))
    return Settings(  # type: ignore[call-arg]
        environment="production", data_dir=tmp_path, jwks_file=path,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/samplan.db",
        token_issuer=ISSUER, token_audience=AUDIENCE,
        webhook_secret_key="a-production-secret-key-of-32-chars!",
    )


class TestKeyMaterial:
    async def test_the_dev_key_under_another_kid_is_refused(self, tmp_path: Path) -> None:
        dev = load_or_create_dev_key(tmp_path)
        jwks = renamed(dev.jwks(), "idp-2026")
        jwks["keys"].insert(0, issuer_key("idp-2025"))
        async with httpx.AsyncClient() as http:
            with pytest.raises(UnsafeConfiguration, match="development signing key"):
                await build_authenticator(production(tmp_path, jwks), http)

    async def test_the_issuers_own_keys_are_fine_next_to_a_dev_key_file(
        self, tmp_path: Path
    ) -> None:
        load_or_create_dev_key(tmp_path)
        async with httpx.AsyncClient() as http:
            auth = await build_authenticator(production(tmp_path, {"keys": [issuer_key()]}), http)
        assert auth.enabled

    async def test_an_unreadable_dev_key_file_is_refused(self, tmp_path: Path) -> None:
        (tmp_path / "dev-signing-key.json").write_text("not a key")
        async with httpx.AsyncClient() as http:
            with pytest.raises(UnsafeConfiguration, match="cannot tell"):
                await build_authenticator(production(tmp_path, {"keys": [issuer_key()]}), http)

    async def test_a_reload_that_brings_the_dev_key_in_does_not_trust_it(
        self, tmp_path: Path
    ) -> None:
        dev = load_or_create_dev_key(tmp_path)
        settings = production(tmp_path, {"keys": [issuer_key()]})
        async with httpx.AsyncClient() as http:
            auth = await build_authenticator(settings, http)
        assert settings.jwks_file is not None
        settings.jwks_file.write_text(json.dumps(renamed(dev.jwks(), "idp-2027")))
        now = int(time.time())
        token = jwt.encode({"alg": "ES256", "kid": "idp-2027", "typ": "at+jwt"}, {
            "iss": ISSUER, "aud": AUDIENCE, "sub": "SE1", "iat": now, "exp": now + 600,
            "scope": "system/*.rs", "organizationHsaId": "SE1"}, dev.key, algorithms=["ES256"])
        with pytest.raises(Unauthorized, match="idp-2027"):  # reloaded, and dropped
            await auth.authenticate(f"Bearer {token}")


def run(command: list[str], tmp_path: Path, jwks: dict[str, Any] | None,
        **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAMPLAN_")}
    env.update({
        "SAMPLAN_ENVIRONMENT": "production",
        "SAMPLAN_DATA_DIR": str(tmp_path),
        "SAMPLAN_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/samplan.db",
        "SAMPLAN_TOKEN_ISSUER": ISSUER, "SAMPLAN_TOKEN_AUDIENCE": AUDIENCE,
        "SAMPLAN_WEBHOOK_SECRET_KEY": "a-production-secret-key-of-32-chars!",
        "SAMPLAN_LOG_LEVEL": "WARNING",
    })
    if jwks is not None:
        (tmp_path / "jwks.json").write_text(json.dumps(jwks))
        env["SAMPLAN_JWKS_FILE"] = str(tmp_path / "jwks.json")
    env.update(extra)
    return subprocess.run([str(SAMPLAN), *command], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


COMMANDS = [
    pytest.param(["migrate"], id="migrate"),
    pytest.param(["worker"], id="worker"),
    pytest.param(["serve", "--port", "1"], id="serve"),
    pytest.param(["serve", "--migrate", "--port", "1"], id="serve --migrate"),
    pytest.param(["load-demo"], id="load-demo"),
    pytest.param(["import-notes", "."], id="import-notes"),
]


class TestEveryCommandRefusesBeforeTheDatabase:
    @pytest.mark.parametrize("command", COMMANDS)
    def test_the_dev_key_under_another_kid(self, tmp_path: Path, command: list[str]) -> None:
        dev = load_or_create_dev_key(tmp_path)
        done = run(command, tmp_path, renamed(dev.jwks(), "idp-2026"))
        assert done.returncode == 2, (done.stdout, done.stderr)
        assert "refusing: production must not trust the development signing key" in done.stderr
        assert "Traceback" not in done.stderr
        assert not (tmp_path / "samplan.db").exists()

    def test_settings_that_do_not_validate(self, tmp_path: Path) -> None:
        done = run(["migrate"], tmp_path, {"keys": [issuer_key()]}, SAMPLAN_AUTH_ENABLED="false")
        assert done.returncode == 2, (done.stdout, done.stderr)
        assert "refusing: invalid settings:" in done.stderr
        assert not (tmp_path / "samplan.db").exists()

    def test_safe_settings_do_create_it(self, tmp_path: Path) -> None:
        load_or_create_dev_key(tmp_path)  # a dev key file lying around is no reason to refuse
        done = run(["migrate"], tmp_path, {"keys": [issuer_key()]})
        assert done.returncode == 0, (done.stdout, done.stderr)
        assert (tmp_path / "samplan.db").exists()
