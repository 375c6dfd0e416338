"""Issue 12, finding 6 (headers): channel headers are sealed like the signing secret, served
only sealed, kept when sent back sealed, and sent in clear to the endpoint alone."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from samplan.subscriptions.bench import subscription_body
from samplan.subscriptions.receiver import Receiver
from samplan.subscriptions.signing import SEALED_PREFIX, SecretBox
from subscriptions.helpers import SECRET, wait_status

ENDPOINT = "http://127.0.0.1:9/notify"
TOKEN = "Bearer receiver-token-0123456789"
BOX = SecretBox(None)  # the test app's key (SAMPLAN_WEBHOOK_SECRET_KEY unset)


def with_headers(endpoint: str, *headers: str) -> dict[str, Any]:
    body = subscription_body(endpoint, SECRET)
    body["channel"]["header"] = list(headers)
    return body


def header_values(resource: dict[str, Any]) -> list[tuple[str, str]]:
    return [(h.split(":", 1)[0], h.split(":", 1)[1].strip()) for h in resource["channel"]["header"]]


async def create(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/fhir/Subscription", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


class TestSealed:
    async def test_no_answer_holds_a_header_value_in_clear(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.post("/fhir/Subscription", json=with_headers(
            ENDPOINT, f"Authorization: {TOKEN}", "X-Api-Key: key-42"))
        assert response.status_code == 201, response.text
        sid = response.json()["id"]
        answers = [response,
                   await client.get(f"/fhir/Subscription/{sid}"),
                   await client.get(f"/fhir/Subscription/{sid}/_history/1"),
                   await client.get(f"/fhir/Subscription/{sid}/_history"),
                   await client.get("/fhir/Subscription", params={"_id": sid})]
        assert all(answer.status_code == 200 for answer in answers[1:])
        for answer in answers:
            assert "receiver-token" not in answer.text
            assert "key-42" not in answer.text
        stored = answers[1].json()
        [(name, sealed), (other, sealed_key)] = header_values(stored)
        assert (name, other) == ("Authorization", "X-Api-Key")
        assert sealed.startswith(SEALED_PREFIX)
        assert BOX.open_header("Authorization", sealed, ENDPOINT) == TOKEN
        assert BOX.open_header("x-api-key", sealed_key, ENDPOINT) == "key-42"

    async def test_sent_back_sealed_it_is_kept_and_a_clear_value_replaces_it(
        self, client: httpx.AsyncClient
    ) -> None:
        created = await create(client, with_headers(ENDPOINT, f"Authorization: {TOKEN}"))
        created["reason"] = "read, changed, put back"
        kept = await client.put(f"/fhir/Subscription/{created['id']}", json=created)
        assert kept.status_code == 200, kept.text
        [(_, sealed)] = header_values(kept.json())
        assert BOX.open_header("Authorization", sealed, ENDPOINT) == TOKEN

        kept_body = kept.json()
        kept_body["channel"]["header"] = ["Authorization: Bearer a-new-token"]
        replaced = await client.put(f"/fhir/Subscription/{created['id']}", json=kept_body)
        assert replaced.status_code == 200, replaced.text
        assert "a-new-token" not in replaced.text
        [(_, sealed)] = header_values(replaced.json())
        assert BOX.open_header("Authorization", sealed, ENDPOINT) == "Bearer a-new-token"

    @pytest.mark.parametrize("change", ["other header", "other endpoint", "other key", "forged"])
    async def test_a_sealed_value_opens_only_for_its_header_and_endpoint(
        self, client: httpx.AsyncClient, change: str
    ) -> None:
        created = await create(client, with_headers(ENDPOINT, f"Authorization: {TOKEN}"))
        [(_, sealed)] = header_values(created)
        body = {**created, "channel": dict(created["channel"])}
        if change == "other header":
            body["channel"]["header"] = [f"X-Forward-To-Me: {sealed}"]
        elif change == "other endpoint":
            body["channel"]["endpoint"] = "http://127.0.0.1:10/elsewhere"
        elif change == "other key":
            foreign = SecretBox("another").seal_header("Authorization", TOKEN, ENDPOINT)
            body["channel"]["header"] = [f"Authorization: {foreign}"]
        else:
            body["channel"]["header"] = [f"Authorization: {SEALED_PREFIX}not-a-fernet-token"]
        response = await client.put(f"/fhir/Subscription/{created['id']}", json=body)
        assert response.status_code == 422, response.text
        [issue] = response.json()["issue"]
        assert issue["expression"] == ["Subscription.channel.header[0]"]
        assert "send the value in clear" in issue["diagnostics"]

    async def test_the_sealed_secret_is_no_sealed_header(self, client: httpx.AsyncClient) -> None:
        created = await create(client, with_headers(ENDPOINT))
        secret = created["channel"]["extension"][0]["valueString"]
        body = {**created, "channel": {**created["channel"], "header": [f"X-Leak: {secret}"]}}
        response = await client.put(f"/fhir/Subscription/{created['id']}", json=body)
        assert response.status_code == 422, response.text


class TestDelivered:
    @pytest.mark.usefixtures("worker")
    async def test_the_worker_sends_the_value_in_clear_to_the_endpoint(
        self, client: httpx.AsyncClient, receiver: Receiver
    ) -> None:
        created = await create(client, with_headers(receiver.url, f"Authorization: {TOKEN}"))
        await wait_status(client, created["id"], "active")
        [handshake] = receiver.notifications(created["id"], kind="handshake")
        assert handshake.headers["authorization"] == TOKEN
        assert handshake.signature_ok
