"""Where notifications may be sent: ``http``/``https`` URLs, public addresses only by default.

Checked twice. On write (:func:`check_endpoint`): the URL's shape, and a host
that is an IP literal or a ``localhost`` name is refused when private. On
delivery (:func:`resolve_refusal`): the host is resolved and every address
must be public, so a name that points (or later re-points) inside the network
is refused too. Loopback and private targets are allowed only with
``SAMPLAN_SUBSCRIPTIONS_ALLOW_PRIVATE_ENDPOINTS=true`` (tests, ``make run``),
which production refuses.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048


def _is_private(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def check_endpoint(url: object, *, allow_private: bool) -> str | None:
    """Why ``url`` cannot be a rest-hook endpoint, or None when it can."""
    if not isinstance(url, str) or not url:
        return "A rest-hook channel needs an endpoint URL."
    if len(url) > MAX_URL_LENGTH or any(c.isspace() for c in url):
        return "The endpoint is not a valid URL."
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "The endpoint is not a valid URL."
    if parts.scheme not in ("http", "https"):
        return f"The endpoint must be an http or https URL, not {parts.scheme or 'relative'!r}."
    host = parts.hostname
    if not host:
        return "The endpoint URL has no host."
    if parts.username is not None or parts.password is not None:
        return "The endpoint URL may not carry credentials; send them in channel.header."
    if port == 0:
        return "The endpoint URL has no usable port."
    if allow_private:
        return None
    address = _literal(host)
    if address is not None and _is_private(address):
        return f"The endpoint {host} is a private or loopback address, which is not allowed."
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return f"The endpoint {host} is a local name, which is not allowed."
    return None


async def resolve_refusal(url: str, *, allow_private: bool) -> str | None:
    """At delivery: why the endpoint's host may not be contacted, or None."""
    if allow_private:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    literal = _literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            return f"cannot resolve {host}: {exc}"
        addresses = [a for a in (_literal(str(info[4][0])) for info in infos) if a is not None]
    private = [str(a) for a in addresses if _is_private(a)]
    if private:
        return f"{host} resolves to a private or loopback address ({private[0]})"
    return None
