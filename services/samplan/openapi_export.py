"""The published OpenAPI document: FastAPI's, plus what a FHIR client needs to know.

FastAPI cannot see that the FHIR routes read and write ``application/fhir+json``
themselves, so :func:`describe` adds, per operation: the request body and its
media types, the success response (a resource, a Bundle or Parameters), every
error as an OperationOutcome, the FHIR interaction or operation it implements
(``x-fhir-interaction`` / ``x-fhir-operation``), the registered resource types
as the ``resource_type`` enum, and the SMART bearer-token security scheme
(public operations say ``security: []``).

``samplan openapi`` (``make openapi``) writes it to ``openapi/openapi.json``;
``tests/deploy/test_openapi.py`` fails when that file differs from the app's.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Final

from fastapi import FastAPI

FHIR_JSON: Final = "application/fhir+json"
DEFAULT_PATH: Final = Path("openapi/openapi.json")
SECURITY_SCHEME: Final = "smartBearer"

#: operationId -> FHIR RESTful interaction (https://hl7.org/fhir/R4/http.html)
INTERACTIONS: Final[dict[str, str]] = {
    "capabilities": "capabilities", "batch_or_transaction": "batch/transaction",
    "history_system": "history-system", "search_type": "search-type",
    "search_type_post": "search-type", "create": "create", "history_type": "history-type",
    "read": "read", "update": "update", "patch": "patch", "delete": "delete",
    "history_instance": "history-instance", "vread": "vread",
}
PUBLIC_OPERATIONS: Final = frozenset({"capabilities", "smart_configuration"})
BUNDLE_OPERATIONS: Final = frozenset({
    "batch_or_transaction", "history_system", "search_type", "search_type_post",
    "history_type", "history_instance", "subscription_events", "subscription_events_post",
})
ERRORS: Final[dict[str, str]] = {
    "400": "Bad request: malformed JSON, invalid resource or search parameter",
    "401": "No valid bearer token (WWW-Authenticate says why)",
    "403": "The token's scopes or reach do not allow this",
    "404": "Unknown resource type, id or route",
    "405": "Method not allowed on this route",
    "409": "Conflict: a concurrent write won",
    "410": "Gone: the resource was deleted",
    "412": "Precondition failed: If-Match did not match, or a conditional matched several",
    "413": "Request body too large",
    "415": "Unsupported media type (send application/fhir+json)",
    "422": "Unprocessable: the resource breaks a profile or business rule",
}

SCHEMAS: Final[dict[str, Any]] = {
    "Resource": {
        "type": "object", "description": "Any FHIR R4 resource (JSON representation).",
        "required": ["resourceType"],
        "properties": {"resourceType": {"type": "string"}, "id": {"type": "string"},
                       "meta": {"type": "object"}},
        "additionalProperties": True,
    },
    "Bundle": {
        "type": "object", "description": "A FHIR Bundle (searchset, history, batch-response...).",
        "required": ["resourceType", "type"],
        "properties": {"resourceType": {"type": "string", "enum": ["Bundle"]},
                       "type": {"type": "string"}, "total": {"type": "integer"},
                       "link": {"type": "array", "items": {"type": "object"}},
                       "entry": {"type": "array", "items": {"type": "object"}}},
        "additionalProperties": True,
    },
    "OperationOutcome": {
        "type": "object", "description": "Every error is answered with an OperationOutcome.",
        "required": ["resourceType", "issue"],
        "properties": {
            "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
            "issue": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["severity", "code"],
                "properties": {"severity": {"type": "string"}, "code": {"type": "string"},
                               "diagnostics": {"type": "string"},
                               "expression": {"type": "array", "items": {"type": "string"}}},
            }},
        },
        "additionalProperties": True,
    },
    "JsonPatch": {
        "type": "array", "description": "RFC 6902 JSON Patch operations.",
        "items": {"type": "object", "required": ["op", "path"],
                  "properties": {"op": {"type": "string"}, "path": {"type": "string"},
                                 "value": {}, "from": {"type": "string"}}},
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _fhir_content(schema: str) -> dict[str, Any]:
    return {FHIR_JSON: {"schema": _ref(schema)}, "application/json": {"schema": _ref(schema)}}


def _request_body(method: str, operation_id: str) -> dict[str, Any] | None:
    if method == "patch":
        return {"required": True, "content": {
            "application/json-patch+json": {"schema": _ref("JsonPatch")}}}
    if operation_id == "search_type_post":
        return {"required": False, "content": {"application/x-www-form-urlencoded": {
            "schema": {"type": "object", "additionalProperties": {"type": "string"}}}}}
    if method in ("post", "put"):  # $status/$events take an optional Parameters body
        return {"required": not operation_id.startswith("subscription_"),
                "content": _fhir_content("Resource")}
    return None


def _success(method: str, operation_id: str) -> tuple[str, dict[str, Any]]:
    if method == "delete":
        return "200", {"description": "Deleted (an informational OperationOutcome or empty)"}
    code = "201" if operation_id == "create" else "200"
    schema = "Bundle" if operation_id in BUNDLE_OPERATIONS else "Resource"
    return code, {"description": "Success", "content": _fhir_content(schema)}


def describe(document: dict[str, Any], resource_types: list[str]) -> dict[str, Any]:
    """The FHIR-aware document built from FastAPI's ``document`` (which is not changed)."""
    doc = copy.deepcopy(document)
    doc["info"]["description"] = (
        "FHIR R4 server for the documented agreement (dokumenterad överenskommelse). "
        "Requests and responses are application/fhir+json; every error is an "
        "OperationOutcome. Authenticate with a SMART on FHIR bearer token (JWT) whose "
        "scopes allow the interaction; see /.well-known/smart-configuration."
    )
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.update(copy.deepcopy(SCHEMAS))
    components["securitySchemes"] = {SECURITY_SCHEME: {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "SMART App Launch v2 access token (scopes like user/*.rs, patient/*.rs).",
    }}
    doc["security"] = [{SECURITY_SCHEME: []}]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            operation_id = op["operationId"]
            fhir = path.startswith("/fhir")
            if operation_id in PUBLIC_OPERATIONS:
                op["security"] = []
            for parameter in op.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] == "resource_type":
                    parameter["schema"] = {"type": "string", "enum": resource_types,
                                           "title": "Resource Type"}
            if not fhir:
                continue
            if operation_id in INTERACTIONS:
                op["x-fhir-interaction"] = INTERACTIONS[operation_id]
            segment = next((s for s in path.split("/") if s.startswith("$")), None)
            if segment:
                op["x-fhir-operation"] = segment
            body = _request_body(method, operation_id)
            if body is not None and "requestBody" not in op:
                op["requestBody"] = body
            responses = op["responses"]
            responses.pop("422", None)
            success = responses.get("200", {})
            html = "text/html" in success.get("content", {})
            if not html:
                responses.pop("200", None)
                code, response = _success(method, operation_id)
                responses[code] = response
            for code, text in ERRORS.items():
                responses[code] = {"description": text,
                                   "content": {FHIR_JSON: {"schema": _ref("OperationOutcome")}}}
    if not any("HTTPValidationError" in json.dumps(v) for v in doc["paths"].values()):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
    return doc


def install(app: FastAPI) -> None:
    """Serve :func:`describe`'s document at /openapi.json (built once per app)."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from samplan.fhir import conformance
            from samplan.fhir.registry import REGISTRY
            from samplan.subscriptions.service import register_types

            # the same enum whether or not a lifespan registered these already
            conformance.register_conformance_types()
            register_types()
            base = get_openapi(title=app.title, version=app.version, summary=app.summary,
                               description=app.description, routes=app.routes)
            app.openapi_schema = describe(base, sorted(REGISTRY))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def render(document: dict[str, Any]) -> str:
    """The committed form: sorted keys, two-space indent, trailing newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def export_document() -> dict[str, Any]:
    """The document of an app built with default settings (no database is touched)."""
    from samplan.main import create_app
    from samplan.settings import Settings

    return create_app(Settings(environment="development")).openapi()
