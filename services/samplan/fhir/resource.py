"""Turning request bytes into a checked resource, and a checked resource into the bytes we store.

Validation happens once, on write, with the fhir.resources R4B models (the
element names and types of R4 for every type we serve). What we store and
serve is the client's own JSON with ``id`` and ``meta`` set by the server,
serialised once: the read path never parses or re-dumps it (DESIGN.md).
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
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
    """Whether an object or array lies deeper than ``limit`` (the body itself is level 1)."""

    def deeper(node: dict[str, Any] | list[Any], depth: int) -> bool:
        if depth > limit:
            return True
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list) and deeper(child, depth + 1):
                return True
        return False

    if not isinstance(data, dict | list):
        return limit < 1
    return deeper(data, 1)  # recursion stops at limit + 1 levels


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


def validate_resource(data: Any, expected_type: str | None = None, *,
                      stored: bytes | None = None) -> dict[str, Any]:
    """Check a resource against R4 and the registered write checks; return it, maybe normalised.

    Unknown elements are a 400 (the JSON does not have the R4 shape); wrong
    values are a 422 (the shape is right, the content is not). Every issue
    names its element as a FHIRPath.

    ``stored``: the stored JSON of the version this one replaces (an update, a patch).
    What it holds passed this check when it was written, so an element sent back exactly
    as stored is set aside as one found valid before (see below): a client's GET,
    change, PUT has only its change checked by fhir.resources, in any process.
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
    parts = _part_digests(resource, resource_type, model)
    as_stored = _stored_digests(stored, resource_type, model) if stored and parts else None
    if not _valid_setting_aside_known_parts(resource, resource_type, model, parts, as_stored):
        _check_r4(resource, resource_type, model)
    _remember_valid(d for part in parts.values() for d in part)
    issues: list[Issue] = []
    for check in WRITE_CHECKS:
        issues.extend(check(resource))
    if issues:
        errors = [i for i in issues if i.severity in ("error", "fatal")]
        if errors:
            raise Unprocessable.from_issues(errors)
    return resource


def _check_r4(resource: dict[str, Any], resource_type: str,
              model: type[pydantic.BaseModel]) -> None:
    """The R4 structure and codes of the whole resource, with fhir.resources."""
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


# -- skipping what was already found valid (issue 7) ----------------------------------------
#
# A client updating a resource sends it back whole, most of it as it was: the R4 check
# of a CarePlan (~60 nested models in fhir.resources) is the costliest part of a write.
# How fhir.resources checks a resource's element depends on that element's own JSON
# and nothing else: each is validated as its own model; what the resource itself
# checks beyond that is which elements are present (required elements, one of a
# choice, no unknown ones) and primitive values with their ``_x`` siblings. So a
# complex element whose exact JSON, at the same place, passed before (and had no
# code outside its value set) passes again: it is set aside, and the rest of the
# resource is checked with fhir.resources as usual. So is each item of a list of
# objects (each is validated by itself): the items not known are checked as the list,
# the known ones left out of it. Set aside are only elements that are optional, not
# part of a choice, and objects or lists of objects, and only when every key of the
# resource is a JSON name of its model; when the rest fails, the whole resource is
# checked again, so errors are exactly those of a full check.

_KNOWN_VALID: OrderedDict[bytes, None] = OrderedDict()
_KNOWN_VALID_MAX = 20_000
_SETTABLE_ASIDE: dict[str, tuple[frozenset[str], frozenset[str]]] = {}


def _settable_aside(
    resource_type: str, model: type[pydantic.BaseModel]
) -> tuple[frozenset[str], frozenset[str]]:
    """(every JSON name of the model, those of the elements that may be set aside)."""
    found = _SETTABLE_ASIDE.get(resource_type)
    if found is None:
        names: set[str] = {"resourceType"}
        aside: set[str] = set()
        for name, field in model.model_fields.items():
            alias = field.alias or name
            names.add(alias)
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            if not (field.is_required() or extra.get("one_of_many") or alias.startswith("_")
                    or name.endswith("__ext") or alias == "resourceType"):
                aside.add(alias)
        found = _SETTABLE_ASIDE[resource_type] = (frozenset(names), frozenset(aside))
    return found


# A reference's id does not change whether an element passes the R4 check (a reference is
# a string to fhir.resources; its target is the profiles' and the store's business), so an
# element is known valid whatever ids its references carry: a journal's transaction names
# its entries by fresh urn:uuid ids, a note's plan a new patient, and their elements are
# otherwise the ones seen before. Only the id is replaced, by one of the same shape, in
# ``"reference":"Type/id"`` and ``"reference":"urn:uuid:..."`` as orjson writes them (a
# quote inside a string value is escaped there, so none can match); the rest is kept.
_REFERENCE_IDS = re.compile(
    rb'"reference":"(?:(urn:uuid:)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
    rb'|([A-Z][A-Za-z]{1,63}/)[A-Za-z0-9\-.]{1,64})"')


def _same_shape_id(match: re.Match[bytes]) -> bytes:
    if match.group(1):
        return b'"reference":"urn:uuid:00000000-0000-0000-0000-000000000000"'
    return b'"reference":"' + match.group(2) + b'x"'


