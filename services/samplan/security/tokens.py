"""Bearer token verification: a JWT in, a :class:`Principal` out, or a precise 401.

Each step fails with its own diagnostics so that an integrator can tell a
clock problem from a configuration problem without reading our logs:

1. the token is a compact JWS (three parts; JWE is refused);
2. ``alg`` is on the allow-list (RS256, ES256 only: never ``none``, never an
   HMAC, which would let anyone holding the public key forge tokens);
3. the key is found by ``kid`` in the issuer's JWKS; an unknown ``kid`` makes
   the key source reload once (key rotation), rate-limited so a flood of forged
   ``kid`` values cannot turn us into a denial of service on the issuer;
4. the signature verifies;
5. ``exp`` (required), ``nbf`` and ``iat`` hold, within ``leeway_s``;
6. ``iss`` equals the configured issuer and ``aud`` (a string or a list)
   contains our audience;
7. the claims make a :class:`~samplan.security.principal.Principal`.

Failures raise :class:`~samplan.fhir.errors.Unauthorized` carrying the RFC 6750
``WWW-Authenticate`` value in ``headers``. A token that is valid but grants no
resource scope raises :class:`~samplan.fhir.errors.Forbidden` with
``error="insufficient_scope"``, which RFC 6750 pairs with 403.

Nothing here imports a web framework; the HTTP layer reads the header, calls
:func:`bearer_token` and :meth:`TokenVerifier.verify`, and renders the error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol

import httpx
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, KeySet, RSAKey

from samplan.fhir.errors import Forbidden, Unauthorized
from samplan.security.principal import InvalidClaims, NoUsableScope, Principal

logger = logging.getLogger(__name__)

#: The only algorithms a verifier may be configured with, and the key each needs.
SUPPORTED_ALGORITHMS: Final[Mapping[str, tuple[str, str | None]]] = {
    "RS256": ("RSA", None),
    "ES256": ("EC", "P-256"),
}
#: ``typ`` header values accepted (RFC 9068 access tokens, plain JWTs, or none).
ACCEPTED_TYPES: Final[frozenset[str]] = frozenset({"jwt", "at+jwt", "application/at+jwt"})
DEFAULT_REALM: Final[str] = "samplan"


# --------------------------------------------------------------------------- errors


def www_authenticate(
    *,
    realm: str = DEFAULT_REALM,
    error: str | None = None,
    description: str | None = None,
    scope: str | None = None,
) -> str:
    """An RFC 6750 section 3 ``WWW-Authenticate`` value for the Bearer scheme.

    Quotes and backslashes are not allowed inside the quoted values, so they
    (and control characters) are replaced rather than escaped.
    """
    params = [("realm", realm)]
    if error:
        params.append(("error", error))
    if description:
        params.append(("error_description", description))
    if scope:
        params.append(("scope", scope))
    return "Bearer " + ", ".join(f'{name}="{_header_safe(value)}"' for name, value in params)


def invalid_token(
    description: str, diagnostics: str | None = None, *, realm: str = DEFAULT_REALM, code: str = ""
) -> Unauthorized:
    """A 401 for a token that is present but unusable (RFC 6750 ``invalid_token``)."""
    header = www_authenticate(realm=realm, error="invalid_token", description=description)
    return Unauthorized(diagnostics or description, code=code, headers={"WWW-Authenticate": header})


def missing_token(*, realm: str = DEFAULT_REALM) -> Unauthorized:
    """A 401 for a request without credentials: a bare challenge, no error code (RFC 6750 3.1)."""
    return Unauthorized(
        "this request needs a bearer token (Authorization: Bearer <token>)",
        headers={"WWW-Authenticate": www_authenticate(realm=realm)},
    )


def insufficient_scope(diagnostics: str, *, realm: str = DEFAULT_REALM) -> Forbidden:
    """A 403 for a valid token whose scopes do not reach the resource (RFC 6750 3.1)."""
    header = www_authenticate(realm=realm, error="insufficient_scope", description=diagnostics)
    return Forbidden(diagnostics, headers={"WWW-Authenticate": header})


def bearer_token(authorization: str | None, *, realm: str = DEFAULT_REALM) -> str:
    """The token from an ``Authorization`` header value.

    No header, or another scheme (``Basic``), is "no credentials" (a bare
    challenge); ``Bearer`` followed by nothing or by several words is a broken
    token.
    """
    if not authorization or not authorization.strip():
        raise missing_token(realm=realm)
    scheme, _, rest = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise missing_token(realm=realm)
    token = rest.strip()
    if not token or " " in token:
        raise invalid_token(
            "malformed Authorization header",
            "the Authorization header must be 'Bearer <token>' with exactly one token",
            realm=realm,
        )
    return token


def _header_safe(value: str) -> str:
    return "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\' else "'" for c in value)


# ---------------------------------------------------------------------- key sources


class KeySourceError(Exception):
    """The issuer's key set could not be loaded (network, HTTP status, bad JSON)."""


