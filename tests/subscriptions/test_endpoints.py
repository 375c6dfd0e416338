"""Issue 12, finding 13: every spelling of an inside address is refused, and delivery goes
where the check looked (no DNS rebinding window)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence

import httpx
import pytest

from samplan.api.deps import Services
from samplan.subscriptions import delivery
from samplan.subscriptions.bench import subscription_body
from samplan.subscriptions.endpoints import (
    Address,
    EndpointGuard,
    HostError,
    address_refusal,
    parse_host,
)
from samplan.subscriptions.receiver import Receiver
from subscriptions.helpers import SECRET

PUBLIC_IP = ipaddress.IPv4Address("93.184.215.14")

# Each of these stands for loopback, "this host" or an inside address.
INSIDE_HOSTS = [
    "0x7f000001", "2130706433", "127.1", "0177.0.0.1", "0", "localhost.", "LOCALHOST",
    "[::ffff:0:7f00:1]", "[64:ff9b::7f00:1]", "[::ffff:127.0.0.1]", "[::127.0.0.1]",
    "[2002:7f00:1::]", "[2002:a00:1::]", "[::1]", "[::]", "0x7f.1", "127.0.0.1.",
    "１２７．０．０．１", "10.1", "[64:ff9b::a9fe:a9fe]", "169.254.169.254", "100.64.0.1",
    "224.0.0.1", "[fe80::1]", "[fc00::1]", "metadata", "host.internal", "printer.local",
]


class Names:
    """A resolver seam: names answer what the test says, and each lookup is counted."""

    def __init__(self, *answers: Sequence[str]) -> None:
        self.answers = [[ipaddress.ip_address(a) for a in answer] for answer in answers]
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[Address]:
        self.asked.append((host, port))
        return self.answers[min(len(self.asked), len(self.answers)) - 1]


@pytest.fixture
def no_private(services: Services) -> Iterator[EndpointGuard]:
    """The app's endpoint policy as in production (the test app allows private targets)."""
    from samplan.fhir.resource import WRITE_CHECKS
    from samplan.subscriptions.model import SubscriptionCheck

    guard = services.subscriptions.check.endpoints
    # the write checks are process-wide: the newest app's check is the one that runs
    installed = [c.endpoints for c in WRITE_CHECKS if isinstance(c, SubscriptionCheck)]
    with pytest.MonkeyPatch.context() as patch:
        for each in {id(g): g for g in (guard, *installed)}.values():
            patch.setattr(each, "allow_private", False)
            patch.setattr(each, "resolver", Names(["93.184.215.14"]))
        yield guard


async def post(client: httpx.AsyncClient, endpoint: str) -> httpx.Response:
    return await client.post("/fhir/Subscription", json=subscription_body(endpoint, SECRET))


def assert_endpoint_refused(response: httpx.Response) -> None:
    assert response.status_code == 422, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert [i["expression"] for i in outcome["issue"]] == [["Subscription.channel.endpoint"]]


class TestWriteTime:
    @pytest.mark.parametrize("host", INSIDE_HOSTS)
    @pytest.mark.usefixtures("no_private")
    async def test_every_spelling_of_an_inside_address_is_refused(
        self, client: httpx.AsyncClient, host: str
    ) -> None:
        assert_endpoint_refused(await post(client, f"https://{host}:8443/notify"))

    async def test_a_name_resolving_to_loopback_is_refused(
        self, client: httpx.AsyncClient, no_private: EndpointGuard
    ) -> None:
        no_private.resolver = Names(["93.184.215.14", "127.0.0.1"])  # one of its addresses
        response = await post(client, "https://hooks.kommun.example/notify")
        assert_endpoint_refused(response)
        assert "127.0.0.1" in response.json()["issue"][0]["diagnostics"]
        count = await client.get("/fhir/Subscription", params={"_summary": "count"})
        assert count.json()["total"] == 0

    async def test_a_name_that_does_not_resolve_is_refused(
        self, client: httpx.AsyncClient, no_private: EndpointGuard
    ) -> None:
        async def nothing(_host: str, _port: int) -> list[Address]:
            raise OSError(-2, "Name or service not known")

        no_private.resolver = nothing
        assert_endpoint_refused(await post(client, "https://nowhere.kommun.example/x"))

    @pytest.mark.usefixtures("no_private")
    async def test_a_public_name_and_address_are_accepted(
        self, client: httpx.AsyncClient
    ) -> None:
        for endpoint in ("https://hooks.kommun.example/notify", "https://93.184.215.14/n",
                         "https://[2a00:1450:4001::1]/n", "https://[64:ff9b::5db8:d70e]/n"):
            response = await post(client, endpoint)
            assert response.status_code == 201, (endpoint, response.text)

    async def test_a_transaction_entry_is_refused_too(
        self, client: httpx.AsyncClient, no_private: EndpointGuard
    ) -> None:
        no_private.resolver = Names(["10.0.0.7"])
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [{
            "fullUrl": "urn:uuid:7d0a4e55-4c61-4c55-9b5c-0f4e0c3f1a11",
            "resource": subscription_body("https://hooks.kommun.example/n", SECRET),
            "request": {"method": "POST", "url": "Subscription"}}]}
        response = await client.post("/fhir", json=bundle)
        assert response.status_code == 422, response.text
        assert "Subscription.channel.endpoint" in response.text


