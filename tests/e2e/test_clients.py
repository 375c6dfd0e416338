"""The FHIR clients people already use, unmodified, against a real ``samplan serve`` (issue 14).

* ``fhirclient`` (SMART on FHIR's Python client): reads the CapabilityStatement
  with its strict R4 models, creates, reads, searches and follows ``next``
  links; with a configured token issuer it finds the authorize endpoint in the
  CapabilityStatement's oauth-uris extension.
* ``fhir-kit-client`` (npm), run by Node (``tests/e2e/node/fhir_kit_client.mjs``):
  create, read, search, update, a transaction, and ``smartAuthMetadata()``.
  Installed by the test session into ``var/test-tools/fhir-kit-client`` (git
  ignores ``var/``); without npm it skips, except in CI where it fails.
* ``fhirpy``: what ``tests/e2e/test_server.py`` does not already cover.

Base URLs are ``http://127.0.0.1:PORT/fhir`` (``SAMPLAN_PUBLIC_BASE_URL`` as
``tests/support/server.py`` sets it), except for the server without it, which
fhirpy calls by another name (``localhost``) and pages through: its links follow
the request (item 4). fhirpy's ``get_or_create`` (``POST [type]?[search]``, item
3), ``count()`` (``_count=0``) and ``elements()`` (``_elements``, item 6) run
unmodified too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhirpy import AsyncFHIRClient

from factories import PNR_SYSTEM, make_careplan, make_patient
from support.repo_bounds import ROOT
from support.server import running_server

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("services")]

FHIR_KIT_VERSION = "2.0.3"
FHIR_KIT_DIR = ROOT / "var" / "test-tools" / f"fhir-kit-client-{FHIR_KIT_VERSION}"
FHIR_KIT_SCRIPT = Path(__file__).with_name("node") / "fhir_kit_client.mjs"
AUTHORIZE = "https://idp.example.se/oauth2/authorize"
TOKEN = "https://idp.example.se/oauth2/token"


def unavailable(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI (.ci/run installs npm)")
    pytest.skip(f"{what} is not available here")


@pytest.fixture(scope="module")
def server(database_url: str) -> Iterator[str]:
    with running_server(database_url) as base:
        yield base


@pytest.fixture(scope="module")
def issuer_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Auth on, with a token issuer whose endpoints are configured (discovery only)."""
    folder = tmp_path_factory.mktemp("issuer")
    env = {"SAMPLAN_AUTH_ENABLED": "true", "SAMPLAN_DATA_DIR": str(folder / "var"),
           "SAMPLAN_AUTHORIZATION_ENDPOINT": AUTHORIZE, "SAMPLAN_TOKEN_ENDPOINT": TOKEN}
    with running_server(f"sqlite+aiosqlite:///{folder / 'issuer.db'}", env=env,
                        log_dir=folder) as base:
        yield base


@pytest.fixture(scope="module")
def unconfigured_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """No SAMPLAN_PUBLIC_BASE_URL: links must come from the request itself (item 4)."""
    folder = tmp_path_factory.mktemp("unconfigured")
    with running_server(f"sqlite+aiosqlite:///{folder / 'links.db'}", log_dir=folder,
                        env={"SAMPLAN_PUBLIC_BASE_URL": ""}) as base:
        yield base


@pytest.fixture(scope="module")
def fhir_kit() -> Path:
    """fhir-kit-client from npm, in a folder of its own under var/test-tools."""
    entry = FHIR_KIT_DIR / "node_modules" / "fhir-kit-client" / "dist" / "index.js"
    if not entry.exists():
        npm = shutil.which("npm")
        if npm is None or shutil.which("node") is None:
            unavailable("npm and node (to run fhir-kit-client)")
        assert npm is not None
        FHIR_KIT_DIR.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [npm, "install", "--prefix", str(FHIR_KIT_DIR), "--no-audit", "--no-fund",
             "--no-save", "--loglevel=error", f"fhir-kit-client@{FHIR_KIT_VERSION}"],
            capture_output=True, text=True, timeout=300,
        )
        if done.returncode != 0 or not entry.exists():
            unavailable(f"fhir-kit-client from npm ({done.stderr[-500:]})")
    return FHIR_KIT_DIR


