"""Our FHIR profiles: loaded from ``fhir_profiles/``, listed, served, and enforced on write.

The StructureDefinitions in ``fhir_profiles/`` are the single statement of what
a documented agreement looks like in FHIR. This module reads them and enforces
exactly what their ``differential`` says, generically, so that adding an element
rule to a StructureDefinition enforces it without new code:

* cardinality (``min``/``max``) of every differential element, nested paths and
  slices included (a child's ``min`` applies wherever its parent is present);
* ``fixed[x]`` (equal) and ``pattern[x]`` (the instance contains the pattern);
* ``binding`` with strength ``required`` (error) or ``extensible`` (warning),
  against value sets expanded from ``fhir_profiles/`` (see :mod:`.terminology`);
* ``constraint`` (invariants), evaluated as FHIRPath with fhirpathpy; ``%resource``
  is the resource being validated;
* ``type``: the resource type a Reference points at (``targetProfile``), the
  datatype or extension profile an element must conform to (``profile``), and
  the allowed types of a choice element (``value[x]``);
* ``slicing`` with ``value`` and ``pattern`` discriminators (extensions are
  sliced by ``url`` without saying so), ``open`` or ``closed``.

It is not a general FHIR validator: base R4 structure is checked by
``fhir.resources`` before this runs, and a differential element that says
nothing of the above is documentation only. What the differential uses that
this module cannot enforce (a discriminator type, a value set filter, a
FHIRPath function fhirpathpy lacks, a syntax error) is refused when the
profiles are loaded, so nothing is silently unchecked. Extensions of ours are
also checked against their definition wherever they occur, sliced or not.

Each violation is an :class:`~samplan.fhir.errors.Issue` with the FHIRPath of the
element at fault in this instance (``CareTeam.participant[1].role[0]``); choice
elements are written ``value.ofType(boolean)``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from samplan.fhir.errors import Issue
from samplan.fhir.fhirpath import (
    PRIMITIVE_TYPES,
    FhirPathError,
    Invariant,
    compile_invariant,
    type_of,
)
from samplan.fhir.terminology import Terminology, TerminologyError, canonical_url

FHIR_BASE = "http://hl7.org/fhir/StructureDefinition/"
"""Canonical prefix of the R4 base definitions (``FHIR_BASE + "Patient"``)."""

_DISCRIMINATORS = frozenset({"value", "pattern"})
_CLEAN_MAX = 20_000
# What makes an invariant depend on more than the value it is evaluated on.
_BEYOND_THE_VALUE = ("%resource", "%rootResource", "now()", "today()", "timeOfDay()")
_EXTENSION_ELEMENTS = frozenset({"extension", "modifierExtension"})
_REFERENCE = re.compile(
    r"(?:^|/)(?P<type>[A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[A-Za-z0-9\-.]{1,64})?$"
)

Json = Any
"""A decoded JSON value (dict, list, str, int, float, bool or None)."""


class ProfileError(ValueError):
    """A conformance resource in ``fhir_profiles/`` that cannot be loaded or enforced as written."""


@dataclass(frozen=True, slots=True)
class _Constraint:
    key: str
    severity: str
    human: str
    invariant: Invariant


@dataclass(frozen=True, slots=True)
class _SliceKey:
    """What an item must carry to belong to a slice: ``value`` at ``path`` (``$this``: the item)."""

    path: str
    value: Json
    exact: bool


@dataclass(slots=True)
class _Node:
    """One element of a differential, with the elements below it and its slices.

    Elements the differential only implies (``CarePlan.activity`` when it
    constrains ``CarePlan.activity.detail``) are nodes with an empty definition.
    """

    id: str
    path: str
    name: str
    element: dict[str, Any] = field(default_factory=dict)
    children: dict[str, _Node] = field(default_factory=dict)
    slices: dict[str, _Node] = field(default_factory=dict)
    # Filled in by ProfileRegistry._compile once every resource is known:
    min: int = 0
    max: int | None = None
    fixed: tuple[str, Json] | None = None
    pattern: tuple[str, Json] | None = None
    binding: tuple[str, str] | None = None
    constraints: list[_Constraint] = field(default_factory=list)
    type_profiles: list[str] = field(default_factory=list)
    target_types: frozenset[str] = frozenset()
    choice_types: frozenset[str] = frozenset()
    slicing_closed: bool = False
    slice_keys: list[_SliceKey] = field(default_factory=list)
    fhirpath_type: str | None = None
    # What its rules find depends on its own JSON alone (no %resource, no clock):
    alone: bool = False
    # is_choice and json_name, worked out once (they are asked for every element checked)
    _choice: bool = field(init=False, default=False)
    _key: str = field(init=False, default="")

    def __post_init__(self) -> None:
        self._choice = self.name.endswith("[x]")
        self._key = self.name.removesuffix("[x]")

    @property
    def is_choice(self) -> bool:
        return self._choice

    @property
    def json_name(self) -> str:
        """The JSON property (for a choice, its prefix: ``value`` of ``value[x]``)."""
        return self._key

    def walk(self) -> Iterator[_Node]:
        yield self
        for node in (*self.children.values(), *self.slices.values()):
            yield from node.walk()


class _Item(NamedTuple):
    """One occurrence of an element in an instance, and where it is.

    A named tuple: validation makes one per element of the instance, and a tuple
    is several times cheaper to make than a frozen dataclass (issue 7).
    """

    value: Json
    location: str


@dataclass(frozen=True, slots=True)
class _Profile:
    url: str
    type: str
    kind: str
    base: str
    root: _Node


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProfileError(f"{what} must be a non-negative integer, not {value!r}")
    return value


def _one_prefixed(element: Mapping[str, Any], prefix: str) -> tuple[str, Json] | None:
    """The ``fixed[x]``/``pattern[x]`` of an element, as (JSON key, value)."""
    found = [
        (k, v)
        for k, v in element.items()
        if k.startswith(prefix) and k[len(prefix) :][:1].isupper()
    ]
    if len(found) > 1:
        raise ProfileError(f"{element.get('id')}: more than one {prefix}[x]")
    return found[0] if found else None


def _choice_type(json_key: str, prefix: str) -> str:
    """``boolean`` for ``valueBoolean``, ``CodeableConcept`` for ``valueCodeableConcept``."""
    suffix = json_key[len(prefix) :]
    lowered = suffix[:1].lower() + suffix[1:]
    return lowered if lowered in PRIMITIVE_TYPES else suffix


def matches_pattern(value: Json, pattern: Json) -> bool:
    """Whether ``value`` contains ``pattern`` (FHIR ``pattern[x]`` semantics).

    Objects: every property of the pattern is present and matches. Arrays: every
    item of the pattern matches some item of the value. Primitives: equal.
    """
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            key in value and matches_pattern(value[key], sub) for key, sub in pattern.items()
        )
    if isinstance(pattern, list):
        return isinstance(value, list) and all(
            any(matches_pattern(v, sub) for v in value) for sub in pattern
        )
    return bool(value == pattern)


def _values_at(value: Json, path: str) -> list[Json]:
    """The values a simple dotted path (``coding.system``, ``$this``) reaches, arrays flattened."""
    current = [value]
    if path == "$this":
        return current
    for part in path.split("."):
        step: list[Json] = []
        for item in current:
            if isinstance(item, dict) and part in item:
                found = item[part]
                step.extend(found if isinstance(found, list) else [found])
        current = step
    return current


def _reference_type(reference: Mapping[str, Any], root: Mapping[str, Any]) -> str | None:
    """The resource type a Reference points at, when the reference says (``urn:uuid:`` may not)."""
    ref = reference.get("reference")
    if isinstance(ref, str):
        if ref.startswith("#"):
            for contained in root.get("contained", ()):
                if isinstance(contained, dict) and contained.get("id") == ref[1:]:
                    return str(contained.get("resourceType"))
            return None
        match = _REFERENCE.search(ref)
        if match and not ref.startswith("urn:"):
            return match.group("type")
        conditional = ref.partition("?")  # CarePlan?identifier=... in a transaction
        if conditional[1] and conditional[0].isalpha() and conditional[0][:1].isupper():
            return conditional[0]
    declared = reference.get("type")
    if isinstance(declared, str):
        return declared.removeprefix(FHIR_BASE)
    return None


def _looks_at_value_only(expression: str) -> bool:
    return not any(word in expression for word in _BEYOND_THE_VALUE)


def _short(value: Json) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class ProfileRegistry:
    """The conformance resources of ``fhir_profiles/`` and the validator they define.

    Built once at start (:meth:`load`); immutable and safe to share afterwards.
    """

    def __init__(self, resources: Iterable[Mapping[str, Any]]) -> None:
        """Index and compile conformance resources; raises :class:`ProfileError` if unusable."""
        self._resources: dict[str, dict[str, Any]] = {}
        for resource in resources:
            url = resource.get("url")
            if not isinstance(url, str) or not resource.get("id") or "resourceType" not in resource:
                raise ProfileError(
                    f"conformance resource without resourceType, id or url: {resource.get('id')!r}"
                )
            if url in self._resources:
                raise ProfileError(f"two conformance resources have the url {url}")
            self._resources[url] = copy.deepcopy(dict(resource))
        by_type = self._by_type()
        try:
            self.terminology = Terminology(by_type["CodeSystem"], by_type["ValueSet"])
        except TerminologyError as exc:
            raise ProfileError(str(exc)) from exc
        self._profiles: dict[str, _Profile] = {}
        for sd in by_type["StructureDefinition"]:
            self._profiles[sd["url"]] = self._tree(sd)
        for profile in self._profiles.values():
            for node in profile.root.walk():
                self._compile(profile, node)
        self._extensions = {p.url: p for p in self._profiles.values() if p.type == "Extension"}
        decided: dict[str, bool] = {}
        for profile in self._profiles.values():
            self._decide_alone(profile, decided)
        self._extensions_alone = all(decided[url] for url in self._extensions)
        # Their urls as they appear in JSON (when no character of them is escaped there):
        # an element whose JSON holds none of them has none of our extensions.
        plain = all(c not in url and all(ord(ch) >= 0x20 for ch in url)
                    for url in self._extensions for c in '"\\')
        self._extension_urls = tuple(url.encode() for url in self._extensions) if plain else None
        # Digests of (profile, element, JSON) found without issues: see _Run.apply
        self._clean: OrderedDict[tuple[str, str, bytes], None] = OrderedDict()

    @classmethod
    def load(cls, directory: Path) -> ProfileRegistry:
        """Read every ``*.json`` directly in ``directory`` (not its subfolders: ``examples/``)."""
        resources = []
        for file in sorted(directory.glob("*.json")):
            try:
                resource = json.loads(file.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ProfileError(f"{file.name}: not a JSON document: {exc}") from exc
            if not isinstance(resource, dict):
                raise ProfileError(f"{file.name}: not a FHIR resource")
            resources.append(resource)
        try:
            return cls(resources)
        except ProfileError as exc:
            raise ProfileError(f"{directory}: {exc}") from exc

    # -- what the server lists and serves -------------------------------------------------

    def conformance_resources(self) -> list[dict[str, Any]]:
        """Every loaded resource as served (StructureDefinition, CodeSystem, ...), copied."""
        ordered = sorted(self._resources.values(), key=lambda r: (r["resourceType"], r["id"]))
        return copy.deepcopy(ordered)

    def supported_profiles(self, resource_type: str) -> list[str]:
        """Profiles on ``resource_type``, for the CapabilityStatement's ``supportedProfile``."""
        return sorted(
            p.url
            for p in self._profiles.values()
            if p.kind == "resource" and p.type == resource_type
        )

    def structure_definition(self, url: str) -> dict[str, Any] | None:
        """One StructureDefinition by canonical URL (``|version`` ignored), a copy."""
        found = self._resources.get(canonical_url(url))
        if found is None or found["resourceType"] != "StructureDefinition":
            return None
        return copy.deepcopy(found)

    # -- validation ------------------------------------------------------------------------

    def validate(
        self,
        resource: Mapping[str, Any],
        profiles: list[str] | None = None,
        *,
        location: str | None = None,
    ) -> list[Issue]:
        """Check ``resource`` against each of ``profiles`` (default: its ``meta.profile``).

        ``location`` is the FHIRPath of the resource itself, for issues about a
        resource inside a Bundle (``Bundle.entry[2].resource``); by default its
        resourceType. A profile this server does not know, or one on another
        resource type, is an issue too: a claim we cannot check is not accepted.
        """
        resource_type = str(resource.get("resourceType", ""))
        base = location or resource_type
        meta = resource.get("meta")
        claimed = meta.get("profile", []) if isinstance(meta, dict) else []
        wanted = claimed if profiles is None else profiles
        run = _Run(self, resource)
        applied = False
        for url in wanted:
            where = (f"{base}.meta.profile[{claimed.index(url)}]",) if url in claimed else ()
            profile = self._profiles.get(canonical_url(url))
            if profile is None:
                run.issues.append(
                    Issue("not-supported", f"Profile {url} is not known to this server", where)
                )
            elif profile.kind != "resource" or profile.type != resource_type:
                run.issues.append(
                    Issue(
                        "structure",
                        f"Profile {url} is for {profile.type}, not {resource_type}",
                        where,
                    )
                )
            else:
                run.apply(profile, _Item(resource, base))
                applied = True
        if applied:
            run.check_known_extensions(_Item(resource, base), top=True)
        # An extension both sliced in a profile and known by its url is checked twice.
        return list(dict.fromkeys(run.issues))

    # -- what was found without issues before (issue 7) -------------------------------------

    def _decide_alone(self, profile: _Profile, decided: dict[str, bool]) -> bool:
        """Mark every node of ``profile`` whose rules, with those of the datatype and
        extension profiles it names, look at nothing but its own JSON; whether the
        whole profile (its chain included) does."""
        if profile.url in decided:
            return decided[profile.url]
        decided[profile.url] = False  # a cycle of profiles: not alone (conservative)

        def alone(node: _Node) -> bool:
            result = all(_looks_at_value_only(c.invariant.expression) for c in node.constraints)
            for url in node.type_profiles:
                result = self._decide_alone(self._profiles[url], decided) and result
            for sub in (*node.children.values(), *node.slices.values()):
                result = alone(sub) and result
            node.alone = result
            return result

        whole = alone(profile.root)
        for step in self._chain(profile)[:-1]:
            whole = self._decide_alone(step, decided) and whole
        decided[profile.url] = whole
        return whole

    def _was_clean(self, digest: tuple[str, str, bytes]) -> bool:
        if digest in self._clean:
            self._clean.move_to_end(digest)
            return True
        return False

    def _found_clean(self, digest: tuple[str, str, bytes]) -> None:
        self._clean[digest] = None
        if len(self._clean) > _CLEAN_MAX:
            self._clean.popitem(last=False)

    # -- loading ---------------------------------------------------------------------------

    def _by_type(self) -> dict[str, list[dict[str, Any]]]:
        grouped: dict[str, list[dict[str, Any]]] = {
            "StructureDefinition": [],
            "CodeSystem": [],
            "ValueSet": [],
        }
        for resource in self._resources.values():
            grouped.setdefault(resource["resourceType"], []).append(resource)
        return grouped

    def _chain(self, profile: _Profile) -> list[_Profile]:
        """The profile and the profiles of ours it derives from, base first."""
        chain = [profile]
        while chain[0].base in self._profiles:
            chain.insert(0, self._profiles[chain[0].base])
        return chain

    def _tree(self, sd: Mapping[str, Any]) -> _Profile:
        url = sd["url"]
        sd_type = sd.get("type")
        if sd.get("derivation") != "constraint" or not sd_type or not sd.get("baseDefinition"):
            raise ProfileError(
                f"{url}: only constraint profiles with a type and baseDefinition are supported"
            )
        elements = (sd.get("differential") or {}).get("element") or []
        if not elements or elements[0].get("path") != sd_type:
            raise ProfileError(
                f"{url}: the differential must start with the root element {sd_type}"
            )
        root = _Node(id=sd_type, path=sd_type, name=sd_type)
        for element in elements:
            if not isinstance(element, dict) or not (element.get("id") or element.get("path")):
                raise ProfileError(f"{url}: a differential element without id and path")
            element_id = element.get("id") or element["path"]
            if "/" in element_id or "@" in element_id:
                raise ProfileError(f"{url}: {element_id}: re-slicing is not supported")
            segments = element_id.split(".")
            if segments[0] != sd_type:
                raise ProfileError(f"{url}: {element_id} is not inside {sd_type}")
            node = root
            for segment in segments[1:]:
                name, _, slice_name = segment.partition(":")
                child_id = f"{node.id}.{name}"
                node = node.children.setdefault(
                    name, _Node(id=child_id, path=f"{node.path}.{name}", name=name)
                )
                if slice_name:
                    if name not in _EXTENSION_ELEMENTS and "slicing" not in node.element:
                        raise ProfileError(
                            f"{url}: slice {element_id} before the slicing of {node.id}"
                        )
                    node = node.slices.setdefault(
                        slice_name,
                        _Node(id=f"{child_id}:{slice_name}", path=node.path, name=name),
                    )
            if element.get("path") != node.path:
                raise ProfileError(
                    f"{url}: {element_id} has path {element.get('path')}, expected {node.path}"
                )
            node.element = dict(element)
        return _Profile(url, sd_type, sd.get("kind", ""), sd["baseDefinition"], root)

    def _compile(self, profile: _Profile, node: _Node) -> None:
        """Turn one element definition into checks, refusing what cannot be checked."""
        element, where = node.element, f"{profile.url}: {node.id}"
        node.fhirpath_type = type_of(node.path)
        try:
            node.min = _as_int(element.get("min", 0), f"{where}: min")
            maximum = element.get("max", "*")
            node.max = None if maximum == "*" else _as_int(int(maximum), f"{where}: max")
        except ValueError as exc:
            raise ProfileError(
                str(exc) if isinstance(exc, ProfileError) else f"{where}: {exc}"
            ) from exc
        node.fixed = _one_prefixed(element, "fixed")
        node.pattern = _one_prefixed(element, "pattern")
        binding = element.get("binding")
        if binding and binding.get("strength") in ("required", "extensible"):
            value_set = binding.get("valueSet")
            if not value_set or not self.terminology.has_value_set(value_set):
                raise ProfileError(f"{where}: binding to unknown ValueSet {value_set}")
            node.binding = (binding["strength"], canonical_url(value_set))
        for constraint in element.get("constraint", ()):
            node.constraints.append(self._compile_constraint(where, constraint))
        self._compile_types(where, node)
        slicing = element.get("slicing")
        if slicing is not None:
            node.slicing_closed = slicing.get("rules", "open") == "closed"
            if slicing.get("ordered"):
                raise ProfileError(f"{where}: ordered slicing is not supported")
        for slice_node in node.slices.values():
            slice_node.slice_keys = self._slice_keys(profile, node, slice_node)

    def _compile_constraint(self, where: str, constraint: Mapping[str, Any]) -> _Constraint:
        key, expression = constraint.get("key"), constraint.get("expression")
        if not key or not expression:
            raise ProfileError(f"{where}: a constraint needs a key and a FHIRPath expression")
        try:
            invariant = compile_invariant(expression)
        except FhirPathError as exc:
            raise ProfileError(f"{where}: constraint {key}: {exc}") from exc
        severity = constraint.get("severity", "error")
        if severity not in ("error", "warning"):
            raise ProfileError(f"{where}: constraint {key}: severity {severity!r}")
        return _Constraint(key, severity, constraint.get("human", key), invariant)

    def _compile_types(self, where: str, node: _Node) -> None:
        types = node.element.get("type") or []
        if node.is_choice and types:
            node.choice_types = frozenset(t["code"] for t in types)
        for type_ in types:
            for url in type_.get("profile", ()):
                target = self._profiles.get(canonical_url(url))
                if target is None or target.kind == "resource":
                    raise ProfileError(
                        f"{where}: type profile {url} is not a datatype or extension profile here"
                    )
                node.type_profiles.append(target.url)
            targets = set()
            for url in type_.get("targetProfile", ()):
                url = canonical_url(url)
                if url in self._profiles:
                    targets.add(self._profiles[url].type)
                elif url.startswith(FHIR_BASE) and url[len(FHIR_BASE) :].isalpha():
                    targets.add(url[len(FHIR_BASE) :])
                else:
                    raise ProfileError(f"{where}: unknown targetProfile {url}")
            node.target_types |= targets

    def _slice_keys(self, profile: _Profile, sliced: _Node, slice_node: _Node) -> list[_SliceKey]:
        """What decides membership of ``slice_node``: its own values at the discriminator paths."""
        where = f"{profile.url}: {slice_node.id}"
        slicing = sliced.element.get("slicing")
        if slicing is None:  # extension slices: by url, implicitly
            discriminators = [{"type": "value", "path": "url"}]
        else:
            discriminators = slicing.get("discriminator") or []
        if not discriminators:
            raise ProfileError(f"{where}: slicing without a discriminator is not supported")
        keys = []
        for discriminator in discriminators:
            kind, path = discriminator.get("type"), discriminator.get("path", "")
            if kind not in _DISCRIMINATORS:
                raise ProfileError(f"{where}: discriminator type {kind!r} is not supported")
            fixed_or_pattern = self._slice_value(slice_node, path)
            if fixed_or_pattern is None:
                raise ProfileError(
                    f"{where}: no fixed or pattern value at discriminator path {path!r}"
                )
            keys.append(
                _SliceKey(
                    path,
                    fixed_or_pattern[1],
                    exact=kind == "value" and fixed_or_pattern[0] == "fixed",
                )
            )
        return keys

    def _slice_value(self, slice_node: _Node, path: str) -> tuple[str, Json] | None:
        """The fixed/pattern a slice declares at ``path``, itself or through its type profile."""
        candidates = [slice_node]
        for url in (
            t for type_ in slice_node.element.get("type", ()) for t in type_.get("profile", ())
        ):
            if canonical_url(url) in self._profiles:
                candidates.append(self._profiles[canonical_url(url)].root)
        for start in candidates:
            node: _Node | None = start
            for part in [] if path == "$this" else path.split("."):
                node = node.children.get(part) if node else None
            if node is not None:
                found = _one_prefixed(node.element, "fixed")
                if found:
                    return ("fixed", found[1])
                found = _one_prefixed(node.element, "pattern")
                if found:
                    return ("pattern", found[1])
        return None


