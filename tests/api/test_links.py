"""Links follow the request (issue 14, item 4), on both databases.

Without ``SAMPLAN_PUBLIC_BASE_URL`` every ``self``/``next``/``previous`` link,
``fullUrl`` and ``Location`` uses the request's scheme and host; forwarding
headers count only from a trusted proxy (here ``10.0.0.0/8``); with the setting,
the configured base wins. The resolver itself is tested in ``test_base_url.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from conftest import empty_tables, make_settings
from factories import make_bundle, make_careplan, make_entry, make_patient
from samplan.api.deps import Services
from samplan.main import create_app
from samplan.settings import Settings
from support.patient_view import import_examples

PROXY = "10.0.0.5"
STRANGER = "203.0.113.7"
LOCAL = "http://localhost:8080/fhir"
PUBLIC = "https://samplan.region.se/fhir"


@pytest.fixture(scope="module")
async def unconfigured(database_url: str) -> AsyncIterator[tuple[Any, Services]]:
    """The app without a public base, trusting the proxies of 10.0.0.0/8."""
    app = create_app(make_settings(database_url, public_base_url="",
                                   trusted_proxies=["10.0.0.0/8"]))
    async with app.router.lifespan_context(app):
        yield app, app.state.services


@asynccontextmanager
async def calling(app: Any, peer: str, host: str = "localhost:8080",
                  **headers: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    async with httpx.AsyncClient(
        transport=transport, base_url=f"http://{host}",
        headers={"Content-Type": "application/fhir+json", **headers},
    ) as client:
        yield client


@pytest.fixture
async def app(unconfigured: tuple[Any, Services]) -> Any:
    the_app, services = unconfigured
    await empty_tables(services)
    return the_app


def links(bundle: Any) -> Iterator[str]:
    """A Bundle's own links and fullUrls, and those of the Bundles inside it (a batch's
    searches); a resource's own URLs (extension urls, references) are not links."""
    for link in bundle.get("link") or ():
        yield link["url"]
    for entry in bundle.get("entry") or ():
        if "fullUrl" in entry:
            yield entry["fullUrl"]
        location = entry.get("response", {}).get("location", "")
        if "://" in location:
            yield location
        resource = entry.get("resource") or {}
        if resource.get("resourceType") == "Bundle":
            yield from links(resource)


def all_start_with(base: str, bundle: Any) -> None:
    found = list(links(bundle))
    assert found, "no links at all"
    wrong = [u for u in found if not u.startswith(base + "/") and not u.startswith("urn:")]
    assert not wrong, wrong


async def some_plans(client: httpx.AsyncClient, n: int = 3) -> str:
    patient: str = (await client.post("/fhir/Patient", json=make_patient())).json()["id"]
    for _ in range(n):
        created = await client.post("/fhir/CarePlan", json=make_careplan(patient_id=patient))
        assert created.status_code == 201, created.text
    return patient


