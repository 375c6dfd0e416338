"""Where notifications may be sent: ``http``/``https`` URLs, public addresses only by default.

A host is judged by the address it stands for, not by how it is spelled.
:func:`parse_host` turns every spelling a resolver or an HTTP client would
accept into one form: IPv4 the way ``inet_aton`` and the WHATWG URL standard
read it (``127.1``, ``0x7f000001``, ``2130706433``, ``0177.0.0.1`` and ``0``
are all IPv4 addresses; a host whose last label is a number is an address or
nothing), IPv6 with its zone refused, names lowercased, without the trailing
dot and in their ASCII (IDNA/UTS 46, the ``idna`` package httpx itself uses)
form. :func:`address_refusal` then refuses what is not globally routable,
looking inside IPv6 addresses that carry an IPv4 address (IPv4-mapped
``::ffff:0:0/96``, SIIT ``::ffff:0:0:0/96``, IPv4-compatible ``::/96``, NAT64
``64:ff9b::/96``, 6to4 ``2002::/16``, Teredo): such an address is as public
as the IPv4 address in it. Other IPv6 addresses must be global unicast
(``2000::/3``). The standard library's ``ipaddress`` does the classification;
its ``is_global`` alone is not enough (Python 3.11 calls ``::ffff:0:7f00:1``
and ``64:ff9b::7f00:1`` global).

Checked three times:

* on write, without the network (:func:`check_endpoint`, inside the write
  check): the URL's shape, IP literals in every spelling, local names;
* on write, resolving the name (:meth:`EndpointGuard.refusal`, in the
  subscription's commit hook, which may await): every address must be public;
* at delivery (:meth:`EndpointGuard.target`): resolved again, every address
  checked, and the request is sent to the address checked (the URL's host
  replaced by it, ``Host`` and, for https, the TLS server name and the
  certificate check kept on the name), so a name that re-points between the
  check and the connection (DNS rebinding) gains nothing.

Loopback and private targets are allowed only with
``SAMPLAN_SUBSCRIPTIONS_ALLOW_PRIVATE_ENDPOINTS=true`` (tests, ``make run``),
which production refuses; delivery still connects to the address it resolved.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import idna

MAX_URL_LENGTH = 2048
#: Seconds a write may wait for the endpoint's name to resolve.
WRITE_RESOLVE_TIMEOUT = 3.0

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
#: ``(host, port) -> addresses``: the system resolver, or a test's own.
Resolver = Callable[[str, int], Awaitable[Sequence[Address]]]

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa", ".localdomain")
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# The first 64 bits zero: ::a.b.c.d (compatible), ::ffff:a.b.c.d (mapped) and
# ::ffff:0:a.b.c.d (SIIT translated) all carry an IPv4 address in the last 32 bits.
_ZERO_64 = ipaddress.IPv6Network("::/64")


class HostError(ValueError):
    """The host is not something a notification can be sent to."""


def _ipv4_number(part: str) -> int | None:
    """One part of an inet_aton-style IPv4 address: decimal, 0x hex or 0-prefixed octal."""
    if part[:2] in ("0x", "0X"):
        digits, base = part[2:], 16
        if not digits:
            return 0
    elif len(part) > 1 and part.startswith("0"):
        digits, base = part[1:], 8
    else:
        digits, base = part, 10
    try:
        return int(digits, base) if digits.isalnum() and digits.isascii() else None
    except ValueError:
        return None


def _ipv4(labels: list[str]) -> ipaddress.IPv4Address:
    """``a``, ``a.b``, ``a.b.c`` or ``a.b.c.d`` as inet_aton reads them (the last part fills
    the remaining bytes)."""
    numbers = [_ipv4_number(label) for label in labels]
    if len(labels) > 4 or any(n is None for n in numbers):
        raise HostError("is neither a name nor a valid IPv4 address")
    *leading, last = [n for n in numbers if n is not None]
    if any(n > 255 for n in leading) or last >= 256 ** (5 - len(labels)):
        raise HostError("is neither a name nor a valid IPv4 address")
    value = last
    for index, n in enumerate(leading):
        value += n << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def parse_host(host: str) -> Address | str:
    """The address a URL's host stands for, or its normalised name.

    :raises HostError: not a usable host (a zone id, an empty label, a number
        that is no IPv4 address, a name that is not valid IDNA).
    """
    text = host.strip("[]")
    if ":" in text:
        if "%" in text:
            raise HostError("carries an IPv6 zone id")
        try:
            return ipaddress.IPv6Address(text)
        except ValueError:
            raise HostError("is not a valid IPv6 address") from None
    if not text.isascii():
        try:
            text = idna.encode(text, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise HostError(f"is not a valid international name ({exc})") from None
    name = text.lower()
    name = name[:-1] if name.endswith(".") else name
    labels = name.split(".")
    if not name or len(name) > 253 or "" in labels:
        raise HostError("is not a valid host name")
    if _ipv4_number(labels[-1]) is not None:  # WHATWG: ends in a number -> IPv4 or failure
        return _ipv4(labels)
    if not all(_LABEL.match(label) for label in labels):
        raise HostError("is not a valid host name")
    return name


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address in _ZERO_64 or address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def address_refusal(address: Address) -> str | None:
    """Why ``address`` is not a public unicast address (None when it is)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return f"{address} is a scoped (link-local) address"
        inner = _embedded_ipv4(address)
        if inner is not None:
            why = address_refusal(inner)
            return f"{address} carries {inner}: {why}" if why else None
        if address not in _GLOBAL_UNICAST or not address.is_global:
            return f"{address} is not a public address"
        return None
    if not address.is_global or address.is_multicast:
        return f"{address} is a private, loopback or reserved address"
    return None