def _part_digests(
    resource: dict[str, Any], resource_type: str, model: type[pydantic.BaseModel]
) -> dict[str, tuple[bytes, ...]]:
    """The digests of each element of ``resource`` that could be set aside, by JSON name:
    one for an object, one per item for a list of objects (an item is checked by itself,
    so the items of a list that were seen before are set aside and the new ones checked:
    a plan's activities, of which a new note changes one)."""
    names, aside = _settable_aside(resource_type, model)
    if not resource.keys() <= names:
        return {}  # an unknown element, or a field by its Python name: check it all
    digests: dict[str, tuple[bytes, ...]] = {}
    for key, value in resource.items():
        if key not in aside:
            continue
        if isinstance(value, dict):
            digests[key] = (_digest(f"{resource_type}.{key}", value),)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            place = f"{resource_type}.{key}[]"
            digests[key] = tuple(_digest(place, item) for item in value)
    return digests


def _digest(place: str, value: Any) -> bytes:
    text = f"{place}\0".encode() + _REFERENCE_IDS.sub(_same_shape_id, orjson.dumps(value))
    return hashlib.blake2b(text, digest_size=20).digest()


def _stored_digests(
    stored: bytes, resource_type: str, model: type[pydantic.BaseModel]
) -> frozenset[bytes]:
    """The digests of the parts of a stored version (:func:`_part_digests`)."""
    try:
        body = orjson.loads(stored)
    except orjson.JSONDecodeError:
        return frozenset()
    if not isinstance(body, dict) or body.get("resourceType") != resource_type:
        return frozenset()
    return frozenset(d for part in _part_digests(body, resource_type, model).values()
                     for d in part)


def _valid_setting_aside_known_parts(
    resource: dict[str, Any], resource_type: str, model: type[pydantic.BaseModel],
    parts: dict[str, tuple[bytes, ...]], as_stored: frozenset[bytes] | None = None,
) -> bool:
    """Whether ``resource`` passes, found by checking only what was not found valid before
    (or is as ``as_stored`` holds it): the elements and list items not known, in a
    resource of their own; False when nothing is known, or when the rest does not pass
    (check it all, then)."""
    rest: dict[str, Any] = {}
    set_aside = False
    for key, value in resource.items():
        digests = parts.get(key)
        if digests is None:
            rest[key] = value
            continue
        known = [d in _KNOWN_VALID or (as_stored is not None and d in as_stored)
                 for d in digests]
        if all(known):
            set_aside = True
        elif any(known):  # a list: the items not known
            set_aside = True
            rest[key] = [item for item, seen in zip(value, known, strict=True) if not seen]
        else:
            rest[key] = value
    if not set_aside:
        return False
    try:
        instance = model.model_validate(rest)
    except pydantic.ValidationError:
        return False
    return next(_enum_issues(instance, resource_type), None) is None


def _remember_valid(digests: Iterable[bytes]) -> None:
    for digest in digests:
        if digest in _KNOWN_VALID:
            _KNOWN_VALID.move_to_end(digest)
        else:
            _KNOWN_VALID[digest] = None
            if len(_KNOWN_VALID) > _KNOWN_VALID_MAX:
                _KNOWN_VALID.popitem(last=False)


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


# (field name, JSON name, the allowed codes if it is a code element with a full list)
_Field = tuple[str, str, list[Any] | None]
# per model class: its fields, and each field's place among them
_FIELDS: dict[type[pydantic.BaseModel], tuple[tuple[_Field, ...], dict[str, int]]] = {}


def _fields(cls: type[pydantic.BaseModel]) -> tuple[tuple[_Field, ...], dict[str, int]]:
    """What :func:`_enum_issues` needs of a model class's fields, worked out once per class."""
    found = _FIELDS.get(cls)
    if found is None:
        fields: list[_Field] = []
        for name, field in cls.model_fields.items():
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            allowed = extra.get("enum_values")
            checked = isinstance(allowed, list) and "+" not in allowed  # "+": cut short
            fields.append((name, field.alias or name,
                           allowed if isinstance(allowed, list) and checked else None))
        found = _FIELDS[cls] = (tuple(fields), {f[0]: i for i, f in enumerate(fields)})
    return found


def _enum_issues(model: pydantic.BaseModel, path: str) -> Iterator[Issue]:
    """fhir.resources knows each code element's allowed values but does not check them.

    Only the fields the JSON gave are looked at (``model_fields_set``; every other
    field of a FHIR model is None), in the order of the model's fields.
    """
    fields, place = _fields(type(model))
    values = model.__dict__  # the field values (what getattr would answer, without the lookup)
    for i in sorted(place[n] for n in model.model_fields_set if n in place):
        name, alias, allowed = fields[i]
        value = values.get(name)
        if value is None:
            continue
        items = enumerate(value) if isinstance(value, list) else ((None, value),)
        for index, item in items:
            if isinstance(item, pydantic.BaseModel):
                item_path = f"{path}.{alias}" if index is None else f"{path}.{alias}[{index}]"
                yield from _enum_issues(item, item_path)
            elif allowed is not None and isinstance(item, str) and item not in allowed:
                item_path = f"{path}.{alias}" if index is None else f"{path}.{alias}[{index}]"
                yield Issue(
                    code="code-invalid",
                    diagnostics=f"{item!r} is not one of {', '.join(map(str, allowed))}.",
                    expression=(item_path,),
                )


def instant(ts: datetime) -> str:
    """A FHIR instant in UTC with microseconds, e.g. 2026-11-23T16:40:00.123456Z."""
    u = ts.astimezone(UTC)  # formatted by hand: strftime's %f is parsed in Python each call
    return (f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:"
            f"{u.second:02d}.{u.microsecond:06d}Z")


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