class TestADirectRequest:
    async def test_location_and_every_link_use_the_host_called(self, app: Any) -> None:
        async with calling(app, STRANGER) as client:
            created = await client.post("/fhir/Patient", json=make_patient())
            assert created.headers["Location"].startswith(f"{LOCAL}/Patient/")
            patient = created.json()["id"]
            for _ in range(3):
                await client.post("/fhir/CarePlan", json=make_careplan(patient_id=patient))
            first = (await client.get("/fhir/CarePlan", params={"_count": "1"})).json()
            assert {link["relation"] for link in first["link"]} == {"self", "next"}
            all_start_with(LOCAL, first)
            following = (await client.get(first["link"][1]["url"])).json()
            assert {link["relation"] for link in following["link"]} == {
                "self", "next", "previous"}
            all_start_with(LOCAL, following)
            for path in ("/fhir/_history", "/fhir/CarePlan/_history",
                         f"/fhir/Patient/{patient}/_history"):
                all_start_with(LOCAL, (await client.get(path, params={"_count": "1"})).json())
            updated = await client.put(f"/fhir/Patient/{patient}",
                                       json={**make_patient(), "id": patient})
            assert updated.headers["Location"] == f"{LOCAL}/Patient/{patient}/_history/2"

    async def test_another_name_for_the_same_server_gets_its_own_links(self, app: Any) -> None:
        async with calling(app, STRANGER, host="127.0.0.1:8080") as client:
            created = await client.post("/fhir/Patient", json=make_patient())
        assert created.headers["Location"].startswith("http://127.0.0.1:8080/fhir/Patient/")

    async def test_transaction_and_batch_answers(self, app: Any) -> None:
        async with calling(app, STRANGER) as client:
            bundle = make_bundle("transaction", make_entry(
                "POST", "Patient", make_patient(), full_url="urn:uuid:1"))
            answer = (await client.post("/fhir", json=bundle)).json()
            all_start_with(LOCAL, answer)
            batch = make_bundle("batch", make_entry("GET", "Patient?_count=1"))
            all_start_with(LOCAL, (await client.post("/fhir", json=batch)).json())

    async def test_the_agreement_document_and_the_note_import(self, app: Any) -> None:
        async with calling(app, STRANGER) as client:
            ids = await import_examples(client)
            document = await client.get(f"/fhir/Patient/{ids['region']}/$agreement")
            assert document.status_code == 200
            urls = [e["fullUrl"] for e in document.json()["entry"][1:]]
            assert urls
            assert all(u.startswith(f"{LOCAL}/") for u in urls)
            routed = await client.get(f"/fhir/Patient/{ids['region']}/$agreement",
                                      params={"_format": "json"})
            assert [e["fullUrl"] for e in routed.json()["entry"][1:]] == urls
        async with calling(app, STRANGER, host="other.example:8443") as client:
            again = await client.get(f"/fhir/Patient/{ids['region']}/$agreement")
            assert all(e["fullUrl"].startswith("http://other.example:8443/fhir/")
                       for e in again.json()["entry"][1:])

    async def test_import_note_location(self, app: Any) -> None:
        from .test_notes_api import REGION, import_note

        async with calling(app, STRANGER) as client:
            response = await import_note(client, REGION, "application/json")
        assert response.status_code == 201, response.text
        assert response.headers["Location"].startswith(f"{LOCAL}/CarePlan/")
        all_start_with(LOCAL, response.json())

    async def test_metadata_names_the_base_called(self, app: Any) -> None:
        async with calling(app, STRANGER) as client:
            metadata = (await client.get("/fhir/metadata")).json()
        assert metadata["url"] == f"{LOCAL}/metadata"
        assert metadata["implementation"]["url"] == LOCAL

    async def test_smart_discovery_names_the_development_keys_on_that_base(
            self, secure_services: Services) -> None:
        from samplan.api.smart import smart_document

        document = smart_document(secure_services, LOCAL)
        assert document["jwks_uri"] == "http://localhost:8080/.well-known/jwks.json"
        assert smart_document(secure_services)["jwks_uri"] == (
            "http://samplan.test/.well-known/jwks.json")

    async def test_subscription_status_bundle(self, app: Any) -> None:
        from samplan.subscriptions.bench import subscription_body

        async with calling(app, STRANGER) as client:
            created = await client.post("/fhir/Subscription", json=subscription_body(
                "http://127.0.0.1:9/notify", "a-receiver-secret-0123456789"))
            assert created.status_code == 201, created.text
            sid = created.json()["id"]
            status = (await client.get(f"/fhir/Subscription/{sid}/$status")).json()
        assert status["entry"][0]["fullUrl"] == f"{LOCAL}/Subscription/{sid}"
        references = [p["valueReference"]["reference"]
                      for p in status["entry"][0]["resource"]["parameter"]
                      if "valueReference" in p]
        assert references == [f"{LOCAL}/Subscription/{sid}"]

    async def test_a_read_keeps_its_stored_references_relative(self, app: Any) -> None:
        async with calling(app, STRANGER) as client:
            patient = await some_plans(client, 1)
            plan = (await client.get("/fhir/CarePlan", params={"patient": patient})).json()
        resource = plan["entry"][0]["resource"]
        assert resource["subject"] == {"reference": f"Patient/{patient}"}


