"""Invariants on a string value run as Python (issue 7), with fhirpathpy's results exactly.

The Python form covers only the single-valued case and hands every other
evaluation to fhirpathpy, so for any string the two must agree: the same
verdict, and the same error when fhirpathpy cannot evaluate it.
"""

from __future__ import annotations

import functools
import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from samplan.fhir.fhirpath import Invariant, compile_invariant, compile_on_string

PROFILES = Path(__file__).resolve().parents[2] / "fhir_profiles"


def profile_invariants() -> dict[str, str]:
    """Every constraint of our StructureDefinitions, by key."""
    found: dict[str, str] = {}
    for file in sorted(PROFILES.glob("StructureDefinition-*.json")):
        definition = json.loads(file.read_text(encoding="utf-8"))
        for element in definition["differential"]["element"]:
            for constraint in element.get("constraint", ()):
                found[constraint["key"]] = constraint["expression"]
    return found


INVARIANTS = profile_invariants()
MORE = [
    "substring(0, 2) = '19'",
    "toInteger() mod 7 = 3 or matches('5$')",
    "(toInteger() div 3) - 4 = 0 and true",
    "substring(5, 3).toInteger() + 1 = 10",
    "matches('a') implies substring(1, 1) = 'b'",
    "toInteger() * 2 - 1 = 1",
    "substring(1, 2) = 1",
]

digits = st.text(alphabet="0123456789", min_size=9, max_size=14)
personnummer_like = st.builds(lambda century, rest: century + rest,
                              st.sampled_from(["18", "19", "20", "21"]),
                              st.text(alphabet="0123456789", min_size=10, max_size=10))
hsa_like = st.builds(lambda n, tail: f"SE{n}-{tail}", st.text("0123456789", min_size=10,
                                                             max_size=12),
                     st.text("abcXYZ019-", max_size=5))
anything = st.text(alphabet="0123456789abc-+ \n٣é", max_size=14)
values = st.one_of(digits, personnummer_like, hsa_like, anything)


def outcome(invariant: Invariant, value: str) -> tuple[str, object]:
    try:
        return ("holds", invariant.holds(value, None, {}))
    except Exception as exc:  # noqa: BLE001 (the error is part of what must agree)
        return ("error", str(exc))


@functools.cache
def compiled(expression: str) -> Invariant:
    return compile_invariant(expression)


@functools.cache
def by_fhirpathpy(expression: str) -> Invariant:
    return replace(compiled(expression), _on_string=None)


class TestWhatRunsAsPython:
    @pytest.mark.parametrize("key", ["samplan-hsa-1", "samplan-pnr-1", "samplan-pnr-2",
                                     "samplan-snr-1", "samplan-snr-2"])
    def test_the_identifier_value_invariants_do(self, key: str) -> None:
        assert compile_on_string(INVARIANTS[key]) is not None

    @pytest.mark.parametrize("expression", [
        "participant.actor.exists()",  # member navigation
        "%resource.id.exists()",  # the resource
        "substring(length() - 1, 1) = '0'",  # a parameter that is not a literal
        "matches('x').not()",  # a function it does not know
        "toDecimal() = 1.5",  # a decimal
        "matches('a\\\\d')",  # an escape in a string literal
    ])
    def test_anything_else_goes_to_fhirpathpy(self, expression: str) -> None:
        assert compile_on_string(expression) is None

    def test_a_known_personnummer_passes_the_checksum_and_a_wrong_one_fails(self) -> None:
        checksum = compile_invariant(INVARIANTS["samplan-pnr-2"])
        assert checksum.holds("192609091018", None, {}) is True
        assert checksum.holds("192609091019", None, {}) is False


class TestSameAsFhirpathpy:
    @pytest.mark.parametrize("expression", [
        *(INVARIANTS[k] for k in sorted(INVARIANTS)
          if compile_on_string(INVARIANTS[k]) is not None),
        *MORE,
    ])
    @settings(max_examples=300, deadline=None)
    @given(value=values)
    def test_for_any_string(self, expression: str, value: str) -> None:
        assert outcome(compiled(expression), value) == outcome(
            by_fhirpathpy(expression), value)
