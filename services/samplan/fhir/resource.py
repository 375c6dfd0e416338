"""Turning request bytes into a checked resource, and a checked resource into the bytes we store.

Validation happens once, on write, with the fhir.resources R4B models (the
element names and types of R4 for every type we serve). What we store and
serve is the client's own JSON with ``id`` and ``meta`` set by the server,
serialised once: the read path never parses or re-dumps it (DESIGN.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pydantic
from fhir.resources.R4B import get_fhir_model_class

from samplan.fhir.errors import BadRequest, Issue, NotFound, Unprocessable
from samplan.fhir.registry import REGISTRY

ID_PATTERN = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")

# Checks run on every write after the R4 structure is known good. Each returns
# the issues it found (empty when fine) and may normalise the resource in place
# (e.g. personnummer to 12 digits). Profiles and identifiers register here.
WriteCheck = Callable[[dict[str, Any]], list[Issue]]
WRITE_CHECKS: list[WriteCheck] = []

_MODEL_CACHE: dict[str, type[pydantic.BaseModel]] = {}


def model_class(resource_type: str) -> type[pydantic.BaseModel]:
    cls = _MODEL_CACHE.get(resource_type)
    if cls is None:
        cls = get_fhir_model_class(resource_type)
        _MODEL_CACHE[resource_type] = cls
    return cls


def parse_json(body: bytes, *, max_depth: int = 64) -> Any:
    """Decode a request body; malformed JSON or absurd nesting is a 400."""
    if not body.strip():
        raise BadRequest("The request body is empty; a FHIR resource was expected.")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}") from None
    if _depth_exceeds(data, max_depth):
        raise BadRequest(f"The JSON is nested deeper than {max_depth} levels.")
    return data


def _depth_exceeds(data: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, dict | list))
    return False


def require_resource(data: Any, expected_type: str | None = None) -> dict[str, Any]:
    """The body must be a JSON object naming a type we serve (and the URL's type, if any)."""
    if not isinstance(data, dict):
        raise BadRequest("The body must be a JSON object holding a FHIR resource.")
    resource_type = data.get("resourceType")
    if not isinstance(resource_type, str):
        raise BadRequest("The resource has no resourceType.", ["resourceType"])
    if expected_type is not None and resource_type != expected_type:
        raise BadRequest(
            f"resourceType {resource_type!r} does not match the URL's type {expected_type!r}.",
            [f"{resource_type}.resourceType" if resource_type else "resourceType"],
        )
    if resource_type not in REGISTRY:
        raise NotFound(f"Resource type {resource_type!r} is not supported by this server.")
    return data


def validate_resource(data: Any, expected_type: str | None = None) -> dict[str, Any]:
    """Check a resource against R4 and the registered write checks; return it, maybe normalised.

    Unknown elements are a 400 (the JSON does not have the R4 shape); wrong
    values are a 422 (the shape is right, the content is not). Every issue
    names its element as a FHIRPath.
    """
    resource = require_resource(data, expected_type)
    resource_type = resource["resourceType"]
    rid = resource.get("id")
    if rid is not None and (not isinstance(rid, str) or not ID_PATTERN.match(rid)):
        raise BadRequest(
            "id must be 1-64 characters of A-Z, a-z, 0-9, '-' and '.'.",
            [f"{resource_type}.id"],
            code="value",
        )
    model = model_class(resource_type)
    try:
        instance = model.model_validate(resource)
    except pydantic.ValidationError as exc:
        issues = [_issue_from_pydantic(resource_type, err) for err in exc.errors()]
        structural = any(i.code == "structure" for i in issues)
        error_cls = BadRequest if structural else Unprocessable
        raise error_cls.from_issues(issues) from None
    issues = list(_enum_issues(instance, resource_type))
    if issues:
        raise Unprocessable.from_issues(issues)
    for check in WRITE_CHECKS:
        issues.extend(check(resource))
    if issues:
        errors = [i for i in issues if i.severity in ("error", "fatal")]
        if errors:
            raise Unprocessable.from_issues(errors)
    return resource


def fhirpath(resource_type: str, loc: tuple[int | str, ...]) -> str:
    path = resource_type
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("__root__", "function-after[validate_extension(), ...]"):
            continue
        else:
            path += f".{part}"
    return path


def _issue_from_pydantic(resource_type: str, err: Any) -> Issue:
    loc = tuple(p for p in err.get("loc", ()) if not (isinstance(p, str) and "[" in p))
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        name = loc[-1] if loc else "?"
        return Issue(
            code="structure",
            diagnostics=f"Unknown element {name!r}: R4 does not define it here.",
            expression=(fhirpath(resource_type, loc),),
        )
    code = "required" if "missing" in kind else "value"
    message = str(err.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    return Issue(code=code, diagnostics=message, expression=(fhirpath(resource_type, loc),))


def _enum_issues(model: pydantic.BaseModel, path: str) -> Iterator[Issue]:
    """fhir.resources knows each code element's allowed values but does not check them."""
    for name, field in type(model).model_fields.items():
        value = getattr(model, name, None)
        if value is None:
            continue
        alias = field.alias or name
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        allowed = extra.get("enum_values")
        items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
        for index, item in items:
            item_path = f"{path}.{alias}" if index is None else f"{path}.{alias}[{index}]"
            if isinstance(item, pydantic.BaseModel):
                yield from _enum_issues(item, item_path)
            elif (
                isinstance(allowed, list)
                and "+" not in allowed  # a list fhir.resources cut short: nothing to check
                and isinstance(item, str)
                and item not in allowed
            ):
                yield Issue(
                    code="code-invalid",
                    diagnostics=f"{item!r} is not one of {', '.join(map(str, allowed))}.",
                    expression=(item_path,),
                )


def instant(ts: datetime) -> str:
    """A FHIR instant in UTC with microseconds, e.g. 2026-11-23T16:40:00.123456Z."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def stamp(resource: dict[str, Any], *, resource_id: str, version_id: int, at: datetime) -> bytes:
    """The bytes we store and serve: resourceType, id and meta first, the client's JSON after."""
    meta = {
        k: v
        for k, v in (resource.get("meta") or {}).items()
        if k not in ("versionId", "lastUpdated")
    }
    out: dict[str, Any] = {
        "resourceType": resource["resourceType"],
        "id": resource_id,
        "meta": {"versionId": str(version_id), "lastUpdated": instant(at), **meta},
    }
    for key, value in resource.items():
        if key not in out:
            out[key] = value
    return orjson.dumps(out)
