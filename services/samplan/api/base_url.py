"""The public base URL of a request: what ``self``, ``next``, ``fullUrl`` and ``Location`` use.

Links must follow the request (issue 14, item 4): a client that called
``http://localhost:8080/fhir`` must get links it can follow and compare with its
own base (fhirpy refuses ``127.0.0.1`` links after calling ``localhost``), and a
container listening on ``0.0.0.0`` must never hand out ``http://0.0.0.0:8080``.

The answer, first that applies:

1. ``SAMPLAN_PUBLIC_BASE_URL`` when set: the operator knows best.
2. The request's own scheme and ``Host`` header (HTTP/1.1 requires it; the
   socket's local address when it is missing or malformed), plus the ASGI
   ``root_path`` and ``/fhir``.
3. Forwarding headers change the scheme and host only when the socket peer is
   a trusted proxy (``SAMPLAN_TRUSTED_PROXIES``, addresses or CIDR networks,
   none by default): anyone else could make us hand out links to their own
   host. RFC 7239 ``Forwarded`` wins over ``X-Forwarded-Proto`` and
   ``X-Forwarded-Host``. With a chain of proxies, the hops are walked from the
   nearest: while the address a trusted proxy received the request from is
   itself trusted, its view is taken instead, so the value used is the one the
   outermost trusted proxy recorded; a value a client put in front of it is
   never believed.

Values that are not a plain ``http``/``https`` scheme or a ``host[:port]``
(no path, user info or spaces) are ignored, never copied into links.

Pure: no FastAPI, no I/O; ``BaseUrlResolver`` parses the settings once.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from starlette.types import Scope

from samplan.settings import Settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

FHIR_PATH: Final[str] = "/fhir"
DEFAULT_PORTS: Final[dict[str, int]] = {"http": 80, "https": 443}
# a DNS name or IPv4 address, or a bracketed IPv6 literal, with an optional port
_HOST: Final[re.Pattern[str]] = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
    r"[A-Za-z0-9])?)*\.?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
)
# one forwarded-pair of RFC 7239: token "=" ( token / quoted-string )
_PAIR: Final[re.Pattern[str]] = re.compile(
    r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)\s*'
)


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """``["10.0.0.0/8", "127.0.0.1"]`` as networks (a bare address is a /32 or /128)."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)


def parse_address(value: str | None) -> Address | None:
    """An IP address from a socket peer, a ``Forwarded: for=`` or an ``X-Forwarded-For``
    value (with or without brackets and port); None for names, ``unknown`` and ``_hidden``."""
    if not value:
        return None
    text = value.strip().strip('"')
    if text.startswith("["):  # [2001:db8::1] or [2001:db8::1]:4711
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # 192.0.2.1:4711
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_forwarded(value: str) -> list[dict[str, str]]:
    """RFC 7239 ``Forwarded``: one dict per element (lower-cased parameter names,
    unquoted values), in order from the client towards us. Malformed elements are
    returned empty, so they still count as a hop."""
    elements: list[dict[str, str]] = []
    position = 0
    current: dict[str, str] = {}
    while position < len(value):
        match = _PAIR.match(value, position)
        if match is None:  # skip to the next separator
            stop = min((i for i in (value.find(";", position), value.find(",", position))
                        if i >= 0), default=len(value))
            if stop < len(value) and value[stop] == ",":
                elements.append({})
                current = {}
            position = stop + 1
            continue
        name, raw = match.group(1).lower(), match.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        current.setdefault(name, raw)
        position = match.end()
        if position < len(value) and value[position] == ",":
            elements.append(current)
            current = {}
        position += 1
    elements.append(current)
    return elements


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in value.split(",")] if value else []


def _scheme(value: str | None) -> str | None:
    if value is None:
        return None
    scheme = value.strip().lower()
    return scheme if scheme in DEFAULT_PORTS else None


def _host(value: str | None) -> str | None:
    if value is None:
        return None
    host = value.strip()
    return host if host and _HOST.fullmatch(host) and _valid_port(host) else None


