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
}


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
        checked: list[set[str]] = []
        model = fhir_resource.model_class("CarePlan")
        original = model.model_validate

        def spy(data: Any, *args: Any, **kwargs: Any) -> Any:
            checked.append(set(data))
            return original(data, *args, **kwargs)

        monkeypatch.setattr(model, "model_validate", spy)
        assert outcome({**plan, "title": "Ny"})[0] == "valid"
        assert len(checked) == 1
        assert "activity" not in checked[0]
        assert "subject" in checked[0]
