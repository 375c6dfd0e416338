"""The validator's rules on small made-up profiles, for what our own profiles do not (yet) use.

Closed slicing, extensible bindings, non-discriminating fixed and pattern values,
choice types, profiles derived from profiles, warnings: each is an SD feature a
new profile may start using tomorrow, so each is checked here on its own.
"""

from __future__ import annotations

from typing import Any

import pytest

from samplan.fhir.errors import Issue
from samplan.fhir.fhirpath import FhirPathError, compile_invariant, type_of
from samplan.fhir.profiles import ProfileRegistry, matches_pattern

TEST = "https://samplan.test/fhir"
FHIR = "http://hl7.org/fhir/StructureDefinition"
KIND_SYSTEM = f"{TEST}/CodeSystem/kind"


def make_profile(
    *,
    type_: str,
    elements: list[dict[str, Any]],
    id_: str = "test-profile",
    base: str | None = None,
    kind: str = "resource",
) -> dict[str, Any]:
    """A constraint StructureDefinition whose differential is ``elements`` after the root."""
    return {
        "resourceType": "StructureDefinition",
        "id": id_,
        "url": f"{TEST}/StructureDefinition/{id_}",
        "name": id_.title().replace("-", ""),
        "status": "draft",
        "fhirVersion": "4.0.1",
        "kind": kind,
        "abstract": False,
        "type": type_,
        "baseDefinition": base or f"{FHIR}/{type_}",
        "derivation": "constraint",
        "differential": {"element": [{"id": type_, "path": type_}, *elements]},
    }


def element(element_id: str, **rules: Any) -> dict[str, Any]:
    """An ElementDefinition; the path is the id without slice names."""
    path = ".".join(part.partition(":")[0] for part in element_id.split("."))
    return {"id": element_id, "path": path, **rules}


def make_terminology() -> list[dict[str, Any]]:
    """A code system of kinds a, b, c and a value set of a and b."""
    return [
        {
            "resourceType": "CodeSystem",
            "id": "kind",
            "url": KIND_SYSTEM,
            "status": "draft",
            "content": "complete",
            "concept": [{"code": "a"}, {"code": "b"}, {"code": "c"}],
        },
        {
            "resourceType": "ValueSet",
            "id": "kind",
            "url": f"{TEST}/ValueSet/kind",
            "status": "draft",
            "compose": {
                "include": [{"system": KIND_SYSTEM, "concept": [{"code": "a"}, {"code": "b"}]}]
            },
        },
    ]


def make_registry(*profiles: dict[str, Any]) -> ProfileRegistry:
    return ProfileRegistry([*make_terminology(), *profiles])


def claim(resource: dict[str, Any], id_: str = "test-profile") -> dict[str, Any]:
    return {**resource, "meta": {"profile": [f"{TEST}/StructureDefinition/{id_}"]}}


def summary(issues: list[Issue]) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(i.severity, i.code, i.expression) for i in issues]


class TestFixedAndPattern:
    def test_fixed_value_must_be_equal(self) -> None:
        registry = make_registry(
            make_profile(type_="Patient", elements=[element("Patient.gender", fixedCode="female")])
        )

        issues = registry.validate(claim({"resourceType": "Patient", "gender": "male"}))

        assert issues == [
            Issue(
                "value",
                'Patient.gender: must be exactly "female", found "male" '
                f"(profile {TEST}/StructureDefinition/test-profile)",
                ("Patient.gender",),
            )
        ]

    def test_pattern_is_contained_not_equal(self) -> None:
        pattern = {"coding": [{"system": KIND_SYSTEM, "code": "a"}]}
        registry = make_registry(
            make_profile(
                type_="Patient",
                elements=[element("Patient.maritalStatus", patternCodeableConcept=pattern)],
            )
        )
        more = {
            "coding": [{"system": "urn:x", "code": "z"}, {"system": KIND_SYSTEM, "code": "a"}],
            "text": "a",
        }

        assert registry.validate(claim({"resourceType": "Patient", "maritalStatus": more})) == []
        issues = registry.validate(
            claim({"resourceType": "Patient", "maritalStatus": {"coding": [{"code": "a"}]}})
        )
        assert summary(issues) == [("error", "value", ("Patient.maritalStatus",))]

    @pytest.mark.parametrize(
        ("value", "pattern", "expected"),
        [
            ({"a": 1, "b": 2}, {"a": 1}, True),
            ({"a": 1}, {"a": 1, "b": 2}, False),
            ([{"x": 1}, {"y": 2}], [{"y": 2}], True),
            ([{"x": 1}], [{"y": 2}], False),
            ("a", "a", True),
            ({"a": [1, 2]}, {"a": [2]}, True),
        ],
    )
    def test_pattern_semantics(self, value: Any, pattern: Any, expected: bool) -> None:
        assert matches_pattern(value, pattern) is expected


