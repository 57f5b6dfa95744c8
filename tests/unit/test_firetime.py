"""Tests for crons.firetime (pure Python: no Django needed).

Run with: .venv/bin/python -m pytest tests/test_firetime.py -p no:django -q
"""

from __future__ import annotations

import itertools
import json
import pickle
import re
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from crons import firetime
from crons.firetime import (
    InvalidSchedule,
    InvalidTimezone,
    fires_between,
    next_fire,
    next_fires,
    validate,
)

NY = "America/New_York"
DST_TABLE = json.loads((Path(__file__).parents[1] / "data" / "dst_table.json").read_text())


@pytest.fixture(scope="module", autouse=True)
def _test_queue():
    """Shadow tests/conftest.py's autouse session fixture of the same name,
    which needs pytest-django's database: these tests are pure Python and run
    with ``-p no:django``."""
    return


def z(text: str) -> datetime:
    """'2026-03-08T07:00:00Z' -> aware UTC datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def iso(values: list[datetime]) -> list[str]:
    return [v.strftime("%Y-%m-%dT%H:%M:%SZ") for v in values]


def _table_cases() -> list[tuple[str, str, str, str, str, list[str]]]:
    cases = []
    for day in DST_TABLE["days"]:
        for expr, expected in day["expected"].items():
            cases.append((day["tz"], day["date"], expr, day["start"], day["end"], expected))
    return cases


TABLE_CASES = _table_cases()
TABLE_IDS = [f"{tz}-{d}-{expr}" for tz, d, expr, *_ in TABLE_CASES]


# --------------------------------------------------------------------------
# DST table (expectations written by hand from the rule)
# --------------------------------------------------------------------------


def test_dst_table_covers_the_required_expressions():
    required = {
        "30 2 * * *",
        "30 1 * * *",
        "0 2 * * *",
        "*/20 1 * * *",
        "0 1-3 * * *",
        "0 */2 * * *",
        "@hourly",
        "15,45 1 * * *",
        "*/30 * * * *",
    }
    by_day = {(d["tz"], d["date"]): set(d["expected"]) for d in DST_TABLE["days"]}
    for key in [(NY, "2026-03-08"), (NY, "2026-11-01")]:
        assert required <= by_day[key]
    for key in [("Europe/London", "2026-03-29"), ("Europe/London", "2026-10-25")]:
        assert len(required & by_day[key]) >= 8


@pytest.mark.parametrize(
    ("tz", "day", "expr", "start", "end", "expected"), TABLE_CASES, ids=TABLE_IDS
)
def test_fires_between_matches_dst_table(tz, day, expr, start, end, expected):
    got = fires_between(expr, tz, z(start), z(end))
    assert iso(got) == expected
    assert all(t.tzinfo is UTC and t.microsecond == 0 for t in got)


@pytest.mark.parametrize(
    ("tz", "day", "expr", "start", "end", "expected"), TABLE_CASES, ids=TABLE_IDS
)
def test_next_fire_agrees_with_dst_table(tz, day, expr, start, end, expected):
    # Chaining next_fire reproduces the day ...
    chained, t = [], z(start)
    while True:
        t = next_fire(expr, tz, t)
        if t > z(end):
            break
        chained.append(t)
    assert iso(chained) == expected
    # ... and from any point just before a fire, that fire comes next (this
    # exercises starting inside the repeated hour of a fall-back).
    for text in expected:
        assert next_fire(expr, tz, z(text) - timedelta(seconds=1)) == z(text)
        assert next_fire(expr, tz, z(text) - timedelta(microseconds=1)) == z(text)


def test_spec_examples_new_york():
    # Fall-back: wildcard job fires six times, fixed job once.
    fb_start, fb_end = z("2026-11-01T03:59:59Z"), z("2026-11-02T04:59:59Z")
    assert len(fires_between("*/20 1 * * *", NY, fb_start, fb_end)) == 6
    assert iso(fires_between("30 1 * * *", NY, fb_start, fb_end)) == ["2026-11-01T05:30:00Z"]
    # Spring-forward: fixed job shifted to 03:00 EDT, wildcard job in the gap skipped.
    sf_start, sf_end = z("2026-03-08T04:59:59Z"), z("2026-03-09T03:59:59Z")
    assert iso(fires_between("30 2 * * *", NY, sf_start, sf_end)) == ["2026-03-08T07:00:00Z"]
    assert fires_between("*/20 2 * * *", NY, sf_start, sf_end) == []


def test_after_given_inside_repeated_hour():
    # 01:30 EDT (first pass): the next */20 fire is 01:40 EDT, not 01:40 EST.
    first_pass = datetime(2026, 11, 1, 1, 30, tzinfo=ZoneInfo(NY))  # fold=0 -> EDT
    assert next_fire("*/20 1 * * *", NY, first_pass) == z("2026-11-01T05:40:00Z")
    # 01:30 EST (second pass)
    second_pass = datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=ZoneInfo(NY))
    assert next_fire("*/20 1 * * *", NY, second_pass) == z("2026-11-01T06:40:00Z")
    # A fixed job never goes back to the second pass.
    assert next_fire("40 1 * * *", NY, first_pass) == z("2026-11-01T05:40:00Z")
    assert next_fire("40 1 * * *", NY, second_pass) == z("2026-11-02T06:40:00Z")
    # After the last first-pass fire, the second pass of 01:00 comes next.
    assert next_fires("*/20 1 * * *", NY, z("2026-11-01T05:40:00Z"), 4) == [
        z("2026-11-01T06:00:00Z"),
        z("2026-11-01T06:20:00Z"),
        z("2026-11-01T06:40:00Z"),
        z("2026-11-02T06:00:00Z"),
    ]


def test_seconds_form_on_dst_days():
    # Fixed (minute/hour not '*'): six wall times in the gap collapse to one.
    assert iso(next_fires("30 2 * * * */10", NY, z("2026-03-08T06:59:00Z"), 2)) == [
        "2026-03-08T07:00:00Z",
        "2026-03-09T06:30:00Z",
    ]
    # Wildcard: nothing in the gap.
    assert iso(next_fires("* 2 * * * 0", NY, z("2026-03-08T06:59:00Z"), 1)) == [
        "2026-03-09T06:00:00Z",  # 02:00 EDT the next day
    ]


# --------------------------------------------------------------------------
# Ordinary expressions over whole years
# --------------------------------------------------------------------------

YEAR_START = z("2025-12-31T23:59:59Z")
YEAR_END = z("2027-01-01T12:00:00Z")


def test_dom_dow_or_semantics_first_fires_2026():
    # The 1st of the month OR any Monday (Celery's crontab would AND them).
    assert iso(next_fires("0 9 1 * 1", None, YEAR_START, 8)) == [
        "2026-01-01T09:00:00Z",  # Thursday the 1st
        "2026-01-05T09:00:00Z",
        "2026-01-12T09:00:00Z",
        "2026-01-19T09:00:00Z",
        "2026-01-26T09:00:00Z",
        "2026-02-01T09:00:00Z",  # Sunday the 1st
        "2026-02-02T09:00:00Z",
        "2026-02-09T09:00:00Z",
    ]
    assert iso(next_fires("0 9 1 * 1", NY, YEAR_START, 3)) == [
        "2026-01-01T14:00:00Z",
        "2026-01-05T14:00:00Z",
        "2026-01-12T14:00:00Z",
    ]
    # 09:00 EDT on Monday 2026-06-01 (both the 1st and a Monday: fires once).
    assert next_fire("0 9 1 * 1", NY, z("2026-05-31T00:00:00Z")) == z("2026-06-01T13:00:00Z")
    assert next_fire("0 9 1 * 1", NY, z("2026-06-01T13:00:00Z")) == z("2026-06-08T13:00:00Z")
    # 52 Mondays + 12 firsts - 1 (June 1st is a Monday) in 2026.
    for tz in (None, NY):
        year = fires_between("0 9 1 * 1", tz, YEAR_START, z("2026-12-31T23:59:59Z"))
        assert len(year) == 63


@pytest.mark.parametrize(
    "schedule", ["0 0 1 * 5#1", "0 0 15 * 5#2", "0 0 1,15 * 1#1", "0 0 28 * L5", "0 0 15W * 1"]
)
def test_day_of_month_with_nth_weekday_or_w_is_rejected(schedule):
    # croniter 7.0.0 yields every first Friday for "0 0 1 * 5#1", nothing for
    # "0 0 15 * 5#2" and ignores the Monday in "0 0 15W * 1": not acceptable
    # for the fire-time authority.
    with pytest.raises(InvalidSchedule, match="cannot be combined"):
        validate(schedule, None)


def test_last_day_of_month():
    assert [t.date() for t in next_fires("0 0 L * *", "UTC", YEAR_START, 12)] == [
        date(2026, 1, 31),
        date(2026, 2, 28),
        date(2026, 3, 31),
        date(2026, 4, 30),
        date(2026, 5, 31),
        date(2026, 6, 30),
        date(2026, 7, 31),
        date(2026, 8, 31),
        date(2026, 9, 30),
        date(2026, 10, 31),
        date(2026, 11, 30),
        date(2026, 12, 31),
    ]
    # Leap year 2028.
    assert next_fire("0 0 L * *", None, z("2028-02-01T00:00:00Z")) == z("2028-02-29T00:00:00Z")
    assert next_fire("0 0 L 2 *", None, z("2026-06-01T00:00:00Z")) == z("2027-02-28T00:00:00Z")
    assert next_fire("0 0 L 2 *", None, z("2027-06-01T00:00:00Z")) == z("2028-02-29T00:00:00Z")
    # Local midnight in New York: EST -> 05:00Z, EDT -> 04:00Z.
    assert next_fire("0 0 L * *", NY, z("2028-02-01T00:00:00Z")) == z("2028-02-29T05:00:00Z")
    assert next_fire("0 0 L * *", NY, z("2026-07-01T00:00:00Z")) == z("2026-07-31T04:00:00Z")


def test_nth_weekday():
    second_fridays_2026 = [
        "2026-01-09",
        "2026-02-13",
        "2026-03-13",
        "2026-04-10",
        "2026-05-08",
        "2026-06-12",
        "2026-07-10",
        "2026-08-14",
        "2026-09-11",
        "2026-10-09",
        "2026-11-13",
        "2026-12-11",
    ]
    utc = fires_between("0 12 * * 5#2", "UTC", YEAR_START, YEAR_END)
    assert iso(utc) == [f"{d}T12:00:00Z" for d in second_fridays_2026]
    ny = fires_between("0 12 * * 5#2", NY, YEAR_START, YEAR_END)
    # Noon EST = 17:00Z (Jan, Feb, Nov, Dec), noon EDT = 16:00Z (Mar 13 .. Oct 9).
    hours = ["17", "17", "16", "16", "16", "16", "16", "16", "16", "16", "17", "17"]
    assert iso(ny) == [f"{d}T{h}:00:00Z" for d, h in zip(second_fridays_2026, hours, strict=True)]


def _croniter_plain(expr: str, tz: str, start: datetime, end: datetime) -> list[datetime]:
    """croniter's own iteration (its own DST handling), for comparison."""
    it = croniter(expr, start.astimezone(ZoneInfo(tz)), ret_type=datetime)
    out = []
    while True:
        t = it.get_next().astimezone(UTC)
        if t > end:
            return out
        out.append(t)