class KeySource(Protocol):
    """Where a verifier gets the issuer's public keys."""

    async def key_set(self) -> KeySet:
        """The current key set, loading it on first use.

        :raises KeySourceError: nothing could ever be loaded.
        """
        ...

    async def refresh(self) -> bool:
        """Reload now if allowed; ``True`` when the key set may have changed."""
        ...


def import_jwks(data: Any) -> KeySet:
    """A verification key set from a JWKS document.

    Only RSA and EC keys meant for signatures are kept: a symmetric (``oct``)
    key in a published JWKS is a mistake we do not want to be able to use.
    Keys without a ``kid`` get their RFC 7638 thumbprint as one.
    """
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise KeySourceError("not a JWKS document (expected an object with a 'keys' array)")
    usable = [
        k
        for k in data["keys"]
        if isinstance(k, dict) and k.get("kty") in ("RSA", "EC") and k.get("use") in (None, "sig")
    ]
    if not usable:
        raise KeySourceError("the JWKS holds no RSA or EC signature key")
    try:
        return KeySet.import_key_set({"keys": usable})
    except (JoseError, ValueError, TypeError) as error:
        raise KeySourceError(f"the JWKS holds an invalid key: {error}") from error


class StaticJwks:
    """A fixed key set (the development key, tests). Never reloads."""

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        self._keys = import_jwks(dict(jwks))

    async def key_set(self) -> KeySet:
        return self._keys

    async def refresh(self) -> bool:
        return False

    def loaded_key_set(self) -> KeySet | None:
        return self._keys


