"""The R4 check sets aside elements already found valid (issue 7) and answers exactly as before.

Each case validates a resource once (so its elements are known valid), then a
changed copy; the outcome, issues and all, must be the one a full check of
the changed copy gives with nothing known.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from samplan.fhir import resource as fhir_resource
from samplan.fhir.errors import FhirError
from samplan.fhir.resource import validate_resource

EXAMPLES = Path(__file__).resolve().parents[2] / "fhir_profiles" / "examples"

Json = dict[str, Any]


def example(name: str) -> Json:
    body: Json = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    return body


def outcome(body: Json) -> tuple[Any, ...]:
    try:
        return ("valid", validate_resource(copy.deepcopy(body)))
    except FhirError as error:
        return (type(error).__name__, [i.to_fhir() for i in error.issues])


def with_nothing_known(body: Json) -> tuple[Any, ...]:
    fhir_resource._KNOWN_VALID.clear()
    try:
        return outcome(body)
    finally:
        fhir_resource._KNOWN_VALID.clear()


def _set(path: list[Any], value: Any) -> Callable[[Json], None]:
    def change(body: Json) -> None:
        node = body
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = value
    return change


def _drop(key: str) -> Callable[[Json], None]:
    return lambda body: body.pop(key)


CHANGES: dict[str, Callable[[Json], None]] = {
    "the title (still valid)": _set(["title"], "Ny överenskommelse"),
    "an activity status outside its value set": _set(
        ["activity", 0, "detail", "status"], "sleeping"),
    "an unknown element inside an activity": _set(["activity", 0, "detail", "colour"], "red"),
    "an unknown element at the top": _set(["colour"], "red"),
    "a Python field name instead of the JSON name": _set(["resource_type"], "CarePlan"),
    "an extension sibling by its Python name": _set(["status__ext"], {"extension": [
        {"url": "http://example.org/why", "valueString": "unknown"}]}),
    "the status outside its value set": _set(["status"], "sleeping"),
    "the required status left out": _drop("status"),
    "the required subject left out": _drop("subject"),
    "a null inside the categories": lambda body: body["category"].append(None),
    "the categories as an object": lambda body: body.update(category=body["category"][0]),
    "an empty list of goals": _set(["goal"], []),
    "an extension on the status without a status": lambda body: (
        body.pop("status"), body.update({"_status": {"extension": [
            {"url": "http://example.org/why", "valueString": "unknown"}]}})),
    "a wrong type in the period": _set(["period", "start"], 20260101),
    "another patient (still valid)": _set(["subject", "reference"], "Patient/other-1.2"),
    "an entry of a transaction by urn:uuid (still valid)": _set(
        ["careTeam", 0, "reference"], "urn:uuid:0f3e5d2a-8c1b-4e6f-9a7d-2b4c6e8f0a1c"),
    "an empty reference": _set(["subject", "reference"], ""),
    "a reference as a number": _set(["subject", "reference"], 12),
    "a reference as an object": _set(["subject", "reference"], {"reference": "Patient/x"}),
    "a reference with a space after its type": _set(["subject", "reference"], "Patient/ x"),
    "an unknown element beside a reference": _set(["careTeam", 0, "colour"], "red"),
    "one activity described anew (still valid)": _set(
        ["activity", 1, "detail", "description"], "Ny beskrivning"),
    "one activity as a string": _set(["activity", 1], "Promenera"),
    "one activity with an unknown element": _set(["activity", 1, "colour"], "red"),
    "the activities in another order (still valid)": lambda body: body.update(
        activity=list(reversed(body["activity"]))),
    "an activity twice (still valid)": lambda body: body["activity"].append(
        copy.deepcopy(body["activity"][0])),
    "an activity dropped (still valid)": lambda body: body["activity"].pop(),
}


def checked_json(monkeypatch: pytest.MonkeyPatch) -> list[Json]:
    """Every JSON fhir.resources is asked to check as a CarePlan, from now on."""
    checked: list[Json] = []
    model = fhir_resource.model_class("CarePlan")
    original = model.model_validate

    def spy(data: Any, *args: Any, **kwargs: Any) -> Any:
        checked.append(dict(data))
        return original(data, *args, **kwargs)

    monkeypatch.setattr(model, "model_validate", spy)
    return checked


class TestSameOutcomeAsAFullCheck:
    @pytest.mark.parametrize("name", list(CHANGES))
    def test_after_the_original_was_found_valid(self, name: str) -> None:
        original = example("CarePlan-agreement-greta.json")
        changed = copy.deepcopy(original)
        CHANGES[name](changed)
        expected = with_nothing_known(changed)
        fhir_resource._KNOWN_VALID.clear()
        assert outcome(original)[0] == "valid"
        assert fhir_resource._KNOWN_VALID  # its elements are known now
        assert outcome(changed) == expected

    def test_an_element_known_valid_in_one_place_is_checked_again_in_another(self) -> None:
        plan = example("CarePlan-agreement-greta.json")
        fhir_resource._KNOWN_VALID.clear()
        assert outcome(plan)[0] == "valid"
        moved = {**plan, "author": plan["subject"], "subject": plan["author"]}
        other_place = {**plan, "note": plan["category"]}  # categories are not Annotations
        assert outcome(moved) == with_nothing_known(moved)
        assert outcome(other_place) == with_nothing_known(other_place)
        assert outcome(other_place)[0] != "valid"

    def test_the_rest_alone_is_checked_when_the_bulk_is_known(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        plan = example("CarePlan-agreement-greta.json")
        fhir_resource._KNOWN_VALID.clear()
        assert outcome(plan)[0] == "valid"
        checked = checked_json(monkeypatch)
        assert outcome({**plan, "title": "Ny"})[0] == "valid"
        assert len(checked) == 1
        assert "activity" not in checked[0]
        assert "subject" in checked[0]


def outcome_over_stored(body: Json, stored: bytes) -> tuple[Any, ...]:
    """:func:`outcome` of an update whose stored version is ``stored``, nothing else known."""
    fhir_resource._KNOWN_VALID.clear()
    try:
        return ("valid", validate_resource(copy.deepcopy(body), stored=stored))
    except FhirError as error:
        return (type(error).__name__, [i.to_fhir() for i in error.issues])
    finally:
        fhir_resource._KNOWN_VALID.clear()


class TestTheStoredVersionCountsAsFoundValid:
    """An update's body is checked against what it replaces: an element sent back exactly
    as stored is set aside, in a process that never saw it (another worker wrote it)."""

    @pytest.mark.parametrize("name", list(CHANGES))
    def test_the_outcome_is_a_full_checks(self, name: str) -> None:
        original = example("CarePlan-agreement-greta.json")
        changed = copy.deepcopy(original)
        CHANGES[name](changed)
        assert outcome_over_stored(changed, orjson.dumps(original)) == with_nothing_known(
            changed)

    def test_only_what_changed_is_checked(self, monkeypatch: pytest.MonkeyPatch) -> None:
        plan = example("CarePlan-agreement-greta.json")
        checked = checked_json(monkeypatch)
        assert outcome_over_stored({**plan, "title": "Ny"}, orjson.dumps(plan))[0] == "valid"
        assert len(checked) == 1
        assert "activity" not in checked[0]
        assert "title" in checked[0]

    @pytest.mark.parametrize("stored", [
        b"", b"not json", b"[]", orjson.dumps({"resourceType": "Goal", "id": "g"})],
        ids=["empty", "not JSON", "not an object", "another type"])
    def test_without_a_usable_stored_version_all_is_checked(
        self, stored: bytes, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        plan = example("CarePlan-agreement-greta.json")
        checked = checked_json(monkeypatch)
        assert outcome_over_stored({**plan, "title": "Ny"}, stored)[0] == "valid"
        assert "activity" in checked[-1]


class TestReferenceIdsDoNotMatter:
    """A reference is a string to the R4 check: an element known valid with one id in its
    references is known valid with another (a new patient's plan, a transaction's fresh
    urn:uuid entries); whatever else differs is checked."""

    def test_a_plan_for_another_patient_has_only_the_rest_checked(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        plan = example("CarePlan-agreement-greta.json")
        fhir_resource._KNOWN_VALID.clear()
        assert outcome(plan)[0] == "valid"
        other = copy.deepcopy(plan)
        other["subject"]["reference"] = "Patient/nils-2"
        other["careTeam"][0]["reference"] = "CareTeam/team-of-nils"
        other["goal"] = [{"reference": f"Goal/g-{i}"} for i in range(len(plan["goal"]))]
        checked = checked_json(monkeypatch)
        assert outcome(other)[0] == "valid"
        assert len(checked) == 1
        # (a required subject is always checked)
        assert not {"careTeam", "goal"} & checked[0].keys()

    def test_a_transactions_fresh_entry_ids_have_only_the_rest_checked(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        plan = example("CarePlan-agreement-greta.json")
        plan["careTeam"][0]["reference"] = "urn:uuid:0f3e5d2a-8c1b-4e6f-9a7d-2b4c6e8f0a1c"
        fhir_resource._KNOWN_VALID.clear()
        assert outcome(plan)[0] == "valid"
        again = copy.deepcopy(plan)
        again["careTeam"][0]["reference"] = "urn:uuid:9d1c0b2e-3f4a-4b5c-8d6e-7f8091a2b3c4"
        moved = copy.deepcopy(plan)
        moved["careTeam"][0]["reference"] = "CareTeam/team-of-greta"  # another shape
        checked = checked_json(monkeypatch)
        assert outcome(again)[0] == "valid"
        assert "careTeam" not in checked[-1]
        assert outcome(moved)[0] == "valid"
        assert "careTeam" in checked[-1]

    def test_a_display_that_differs_is_checked(self, monkeypatch: pytest.MonkeyPatch) -> None:
        plan = example("CarePlan-agreement-greta.json")
        fhir_resource._KNOWN_VALID.clear()
        assert outcome(plan)[0] == "valid"
        other = copy.deepcopy(plan)
        other["subject"]["display"] = "Nils Holm"
        checked = checked_json(monkeypatch)
        assert outcome(other)[0] == "valid"
        assert "subject" in checked[-1]


class TestListItemsAreSetAsideOneByOne:
    def test_only_the_changed_activity_is_checked(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        plan = example("CarePlan-agreement-greta.json")
        assert len(plan["activity"]) > 2
        fhir_resource._KNOWN_VALID.clear()
        assert outcome(plan)[0] == "valid"
        changed = copy.deepcopy(plan)
        changed["activity"][1]["detail"]["description"] = "Ny beskrivning"
        checked = checked_json(monkeypatch)
        assert outcome(changed)[0] == "valid"
        assert [len(json.get("activity", [])) for json in checked] == [1]
