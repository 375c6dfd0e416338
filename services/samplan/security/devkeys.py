"""The local development signing key, and tokens minted with it.

Development needs real tokens (the verifier is the same code as in production),
but no identity provider. So the first run generates an ES256 key into
``<directory>/dev-signing-key.json`` (mode 0600, never committed), later runs
reuse it, and ``samplan token`` mints tokens with it.

Its ``kid`` always starts with :data:`DEV_KID_PREFIX`, but a kid is only a
label: anyone can publish the same public key under another one. So
:func:`is_dev_key` recognises the key by its material too: the RFC 7638
thumbprint (joserfc's ``Key.thumbprint``: a hash of the public parameters
only, kid and alg excluded) of the key in ``<data_dir>/dev-signing-key.json``,
read by :func:`dev_key_thumbprints` without ever creating one. Production
refuses a JWKS holding either.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, KeySet, import_key

DEV_KID_PREFIX: Final[str] = "samplan-dev-"
KEY_FILE_NAME: Final[str] = "dev-signing-key.json"
DEV_CLIENT_ID: Final[str] = "samplan-dev"
ALGORITHM: Final[str] = "ES256"


@dataclass(frozen=True, slots=True)
class DevKey:
    """A development ES256 (P-256) private key and where it lives."""

    key: ECKey
    path: Path

    @property
    def kid(self) -> str:
        kid = self.key.kid
        assert kid is not None
        return kid

    def jwks(self) -> dict[str, Any]:
        """The public JWKS to configure a verifier with (no private part)."""
        public = self.key.as_dict(private=False)
        return {"keys": [{**public, "use": "sig", "alg": ALGORITHM}]}

    def mint(
        self,
        *,
        scopes: str,
        issuer: str,
        audience: str,
        patient: str | None = None,
        fhir_user: str | None = None,
        org: str | None = None,
        user: str | None = None,
        care_provider: str | None = None,
        care_unit: str | None = None,
        subject: str | None = None,
        lifetime_s: int = 3600,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """A signed access token with the claims :class:`Principal` reads.

        ``org`` becomes ``organizationHsaId`` (a system's organisation), ``user``
        ``employeeHsaId``, ``care_provider`` ``healthCareProviderHsaId`` and
        ``care_unit`` ``commissionHsaId``. ``sub`` defaults to the most specific
        identity given. ``extra`` is merged last, so it can override anything
        (tests use it to build broken tokens).
        """
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": issuer,
            "aud": audience,
            "sub": subject or user or fhir_user or patient or org or DEV_CLIENT_ID,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime_s,
            "jti": secrets.token_urlsafe(16),
            "client_id": DEV_CLIENT_ID,
            "scope": scopes,
        }
        optional = {
            "patient": patient,
            "fhirUser": fhir_user,
            "organizationHsaId": org,
            "employeeHsaId": user,
            "healthCareProviderHsaId": care_provider,
            "commissionHsaId": care_unit,
        }
        claims.update({name: value for name, value in optional.items() if value is not None})
        claims.update(extra or {})
        header = {"alg": ALGORITHM, "kid": self.kid, "typ": "at+jwt"}
        return jwt.encode(header, claims, self.key, algorithms=[ALGORITHM])


def load_or_create_dev_key(directory: Path) -> DevKey:
    """The development key in ``directory``, generated there on first use.

    Creation is atomic (written to a private temporary file, then hard-linked
    into place), so two processes starting together end up with the same key.
    A key file readable by others is tightened to 0600.

    :raises ValueError: the file exists but does not hold a development key.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / KEY_FILE_NAME
    if not path.exists():
        _create(path)
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    return DevKey(key=_read(path), path=path)


def dev_key_thumbprints(directory: Path) -> frozenset[str]:
    """The thumbprint of the development key in ``directory``; empty when there is none.

    Never creates a key (production calls this).

    :raises ValueError: a key file is there but cannot be read as a key.
    """
    path = directory / KEY_FILE_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return frozenset()
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} cannot be read: {error}") from error
    found = thumbprint(data)
    if found is None:
        raise ValueError(f"{path} does not hold a key")
    return frozenset({found})


def thumbprint(key: Mapping[str, Any] | Key) -> str | None:
    """The RFC 7638 thumbprint of a key or JWK (None when it is no usable key)."""
    try:
        imported = key if isinstance(key, Key) else import_key(dict(key))
        return imported.thumbprint()
    except (JoseError, ValueError, TypeError, KeyError):
        return None


def is_dev_key(jwks_or_kid: str | Mapping[str, Any] | KeySet | Key,
               known: Collection[str] = ()) -> bool:
    """Whether a kid, a JWK, a JWKS, a key or a key set contains a development key:
    one with a development kid, or (whatever its kid) one of the ``known`` thumbprints."""
    if isinstance(jwks_or_kid, str):
        return jwks_or_kid.startswith(DEV_KID_PREFIX)
    if isinstance(jwks_or_kid, KeySet):
        return any(is_dev_key(k, known) for k in jwks_or_kid)
    if isinstance(jwks_or_kid, Key):
        return is_dev_key(jwks_or_kid.kid or "") or (
            bool(known) and thumbprint(jwks_or_kid) in known)
    keys = jwks_or_kid.get("keys")
    if isinstance(keys, list):
        return any(isinstance(k, Mapping) and is_dev_key(k, known) for k in keys)
    kid = jwks_or_kid.get("kid")
    if isinstance(kid, str) and is_dev_key(kid):
        return True
    return bool(known) and thumbprint(jwks_or_kid) in known


def _create(path: Path) -> None:
    key = ECKey.generate_key("P-256", private=True)
    kid = DEV_KID_PREFIX + key.thumbprint()[:16]
    data = {**key.as_dict(private=True), "kid": kid, "use": "sig", "alg": ALGORITHM}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race; use its key
    finally:
        tmp.unlink(missing_ok=True)


def _read(path: Path) -> ECKey:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        key = ECKey.import_key(data)
    except (OSError, ValueError, TypeError, JoseError) as error:
        raise ValueError(f"{path} is not a readable development key: {error}") from error
    if not key.is_private or key.curve_name != "P-256" or not is_dev_key(key.kid or ""):
        raise ValueError(f"{path} is not a samplan development key (P-256, kid {DEV_KID_PREFIX}*)")
    return key