class TestCardinality:
    def test_max_names_each_occurrence_too_many(self) -> None:
        registry = make_registry(
            make_profile(type_="Patient", elements=[element("Patient.name", max="1")])
        )
        names = [{"family": "A"}, {"family": "B"}, {"family": "C"}]

        issues = registry.validate(claim({"resourceType": "Patient", "name": names}))

        assert summary(issues) == [("error", "structure", ("Patient.name[1]", "Patient.name[2]"))]

    def test_a_child_is_required_only_where_its_parent_is(self) -> None:
        registry = make_registry(
            make_profile(type_="Patient", elements=[element("Patient.contact.name", min=1)])
        )

        assert registry.validate(claim({"resourceType": "Patient"})) == []
        issues = registry.validate(
            claim(
                {
                    "resourceType": "Patient",
                    "contact": [{"name": {"family": "A"}}, {"gender": "male"}],
                }
            )
        )
        assert summary(issues) == [("error", "required", ("Patient.contact[1].name",))]


class TestSlicing:
    def profile(self, rules: str) -> dict[str, Any]:
        return make_profile(
            type_="Patient",
            elements=[
                element(
                    "Patient.identifier",
                    slicing={
                        "discriminator": [{"type": "value", "path": "system"}],
                        "rules": rules,
                    },
                ),
                element("Patient.identifier:local", min=1, max="1"),
                element("Patient.identifier:local.system", fixedUri="urn:local"),
                element("Patient.identifier:local.value", min=1),
            ],
        )

    def test_closed_slicing_refuses_what_matches_no_slice(self) -> None:
        registry = make_registry(self.profile("closed"))
        identifiers = [{"system": "urn:local", "value": "1"}, {"system": "urn:other", "value": "2"}]

        issues = registry.validate(claim({"resourceType": "Patient", "identifier": identifiers}))

        assert summary(issues) == [("error", "structure", ("Patient.identifier[1]",))]

    def test_open_slicing_lets_others_through(self) -> None:
        registry = make_registry(self.profile("open"))
        identifiers = [{"system": "urn:other", "value": "2"}, {"system": "urn:local", "value": "1"}]

        assert (
            registry.validate(claim({"resourceType": "Patient", "identifier": identifiers})) == []
        )

    def test_a_slice_rule_applies_to_its_members_only(self) -> None:
        registry = make_registry(self.profile("open"))
        identifiers = [{"system": "urn:other"}, {"system": "urn:local"}]

        issues = registry.validate(claim({"resourceType": "Patient", "identifier": identifiers}))

        assert summary(issues) == [("error", "required", ("Patient.identifier[1].value",))]

    def test_a_missing_required_slice_is_named_on_the_sliced_element(self) -> None:
        registry = make_registry(self.profile("open"))

        issues = registry.validate(
            claim({"resourceType": "Patient", "identifier": [{"system": "urn:other"}]})
        )

        assert [i.to_fhir() for i in issues] == [
            {
                "severity": "error",
                "code": "required",
                "diagnostics": "Patient.identifier:local: minimum required = 1, but only found 0 "
                f"(profile {TEST}/StructureDefinition/test-profile)",
                "expression": ["Patient.identifier"],
            }
        ]


class TestBindings:
    def test_extensible_binding_only_warns(self) -> None:
        registry = make_registry(
            make_profile(
                type_="Patient",
                elements=[
                    element(
                        "Patient.maritalStatus",
                        binding={"strength": "extensible", "valueSet": f"{TEST}/ValueSet/kind"},
                    )
                ],
            )
        )
        status = {"coding": [{"system": KIND_SYSTEM, "code": "c"}]}

        issues = registry.validate(claim({"resourceType": "Patient", "maritalStatus": status}))

        assert summary(issues) == [("warning", "code-invalid", ("Patient.maritalStatus",))]

    def test_required_binding_on_a_code_checks_the_bare_code(self) -> None:
        registry = make_registry(
            make_profile(
                type_="Patient",
                elements=[
                    element(
                        "Patient.gender",
                        binding={"strength": "required", "valueSet": f"{TEST}/ValueSet/kind|1.0"},
                    )
                ],
            )
        )

        assert registry.validate(claim({"resourceType": "Patient", "gender": "a"})) == []
        issues = registry.validate(claim({"resourceType": "Patient", "gender": "c"}))
        assert summary(issues) == [("error", "code-invalid", ("Patient.gender",))]

    def test_required_binding_refuses_text_only_concepts(self) -> None:
        registry = make_registry(
            make_profile(
                type_="Patient",
                elements=[
                    element(
                        "Patient.maritalStatus",
                        binding={"strength": "required", "valueSet": f"{TEST}/ValueSet/kind"},
                    )
                ],
            )
        )

        issues = registry.validate(
            claim({"resourceType": "Patient", "maritalStatus": {"text": "gift"}})
        )

        assert summary(issues) == [("error", "code-invalid", ("Patient.maritalStatus",))]

    def test_preferred_binding_is_not_checked(self) -> None:
        registry = make_registry(
            make_profile(
                type_="Patient",
                elements=[
                    element(
                        "Patient.gender",
                        binding={"strength": "preferred", "valueSet": "urn:unknown-value-set"},
                    )
                ],
            )
        )

        assert registry.validate(claim({"resourceType": "Patient", "gender": "other"})) == []


