"""TokenVerifier with real RS256/ES256 keys, JWKS from a file and from a live HTTP server."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

from samplan.fhir.errors import Forbidden, Unauthorized
from samplan.security.tokens import (
    JwksFile,
    JwksUrl,
    KeySource,
    StaticJwks,
    TokenVerifier,
    bearer_token,
    www_authenticate,
)

ISSUER = "https://idp.example.se"
AUDIENCE = "https://samplan.example.se/fhir"
NOW = 1_750_000_000.0

SigningKey = RSAKey | ECKey
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=5,
)


class FakeClock:
    """Seconds, moved by hand (for ``clock`` and ``monotonic``)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_claims(
    *,
    scope: str = "user/*.cruds",
    iss: str = ISSUER,
    aud: Any = AUDIENCE,  # Any: tests also send broken values
    exp: Any = NOW + 300,
    **extra: Any,
) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": iss,
        "aud": aud,
        "sub": "SE2321000016-1003",
        "iat": NOW - 10,
        "scope": scope,
        "employeeHsaId": "SE2321000016-1003",
        "healthCareProviderHsaId": "SE2321000016-0001",
        "commissionHsaId": "SE2321000016-0002",
        "jti": "jti-1",
        **extra,
    }
    if exp is not None:
        claims["exp"] = exp
    return claims