class _CachingKeySource:
    """Caches a loaded key set; reloads on demand, rate-limited.

    :meth:`refresh` (an unknown ``kid``) reloads at most once per
    ``min_refresh_interval_s``, so an attacker sending tokens with random
    ``kid`` values causes at most one fetch per interval. The first load does
    not count against that limit (a reload for age does): keys rotated just
    after start are picked up at once. Failed loads are retried no more often
    than once per interval either.
    ``max_age_s`` makes a withdrawn key disappear even when no unknown ``kid``
    ever shows up. A failed reload keeps the keys we already have.
    """

    def __init__(
        self,
        *,
        min_refresh_interval_s: float = 30.0,
        max_age_s: float = 3600.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._min_interval = min_refresh_interval_s
        self._max_age = max_age_s
        self._now = monotonic
        self._keys: KeySet | None = None
        self._loaded_at = 0.0
        self._last_attempt: float | None = None
        self._last_refresh: float | None = None
        self._generation = 0
        self._lock = asyncio.Lock()

    @property
    def loads(self) -> int:
        """How many times the keys were (successfully) loaded."""
        return self._generation

    async def _load(self) -> KeySet:
        raise NotImplementedError

    def loaded_key_set(self) -> KeySet | None:
        """The key set as loaded, while it is younger than ``max_age_s`` (no I/O)."""
        if self._keys is None or self._since(self._loaded_at) >= self._max_age:
            return None
        return self._keys

    def _since(self, moment: float | None) -> float:
        return float("inf") if moment is None else self._now() - moment

    async def _reload(self) -> bool:
        self._last_attempt = self._now()
        try:
            keys = await self._load()
        except KeySourceError as error:
            if self._keys is None:
                raise
            logger.warning("keeping the cached signing keys: %s", error)
            return False
        self._keys, self._loaded_at = keys, self._now()
        self._generation += 1
        return True

    async def key_set(self) -> KeySet:
        if self._keys is None or self._since(self._loaded_at) >= self._max_age:
            async with self._lock:
                if self._keys is None:
                    if self._since(self._last_attempt) < self._min_interval:
                        raise KeySourceError("signing keys unavailable (the last load failed)")
                    await self._reload()
                elif (
                    self._since(self._loaded_at) >= self._max_age
                    and self._since(self._last_attempt) >= self._min_interval
                ):
                    self._last_refresh = self._now()  # as fresh as a refresh
                    await self._reload()
        assert self._keys is not None
        return self._keys

    async def refresh(self) -> bool:
        seen = self._generation
        async with self._lock:
            if self._generation != seen:  # another request reloaded while we waited
                return True
            if self._since(self._last_refresh) < self._min_interval:
                return False
            self._last_refresh = self._now()
            try:
                return await self._reload()
            except KeySourceError as error:
                logger.warning("could not load the signing keys: %s", error)
                return False


class JwksFile(_CachingKeySource):
    """A JWKS read from a file; re-read (rate-limited) when an unknown ``kid`` appears."""

    def __init__(self, path: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = path

    async def _load(self) -> KeySet:
        try:
            text = await asyncio.to_thread(self.path.read_text, encoding="utf-8")
            return import_jwks(json.loads(text))
        except (OSError, ValueError) as error:
            raise KeySourceError(f"cannot read JWKS file {self.path}: {error}") from error


class JwksUrl(_CachingKeySource):
    """A JWKS fetched over HTTP with the application's shared ``httpx.AsyncClient``.

    The client is borrowed, not owned: the application's lifespan closes it.
    """

    def __init__(
        self, url: str, client: httpx.AsyncClient, *, timeout_s: float = 5.0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.url = url
        self._client = client
        self._timeout = timeout_s

    async def _load(self) -> KeySet:
        try:
            response = await self._client.get(
                self.url, headers={"Accept": "application/json"}, timeout=self._timeout
            )
            response.raise_for_status()
            return import_jwks(response.json())
        except (httpx.HTTPError, ValueError) as error:
            raise KeySourceError(f"cannot fetch JWKS from {self.url}: {error}") from error


# ------------------------------------------------------------------------- verifier


#: How long a verified token is taken on trust before its signature is checked again.
VERIFIED_TTL_S: Final[float] = 60.0
#: Verified tokens kept at most (a few hundred bytes each).
VERIFIED_CACHE_SIZE: Final[int] = 10_000


class TokenVerifier:
    """Verifies bearer JWTs from one issuer for one audience.

    :param issuer: the exact ``iss`` value expected.
    :param audience: our identifier(s); the token's ``aud`` must contain one.
    :param keys: the issuer's public keys (:class:`JwksUrl`, :class:`JwksFile`,
        :class:`StaticJwks`).
    :param algorithms: a subset of ``RS256``, ``ES256``.
    :param leeway_s: clock skew tolerated on ``exp``, ``nbf`` and ``iat``.
    :param realm: the ``realm`` of the ``WWW-Authenticate`` challenge.
    :param clock: seconds since the epoch (injectable for tests).
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str | Iterable[str],
        keys: KeySource,
        algorithms: Collection[str] = ("ES256", "RS256"),
        leeway_s: int = 60,
        realm: str = DEFAULT_REALM,
        clock: Callable[[], float] = time.time,
    ) -> None:
        unsupported = set(algorithms) - set(SUPPORTED_ALGORITHMS)
        if unsupported or not algorithms:
            raise ValueError(
                f"algorithms must be a non-empty subset of {sorted(SUPPORTED_ALGORITHMS)},"
                f" not {sorted(algorithms)}"
            )
        if leeway_s < 0:
            raise ValueError("leeway_s must not be negative")
        self.issuer = issuer
        self.audiences = frozenset([audience] if isinstance(audience, str) else audience)
        if not self.audiences or not issuer:
            raise ValueError("issuer and audience must be given")
        self.algorithms = frozenset(algorithms)
        self.leeway_s = leeway_s
        self.realm = realm
        self.keys = keys
        self._clock = clock
        # strict_check_header=False: identity providers add their own header
        # fields (x5t, ...); ``crit`` is still enforced.
        self._registry = jws.JWSRegistry(
            algorithms=sorted(self.algorithms), strict_check_header=False
        )
        # token -> (principal, verified until): a client sends the same token with
        # every request for its lifetime; checking its signature each time was a
        # sixth of an authenticated read's CPU (issue 7)
        self._verified: dict[str, tuple[Principal, float, KeySet]] = {}

    async def jwks(self) -> dict[str, Any]:
        """The public keys currently trusted (for the startup check against the dev key)."""
        return dict((await self._key_set()).as_dict(private=False))

    async def verify(self, token: str) -> Principal:
        """The caller behind ``token``.

        :raises Unauthorized: the token is malformed, forged, expired, not yet
            valid, for another audience or issuer, or its claims are unusable.
        :raises Forbidden: the token is valid but grants no resource scope.
        """
        now = self._clock()
        cached = self._verified.get(token)
        if cached is not None:
            principal, until, keys = cached
            if now < until and keys is self._loaded_keys():
                return principal
            del self._verified[token]
        before = self._loaded_keys()
        principal = await self._verify(token)
        if before is not None and before is self._loaded_keys():
            self._remember(token, principal, now, before)
        return principal

    def _loaded_keys(self) -> KeySet | None:
        loaded = getattr(self.keys, "loaded_key_set", None)
        return loaded() if loaded is not None else None

    def _remember(self, token: str, principal: Principal, now: float, keys: KeySet) -> None:
        """Keep a verified token while it is valid (with the leeway), the key set it was
        checked against is the one loaded (a reload, for age or a new ``kid``, forgets
        it) and at most ``VERIFIED_TTL_S``."""
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified = {t: v for t, v in self._verified.items() if v[1] > now}
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                self._verified.clear()
        until = now + VERIFIED_TTL_S
        if principal.expires_at is not None:
            until = min(until, principal.expires_at.timestamp() + self.leeway_s)
        self._verified[token] = (principal, until, keys)

    async def _verify(self, token: str) -> Principal:
        obj = self._parse(token)
        header = obj.headers()
        alg = header["alg"]
        key = await self._find_key(header.get("kid"), alg)
        try:
            valid = jws.validate_compact(obj, key, registry=self._registry)
        except JoseError as error:
            raise self._fail("bad signature", f"signature check failed: {error}") from error
        if not valid:
            raise self._fail("bad signature", "the token signature does not verify")
        claims = self._claims(obj.payload)
        self._check_times(claims)
        self._check_issuer_audience(claims)
        try:
            return Principal.from_claims(claims)
        except NoUsableScope as error:
            raise insufficient_scope(str(error), realm=self.realm) from error
        except InvalidClaims as error:
            raise self._fail("invalid claims", str(error)) from error

    # ---------------------------------------------------------------- steps

    def _parse(self, token: str) -> jws.CompactSignature:
        if not isinstance(token, str) or not token:
            raise self._fail("malformed token", "the bearer token is empty")
        parts = token.count(".") + 1
        if parts == 5:
            raise self._fail("malformed token", "encrypted tokens (JWE) are not accepted")
        if parts != 3:
            raise self._fail(
                "malformed token", "the bearer token is not a JWT (header.payload.signature)"
            )
        try:
            obj = jws.extract_compact(token.encode("ascii"), registry=self._registry)
        except (JoseError, ValueError) as error:
            raise self._fail("malformed token", f"the token cannot be decoded: {error}") from error
        header = obj.headers()
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            allowed = ", ".join(sorted(self.algorithms))
            raise self._fail(
                "algorithm not allowed",
                f"token algorithm {alg!r} is not allowed (allowed: {allowed})",
            )
        if "b64" in header:
            raise self._fail("malformed token", "unencoded payloads (b64) are not accepted")
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in ACCEPTED_TYPES):
            raise self._fail("malformed token", f"token type {typ!r} is not an access token")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise self._fail("malformed token", "the token header 'kid' must be a string")
        try:
            self._registry.check_header(header)
        except JoseError as error:
            raise self._fail(
                "malformed token", f"the token header is not acceptable: {error}"
            ) from error
        return obj

    async def _key_set(self) -> KeySet:
        try:
            return await self.keys.key_set()
        except KeySourceError as error:
            logger.error("cannot verify tokens: %s", error)
            raise self._fail(
                "signing keys unavailable",
                "the token cannot be checked now: the issuer's signing keys are unavailable",
            ) from error

    async def _find_key(self, kid: str | None, alg: str) -> Key:
        key = _select_key(await self._key_set(), kid, alg)
        if key is None:
            # Possibly a rotation: reload (rate-limited), then look again. Look
            # again even when this call did not reload: a concurrent one may have.
            await self.keys.refresh()
            key = _select_key(await self._key_set(), kid, alg)
        if key is not None:
            return key
        if kid is None:
            raise self._fail(
                "unknown key", f"the token has no 'kid' and the issuer has no single {alg} key"
            )
        raise self._fail("unknown key", f"no {alg} signing key with kid {kid!r} is known")

    def _claims(self, payload: bytes) -> dict[str, Any]:
        try:
            claims = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as error:
            raise self._fail("malformed token", "the token payload is not JSON") from error
        if not isinstance(claims, dict):
            raise self._fail("malformed token", "the token payload is not a JSON object")
        return claims

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now = self._clock()
        leeway = self.leeway_s
        exp = self._numeric_date(claims, "exp", required=True)
        assert exp is not None
        if now >= exp + leeway:
            raise self._fail(
                "token expired",
                f"token expired at {_iso(exp)} (now {_iso(now)}, leeway {leeway} s)",
                code="expired",
            )
        nbf = self._numeric_date(claims, "nbf")
        if nbf is not None and now + leeway < nbf:
            raise self._fail(
                "token not yet valid",
                f"token not valid before {_iso(nbf)} (now {_iso(now)}, leeway {leeway} s)",
            )
        iat = self._numeric_date(claims, "iat")
        if iat is not None and iat > now + leeway:
            raise self._fail(
                "token issued in the future",
                f"token issued at {_iso(iat)}, after now ({_iso(now)}, leeway {leeway} s):"
                " check the clocks",
            )

    def _check_issuer_audience(self, claims: Mapping[str, Any]) -> None:
        iss = claims.get("iss")
        if iss != self.issuer:
            raise self._fail(
                "wrong issuer", f"token issuer {iss!r} is not the trusted issuer {self.issuer!r}"
            )
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else aud
        if not isinstance(auds, list) or not all(isinstance(a, str) for a in auds):
            raise self._fail("wrong audience", "the token has no valid 'aud' claim")
        if self.audiences.isdisjoint(auds):
            raise self._fail(
                "wrong audience",
                f"token audience {aud!r} does not include {sorted(self.audiences)[0]!r}",
            )

    def _numeric_date(
        self, claims: Mapping[str, Any], name: str, *, required: bool = False
    ) -> float | None:
        value = claims.get(name)
        if value is None:
            if required:
                raise self._fail("malformed token", f"the token has no {name!r} claim")
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise self._fail("malformed token", f"claim {name!r} must be a NumericDate (seconds)")
        return float(value)

    def _fail(self, description: str, diagnostics: str, *, code: str = "") -> Unauthorized:
        return invalid_token(description, diagnostics, realm=self.realm, code=code)


def _select_key(keys: KeySet, kid: str | None, alg: str) -> Key | None:
    """The verification key for ``kid`` that fits ``alg``.

    Without a ``kid`` a key is chosen only when exactly one fits, so a token
    cannot pick among keys by trial.
    """
    kty, crv = SUPPORTED_ALGORITHMS[alg]
    fitting = [
        k
        for k in keys
        if isinstance(k, RSAKey | ECKey)
        and k.key_type == kty
        and (crv is None or k.get("crv") == crv)
        and k.get("use") in (None, "sig")
        and k.alg in (None, alg)
    ]
    if kid is None:
        return fitting[0] if len(fitting) == 1 else None
    return next((k for k in fitting if k.kid == kid), None)


def _iso(timestamp: float) -> str:
    try:
        return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (ValueError, OverflowError, OSError):  # beyond year 9999 (or before year 1)
        return f"{timestamp:.0f} s after 1970"
