"""Reading dates, validity, agreed times, phone numbers and names out of what staff write."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from samplan.agreement.values import (
    SWEDISH_TIME,
    FoundContact,
    PlannedTime,
    Unreadable,
    UnreadableTime,
    Validity,
    find_contact_points,
    find_hsa_ids,
    parse_agreed_time,
    parse_contact_points,
    parse_date,
    parse_planned_time,
    parse_validity,
    person_display,
    plan_types,
)

NOTE_DATE = date(2026, 11, 20)


class TestDates:
    @pytest.mark.parametrize(
        "written",
        ["2026-11-20", "20261120", "20 nov 2026", "20 november 2026", "20 Nov. 2026", "20/11 2026"],
    )
    def test_swedish_date_forms_are_read(self, written: str) -> None:
        assert parse_date(written) == date(2026, 11, 20)

    @pytest.mark.parametrize("written", ["2026-13-01", "2026-02-30", "nästa vecka", "11/20/2026"])
    def test_anything_else_is_unreadable(self, written: str) -> None:
        with pytest.raises(Unreadable):
            parse_date(written)


class TestValidity:
    @pytest.mark.parametrize(
        "written",
        [
            "2026-11-20 -- 2027-05-20",
            "2026-11-20 – 2027-05-20",
            "2026-11-20 — 2027-05-20",
            "2026-11-20 - 2027-05-20",
            "2026-11-20 till 2027-05-20",
            "fr.o.m. 2026-11-20 t.o.m. 2027-05-20",
            "Gäller 2026-11-20 -- 2027-05-20.",
        ],
    )
    def test_a_date_range(self, written: str) -> None:
        assert parse_validity(written, NOTE_DATE) == Validity(date(2026, 11, 20), date(2027, 5, 20))

    def test_a_single_date_is_the_end_and_the_note_date_the_start(self) -> None:
        assert parse_validity("2027-05-20", NOTE_DATE) == Validity(NOTE_DATE, date(2027, 5, 20))

    def test_a_single_date_before_the_note_is_not_guessed(self) -> None:
        with pytest.raises(Unreadable, match="före|before"):
            parse_validity("2026-11-01", NOTE_DATE)

    def test_from_a_date_has_no_end(self) -> None:
        assert parse_validity("från 2026-12-01", NOTE_DATE) == Validity(date(2026, 12, 1), None)

    @pytest.mark.parametrize("written", ["tillsvidare", "Tills vidare.", "TILLSVIDARE"])
    def test_tillsvidare_runs_from_the_note_date_without_end(self, written: str) -> None:
        assert parse_validity(written, NOTE_DATE) == Validity(NOTE_DATE, None)

    @pytest.mark.parametrize(
        ("written", "end"),
        [
            ("6 månader", date(2027, 5, 20)),
            ("3 mån", date(2027, 2, 20)),
            ("1 år", date(2027, 11, 20)),
            ("12 veckor", date(2027, 2, 12)),
            ("30 dagar", date(2026, 12, 20)),
            ("sex månader", date(2027, 5, 20)),
            ("Gäller i 6 månader", date(2027, 5, 20)),
        ],
    )
    def test_a_duration_runs_from_the_note_date(self, written: str, end: date) -> None:
        assert parse_validity(written, NOTE_DATE) == Validity(NOTE_DATE, end)

    def test_a_duration_from_an_explicit_date(self) -> None:
        assert parse_validity("6 månader från 2026-12-01", NOTE_DATE) == Validity(
            date(2026, 12, 1), date(2027, 6, 1)
        )

    def test_month_arithmetic_clamps_to_the_end_of_the_month(self) -> None:
        assert parse_validity("1 mån", date(2027, 1, 31)) == Validity(
            date(2027, 1, 31), date(2027, 2, 28)
        )

    @pytest.mark.parametrize("written", ["tillsvidare", "6 månader"])
    def test_relative_forms_without_a_note_date_are_unreadable(self, written: str) -> None:
        with pytest.raises(Unreadable, match="no date"):
            parse_validity(written, None)

    @pytest.mark.parametrize(
        "written",
        ["snart", "2027-05-20 -- 2026-11-20", "till sommaren", "2026-11-20 -- 2027-13-01"],
    )
    def test_unreadable_validity_is_refused(self, written: str) -> None:
        with pytest.raises(Unreadable):
            parse_validity(written, NOTE_DATE)


class TestAgreedTime:
    def test_winter_time_is_utc_plus_one(self) -> None:
        agreed = parse_agreed_time("2027-01-12 09:30, Hälsocentralen Lindsdal")
        assert agreed.start.isoformat() == "2027-01-12T09:30:00+01:00"
        assert agreed.start.utcoffset() == timedelta(hours=1)
        assert agreed.location == "Hälsocentralen Lindsdal"
        assert agreed.line == "2027-01-12 09:30, Hälsocentralen Lindsdal"

    def test_summer_time_is_utc_plus_two(self) -> None:
        agreed = parse_agreed_time("2027-06-15 9.30 på vårdcentralen")
        assert agreed.start.isoformat() == "2027-06-15T09:30:00+02:00"
        assert agreed.location == "vårdcentralen"

    @pytest.mark.parametrize(
        ("written", "start", "location"),
        [
            ("tisdag 12 januari 2027 kl. 9", datetime(2027, 1, 12, 9, 0), None),
            ("2027-01-12 kl 14:15 - hembesök", datetime(2027, 1, 12, 14, 15), "hembesök"),
            ("den 2027-03-01 10:00 hos distriktssköterskan", datetime(2027, 3, 1, 10, 0),
             "distriktssköterskan"),
        ],
    )  # fmt: skip
    def test_other_written_forms(self, written: str, start: datetime, location: str | None) -> None:
        agreed = parse_agreed_time(written)
        assert agreed.start == start.replace(tzinfo=SWEDISH_TIME)
        assert agreed.location == location

    def test_a_time_in_the_spring_gap_is_refused(self) -> None:
        with pytest.raises(Unreadable, match="does not exist"):
            parse_agreed_time("2027-03-28 02:30")

    def test_a_time_in_the_autumn_overlap_is_refused(self) -> None:
        with pytest.raises(Unreadable, match="twice"):
            parse_agreed_time("2026-10-25 02:30")

    def test_a_date_without_a_time_is_refused(self) -> None:
        with pytest.raises(Unreadable, match="no time of day"):
            parse_agreed_time("2027-01-12, Hälsocentralen")

    def test_text_without_a_date_is_refused(self) -> None:
        with pytest.raises(Unreadable, match="has no date"):
            parse_agreed_time("om tre veckor")


class TestContactPoints:
    def test_phone_numbers_and_e_services_in_order(self) -> None:
        text = (
            "1177 e-tjänster (meddelande till Hälsocentralen Kvarnholmen), telefon 0480-123 40 "
            "vardagar 08-17. Kvällar och helger: 1177."
        )
        assert parse_contact_points(text) == [
            {"system": "other", "value": "1177 e-tjänster"},
            {"system": "phone", "value": "0480-123 40"},
            {"system": "phone", "value": "1177"},
        ]

    def test_values_are_kept_as_written_lightly_normalised(self) -> None:
        assert parse_contact_points("Tel 0480–840\u00a000, mobil 070-123 45 67") == [
            {"system": "phone", "value": "0480-840 00"},
            {"system": "phone", "value": "070-123 45 67"},
        ]

    def test_mail_web_and_emergency_numbers(self) -> None:
        assert parse_contact_points("karin.ek@regionkalmar.se, www.1177.se, akut 112") == [
            {"system": "email", "value": "karin.ek@regionkalmar.se"},
            {"system": "url", "value": "www.1177.se"},
            {"system": "phone", "value": "112"},
        ]

    def test_dates_and_personnummer_are_not_phone_numbers(self) -> None:
        assert parse_contact_points("2027-01-12 09:30, 19450101-1235, vardagar 08-17") == []


class TestTimesAnywhereInTheLine:
    @pytest.mark.parametrize(
        ("line", "start", "location"),
        [
            ("Återbesök 2027-01-20 kl. 08.15, KBT-samtal", "2027-01-20T08:15:00+01:00", None),
            ("tisdag 15 juni 2027 kl. 9.30", "2027-06-15T09:30:00+02:00", None),
            ("2027-03-15 kl 14.30", "2027-03-15T14:30:00+01:00", None),
            ("Läkarbesök tisdag 15 juni 2027 kl. 9.30 på barnmottagningen",
             "2027-06-15T09:30:00+02:00", "barnmottagningen"),
            ("Hembesök den 2 mars 2027 kl 13 hos patienten", "2027-03-02T13:00:00+01:00",
             "patienten"),
            ("2027-01-12 09:30, Hälsocentralen Lindsdal", "2027-01-12T09:30:00+01:00",
             "Hälsocentralen Lindsdal"),
        ],
    )
    def test_the_first_date_and_time_of_the_line(
        self, line: str, start: str, location: str | None
    ) -> None:
        agreed = parse_agreed_time(line)
        assert (agreed.start.isoformat(), agreed.location, agreed.line) == (start, location, line)

    def test_a_date_inside_a_number_is_not_a_date(self) -> None:
        with pytest.raises(Unreadable):
            parse_agreed_time("Ring 0480-2027-01-20 09:30")

    def test_a_time_that_cannot_be_booked_says_so(self) -> None:
        with pytest.raises(UnreadableTime, match="does not exist"):
            parse_agreed_time("Återbesök 2027-03-28 kl. 02.30")
        with pytest.raises(UnreadableTime, match="no valid time"):
            parse_agreed_time("Återbesök 2027-03-28 kl. 25.30")


class TestPlannedTimes:
    @pytest.mark.parametrize(
        ("line", "start", "end"),
        [
            ("v. 12", date(2027, 3, 22), date(2027, 3, 28)),
            ("Kontroll vecka 48", date(2026, 11, 23), date(2026, 11, 29)),  # not over yet
            ("v 46", date(2027, 11, 15), date(2027, 11, 21)),  # over: next year's
            ("om 3 månader", date(2027, 2, 20), date(2027, 2, 20)),
            ("Återbesök om tre veckor", date(2026, 12, 11), date(2026, 12, 11)),
            ("inom 6 veckor", NOTE_DATE, date(2027, 1, 1)),
            ("15/3", date(2027, 3, 15), date(2027, 3, 15)),
            ("Blodprov 20/11", date(2026, 11, 20), date(2026, 11, 20)),
            ("29/2", date(2028, 2, 29), date(2028, 2, 29)),
            ("2027-01-12, Hälsocentralen", date(2027, 1, 12), date(2027, 1, 12)),
        ],
    )
    def test_planned_from_the_note_date(self, line: str, start: date, end: date) -> None:
        planned = parse_planned_time(line, NOTE_DATE)
        assert (planned.start, planned.end, planned.line) == (start, end, line)

    def test_the_reading_is_said_in_words(self) -> None:
        assert parse_planned_time("v. 12", NOTE_DATE) == PlannedTime(
            "v. 12", date(2027, 3, 22), date(2027, 3, 28), "'v. 12' as week 12 of 2027")

    @pytest.mark.parametrize("line", ["v. 12", "om 3 månader", "15/3"])
    def test_relative_forms_need_the_notes_date(self, line: str) -> None:
        with pytest.raises(Unreadable):
            parse_planned_time(line, None)

    @pytest.mark.parametrize("line", ["Ring mig", "32/3", "v. 60", "1/2 tablett"])
    def test_what_is_no_time_is_unreadable(self, line: str) -> None:
        if line == "1/2 tablett":  # a day and month as far as the words go: 1 February
            assert parse_planned_time(line, NOTE_DATE).start == date(2027, 2, 1)
            return
        with pytest.raises(Unreadable):
            parse_planned_time(line, NOTE_DATE)


class TestTelephoneHoursAndAudience:
    @pytest.mark.parametrize(
        ("text", "found"),
        [
            ("Telefon 0480-840 00 vardagar 08.00–16.30",
             [FoundContact({"system": "phone", "value": "0480-840 00"},
                           hours="vardagar 08.00–16.30")]),
            ("telefontid 08.00-09.00", []),
            ("mån-fre 08.15-12.00, tel 0480-123 45",
             [FoundContact({"system": "phone", "value": "0480-123 45"},
                           hours="mån-fre 08.15-12.00")]),
            ("Ring 0480-840 10 vardagar 08-17, telefontid 08.00-09.00",
             [FoundContact({"system": "phone", "value": "0480-840 10"},
                           hours="vardagar 08-17; telefontid 08.00-09.00")]),
            ("Mottagningen 08-123 456 78 kl 8-12", [FoundContact(
                {"system": "phone", "value": "08-123 456 78"}, hours="kl 8-12")]),
            ("Stockholm 08-17 45 67", [FoundContact({"system": "phone", "value": "08-17 45 67"})]),
        ],
    )
    def test_opening_hours_are_never_numbers(self, text: str, found: list[FoundContact]) -> None:
        assert list(find_contact_points(text)) == found
        assert parse_contact_points(text) == [f.point for f in found]

    @pytest.mark.parametrize(
        ("text", "professional"),
        [
            ("Direkt 0480-840 99 (endast för hemsjukvården).", ["0480-840 99"]),
            ("Tel 0480-840 00. Endast för personal: 0480-840 99", ["0480-840 99"]),
            ("0480-840 99, ej till patienten; 0480-840 00 till mottagningen", ["0480-840 99"]),
            ("Internt nummer 0480-840 99", ["0480-840 99"]),
            ("Ring 0480-840 00, endast för akuta ärenden", []),
            ("Tel 0480-840 00 (endast för patienter)", []),
        ],
    )
    def test_numbers_for_professionals_only(self, text: str, professional: list[str]) -> None:
        marked = [f.point["value"] for f in find_contact_points(text) if f.professional_only]
        assert marked == professional


class TestPeopleAndIds:
    @pytest.mark.parametrize(
        ("text", "display"),
        [
            ("Anna Berg, distriktsläkare, Hälsocentralen Kvarnholmen", "Anna Berg"),
            ("Karin Ek. Tel 0480-123 46", "Karin Ek"),
            ("Lena Nord (hemtjänsten)", "Lena Nord"),
            ("Per Ström tel 0480-840 00", "Per Ström"),
            ("\nKarin Ek\nannan rad", "Karin Ek"),
        ],
    )
    def test_the_person_a_contact_names(self, text: str, display: str) -> None:
        assert person_display(text) == display

    def test_hsa_ids_in_text(self) -> None:
        text = "Anna Berg (SE2321000073-1001), ersättare SE2321000073-1003, SE2321000073-1001"
        assert find_hsa_ids(text) == ["SE2321000073-1001", "SE2321000073-1003"]

    def test_statutory_plans_map_to_inera_codes(self) -> None:
        text = "SIP upprättad. Samordnad rehabiliteringsplan finns. Habiliteringsplan saknas."
        assert plan_types(text) == ["SIP", "RP", "HP"]
        assert plan_types("Samordnad rehabiliteringsplan") == ["RP"]
