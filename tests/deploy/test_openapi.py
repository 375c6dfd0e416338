"""The published OpenAPI document (STYLE #16): committed, stable, FHIR-aware."""

from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Any

import pytest

from samplan.openapi_export import FHIR_JSON, SECURITY_SCHEME, export_document, render

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "openapi" / "openapi.json"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return export_document()


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in document["paths"].items()
            for method, op in item.items()]


def test_the_committed_file_is_what_the_app_publishes(document: dict[str, Any]) -> None:
    assert COMMITTED.exists(), "run `make openapi`"
    assert json.loads(COMMITTED.read_text()) == document, (
        "openapi/openapi.json differs from app.openapi(): run `make openapi` and review the diff")
    assert COMMITTED.read_text() == render(document)


def test_operation_ids_are_unique_and_explicit(document: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in _operations(document)]
    duplicates = [i for i, n in collections.Counter(ids).items() if n > 1]
    assert not duplicates
    # FastAPI's generated ids look like "read_fhir__resource_type___resource_id__get"
    assert not [i for i in ids if i.endswith(("_get", "_post", "_put", "_delete", "_patch"))
                and "__" in i]


def test_the_bearer_scheme_is_declared_and_required(document: dict[str, Any]) -> None:
    scheme = document["components"]["securitySchemes"][SECURITY_SCHEME]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    assert document["security"] == [{SECURITY_SCHEME: []}]
    public = {op["operationId"] for _, _, op in _operations(document) if op.get("security") == []}
    assert public == {"capabilities", "smart_configuration"}


def test_fhir_operations_speak_fhir_json(document: dict[str, Any]) -> None:
    for path, method, op in _operations(document):
        if not path.startswith("/fhir"):
            continue
        responses = op["responses"]
        for code in ("400", "401", "403", "404", "412", "415"):
            schema = responses[code]["content"][FHIR_JSON]["schema"]
            assert schema == {"$ref": "#/components/schemas/OperationOutcome"}, (path, code)
        success = [c for c in responses if c.startswith("2")]
        assert success, (path, method)
        if (method in ("post", "put") and op["operationId"] != "search_type_post"
                and "text/html" not in json.dumps(responses)):
            assert FHIR_JSON in op["requestBody"]["content"], (path, method)
    patch = document["paths"]["/fhir/{resource_type}/{resource_id}"]["patch"]
    assert "application/json-patch+json" in patch["requestBody"]["content"]


def test_interactions_and_operations_are_named(document: dict[str, Any]) -> None:
    by_id = {op["operationId"]: op for _, _, op in _operations(document)}
    assert by_id["read"]["x-fhir-interaction"] == "read"
    assert by_id["search_type"]["x-fhir-interaction"] == "search-type"
    assert by_id["create"]["responses"]["201"]["content"][FHIR_JSON]
    assert by_id["validate"]["x-fhir-operation"] == "$validate"
    assert by_id["subscription_status"]["x-fhir-operation"] == "$status"
    enum = by_id["read"]["parameters"][0]["schema"]["enum"]
    assert {"Patient", "CarePlan", "Subscription"} <= set(enum)


async def test_the_served_document_is_the_exported_one(document: dict[str, Any]) -> None:
    import httpx

    from samplan.main import create_app
    from samplan.settings import Settings

    app = create_app(Settings(environment="development"))
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        served = await client.get("/openapi.json")  # no lifespan: needs no database
    assert served.status_code == 200
    assert served.json() == document
