"""Profiles and validator cannot drift apart: the test cases come from the StructureDefinitions.

For every rule a differential in ``fhir_profiles/`` declares, a valid example
from ``fhir_profiles/examples/`` is broken in exactly that way and the validator
must name the element at fault:

* ``min >= 1``: the element removed -> ``required`` at where it should be;
* ``max``: one occurrence too many -> ``structure`` at the extra one;
* ``fixed[x]``/``pattern[x]``: another value -> ``value`` at it;
* a required (extensible) binding: an unknown code -> ``code-invalid`` error (warning);
* ``targetProfile``: a reference to a resource type not allowed -> ``value``.

Rules of datatype and extension profiles (personnummer, HSA-id, patient-authored)
are checked where the examples use them. When a change moves an item out of a
slice (its discriminator changed), the outcome is the slice's: a missing
required member, or nothing at all for an open, optional slice.

The element navigation here is written independently of the validator on
purpose: it reads the same JSON, and the two must agree.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from samplan.fhir.profiles import ProfileRegistry

PROFILES_DIR = Path(__file__).resolve().parents[2] / "fhir_profiles"
EXAMPLES_DIR = PROFILES_DIR / "examples"
BASE = "https://samplan.se/fhir"
FHIR_BASE = "http://hl7.org/fhir/StructureDefinition/"
PRIMITIVES = frozenset(
    "base64Binary boolean canonical code date dateTime decimal id instant integer markdown oid "
    "positiveInt string time unsignedInt uri url uuid".split()
)
EXTENSIONS = frozenset({"extension", "modifierExtension"})


def _read(directory: Path) -> dict[str, dict[str, Any]]:
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(directory.glob("*.json"))
    }


CONFORMANCE = _read(PROFILES_DIR)
SDS = {r["url"]: r for r in CONFORMANCE.values() if r["resourceType"] == "StructureDefinition"}
EXAMPLES = _read(EXAMPLES_DIR)

Json = Any
Step = str | int


@pytest.fixture(scope="module")
def registry() -> ProfileRegistry:
    return ProfileRegistry.load(PROFILES_DIR)


# -- reading StructureDefinitions ------------------------------------------------------------


def _elements(sd: dict[str, Any]) -> list[dict[str, Any]]:
    return list(sd["differential"]["element"])


def _element(sd: dict[str, Any], element_id: str) -> dict[str, Any] | None:
    return next((e for e in _elements(sd) if e["id"] == element_id), None)


def _prefixed(element: dict[str, Any], prefix: str) -> tuple[str, Json] | None:
    for key, value in element.items():
        if key.startswith(prefix) and key[len(prefix) :][:1].isupper():
            return key, value
    return None


def _type_profiles(element: dict[str, Any]) -> list[str]:
    return [p for t in element.get("type", ()) for p in t.get("profile", ())]


def _discriminators(sd: dict[str, Any], sliced_id: str) -> list[dict[str, str]]:
    element = _element(sd, sliced_id)
    if element is not None and "slicing" in element:
        return list(element["slicing"]["discriminator"])
    if sliced_id.rsplit(".", 1)[-1] in EXTENSIONS:
        return [{"type": "value", "path": "url"}]
    return []


def _slice_value(sd: dict[str, Any], slice_id: str, path: str) -> tuple[bool, Json]:
    """(exact, value) a slice declares at a discriminator path, itself or via its type profile."""
    own = _element(sd, slice_id if path == "$this" else f"{slice_id}.{path}")
    candidates = [own] if own else []
    slice_element = _element(sd, slice_id) or {}
    for url in _type_profiles(slice_element):
        typed = SDS[url]
        found = _element(typed, typed["type"] if path == "$this" else f"{typed['type']}.{path}")
        candidates += [found] if found else []
    for candidate in candidates:
        for prefix in ("fixed", "pattern"):
            hit = _prefixed(candidate, prefix)
            if hit:
                return prefix == "fixed", hit[1]
    raise AssertionError(f"{slice_id}: nothing at discriminator path {path}")


# -- reading instances -----------------------------------------------------------------------


def _contains(value: Json, pattern: Json) -> bool:
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            k in value and _contains(value[k], p) for k, p in pattern.items()
        )
    if isinstance(pattern, list):
        return isinstance(value, list) and all(any(_contains(v, p) for v in value) for p in pattern)
    return bool(value == pattern)


def _values_at(value: Json, path: str) -> list[Json]:
    found = [value]
    for part in [] if path == "$this" else path.split("."):
        step: list[Json] = []
        for item in found:
            if isinstance(item, dict) and part in item:
                step += item[part] if isinstance(item[part], list) else [item[part]]
        found = step
    return found


def _in_slice(sd: dict[str, Any], sliced_id: str, slice_name: str, item: Json) -> bool:
    for discriminator in _discriminators(sd, sliced_id):
        exact, expected = _slice_value(sd, f"{sliced_id}:{slice_name}", discriminator["path"])
        found = _values_at(item, discriminator["path"])
        if exact and discriminator["type"] == "value":
            if expected not in found:
                return False
        elif not any(_contains(v, expected) for v in found):
            return False
    return True


def _get(instance: Json, path: tuple[Step, ...]) -> Json:
    for step in path:
        instance = instance[step]
    return instance


@dataclass(frozen=True)
class Site:
    """Where one occurrence of an element is: in which example, as JSON steps and as FHIRPath."""

    example: str
    json_path: tuple[Step, ...]
    fhirpath: str

    @property
    def parent_path(self) -> tuple[Step, ...]:
        return self.json_path[:-2] if isinstance(self.json_path[-1], int) else self.json_path[:-1]


def _keys(obj: dict[str, Any], name: str) -> Iterator[tuple[str, str]]:
    """JSON keys of an element and how FHIRPath names them (``value.ofType(boolean)``)."""
    if name.endswith("[x]"):
        prefix = name[:-3]
        for key in obj:
            suffix = key[len(prefix) :]
            if key.startswith(prefix) and suffix[:1].isupper():
                lowered = suffix[0].lower() + suffix[1:]
                yield key, f"{prefix}.ofType({lowered if lowered in PRIMITIVES else suffix})"
    elif name in obj:
        yield name, name


def _locate(sd: dict[str, Any], element_id: str, anchor: Site) -> list[Site]:
    """Every occurrence of a (possibly sliced) element id below ``anchor``."""
    instance = EXAMPLES[anchor.example]
    segments = element_id.split(".")
    sites, current = [anchor], segments[0]
    for segment in segments[1:]:
        name, _, slice_name = segment.partition(":")
        sliced_id = f"{current}.{name}"
        found: list[Site] = []
        for site in sites:
            obj = _get(instance, site.json_path)
            if not isinstance(obj, dict):
                continue
            for key, step in _keys(obj, name):
                value = obj[key]
                items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
                for index, item in items:
                    if slice_name and not _in_slice(sd, sliced_id, slice_name, item):
                        continue
                    if index is None:
                        found.append(
                            Site(site.example, (*site.json_path, key), f"{site.fhirpath}.{step}")
                        )
                    else:
                        found.append(
                            Site(
                                site.example,
                                (*site.json_path, key, index),
                                f"{site.fhirpath}.{step}[{index}]",
                            )
                        )
        sites = found
        current = f"{sliced_id}:{slice_name}" if slice_name else sliced_id
    return sites


def _extension_sites(example: str, url: str) -> Iterator[Site]:
    """Extensions with ``url`` anywhere in an example, located as the validator names them."""

    def walk(value: Json, path: tuple[Step, ...], fhirpath: str) -> Iterator[Site]:
        if isinstance(value, list):
            for i, item in enumerate(value):
                yield from walk(item, (*path, i), f"{fhirpath}[{i}]")
        elif isinstance(value, dict):
            for key, sub in value.items():
                if key in EXTENSIONS and isinstance(sub, list):
                    for i, ext in enumerate(sub):
                        if isinstance(ext, dict) and ext.get("url") == url:
                            yield Site(example, (*path, key, i), f"{fhirpath}.{key}[{i}]")
                yield from walk(sub, (*path, key), f"{fhirpath}.{key}")

    instance = EXAMPLES[example]
    yield from walk(instance, (), instance["resourceType"])


# -- where each profile applies in the examples ----------------------------------------------


@dataclass(frozen=True)
class Anchor:
    """A place a profile applies; for a datatype/extension profile used as a slice, which slice."""

    site: Site
    discriminators: tuple[str, ...] = ()
    slice_min: int = 0
    slice_members: int = 1
    slice_element: str = ""


def _anchors(url: str) -> list[Anchor]:
    sd = SDS[url]
    if sd["kind"] == "resource":
        return [
            Anchor(Site(name, (), example["resourceType"]))
            for name, example in EXAMPLES.items()
            if url in example.get("meta", {}).get("profile", [])
        ]
    found: dict[tuple[str, tuple[Step, ...]], Anchor] = {}
    for user_url, user in SDS.items():
        for element in _elements(user):
            if url not in _type_profiles(element):
                continue
            for user_anchor in _anchors(user_url):
                sites = _locate(user, element["id"], user_anchor.site)
                for site in sites:
                    sliced_id, _, slice_name = element["id"].rpartition(":")
                    paths: tuple[str, ...] = ()
                    if slice_name and "." not in slice_name:
                        paths = tuple(d["path"] for d in _discriminators(user, sliced_id))
                    members = [s for s in sites if s.parent_path == site.parent_path]
                    found[(site.example, site.json_path)] = Anchor(
                        site,
                        paths,
                        element.get("min", 0),
                        len(members),
                        f"{site.fhirpath.rsplit('.', 1)[0]}.{element['path'].rsplit('.', 1)[1]}",
                    )
    if sd["type"] == "Extension":
        for name in EXAMPLES:
            for site in _extension_sites(name, url):
                found.setdefault((name, site.json_path), Anchor(site, ("url",)))
    return list(found.values())


# -- the derived cases ----------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    code: str
    expression: str
    severity: str = "error"


@dataclass(frozen=True)
class Case:
    id: str
    example: str
    mutate: Callable[[dict[str, Any]], None]
    expect: tuple[Expect, ...]
    """Issues that must be among the answer; none at all when empty."""
    exact: bool = False
    """The answer is exactly ``expect`` (codes, expressions, severities)."""


def _touches(relative: str, path: str) -> bool:
    """Whether changing the element at ``relative`` (below a slice) changes its discriminator."""
    path = "" if path == "$this" else path
    if not relative:
        return path == ""
    return relative == path or path.startswith(f"{relative}.") or relative.startswith(f"{path}.")


def _slice_outcome(
    sd: dict[str, Any], rule_id: str, site: Site, anchor: Anchor
) -> tuple[Expect, ...] | None:
    """What changing ``rule_id`` at ``site`` yields if that moves its item out of a slice."""
    segments = rule_id.split(".")
    for k in range(len(segments) - 1, 0, -1):
        if ":" not in segments[k]:
            continue
        slice_id = ".".join(segments[: k + 1])
        sliced_id = slice_id.rpartition(":")[0]
        relative = ".".join(segments[k + 1 :])
        if not any(_touches(relative, d["path"]) for d in _discriminators(sd, sliced_id)):
            return None
        members = _locate(sd, slice_id, anchor.site)
        mine = next(m for m in members if site.json_path[: len(m.json_path)] == m.json_path)
        siblings = [m for m in members if m.parent_path == mine.parent_path]
        slice_element = _element(sd, slice_id) or {}
        if slice_element.get("min", 0) > len(siblings) - 1:
            name = segments[k].partition(":")[0]
            parent = mine.fhirpath.rsplit(".", 1)[0]
            return (Expect("required", f"{parent}.{name}"),)
        return ()
    relative = ".".join(rule_id.split(".")[1:])
    if anchor.discriminators and any(_touches(relative, p) for p in anchor.discriminators):
        if anchor.slice_min > anchor.slice_members - 1:
            return (Expect("required", anchor.slice_element),)
        return ()
    return None


def _remove(
    path: tuple[Step, ...], name: str, keep: Callable[[Json], bool]
) -> Callable[[Json], None]:
    def mutate(instance: Json) -> None:
        parent = _get(instance, path)
        for key, _ in list(_keys(parent, name)):
            value = parent[key]
            kept = [v for v in value if keep(v)] if isinstance(value, list) else []
            if kept:
                parent[key] = kept
            else:
                del parent[key]

    return mutate


def _replace(path: tuple[Step, ...], make: Callable[[Json], Json]) -> Callable[[Json], None]:
    def mutate(instance: Json) -> None:
        parent = _get(instance, path[:-1])
        parent[path[-1]] = make(parent[path[-1]])

    return mutate


def _perturb(value: Json, pattern: Json) -> Json:
    """``value`` changed everywhere ``pattern`` constrains it."""
    if isinstance(pattern, dict):
        return {k: _perturb(v, pattern[k]) if k in pattern else v for k, v in value.items()}
    if isinstance(pattern, list):
        return [_perturb(v, pattern[0]) for v in value]
    if isinstance(pattern, bool):
        return not value
    if isinstance(pattern, int | float):
        return value + 1
    return f"{value}-changed"


def _perturber(pattern: Json) -> Callable[[Json], Json]:
    return lambda value: _perturb(value, pattern)


def _negate(test: Callable[[Json], bool]) -> Callable[[Json], bool]:
    return lambda value: not test(value)


def _member_test(
    sd: dict[str, Any], parent_id: str, name: str, slice_name: str
) -> Callable[[Json], bool]:
    """Whether an occurrence of ``parent_id.name`` belongs to the rule (to its slice, if any)."""
    if not slice_name:
        return lambda _: True
    return lambda item: _in_slice(sd, f"{parent_id}.{name}", slice_name, item)


def _unknown_code(value: Json) -> Json:
    if isinstance(value, str):
        return "no-such-code"
    if "coding" in value:
        return {**value, "coding": [{**c, "code": "no-such-code"} for c in value["coding"]]}
    return {**value, "code": "no-such-code"}


def _first_sites(
    sd: dict[str, Any], element_id: str, anchors: list[Anchor]
) -> tuple[Anchor, list[Site]] | None:
    for anchor in anchors:
        sites = _locate(sd, element_id, anchor.site)
        if sites:
            return anchor, sites
    return None


def _derive() -> tuple[list[Case], list[str]]:
    cases: list[Case] = []
    unexercised: list[str] = []
    for url, sd in SDS.items():
        anchors = _anchors(url)
        if not anchors:
            unexercised.append(f"{url}: no example uses it")
            continue
        short = url.rsplit("/", 1)[1]
        for element in _elements(sd):
            rule_id = element["id"]
            if "." not in rule_id:
                continue
            parent_id, _, last = rule_id.rpartition(".")
            name, _, slice_name = last.partition(":")

            in_rule = _member_test(sd, parent_id, name, slice_name)

            if element.get("min", 0) >= 1:
                found = _first_sites(sd, parent_id, anchors)
                if found is None:
                    unexercised.append(f"min of {short}: {rule_id}")
                else:
                    anchor, parents = found
                    parent = parents[0]
                    outcome = None if slice_name else _slice_outcome(sd, rule_id, parent, anchor)
                    if outcome is None:
                        outcome = (
                            Expect("required", f"{parent.fhirpath}.{name.removesuffix('[x]')}"),
                        )
                    cases.append(
                        Case(
                            f"min:{short}:{rule_id}",
                            parent.example,
                            _remove(parent.json_path, name, _negate(in_rule)),
                            outcome,
                        )
                    )

            maximum = element.get("max", "*")
            if maximum != "*":
                case = _max_case(sd, short, rule_id, int(maximum), anchors, in_rule)
                if case is not None:
                    cases.append(case)

            fixed = _prefixed(element, "fixed") or _prefixed(element, "pattern")
            if fixed is not None:
                found = _first_sites(sd, rule_id, anchors)
                if found is None:
                    unexercised.append(f"{fixed[0]} of {short}: {rule_id}")
                else:
                    anchor, sites = found
                    outcome = _slice_outcome(sd, rule_id, sites[0], anchor)
                    cases.append(
                        Case(
                            f"{fixed[0]}:{short}:{rule_id}",
                            sites[0].example,
                            _replace(sites[0].json_path, _perturber(fixed[1])),
                            (Expect("value", sites[0].fhirpath),) if outcome is None else outcome,
                            exact=outcome == (),
                        )
                    )

            strength = element.get("binding", {}).get("strength")
            if strength in ("required", "extensible"):
                found = _first_sites(sd, rule_id, anchors)
                if found is None:
                    unexercised.append(f"binding of {short}: {rule_id}")
                else:
                    site = found[1][0]
                    severity = "error" if strength == "required" else "warning"
                    cases.append(
                        Case(
                            f"binding:{short}:{rule_id}",
                            site.example,
                            _replace(site.json_path, _unknown_code),
                            (Expect("code-invalid", site.fhirpath, severity),),
                            exact=True,
                        )
                    )

            if any(t.get("targetProfile") for t in element.get("type", ())):
                found = _first_sites(sd, rule_id, anchors)
                if found is None:
                    unexercised.append(f"targetProfile of {short}: {rule_id}")
                else:
                    site = found[1][0]
                    cases.append(
                        Case(
                            f"target:{short}:{rule_id}",
                            site.example,
                            _replace(site.json_path, lambda _: {"reference": "Basic/not-a-target"}),
                            (Expect("value", site.fhirpath),),
                        )
                    )
    return cases, unexercised


def _max_case(
    sd: dict[str, Any],
    short: str,
    rule_id: str,
    maximum: int,
    anchors: list[Anchor],
    in_rule: Callable[[Json], bool],
) -> Case | None:
    """One occurrence too many, where the JSON can hold more (a base 0..1 element cannot)."""
    parent_id, _, last = rule_id.rpartition(".")
    name = last.partition(":")[0]
    for anchor in anchors:
        for parent in _locate(sd, parent_id, anchor.site):
            obj = _get(EXAMPLES[parent.example], parent.json_path)
            value = obj.get(name)
            members = [v for v in value if in_rule(v)] if isinstance(value, list) else []
            if members:
                extra = maximum + 1 - len(members)
                new = [copy.deepcopy(members[0]) for _ in range(extra)]
            elif maximum == 0 and name in EXTENSIONS:
                new = [{"url": "urn:example:other", "valueString": "x"}]
                value = value if isinstance(value, list) else []
            else:
                continue
            last_index = len(value) + len(new) - 1

            def mutate(
                instance: Json, path: tuple[Step, ...] = parent.json_path, new: list[Json] = new
            ) -> None:
                target = _get(instance, path)
                target[name] = [*target.get(name, []), *copy.deepcopy(new)]

            return Case(
                f"max:{short}:{rule_id}",
                parent.example,
                mutate,
                (Expect("structure", f"{parent.fhirpath}.{name}[{last_index}]"),),
            )
    return None


CASES, UNEXERCISED = _derive()


def _summary(issues: list[Any]) -> set[tuple[str, str, str]]:
    return {(i.code, e, i.severity) for i in issues for e in i.expression}


class TestDerivedFromStructureDefinitions:
    @pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
    def test_breaking_a_declared_rule_names_the_element(
        self, registry: ProfileRegistry, case: Case
    ) -> None:
        instance = copy.deepcopy(EXAMPLES[case.example])
        case.mutate(instance)

        issues = registry.validate(instance)

        expected = {(e.code, e.expression, e.severity) for e in case.expect}
        if case.exact or not case.expect:
            assert _summary(issues) == expected, issues
        else:
            assert expected <= _summary(issues), issues

    def test_every_rule_is_exercised_by_an_example(self) -> None:
        assert UNEXERCISED == []

    def test_every_kind_of_rule_produced_cases(self) -> None:
        kinds = {c.id.split(":", 1)[0] for c in CASES}
        assert {"min", "max", "fixedUri", "patternCodeableConcept", "binding", "target"} <= kinds


# -- invariants: one broken example per constraint key ---------------------------------------


def _set(path: tuple[Step, ...], value: Json) -> Callable[[Json], None]:
    return _replace(path, lambda _: value)


def _add_second_gp(care_team: Json) -> None:
    care_team["participant"].append(
        {
            "role": [{"coding": [{"system": "urn:oid:1.2.752.129.5.1.69", "code": "2"}]}],
            "member": {"display": "Per Ström, specialist i allmänmedicin"},
        }
    )


def _only_staff_take_part(appointment: Json) -> None:
    appointment["participant"] = appointment["participant"][1:]


INVARIANT_CASES: dict[str, tuple[str, Callable[[Json], None], list[str]]] = {
    "samplan-ct-1": (
        "CareTeam-contacts-greta.json",
        _add_second_gp,
        ["CareTeam.participant[0].role[0]", "CareTeam.participant[3].role[0]"],
    ),
    "samplan-ap-1": ("Appointment-follow-up-sven.json", _only_staff_take_part, ["Appointment"]),
    "samplan-pnr-1": (
        "CarePlan-agreement-greta.json",
        _set(("subject", "identifier", "value"), "19450101-1235"),
        ["CarePlan.subject.identifier.value"],
    ),
    "samplan-pnr-2": (
        "CarePlan-agreement-greta.json",
        _set(("subject", "identifier", "value"), "194501011234"),
        ["CarePlan.subject.identifier.value"],
    ),
    "samplan-snr-1": (
        "CarePlan-agreement-samordningsnummer.json",
        _set(("subject", "identifier", "value"), "194501011235"),  # day 01: a personnummer
        ["CarePlan.subject.identifier.value"],
    ),
    "samplan-snr-2": (
        "CarePlan-agreement-samordningsnummer.json",
        _set(("subject", "identifier", "value"), "197010632392"),
        ["CarePlan.subject.identifier.value"],
    ),
    "samplan-hsa-1": (
        "CarePlan-agreement-greta.json",
        _set(("author", "identifier", "value"), "2321000073-1001"),
        ["CarePlan.author.identifier.value"],
    ),
    "samplan-rub-1": ("Observation-rub-greta.json", _set(("valueInteger",), 6), ["Observation"]),
}


def _constraint_keys() -> set[str]:
    return {c["key"] for sd in SDS.values() for e in _elements(sd) for c in e.get("constraint", ())}


class TestInvariants:
    def test_every_constraint_has_a_violating_example(self) -> None:
        assert set(INVARIANT_CASES) == _constraint_keys()

    @pytest.mark.parametrize("key", sorted(INVARIANT_CASES))
    def test_a_broken_invariant_is_reported_where_it_is_declared(
        self, registry: ProfileRegistry, key: str
    ) -> None:
        example, mutate, expressions = INVARIANT_CASES[key]
        instance = copy.deepcopy(EXAMPLES[example])
        mutate(instance)

        issues = registry.validate(instance)

        assert [(i.code, i.expression) for i in issues] == [
            ("invariant", (e,)) for e in expressions
        ]
        assert all(
            i.diagnostics.startswith(f"{i.diagnostics.split(':')[0]}: {key}: ") for i in issues
        )


class TestOneGpRule:
    def test_two_fast_lakarkontakter_are_both_named(self, registry: ProfileRegistry) -> None:
        care_team = copy.deepcopy(EXAMPLES["CareTeam-contacts-greta.json"])
        _add_second_gp(care_team)

        issues = registry.validate(care_team)

        diagnostics = (
            "CareTeam.participant.role: samplan-ct-1: At most one fast läkarkontakt i primärvård "
            "(KV Typ av fast kontakt 2) per care team "
            f"(profile {BASE}/StructureDefinition/samplan-careteam)"
        )
        assert [i.to_fhir() for i in issues] == [
            {
                "severity": "error",
                "code": "invariant",
                "diagnostics": diagnostics,
                "expression": [f"CareTeam.participant[{n}].role[0]"],
            }
            for n in (0, 3)
        ]

    def test_one_gp_and_other_contacts_are_fine(self, registry: ProfileRegistry) -> None:
        assert registry.validate(EXAMPLES["CareTeam-contacts-greta.json"]) == []

    def test_a_gp_code_in_another_system_does_not_count(self, registry: ProfileRegistry) -> None:
        care_team = copy.deepcopy(EXAMPLES["CareTeam-contacts-greta.json"])
        _add_second_gp(care_team)
        care_team["participant"][3]["role"][0]["coding"][0]["system"] = "urn:example:roles"

        issues = registry.validate(care_team)

        assert [(i.code, i.expression) for i in issues] == [
            ("code-invalid", ("CareTeam.participant[3].role[0]",))
        ]


# -- the examples themselves -----------------------------------------------------------------


class TestExamples:
    @pytest.mark.parametrize("name", sorted(EXAMPLES))
    def test_example_conforms_to_its_profile(self, registry: ProfileRegistry, name: str) -> None:
        assert registry.validate(EXAMPLES[name]) == []

    @pytest.mark.parametrize("name", sorted(EXAMPLES))
    def test_example_is_valid_r4(self, name: str) -> None:
        example = EXAMPLES[name]
        get_fhir_model_class(example["resourceType"]).model_validate(example)

    def test_every_resource_profile_has_an_example(self) -> None:
        claimed = {p for e in EXAMPLES.values() for p in e["meta"]["profile"]}
        resource_profiles = {u for u, sd in SDS.items() if sd["kind"] == "resource"}
        assert resource_profiles <= claimed
