"""The public base URL of a request (issue 14, item 4): the resolver alone; its use by every
route is tested in test_links.py."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from conftest import make_settings
from samplan.api.base_url import (
    BaseUrlResolver,
    parse_address,
    parse_forwarded,
    public_base_url,
)

PROXY = "10.0.0.5"


def scope(*headers: tuple[str, str], peer: str | None = "203.0.113.7", scheme: str = "http",
          server: tuple[str, int] | None = ("0.0.0.0", 8080), root_path: str = "") -> Any:
    return {
        "type": "http", "scheme": scheme, "root_path": root_path,
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
        "client": (peer, 40000) if peer else None, "server": server,
    }


def resolver(trusted: list[str] | None = None, public: str | None = None) -> BaseUrlResolver:
    return BaseUrlResolver.from_settings(make_settings(
        "sqlite+aiosqlite:///unused", public_base_url=public, trusted_proxies=trusted or []))


class TestWithoutProxies:
    def test_the_configured_base_wins(self) -> None:
        resolve = resolver(public="https://samplan.region.se/fhir/")
        assert resolve(scope(("Host", "evil.example"))) == "https://samplan.region.se/fhir"

    @pytest.mark.parametrize(("host", "expected"), [
        ("localhost:8080", "http://localhost:8080/fhir"),
        ("127.0.0.1:8080", "http://127.0.0.1:8080/fhir"),
        ("samplan.local", "http://samplan.local/fhir"),
        ("[::1]:8080", "http://[::1]:8080/fhir"),
    ])
    def test_the_host_header_is_the_host(self, host: str, expected: str) -> None:
        assert resolver()(scope(("Host", host))) == expected

    def test_the_scheme_is_the_connections(self) -> None:
        assert resolver()(scope(("Host", "samplan.local"), scheme="https")) == (
            "https://samplan.local/fhir")

    def test_the_root_path_of_a_mounted_app_is_kept(self) -> None:
        assert resolver()(scope(("Host", "h"), root_path="/samplan/")) == "http://h/samplan/fhir"

    @pytest.mark.parametrize("bad", ["evil.example/path", "user@evil.example", "a b", "",
                                     "h:99999", "h:port"])
    def test_a_malformed_host_falls_back_on_the_socket(self, bad: str) -> None:
        assert resolver()(scope(("Host", bad), server=("192.0.2.10", 8080))) == (
            "http://192.0.2.10:8080/fhir")

    def test_no_host_and_a_default_port(self) -> None:
        assert resolver()(scope(server=("192.0.2.10", 80))) == "http://192.0.2.10/fhir"
        assert resolver()(scope(server=("::1", 8080))) == "http://[::1]:8080/fhir"
        assert resolver()(scope(server=None)) == "http://localhost/fhir"

    def test_forwarding_headers_from_anyone_are_ignored(self) -> None:
        request = scope(("Host", "localhost:8080"), ("X-Forwarded-Proto", "https"),
                        ("X-Forwarded-Host", "evil.example"),
                        ("Forwarded", "proto=https;host=evil.example"), peer=PROXY)
        assert resolver()(request) == "http://localhost:8080/fhir"  # none trusted
        assert resolver(["10.1.0.0/16"])(request) == "http://localhost:8080/fhir"

    def test_the_function_form(self) -> None:
        settings = make_settings("sqlite+aiosqlite:///unused", public_base_url=None)
        assert public_base_url(scope(("Host", "localhost:8080")), settings) == (
            "http://localhost:8080/fhir")


class TestBehindATrustedProxy:
    def test_x_forwarded_proto_and_host(self) -> None:
        request = scope(("Host", "samplan:8080"), ("X-Forwarded-Proto", "https"),
                        ("X-Forwarded-Host", "samplan.region.se"), peer=PROXY)
        assert resolver(["10.0.0.0/8"])(request) == "https://samplan.region.se/fhir"
        assert resolver([PROXY])(request) == "https://samplan.region.se/fhir"

    def test_only_the_proto_keeps_the_host_header(self) -> None:
        request = scope(("Host", "samplan.region.se"), ("X-Forwarded-Proto", "HTTPS"),
                        peer=PROXY)
        assert resolver([PROXY])(request) == "https://samplan.region.se/fhir"

    def test_rfc_7239_forwarded_wins(self) -> None:
        request = scope(("Host", "samplan:8080"), ("X-Forwarded-Host", "other.example"),
                        ("Forwarded", 'for=192.0.2.60;proto=https;host="samplan.region.se"'),
                        peer=PROXY)
        assert resolver([PROXY])(request) == "https://samplan.region.se/fhir"

    def test_an_ipv6_peer_and_an_ipv4_mapped_one(self) -> None:
        request = scope(("Host", "h"), ("X-Forwarded-Proto", "https"), peer="::ffff:10.0.0.5")
        assert resolver(["10.0.0.0/8"])(request) == "https://h/fhir"
        request = scope(("Host", "h"), ("X-Forwarded-Proto", "https"), peer="fd00::1")
        assert resolver(["fd00::/8"])(request) == "https://h/fhir"

    def test_unusable_values_are_not_copied_into_links(self) -> None:
        request = scope(("Host", "samplan.region.se"), ("X-Forwarded-Proto", "javascript"),
                        ("X-Forwarded-Host", "evil.example/x?"), peer=PROXY)
        assert resolver([PROXY])(request) == "http://samplan.region.se/fhir"

    def test_a_unix_socket_peer_is_not_trusted(self) -> None:
        request = scope(("Host", "h"), ("X-Forwarded-Proto", "https"), peer=None)
        assert resolver(["0.0.0.0/0"])(request) == "http://h/fhir"


class TestChainsOfProxies:
    """client -> outer proxy (10.0.0.9) -> inner proxy (10.0.0.5, our peer) -> us."""

    def test_forwarded_takes_the_outermost_trusted_proxys_view(self) -> None:
        header = ("Forwarded", "for=192.0.2.60;proto=https;host=samplan.region.se, "
                               "for=10.0.0.9;proto=http;host=inner.lan")
        request = scope(("Host", "samplan:8080"), header, peer=PROXY)
        assert resolver(["10.0.0.0/24"])(request) == "https://samplan.region.se/fhir"
        # the outer proxy not trusted: only our peer's view is believed
        assert resolver([PROXY])(request) == "http://inner.lan/fhir"

    def test_a_clients_own_forwarded_element_is_never_believed(self) -> None:
        header = ("Forwarded", "for=1.2.3.4;host=evil.example;proto=https, "
                               "for=192.0.2.60;proto=https;host=samplan.region.se")
        request = scope(("Host", "samplan:8080"), header, peer=PROXY)
        assert resolver([PROXY])(request) == "https://samplan.region.se/fhir"

    def test_appended_x_forwarded_values_follow_the_trusted_hops(self) -> None:
        request = scope(("Host", "samplan:8080"),
                        ("X-Forwarded-For", "192.0.2.60, 10.0.0.9"),
                        ("X-Forwarded-Proto", "https, http"),
                        ("X-Forwarded-Host", "samplan.region.se, inner.lan"), peer=PROXY)
        assert resolver(["10.0.0.0/24"])(request) == "https://samplan.region.se/fhir"
        assert resolver([PROXY])(request) == "http://inner.lan/fhir"

    def test_a_spoofed_x_forwarded_value_in_front_is_skipped(self) -> None:
        request = scope(("Host", "samplan:8080"),
                        ("X-Forwarded-For", "6.6.6.6, 192.0.2.60"),
                        ("X-Forwarded-Host", "evil.example, samplan.region.se"), peer=PROXY)
        assert resolver([PROXY])(request) == "http://samplan.region.se/fhir"


class TestParsing:
    def test_forwarded_elements_pairs_quotes_and_case(self) -> None:
        assert parse_forwarded('For="[2001:db8::1]:4711";Proto=https, for=_hidden;by=x') == [
            {"for": "[2001:db8::1]:4711", "proto": "https"}, {"for": "_hidden", "by": "x"}]
        assert parse_forwarded('host="a\\"b"') == [{"host": 'a"b'}]

    def test_malformed_forwarded_elements_still_count_as_hops(self) -> None:
        assert parse_forwarded("garbage, for=10.0.0.9") == [{}, {"for": "10.0.0.9"}]

    @pytest.mark.parametrize(("value", "expected"), [
        ("10.0.0.9", "10.0.0.9"), ("10.0.0.9:4711", "10.0.0.9"),
        ('"[2001:db8::1]:4711"', "2001:db8::1"), ("2001:db8::1", "2001:db8::1"),
        ("::ffff:10.0.0.9", "10.0.0.9"), ("unknown", None), ("_hidden", None), ("", None),
    ])
    def test_addresses(self, value: str, expected: str | None) -> None:
        address = parse_address(value)
        assert (str(address) if address else None) == expected


class TestTheSetting:
    def test_empty_by_default(self) -> None:
        assert make_settings("sqlite+aiosqlite:///unused").trusted_proxies == []

    def test_read_as_json_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from samplan.settings import Settings

        monkeypatch.setenv("SAMPLAN_TRUSTED_PROXIES", '["10.0.0.0/8", "::1"]')
        assert Settings().trusted_proxies == ["10.0.0.0/8", "::1"]

    def test_a_bad_entry_is_refused_at_start(self) -> None:
        with pytest.raises(ValidationError, match="no address or CIDR network"):
            make_settings("sqlite+aiosqlite:///unused", trusted_proxies=["10.0.0.0/33"])