class TestBehindAProxy:
    async def test_a_trusted_proxy_names_scheme_and_host(self, app: Any) -> None:
        async with calling(app, PROXY, host="samplan-api:8080", **{
                "X-Forwarded-Proto": "https", "X-Forwarded-Host": "samplan.region.se",
                "X-Forwarded-For": "198.51.100.20"}) as client:
            created = await client.post("/fhir/Patient", json=make_patient())
            assert created.headers["Location"].startswith(f"{PUBLIC}/Patient/")
            await some_plans(client, 2)
            all_start_with(PUBLIC, (await client.get(
                "/fhir/CarePlan", params={"_count": "1"})).json())

    async def test_forwarded_wins_over_the_x_headers(self, app: Any) -> None:
        async with calling(app, PROXY, host="samplan-api:8080", **{
                "Forwarded": 'for=198.51.100.20;proto=https;host="samplan.region.se"',
                "X-Forwarded-Host": "elsewhere.example"}) as client:
            created = await client.post("/fhir/Patient", json=make_patient())
        assert created.headers["Location"].startswith(f"{PUBLIC}/Patient/")

    async def test_an_untrusted_peer_cannot_choose_our_links(self, app: Any) -> None:
        async with calling(app, STRANGER, **{
                "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example",
                "Forwarded": "proto=https;host=evil.example"}) as client:
            created = await client.post("/fhir/Patient", json=make_patient())
            await some_plans(client, 2)
            bundle = (await client.get("/fhir/CarePlan", params={"_count": "1"})).json()
        assert created.headers["Location"].startswith(f"{LOCAL}/Patient/")
        all_start_with(LOCAL, bundle)

    async def test_the_portal_links_by_path_under_the_proxys_prefix(self, app: Any) -> None:
        async with calling(app, STRANGER) as client:
            ids = await import_examples(client)
        transport = httpx.ASGITransport(app=app, client=(STRANGER, 1),
                                        root_path="/samplan")
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            page = await client.get(f"/samplan/portal/patient/{ids['region']}")
        assert page.status_code == 200, page.text
        assert f'action="/samplan/portal/patient/{ids["region"]}/' in page.text
        assert f'href="/samplan/fhir/Patient/{ids["region"]}/$agreement?_format=pdf"' in (
            page.text)


class TestTheConfiguredBase:
    async def test_it_wins_over_the_request(self, client: httpx.AsyncClient) -> None:
        created = await client.post("/fhir/Patient", json=make_patient(),
                                    headers={"Host": "other.example"})
        assert created.headers["Location"].startswith("http://samplan.test/fhir/Patient/")


class TestSettings:
    def test_an_empty_public_base_is_unset(self) -> None:
        settings = Settings(public_base_url="", host="127.0.0.1", port=8080)
        assert settings.public_base_url is None
        assert settings.base_url == "http://127.0.0.1:8080/fhir"

    @pytest.mark.parametrize("host", ["0.0.0.0", "::"])
    def test_a_wildcard_address_is_never_a_link(self, host: str) -> None:
        assert Settings(public_base_url=None, host=host, port=8080).base_url == LOCAL

    def test_the_public_base_must_be_absolute(self) -> None:
        with pytest.raises(ValueError, match="SAMPLAN_PUBLIC_BASE_URL"):
            Settings(public_base_url="samplan.region.se/fhir")
        assert Settings(public_base_url=f"{PUBLIC}/").base_url == PUBLIC
