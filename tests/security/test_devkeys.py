"""The development signing key: created once, private, reused, recognisable."""

from __future__ import annotations

import json
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from joserfc.jwk import ECKey, KeySet

from samplan.fhir.errors import Unauthorized
from samplan.security.devkeys import (
    DEV_KID_PREFIX,
    KEY_FILE_NAME,
    dev_key_thumbprints,
    is_dev_key,
    load_or_create_dev_key,
)
from samplan.security.tokens import StaticJwks, TokenVerifier

ISSUER = "http://localhost:8000"
AUDIENCE = "http://localhost:8000/fhir"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class TestKeyFile:
    def test_key_is_created_once_with_mode_0600(self, tmp_path: Path) -> None:
        directory = tmp_path / "state" / "keys"
        key = load_or_create_dev_key(directory)
        path = directory / KEY_FILE_NAME
        assert key.path == path
        assert mode(path) == 0o600
        assert mode(directory) == 0o700
        assert key.kid.startswith(DEV_KID_PREFIX)
        assert [p.name for p in directory.iterdir()] == [KEY_FILE_NAME]  # no temp files left

    def test_key_is_reused_afterwards(self, tmp_path: Path) -> None:
        first = load_or_create_dev_key(tmp_path)
        content = (tmp_path / KEY_FILE_NAME).read_bytes()
        second = load_or_create_dev_key(tmp_path)
        assert second.kid == first.kid
        assert second.jwks() == first.jwks()
        assert (tmp_path / KEY_FILE_NAME).read_bytes() == content

    def test_processes_starting_together_share_one_key(self, tmp_path: Path) -> None:
        with ThreadPoolExecutor(max_workers=8) as pool:
            kids = set(pool.map(lambda _: load_or_create_dev_key(tmp_path).kid, range(16)))
        assert len(kids) == 1
        assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE_NAME]

    def test_file_holds_a_private_p256_key(self, tmp_path: Path) -> None:
        load_or_create_dev_key(tmp_path)
        data = json.loads((tmp_path / KEY_FILE_NAME).read_text())
        assert (data["kty"], data["crv"], data["alg"], data["use"]) == (
            "EC",
            "P-256",
            "ES256",
            "sig",
        )
        assert "d" in data

    def test_loose_permissions_are_tightened(self, tmp_path: Path) -> None:
        load_or_create_dev_key(tmp_path)
        (tmp_path / KEY_FILE_NAME).chmod(0o644)
        load_or_create_dev_key(tmp_path)
        assert mode(tmp_path / KEY_FILE_NAME) == 0o600

    @pytest.mark.parametrize(
        "content",
        [
            "not json",
            "[]",
            json.dumps({"kty": "oct", "k": "c2VjcmV0"}),
            # a real P-256 key, but not one of ours
            json.dumps(
                {**ECKey.generate_key("P-256").as_dict(private=True), "kid": "someone-else"}
            ),
            # ours, but only the public half
            json.dumps(
                {**ECKey.generate_key("P-256").as_dict(private=False), "kid": "samplan-dev-x"}
            ),
        ],
    )
    def test_a_file_that_is_not_a_dev_key_is_refused(self, tmp_path: Path, content: str) -> None:
        (tmp_path / KEY_FILE_NAME).write_text(content)
        with pytest.raises(ValueError, match="development key"):
            load_or_create_dev_key(tmp_path)


class TestJwksAndRecognition:
    def test_jwks_is_public_only(self, tmp_path: Path) -> None:
        key = load_or_create_dev_key(tmp_path)
        jwks = key.jwks()
        assert len(jwks["keys"]) == 1
        public = jwks["keys"][0]
        assert "d" not in public
        assert (public["kid"], public["alg"], public["use"]) == (key.kid, "ES256", "sig")

    def test_dev_key_is_recognised_in_every_form(self, tmp_path: Path) -> None:
        key = load_or_create_dev_key(tmp_path)
        jwks = key.jwks()
        assert is_dev_key(key.kid)
        assert is_dev_key(jwks)
        assert is_dev_key(jwks["keys"][0])
        assert is_dev_key(KeySet.import_key_set(jwks))  # type: ignore[arg-type]
        mixed = {"keys": [{"kty": "RSA", "kid": "idp-1"}, *jwks["keys"]]}
        assert is_dev_key(mixed)

    @pytest.mark.parametrize(
        "value",
        ["idp-2025", "", {"keys": []}, {"keys": [{"kid": "idp-1"}, {"kid": 5}]}, {"kid": "x"}, {}],
    )
    def test_other_keys_are_not_dev_keys(self, value: str | dict[str, object]) -> None:
        assert not is_dev_key(value)

    def test_production_keys_are_not_dev_keys(self) -> None:
        keys = KeySet([ECKey.generate_key("P-256", parameters={"kid": "idp-1"})])
        assert not is_dev_key(keys)


