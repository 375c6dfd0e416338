"""FHIR dates as inclusive microsecond ranges at their own precision (samplan.fhir.dates)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from samplan.fhir.dates import MAX_US, MIN_US, from_us, now_us, parse_range, to_us

STOCKHOLM = ZoneInfo("Europe/Stockholm")
CET = timezone(timedelta(hours=1))
CEST = timezone(timedelta(hours=2))


def span(start: datetime, end: datetime) -> tuple[int, int]:
    """The inclusive range [start, end) as parse_range gives it."""
    return to_us(start), to_us(end) - 1


class TestPrecision:
    def test_a_year_is_the_whole_year_in_stockholm(self) -> None:
        assert parse_range("2026", STOCKHOLM) == span(datetime(2026, 1, 1, tzinfo=CET),
                                                      datetime(2027, 1, 1, tzinfo=CET))

    def test_a_month_is_the_whole_month(self) -> None:
        assert parse_range("2026-02", STOCKHOLM) == span(datetime(2026, 2, 1, tzinfo=CET),
                                                         datetime(2026, 3, 1, tzinfo=CET))

    def test_december_ends_at_the_new_year(self) -> None:
        assert parse_range("2026-12", STOCKHOLM) == span(datetime(2026, 12, 1, tzinfo=CET),
                                                         datetime(2027, 1, 1, tzinfo=CET))

    def test_a_day_is_midnight_to_midnight_local_time(self) -> None:
        assert parse_range("2027-01-12", STOCKHOLM) == span(datetime(2027, 1, 12, tzinfo=CET),
                                                            datetime(2027, 1, 13, tzinfo=CET))

    def test_a_summer_day_is_read_in_summer_time(self) -> None:
        low, _ = parse_range("2026-07-01", STOCKHOLM) or (0, 0)
        assert from_us(low) == datetime(2026, 6, 30, 22, tzinfo=UTC)

    def test_the_day_summer_time_starts_has_23_hours_and_the_day_it_ends_25(self) -> None:
        spring = parse_range("2026-03-29", STOCKHOLM)
        autumn = parse_range("2026-10-25", STOCKHOLM)
        assert spring is not None
        assert autumn is not None
        assert spring[1] - spring[0] + 1 == 23 * 3600 * 10**6
        assert autumn[1] - autumn[0] + 1 == 25 * 3600 * 10**6

    def test_a_minute(self) -> None:
        start = datetime(2027, 1, 12, 9, 30, tzinfo=CET)
        assert parse_range("2027-01-12T09:30", STOCKHOLM) == span(
            start, start + timedelta(minutes=1))

    def test_a_second(self) -> None:
        start = datetime(2027, 1, 12, 9, 30, 15, tzinfo=CET)
        assert parse_range("2027-01-12T09:30:15", STOCKHOLM) == span(
            start, start + timedelta(seconds=1))

    @pytest.mark.parametrize(
        ("fraction", "micro", "width"),
        [(".5", 500_000, 100_000), (".25", 250_000, 10_000), (".123", 123_000, 1_000),
         (".123456", 123_456, 1), (".1234567", 123_456, 1)],
    )
    def test_fractional_seconds_cover_the_precision_written(
        self, fraction: str, micro: int, width: int
    ) -> None:
        start = datetime(2026, 11, 23, 16, 40, 0, micro, tzinfo=UTC)
        assert parse_range(f"2026-11-23T16:40:00{fraction}Z", STOCKHOLM) == (
            to_us(start), to_us(start) + width - 1)

    def test_an_instant_as_the_server_writes_it_is_one_microsecond(self) -> None:
        low, high = parse_range("2026-11-23T16:40:00.123456Z", STOCKHOLM) or (0, 1)
        assert low == high


class TestTimezones:
    def test_z_is_utc(self) -> None:
        start = datetime(2027, 1, 12, 8, 30, tzinfo=UTC)
        assert parse_range("2027-01-12T08:30:00Z", STOCKHOLM) == span(
            start, start + timedelta(seconds=1))

    def test_an_offset_is_honoured(self) -> None:
        start = datetime(2027, 1, 12, 9, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))
        assert parse_range("2027-01-12T09:30:00+05:30", STOCKHOLM) == span(
            start, start + timedelta(seconds=1))
        west = datetime(2027, 1, 12, 9, 30, tzinfo=timezone(-timedelta(hours=3)))
        assert parse_range("2027-01-12T09:30:00-03:00", STOCKHOLM) == span(
            west, west + timedelta(seconds=1))

    def test_the_same_instant_written_two_ways_is_the_same_range(self) -> None:
        assert parse_range("2027-01-12T09:30:00+01:00", STOCKHOLM) == parse_range(
            "2027-01-12T08:30:00Z", STOCKHOLM)

    def test_a_time_without_offset_is_stockholm_time(self) -> None:
        assert parse_range("2027-01-12T09:30:00", STOCKHOLM) == parse_range(
            "2027-01-12T09:30:00+01:00", STOCKHOLM)
        assert parse_range("2026-07-01T09:30:00", STOCKHOLM) == parse_range(
            "2026-07-01T09:30:00+02:00", STOCKHOLM)

    def test_plain_dates_follow_the_zone_given(self) -> None:
        assert parse_range("2027-01-12", ZoneInfo("UTC")) == span(
            datetime(2027, 1, 12, tzinfo=UTC), datetime(2027, 1, 13, tzinfo=UTC))
        assert parse_range("2026-07-01", STOCKHOLM) == span(
            datetime(2026, 7, 1, tzinfo=CEST), datetime(2026, 7, 2, tzinfo=CEST))

    def test_late_evening_utc_is_the_next_day_in_stockholm(self) -> None:
        late = parse_range("2027-01-12T23:30:00Z", STOCKHOLM)
        next_day = parse_range("2027-01-13", STOCKHOLM)
        assert late is not None
        assert next_day is not None
        assert next_day[0] <= late[0] <= late[1] <= next_day[1]


class TestUnreadable:
    @pytest.mark.parametrize(
        "value",
        ["", "yesterday", "26", "2026-1", "2026-1-1", "2026-13", "2026-00", "2026-02-30",
         "2026-01-01T25:00", "2026-01-01T10:00:60", "2026-01-01T10", "2026-01-01Z",
         "2026-01-01T10:00:00+25:00", "2026-01-01T10:00:00+0100", "2026-01-01 10:00:00",
         "2026-01-01T10:00:00.Z", "２０２６", "2026-0１", "9999", "9999-12-31",
         "9999-12-31T23:59:59Z"],
    )
    def test_is_none_never_an_exception(self, value: str) -> None:
        assert parse_range(value, STOCKHOLM) is None

    def test_surrounding_whitespace_is_ignored(self) -> None:
        assert parse_range(" 2026 ", STOCKHOLM) == parse_range("2026", STOCKHOLM)


class TestConversions:
    def test_microseconds_round_trip(self) -> None:
        moment = datetime(2026, 11, 23, 16, 40, 0, 123456, tzinfo=UTC)
        assert from_us(to_us(moment)) == moment
        assert to_us(datetime(1970, 1, 1, tzinfo=UTC)) == 0

    def test_now_is_now(self) -> None:
        before = to_us(datetime.now(UTC))
        assert before <= now_us() <= to_us(datetime.now(UTC))

    def test_open_ends_lie_beyond_any_date(self) -> None:
        low, high = parse_range("0001", STOCKHOLM) or (0, 0)
        assert MIN_US < low
        _, high = parse_range("9999-12-31T22:59:59-01:00", STOCKHOLM) or (0, 0)
        assert high < MAX_US