def sign(key: SigningKey, claims: dict[str, Any], **header: Any) -> str:
    alg = "RS256" if isinstance(key, RSAKey) else "ES256"
    return jwt.encode({"alg": alg, "kid": key.kid, **header}, claims, key, algorithms=[alg])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A token put together by hand, the way an attacker would."""
    return ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature)]
    )


def public_jwks(*keys: SigningKey) -> dict[str, Any]:
    return dict(KeySet(list(keys)).as_dict(private=False))


def make_verifier(keys: KeySource, *, clock: FakeClock | None = None) -> TokenVerifier:
    return TokenVerifier(
        issuer=ISSUER, audience=AUDIENCE, keys=keys, leeway_s=30, clock=clock or FakeClock(NOW)
    )


def challenge(description: str, error: str = "invalid_token") -> dict[str, str]:
    return {
        "WWW-Authenticate": (
            f'Bearer realm="samplan", error="{error}", error_description="{description}"'
        )
    }


@pytest.fixture(scope="module")
def rsa_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})


@pytest.fixture(scope="module")
def ec_key() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": "ec-1"})


@pytest.fixture
def verifier(rsa_key: RSAKey, ec_key: ECKey) -> TokenVerifier:
    return make_verifier(StaticJwks(public_jwks(rsa_key, ec_key)))


class TestValidTokens:
    @pytest.mark.parametrize("key_name", ["rsa_key", "ec_key"])
    async def test_signed_token_gives_the_principal(
        self, verifier: TokenVerifier, key_name: str, request: pytest.FixtureRequest
    ) -> None:
        key: SigningKey = request.getfixturevalue(key_name)
        principal = await verifier.verify(sign(key, make_claims()))
        assert principal.kind == "staff"
        assert principal.subject == "SE2321000016-1003"
        assert principal.employee_hsa_id == "SE2321000016-1003"
        assert principal.care_provider_hsa_id == "SE2321000016-0001"
        assert principal.care_unit_hsa_id == "SE2321000016-0002"
        assert principal.token_id == "jti-1"
        assert principal.issuer == ISSUER
        assert principal.scopes.allows("user", "CarePlan", "u")

    async def test_audience_list_containing_ours(
        self, verifier: TokenVerifier, ec_key: ECKey
    ) -> None:
        token = sign(ec_key, make_claims(aud=["https://other.example", AUDIENCE]))
        assert (await verifier.verify(token)).subject == "SE2321000016-1003"

    @pytest.mark.parametrize("typ", ["JWT", "at+jwt", "application/at+JWT"])
    async def test_access_token_types_are_accepted(
        self, verifier: TokenVerifier, ec_key: ECKey, typ: str
    ) -> None:
        await verifier.verify(sign(ec_key, make_claims(), typ=typ))

    async def test_expiry_within_leeway_is_accepted(
        self, verifier: TokenVerifier, ec_key: ECKey
    ) -> None:
        await verifier.verify(sign(ec_key, make_claims(exp=NOW - 29, nbf=NOW + 29)))

    async def test_token_without_kid_uses_the_only_fitting_key(self, ec_key: ECKey) -> None:
        token = jwt.encode({"alg": "ES256"}, make_claims(), ec_key, algorithms=["ES256"])
        verifier = make_verifier(StaticJwks(public_jwks(ec_key)))
        assert (await verifier.verify(token)).kind == "staff"

    async def test_patient_token(self, verifier: TokenVerifier, ec_key: ECKey) -> None:
        claims = make_claims(scope="patient/*.rs launch/patient", patient="194501011235")
        principal = await verifier.verify(sign(ec_key, claims))
        assert (principal.kind, principal.patient) == ("patient", "194501011235")

    async def test_public_jwks_has_no_private_parts(self, verifier: TokenVerifier) -> None:
        jwks = await verifier.jwks()
        assert [k["kid"] for k in jwks["keys"]] == ["rsa-1", "ec-1"]
        assert all("d" not in k for k in jwks["keys"])


class TestRejectedTokens:
    async def test_expired(self, verifier: TokenVerifier, ec_key: ECKey) -> None:
        with pytest.raises(Unauthorized) as caught:
            await verifier.verify(sign(ec_key, make_claims(exp=NOW - 31)))
        error = caught.value
        assert error.status == 401
        assert error.headers == challenge("token expired")
        assert error.outcome() == {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "error",
                    "code": "expired",
                    "diagnostics": "token expired at 2025-06-15T15:06:09Z"
                    " (now 2025-06-15T15:06:40Z, leeway 30 s)",
                }
            ],
        }

    @pytest.mark.parametrize(
        ("claims", "description", "diagnostics"),
        [
            (
                make_claims(nbf=NOW + 31),
                "token not yet valid",
                "token not valid before 2025-06-15T15:07:11Z",
            ),
            (
                make_claims(iat=NOW + 31),
                "token issued in the future",
                "token issued at 2025-06-15T15:07:11Z",
            ),
            (
                make_claims(aud="https://other.example/fhir"),
                "wrong audience",
                f"token audience 'https://other.example/fhir' does not include '{AUDIENCE}'",
            ),
            (
                make_claims(aud=["https://a.example", "https://b.example"]),
                "wrong audience",
                "token audience ['https://a.example', 'https://b.example'] does not include",
            ),
            (make_claims(aud=[]), "wrong audience", "token audience [] does not include"),
            (make_claims(aud=7), "wrong audience", "the token has no valid 'aud' claim"),
            (
                make_claims(iss="https://evil.example"),
                "wrong issuer",
                f"token issuer 'https://evil.example' is not the trusted issuer '{ISSUER}'",
            ),
            (make_claims(exp=None), "malformed token", "the token has no 'exp' claim"),
            (make_claims(exp="tomorrow"), "malformed token", "claim 'exp' must be a NumericDate"),
            (make_claims(exp=True), "malformed token", "claim 'exp' must be a NumericDate"),
            (make_claims(nbf="now"), "malformed token", "claim 'nbf' must be a NumericDate"),
            (make_claims(sub=None), "invalid claims", "token has no 'sub' claim"),
            (make_claims(exp=1e20), "invalid claims", "claim 'exp' is out of range"),
            (
                make_claims(nbf=253402300800),
                "token not yet valid",
                "token not valid before 253402300800 s after 1970",
            ),
            (
                make_claims(scope="patient/*.rs"),
                "invalid claims",
                "patient/ scopes need a 'patient' claim",
            ),
            (
                make_claims(scope="system/*.rs user/*.rs"),
                "invalid claims",
                "system/ scopes cannot be combined",
            ),
        ],
    )
    async def test_bad_claims(
        self,
        verifier: TokenVerifier,
        ec_key: ECKey,
        claims: dict[str, Any],
        description: str,
        diagnostics: str,
    ) -> None:
        with pytest.raises(Unauthorized) as caught:
            await verifier.verify(sign(ec_key, claims))
        assert caught.value.headers == challenge(description)
        assert caught.value.diagnostics.startswith(diagnostics)
        assert caught.value.issues[0].code == "login"

    async def test_bad_signature(self, verifier: TokenVerifier) -> None:
        impostor = ECKey.generate_key("P-256", parameters={"kid": "ec-1"})
        with pytest.raises(Unauthorized) as caught:
            await verifier.verify(sign(impostor, make_claims()))
        assert caught.value.headers == challenge("bad signature")
        assert caught.value.diagnostics == "the token signature does not verify"

    async def test_tampered_payload(self, verifier: TokenVerifier, rsa_key: RSAKey) -> None:
        header, _, signature = sign(rsa_key, make_claims()).split(".")
        forged = b64(json.dumps(make_claims(scope="system/*.cruds")).encode())
        with pytest.raises(Unauthorized) as caught:
            await verifier.verify(f"{header}.{forged}.{signature}")
        assert caught.value.headers == challenge("bad signature")

    @pytest.mark.parametrize("alg", ["none", "None", "NONE"])
    async def test_alg_none(self, verifier: TokenVerifier, alg: str) -> None:
        token = unsigned({"alg": alg, "typ": "JWT"}, make_claims())
        with pytest.raises(Unauthorized) as caught:
            await verifier.verify(token)
        assert caught.value.headers == challenge("algorithm not allowed")
        assert caught.value.diagnostics == (
            f"token algorithm '{alg}' is not allowed (allowed: ES256, RS256)"
        )

    @pytest.mark.parametrize("alg", ["HS256", "HS512"])
    async def test_hmac_signed_with_the_public_key(
        self, verifier: TokenVerifier, rsa_key: RSAKey, alg: str
    ) -> None:
        """The classic key-confusion forgery: HMAC keyed with the public RSA key."""
        secret = rsa_key.as_pem(private=False)
        header = b64(json.dumps({"alg": alg, "kid": "rsa-1"}).encode())
        payload = b64(json.dumps(make_claims()).encode())
        digest = hashlib.sha256 if alg == "HS256" else hashlib.sha512
        mac = hmac.new(secret, f"{header}.{payload}".encode(), digest).digest()
        with pytest.raises(Unauthorized) as caught:
            await verifier.verify(f"{header}.{payload}.{b64(mac)}")
        assert caught.value.headers == challenge("algorithm not allowed")

    @pytest.mark.parametrize("alg", ["RS512", "PS256", "ES384", "EdDSA", ["ES256"], {"a": 1}, 5])
    async def test_other_algorithms(self, verifier: TokenVerifier, alg: object) -> None:
        token = unsigned({"alg": alg, "kid": "rsa-1"}, make_claims(), b"sig")
        with pytest.raises(Unauthorized) as caught:
            await verifier.verify(token)
        assert caught.value.headers == challenge("algorithm not allowed")

    async def test_alg_that_does_not_fit_the_kid(self, verifier: TokenVerifier) -> None:
        token = unsigned({"alg": "ES256", "kid": "rsa-1"}, make_claims(), b"sig")
        with pytest.raises(Unauthorized) as caught:
            await verifier.verify(token)
        assert caught.value.headers == challenge("unknown key")
        assert caught.value.diagnostics == "no ES256 signing key with kid 'rsa-1' is known"

    async def test_unknown_kid(self, verifier: TokenVerifier) -> None:
        stranger = ECKey.generate_key("P-256", parameters={"kid": "ec-2"})
        with pytest.raises(Unauthorized) as caught:
            await verifier.verify(sign(stranger, make_claims()))
        assert caught.value.headers == challenge("unknown key")
        assert caught.value.diagnostics == "no ES256 signing key with kid 'ec-2' is known"

    async def test_no_kid_with_several_fitting_keys(self, ec_key: ECKey) -> None:
        other = ECKey.generate_key("P-256", parameters={"kid": "ec-2"})
        verifier = make_verifier(StaticJwks(public_jwks(ec_key, other)))
        token = jwt.encode({"alg": "ES256"}, make_claims(), ec_key, algorithms=["ES256"])
        with pytest.raises(Unauthorized) as caught:
            await verifier.verify(token)
        assert caught.value.diagnostics == (
            "the token has no 'kid' and the issuer has no single ES256 key"
        )

    @pytest.mark.parametrize(
        ("token", "diagnostics"),
        [
            ("", "the bearer token is empty"),
            ("abc", "the bearer token is not a JWT (header.payload.signature)"),
            ("a.b", "the bearer token is not a JWT (header.payload.signature)"),
            ("a.b.c.d", "the bearer token is not a JWT (header.payload.signature)"),
            ("a.b.c.d.e", "encrypted tokens (JWE) are not accepted"),
            ("!!.??.##", "the token cannot be decoded"),
            ("åäö.b.c", "the token cannot be decoded"),
            (f"{b64(b'[1]')}.e30.c2ln", "the token cannot be decoded"),
            (f"{b64(b'{}')}.e30.c2ln", "the token cannot be decoded"),
        ],
    )
    async def test_malformed(self, verifier: TokenVerifier, token: str, diagnostics: str) -> None:
        with pytest.raises(Unauthorized) as caught:
            await verifier.verify(token)
        assert caught.value.headers == challenge("malformed token")
        assert caught.value.diagnostics.startswith(diagnostics)

    @pytest.mark.parametrize(
        ("header", "diagnostics"),
        [
            ({"typ": "dpop+jwt"}, "token type 'dpop+jwt' is not an access token"),
            ({"typ": 5}, "token type 5 is not an access token"),
            ({"kid": 5}, "the token header 'kid' must be a string"),
            ({"crit": ["exp-x"], "exp-x": 1}, "the token header is not acceptable"),
            ({"b64": False, "crit": ["b64"]}, "unencoded payloads (b64) are not accepted"),
        ],
    )
    async def test_unacceptable_header(
        self, verifier: TokenVerifier, header: dict[str, Any], diagnostics: str
    ) -> None:
        token = unsigned({"alg": "ES256", "kid": "ec-1", **header}, make_claims(), b"sig")
        with pytest.raises(Unauthorized) as caught:
            await verifier.verify(token)
        assert caught.value.headers == challenge("malformed token")
        assert caught.value.diagnostics.startswith(diagnostics)

    @pytest.mark.parametrize("payload", [b"not json", b"[1, 2]", b'{"exp": NaN}'])
    async def test_signed_payload_that_is_not_a_claims_object(
        self, ec_key: ECKey, payload: bytes
    ) -> None:
        from joserfc import jws

        token = jws.serialize_compact({"alg": "ES256", "kid": "ec-1"}, payload, ec_key)
        verifier = make_verifier(StaticJwks(public_jwks(ec_key)))
        with pytest.raises(Unauthorized) as caught:
            await verifier.verify(token)
        assert caught.value.headers == challenge("malformed token")

    async def test_no_resource_scope_is_forbidden_not_unauthorized(
        self, verifier: TokenVerifier, ec_key: ECKey
    ) -> None:
        with pytest.raises(Forbidden) as caught:
            await verifier.verify(sign(ec_key, make_claims(scope="openid fhirUser")))
        assert caught.value.status == 403
        description = "token grants no FHIR resource scope (scope: 'openid fhirUser')"
        assert caught.value.diagnostics == description
        assert caught.value.headers == challenge(
            description.replace('"', "'"), error="insufficient_scope"
        )


class TestFuzz:
    @settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        st.one_of(
            st.text(),
            st.lists(st.text(alphabet="ABCDEFabcdef0123456789-_="), min_size=3, max_size=3).map(
                ".".join
            ),
            st.tuples(
                st.dictionaries(st.sampled_from(["alg", "kid", "typ", "crit", "b64"]), JSON),
                st.dictionaries(st.text(max_size=8), JSON),
            ).map(lambda parts: unsigned(parts[0], parts[1], b"x")),
        )
    )
    def test_any_input_gives_unauthorized_and_nothing_else(
        self, verifier: TokenVerifier, token: str
    ) -> None:
        with pytest.raises(Unauthorized):
            asyncio.run(verifier.verify(token))

    @settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        st.dictionaries(
            st.sampled_from(
                ["iss", "aud", "exp", "nbf", "iat", "sub", "scope", "scp", "patient", "fhirUser"]
                + ["organizationHsaId", "client_id", "jti"]
            ),
            JSON | st.sampled_from([ISSUER, AUDIENCE, NOW, "patient/*.rs", "Patient/5"]),
        )
    )
    def test_any_signed_claims_give_a_principal_or_a_fhir_error(
        self, verifier: TokenVerifier, ec_key: ECKey, claims: dict[str, Any]
    ) -> None:
        token = sign(ec_key, claims)
        try:
            asyncio.run(verifier.verify(token))
        except (Unauthorized, Forbidden):
            pass


class TestConfiguration:
    @pytest.mark.parametrize("algorithms", [["HS256"], ["RS256", "none"], [], ["PS256"]])
    def test_only_rs256_and_es256_can_be_configured(self, algorithms: list[str]) -> None:
        with pytest.raises(ValueError, match="algorithms must be a non-empty subset"):
            TokenVerifier(issuer=ISSUER, audience=AUDIENCE, keys=_NoKeys(), algorithms=algorithms)

    async def test_es256_only_verifier_refuses_rs256(self, rsa_key: RSAKey) -> None:
        verifier = TokenVerifier(
            issuer=ISSUER,
            audience=AUDIENCE,
            keys=StaticJwks(public_jwks(rsa_key)),
            algorithms=["ES256"],
            clock=FakeClock(NOW),
        )
        with pytest.raises(Unauthorized) as caught:
            await verifier.verify(sign(rsa_key, make_claims()))
        assert caught.value.diagnostics == (
            "token algorithm 'RS256' is not allowed (allowed: ES256)"
        )

    def test_several_audiences(self, ec_key: ECKey) -> None:
        verifier = TokenVerifier(
            issuer=ISSUER, audience=[AUDIENCE, "samplan"], keys=StaticJwks(public_jwks(ec_key))
        )
        assert verifier.audiences == {AUDIENCE, "samplan"}

    @pytest.mark.parametrize(
        "jwks",
        [
            {},
            {"keys": "x"},
            {"keys": []},
            {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]},
            {"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "use": "enc"}]},
        ],
    )
    def test_jwks_without_a_usable_signature_key_is_refused(self, jwks: dict[str, Any]) -> None:
        from samplan.security.tokens import KeySourceError

        with pytest.raises(KeySourceError):
            StaticJwks(jwks)


class _NoKeys:
    async def key_set(self) -> KeySet:
        raise AssertionError("not used")

    async def refresh(self) -> bool:
        return False


class TestAuthorizationHeader:
    @pytest.mark.parametrize(
        ("value", "token"),
        [("Bearer abc.def.ghi", "abc.def.ghi"), ("bearer  abc ", "abc"), ("BEARER x", "x")],
    )
    def test_bearer_token_is_extracted(self, value: str, token: str) -> None:
        assert bearer_token(value) == token

    @pytest.mark.parametrize("value", [None, "", "   ", "Basic dXNlcjpwYXNz", "Token abc"])
    def test_no_bearer_credentials_is_a_bare_challenge(self, value: str | None) -> None:
        with pytest.raises(Unauthorized) as caught:
            bearer_token(value)
        assert caught.value.headers == {"WWW-Authenticate": 'Bearer realm="samplan"'}
        assert caught.value.outcome() == {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "error",
                    "code": "login",
                    "diagnostics": "this request needs a bearer token"
                    " (Authorization: Bearer <token>)",
                }
            ],
        }

    @pytest.mark.parametrize("value", ["Bearer", "Bearer   ", "Bearer a b"])
    def test_broken_bearer_header_is_invalid_token(self, value: str) -> None:
        with pytest.raises(Unauthorized) as caught:
            bearer_token(value, realm="test")
        assert caught.value.headers == {
            "WWW-Authenticate": 'Bearer realm="test", error="invalid_token",'
            ' error_description="malformed Authorization header"'
        }

    def test_header_values_cannot_break_out_of_quotes(self) -> None:
        value = www_authenticate(
            error="invalid_token", description='say "hi"\\\n', scope="patient/*.rs"
        )
        assert value == (
            'Bearer realm="samplan", error="invalid_token",'
            " error_description=\"say 'hi'''\", scope=\"patient/*.rs\""
        )


# ------------------------------------------------------------------ JWKS from a file


class TestJwksFile:
    async def test_keys_are_read_from_the_file(self, tmp_path: Path, ec_key: ECKey) -> None:
        path = tmp_path / "jwks.json"
        path.write_text(json.dumps(public_jwks(ec_key)))
        verifier = make_verifier(JwksFile(path))
        assert (await verifier.verify(sign(ec_key, make_claims()))).kind == "staff"

    async def test_rotated_file_is_reread_on_unknown_kid(
        self, tmp_path: Path, ec_key: ECKey
    ) -> None:
        path = tmp_path / "jwks.json"
        path.write_text(json.dumps(public_jwks(ec_key)))
        source = JwksFile(path, monotonic=FakeClock(0.0))
        verifier = make_verifier(source)
        await verifier.verify(sign(ec_key, make_claims()))
        new = ECKey.generate_key("P-256", parameters={"kid": "ec-new"})
        path.write_text(json.dumps(public_jwks(ec_key, new)))
        assert (await verifier.verify(sign(new, make_claims()))).kind == "staff"
        assert source.loads == 2

    async def test_missing_file_means_keys_unavailable(self, tmp_path: Path, ec_key: ECKey) -> None:
        verifier = make_verifier(JwksFile(tmp_path / "missing.json"))
        with pytest.raises(Unauthorized) as caught:
            await verifier.verify(sign(ec_key, make_claims()))
        assert caught.value.headers == challenge("signing keys unavailable")
        assert caught.value.diagnostics == (
            "the token cannot be checked now: the issuer's signing keys are unavailable"
        )


# ------------------------------------------------------- JWKS from a live HTTP server


class JwksServer:
    """A real HTTP server on 127.0.0.1 publishing a JWKS that tests can rotate."""

    def __init__(self) -> None:
        self.jwks: dict[str, Any] = {"keys": []}
        self.status = 200
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server.requests += 1
                body = json.dumps(server.jwks).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/.well-known/jwks.json"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def __enter__(self) -> JwksServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


@pytest.fixture
def jwks_server(ec_key: ECKey, rsa_key: RSAKey) -> Iterator[JwksServer]:
    with JwksServer() as server:
        server.jwks = public_jwks(rsa_key, ec_key)
        yield server


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


class TestJwksUrl:
    async def test_keys_are_fetched_once_and_cached(
        self,
        jwks_server: JwksServer,
        http_client: httpx.AsyncClient,
        ec_key: ECKey,
        rsa_key: RSAKey,
    ) -> None:
        verifier = make_verifier(JwksUrl(jwks_server.url, http_client))
        await verifier.verify(sign(ec_key, make_claims()))
        await verifier.verify(sign(rsa_key, make_claims()))
        await verifier.verify(sign(ec_key, make_claims()))
        assert jwks_server.requests == 1

    async def test_rotation_new_kid_is_fetched_once_and_accepted(
        self, jwks_server: JwksServer, http_client: httpx.AsyncClient, ec_key: ECKey
    ) -> None:
        source = JwksUrl(jwks_server.url, http_client, monotonic=FakeClock(0.0))
        verifier = make_verifier(source)
        await verifier.verify(sign(ec_key, make_claims()))
        new = ECKey.generate_key("P-256", parameters={"kid": "ec-2025-07"})
        jwks_server.jwks = public_jwks(new, ec_key)

        principal = await verifier.verify(sign(new, make_claims()))

        assert principal.kind == "staff"
        assert jwks_server.requests == 2
        await verifier.verify(sign(new, make_claims()))
        assert jwks_server.requests == 2

    async def test_unknown_kid_refetches_once_then_fails(
        self, jwks_server: JwksServer, http_client: httpx.AsyncClient, ec_key: ECKey
    ) -> None:
        monotonic = FakeClock(0.0)
        verifier = make_verifier(JwksUrl(jwks_server.url, http_client, monotonic=monotonic))
        await verifier.verify(sign(ec_key, make_claims()))
        monotonic.now = 31.0
        forged = ECKey.generate_key("P-256", parameters={"kid": "never-published"})

        with pytest.raises(Unauthorized) as caught:
            await verifier.verify(sign(forged, make_claims()))

        assert caught.value.headers == challenge("unknown key")
        assert caught.value.diagnostics == (
            "no ES256 signing key with kid 'never-published' is known"
        )
        assert jwks_server.requests == 2

    async def test_refetches_are_rate_limited(
        self, jwks_server: JwksServer, http_client: httpx.AsyncClient, ec_key: ECKey
    ) -> None:
        monotonic = FakeClock(0.0)
        source = JwksUrl(
            jwks_server.url, http_client, min_refresh_interval_s=30.0, monotonic=monotonic
        )
        verifier = make_verifier(source)
        await verifier.verify(sign(ec_key, make_claims()))
        monotonic.now = 100.0
        for i in range(5):  # a flood of made-up kids: one refetch, then none
            forged = ECKey.generate_key("P-256", parameters={"kid": f"forged-{i}"})
            with pytest.raises(Unauthorized):
                await verifier.verify(sign(forged, make_claims()))
        assert jwks_server.requests == 2

        new = ECKey.generate_key("P-256", parameters={"kid": "ec-new"})
        jwks_server.jwks = public_jwks(new)
        monotonic.now = 129.9
        with pytest.raises(Unauthorized):
            await verifier.verify(sign(new, make_claims()))
        assert jwks_server.requests == 2
        monotonic.now = 130.0
        assert (await verifier.verify(sign(new, make_claims()))).kind == "staff"
        assert jwks_server.requests == 3

    async def test_concurrent_requests_with_a_new_kid_fetch_once(
        self, jwks_server: JwksServer, http_client: httpx.AsyncClient, ec_key: ECKey
    ) -> None:
        verifier = make_verifier(JwksUrl(jwks_server.url, http_client, monotonic=FakeClock(0.0)))
        await verifier.verify(sign(ec_key, make_claims()))
        new = ECKey.generate_key("P-256", parameters={"kid": "ec-new"})
        jwks_server.jwks = public_jwks(new)
        token = sign(new, make_claims())
        results = await asyncio.gather(*(verifier.verify(token) for _ in range(10)))
        assert {p.kind for p in results} == {"staff"}
        assert jwks_server.requests == 2

    async def test_old_keys_expire_after_max_age(
        self, jwks_server: JwksServer, http_client: httpx.AsyncClient, ec_key: ECKey
    ) -> None:
        monotonic = FakeClock(0.0)
        source = JwksUrl(jwks_server.url, http_client, max_age_s=600.0, monotonic=monotonic)
        verifier = make_verifier(source)
        token = sign(ec_key, make_claims())
        await verifier.verify(token)
        jwks_server.jwks = public_jwks(ECKey.generate_key("P-256", parameters={"kid": "other"}))
        monotonic.now = 599.0
        await verifier.verify(token)
        assert jwks_server.requests == 1
        monotonic.now = 600.0
        with pytest.raises(Unauthorized) as caught:
            await verifier.verify(token)  # the issuer withdrew ec-1
        assert caught.value.headers == challenge("unknown key")
        assert jwks_server.requests == 2

    async def test_failed_refetch_keeps_the_cached_keys(
        self, jwks_server: JwksServer, http_client: httpx.AsyncClient, ec_key: ECKey
    ) -> None:
        monotonic = FakeClock(0.0)
        verifier = make_verifier(JwksUrl(jwks_server.url, http_client, monotonic=monotonic))
        await verifier.verify(sign(ec_key, make_claims()))
        jwks_server.status = 503
        monotonic.now = 60.0
        forged = ECKey.generate_key("P-256", parameters={"kid": "forged"})
        with pytest.raises(Unauthorized) as caught:
            await verifier.verify(sign(forged, make_claims()))
        assert caught.value.headers == challenge("unknown key")
        assert (await verifier.verify(sign(ec_key, make_claims()))).kind == "staff"
        assert jwks_server.requests == 2

    @pytest.mark.parametrize("status", [404, 500])
    async def test_unreachable_keys_at_start(
        self,
        jwks_server: JwksServer,
        http_client: httpx.AsyncClient,
        ec_key: ECKey,
        status: int,
    ) -> None:
        jwks_server.status = status
        verifier = make_verifier(JwksUrl(jwks_server.url, http_client))
        with pytest.raises(Unauthorized) as caught:
            await verifier.verify(sign(ec_key, make_claims()))
        assert caught.value.headers == challenge("signing keys unavailable")

    async def test_failed_first_load_is_retried_after_the_interval(
        self, jwks_server: JwksServer, http_client: httpx.AsyncClient, ec_key: ECKey
    ) -> None:
        monotonic = FakeClock(0.0)
        verifier = make_verifier(JwksUrl(jwks_server.url, http_client, monotonic=monotonic))
        token = sign(ec_key, make_claims())
        jwks_server.status = 503
        for _ in range(3):
            with pytest.raises(Unauthorized):
                await verifier.verify(token)
        assert jwks_server.requests == 1
        jwks_server.status = 200
        monotonic.now = 30.0
        assert (await verifier.verify(token)).kind == "staff"
        assert jwks_server.requests == 2

    async def test_not_a_jwks_document(
        self, jwks_server: JwksServer, http_client: httpx.AsyncClient, ec_key: ECKey
    ) -> None:
        jwks_server.jwks = {"issuer": ISSUER}
        verifier = make_verifier(JwksUrl(jwks_server.url, http_client))
        with pytest.raises(Unauthorized) as caught:
            await verifier.verify(sign(ec_key, make_claims()))
        assert caught.value.headers == challenge("signing keys unavailable")


class TestVerifiedTokensAreRemembered:
    """A client sends one token with every request: its signature is checked once."""

    async def test_the_signature_is_checked_once_per_token(
        self, ec_key: ECKey, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        verifier = make_verifier(StaticJwks(public_jwks(ec_key)))
        checked: list[str] = []
        verify_fully = verifier._verify

        async def counting(token: str) -> Any:
            checked.append(token)
            return await verify_fully(token)

        monkeypatch.setattr(verifier, "_verify", counting)
        token, other = sign(ec_key, make_claims()), sign(ec_key, make_claims(scope="user/*.rs"))
        first = await verifier.verify(token)
        assert await verifier.verify(token) == first
        await verifier.verify(other)
        assert checked == [token, other]

    async def test_a_remembered_token_still_expires(self, ec_key: ECKey) -> None:
        clock = FakeClock(NOW)
        verifier = make_verifier(StaticJwks(public_jwks(ec_key)), clock=clock)
        token = sign(ec_key, make_claims(exp=NOW + 10))
        await verifier.verify(token)
        clock.now = NOW + 10 + 30  # the leeway used up
        with pytest.raises(Unauthorized) as caught:
            await verifier.verify(token)
        assert caught.value.headers == challenge("token expired")

    async def test_a_forged_token_is_never_remembered(self, ec_key: ECKey) -> None:
        verifier = make_verifier(StaticJwks(public_jwks(ec_key)))
        forged = sign(ECKey.generate_key("P-256", parameters={"kid": ec_key.kid}), make_claims())
        for _ in range(2):
            with pytest.raises(Unauthorized):
                await verifier.verify(forged)