def _transition_days(tz: str, start: datetime, end: datetime) -> set[date]:
    """Local dates on which the UTC offset changes, found hour by hour."""
    zone, days, t = ZoneInfo(tz), set(), start
    while t < end:
        later = t + timedelta(hours=1)
        if later.astimezone(zone).utcoffset() != t.astimezone(zone).utcoffset():
            days.add(later.astimezone(zone).date())
        t = later
    return days


DST_SENSITIVE = [
    "30 1 * * *",
    "30 2 * * *",
    "*/20 1 * * *",
    "0 */2 * * *",
    "@hourly",
    "0 1-3 * * *",
    "15,45 1 * * *",
    "*/30 * * * *",
]


@pytest.mark.parametrize("expr", DST_SENSITIVE)
@pytest.mark.parametrize(
    ("tz", "transition"),
    [
        (NY, "2026-03-08"),
        (NY, "2026-11-01"),
        ("Europe/London", "2026-03-29"),
        ("Europe/London", "2026-10-25"),
    ],
)
def test_equals_croniter_outside_dst_days(expr, tz, transition):
    # Five days around a transition: identical to croniter except on the
    # transition day itself (which the DST table pins down).
    day = date.fromisoformat(transition)
    zone = ZoneInfo(tz)
    start = datetime.combine(day - timedelta(days=2), datetime.min.time(), zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=3), datetime.min.time(), zone).astimezone(UTC)
    assert _transition_days(tz, start, end) == {day}
    ours = fires_between(expr, tz, start, end)
    plain = _croniter_plain(expr, tz, start, end)

    def ordinary(ts):
        return [t for t in ts if t.astimezone(zone).date() != day]

    assert ordinary(ours) == ordinary(plain)
    assert len(ordinary(ours)) >= 4
    assert ours == sorted(set(ours))


