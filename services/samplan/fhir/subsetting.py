"""``_summary`` and ``_elements``: a resource cut to what the client asked for (issue 14, item 6).

As R4 defines them (search.html, "Summary" and "Elements"), for search, read and vread:

* ``_summary=true``: only the elements the base definition marks *summary*
  (``ElementDefinition.isSummary``), applied through the backbone elements the
  resource defines itself (``CarePlan.activity`` is not summary, so it goes;
  ``CareTeam.participant`` is, and keeps its own summary children). Data types
  (``HumanName``, ``Reference``...) are kept whole: their children are not
  elements of the resource's base definition, and R4 marks nearly all of them
  summary anyway.
* ``_summary=text``: ``text``, ``id``, ``meta`` and the top-level mandatory elements.
* ``_summary=data``: everything but ``text``.
* ``_summary=false``: the whole resource (no subsetting); ``count`` is search only
  (``fhir/search.py``).
* ``_elements=a,b``: the listed top-level elements (a choice element by its base
  name, ``deceased``, or one of its forms, ``deceasedBoolean``), plus the mandatory
  ones, which R4 says a server SHOULD always return, and ``resourceType``, ``id``
  and ``meta``. In a search it applies to the matches, not to ``_include``\\ d
  resources (R4: "The list of elements does not apply to included resources").

A subsetted resource carries the ``SUBSETTED`` tag of
``http://terminology.hl7.org/CodeSystem/v3-ObservationValue`` in ``meta.tag``, so it
is never taken for the whole resource (and written back as one). Unknown values
of either parameter, both together, or one given twice are a 400 naming it.

Where the summary and mandatory flags come from: the fhir.resources R4B models,
which the validator already uses. Each field there is generated from the
official StructureDefinition: ``summary_element_property`` from ``isSummary``,
``element_required`` (or a non-optional annotation) from ``min >= 1``. It is
the one machine-readable copy of the definitions installed with the service,
versioned with it, and R4B left the base resources we serve as R4 had them (a
test compares their elements with fhirpathpy's R4 model, and pins R4's summary
sets of Patient and CarePlan). A hand-written table would be a second copy to
keep right; fetching the specification's JSON at run time is not possible.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson
from fhir.resources.R4B import get_fhir_model_class

from samplan.fhir.errors import BadRequest

SUBSETTED_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
SUBSETTED_TAG: Final[dict[str, str]] = {
    "system": SUBSETTED_SYSTEM, "code": "SUBSETTED", "display": "subsetted"}
SummaryMode = Literal["true", "text", "data"]
SUMMARY_VALUES: Final = ("true", "text", "data", "count", "false")
#: Always kept: what makes a resource a resource (and carries the SUBSETTED tag).
ALWAYS: Final = frozenset({"resourceType", "id", "meta"})


@dataclass(frozen=True, slots=True)
class Definition:
    """What the base definition says of the elements of one type or backbone element,
    by JSON key (``_status``, a primitive's extensions, goes with ``status``)."""

    base: dict[str, str]            # JSON key -> element name (deceasedBoolean -> deceased)
    summary: frozenset[str]         # element names marked summary
    mandatory: frozenset[str]       # element names with min >= 1
    backbone: dict[str, type[Any]]  # element name -> the backbone element's model

    def element_of(self, key: str) -> str | None:
        return self.base.get(key[1:] if key.startswith("_") else key)


_DEFINITIONS: dict[type[Any], Definition] = {}


def definition_of(model: type[Any]) -> Definition:
    """The :class:`Definition` of a fhir.resources model (made once per model)."""
    found = _DEFINITIONS.get(model)
    if found is None:
        found = _DEFINITIONS[model] = _define(model)
    return found


def _define(model: type[Any]) -> Definition:
    base: dict[str, str] = {}
    summary: set[str] = set()
    mandatory: set[str] = set()
    backbone: dict[str, type[Any]] = {}
    for field in model.model_fields.values():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if not extra.get("element_property") or not field.alias:
            continue
        name = str(extra.get("one_of_many") or field.alias)
        base[field.alias] = name
        if extra.get("summary_element_property"):
            summary.add(name)
        if (extra.get("element_required") or extra.get("one_of_many_required")
                or field.is_required()):
            mandatory.add(name)
        nested = _model_of(field.annotation)
        if nested is not None and nested.__module__ == model.__module__:
            backbone[name] = nested
    return Definition(base, frozenset(summary), frozenset(mandatory), backbone)


def _model_of(annotation: Any) -> type[Any] | None:
    """The fhir.resources model an element's annotation names (``List[CarePlanActivityType]``
    -> ``CarePlanActivity``); None for primitives."""
    getter = getattr(annotation, "get_model_klass", None)
    if callable(getter):
        found = getter()
        return found if isinstance(found, type) else None
    for argument in typing.get_args(annotation):
        found = _model_of(argument)
        if found is not None:
            return found
    return None


def resource_definition(resource_type: str) -> Definition | None:
    try:
        return definition_of(get_fhir_model_class(resource_type))
    except (KeyError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class Subsetting:
    """One request's ``_summary`` (``true``, ``text``, ``data``) or ``_elements``."""

    summary: SummaryMode | None = None
    elements: frozenset[str] = frozenset()

    @property
    def applies_to_includes(self) -> bool:
        """``_summary`` shapes every resource of a Bundle; ``_elements`` only the matches."""
        return self.summary is not None

    def apply(self, content: bytes) -> bytes:
        """The stored bytes of one resource, subsetted and tagged."""
        body = orjson.loads(content)
        if not isinstance(body, dict):
            return content
        return orjson.dumps(self.apply_body(body))

    def apply_body(self, body: dict[str, Any]) -> dict[str, Any]:
        definition = resource_definition(str(body.get("resourceType")))
        if definition is None:  # not an R4 type we know: only what every resource has
            kept = {k: v for k, v in body.items() if k in ALWAYS}
        elif self.summary == "true":
            kept = _summary_of(body, definition, top=True)
        elif self.summary == "text":
            kept = _keep(body, definition, definition.mandatory | {"text"})
        elif self.summary == "data":
            kept = {k: v for k, v in body.items() if k not in ("text", "_text")}
        else:
            kept = _keep(body, definition, definition.mandatory | self.elements)
        return _tagged(kept)


def _keep(body: dict[str, Any], definition: Definition, names: frozenset[str]
          ) -> dict[str, Any]:
    """The top-level elements of ``body`` named in ``names`` (by element or JSON key)."""
    return {k: v for k, v in body.items()
            if k in ALWAYS or k in names or definition.element_of(k) in names}


def _summary_of(node: dict[str, Any], definition: Definition, *, top: bool = False
                ) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for key, value in node.items():
        if top and key in ALWAYS:
            kept[key] = value
            continue
        name = definition.element_of(key)
        if name is None or name not in definition.summary:
            continue
        nested = definition.backbone.get(name)
        if nested is not None and not key.startswith("_"):
            inner = definition_of(nested)
            value = ([_summary_of(v, inner) if isinstance(v, dict) else v for v in value]
                     if isinstance(value, list)
                     else _summary_of(value, inner) if isinstance(value, dict) else value)
        kept[key] = value
    return kept


def _tagged(body: dict[str, Any]) -> dict[str, Any]:
    meta = body.get("meta")
    meta = dict(meta) if isinstance(meta, dict) else {}
    tags = [t for t in meta.get("tag") or () if isinstance(t, dict)]
    if not any(t.get("system") == SUBSETTED_SYSTEM and t.get("code") == "SUBSETTED"
               for t in tags):
        tags.append(dict(SUBSETTED_TAG))
    meta["tag"] = tags
    if "meta" in body:
        body = {**body, "meta": meta}
        return body
    # meta goes right after id, where stored resources keep it
    out: dict[str, Any] = {}
    for key, value in body.items():
        out[key] = value
        if key == "id":
            out["meta"] = meta
    out.setdefault("meta", meta)
    return out


# ------------------------------------------------------------------------------ parsing


def parse_summary(raw: str, *, search: bool) -> str:
    """A ``_summary`` value (``count`` only in a search), else a 400 naming it."""
    allowed = SUMMARY_VALUES if search else tuple(v for v in SUMMARY_VALUES if v != "count")
    if raw not in allowed:
        raise BadRequest(f"_summary must be one of {', '.join(allowed)}, not {raw!r}.",
                         ["_summary"])
    return raw


def parse_elements(resource_type: str, raw: str) -> frozenset[str]:
    """The element names of ``_elements``: top-level elements of the type (base name or
    choice form), else a 400 naming the parameter."""
    names = [n.strip() for n in raw.split(",")]
    if not raw.strip() or any(not n for n in names):
        raise BadRequest("_elements must list element names, separated by commas.",
                         ["_elements"])
    definition = resource_definition(resource_type)
    known = set(ALWAYS)
    if definition is not None:
        known |= set(definition.base) | set(definition.base.values())
    unknown = [n for n in names if n not in known]
    if unknown:
        hint = (" R4 lists top-level elements only; excluding with '-' is not R4."
                if any("." in n or n.startswith("-") for n in unknown) else "")
        raise BadRequest(f"_elements: {', '.join(repr(n) for n in unknown)} is no element of "
                         f"{resource_type}.{hint}", ["_elements"])
    return frozenset(names)


def subsetting(resource_type: str, summary: str | None, elements: str | None
               ) -> Subsetting | None:
    """The :class:`Subsetting` of one ``_summary`` and one ``_elements`` value (either
    may be None); None when the whole resource is asked for."""
    if summary is not None and elements is not None and summary != "false":
        raise BadRequest("_summary and _elements cannot be combined: ask for one of them.",
                         ["_summary", "_elements"])
    if elements is not None:
        return Subsetting(elements=parse_elements(resource_type, elements))
    if summary in ("true", "text", "data"):
        return Subsetting(summary=summary)  # type: ignore[arg-type]
    return None


def read_subsetting(resource_type: str, params: list[tuple[str, str]]) -> Subsetting | None:
    """``_summary`` / ``_elements`` of a read or vread (other parameters are left alone)."""
    summary = single(params, "_summary")
    elements = single(params, "_elements")
    if summary is not None:
        parse_summary(summary, search=False)
    return subsetting(resource_type, summary, elements)


def single(params: list[tuple[str, str]], name: str) -> str | None:
    """The one value of a parameter that may be given once (None when absent), else a 400."""
    values = [v for k, v in params if k == name]
    if len(values) > 1:
        raise BadRequest(f"{name} may be given once.", [name])
    return values[0] if values else None
