"""SMART scopes: v1 and v2 syntax, wildcards, contexts, restrictions, junk."""

from __future__ import annotations

import pytest

from samplan.security.scopes import (
    CONTEXTS,
    Access,
    Context,
    Interaction,
    Scope,
    ScopeSet,
    parse_scope,
)

ALL: tuple[Interaction, ...] = ("c", "r", "u", "d", "s")


def granted(scope: str, context: Context | None, resource_type: str) -> str:
    """The interactions ``scope`` allows on ``resource_type``, as a ``cruds`` string."""
    scopes = ScopeSet.parse(scope)
    return "".join(i for i in ALL if scopes.allows(context, resource_type, i))


class TestParseOneScope:
    @pytest.mark.parametrize(
        ("text", "context", "resource_type", "letters", "version"),
        [
            # v2
            ("patient/CarePlan.rs", "patient", "CarePlan", "rs", 2),
            ("user/*.cruds", "user", "*", "cruds", 2),
            ("system/Appointment.cud", "system", "Appointment", "cud", 2),
            ("patient/Goal.c", "patient", "Goal", "c", 2),
            ("user/CareTeam.s", "user", "CareTeam", "s", 2),
            ("system/AuditEvent.rs", "system", "AuditEvent", "rs", 2),
            ("user/Patient.rud", "user", "Patient", "rud", 2),
            # v1, translated to v2 letters
            ("patient/*.read", "patient", "*", "rs", 1),
            ("user/CarePlan.write", "user", "CarePlan", "cud", 1),
            ("system/*.*", "system", "*", "cruds", 1),
        ],
    )
    def test_valid_scope_is_normalised(
        self, text: str, context: str, resource_type: str, letters: str, version: int
    ) -> None:
        assert parse_scope(text) == Scope(
            context=context,  # type: ignore[arg-type]
            resource_type=resource_type,
            interactions=frozenset(letters),  # type: ignore[arg-type]
            raw=text,
            version=version,  # type: ignore[arg-type]
        )

    @pytest.mark.parametrize(
        "text",
        [
            "patient/CarePlan.sr",  # v2 letters out of order
            "patient/CarePlan.rrs",  # repeated letter
            "patient/CarePlan.",  # no permissions
            "patient/CarePlan",  # no dot
            "patient/CarePlan.x",  # unknown letter
            "patient/CarePlan.READ",  # v1 words are lower case
            "patient/CarePlan.crudsx",
            "patient/carePlan.rs",  # resource types start upper case
            "patient/Care-Plan.rs",
            "patient/.rs",  # no type
            "patient/**.rs",
            "team/CarePlan.rs",  # unknown context
            "Patient/CarePlan.rs",  # contexts are lower case
            "patient/CarePlan.read?category=x",  # restrictions are v2 only
            "patient/CarePlan.rs?",  # empty query
            "patient/CarePlan.rs?category",  # parameter without value
            "patient/CarePlan.rs?=x",
            "patient/CarePlan.rs?category=",  # empty value
            "patient/CarePlan.rs?a=1&&b=2",
            "patient/CarePlan.rs?category=&status=final",  # never widened to status only
        ],
    )
    def test_malformed_scope_is_not_parsed(self, text: str) -> None:
        assert parse_scope(text) is None

    def test_restriction_keeps_parameters_in_order_and_decoded(self) -> None:
        text = (
            "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/"
            "observation-category|laboratory&status=final&code=a%20b"
        )
        scope = parse_scope(text)
        assert scope is not None
        assert scope.restriction == (
            (
                "category",
                "http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
            ),
            ("status", "final"),
            ("code", "a b"),
        )
        assert scope.interactions == {"r", "s"}