def test_utc_full_year_equals_croniter_for_dst_sensitive_expressions():
    # UTC has no transitions: everything is croniter's.
    for expr in ["30 1 * * *"]:
        assert fires_between(expr, None, YEAR_START, YEAR_END) == _croniter_plain(
            expr, "UTC", YEAR_START, YEAR_END
        )


def test_full_year_equals_croniter_for_9am_weekdays():
    # Nothing at 09:00 is affected by DST, so all days agree.
    expr = "0 9 * * 1-5"
    assert fires_between(expr, NY, YEAR_START, YEAR_END) == _croniter_plain(
        expr, NY, YEAR_START, YEAR_END
    )


# --------------------------------------------------------------------------
# Six fields: seconds are the LAST field (croniter 7 default)
# --------------------------------------------------------------------------


def test_six_field_seconds_every_ten_seconds():
    start = z("2026-01-01T00:00:00Z")
    assert iso(next_fires("* * * * * */10", None, start, 7)) == [
        "2026-01-01T00:00:10Z",
        "2026-01-01T00:00:20Z",
        "2026-01-01T00:00:30Z",
        "2026-01-01T00:00:40Z",
        "2026-01-01T00:00:50Z",
        "2026-01-01T00:01:00Z",
        "2026-01-01T00:01:10Z",
    ]
    got = fires_between("* * * * * */10", NY, start, start + timedelta(hours=1))
    assert len(got) == 360
    assert all(b - a == timedelta(seconds=10) for a, b in itertools.pairwise(got))


