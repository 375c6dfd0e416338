"""Which tokens the service trusts, decided once at start-up from the settings.

=====================================  =============================================
settings                               verifier
=====================================  =============================================
``jwks_file`` set                      the issuer's keys from that file
``jwks_url`` set                       the issuer's keys fetched over HTTP (cached,
                                       refetched on an unknown ``kid``)
neither, development or test           the local development key
                                       (``load_or_create_dev_key(data_dir)``)
neither, production                    refuses to start
a development key in the JWKS,         refuses to start
production
=====================================  =============================================

"A development key" is one with a development kid, or the key material of
``<data_dir>/dev-signing-key.json`` under any kid (compared by RFC 7638
thumbprint, devkeys.py). In production the key source is also wrapped
(:class:`_WithoutDevKeys`) so that a JWKS reloaded later (a URL's keys are
refetched on an unknown kid) cannot bring such a key in either: it is
dropped, logged, and tokens it signed are unknown-key 401s.

:func:`refuse_unsafe_configuration` runs the same start-up check on its own,
for the commands that open the database without building an authenticator
(``samplan migrate``, ``samplan worker``): an unsafe production
configuration is refused before any database (SQLite file) is created.

No web framework here; ``api/auth.py`` reads the header and calls
:meth:`Authenticator.authenticate`.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import httpx
from joserfc.jwk import KeySet

from samplan.security.devkeys import (
    DevKey,
    dev_key_thumbprints,
    is_dev_key,
    load_or_create_dev_key,
)
from samplan.security.principal import Principal
from samplan.security.tokens import (
    JwksFile,
    JwksUrl,
    KeySource,
    KeySourceError,
    StaticJwks,
    TokenVerifier,
    bearer_token,
)
from samplan.settings import Settings

logger = logging.getLogger(__name__)


class UnsafeConfiguration(RuntimeError):
    """The settings would make production trust tokens anyone could mint."""


@dataclass(frozen=True, slots=True)
class Authenticator:
    """Turns an ``Authorization`` header into a :class:`Principal` (or a 401/403)."""

    enabled: bool
    verifier: TokenVerifier | None
    dev_key: DevKey | None = None

    async def authenticate(self, authorization: str | None) -> Principal:
        if not self.enabled or self.verifier is None:
            return Principal.anonymous_dev()
        token = bearer_token(authorization, realm=self.verifier.realm)
        return await self.verifier.verify(token)

    def dev_jwks(self) -> dict[str, Any] | None:
        """The development key's public JWKS (published only when it is the trusted key)."""
        return self.dev_key.jwks() if self.dev_key is not None else None


async def build_authenticator(settings: Settings, http: httpx.AsyncClient) -> Authenticator:
    """The authenticator for these settings.

    :raises UnsafeConfiguration: production without a JWKS, or with the
        development key in it.
    """
    production = settings.environment == "production"
    keys: KeySource
    dev_key: DevKey | None = None
    if settings.jwks_file is not None:
        keys = JwksFile(settings.jwks_file)
    elif settings.jwks_url:
        keys = JwksUrl(settings.jwks_url, http)
    elif production:
        raise UnsafeConfiguration(
            "production needs the token issuer's keys: set SAMPLAN_JWKS_URL or SAMPLAN_JWKS_FILE"
        )
    else:
        if not settings.auth_enabled:
            return Authenticator(enabled=False, verifier=None)
        dev_key = load_or_create_dev_key(settings.data_dir)
        keys = StaticJwks(dev_key.jwks())
    if production:
        keys = await _production_keys(settings, keys)
    verifier = TokenVerifier(
        issuer=settings.token_issuer, audience=settings.token_audience, keys=keys
    )
    return Authenticator(enabled=settings.auth_enabled, verifier=verifier, dev_key=dev_key)


async def _production_keys(settings: Settings, keys: KeySource) -> KeySource:
    """The issuer's keys, refused when they hold a development key (by kid or material)."""
    try:
        known = dev_key_thumbprints(settings.data_dir)
    except ValueError as error:
        raise UnsafeConfiguration(
            f"cannot tell whether the production keys hold the development key: {error}; "
            "remove the file from SAMPLAN_DATA_DIR") from error
    try:
        trusted = await keys.key_set()
    except KeySourceError as error:
        raise UnsafeConfiguration(f"cannot load the token issuer's keys: {error}") from error
    if is_dev_key(trusted, known):
        raise UnsafeConfiguration(
            "production must not trust the development signing key (found in the JWKS by its "
            "kid or its key material)")
    return _WithoutDevKeys(keys, known)


class _WithoutDevKeys:
    """A key source without development keys, whatever a later reload brings."""

    def __init__(self, inner: KeySource, known: Collection[str]) -> None:
        self._inner = inner
        self._known = frozenset(known)
        self._seen: KeySet | None = None
        self._clean: KeySet | None = None

    def _filtered(self, keys: KeySet) -> KeySet:
        if keys is not self._seen:  # once per load: the verifier caches by identity
            kept = [k for k in keys if not is_dev_key(k, self._known)]
            if len(kept) != len(keys.keys):
                logger.error("the token issuer's keys now hold the development key; "
                             "it is not trusted")
            self._seen, self._clean = keys, KeySet(kept)
        assert self._clean is not None
        return self._clean

    async def key_set(self) -> KeySet:
        return self._filtered(await self._inner.key_set())

    async def refresh(self) -> bool:
        return await self._inner.refresh()

    def loaded_key_set(self) -> KeySet | None:
        loaded = getattr(self._inner, "loaded_key_set", None)
        keys = loaded() if loaded is not None else None
        return self._filtered(keys) if keys is not None else None


async def refuse_unsafe_configuration(settings: Settings) -> None:
    """Raise :class:`UnsafeConfiguration` where :func:`build_authenticator` would.

    Touches no database; outside production it does nothing (it must not
    create the development key either).
    """
    if settings.environment != "production":
        return
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0)) as http:
        await build_authenticator(settings, http)


__all__ = ["Authenticator", "KeySourceError", "UnsafeConfiguration", "build_authenticator",
           "refuse_unsafe_configuration"]