class TestHosts:
    @pytest.mark.parametrize(("host", "address"), [
        ("0x7f000001", "127.0.0.1"), ("2130706433", "127.0.0.1"), ("127.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"), ("0", "0.0.0.0"), ("1.2.3", "1.2.0.3"),
        ("::ffff:0:7f00:1", "::ffff:0:7f00:1"),
    ])
    def test_ipv4_and_ipv6_spellings_become_one_address(self, host: str, address: str) -> None:
        assert parse_host(host) == ipaddress.ip_address(address)

    def test_names_are_normalised(self) -> None:
        assert parse_host("Hooks.Kommun.Example.") == "hooks.kommun.example"
        assert parse_host("hemtjänst.kommun.example") == "xn--hemtjnst-4za.kommun.example"

    @pytest.mark.parametrize("host", ["1.2.3.256", "08.1.1.1", "a..b", "fe80::1%eth0", ".", "a_b$"])
    def test_what_is_no_host_is_refused(self, host: str) -> None:
        with pytest.raises(HostError):
            parse_host(host)

    @pytest.mark.parametrize("address", [
        "::ffff:0:7f00:1", "64:ff9b::7f00:1", "2002:7f00:1::", "::7f00:1", "::ffff:7f00:1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2", "64:ff9b:1::1", "100::1",
    ])
    def test_embedded_inside_addresses_are_not_public(self, address: str) -> None:
        assert address_refusal(ipaddress.ip_address(address)) is not None

    @pytest.mark.parametrize("address", ["93.184.215.14", "2a00:1450:4001::1",
                                         "64:ff9b::5db8:d70e", "::ffff:93.184.215.14"])
    def test_public_addresses_pass(self, address: str) -> None:
        assert address_refusal(ipaddress.ip_address(address)) is None


class TestDeliveryConnectsWhereItChecked:
    async def test_the_request_goes_to_the_checked_address_not_a_later_answer(self) -> None:
        seen: list[httpx.Request] = []

        def answer(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(204)

        names = Names(["93.184.215.14"], ["127.0.0.1"])  # the second lookup would rebind
        guard = EndpointGuard(False, names)
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
            first = await delivery.post(http, "https://hooks.kommun.example:8443/n?a=1", b"{}",
                                        secret="x" * 16, headers=(), timeout=5, guard=guard)
            second = await delivery.post(http, "https://hooks.kommun.example:8443/n?a=1", b"{}",
                                         secret="x" * 16, headers=(), timeout=5, guard=guard)
        assert first.ok
        [request] = seen  # the rebound name got no request at all
        assert str(request.url) == "https://93.184.215.14:8443/n?a=1"
        assert request.headers["Host"] == "hooks.kommun.example:8443"
        assert request.extensions["sni_hostname"] == "hooks.kommun.example"
        assert not second.ok
        assert second.error is not None
        assert "127.0.0.1" in second.error
        assert names.asked == [("hooks.kommun.example", 8443)] * 2

    async def test_a_real_receiver_gets_it_by_the_resolved_address(self) -> None:
        with Receiver(SECRET) as receiver:
            port = httpx.URL(receiver.url).port
            names = Names(["127.0.0.1"], ["192.0.2.1"])
            guard = EndpointGuard(True, names)  # private allowed: still pinned to the answer
            async with httpx.AsyncClient() as http:
                result = await delivery.post(
                    http, f"http://hooks.samplan.test:{port}/notify", b"{}", secret=SECRET,
                    headers=(("Authorization", "Bearer receiver-token"),), timeout=5,
                    guard=guard)
            assert result.ok, result.error
            [got] = receiver.snapshot()
        assert got.headers["host"] == f"hooks.samplan.test:{port}"
        assert got.headers["authorization"] == "Bearer receiver-token"
