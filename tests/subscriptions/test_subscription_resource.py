"""Creating Subscriptions: what is accepted, what is a 422, what the server owns; topics served."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from samplan.api.deps import Services
from samplan.subscriptions.bench import subscription_body
from samplan.subscriptions.model import EXT_CONTENT, EXT_FILTER
from samplan.subscriptions.service import TOPIC_CANONICAL_EXT
from samplan.subscriptions.signing import EXT_SECRET, SecretBox
from samplan.subscriptions.topics import AGREEMENT_CHANGED
from subscriptions.helpers import SECRET

ENDPOINT = "http://127.0.0.1:9/notify"


def body(**changes: Any) -> dict[str, Any]:
    sub = subscription_body(ENDPOINT, SECRET, criteria="CarePlan?patient=Patient/p1")
    for path, value in changes.items():
        node = sub
        *parents, last = path.split("__")
        for key in parents:
            node = node[key]
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return sub


async def count_subscriptions(client: httpx.AsyncClient) -> int:
    bundle = (await client.get("/fhir/Subscription", params={"_summary": "count"})).json()
    return int(bundle["total"])


class TestAcceptedSubscription:
    async def test_the_server_sets_requested_and_seals_the_secret(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.post("/fhir/Subscription", json=body(status="active"))
        assert response.status_code == 201, response.text
        stored = response.json()
        assert stored["status"] == "requested"
        assert response.headers["ETag"] == 'W/"1"'
        secret = next(e["valueString"] for e in stored["channel"]["extension"]
                      if e["url"] == EXT_SECRET)
        assert SECRET not in response.text
        assert SecretBox(None).open(secret) == SECRET
        assert stored["_criteria"]["extension"] == [
            {"url": EXT_FILTER, "valueString": "CarePlan?patient=Patient/p1"}]

    async def test_payload_content_defaults_to_id_only(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/fhir/Subscription", json=body(channel___payload=None))
        assert response.status_code == 201, response.text
        assert response.json()["channel"]["_payload"] == {
            "extension": [{"url": EXT_CONTENT, "valueCode": "id-only"}]}

    async def test_sending_the_sealed_secret_back_keeps_it(
        self, client: httpx.AsyncClient
    ) -> None:
        created = (await client.post("/fhir/Subscription", json=body())).json()
        created["reason"] = "changed"
        response = await client.put(f"/fhir/Subscription/{created['id']}", json=created,
                                    headers={"If-Match": 'W/"1"'})
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "requested"
        assert response.headers["ETag"] == 'W/"2"'

    async def test_off_stays_off(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/fhir/Subscription", json=body(status="off"))
        assert response.json()["status"] == "off"


def criteria(text: str) -> dict[str, Any]:
    return {"_criteria": {"extension": [{"url": EXT_FILTER, "valueString": text}]}}


BAD_INPUT = [
    pytest.param(
        {"criteria": "https://example.org/SubscriptionTopic/nope"},
        "not-supported", "Subscription.criteria", id="unknown topic"),
    pytest.param(
        criteria("CarePlan?status=active"),
        "not-supported", "Subscription.criteria.extension[0]", id="unsupported filter parameter"),
    pytest.param(
        criteria("Goal?patient=Patient/1"),
        "not-supported", "Subscription.criteria.extension[0]", id="filter on another type"),
    pytest.param(
        criteria("patient=Group/1"),
        "value", "Subscription.criteria.extension[0]", id="filter value of the wrong type"),
    pytest.param({"channel__endpoint": "ftp://example.org/x"}, "value",
                 "Subscription.channel.endpoint", id="endpoint not http"),
    pytest.param({"channel__endpoint": "notify/here"}, "value",
                 "Subscription.channel.endpoint", id="endpoint not absolute"),
    pytest.param({"channel__endpoint": "https://user:pw@example.org/x"}, "value",
                 "Subscription.channel.endpoint", id="endpoint with credentials"),
    pytest.param({"channel__endpoint": None}, "value",
                 "Subscription.channel.endpoint", id="no endpoint"),
    pytest.param({"channel__type": "websocket"}, "not-supported",
                 "Subscription.channel.type", id="websocket channel"),
    pytest.param({"channel__type": "email"}, "not-supported",
                 "Subscription.channel.type", id="email channel"),
    pytest.param({"channel__payload": "application/fhir+xml"}, "not-supported",
                 "Subscription.channel.payload", id="xml payload"),
    pytest.param({"channel___payload": {"extension": [{"url": EXT_CONTENT,
                                                       "valueCode": "everything"}]}},
                 "not-supported", "Subscription.channel.payload.extension[0]",
                 id="unknown payload content"),
    pytest.param({"channel__header": ["X-Hub-Signature-256: forged"]}, "value",
                 "Subscription.channel.header[0]", id="header the server sets"),
    pytest.param({"channel__header": ["no colon here"]}, "value",
                 "Subscription.channel.header[0]", id="malformed header"),
    pytest.param({"channel__extension": []}, "required",
                 "Subscription.channel.extension", id="no signing secret"),
    pytest.param({"channel__extension": [{"url": EXT_SECRET, "valueString": "short"}]}, "value",
                 "Subscription.channel.extension[0]", id="short signing secret"),
]


class TestBadInput:
    @pytest.mark.parametrize(("changes", "code", "expression"), BAD_INPUT)
    async def test_is_422_and_stores_nothing(
        self, client: httpx.AsyncClient, changes: dict[str, Any], code: str, expression: str
    ) -> None:
        response = await client.post("/fhir/Subscription", json=body(**changes))
        assert response.status_code == 422, response.text
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert [(i["severity"], i["code"], i["expression"]) for i in outcome["issue"]] == [
            ("error", code, [expression])]
        assert await count_subscriptions(client) == 0

    async def test_unknown_topic_outcome_names_the_served_topics(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.post("/fhir/Subscription",
                                     json=body(criteria="https://example.org/Topic/x"))
        assert response.json() == {
            "resourceType": "OperationOutcome",
            "issue": [{
                "severity": "error",
                "code": "not-supported",
                "diagnostics": "Subscription.criteria must name a SubscriptionTopic this server "
                               f"serves ({AGREEMENT_CHANGED}); got "
                               "'https://example.org/Topic/x'.",
                "expression": ["Subscription.criteria"],
            }],
        }

    async def test_an_update_with_bad_input_leaves_the_subscription_as_it_was(
        self, client: httpx.AsyncClient
    ) -> None:
        created = (await client.post("/fhir/Subscription", json=body())).json()
        created["channel"]["type"] = "websocket"
        response = await client.put(f"/fhir/Subscription/{created['id']}", json=created)
        assert response.status_code == 422
        current = await client.get(f"/fhir/Subscription/{created['id']}")
        assert current.headers["ETag"] == 'W/"1"'
        assert current.json()["channel"]["type"] == "rest-hook"


class TestTopicsAreServed:
    async def test_the_topic_is_a_basic_resource(
        self, client: httpx.AsyncClient, services: Services
    ) -> None:
        feature = services.subscriptions
        await services.gate.sync_conformance(feature.topics.resources())  # emptied per test
        topic = (await client.get("/fhir/Basic/agreement-changed")).json()
        assert topic["code"]["coding"] == [
            {"system": "http://hl7.org/fhir/fhir-types", "code": "SubscriptionTopic"}]
        urls = [e["valueUri"] for e in topic["extension"] if e["url"].endswith(".url")]
        assert urls == [AGREEMENT_CHANGED]
        search = (await client.get("/fhir/Basic", params={
            "code": "http://hl7.org/fhir/fhir-types|SubscriptionTopic"})).json()
        assert [e["resource"]["id"] for e in search["entry"]] == ["agreement-changed"]

    async def test_topics_cannot_be_written_by_clients(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/fhir/Basic", json={
            "resourceType": "Basic", "code": {"text": "x"}})
        assert response.status_code == 405

    async def test_the_capability_statement_advertises_topic_and_operations(
        self, client: httpx.AsyncClient
    ) -> None:
        rest = (await client.get("/fhir/metadata")).json()["rest"][0]
        entry = next(r for r in rest["resource"] if r["type"] == "Subscription")
        assert {"url": TOPIC_CANONICAL_EXT, "valueCanonical": AGREEMENT_CHANGED} in \
            entry["extension"]
        names = {o["name"] for o in entry["operation"]}
        assert {"status", "events"} <= names
