"""The profile check skips elements of a resource found without issues before (issue 7).

Whatever was validated before, the issues of a resource must be those a fresh
registry finds: an element is skipped only when its exact JSON passed the same
rules, and only when those rules look at nothing but that JSON.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from samplan.fhir import conformance
from samplan.fhir.errors import Issue
from samplan.fhir.profiles import ProfileRegistry

EXAMPLES = Path(__file__).resolve().parents[2] / "fhir_profiles" / "examples"
TEST = "https://samplan.test/fhir"

Json = dict[str, Any]


@functools.cache
def _loaded(which: str) -> ProfileRegistry:  # noqa: ARG001 (one registry per name)
    return ProfileRegistry.load(conformance.DEFAULT_PROFILES_DIR)


def registry(which: str = "fresh") -> ProfileRegistry:
    """A registry of our profiles that has found nothing clean yet (loaded once per name)."""
    loaded = _loaded(which)
    loaded._clean.clear()
    return loaded


def example(name: str) -> Json:
    body: Json = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    return body


def _set(path: list[Any], value: Any) -> Callable[[Json], None]:
    def change(body: Json) -> None:
        node = body
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = value
    return change


PLAN_CHANGES: dict[str, Callable[[Json], None]] = {
    "the title": _set(["title"], "Ny överenskommelse"),
    "an activity kind outside the value set": _set(
        ["activity", 0, "detail", "code", "coding", 0, "code"], "no-such-kind"),
    "the subject's personnummer": _set(["subject", "identifier", "value"], "194501011234"),
    "a category dropped": lambda body: body["category"].pop(0),
    "an extension value": _set(["extension", 0, "valueString"], ""),
    "an extension of ours with a wrong type where the profile does not slice it": _set(
        ["activity", 0, "detail", "extension"],
        [{"url": "https://samplan.se/fhir/StructureDefinition/note-keyword", "valueInteger": 3}]),
    "a contained resource": _set(["contained"], [{"resourceType": "Patient", "id": "p"}]),
}


class TestSameIssuesAsAFreshRegistry:
    @pytest.mark.parametrize("name", list(PLAN_CHANGES))
    def test_a_plan_changed_after_the_original_passed(self, name: str) -> None:
        warm = registry("warm")
        original = example("CarePlan-agreement-greta.json")
        assert warm.validate(original) == []
        changed = copy.deepcopy(original)
        PLAN_CHANGES[name](changed)
        assert warm.validate(changed) == registry().validate(changed)
        assert warm.validate(original) == []
        assert warm.validate(changed) == registry().validate(changed)  # once more, warm

    @pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.json")))
    def test_every_example_twice(self, name: str) -> None:
        warm = registry("warm")
        body = example(name)
        first = warm.validate(body)
        assert warm.validate(body) == first == registry().validate(body)

    def test_an_invariant_on_the_whole_resource_is_evaluated_every_time(self) -> None:
        """samplan-ct-1 counts the care team's participants with one role: the same
        participant passes in one team and fails in another."""
        warm = registry("warm")
        team = example("CareTeam-contacts-greta.json")
        assert warm.validate(team) == []
        roles = [p for p in team["participant"]
                 if any(c.get("code") == "2" for r in p.get("role", [])
                        for c in r.get("coding", []))]
        assert roles, "the example has a participant with role 2"
        doubled = {**team, "participant": [*team["participant"], roles[0]]}
        issues = warm.validate(doubled)
        assert issues == registry().validate(doubled)
        assert any("samplan-ct-1" in i.diagnostics for i in issues)


class TestWhatIsSkipped:
    def test_elements_known_clean_are_not_walked_again(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from samplan.fhir import profiles

        warm = registry("warm")
        plan = example("CarePlan-agreement-greta.json")
        assert warm.validate(plan) == []
        walked: list[str] = []
        original = profiles._Run._check_element

        def spy(run: Any, node: Any, parent: Any) -> None:
            walked.append(node.id)
            original(run, node, parent)

        monkeypatch.setattr(profiles._Run, "_check_element", spy)
        assert warm.validate({**plan, "title": "Ny"}) == []
        assert "CarePlan.activity" not in walked
        assert not any(i.startswith("CarePlan.subject") for i in walked)

    def test_no_issue_is_lost_to_an_earlier_clean_pass(self) -> None:
        warm = registry("warm")
        plan = example("CarePlan-agreement-greta.json")
        assert warm.validate(plan) == []
        broken = copy.deepcopy(plan)
        broken["subject"]["identifier"]["value"] = "194501011234"  # wrong check digit
        issues: list[Issue] = warm.validate(broken)
        assert [i.code for i in issues] == ["invariant"]
        assert issues[0].expression == ("CarePlan.subject.identifier.value",)
