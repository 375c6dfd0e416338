"""The published OpenAPI document, fuzzed against a real server with a valid token.

schemathesis generates requests for every operation from ``openapi/openapi.json``
(a few examples each, so this stays well under a minute): no answer is a 5xx,
and every error is an OperationOutcome. The HTML portal is left out: its
errors are pages for people.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from support.server import running_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

DOCUMENT = json.loads(
    (Path(__file__).resolve().parents[2] / "openapi" / "openapi.json").read_text())
DOCUMENT["paths"] = {p: v for p, v in DOCUMENT["paths"].items() if not p.startswith("/portal")}
schema = schemathesis.openapi.from_dict(DOCUMENT)

ORG_HSA = "SE2321000073-2001"


@dataclass(frozen=True)
class Live:
    origin: str
    token: str


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    from samplan.security.devkeys import load_or_create_dev_key
    from samplan.settings import Settings

    work = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite+aiosqlite:///{work}/fuzz.db"
    env = {"SAMPLAN_AUTH_ENABLED": "true", "SAMPLAN_DATA_DIR": str(work),
           "SAMPLAN_LOG_LEVEL": "WARNING"}
    with running_server(url, env=env, log_dir=work) as base:
        defaults = Settings()
        key = load_or_create_dev_key(work)
        token = key.mint(scopes="system/*.cruds user/AuditEvent.rs",
                         issuer=os.environ.get("SAMPLAN_TOKEN_ISSUER", defaults.token_issuer),
                         audience=os.environ.get("SAMPLAN_TOKEN_AUDIENCE",
                                                 defaults.token_audience),
                         org=ORG_HSA, user="SE2321000073-1001", lifetime_s=3600)
        yield Live(base.removesuffix("/fhir"), token)


@schema.parametrize()
@settings(max_examples=4, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_5xx_and_every_error_is_an_operation_outcome(case: schemathesis.Case,
                                                        live: Live) -> None:
    response = case.call(base_url=live.origin,
                         headers={"Authorization": f"Bearer {live.token}"}, timeout=30)
    assert response.status_code < 500, (case.as_curl_command(), response.text[:500])
    if response.status_code >= 400:
        content_type = response.headers.get("content-type", [""])
        assert content_type[0].startswith("application/fhir+json"), \
            (case.as_curl_command(), content_type)
        assert response.json()["resourceType"] == "OperationOutcome", case.as_curl_command()