def _is_local_name(name: str) -> bool:
    return name == "localhost" or "." not in name or name.endswith(_LOCAL_SUFFIXES)


def check_endpoint(url: object, *, allow_private: bool) -> str | None:
    """Why ``url`` cannot be a rest-hook endpoint, or None when it can (no network used)."""
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
    try:
        parsed = parse_host(host)
    except HostError as exc:
        return f"The endpoint host {host!r} {exc}."
    if allow_private:
        return None
    if isinstance(parsed, str):
        if _is_local_name(parsed):
            return f"The endpoint {host} is a local name, which is not allowed."
        return None
    why = address_refusal(parsed)
    return f"The endpoint {host} is not allowed: {why}." if why else None


async def system_resolver(host: str, port: int) -> list[Address]:
    """Every address the system resolver gives for ``host`` (TCP), in its order."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    found: list[Address] = []
    for info in infos:  # (a link-local scope is dropped: such an address is refused anyway)
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found


@dataclass(frozen=True, slots=True)
class Target:
    """Where one notification goes: the checked address, and the names the request keeps."""

    url: str  # the endpoint with its host replaced by the address
    address: Address
    host_header: str  # the endpoint's own host[:port]
    server_name: str | None  # https: the name for SNI and the certificate check

    def request_options(self) -> tuple[dict[str, str], dict[str, str]]:
        """``(headers, extensions)`` that make httpx talk to ``address`` as if to the name."""
        extensions = {"sni_hostname": self.server_name} if self.server_name else {}
        return {"Host": self.host_header}, extensions


@dataclass(slots=True)
class EndpointGuard:
    """The endpoint policy of one process: private targets allowed or not, and the resolver."""

    allow_private: bool
    resolver: Resolver = system_resolver

    def check(self, url: object) -> str | None:
        return check_endpoint(url, allow_private=self.allow_private)

    async def _resolve(self, url: str) -> tuple[httpx.URL, str, list[Address]]:
        shown = check_endpoint(url, allow_private=True)  # shape only
        if shown:
            raise HostError(shown)
        parsed_url = httpx.URL(url)
        host = parse_host(urlsplit(url).hostname or "")
        if isinstance(host, str):
            port = parsed_url.port or (443 if parsed_url.scheme == "https" else 80)
            try:
                addresses = list(await self.resolver(host, port))
            except (OSError, UnicodeError) as exc:
                raise HostError(f"cannot resolve {host}: {exc}") from None
            if not addresses:
                raise HostError(f"{host} resolves to no address")
            return parsed_url, host, addresses
        return parsed_url, str(host), [host]

    def _refusal(self, host: str, addresses: Sequence[Address]) -> str | None:
        if self.allow_private:
            return None
        for address in addresses:
            why = address_refusal(address)
            if why:
                return f"{host} resolves to {address}, which is not allowed ({why})"
        return None

    async def refusal(self, url: str, *, timeout: float = WRITE_RESOLVE_TIMEOUT) -> str | None:
        """On write: why the endpoint may not be used, resolving its name (None: fine)."""
        if self.allow_private:
            return None
        try:
            async with asyncio.timeout(timeout):
                _, host, addresses = await self._resolve(url)
        except HostError as exc:
            return f"The endpoint is not allowed: {exc}."
        except TimeoutError:
            return f"The endpoint's host did not resolve within {timeout:g} s."
        why = self._refusal(host, addresses)
        return f"The endpoint is not allowed: {why}." if why else None

    async def target(self, url: str) -> Target:
        """At delivery: resolve once, check every address, and say where to connect.

        :raises HostError: the endpoint may not be contacted now.
        """
        parsed, host, addresses = await self._resolve(url)
        why = self._refusal(host, addresses)
        if why:
            raise HostError(why)
        address = addresses[0]
        server = None
        if parsed.scheme == "https" and isinstance(parse_host(host), str):
            server = host
        pinned = parsed.copy_with(host=str(address).split("%", 1)[0])
        return Target(str(pinned), address, parsed.netloc.decode("ascii"), server)
