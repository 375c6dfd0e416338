"""Search requests parsed into typed queries (samplan.fhir.search.parse_search)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from samplan.fhir.dates import parse_range
from samplan.fhir.errors import BadRequest, Issue
from samplan.fhir.identifiers import (
    HSA_SYSTEM,
    PERSONNUMMER_SYSTEM,
    SAMORDNINGSNUMMER_SYSTEM,
)
from samplan.fhir.search import (
    ANY,
    DateValue,
    Filter,
    Include,
    ReferenceValue,
    SearchQuery,
    SortKey,
    StringValue,
    TokenValue,
    decode_cursor,
    encode_cursor,
    parse_search,
)

TZ = ZoneInfo("Europe/Stockholm")
BASE = "http://samplan.test/fhir"


def parse(resource_type: str, *params: tuple[str, str], strict: bool = False) -> SearchQuery:
    return parse_search(resource_type, list(params), tz=TZ, base_url=BASE, strict=strict,
                        default_count=20, max_count=100)


def values(resource_type: str, name: str, value: str) -> tuple[object, ...]:
    """The values of the one filter a single parameter gives."""
    (flt,) = parse(resource_type, (name, value)).filters
    return flt.values


def bad_request(resource_type: str, *params: tuple[str, str], strict: bool = False) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        parse(resource_type, *params, strict=strict)
    return caught.value


class TestToken:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("active", TokenValue(ANY, "active")),
            ("http://example.org|active", TokenValue("http://example.org", "active")),
            ("|active", TokenValue(None, "active")),
            ("http://example.org|", TokenValue("http://example.org", None)),
        ],
    )
    def test_the_four_forms(self, value: str, expected: TokenValue) -> None:
        assert values("CarePlan", "status", value) == (expected,)

    @pytest.mark.parametrize(
        "value",
        [f"{PERSONNUMMER_SYSTEM}|194501011235", f"{PERSONNUMMER_SYSTEM}|450101-1235",
         "urn:oid:1.2.752.129.2.1.3.1|19450101-1235", "1.2.752.129.2.1.3.1|4501011235"],
    )
    def test_personnummer_is_searched_as_twelve_digits_under_the_hl7_system(
        self, value: str
    ) -> None:
        assert values("Patient", "identifier", value) == (
            TokenValue(PERSONNUMMER_SYSTEM, "194501011235"),)

    def test_oid_system_alone_becomes_the_hl7_system(self) -> None:
        assert values("Patient", "identifier", "urn:oid:1.2.752.129.2.1.3.1|") == (
            TokenValue(PERSONNUMMER_SYSTEM, None),)

    def test_a_written_personnummer_without_system_also_tries_the_person_systems(self) -> None:
        assert values("Patient", "identifier", "450101-1235") == (
            TokenValue(ANY, "450101-1235"),
            TokenValue(PERSONNUMMER_SYSTEM, "194501011235"),
        )

    def test_a_written_samordningsnummer_without_system_tries_that_system(self) -> None:
        assert values("Patient", "identifier", "19610973-2393") == (
            TokenValue(ANY, "19610973-2393"),
            TokenValue(SAMORDNINGSNUMMER_SYSTEM, "196109732393"),
        )

    def test_twelve_digits_or_other_codes_are_searched_as_given(self) -> None:
        assert values("Patient", "identifier", "194501011235") == (
            TokenValue(ANY, "194501011235"),)
        assert values("Patient", "identifier", "SE2321000073-1001") == (
            TokenValue(ANY, "SE2321000073-1001"),)
        assert values("CarePlan", "status", "450101-1235") == (TokenValue(ANY, "450101-1235"),)

    def test_hsa_systems_are_one(self) -> None:
        for system in ("urn:oid:1.2.752.129.2.1.4.1", "urn:oid:1.2.752.29.4.19"):
            assert values("Practitioner", "identifier", f"{system}|SE2321000073-1001") == (
                TokenValue(HSA_SYSTEM, "SE2321000073-1001"),)

    def test_id_is_a_plain_token(self) -> None:
        assert values("Patient", "_id", "a|b") == (TokenValue(ANY, "a|b"),)

    def test_not_modifier_is_kept(self) -> None:
        (flt,) = parse("CarePlan", ("status:not", "active")).filters
        assert flt == Filter("status", "token", (TokenValue(ANY, "active"),), "not")


class TestReference:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("Patient/p1", ReferenceValue("Patient", "p1")),
            ("p1", ReferenceValue(None, "p1")),
            (f"{BASE}/Patient/p1", ReferenceValue("Patient", "p1")),
            ("Patient/p1/_history/2", ReferenceValue("Patient", "p1")),
        ],
    )
    def test_forms(self, value: str, expected: ReferenceValue) -> None:
        assert values("CarePlan", "subject", value) == (expected,)

    def test_type_modifier_types_a_bare_id(self) -> None:
        (flt,) = parse("CarePlan", ("subject:Patient", "p1")).filters
        assert flt == Filter("subject", "reference", (ReferenceValue("Patient", "p1"),),
                             "Patient")

    @pytest.mark.parametrize("value", ["http://elsewhere.example/fhir/Patient/p1",
                                       "Patient/p1/x"])
    def test_an_unreadable_reference_is_400(self, value: str) -> None:
        error = bad_request("CarePlan", ("subject", value))
        assert error.diagnostics == f"Cannot read the reference {value!r} for 'subject'."
        assert list(error.expression) == ["subject"]

    def test_a_modifier_that_is_no_type_is_unknown(self) -> None:
        query = parse("CarePlan", ("subject:Nonsense", "p1"))
        assert query.filters == []
        assert query.warnings == [Issue(
            code="not-supported",
            diagnostics="Unsupported modifier ':Nonsense' on 'subject'. It was ignored.",
            expression=("subject:Nonsense",), severity="warning")]


class TestDate:
    @pytest.mark.parametrize("prefix", ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"])
    def test_each_prefix_with_the_range_of_the_value(self, prefix: str) -> None:
        low, high = parse_range("2026-01", TZ) or (0, 0)
        assert values("CarePlan", "date", f"{prefix}2026-01") == (DateValue(prefix, low, high),)

    def test_no_prefix_is_eq(self) -> None:
        low, high = parse_range("2027-01-12T09:30:00+01:00", TZ) or (0, 0)
        assert values("Appointment", "date", "2027-01-12T09:30:00+01:00") == (
            DateValue("eq", low, high),)

    def test_last_updated_is_a_date(self) -> None:
        low, high = parse_range("2026", TZ) or (0, 0)
        assert values("Goal", "_lastUpdated", "ge2026") == (DateValue("ge", low, high),)

    @pytest.mark.parametrize("value", ["ap2026", "2026-13", "tomorrow", "eq", "ge2026-1"])
    def test_an_unreadable_date_is_400(self, value: str) -> None:
        error = bad_request("CarePlan", ("date", value))
        assert error.diagnostics == (
            f"Cannot read the date {value!r} for 'date': use "
            "[prefix]YYYY[-MM[-DD[Thh:mm[:ss][zone]]]].")
        assert error.code == "value"

    def test_a_date_modifier_is_unknown(self) -> None:
        query = parse("CarePlan", ("date:missing", "true"))
        assert query.filters == []
        assert len(query.warnings) == 1


class TestString:
    def test_default_is_a_normalised_prefix(self) -> None:
        assert values("Patient", "name", "ÖBerg") == (StringValue("oberg", "start", "ÖBerg"),)

    def test_exact_and_contains(self) -> None:
        (exact,) = parse("Patient", ("name:exact", "Öberg")).filters
        (contains,) = parse("Patient", ("family:contains", "BERG")).filters
        assert exact == Filter("name", "string", (StringValue("oberg", "exact", "Öberg"),),
                               "exact")
        assert contains == Filter("family", "string", (StringValue("berg", "contains", "BERG"),),
                                  "contains")

    def test_other_string_modifiers_are_unknown(self) -> None:
        assert parse("Patient", ("name:text", "x")).filters == []


class TestOrAndAnd:
    def test_comma_is_or_within_one_filter(self) -> None:
        (flt,) = parse("CarePlan", ("status", "active,draft")).filters
        assert flt.values == (TokenValue(ANY, "active"), TokenValue(ANY, "draft"))

    def test_repeated_parameter_is_and_across_filters(self) -> None:
        query = parse("CarePlan", ("status", "active"), ("status", "draft"))
        assert [f.values for f in query.filters] == [(TokenValue(ANY, "active"),),
                                                     (TokenValue(ANY, "draft"),)]

    def test_escaped_comma_and_backslash_are_part_of_the_value(self) -> None:
        assert values("Patient", "family:exact", r"Holm\, Greta") == (
            StringValue("holm, greta", "exact", "Holm, Greta"),)
        assert values("Patient", "family:exact", r"a\\,b") == (
            StringValue("a\\", "exact", "a\\"), StringValue("b", "exact", "b"))

    def test_empty_values_are_dropped(self) -> None:
        assert parse("CarePlan", ("status", "")).filters == []
        assert values("CarePlan", "status", ",active,") == (TokenValue(ANY, "active"),)


class TestUnknownParameters:
    def test_lenient_ignores_and_reports_with_the_parameter_as_expression(self) -> None:
        query = parse("Patient", ("foo", "bar"), ("name", "holm"))
        assert [f.name for f in query.filters] == ["name"]
        assert query.warnings == [Issue(
            code="not-supported",
            diagnostics="Unknown search parameter 'foo' for Patient. It was ignored.",
            expression=("foo",), severity="warning")]

    def test_a_parameter_of_another_type_is_unknown(self) -> None:
        assert len(parse("Patient", ("lifecycle-status", "active")).warnings) == 1

    def test_strict_rejects(self) -> None:
        error = bad_request("Patient", ("foo", "bar"), strict=True)
        assert error.outcome() == {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "not-supported",
                       "diagnostics": "Unknown search parameter 'foo' for Patient.",
                       "expression": ["foo"]}],
        }

    def test_strict_rejects_an_unknown_modifier_and_sort(self) -> None:
        assert bad_request("Patient", ("name:fuzzy", "x"), strict=True).expression == [
            "name:fuzzy"]
        assert bad_request("Patient", ("_sort", "gender"), strict=True).expression == ["_sort"]

    def test_result_parameters_are_never_unknown(self) -> None:
        query = parse("Patient", ("_count", "5"), ("_total", "accurate"), ("_summary", "count"),
                      ("_format", "json"), ("_pretty", "true"), ("_elements", "name"),
                      strict=True)
        assert query.warnings == []


class TestResultParameters:
    def test_count_default_given_and_capped(self) -> None:
        assert parse("Patient").count == 20
        assert parse("Patient", ("_count", "0")).count == 0
        assert parse("Patient", ("_count", "7")).count == 7
        assert parse("Patient", ("_count", "100000")).count == 100

    @pytest.mark.parametrize(("value", "message"), [
        ("x", "_count must be a whole number, not 'x'."), ("1.5", None), ("", None),
        ("-1", "_count must not be negative.")])
    def test_a_bad_count_is_400(self, value: str, message: str | None) -> None:
        error = bad_request("Patient", ("_count", value))
        assert list(error.expression) == ["_count"]
        if message:
            assert error.diagnostics == message

    def test_sort_keys(self) -> None:
        query = parse("CarePlan", ("_sort", "-date,_lastUpdated,_id"))
        assert query.sort == [SortKey("date", True), SortKey("_lastUpdated", False),
                              SortKey("_id", False)]
        assert parse("Patient", ("_sort", "-name")).sort == [SortKey("name", True)]

    def test_sort_by_a_token_is_reported_not_done(self) -> None:
        query = parse("CarePlan", ("_sort", "status"))
        assert query.sort == []
        assert query.warnings[0].diagnostics == (
            "Cannot sort CarePlan by 'status'. It was ignored.")

    def test_total_and_summary(self) -> None:
        assert parse("Patient", ("_total", "accurate")).total == "accurate"
        assert parse("Patient", ("_summary", "count")).summary_count is True
        assert parse("Patient", ("_summary", "false")).warnings == []
        assert parse("Patient", ("_summary", "true")).warnings == []
        assert bad_request("Patient", ("_total", "all")).expression == ["_total"]

    def test_count_zero_asks_for_the_total_alone(self) -> None:
        query = parse("Patient", ("_count", "0"))
        assert (query.summary_count, query.count) == (True, 0)

    @pytest.mark.parametrize(("mode", "expected"), [
        ("true", "true"), ("text", "text"), ("data", "data"), ("false", None), ("count", None)])
    def test_summary_values(self, mode: str, expected: str | None) -> None:
        shape = parse("Patient", ("_summary", mode)).subsetting
        assert (shape.summary if shape else None) == expected

    @pytest.mark.parametrize("params", [
        (("_summary", "all"),), (("_summary", "TRUE"),), (("_summary", ""),),
        (("_summary", "true"), ("_summary", "text")),
    ])
    def test_unknown_or_repeated_summary_is_a_400_naming_it(
            self, params: tuple[tuple[str, str], ...]) -> None:
        assert bad_request("Patient", *params).expression == ["_summary"]

    def test_elements_are_top_level_element_names(self) -> None:
        shape = parse("Patient", ("_elements", "identifier,deceased,birthDate,id,resourceType"))
        assert shape.subsetting is not None
        assert shape.subsetting.elements == {"identifier", "deceased", "birthDate", "id",
                                             "resourceType"}
        assert ("_elements", "identifier,deceased,birthDate,id,resourceType") in (
            shape.link_params)

    @pytest.mark.parametrize("value", ["nonsense", "name.family", "-name", "", "name,,gender",
                                       "careTeam"])
    def test_unknown_elements_are_a_400_naming_it(self, value: str) -> None:
        assert bad_request("Patient", ("_elements", value)).expression == ["_elements"]

    def test_summary_and_elements_together_are_a_400(self) -> None:
        error = bad_request("Patient", ("_summary", "true"), ("_elements", "name"))
        assert error.expression == ["_summary", "_elements"]
        assert parse("Patient", ("_summary", "false"), ("_elements", "name")).subsetting

    def test_only_json_is_served(self) -> None:
        assert parse("Patient", ("_format", "application/fhir+json")).warnings == []
        assert parse("Patient", ("_format", "xml")).warnings[0].diagnostics == (
            "Only JSON is served. It was ignored.")


class TestIncludes:
    def test_include_and_revinclude(self) -> None:
        query = parse("CarePlan", ("_include", "CarePlan:care-team"),
                      ("_include", "CarePlan:subject:Patient"),
                      ("_revinclude", "Appointment:based-on"))
        assert query.includes == [
            Include("CarePlan", "care-team", None, reverse=False),
            Include("CarePlan", "subject", "Patient", reverse=False),
            Include("Appointment", "based-on", None, reverse=True),
        ]

    @pytest.mark.parametrize(
        ("name", "value", "message"),
        [
            ("_include", "CarePlan", "_include must be Type:param[:target], not 'CarePlan'."),
            ("_include", "a:b:c:d", "_include must be Type:param[:target], not 'a:b:c:d'."),
            ("_include", "Goal:patient", "_include=Goal:patient: 'Goal' cannot be included "
                                         "here."),
            ("_include", "Foo:bar", "_include=Foo:bar: 'Foo' cannot be included here."),
            ("_include", "CarePlan:status", "_include=CarePlan:status: 'status' is not a "
                                            "reference parameter of CarePlan."),
            ("_revinclude", "CarePlan:goal", "_revinclude=CarePlan:goal: CarePlan.goal never "
                                             "points to CarePlan."),
        ],
    )
    def test_a_bad_include_is_400(self, name: str, value: str, message: str) -> None:
        error = bad_request("CarePlan", (name, value))
        assert error.diagnostics == message
        assert list(error.expression) == [name]


class TestCursorsAndLinks:
    def test_cursor_round_trip(self) -> None:
        cursor = (1_790_000_000_000_000, "c1")
        assert decode_cursor(encode_cursor(cursor)) == cursor
        query = parse("CarePlan", ("_page_before", encode_cursor(cursor)))
        assert query.cursor == cursor
        assert query.cursor_before is True
        assert parse("CarePlan", ("_page_after", encode_cursor(cursor))).cursor_before is False

    @pytest.mark.parametrize("name", ["_page_after", "_page_before"])
    @pytest.mark.parametrize("raw", ["@@@", "e30", "bnVsbA", "ImFiYyI"])
    def test_an_unreadable_cursor_is_400_naming_its_parameter(self, name: str, raw: str) -> None:
        error = bad_request("CarePlan", (name, raw))
        assert error.diagnostics == "The paging cursor is not valid; start the search again."
        assert list(error.expression) == [name]

    def test_link_parameters_keep_the_search_but_not_count_or_cursor(self) -> None:
        query = parse("CarePlan", ("status", "active"), ("_count", "5"),
                      ("_page_after", encode_cursor((1, "x"))), ("_sort", "-date"),
                      ("foo", "bar"), ("_include", "CarePlan:goal"))
        assert query.link_params == [("status", "active"), ("_sort", "-date"), ("foo", "bar"),
                                     ("_include", "CarePlan:goal")]
