"""The parts on their own: backoff, signatures, endpoint safety, one POST, topic files."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.basic import Basic

from samplan.subscriptions import delivery
from samplan.subscriptions.bench import subscription_body
from samplan.subscriptions.endpoints import Address, EndpointGuard, check_endpoint
from samplan.subscriptions.model import SubscriptionCheck
from samplan.subscriptions.signing import SIGNATURE_HEADER, SecretBox, signature, verify
from samplan.subscriptions.topics import TopicError, TopicRegistry, parse_topic

TOPICS = TopicRegistry.load(Path(__file__).resolve().parents[2] / "fhir_profiles" /
                            "subscription-topics")


class TestBackoff:
    def test_grows_exponentially_with_jitter_and_stays_under_the_cap(self) -> None:
        rng = random.Random(4)
        for attempt, step in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0)):
            waits = [delivery.backoff(attempt, base=1.0, cap=300, rng=rng) for _ in range(200)]
            assert step / 2 <= min(waits)
            assert max(waits) <= step
            assert len(set(waits)) > 100  # jittered, not one value
        assert delivery.backoff(30, base=1.0, cap=60, rng=rng) <= 60


class TestSignature:
    def test_a_receiver_can_verify_the_exact_body(self) -> None:
        body = b'{"resourceType":"Bundle"}'
        header = signature("s3cret-s3cret-s3cret", body)
        assert header.startswith("sha256=")
        assert len(header) == len("sha256=") + 64
        assert verify("s3cret-s3cret-s3cret", body, header)
        assert not verify("s3cret-s3cret-s3cret", body + b" ", header)
        assert not verify("another-secret-value", body, header)

    def test_sealed_secrets_open_only_with_the_same_key(self) -> None:
        sealed = SecretBox("key-one").seal("the-subscriber-secret")
        assert "the-subscriber-secret" not in sealed
        assert SecretBox("key-one").open(sealed) == "the-subscriber-secret"
        with pytest.raises(ValueError, match="does not open"):
            SecretBox("key-two").open(sealed)


class TestEndpointSafety:
    @pytest.mark.parametrize("url", [
        "http://127.0.0.1:8080/x", "http://10.1.2.3/x", "https://192.168.0.10/x",
        "http://[::1]/x", "http://169.254.169.254/latest/meta-data", "http://localhost/x",
        "http://api.localhost/x", "http://0.0.0.0/x", "http://[::ffff:10.0.0.1]/x",
    ])
    def test_private_targets_are_refused_unless_allowed(self, url: str) -> None:
        assert check_endpoint(url, allow_private=False) is not None
        assert check_endpoint(url, allow_private=True) is None

    @pytest.mark.parametrize("url", [
        "ftp://example.org/x", "example.org/x", "https://", "https://u:p@example.org/",
        "https://example.org:99999/", "https://exa mple.org/", None, "",
    ])
    def test_malformed_urls_are_refused(self, url: Any) -> None:
        assert check_endpoint(url, allow_private=True) is not None

    def test_public_https_is_fine(self) -> None:
        assert check_endpoint("https://hemtjanst.example.se/fhir-notify",
                              allow_private=False) is None

    async def test_delivery_refuses_names_that_resolve_inside(self) -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(
                lambda _: httpx.Response(204))) as http:
            result = await delivery.post(http, "http://localhost:9/x", b"{}", secret="x" * 16,
                                         headers=(), timeout=5, guard=EndpointGuard(False))
        assert not result.ok
        assert result.error is not None
        assert "127.0.0.1" in result.error or "::1" in result.error

    def test_the_write_check_uses_the_setting(self) -> None:
        check = SubscriptionCheck(TOPICS, SecretBox(None), base_url="http://x/fhir",
                                  allow_private=False)
        resource = subscription_body("http://127.0.0.1:9/x", "a-long-enough-secret")
        [issue] = check(resource)
        assert issue.expression == ("Subscription.channel.endpoint",)
        assert check({"resourceType": "Patient"}) == []


async def _public(_host: str, _port: int) -> list[Address]:
    """A resolver for the names of these tests (no DNS): everything is one public address."""
    import ipaddress

    return [ipaddress.IPv4Address("93.184.215.14")]


PUBLIC = EndpointGuard(False, _public)


class TestOnePost:
    async def test_signed_post_with_the_subscriber_headers(self) -> None:
        seen: list[httpx.Request] = []

        def answer(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(202)

        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
            result = await delivery.post(
                http, "https://receiver.example/hook", b'{"a":1}', secret="sixteen-chars-xyz",
                headers=(("Authorization", "Bearer abc"),), timeout=5, guard=PUBLIC)
        assert result.ok
        assert result.status_code == 202
        [request] = seen
        assert request.content == b'{"a":1}'
        assert request.headers["Authorization"] == "Bearer abc"
        assert request.headers["Content-Type"] == "application/fhir+json"
        assert verify("sixteen-chars-xyz", b'{"a":1}', request.headers[SIGNATURE_HEADER])

    @pytest.mark.parametrize(("answer", "error"), [
        (httpx.Response(503), "HTTP 503 Service Unavailable"),
        (httpx.Response(302, headers={"Location": "https://elsewhere/"}), "HTTP 302 Found"),
    ])
    async def test_non_2xx_is_a_failure(self, answer: httpx.Response, error: str) -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(lambda _: answer)) as http:
            result = await delivery.post(http, "https://r.example/", b"{}", secret="x" * 16,
                                         headers=(), timeout=5, guard=PUBLIC)
        assert not result.ok
        assert result.error == error

    async def test_network_errors_are_failures_not_exceptions(self) -> None:
        def refuse(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("connection refused", request=request)

        async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http:
            result = await delivery.post(http, "https://r.example/", b"{}", secret="x" * 16,
                                         headers=(), timeout=5, guard=PUBLIC)
        assert not result.ok
        assert result.error == "ConnectError: connection refused"


class TestTopicFiles:
    def test_the_agreement_topic_reads(self) -> None:
        [topic] = list(TOPICS)
        assert set(topic.triggers) == {"CarePlan", "CareTeam", "Goal", "Appointment"}
        assert all(t == {"create", "update", "delete"} for t in topic.triggers.values())
        assert set(topic.filters) == {"patient", "organization", "category"}
        Basic.model_validate(topic.resource)

    def test_a_basic_that_is_not_a_topic_is_refused(self) -> None:
        with pytest.raises(TopicError, match="not coded as a SubscriptionTopic"):
            parse_topic({"resourceType": "Basic", "id": "x", "code": {"text": "other"}})