def test_six_field_first_field_is_still_minutes():
    start = z("2026-01-01T00:00:00Z")
    # '*/10' in the first field means minutes 0,10,20..., every second of them.
    assert iso(next_fires("*/10 * * * * *", None, start, 2)) == [
        "2026-01-01T00:00:01Z",
        "2026-01-01T00:00:02Z",
    ]
    assert next_fire("*/10 * * * * *", None, z("2026-01-01T00:00:59Z")) == z("2026-01-01T00:10:00Z")
    assert next_fire("0 9 * * * 30", None, start) == z("2026-01-01T09:00:30Z")


# --------------------------------------------------------------------------
# validate()
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "schedule",
    [
        "* * * * *",
        "*/7 * * * *",
        "0 9 * * 1-5",
        "0 9 1 * 1",
        "0 0 L * *",
        "0 12 * * 5#2",
        "0 12 * * fri#2",
        "0 0 1 jan,jul *",
        "0 8-18/2 * * mon-fri",
        "5,10,15 */3 * * *",
        "@hourly",
        "@daily",
        "@midnight",
        "@weekly",
        "@monthly",
        "@yearly",
        "@annually",
        "@HOURLY",
        "  0 9 * * *  ",
        "* * * * * */10",
        "0 0 29 2 *",
        "0 0 ? * *",
        "0 12 * * L5",
    ],
)
def test_validate_accepts(schedule):
    assert validate(schedule, None) is None
    assert validate(schedule, NY) is None


