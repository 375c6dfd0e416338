"""The subscriber's signing secret: sealed at rest, used to sign every notification.

A subscriber gives its secret in the extension :data:`EXT_SECRET` on
``Subscription.channel`` (``valueString``, 16-256 characters). The server never
stores or serves it in clear: on write the value is replaced by
``sealed:v1:<Fernet token>`` (AES-128-CBC + HMAC-SHA256, key derived from
``SAMPLAN_WEBHOOK_SECRET_KEY``; a fixed development key when unset, which
production refuses). Sending the sealed value back unchanged (read, modify,
PUT) keeps the secret; sending a new clear value replaces it.

Each notification POST carries ``X-Hub-Signature-256: sha256=<hex>``, the
HMAC-SHA256 of the exact request body under the secret (the WebSub
convention), so a receiver checks it with::

    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    hmac.compare_digest(expected, request.headers["X-Hub-Signature-256"])

The values of ``channel.header`` (a receiver's bearer token, an API key) are
sealed the same way (:meth:`SecretBox.seal_header`), under a key of their own
(so a sealed secret is no sealed header and the other way round) and bound
to the header's name and the endpoint: a sealed value copied into another
header, or kept while the endpoint changes, does not open, so it can never
be sent anywhere its writer did not send it in clear.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import orjson
from cryptography.fernet import Fernet, InvalidToken

EXT_SECRET = "https://samplan.se/fhir/StructureDefinition/subscription-signing-secret"
SIGNATURE_HEADER = "X-Hub-Signature-256"
SEALED_PREFIX = "sealed:v1:"
MIN_SECRET_LENGTH = 16
MAX_SECRET_LENGTH = 256
_DEVELOPMENT_KEY = "samplan-development-only-subscription-secret-key"


def signature(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value of ``body``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """What a receiver does: compare in constant time."""
    return header is not None and hmac.compare_digest(signature(secret, body), header)


def _fernet(purpose: bytes, key: str | None) -> Fernet:
    material = hashlib.sha256(purpose + b"\0" + (key or _DEVELOPMENT_KEY).encode()).digest()
    return Fernet(base64.urlsafe_b64encode(material))


class SecretBox:
    """Seals and opens subscriber secrets and channel header values with the service's key."""

    def __init__(self, key: str | None) -> None:
        self._fernet = _fernet(b"samplan/subscription-secrets", key)
        self._headers = _fernet(b"samplan/subscription-headers", key)

    @staticmethod
    def is_sealed(value: str) -> bool:
        return value.startswith(SEALED_PREFIX)

    def seal(self, secret: str) -> str:
        return SEALED_PREFIX + self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        """The clear secret; ValueError when it was not sealed with this key."""
        if not self.is_sealed(sealed):
            raise ValueError("not a sealed secret")
        try:
            return self._fernet.decrypt(sealed[len(SEALED_PREFIX):].encode()).decode()
        except InvalidToken:
            raise ValueError("the sealed secret does not open with this server's key") from None

    def seal_header(self, name: str, value: str, endpoint: str) -> str:
        """``value`` sealed for the header ``name`` (any case) sent to ``endpoint``."""
        bound = orjson.dumps([name.lower(), endpoint, value])
        return SEALED_PREFIX + self._headers.encrypt(bound).decode()

    def open_header(self, name: str, sealed: str, endpoint: str) -> str:
        """The clear value; ValueError when it was sealed by another key, for another header
        or another endpoint."""
        if not self.is_sealed(sealed):
            raise ValueError("not a sealed header value")
        try:
            bound = orjson.loads(self._headers.decrypt(sealed[len(SEALED_PREFIX):].encode()))
        except (InvalidToken, orjson.JSONDecodeError):
            raise ValueError("the sealed value does not open with this server's key") from None
        if (not isinstance(bound, list) or len(bound) != 3 or bound[:2] != [name.lower(), endpoint]
                or not isinstance(bound[2], str)):
            raise ValueError("the sealed value was sealed for another header or endpoint")
        return bound[2]

    def open_headers(self, headers: tuple[tuple[str, str], ...], endpoint: str
                     ) -> tuple[tuple[str, str], ...]:
        """A channel's headers in clear, to send (values stored before sealing pass as they are).

        :raises ValueError: a value does not open (another key, header or endpoint).
        """
        return tuple((name, self.open_header(name, value, endpoint)
                      if self.is_sealed(value) else value) for name, value in headers)