def _valid_port(host: str) -> bool:
    port = host.rpartition("]")[2] if host.startswith("[") else host
    if ":" not in port:
        return True
    return 0 < int(port.rpartition(":")[2]) < 65536


def _headers(scope: Scope) -> dict[str, str]:
    """Header values by lower-cased name; repeated headers joined with commas (RFC 9110)."""
    found: dict[str, list[str]] = {}
    for key, value in scope.get("headers", ()):
        found.setdefault(bytes(key).decode("latin-1").lower(), []).append(
            bytes(value).decode("latin-1"))
    return {key: ", ".join(values) for key, values in found.items()}


@dataclass(frozen=True)
class BaseUrlResolver:
    """Computes the public FHIR base of each request for one set of settings."""

    public_base_url: str | None
    trusted: tuple[Network, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> BaseUrlResolver:
        configured = settings.public_base_url.rstrip("/") if settings.public_base_url else None
        return cls(configured, parse_networks(settings.trusted_proxies))

    def is_trusted(self, address: Address | None) -> bool:
        return address is not None and any(address in network for network in self.trusted)

    def __call__(self, scope: Scope) -> str:
        """The FHIR base URL (no trailing slash) to put in this request's links."""
        if self.public_base_url:
            return self.public_base_url
        headers = _headers(scope)
        scheme = _scheme(scope.get("scheme")) or "http"
        host = _host(headers.get("host")) or _server_host(scope, scheme)
        client = scope.get("client")
        if self.trusted and self.is_trusted(parse_address(client[0] if client else None)):
            scheme, host = self._forwarded(headers, scheme, host)
        root = str(scope.get("root_path") or "").rstrip("/")
        return f"{scheme}://{host}{root}{FHIR_PATH}"

    def _forwarded(self, headers: dict[str, str], scheme: str, host: str) -> tuple[str, str]:
        if "forwarded" in headers:
            elements = parse_forwarded(headers["forwarded"])
            chosen = elements[self._outermost_trusted(
                [parse_address(e.get("for")) for e in elements])]
            return (_scheme(chosen.get("proto")) or scheme, _host(chosen.get("host")) or host)
        hops = _split(headers.get("x-forwarded-for"))
        # how many proxies, counting from ours, recorded values: ours, then each trusted
        # one it names as its client
        depth = len(hops) - self._outermost_trusted([parse_address(h) for h in hops])
        return (_scheme(_pick(_split(headers.get("x-forwarded-proto")), depth)) or scheme,
                _host(_pick(_split(headers.get("x-forwarded-host")), depth)) or host)

    def _outermost_trusted(self, senders: Sequence[Address | None]) -> int:
        """Index of the element recorded by the outermost trusted proxy.

        ``senders[i]`` is the address the proxy writing element ``i`` received
        the request from. The last element was written by our peer (trusted);
        while its sender is trusted too, that sender's own element is believed.
        """
        index = len(senders) - 1
        while index > 0 and self.is_trusted(senders[index]):
            index -= 1
        return max(index, 0)


def _pick(values: list[str], depth: int) -> str | None:
    """The value the outermost trusted proxy recorded, with each proxy appending its own
    (one value: a single proxy, or proxies that overwrite)."""
    if not values:
        return None
    return values[max(len(values) - max(depth, 1), 0)]


def _server_host(scope: Scope, scheme: str) -> str:
    """The socket's local address, when the request named no usable host."""
    server = scope.get("server")
    if not server or server[0] is None:
        return "localhost"
    name, port = str(server[0]), server[1]
    if ":" in name:
        name = f"[{name}]"
    if port is None or port == DEFAULT_PORTS.get(scheme):
        return name
    return f"{name}:{port}"


def public_base_url(scope: Scope, settings: Settings) -> str:
    """The FHIR base for one request (parses the settings each call: prefer a resolver)."""
    return BaseUrlResolver.from_settings(settings)(scope)