class _Run:
    """One validation: the resource, the profile being applied, and the issues found."""

    def __init__(self, registry: ProfileRegistry, root: Mapping[str, Any]) -> None:
        self.registry = registry
        self.root = root
        self.profile = ""
        self.issues: list[Issue] = []
        # the JSON of the resource's elements and its digest, by id(): worked out once
        # per validation (the resource does not change meanwhile)
        self._json: dict[int, tuple[bytes, bytes] | None] = {}

    def _json_of(self, value: Json) -> tuple[bytes, bytes] | None:
        """``value`` as JSON, and that JSON's digest; None if it is not JSON."""
        key = id(value)
        if key not in self._json:
            try:
                text = orjson.dumps(value)
            except TypeError:
                self._json[key] = None
            else:
                self._json[key] = (text, hashlib.blake2b(text, digest_size=20).digest())
        return self._json[key]

    def _digest(self, scope: str, name: str, value: Json) -> tuple[str, str, bytes] | None:
        """The key under which ``value`` is found clean for ``scope``/``name``."""
        found = self._json_of(value)
        return None if found is None else (scope, name, found[1])

    def issue(
        self, code: str, node: _Node, text: str, where: Iterable[str], severity: str = "error"
    ) -> None:
        diagnostics = f"{node.id}: {text} (profile {self.profile})"
        self.issues.append(
            Issue(code, diagnostics, tuple(where), "warning" if severity == "warning" else "error")
        )

    def apply(self, profile: _Profile, item: _Item) -> None:
        """Every rule of ``profile`` (and of the profiles of ours it derives from) on ``item``.

        On the resource itself, an element of it whose rules look at its own JSON
        alone, and whose exact JSON was found without issues under the same profile
        before, is not checked again (issue 7: a client updating a resource sends
        most of it back as it was). Not when the resource has ``contained``
        resources: a ``#`` reference then depends on them.
        """
        top = item.value is self.root and "contained" not in self.root
        for step in self.registry._chain(profile):
            self.profile = step.url
            self.check_item(step.root, item, top=top)

    def check_known_extensions(self, item: _Item, *, top: bool = False) -> None:
        """Apply our extension definitions to every extension that carries their url.

        A profile slices only the extensions it names; an extension of ours used
        anywhere else still has to hold the value its definition says. ``top``: on
        the resource itself, skipping elements found without issues before (as
        :meth:`apply` does).
        """
        value = item.value
        if top and self.registry._extensions_alone and isinstance(value, dict) and (
                "contained" not in value):
            urls = self.registry._extension_urls
            for key, sub in value.items():
                if not isinstance(sub, dict | list):
                    continue
                found = self._json_of(sub)
                if urls is not None and found is not None and not any(
                        url in found[0] for url in urls):
                    continue  # none of our extension urls anywhere in it: nothing to apply
                digest = self._digest("extensions", key, sub)
                if digest is not None and self.registry._was_clean(digest):
                    continue
                count = len(self.issues)
                self.check_known_extensions(_Item({key: sub}, item.location))
                if digest is not None and len(self.issues) == count:
                    self.registry._found_clean(digest)
            return
        if isinstance(value, list):
            for i, sub in enumerate(value):
                if isinstance(sub, dict | list):  # nothing to find in a primitive
                    self.check_known_extensions(_Item(sub, f"{item.location}[{i}]"))
            return
        if not isinstance(value, dict):
            return
        for key, sub in value.items():
            if not isinstance(sub, dict | list):
                continue
            location = f"{item.location}.{key}"
            if key in _EXTENSION_ELEMENTS and isinstance(sub, list):
                for i, extension in enumerate(sub):
                    url = extension.get("url") if isinstance(extension, dict) else None
                    definition = self.registry._extensions.get(url) if url else None
                    if definition is not None:
                        self.apply(definition, _Item(extension, f"{location}[{i}]"))
            self.check_known_extensions(_Item(sub, location))

    def check_item(self, node: _Node, item: _Item, *, top: bool = False) -> None:
        """Every rule of ``node`` on one occurrence, then its children and slices."""
        self._check_value(node, item)
        if node.binding is not None:
            self._check_binding(node, item)
        if node.target_types and isinstance(item.value, dict):
            self._check_target(node, item)
        if node.type_profiles:
            self._check_type_profiles(node, item)
        for constraint in node.constraints:
            self._check_constraint(node, constraint, item)
        if isinstance(item.value, dict):
            for child in node.children.values():
                if top:
                    self._check_top_element(child, item)
                else:
                    self._check_element(child, item)

    def _check_top_element(self, node: _Node, parent: _Item) -> None:
        """:meth:`_check_element` on an element of the resource, unless found clean before."""
        value = parent.value.get(node._key) if node.alone and not node._choice else None
        digest = (self._digest(self.profile, node.id, value)
                  if isinstance(value, dict | list) else None)
        if digest is not None and self.registry._was_clean(digest):
            return
        count = len(self.issues)
        self._check_element(node, parent)
        if digest is not None and len(self.issues) == count:
            self.registry._found_clean(digest)

    def _check_element(self, node: _Node, parent: _Item) -> None:
        """Cardinality, allowed types and slices of ``node`` under one parent occurrence."""
        items = self._items(node, parent)
        self._check_cardinality(node, parent, items)
        for item in items:
            self.check_item(node, item)
        if node.slices:
            self._check_slices(node, parent, items)

    def _items(self, node: _Node, parent: _Item) -> list[_Item]:
        data = parent.value
        prefix = node._key
        if node._choice:
            keys = [k for k in data if k.startswith(prefix) and k[len(prefix) :][:1].isupper()]
        else:
            keys = [prefix] if prefix in data else []
        items: list[_Item] = []
        for key in keys:
            step = prefix
            if node._choice:
                type_name = _choice_type(key, prefix)
                step = f"{prefix}.ofType({type_name})"
                if node.choice_types and type_name not in node.choice_types:
                    allowed = ", ".join(sorted(node.choice_types))
                    self.issue(
                        "structure",
                        node,
                        f"type {type_name} is not allowed; use {allowed}",
                        [f"{parent.location}.{step}"],
                    )
            value = data[key]
            if isinstance(value, list):
                items.extend(
                    _Item(v, f"{parent.location}.{step}[{i}]") for i, v in enumerate(value)
                )
            else:
                items.append(_Item(value, f"{parent.location}.{step}"))
        return items

    def _check_cardinality(self, node: _Node, parent: _Item, items: list[_Item]) -> None:
        if len(items) < node.min:
            self.issue(
                "required",
                node,
                f"minimum required = {node.min}, but only found {len(items)}",
                [f"{parent.location}.{node.json_name}"],
            )
        if node.max is not None and len(items) > node.max:
            self.issue(
                "structure",
                node,
                f"maximum allowed = {node.max}, but found {len(items)}",
                [i.location for i in items[node.max :]],
            )

    def _check_slices(self, node: _Node, parent: _Item, items: list[_Item]) -> None:
        members: dict[str, list[_Item]] = {name: [] for name in node.slices}
        for item in items:
            name = next((n for n, s in node.slices.items() if self._in_slice(s, item.value)), None)
            if name is not None:
                members[name].append(item)
            elif node.slicing_closed:
                self.issue(
                    "structure",
                    node,
                    "matches none of the slices, and the slicing is closed",
                    [item.location],
                )
        for name, slice_node in node.slices.items():
            self._check_cardinality(slice_node, parent, members[name])
            for item in members[name]:
                self.check_item(slice_node, item)

    @staticmethod
    def _in_slice(slice_node: _Node, value: Json) -> bool:
        for key in slice_node.slice_keys:
            found = _values_at(value, key.path)
            if key.exact:
                if not any(v == key.value for v in found):
                    return False
            elif not any(matches_pattern(v, key.value) for v in found):
                return False
        return True

    def _check_value(self, node: _Node, item: _Item) -> None:
        if node.fixed is not None and item.value != node.fixed[1]:
            self.issue(
                "value",
                node,
                f"must be exactly {_short(node.fixed[1])}, found {_short(item.value)}",
                [item.location],
            )
        if node.pattern is not None and not matches_pattern(item.value, node.pattern[1]):
            self.issue(
                "value",
                node,
                f"must contain {_short(node.pattern[1])}, found {_short(item.value)}",
                [item.location],
            )

    def _check_binding(self, node: _Node, item: _Item) -> None:
        assert node.binding is not None
        strength, value_set = node.binding
        terminology = self.registry.terminology
        value = item.value
        if isinstance(value, str):
            ok = terminology.contains_code(value_set, value)
        elif isinstance(value, dict) and ("code" in value or "system" in value):  # Coding
            ok = terminology.contains(value_set, value.get("system"), value.get("code"))
        elif isinstance(value, dict):  # CodeableConcept: one of its codings must be in the set
            ok = any(
                terminology.contains(value_set, c.get("system"), c.get("code"))
                for c in value.get("coding", ())
                if isinstance(c, dict)
            )
        else:
            return
        if not ok:
            severity = "error" if strength == "required" else "warning"
            self.issue(
                "code-invalid",
                node,
                f"{_short(value)} is not in ValueSet {value_set} ({strength} binding)",
                [item.location],
                severity,
            )

    def _check_target(self, node: _Node, item: _Item) -> None:
        target = _reference_type(item.value, self.root)
        if target is not None and target not in node.target_types:
            allowed = ", ".join(sorted(node.target_types))
            self.issue("value", node, f"refers to a {target}; allowed: {allowed}", [item.location])

    def _check_type_profiles(self, node: _Node, item: _Item) -> None:
        """The item must conform to one of the element's type profiles (datatype or extension)."""
        attempts: list[list[Issue]] = []
        for url in node.type_profiles:
            sub = _Run(self.registry, self.root)
            sub.apply(self.registry._profiles[url], item)
            if not any(i.severity == "error" for i in sub.issues):
                self.issues.extend(sub.issues)
                return
            attempts.append(sub.issues)
        attempts.sort(key=len)  # report the profile it came closest to
        self.issues.extend(attempts[0])

    def _check_constraint(self, node: _Node, constraint: _Constraint, item: _Item) -> None:
        try:
            failed = not constraint.invariant.holds(item.value, node.fhirpath_type, self.root)
            text = constraint.human
        except Exception as exc:  # a FHIRPath runtime error is a failed invariant, not a crash
            failed, text = True, f"{constraint.human} (could not be evaluated: {exc})"
        if failed:
            self.issue(
                "invariant",
                node,
                f"{constraint.key}: {text}",
                [item.location],
                constraint.severity,
            )
