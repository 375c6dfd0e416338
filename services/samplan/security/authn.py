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

No web framework here; ``api/auth.py`` reads the header and calls
:meth:`Authenticator.authenticate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from samplan.security.devkeys import DevKey, is_dev_key, load_or_create_dev_key
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
    verifier = TokenVerifier(
        issuer=settings.token_issuer, audience=settings.token_audience, keys=keys
    )
    if production:
        try:
            trusted = await verifier.jwks()
        except Exception as error:  # a 401 from the verifier, or a key source failure
            raise UnsafeConfiguration(f"cannot load the token issuer's keys: {error}") from error
        if is_dev_key(trusted):
            raise UnsafeConfiguration("production must not trust the development signing key")
    return Authenticator(enabled=settings.auth_enabled, verifier=verifier, dev_key=dev_key)


__all__ = ["Authenticator", "KeySourceError", "UnsafeConfiguration", "build_authenticator"]