class TestChoiceTypes:
    def registry(self) -> ProfileRegistry:
        return make_registry(
            make_profile(
                type_="Observation",
                elements=[element("Observation.value[x]", min=1, type=[{"code": "Quantity"}])],
            )
        )

    def observation(self, **value: Any) -> dict[str, Any]:
        return claim(
            {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, **value}
        )

    def test_a_choice_of_an_allowed_type_passes(self) -> None:
        assert self.registry().validate(self.observation(valueQuantity={"value": 1})) == []

    def test_a_choice_of_another_type_is_named_with_of_type(self) -> None:
        issues = self.registry().validate(self.observation(valueString="1"))

        assert summary(issues) == [("error", "structure", ("Observation.value.ofType(string)",))]

    def test_a_missing_choice_is_named_without_type(self) -> None:
        issues = self.registry().validate(self.observation())

        assert summary(issues) == [("error", "required", ("Observation.value",))]


class TestReferences:
    def registry(self) -> ProfileRegistry:
        return make_registry(
            make_profile(
                type_="Observation",
                elements=[
                    element(
                        "Observation.subject",
                        type=[{"code": "Reference", "targetProfile": [f"{FHIR}/Patient"]}],
                    )
                ],
            )
        )

    def observation(self, subject: dict[str, Any], **more: Any) -> dict[str, Any]:
        return claim(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "x"},
                "subject": subject,
                **more,
            }
        )

    @pytest.mark.parametrize(
        "subject",
        [
            {"reference": "Patient/1"},
            {"reference": "https://other.example/fhir/Patient/1/_history/2"},
            {"reference": "urn:uuid:7d0c6a52-0f5e-4a55-9f50-1c5d2f0a0001"},
            {"identifier": {"system": "urn:x", "value": "1"}},
            {"display": "Greta Holm"},
            {"type": "Patient", "identifier": {"system": "urn:x", "value": "1"}},
            {"reference": "Patient?identifier=urn:x|1"},
        ],
    )
    def test_references_to_the_allowed_type_or_of_unknown_type_pass(
        self, subject: dict[str, Any]
    ) -> None:
        assert self.registry().validate(self.observation(subject)) == []

    @pytest.mark.parametrize(
        "subject",
        [
            {"reference": "Group/1"},
            {"reference": "https://other.example/fhir/Group/1"},
            {"type": "Group", "display": "a group"},
            {"reference": "urn:uuid:7d0c6a52-0f5e-4a55-9f50-1c5d2f0a0001", "type": "Group"},
            {"reference": "Group?identifier=urn:x|1"},
        ],
    )
    def test_references_to_another_type_are_refused(self, subject: dict[str, Any]) -> None:
        issues = self.registry().validate(self.observation(subject))

        assert summary(issues) == [("error", "value", ("Observation.subject",))]

    def test_a_contained_reference_is_typed_by_the_contained_resource(self) -> None:
        contained = [{"resourceType": "Group", "id": "g", "type": "person", "actual": True}]

        issues = self.registry().validate(
            self.observation({"reference": "#g"}, contained=contained)
        )

        assert summary(issues) == [("error", "value", ("Observation.subject",))]