@pytest.mark.parametrize(
    ("schedule", "fragment"),
    [
        ("61 * * * *", "out of range"),
        ("* * * * * * *", "got 7"),
        ("0 0 1 1 * 0 2026", "got 7"),
        ("* * * *", "got 4"),
        ("", "empty"),
        ("   ", "empty"),
        ("hello world", "got 2"),
        ("a b c d e", ""),
        ("@reboot", "unknown alias"),
        ("@every 5m", "unknown alias"),
        ("R * * * *", "H/R"),
        ("H * * * *", "H/R"),
        ("0 0 30 2 *", ""),
        ("*/0 * * * *", "step"),
        ("0 0 * * 1#6", ""),
        ("0 0 * * 1,3#2", ""),
        ("0 24 * * *", "out of range"),
    ],
)
def test_validate_rejects_schedules(schedule, fragment):
    with pytest.raises(InvalidSchedule) as info:
        validate(schedule, "UTC")
    message = str(info.value)
    assert message.startswith(f"Invalid cron schedule {schedule!r}: ")
    assert fragment in message
    assert isinstance(info.value, ValueError)


def test_exceptions_pickle():
    err = pickle.loads(pickle.dumps(InvalidSchedule("61 * * * *", "out of range")))
    assert str(err) == "Invalid cron schedule '61 * * * *': out of range"
    assert str(pickle.loads(pickle.dumps(InvalidTimezone("Mars/Base")))) == (
        "Unknown timezone 'Mars/Base'"
    )


def test_validate_message_examples():
    with pytest.raises(InvalidSchedule, match=r"^Invalid cron schedule '61 \* \* \* \*': "):
        validate("61 * * * *", None)
    with pytest.raises(InvalidTimezone) as info:
        validate("* * * * *", "Mars/Base")
    assert str(info.value) == "Unknown timezone 'Mars/Base'"


@pytest.mark.parametrize(
    "tz", [None, "", "UTC", "Etc/UTC", NY, "Europe/London", "EST5EDT", "Asia/Kolkata", "Etc/GMT+5"]
)
def test_validate_accepts_timezones(tz):
    validate("0 9 * * *", tz)


@pytest.mark.parametrize(
    "tz",
    [
        "Mars/Base",
        "america/new_york",
        " UTC",
        "America",
        "../etc/passwd",
        "/etc/passwd",
        "America/../Europe/London",
        "zone.tab",
        "a\x00b",
        "x" * 5000,
        42,
    ],
    ids=lambda tz: repr(tz)[:30],
)
def test_validate_rejects_timezones(tz):
    with pytest.raises(InvalidTimezone) as info:
        validate("0 9 * * *", tz)
    assert str(info.value).startswith(f"Unknown timezone {tz!r}")
    assert isinstance(info.value, ValueError)


def test_schedule_errors_take_precedence_and_functions_raise_too():
    with pytest.raises(InvalidSchedule):
        validate("61 * * * *", "Mars/Base")
    after = z("2026-01-01T00:00:00Z")
    with pytest.raises(InvalidSchedule):
        next_fire("* * * * * * *", None, after)
    with pytest.raises(InvalidTimezone):
        fires_between("* * * * *", "Mars/Base", after, after + timedelta(hours=1))
    with pytest.raises(InvalidSchedule):
        next_fires(None, None, after, 1)  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# next_fire / next_fires / fires_between contracts
# --------------------------------------------------------------------------