def fhir_kit_client(package: Path, *args: str) -> dict[str, Any]:
    node = shutil.which("node")
    assert node is not None
    done = subprocess.run([node, str(FHIR_KIT_SCRIPT), str(package), *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def body(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "resourceType"}


class TestFhirclient:
    """SMART on FHIR's Python client (``fhirclient``), as its README uses it."""

    def test_creates_reads_searches_and_pages(self, server: str) -> None:
        from fhirclient import client
        from fhirclient.models.careplan import CarePlan
        from fhirclient.models.patient import Patient

        smart = client.FHIRClient(settings={"app_id": "samplan-tests", "api_base": server})
        assert smart.prepare()  # fetched and parsed the CapabilityStatement
        assert smart.server.capabilityStatement.fhirVersion == "4.0.1"

        created = Patient(make_patient(pnr="191212121212")).create(smart.server)
        assert created is not None
        patient = Patient.read(created["id"], smart.server)
        assert patient.name[0].family == "Holm"
        for _ in range(3):
            CarePlan(make_careplan(patient_id=patient.id)).create(smart.server)

        found = Patient.where(struct={"identifier": f"{PNR_SYSTEM}|191212121212"})
        assert [p.id for p in found.perform_resources_iter(smart.server)] == [patient.id]
        paged = CarePlan.where(struct={"patient": patient.id, "_count": "1"})
        plans = list(paged.perform_resources_iter(smart.server))  # follows three pages
        assert len(plans) == 3
        assert len({p.id for p in plans}) == 3

    def test_finds_the_issuers_endpoints_in_the_capability_statement(
        self, issuer_server: str
    ) -> None:
        from fhirclient import client

        smart = client.FHIRClient(settings={
            "app_id": "samplan-tests", "api_base": issuer_server,
            "redirect_uri": "http://localhost:9999/callback", "scope": "launch/patient openid"})
        assert smart.prepare() is False  # no token yet: it knows it must authorize
        assert smart.authorize_url is not None
        assert smart.authorize_url.startswith(AUTHORIZE + "?")
        assert f"aud={issuer_server}".replace(":", "%3A").replace("/", "%2F") in (
            smart.authorize_url)


class TestFhirKitClient:
    """fhir-kit-client from npm, driven by a small Node script."""

    def test_creates_reads_searches_updates_and_posts_a_transaction(
        self, server: str, fhir_kit: Path
    ) -> None:
        result = fhir_kit_client(fhir_kit, "crud", server, "193803152341")
        assert result["fhirVersion"] == "4.0.1"
        assert result["read"] == result["patient"]
        assert result["found"] == [result["patient"]]
        assert len(result["plans"]) == 1
        assert result["updated"] == ["completed", "2"]
        assert result["transaction"] == ["201 Created"]

    def test_smart_auth_metadata_returns_the_issuers_endpoints(
        self, issuer_server: str, fhir_kit: Path
    ) -> None:
        result = fhir_kit_client(fhir_kit, "smart", issuer_server)
        assert result["authorizeUrl"] == AUTHORIZE
        assert result["tokenUrl"] == TOKEN


class TestFhirpy:
    """fhirpy beyond tests/e2e/test_server.py: the calls that need issue 14's other items."""

    async def test_get_or_create_finds_what_it_created(self, server: str) -> None:
        client = AsyncFHIRClient(server)
        patient = client.resource("Patient", **body(make_patient(pnr="194501011235")))
        search = client.resources("Patient").search(identifier=f"{PNR_SYSTEM}|194501011235")
        first, created = await search.get_or_create(patient)
        again, created_again = await search.get_or_create(
            client.resource("Patient", **body(make_patient(pnr="194501011235"))))
        assert created
        assert (again.id, created_again) == (first.id, False)

    async def test_count_asks_for_the_total_alone(self, server: str) -> None:
        client = AsyncFHIRClient(server)
        for pnr in ("194501011235", "193803152341"):
            await client.resource("Patient", **body(make_patient(pnr=pnr))).save()
        assert await client.resources("Patient").count() == 2

    async def test_elements_subsets_and_marks_the_result(self, server: str) -> None:
        client = AsyncFHIRClient(server)
        await client.resource("Patient", **body(make_patient())).save()
        [patient] = await client.resources("Patient").elements("identifier").fetch()
        assert "name" not in patient
        assert {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                "code": "SUBSETTED"} in [
            {k: t[k] for k in ("system", "code")} for t in patient["meta"]["tag"]]

    async def test_pages_through_a_server_it_calls_by_another_name(
        self, unconfigured_server: str
    ) -> None:
        base = unconfigured_server.replace("127.0.0.1", "localhost")
        client = AsyncFHIRClient(base)
        patient = client.resource("Patient", **body(make_patient()))
        await patient.save()
        for _ in range(3):
            await client.resource("CarePlan", **body(make_careplan(patient_id=patient.id))).save()
        plans = await client.resources("CarePlan").search(patient=patient.id).limit(1).fetch_all()
        assert len(plans) == 3
        with httpx.Client() as http:
            bundle = http.get(f"{base}/CarePlan", params={"_count": "1"}).json()
        assert all(link["url"].startswith(base) for link in bundle["link"])