class TestAllows:
    @pytest.mark.parametrize(
        ("scope", "context", "resource_type", "expected"),
        [
            # v2 letters, exact type
            ("patient/CarePlan.rs", "patient", "CarePlan", "rs"),
            ("patient/CarePlan.rs", "patient", "Goal", ""),
            ("patient/CarePlan.rs", "user", "CarePlan", ""),
            ("patient/CarePlan.rs", None, "CarePlan", "rs"),
            ("user/*.cruds", "user", "CarePlan", "cruds"),
            ("user/*.cruds", "user", "AuditEvent", "cruds"),
            ("user/*.cruds", "patient", "CarePlan", ""),
            ("user/*.cruds", "system", "CarePlan", ""),
            ("system/Appointment.cud", "system", "Appointment", "cud"),
            ("system/Appointment.cud", "system", "CarePlan", ""),
            ("user/CarePlan.r", "user", "CarePlan", "r"),
            ("user/CarePlan.s", "user", "CarePlan", "s"),
            # v1
            ("patient/*.read", "patient", "CarePlan", "rs"),
            ("patient/*.write", "patient", "Goal", "cud"),
            ("patient/*.*", "patient", "Goal", "cruds"),
            ("user/CarePlan.read", "user", "CarePlan", "rs"),
            ("user/CarePlan.read", "user", "Goal", ""),
            # combinations add up
            ("patient/CarePlan.rs patient/CarePlan.cu", "patient", "CarePlan", "crus"),
            ("patient/CarePlan.rs user/*.d", None, "CarePlan", "rds"),
            ("patient/CarePlan.rs user/*.d", "patient", "CarePlan", "rs"),
            ("patient/*.read patient/Goal.c", "patient", "Goal", "crs"),
            # a type is never matched by prefix or case-insensitively
            ("patient/Care.rs", "patient", "CarePlan", ""),
            ("patient/CarePlan.rs", "patient", "careplan", ""),
            # junk grants nothing, and does not spoil good scopes beside it
            ("patient/CarePlan.sr", "patient", "CarePlan", ""),
            ("openid fhirUser launch/patient", None, "CarePlan", ""),
            ("patient/CarePlan.sr patient/Goal.rs", "patient", "Goal", "rs"),
            ("", None, "CarePlan", ""),
        ],
    )
    def test_allows_table(
        self, scope: str, context: Context | None, resource_type: str, expected: str
    ) -> None:
        assert granted(scope, context, resource_type) == "".join(i for i in ALL if i in expected)

    def test_restricted_scope_is_not_an_unconditional_grant(self) -> None:
        scopes = ScopeSet.parse("patient/Observation.rs?category=vital-signs")
        assert not scopes.allows("patient", "Observation", "r")
        assert scopes.access("patient", "Observation", "r") == Access(
            unrestricted=False, restrictions=((("category", "vital-signs"),),)
        )
        assert scopes.access("patient", "Observation", "r").granted
        assert not scopes.access("patient", "Observation", "c").granted
        assert not scopes.access("user", "Observation", "r").granted

    def test_restrictions_of_several_scopes_are_alternatives(self) -> None:
        scopes = ScopeSet.parse(
            "patient/Observation.rs?category=vital-signs "
            "patient/Observation.rs?category=laboratory&status=final "
            "patient/Observation.r?category=vital-signs"
        )
        assert scopes.access("patient", "Observation", "r") == Access(
            restrictions=(
                (("category", "vital-signs"),),
                (("category", "laboratory"), ("status", "final")),
            )
        )
        assert scopes.access("patient", "Observation", "s").restrictions == (
            (("category", "vital-signs"),),
            (("category", "laboratory"), ("status", "final")),
        )

    def test_unrestricted_scope_wins_over_restricted(self) -> None:
        scopes = ScopeSet.parse("patient/Observation.rs?category=laboratory patient/*.rs")
        assert scopes.allows("patient", "Observation", "r")
        assert scopes.access("patient", "Observation", "r") == Access(unrestricted=True)

    def test_no_grant_is_an_empty_access(self) -> None:
        assert ScopeSet.parse("patient/Goal.rs").access("patient", "CarePlan", "r") == Access()
        assert not Access().granted


class TestScopeSet:
    def test_non_resource_scopes_are_kept(self) -> None:
        scopes = ScopeSet.parse("openid fhirUser launch/patient offline_access patient/CarePlan.rs")
        assert scopes.other == ("openid", "fhirUser", "launch/patient", "offline_access")
        assert scopes.has("launch/patient")
        assert scopes.has("openid")
        assert not scopes.has("launch")
        assert not scopes.has("patient/CarePlan.rs")
        assert scopes.ignored == ()

    def test_malformed_resource_scopes_are_listed_as_ignored(self) -> None:
        scopes = ScopeSet.parse("patient/CarePlan.sr team/CarePlan.rs user/*.rs openid")
        assert scopes.ignored == ("patient/CarePlan.sr", "team/CarePlan.rs")
        assert scopes.other == ("openid",)
        assert [s.raw for s in scopes.resource_scopes] == ["user/*.rs"]

    @pytest.mark.parametrize(
        ("value", "usable"),
        [
            ("patient/CarePlan.rs", True),
            ("openid fhirUser", False),
            ("patient/CarePlan.sr", False),
            ("", False),
            (None, False),
            ("openid patient/CarePlan.rs?category=x", True),
        ],
    )
    def test_usable_tells_tokens_without_resource_scopes_apart(
        self, value: str | None, usable: bool
    ) -> None:
        assert ScopeSet.parse(value).usable is usable

    @pytest.mark.parametrize(
        ("value", "contexts"),
        [
            ("patient/CarePlan.rs", {"patient"}),
            ("user/*.rs patient/*.rs openid", {"patient", "user"}),
            ("system/Appointment.cud", {"system"}),
            ("openid launch/patient", set()),
            ("patient/CarePlan.sr", set()),
        ],
    )
    def test_contexts(self, value: str, contexts: set[str]) -> None:
        assert ScopeSet.parse(value).contexts() == contexts

    def test_list_input_and_extra_whitespace(self) -> None:
        from_list = ScopeSet.parse(["patient/CarePlan.rs", "openid  user/*.r"])
        from_text = ScopeSet.parse("  patient/CarePlan.rs\topenid\nuser/*.r ")
        assert from_list == from_text
        assert from_list.contexts() == {"patient", "user"}

    def test_duplicates_are_dropped(self) -> None:
        scopes = ScopeSet.parse("patient/CarePlan.rs patient/CarePlan.rs openid openid")
        assert len(scopes.resource_scopes) == 1
        assert scopes.other == ("openid",)

    def test_str_lists_every_scope(self) -> None:
        text = "patient/CarePlan.rs openid patient/CarePlan.sr"
        assert str(ScopeSet.parse(text)) == text

    def test_everything_allows_every_interaction_in_every_context(self) -> None:
        scopes = ScopeSet.everything()
        for context in CONTEXTS:
            for interaction in ALL:
                assert scopes.allows(context, "CarePlan", interaction)
        assert scopes.contexts() == {"patient", "user", "system"}

    def test_scope_set_is_hashable_and_immutable(self) -> None:
        scopes = ScopeSet.parse("patient/CarePlan.rs?category=x openid")
        assert hash(scopes) == hash(ScopeSet.parse("patient/CarePlan.rs?category=x openid"))
        with pytest.raises(AttributeError):
            scopes.other = ()  # type: ignore[misc]