def test_next_fire_is_strictly_after():
    on_fire = z("2026-01-05T09:00:00Z")
    assert next_fire("0 9 1 * 1", None, on_fire) == z("2026-01-12T09:00:00Z")
    assert next_fire("0 9 1 * 1", None, on_fire - timedelta(microseconds=1)) == on_fire
    assert next_fire("*/7 * * * *", NY, z("2026-05-05T10:07:00Z")) == z("2026-05-05T10:14:00Z")
    # 10:56 -> 11:00 (the */7 phase restarts every hour)
    assert next_fire("*/7 * * * *", NY, z("2026-05-05T10:56:00Z")) == z("2026-05-05T11:00:00Z")
    # Fixed job shifted into the gap end: strictly after 07:00Z is the next day.
    assert next_fire("30 2 * * *", NY, z("2026-03-08T07:00:00Z")) == z("2026-03-09T06:30:00Z")


def test_next_fire_accepts_any_aware_timezone_and_returns_utc():
    tokyo = datetime(
        2026, 1, 5, 18, 0, 0, 123456, tzinfo=ZoneInfo("Asia/Tokyo")
    )  # 09:00:00.123456Z
    result = next_fire("0 9 * * *", None, tokyo)
    assert result == z("2026-01-06T09:00:00Z")
    assert result.tzinfo is UTC and result.microsecond == 0
    fixed_offset = datetime(2026, 1, 5, 3, 59, tzinfo=timezone(timedelta(hours=-5)))
    assert next_fire("0 9 * * *", NY, fixed_offset) == z("2026-01-05T14:00:00Z")


def test_naive_datetimes_are_rejected():
    with pytest.raises(ValueError, match="timezone-aware"):
        next_fire("* * * * *", None, datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        fires_between("* * * * *", None, datetime(2026, 1, 1), z("2026-01-02T00:00:00Z"))
    with pytest.raises(ValueError, match="timezone-aware"):
        fires_between("* * * * *", None, z("2026-01-01T00:00:00Z"), datetime(2026, 1, 2))


def test_fires_between_bounds():
    start, end = z("2026-01-01T09:00:00Z"), z("2026-01-03T09:00:00Z")
    # start excluded, end included
    assert iso(fires_between("0 9 * * *", None, start, end)) == [
        "2026-01-02T09:00:00Z",
        "2026-01-03T09:00:00Z",
    ]
    assert fires_between("0 9 * * *", None, end, start) == []
    assert fires_between("0 9 * * *", None, start, start) == []


def test_next_fires_count():
    after = z("2026-01-01T00:00:00Z")
    assert next_fires("@daily", NY, after, 0) == []
    assert iso(next_fires("@daily", NY, after, 3)) == [
        "2026-01-01T05:00:00Z",
        "2026-01-02T05:00:00Z",
        "2026-01-03T05:00:00Z",
    ]
    with pytest.raises(ValueError):
        next_fires("@daily", NY, after, -1)


def test_parsed_expressions_are_cached():
    firetime._compiled_cached.cache_clear()
    after = z("2026-01-01T00:00:00Z")
    for _ in range(5):
        next_fire("*/7 * * * *", NY, after)
    info = firetime._compiled_cached.cache_info()
    assert info.misses == 1 and info.hits == 4


@pytest.mark.parametrize(
    ("schedule", "reason"),
    [
        ("1-0 * * * *", "reversed range '1-0' in the minute field"),
        ("0 0 * dec-jan *", "reversed range 'dec-jan' in the month field"),
        ("*/99999999999999999999 * * * *", "step '99999999999999999999' in the minute field"),
        ("*/0 * * * *", "step '0' in the minute field"),
        ("0 */25 * * *", "step '25' in the hour field must be a whole number from 1 to 24"),
        ("* * * * * */61", "step '61' in the second field"),
    ],
)
def test_schedules_that_mean_nothing_sensible_are_refused_with_the_reason(schedule, reason):
    with pytest.raises(InvalidSchedule, match=re.escape(reason)):
        validate(schedule, None)


@pytest.mark.parametrize(
    "schedule",
    ["5-59/10 * * * *", "0 0 * jan-mar mon-fri", "0 0 * * 7", "0 0 * * 5#2", "*/60 * * * *"],
)
def test_ranges_steps_and_names_in_order_are_accepted(schedule):
    validate(schedule, None)
