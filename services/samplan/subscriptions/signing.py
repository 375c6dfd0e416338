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
"""

from __future__ import annotations

import base64
import hashlib
import hmac

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


class SecretBox:
    """Seals and opens subscriber secrets with the service's key."""

    def __init__(self, key: str | None) -> None:
        material = hashlib.sha256(b"samplan/subscription-secrets\0" +
                                  (key or _DEVELOPMENT_KEY).encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(material))

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
