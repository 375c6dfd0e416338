"""Swedish identifiers: personnummer, samordningsnummer, HSA-id."""

from __future__ import annotations

import copy
from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from samplan.fhir.errors import Issue
from samplan.fhir.identifiers import (
    HSA_RIVTA_SYSTEM,
    HSA_SYSTEM,
    PERSONNUMMER_OID,
    PERSONNUMMER_SYSTEM,
    SAMORDNINGSNUMMER_OID,
    SAMORDNINGSNUMMER_SYSTEM,
    InvalidIdentifier,
    canonical_system,
    canonical_token,
    normalise_identifiers,
    normalise_personnummer,
)

TODAY = date(2026, 11, 20)

# Valid numbers: the two patients of examples/notes, Skatteverket's
# well-known test person Tolvan Tolvansson, and the samordningsnummer of the
# HL7 Sweden base profiles' example patient (day 73 = 13 + 60).
GRETA = "194501011235"
SVEN = "193803152341"
TOLVAN = "191212121212"
SAMORDNING = "196109732393"


def luhn(nine_digits: str) -> str:
    """Reference Luhn check digit, written independently of the module under test."""
    doubled = [int(d) * (2 - i % 2) for i, d in enumerate(nine_digits)]
    return str(-sum(d // 10 + d % 10 for d in doubled) % 10)


def patient(*identifiers: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": list(identifiers)}


class TestNormalisePersonnummer:
    @pytest.mark.parametrize(
        ("written", "expected"),
        [
            ("19450101-1235", GRETA),
            ("194501011235", GRETA),
            ("450101-1235", GRETA),
            ("4501011235", GRETA),
            (" 19450101-1235\n", GRETA),
            ("380315-2341", SVEN),
            ("19380315-2341", SVEN),
        ],
    )
    def test_accepts_10_and_12_digit_forms_and_returns_12_digits(
        self, written: str, expected: str
    ) -> None:
        assert normalise_personnummer(written, today=TODAY) == expected

    def test_plus_puts_birth_100_or_more_years_back(self) -> None:
        assert normalise_personnummer("121212+1212", today=TODAY) == TOLVAN

    def test_minus_puts_birth_within_the_last_100_years(self) -> None:
        assert normalise_personnummer("121212-1212", today=TODAY) == "201212121212"

    def test_minus_on_a_birthday_not_yet_reached_this_century_goes_back_100_years(self) -> None:
        check = luhn("261121123")
        assert normalise_personnummer("261121-123" + check, today=TODAY) == "19261121123" + check

    def test_plus_on_the_100th_birthday_and_minus_for_born_today(self) -> None:
        check = luhn("261120123")
        assert normalise_personnummer("261120+123" + check, today=TODAY) == "19261120123" + check
        assert normalise_personnummer("261120-123" + check, today=TODAY) == "20261120123" + check

    def test_leap_day_is_valid_in_2000_but_not_in_1900(self) -> None:
        assert normalise_personnummer("000229-1235", today=TODAY) == "200002291235"
        with pytest.raises(InvalidIdentifier) as caught:
            normalise_personnummer("000229+1235", today=TODAY)
        assert caught.value.rule == "date"

    def test_samordningsnummer_has_60_added_to_the_day(self) -> None:
        assert normalise_personnummer(SAMORDNING, samordning=True, today=TODAY) == SAMORDNING
        assert normalise_personnummer("610973-2393", samordning=True, today=TODAY) == SAMORDNING

    def test_samordningsnummer_is_not_a_personnummer(self) -> None:
        with pytest.raises(InvalidIdentifier) as caught:
            normalise_personnummer(SAMORDNING, today=TODAY)
        assert caught.value.rule == "date"
        assert str(caught.value) == (
            "personnummer does not contain a valid date of birth (a day of 61-91 is a "
            "samordningsnummer: use the samordningsnummer system)"
        )

    def test_personnummer_is_not_a_samordningsnummer(self) -> None:
        with pytest.raises(InvalidIdentifier) as caught:
            normalise_personnummer(GRETA, samordning=True, today=TODAY)
        assert caught.value.rule == "date"
        assert str(caught.value) == (
            "samordningsnummer does not contain a valid date of birth "
            "(a samordningsnummer has 60 added to the day of birth)"
        )

    @pytest.mark.parametrize("written", ["19450101-123", "45010-1235", "1945010112355", ""])
    def test_rejects_wrong_length(self, written: str) -> None:
        with pytest.raises(InvalidIdentifier) as caught:
            normalise_personnummer(written, today=TODAY)
        assert caught.value.rule == "length"
        assert "10 or 12 digits" in str(caught.value)

    @pytest.mark.parametrize(
        "written", ["450101/1235", "4501-011235", "19450101+1235", "19450101 1235", "٤٥٠١٠١-١٢٣٥"]
    )
    def test_rejects_other_spellings(self, written: str) -> None:
        with pytest.raises(InvalidIdentifier) as caught:
            normalise_personnummer(written, today=TODAY)
        assert caught.value.rule in {"format", "length"}

    @pytest.mark.parametrize(
        "written",
        [
            "19450231-" + "123" + luhn("450231123"),  # 31 February
            "19451301-" + "123" + luhn("451301123"),  # month 13
            "19450100-" + "123" + luhn("450100123"),  # day 0
        ],
    )
    def test_rejects_impossible_dates(self, written: str) -> None:
        with pytest.raises(InvalidIdentifier) as caught:
            normalise_personnummer(written, today=TODAY)
        assert caught.value.rule == "date"
        assert str(caught.value) == "personnummer does not contain a valid date of birth"

    def test_rejects_12_digit_date_in_the_future(self) -> None:
        tomorrow = "20261121" + "123" + luhn("261121123")
        with pytest.raises(InvalidIdentifier) as caught:
            normalise_personnummer(tomorrow, today=TODAY)
        assert caught.value.rule == "date"
        assert str(caught.value) == "personnummer has a date of birth in the future"

    def test_rejects_wrong_check_digit(self) -> None:
        with pytest.raises(InvalidIdentifier) as caught:
            normalise_personnummer("19450101-1236", today=TODAY)
        assert caught.value.rule == "check digit"
        assert str(caught.value) == "personnummer check digit is 6, but the Luhn rule gives 5"

    def test_is_a_value_error(self) -> None:
        with pytest.raises(ValueError, match="check digit"):
            normalise_personnummer("19450101-1236", today=TODAY)

    def test_defaults_today_to_the_current_date(self) -> None:
        assert normalise_personnummer("450101-1235") == GRETA


@st.composite
def valid_numbers(draw: st.DrawFn) -> tuple[date, str, bool]:
    """(today, 12-digit number, is a samordningsnummer), born within 200 years of today."""
    today = draw(st.dates(min_value=date(1950, 1, 1), max_value=date(2150, 12, 31)))
    born = draw(st.dates(min_value=date(today.year - 199, 1, 1), max_value=today))
    samordning = draw(st.booleans())
    serial = draw(st.integers(min_value=0, max_value=999))
    day = born.day + 60 if samordning else born.day
    nine = f"{born.year % 100:02d}{born.month:02d}{day:02d}{serial:03d}"
    return today, f"{born.year // 100:02d}{nine}{luhn(nine)}", samordning


class TestRoundTrip:
    @given(valid_numbers())
    def test_12_digits_round_trip_through_the_10_digit_written_forms(
        self, case: tuple[date, str, bool]
    ) -> None:
        today, twelve, samordning = case
        born = (int(twelve[:4]), int(twelve[4:6]), int(twelve[6:8]) - (60 if samordning else 0))
        centenarian = (born[0] + 100, *born[1:]) <= (today.year, today.month, today.day)
        ten = twelve[2:8] + ("+" if centenarian else "-") + twelve[8:]

        assert normalise_personnummer(ten, samordning=samordning, today=today) == twelve
        assert normalise_personnummer(twelve, samordning=samordning, today=today) == twelve
        if not centenarian:
            bare = ten.replace("-", "")
            assert normalise_personnummer(bare, samordning=samordning, today=today) == twelve

    @given(valid_numbers(), st.integers(min_value=1, max_value=9))
    def test_any_other_check_digit_is_rejected(
        self, case: tuple[date, str, bool], shift: int
    ) -> None:
        today, twelve, samordning = case
        wrong = twelve[:-1] + str((int(twelve[-1]) + shift) % 10)
        with pytest.raises(InvalidIdentifier) as caught:
            normalise_personnummer(wrong, samordning=samordning, today=today)
        assert caught.value.rule == "check digit"


class TestCanonicalSystem:
    @pytest.mark.parametrize(
        ("system", "expected"),
        [
            (f"urn:oid:{PERSONNUMMER_OID}", PERSONNUMMER_SYSTEM),
            (PERSONNUMMER_OID, PERSONNUMMER_SYSTEM),
            (PERSONNUMMER_SYSTEM, PERSONNUMMER_SYSTEM),
            (f"urn:oid:{SAMORDNINGSNUMMER_OID}", SAMORDNINGSNUMMER_SYSTEM),
            (SAMORDNINGSNUMMER_OID, SAMORDNINGSNUMMER_SYSTEM),
            (SAMORDNINGSNUMMER_SYSTEM, SAMORDNINGSNUMMER_SYSTEM),
            (HSA_RIVTA_SYSTEM, HSA_SYSTEM),
            ("1.2.752.129.2.1.4.1", HSA_SYSTEM),
            ("1.2.752.29.4.19", HSA_SYSTEM),
            (HSA_SYSTEM, HSA_SYSTEM),
            ("http://example.org/mrn", "http://example.org/mrn"),
            ("", ""),
        ],
    )
    def test_maps_oid_spellings_to_one_system(self, system: str, expected: str) -> None:
        assert canonical_system(system) == expected


class TestCanonicalToken:
    @pytest.mark.parametrize(
        ("system", "value", "expected"),
        [
            (PERSONNUMMER_SYSTEM, "19450101-1235", (PERSONNUMMER_SYSTEM, GRETA)),
            (f"urn:oid:{PERSONNUMMER_OID}", "450101-1235", (PERSONNUMMER_SYSTEM, GRETA)),
            (SAMORDNINGSNUMMER_OID, "610973-2393", (SAMORDNINGSNUMMER_SYSTEM, SAMORDNING)),
            (HSA_RIVTA_SYSTEM, "SE2321000073-1001", (HSA_SYSTEM, "SE2321000073-1001")),
            (
                "http://example.org/mrn",
                "19450101-1235",
                ("http://example.org/mrn", "19450101-1235"),
            ),
        ],
    )
    def test_indexes_and_searches_in_canonical_form(
        self, system: str, value: str, expected: tuple[str, str]
    ) -> None:
        assert canonical_token(system, value) == expected

    @pytest.mark.parametrize(
        ("system", "value", "expected"),
        [
            (PERSONNUMMER_SYSTEM, "19450101-1236", (PERSONNUMMER_SYSTEM, "19450101-1236")),
            (f"urn:oid:{PERSONNUMMER_OID}", "", (PERSONNUMMER_SYSTEM, "")),
            (PERSONNUMMER_SYSTEM, None, (PERSONNUMMER_SYSTEM, None)),
            (None, "19450101-1235", (None, "19450101-1235")),
            (None, None, (None, None)),
        ],
    )
    def test_leaves_invalid_or_missing_parts_unchanged(
        self, system: str | None, value: str | None, expected: tuple[str | None, str | None]
    ) -> None:
        assert canonical_token(system, value) == expected

    @given(
        st.one_of(
            st.none(),
            st.text(),
            st.sampled_from(
                [PERSONNUMMER_SYSTEM, SAMORDNINGSNUMMER_SYSTEM, PERSONNUMMER_OID, HSA_SYSTEM]
            ),
        ),
        st.one_of(st.none(), st.text(), st.from_regex(r"[0-9]{6,8}[-+]?[0-9]{4}", fullmatch=True)),
    )
    def test_never_raises(self, system: str | None, value: str | None) -> None:
        canonical_token(system, value)


class TestNormaliseIdentifiers:
    def test_rewrites_personnummer_to_hl7_se_system_and_12_digits(self) -> None:
        resource = patient(
            {"system": f"urn:oid:{PERSONNUMMER_OID}", "value": "19450101-1235", "use": "official"},
            {"system": SAMORDNINGSNUMMER_OID, "value": "610973-2393"},
        )
        assert normalise_identifiers(resource) == []
        assert resource == patient(
            {"system": PERSONNUMMER_SYSTEM, "value": GRETA, "use": "official"},
            {"system": SAMORDNINGSNUMMER_SYSTEM, "value": SAMORDNING},
        )

    def test_reports_each_invalid_identifier_at_its_path_and_leaves_it(self) -> None:
        resource = patient(
            {"system": PERSONNUMMER_SYSTEM, "value": "19380315-2341"},
            {"system": PERSONNUMMER_SYSTEM, "value": "19450101-1236"},
            {"system": f"urn:oid:{PERSONNUMMER_OID}", "value": "1945-01-01"},
            {"system": PERSONNUMMER_SYSTEM, "value": 194501011235},
        )
        assert normalise_identifiers(resource) == [
            Issue(
                code="value",
                diagnostics="personnummer check digit is 6, but the Luhn rule gives 5",
                expression=("Patient.identifier[1].value",),
            ),
            Issue(
                code="value",
                diagnostics="personnummer must have 10 or 12 digits, this one has 8",
                expression=("Patient.identifier[2].value",),
            ),
            Issue(
                code="value",
                diagnostics="personnummer must be a string",
                expression=("Patient.identifier[3].value",),
            ),
        ]
        assert resource["identifier"][0] == {"system": PERSONNUMMER_SYSTEM, "value": SVEN}
        assert resource["identifier"][1:] == [
            {"system": PERSONNUMMER_SYSTEM, "value": "19450101-1236"},
            {"system": f"urn:oid:{PERSONNUMMER_OID}", "value": "1945-01-01"},
            {"system": PERSONNUMMER_SYSTEM, "value": 194501011235},
        ]

    def test_rewrites_reference_identifiers_at_any_depth(self) -> None:
        resource: dict[str, Any] = {
            "resourceType": "CarePlan",
            "subject": {
                "identifier": {"system": f"urn:oid:{PERSONNUMMER_OID}", "value": "450101-1235"}
            },
            "contained": [
                {
                    "resourceType": "RelatedPerson",
                    "identifier": [{"system": PERSONNUMMER_OID, "value": "380315-2341"}],
                }
            ],
            "activity": [
                {
                    "detail": {
                        "performer": [
                            {
                                "identifier": {
                                    "system": HSA_RIVTA_SYSTEM,
                                    "value": "SE2321000073-1001",
                                }
                            }
                        ]
                    }
                }
            ],
        }
        assert normalise_identifiers(resource) == []
        assert resource["subject"]["identifier"] == {"system": PERSONNUMMER_SYSTEM, "value": GRETA}
        assert resource["contained"][0]["identifier"] == [
            {"system": PERSONNUMMER_SYSTEM, "value": SVEN}
        ]
        assert resource["activity"][0]["detail"]["performer"][0]["identifier"] == {
            "system": HSA_RIVTA_SYSTEM,
            "value": "SE2321000073-1001",
        }

    def test_expression_paths_follow_the_json(self) -> None:
        resource: dict[str, Any] = {
            "resourceType": "CarePlan",
            "subject": {"identifier": {"system": PERSONNUMMER_SYSTEM, "value": "450101-1236"}},
            "contained": [
                {
                    "resourceType": "RelatedPerson",
                    "identifier": [
                        {"system": HSA_SYSTEM, "value": "SE2321000073-1001"},
                        {"system": SAMORDNINGSNUMMER_SYSTEM, "value": GRETA},
                    ],
                }
            ],
            "extension": [
                {
                    "url": "http://example.org/fhir/StructureDefinition/x",
                    "valueIdentifier": {"system": HSA_SYSTEM, "value": " "},
                }
            ],
        }
        assert [i.expression for i in normalise_identifiers(resource)] == [
            ("CarePlan.subject.identifier.value",),
            ("CarePlan.contained[0].identifier[1].value",),
            ("CarePlan.extension[0].valueIdentifier.value",),
        ]

    @pytest.mark.parametrize(
        "hsa_id", ["SE2321000073-1001", "SE2321000131-P000000123457", "SE162321000024-0001"]
    )
    @pytest.mark.parametrize("system", [HSA_SYSTEM, HSA_RIVTA_SYSTEM])
    def test_accepts_hsa_ids_under_either_system_as_sent(self, system: str, hsa_id: str) -> None:
        resource = {
            "resourceType": "Practitioner",
            "identifier": [{"system": system, "value": hsa_id}],
        }
        sent = copy.deepcopy(resource)
        assert normalise_identifiers(resource) == []
        assert resource == sent

    @pytest.mark.parametrize(
        ("hsa_id", "diagnostics"),
        [
            ("", "HSA-id must not be empty"),
            ("   ", "HSA-id must not be empty"),
            (
                "2321000073-1001",
                "HSA-id must look like SE<organisation number>-<suffix>, "
                "e.g. SE2321000073-1001, at most 31 characters",
            ),
            (
                "SE2321000073-",
                "HSA-id must look like SE<organisation number>-<suffix>, "
                "e.g. SE2321000073-1001, at most 31 characters",
            ),
            (
                "SE2321000073-" + "1" * 20,
                "HSA-id must look like SE<organisation number>-<suffix>, "
                "e.g. SE2321000073-1001, at most 31 characters",
            ),
        ],
    )
    def test_rejects_empty_or_malformed_hsa_ids(self, hsa_id: str, diagnostics: str) -> None:
        resource = {
            "resourceType": "Organization",
            "identifier": [{"system": HSA_SYSTEM, "value": hsa_id}],
        }
        assert normalise_identifiers(resource) == [
            Issue(
                code="value",
                diagnostics=diagnostics,
                expression=("Organization.identifier[0].value",),
            )
        ]

    def test_leaves_other_system_value_pairs_alone(self) -> None:
        resource: dict[str, Any] = {
            "resourceType": "Patient",
            "identifier": [{"system": "http://example.org/mrn", "value": "19450101-1236"}],
            "telecom": [{"system": "phone", "value": "0480-123 40"}],
            "extension": [
                {
                    "url": "http://example.org/weight",
                    "valueQuantity": {
                        "system": "http://unitsofmeasure.org",
                        "value": 72,
                        "code": "kg",
                    },
                }
            ],
        }
        sent = copy.deepcopy(resource)
        assert normalise_identifiers(resource) == []
        assert resource == sent

    def test_samordningsnummer_sent_as_personnummer_is_reported(self) -> None:
        resource = patient({"system": PERSONNUMMER_SYSTEM, "value": SAMORDNING})
        assert normalise_identifiers(resource) == [
            Issue(
                code="value",
                diagnostics="personnummer does not contain a valid date of birth (a day of 61-91 "
                "is a samordningsnummer: use the samordningsnummer system)",
                expression=("Patient.identifier[0].value",),
            )
        ]