class TestConstraints:
    def test_a_warning_constraint_gives_a_warning(self) -> None:
        constraint = {
            "key": "test-1",
            "severity": "warning",
            "human": "A patient should have a name",
            "expression": "name.exists()",
        }
        registry = make_registry(
            make_profile(type_="Patient", elements=[])
            | {
                "differential": {
                    "element": [{"id": "Patient", "path": "Patient", "constraint": [constraint]}]
                }
            }
        )

        issues = registry.validate(claim({"resourceType": "Patient"}))

        assert issues == [
            Issue(
                "invariant",
                "Patient: test-1: A patient should have a name "
                f"(profile {TEST}/StructureDefinition/test-profile)",
                ("Patient",),
                "warning",
            )
        ]

    def test_a_constraint_that_fails_to_evaluate_is_a_failed_invariant(self) -> None:
        constraint = {
            "key": "test-2",
            "severity": "error",
            "human": "Bad",
            "expression": "'abc'.substring('x') = 'a'",
        }
        registry = make_registry(
            make_profile(
                type_="Patient", elements=[element("Patient.name", constraint=[constraint])]
            )
        )

        issues = registry.validate(claim({"resourceType": "Patient", "name": [{"family": "A"}]}))

        assert summary(issues) == [("error", "invariant", ("Patient.name[0]",))]
        assert "could not be evaluated" in issues[0].diagnostics

    def test_resource_variable_is_the_validated_resource(self) -> None:
        constraint = {
            "key": "test-3",
            "severity": "error",
            "human": "At most one official name in the resource",
            "expression": "use != 'official' or %resource.name.where(use = 'official').count() = 1",
        }
        registry = make_registry(
            make_profile(
                type_="Patient", elements=[element("Patient.name", constraint=[constraint])]
            )
        )
        names = [
            {"use": "official", "family": "A"},
            {"use": "usual"},
            {"use": "official", "family": "B"},
        ]

        issues = registry.validate(claim({"resourceType": "Patient", "name": names}))

        assert summary(issues) == [
            ("error", "invariant", ("Patient.name[0]",)),
            ("error", "invariant", ("Patient.name[2]",)),
        ]


class TestDerivedProfiles:
    def test_a_profile_on_our_profile_applies_both(self) -> None:
        base = make_profile(
            type_="Patient", id_="base", elements=[element("Patient.gender", min=1)]
        )
        derived = make_profile(
            type_="Patient",
            id_="derived",
            base=f"{TEST}/StructureDefinition/base",
            elements=[element("Patient.birthDate", min=1)],
        )
        registry = make_registry(base, derived)

        issues = registry.validate(claim({"resourceType": "Patient"}, "derived"))

        assert summary(issues) == [
            ("error", "required", ("Patient.gender",)),
            ("error", "required", ("Patient.birthDate",)),
        ]


class TestDatatypeProfiles:
    def test_an_element_must_conform_to_one_of_its_type_profiles(self) -> None:
        def identifier_profile(id_: str, system: str) -> dict[str, Any]:
            return make_profile(
                type_="Identifier",
                id_=id_,
                kind="complex-type",
                elements=[
                    element("Identifier.system", fixedUri=system),
                    element("Identifier.value", min=1),
                ],
            )

        patient = make_profile(
            type_="Patient",
            elements=[
                element(
                    "Patient.identifier",
                    type=[
                        {
                            "code": "Identifier",
                            "profile": [
                                f"{TEST}/StructureDefinition/one",
                                f"{TEST}/StructureDefinition/two",
                            ],
                        }
                    ],
                )
            ],
        )
        registry = make_registry(
            identifier_profile("one", "urn:one"), identifier_profile("two", "urn:two"), patient
        )
        fine = [{"system": "urn:one", "value": "1"}, {"system": "urn:two", "value": "2"}]

        assert registry.validate(claim({"resourceType": "Patient", "identifier": fine})) == []
        issues = registry.validate(
            claim({"resourceType": "Patient", "identifier": [{"system": "urn:two"}]})
        )
        assert summary(issues) == [("error", "required", ("Patient.identifier[0].value",))]


class TestFhirPath:
    @pytest.mark.parametrize(
        ("path", "expected"),
        [
            ("CarePlan.activity.detail.code.coding", "Coding"),
            ("CareTeam.participant", "CareTeam.participant"),
            ("CarePlan.subject.identifier", "Identifier"),
            ("Identifier.value", None),
            ("Extension.value[x]", None),
        ],
    )
    def test_type_of_an_element_path(self, path: str, expected: str | None) -> None:
        assert type_of(path) == expected

    @pytest.mark.parametrize("expression", ["name.(", "name..given", "1 +", "name.given) ", "a b"])
    def test_syntax_errors_are_refused_not_recovered(self, expression: str) -> None:
        with pytest.raises(FhirPathError, match="column"):
            compile_invariant(expression)

    def test_choice_elements_resolve_on_typed_nodes(self) -> None:
        invariant = compile_invariant("value.exists() and (value is boolean)")

        assert invariant.holds({"url": "urn:x", "valueBoolean": True}, "Extension", {})
        assert not invariant.holds({"url": "urn:x", "valueString": "x"}, "Extension", {})