class TestRecognitionByMaterial:
    def test_the_dev_key_under_any_kid_is_recognised_by_its_thumbprint(
        self, tmp_path: Path
    ) -> None:
        key = load_or_create_dev_key(tmp_path)
        known = dev_key_thumbprints(tmp_path)
        renamed = {"keys": [{**k, "kid": "idp-2026", "alg": "ES256"} for k in key.jwks()["keys"]]}
        assert not is_dev_key(renamed)  # the kid alone says nothing
        assert is_dev_key(renamed, known)
        assert is_dev_key(renamed["keys"][0], known)
        assert is_dev_key(KeySet.import_key_set(renamed), known)  # type: ignore[arg-type]
        other = KeySet([ECKey.generate_key("P-256", parameters={"kid": "idp-1"})])
        assert not is_dev_key(other, known)

    def test_thumbprints_never_create_a_key(self, tmp_path: Path) -> None:
        assert dev_key_thumbprints(tmp_path) == frozenset()
        assert list(tmp_path.iterdir()) == []
        (tmp_path / KEY_FILE_NAME).write_text("{}")
        with pytest.raises(ValueError, match="does not hold a key"):
            dev_key_thumbprints(tmp_path)


class TestMint:
    async def test_minted_token_verifies_with_the_dev_jwks(self, tmp_path: Path) -> None:
        key = load_or_create_dev_key(tmp_path)
        verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, keys=StaticJwks(key.jwks()))
        token = key.mint(
            scopes="user/*.cruds openid",
            issuer=ISSUER,
            audience=AUDIENCE,
            fhir_user="Practitioner/123",
            user="SE2321000016-1003",
            care_provider="SE2321000016-0001",
            care_unit="SE2321000016-0002",
            patient="194501011235",
        )
        principal = await verifier.verify(token)
        assert principal.kind == "staff"
        assert principal.subject == "SE2321000016-1003"
        assert principal.fhir_user == "Practitioner/123"
        assert principal.employee_hsa_id == "SE2321000016-1003"
        assert principal.care_provider_hsa_id == "SE2321000016-0001"
        assert principal.care_unit_hsa_id == "SE2321000016-0002"
        assert principal.patient == "194501011235"
        assert principal.client_id == "samplan-dev"
        assert principal.token_id

    async def test_system_token_carries_the_organisation(self, tmp_path: Path) -> None:
        key = load_or_create_dev_key(tmp_path)
        verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, keys=StaticJwks(key.jwks()))
        token = key.mint(
            scopes="system/CarePlan.rs system/Appointment.cud",
            issuer=ISSUER,
            audience=AUDIENCE,
            org="SE2120000001-0001",
        )
        principal = await verifier.verify(token)
        assert (principal.kind, principal.organisation_hsa_id, principal.subject) == (
            "system",
            "SE2120000001-0001",
            "SE2120000001-0001",
        )

    async def test_lifetime_and_extra_claims(self, tmp_path: Path) -> None:
        key = load_or_create_dev_key(tmp_path)
        verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, keys=StaticJwks(key.jwks()))
        expired = key.mint(
            scopes="patient/*.rs", issuer=ISSUER, audience=AUDIENCE, patient="5", lifetime_s=-120
        )
        with pytest.raises(Unauthorized, match="token expired"):
            await verifier.verify(expired)
        other_audience = key.mint(
            scopes="patient/*.rs",
            issuer=ISSUER,
            audience=AUDIENCE,
            patient="5",
            extra={"aud": "somewhere-else"},
        )
        with pytest.raises(Unauthorized, match="does not include"):
            await verifier.verify(other_audience)

    def test_each_token_has_its_own_id(self, tmp_path: Path) -> None:
        key = load_or_create_dev_key(tmp_path)
        tokens = {key.mint(scopes="user/*.rs", issuer=ISSUER, audience=AUDIENCE) for _ in range(3)}
        assert len(tokens) == 3
