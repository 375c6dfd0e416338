"""Loading the profiles, listing and serving them, and what a claim in ``meta.profile`` means."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from samplan.fhir.errors import Issue
from samplan.fhir.profiles import ProfileError, ProfileRegistry

PROFILES_DIR = Path(__file__).resolve().parents[2] / "fhir_profiles"
EXAMPLES_DIR = PROFILES_DIR / "examples"
SD = "https://samplan.se/fhir/StructureDefinition"
TEST = "https://samplan.test/fhir"


@pytest.fixture(scope="module")
def registry() -> ProfileRegistry:
    return ProfileRegistry.load(PROFILES_DIR)


def example(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((EXAMPLES_DIR / name).read_text(encoding="utf-8"))
    return result


def make_profile(
    *, id_: str = "p", elements: list[dict[str, Any]] | None = None, **more: Any
) -> dict[str, Any]:
    return {
        "resourceType": "StructureDefinition",
        "id": id_,
        "url": f"{TEST}/StructureDefinition/{id_}",
        "name": "P",
        "status": "draft",
        "kind": "resource",
        "abstract": False,
        "type": "Patient",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
        "derivation": "constraint",
        "differential": {"element": [{"id": "Patient", "path": "Patient"}, *(elements or [])]},
        **more,
    }


class TestServing:
    def test_every_file_is_served_as_it_is_written(self, registry: ProfileRegistry) -> None:
        on_disk = [json.loads(p.read_text(encoding="utf-8")) for p in PROFILES_DIR.glob("*.json")]

        served = registry.conformance_resources()

        key = lambda r: (r["resourceType"], r["id"])  # noqa: E731
        assert sorted(served, key=key) == sorted(on_disk, key=key)
        assert {r["resourceType"] for r in served} == {
            "StructureDefinition",
            "CodeSystem",
            "ValueSet",
            "Questionnaire",  # the seven questions (issue 16), published like the profiles
        }

    def test_served_resources_are_copies(self, registry: ProfileRegistry) -> None:
        registry.conformance_resources()[0]["id"] = "changed"

        assert registry.conformance_resources()[0]["id"] != "changed"

    @pytest.mark.parametrize(
        ("resource_type", "profile"),
        [
            ("CarePlan", "samplan-agreement-careplan"),
            ("CareTeam", "samplan-careteam"),
            ("Appointment", "samplan-appointment"),
            ("Goal", "samplan-goal"),
        ],
    )
    def test_supported_profiles_per_type(
        self, registry: ProfileRegistry, resource_type: str, profile: str
    ) -> None:
        assert registry.supported_profiles(resource_type) == [f"{SD}/{profile}"]

    def test_datatype_and_extension_profiles_are_not_listed_as_supported(
        self, registry: ProfileRegistry
    ) -> None:
        assert registry.supported_profiles("Identifier") == []
        assert registry.supported_profiles("Extension") == []
        assert registry.supported_profiles("Patient") == []

    def test_a_structure_definition_by_versioned_url(self, registry: ProfileRegistry) -> None:
        found = registry.structure_definition(f"{SD}/samplan-goal|0.1.0")

        assert found is not None
        assert found["id"] == "samplan-goal"
        assert (
            registry.structure_definition("https://samplan.se/fhir/ValueSet/typeofcareplan") is None
        )


class TestClaims:
    def test_an_unknown_claimed_profile_is_an_issue(self, registry: ProfileRegistry) -> None:
        goal = example("Goal-walk-greta.json")
        goal["meta"]["profile"].append(f"{SD}/no-such-profile")

        issues = registry.validate(goal)

        assert issues == [
            Issue(
                "not-supported",
                f"Profile {SD}/no-such-profile is not known to this server",
                ("Goal.meta.profile[1]",),
            )
        ]

    def test_a_profile_of_another_type_is_an_issue(self, registry: ProfileRegistry) -> None:
        goal = example("Goal-walk-greta.json")
        goal["meta"]["profile"] = [f"{SD}/samplan-careteam"]

        issues = registry.validate(goal)

        assert issues == [
            Issue(
                "structure",
                f"Profile {SD}/samplan-careteam is for CareTeam, not Goal",
                ("Goal.meta.profile[0]",),
            )
        ]

    def test_a_datatype_profile_cannot_be_claimed_by_a_resource(
        self, registry: ProfileRegistry
    ) -> None:
        goal = example("Goal-walk-greta.json")
        goal["meta"]["profile"] = [f"{SD}/samplan-identifier-personnummer"]

        assert [i.code for i in registry.validate(goal)] == ["structure"]

    def test_no_claim_no_profile_checks(self, registry: ProfileRegistry) -> None:
        goal = example("Goal-walk-greta.json")
        del goal["meta"]
        del goal["subject"]

        assert registry.validate(goal) == []

    def test_profiles_given_explicitly_replace_the_claims(self, registry: ProfileRegistry) -> None:
        goal = example("Goal-walk-greta.json")
        del goal["meta"]
        del goal["subject"]

        issues = registry.validate(goal, [f"{SD}/samplan-goal"])

        assert [(i.code, i.expression) for i in issues] == [("required", ("Goal.subject",))]

    def test_a_versioned_claim_is_checked(self, registry: ProfileRegistry) -> None:
        goal = example("Goal-walk-greta.json")
        goal["meta"]["profile"] = [f"{SD}/samplan-goal|0.1.0"]
        del goal["subject"]

        assert [i.code for i in registry.validate(goal)] == ["required"]

    def test_issues_inside_a_bundle_are_located_in_the_bundle(
        self, registry: ProfileRegistry
    ) -> None:
        goal = example("Goal-walk-greta.json")
        del goal["subject"]

        issues = registry.validate(goal, location="Bundle.entry[3].resource")

        assert [(i.code, i.expression) for i in issues] == [
            ("required", ("Bundle.entry[3].resource.subject",))
        ]

    def test_our_extensions_are_checked_wherever_they_are(self, registry: ProfileRegistry) -> None:
        care_team = example("CareTeam-contacts-greta.json")
        care_team["note"] = [
            {
                "extension": [{"url": f"{SD}/note-keyword", "valueBoolean": True}],
                "text": "Ring hellre förmiddag",
            }
        ]

        issues = registry.validate(care_team)

        assert [(i.code, i.expression) for i in issues] == [
            ("structure", ("CareTeam.note[0].extension[0].value.ofType(boolean)",))
        ]

    def test_an_extension_sliced_and_known_is_reported_once(
        self, registry: ProfileRegistry
    ) -> None:
        goal = example("Goal-walk-greta.json")
        goal["extension"][0] = {"url": f"{SD}/patient-authored"}

        issues = registry.validate(goal)

        assert [(i.code, i.expression) for i in issues] == [
            ("required", ("Goal.extension[0].value",))
        ]


class TestLoading:
    def test_the_shipped_profiles_load(self) -> None:
        ProfileRegistry.load(PROFILES_DIR)

    def test_examples_are_not_loaded_as_conformance_resources(
        self, registry: ProfileRegistry
    ) -> None:
        assert all(r["resourceType"] != "CarePlan" for r in registry.conformance_resources())

    def test_a_file_that_is_not_json_is_refused(self, tmp_path: Path) -> None:
        (tmp_path / "broken.json").write_text("{", encoding="utf-8")

        with pytest.raises(ProfileError, match="broken.json: not a JSON document"):
            ProfileRegistry.load(tmp_path)

    def test_two_resources_with_one_url_are_refused(self) -> None:
        with pytest.raises(ProfileError, match="two conformance resources have the url"):
            ProfileRegistry([make_profile(), make_profile()])

    @pytest.mark.parametrize(
        ("elements", "message"),
        [
            (
                [
                    {
                        "id": "Patient.gender",
                        "path": "Patient.gender",
                        "binding": {"strength": "required", "valueSet": "urn:no-such-value-set"},
                    }
                ],
                "binding to unknown ValueSet",
            ),
            (
                [
                    {
                        "id": "Patient.identifier",
                        "path": "Patient.identifier",
                        "type": [
                            {"code": "Identifier", "profile": [f"{TEST}/StructureDefinition/nope"]}
                        ],
                    }
                ],
                "is not a datatype or extension profile here",
            ),
            (
                [
                    {
                        "id": "Patient.generalPractitioner",
                        "path": "Patient.generalPractitioner",
                        "type": [
                            {
                                "code": "Reference",
                                "targetProfile": [f"{TEST}/StructureDefinition/nope"],
                            }
                        ],
                    }
                ],
                "unknown targetProfile",
            ),
            (
                [
                    {
                        "id": "Patient.name",
                        "path": "Patient.name",
                        "constraint": [
                            {
                                "key": "x-1",
                                "severity": "error",
                                "human": "x",
                                "expression": "name.(",
                            }
                        ],
                    }
                ],
                "constraint x-1: column 5: mismatched input",
            ),
            (
                [
                    {
                        "id": "Patient.name",
                        "path": "Patient.name",
                        "constraint": [
                            {
                                "key": "x-1",
                                "severity": "error",
                                "human": "x",
                                "expression": "conformsTo('urn:x')",
                            }
                        ],
                    }
                ],
                "fhirpathpy does not implement conformsTo",
            ),
            (
                [
                    {
                        "id": "Patient.identifier",
                        "path": "Patient.identifier",
                        "slicing": {
                            "discriminator": [{"type": "type", "path": "$this"}],
                            "rules": "open",
                        },
                    },
                    {"id": "Patient.identifier:a", "path": "Patient.identifier", "sliceName": "a"},
                ],
                "discriminator type 'type' is not supported",
            ),
            (
                [
                    {
                        "id": "Patient.identifier",
                        "path": "Patient.identifier",
                        "slicing": {
                            "discriminator": [{"type": "value", "path": "system"}],
                            "rules": "open",
                        },
                    },
                    {"id": "Patient.identifier:a", "path": "Patient.identifier", "sliceName": "a"},
                ],
                "no fixed or pattern value at discriminator path 'system'",
            ),
            (
                [{"id": "Patient.identifier:a", "path": "Patient.identifier", "sliceName": "a"}],
                "before the slicing of Patient.identifier",
            ),
            (
                [{"id": "Patient.name", "path": "Patient.name", "max": "many"}],
                "Patient.name",
            ),
            (
                [{"id": "Patient.name", "path": "Patient.gender"}],
                "has path Patient.gender, expected Patient.name",
            ),
        ],
    )
    def test_what_cannot_be_enforced_is_refused(
        self, elements: list[dict[str, Any]], message: str
    ) -> None:
        with pytest.raises(ProfileError, match=message):
            ProfileRegistry([make_profile(elements=elements)])

    def test_a_differential_must_start_at_the_root(self) -> None:
        profile = make_profile()
        profile["differential"]["element"] = [{"id": "Patient.name", "path": "Patient.name"}]

        with pytest.raises(ProfileError, match="must start with the root element Patient"):
            ProfileRegistry([profile])

    def test_a_value_set_with_filters_is_refused(self) -> None:
        value_set = {
            "resourceType": "ValueSet",
            "id": "f",
            "url": f"{TEST}/ValueSet/f",
            "status": "draft",
            "compose": {
                "include": [
                    {
                        "system": "http://snomed.info/sct",
                        "filter": [{"property": "concept", "op": "is-a", "value": "1"}],
                    }
                ]
            },
        }

        with pytest.raises(ProfileError, match="compose filters are not supported"):
            ProfileRegistry([value_set])

    def test_a_broken_profile_file_names_the_folder(self, tmp_path: Path) -> None:
        broken = copy.deepcopy(
            make_profile(elements=[{"id": "Patient.name", "path": "Patient.name", "min": -1}])
        )
        (tmp_path / "StructureDefinition-p.json").write_text(json.dumps(broken), encoding="utf-8")

        with pytest.raises(ProfileError, match=str(tmp_path)):
            ProfileRegistry.load(tmp_path)
