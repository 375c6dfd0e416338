"""Invariants written out in Python (issue 15) give fhirpathpy's verdicts exactly.

samplan-ct-1 (one fast vårdkontakt per CareTeam) runs on every participant's
role of every CareTeam written; its Python form is chosen by the expression's
exact text. For any CareTeam, valid or odd, the two must agree: the same
verdict on every role, or the same error.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from samplan.fhir.fhirpath import (
    ON_ELEMENT,
    ONE_FAST_CONTACT,
    ROLE_SYSTEM,
    Invariant,
    compile_invariant,
)

PROFILES = Path(__file__).resolve().parents[2] / "fhir_profiles"

fast = st.just({"system": ROLE_SYSTEM, "code": "2"})  # often: the rule is about these
codings = st.one_of(fast, fast, st.fixed_dictionaries({}, optional={
    "system": st.sampled_from([ROLE_SYSTEM, "http://snomed.info/sct", "", 7]),
    "code": st.sampled_from(["2", "1", "02", "", 2, None]),
}))
concepts = st.one_of(
    st.fixed_dictionaries({}, optional={"coding": st.lists(codings, max_size=3),
                                        "text": st.just("roll")}),
    st.just("not a concept"),
)
participants = st.one_of(
    st.fixed_dictionaries({}, optional={"role": st.lists(concepts, max_size=3)}),
    st.just(["odd"]),
)
care_teams = st.fixed_dictionaries(
    {"resourceType": st.just("CareTeam")},
    optional={"participant": st.lists(participants, max_size=4)})


def outcome(invariant: Invariant, value: Any, resource: dict[str, Any]) -> tuple[str, object]:
    try:
        return ("holds", invariant.holds(value, "CodeableConcept", resource))
    except Exception as exc:  # noqa: BLE001 (the error is part of what must agree)
        return ("error", type(exc).__name__)


PYTHON = compile_invariant(ONE_FAST_CONTACT)
FHIRPATHPY = replace(PYTHON, _on_element=None)


class TestWhatRunsAsPython:
    def test_the_care_team_profile_uses_the_text_written_out(self) -> None:
        profile = json.loads((PROFILES / "StructureDefinition-samplan-careteam.json")
                             .read_text(encoding="utf-8"))
        keys = {c["key"]: c["expression"] for e in profile["differential"]["element"]
                for c in e.get("constraint", ())}
        assert keys["samplan-ct-1"] in ON_ELEMENT

    def test_another_text_goes_to_fhirpathpy(self) -> None:
        assert compile_invariant(ONE_FAST_CONTACT.replace("<= 1", "<= 2"))._on_element is None

    def test_two_fast_contacts_fail_and_one_passes(self) -> None:
        fast = {"coding": [{"system": ROLE_SYSTEM, "code": "2"}]}
        other = {"coding": [{"system": ROLE_SYSTEM, "code": "1"}]}
        two = {"resourceType": "CareTeam", "participant": [{"role": [fast]}, {"role": [fast]}]}
        one = {"resourceType": "CareTeam", "participant": [{"role": [fast]}, {"role": [other]}]}
        assert PYTHON.holds(fast, "CodeableConcept", two) is False
        assert PYTHON.holds(fast, "CodeableConcept", one) is True
        assert PYTHON.holds(other, "CodeableConcept", two) is True  # judged on the fast one


class TestSameAsFhirpathpy:
    @settings(max_examples=400, deadline=None)
    @given(team=care_teams)
    def test_on_every_role_of_any_care_team(self, team: dict[str, Any]) -> None:
        roles = [r for p in team.get("participant", []) if isinstance(p, dict)
                 for r in p.get("role", [])] or [{"coding": [{"system": ROLE_SYSTEM,
                                                              "code": "2"}]}]
        for role in roles:
            assert outcome(PYTHON, role, team) == outcome(FHIRPATHPY, role, team), role
