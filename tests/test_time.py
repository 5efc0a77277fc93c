"""gitstore.core.time: the one RFC 3339 parser and the one duration grammar."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gitstore.core.time import (
    MAX_COMMIT_TIME,
    MAX_DURATION,
    MAX_TIME,
    MIN_COMMIT_TIME,
    MIN_TIME,
    MONTH,
    YEAR,
    check_commit_time,
    format_duration,
    format_rfc3339,
    from_timestamp,
    offset_minutes,
    parse_duration,
    parse_rfc3339,
    parse_when,
    try_parse_rfc3339,
)
from gitstore.errors import UsageError

H, D = timedelta(hours=1), timedelta(days=1)
NOW = datetime(2025, 1, 15, 12, 0, 0, tzinfo=UTC)


def tz(hours: int, minutes: int = 0) -> timezone:
    return timezone(timedelta(hours=hours, minutes=minutes))


def refuses(call: Callable[[], object], *needles: str) -> str:
    """``call`` raises a UsageError with a one-line message containing every needle."""
    with pytest.raises(UsageError) as info:
        call()
    message = str(info.value)
    assert message and "\n" not in message and "\r" not in message, message
    for needle in needles:
        assert needle in message, message
    return message


# --------------------------------------------------------------------------- timestamps

ACCEPTED_TIMESTAMPS = [
    ("2025-01-15T10:30:00Z", datetime(2025, 1, 15, 10, 30, tzinfo=UTC)),
    ("2025-01-15T10:30:00.5Z", datetime(2025, 1, 15, 10, 30, 0, 500000, tzinfo=UTC)),
    ("2024-02-29T23:59:59.123456789Z", datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=UTC)),
    ("2025-01-15T10:30:00+05:30", datetime(2025, 1, 15, 10, 30, tzinfo=tz(5, 30))),
    ("2025-01-15T10:30:00-08:00", datetime(2025, 1, 15, 10, 30, tzinfo=tz(-8))),
    ("2025-01-15T10:30:00-00:00", datetime(2025, 1, 15, 10, 30, tzinfo=UTC)),
    ("2025-01-15T10:30:00+00:00", datetime(2025, 1, 15, 10, 30, tzinfo=UTC)),
    ("2025-01-15T10:30:00+23:59", datetime(2025, 1, 15, 10, 30, tzinfo=tz(23, 59))),
    ("0001-01-01T00:00:00Z", MIN_TIME),
    ("0001-01-01T00:00:00-01:00", datetime(1, 1, 1, tzinfo=tz(-1))),
    ("9999-12-31T23:59:59.999999Z", MAX_TIME),
    ("1969-07-20T20:17:40Z", datetime(1969, 7, 20, 20, 17, 40, tzinfo=UTC)),
]

REFUSED_TIMESTAMPS: list[tuple[Any, str]] = [
    ("2025-01-15T10:30:00", "no timezone offset"),
    ("2025-01-15 10:30:00Z", "not an RFC 3339"),
    ("2025-01-15t10:30:00Z", "not an RFC 3339"),
    ("2025-01-15T10:30:00z", "not an RFC 3339"),
    ("2025-13-01T00:00:00Z", "not a real date-time"),
    ("2025-02-29T00:00:00Z", "not a real date-time"),
    ("2025-01-15T24:00:00Z", "not a real date-time"),
    ("2025-01-15T10:60:00Z", "not a real date-time"),
    ("2025-01-15T10:30:60Z", "not a real date-time"),
    ("2025-01-15T10:30:00+24:00", "offset beyond"),
    ("2025-01-15T10:30:00+05:60", "offset beyond"),
    ("2025-01-15T10:30:00+0530", "not an RFC 3339"),
    ("2025-01-15T10:30:00+05", "not an RFC 3339"),
    ("2025-01-15", "not an RFC 3339"),
    ("2025-01-15T10:30Z", "not an RFC 3339"),
    (" 2025-01-15T10:30:00Z", "not an RFC 3339"),
    ("2025-01-15T10:30:00Z\n", "not an RFC 3339"),
    ("2025-01-15T10:30:00.Z", "not an RFC 3339"),
    ("2025-01-15T10:30:00.1234567890Z", "not an RFC 3339"),
    ("0000-01-01T00:00:00Z", "not a real date-time"),
    ("10000-01-01T00:00:00Z", "not an RFC 3339"),
    ("-0001-01-01T00:00:00Z", "not an RFC 3339"),
    ("0001-01-01T00:00:00+14:00", "outside years 0001..9999 in UTC"),
    ("0001-01-01T00:00:00+00:01", "outside years 0001..9999 in UTC"),
    ("9999-12-31T23:59:59-00:01", "outside years 0001..9999 in UTC"),
    ("\uff12\uff10\uff12\uff15-01-15T10:30:00Z", "not an RFC 3339"),
    ("\u0662\u0660\u0662\u0665-01-15T10:30:00Z", "not an RFC 3339"),
    ("", "not an RFC 3339"),
    ("now", "not an RFC 3339"),
    (1736937000, "not an RFC 3339"),
    (None, "not an RFC 3339"),
    (True, "not an RFC 3339"),
    (b"2025-01-15T10:30:00Z", "not an RFC 3339"),
    (datetime(2025, 1, 15, tzinfo=UTC), "not an RFC 3339"),
]


@pytest.mark.parametrize(("text", "expected"), ACCEPTED_TIMESTAMPS)
def test_accepted_timestamps(text: str, expected: datetime) -> None:
    parsed = parse_rfc3339(text)
    assert parsed == expected and parsed.utcoffset() == expected.utcoffset()
    assert try_parse_rfc3339(text) == expected


@pytest.mark.parametrize(("value", "reason"), REFUSED_TIMESTAMPS)
def test_refused_timestamps(value: Any, reason: str) -> None:
    refuses(lambda: parse_rfc3339(value, what="--created"), "invalid --created", reason,
            "expected an RFC 3339 date-time")
    assert try_parse_rfc3339(value) is None


def test_bounds() -> None:
    assert datetime(1, 1, 1, tzinfo=UTC) == MIN_TIME
    assert datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) == MAX_TIME
    assert datetime(1970, 1, 1, tzinfo=UTC) == MIN_COMMIT_TIME
    assert datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC) == MAX_COMMIT_TIME


@pytest.mark.parametrize(("dt", "text"), [
    (datetime(2025, 1, 15, 12, 0, tzinfo=tz(1)), "2025-01-15T11:00:00Z"),
    (datetime(2025, 1, 15, 11, 0, 0, 999999, tzinfo=UTC), "2025-01-15T11:00:00Z"),
    (datetime(2025, 1, 15, 11, 0), "2025-01-15T11:00:00Z"),
    (datetime(5, 3, 4, 1, 2, 3, tzinfo=UTC), "0005-03-04T01:02:03Z"),
    (datetime(2025, 1, 1, 0, 30, tzinfo=tz(5, 30)), "2024-12-31T19:00:00Z"),
    (MAX_TIME, "9999-12-31T23:59:59Z"),
])
def test_format_rfc3339(dt: datetime, text: str) -> None:
    assert format_rfc3339(dt) == text
    assert parse_rfc3339(text) == (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).replace(
        microsecond=0)


def test_format_rfc3339_refuses_an_instant_outside_utc_years() -> None:
    refuses(lambda: format_rfc3339(datetime(1, 1, 1, tzinfo=tz(1))), "outside years")


def test_from_timestamp_and_offsets() -> None:
    assert from_timestamp(0) == MIN_COMMIT_TIME
    assert from_timestamp(1736937000) == datetime(2025, 1, 15, 10, 30, tzinfo=UTC)
    assert from_timestamp(-86400) == datetime(1969, 12, 31, tzinfo=UTC)
    assert from_timestamp(253402300799) == MAX_COMMIT_TIME
    assert from_timestamp(0).utcoffset() == timedelta(0)
    refuses(lambda: from_timestamp(253402300800), "outside years")
    refuses(lambda: from_timestamp(10**30), "outside years")
    refuses(lambda: from_timestamp(True), "not an integer")
    refuses(lambda: from_timestamp(1.5), "not an integer")  # type: ignore[arg-type]
    assert offset_minutes(parse_rfc3339("2025-01-15T10:30:00-05:30")) == -330
    assert offset_minutes(parse_rfc3339("2025-01-15T10:30:00+23:59")) == 1439
    assert offset_minutes(parse_rfc3339("2025-01-15T10:30:00Z")) == 0
    assert offset_minutes(datetime(2025, 1, 15)) == 0


@pytest.mark.parametrize(("dt", "expected"), [
    (datetime(2025, 1, 15, 10, 30, 0, 700000, tzinfo=tz(-5)),
     datetime(2025, 1, 15, 10, 30, tzinfo=tz(-5))),
    (MIN_COMMIT_TIME, MIN_COMMIT_TIME),
    (MAX_COMMIT_TIME, MAX_COMMIT_TIME),
    (MAX_TIME, MAX_COMMIT_TIME),  # truncated to whole seconds first, as git stores it
    (datetime(1970, 1, 1, 1, 0, tzinfo=tz(1)), MIN_COMMIT_TIME),
])
def test_commit_time_accepted(dt: datetime, expected: datetime) -> None:
    checked = check_commit_time(dt)
    assert checked == expected and checked.utcoffset() == dt.utcoffset()


@pytest.mark.parametrize(("dt", "reason"), [
    (datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC), "out of range"),
    (datetime(1970, 1, 1, 0, 30, tzinfo=tz(1)), "out of range"),
    (datetime(9999, 12, 31, 23, 59, 59, tzinfo=tz(-1)), "out of range"),
    (MIN_TIME, "out of range"),
    (datetime(1, 1, 1, tzinfo=tz(3)), "out of range"),
    (datetime(2025, 1, 15), "no timezone offset"),
    (datetime(2025, 1, 15, tzinfo=timezone(timedelta(seconds=30))), "whole minutes"),
    ("2025-01-15T10:30:00Z", "not a datetime"),
])
def test_commit_time_refused(dt: Any, reason: str) -> None:
    refuses(lambda: check_commit_time(dt), "invalid commit time", reason)


@pytest.mark.parametrize(("text", "expected"), [
    ("7d", NOW - 7 * D),
    ("1h30m", NOW - timedelta(minutes=90)),
    ("0s", NOW),
    ("2_year_retention", NOW - 2 * YEAR),
    ("2025-01-01T00:00:00+01:00", datetime(2025, 1, 1, tzinfo=tz(1))),
    ("2030-01-01T00:00:00Z", datetime(2030, 1, 1, tzinfo=UTC)),
])
def test_parse_when(text: str, expected: datetime) -> None:
    assert parse_when(text, now=NOW) == expected
    assert parse_when(text, now=NOW.replace(tzinfo=None)) == expected
    assert parse_when(text, now=NOW.astimezone(tz(-7))) == expected


@pytest.mark.parametrize(("text", "reason"), [
    ("2025-01-15", "not an RFC 3339"),
    ("2025-01-15T10:30:00", "no timezone offset"),
    ("30", "needs a unit"),
    ("yesterday", "not a duration"),
    ("indefinite", "indefinite is not allowed"),
    ("-7d", "negative"),
    ("", "not a duration"),
    (7, "not text"),
    (None, "not text"),
])
def test_parse_when_refused(text: Any, reason: str) -> None:
    refuses(lambda: parse_when(text, now=NOW, what="--since"), "invalid --since", reason)


def test_parse_when_refuses_going_before_year_one() -> None:
    refuses(lambda: parse_when("1000y", now=datetime(900, 1, 1, tzinfo=UTC)), "before year")


# --------------------------------------------------------------------------- durations

ACCEPTED_DURATIONS = [
    ("0s", timedelta(0)), ("90s", timedelta(seconds=90)), ("30m", timedelta(minutes=30)),
    ("2h", 2 * H), ("7d", 7 * D), ("2w", 14 * D), ("6mo", 6 * MONTH), ("2y", 2 * YEAR),
    ("1h30m", timedelta(minutes=90)), ("2y6mo", 2 * YEAR + 6 * MONTH),
    ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
    ("1h 30m", timedelta(minutes=90)), ("1 hour 30 minutes", timedelta(minutes=90)),
    ("30 days", 30 * D), ("2 years", 2 * YEAR), ("90 minutes", timedelta(minutes=90)),
    ("1 hour", H), ("1 month", MONTH), ("3 weeks", 21 * D), ("10 sec", timedelta(seconds=10)),
    ("5min", timedelta(minutes=5)), ("2hrs", 2 * H), ("1yr", YEAR), ("1wk", 7 * D),
    ("007d", 7 * D), ("  7d  ", 7 * D), ("0_day_retention", timedelta(0)),
    ("2_year_retention", 2 * YEAR), ("1_year_retention", YEAR), ("5_years_retention", 5 * YEAR),
    ("30_day_retention", 30 * D), ("6_month_retention", 6 * MONTH),
    ("1000y", MAX_DURATION), ("365000d", MAX_DURATION), ("1h1h", 2 * H),
]

REFUSED_DURATIONS: list[Any] = [
    ("30", "needs a unit"), ("0", "needs a unit"), ("", "not a duration"),
    ("   ", "not a duration"), ("-5m", "negative"), ("-0s", "negative"),
    ("1.5h", "not a duration"), ("1,5h", "not a duration"), ("h", "not a duration"),
    ("1M", "units are lowercase"), ("2 Years", "units are lowercase"),
    ("2_Year_Retention", "units are lowercase"), ("1ms", "unknown unit 'ms'"),
    ("5 fortnights", "unknown unit 'fortnights'"), ("1x", "unknown unit 'x'"),
    ("2_year", "not a duration"), ("2y_retention", "not a duration"),
    ("1h-30m", "not a duration"), ("1h\t30m", "not a duration"), ("7d\n", "not a duration"),
    ("\uff17d", "not a duration"), ("\u0667d", "not a duration"),
    ("P1D", "not a duration"), ("1001y", "longer than 1000 years"),
    ("1000y1s", "longer than 1000 years"),
    pytest.param("9" * 5000 + "d", "longer than 1000 years", id="huge-text"),
    ("99999999999999999999999s", "longer than 1000 years"),
    ("none", "not a duration"), ("null", "not a duration"),
    ("indefinite", "indefinite is not allowed"), ("never", "indefinite is not allowed"),
    (None, "indefinite is not allowed"),
    (-1, "non-negative"), (-0.5, "non-negative"), (float("nan"), "non-negative"),
    (float("inf"), "non-negative"), (1e300, "longer than 1000 years"),
    pytest.param(10**5000, "longer than 1000 years", id="huge-int"),
    pytest.param(-(10**5000), "non-negative", id="huge-negative-int"),
    (timedelta(seconds=-1), "negative"), (timedelta.max, "longer than 1000 years"),
    (MAX_DURATION + timedelta(microseconds=1), "longer than 1000 years"),
    (True, "not text"), ([7], "not text"), (b"7d", "not text"), ({"d": 7}, "not text"),
]


@pytest.mark.parametrize(("text", "expected"), ACCEPTED_DURATIONS)
def test_accepted_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert parse_duration(text, allow_indefinite=True) == expected


@pytest.mark.parametrize(("value", "reason"), REFUSED_DURATIONS)
def test_refused_durations(value: Any, reason: str) -> None:
    refuses(lambda: parse_duration(value, what="--older-than"), "invalid --older-than", reason,
            "expected a duration like")


@pytest.mark.parametrize("text", ["indefinite", "indefinite_retention", "never", "forever",
                                  " never ", None])
def test_indefinite(text: str | None) -> None:
    assert parse_duration(text, allow_indefinite=True) is None
    refuses(lambda: parse_duration(text), "indefinite is not allowed")


@pytest.mark.parametrize(("value", "expected"), [
    (0, timedelta(0)), (90, timedelta(seconds=90)), (1.5, timedelta(seconds=1.5)),
    (0.0, timedelta(0)), (timedelta(0), timedelta(0)), (7 * D, 7 * D),
    (timedelta(microseconds=1), timedelta(microseconds=1)), (MAX_DURATION, MAX_DURATION),
])
def test_numbers_are_seconds_and_timedelta_passes_through(value: Any, expected: timedelta
                                                          ) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize(("delta", "text"), [
    (None, "indefinite"), (timedelta(0), "0s"), (timedelta(microseconds=999999), "0s"),
    (timedelta(seconds=90), "1m30s"), (timedelta(minutes=90), "1h30m"), (2 * H, "2h"),
    (7 * D, "7d"), (30 * D, "30d"), (2 * YEAR, "2y"), (2 * YEAR + 6 * MONTH, "2y180d"),
    (YEAR + D + H + timedelta(minutes=1, seconds=1), "1y1d1h1m1s"),
    (MAX_DURATION, "1000y"), (timedelta(seconds=-90), "-1m30s"),
])
def test_format_duration(delta: timedelta | None, text: str) -> None:
    assert format_duration(delta) == text


def test_format_duration_total_on_extremes() -> None:
    assert format_duration(timedelta.max) == "2739726y9d23h59m59s"
    assert format_duration(timedelta.min) == "-2739726y9d"


# --------------------------------------------------------------------------- laws

whole_durations = st.integers(0, MAX_DURATION // timedelta(seconds=1)).map(
    lambda s: timedelta(seconds=s))
offsets = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
instants = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                        timezones=st.just(UTC))
UNIT_SPELLINGS = {1: ["s", "sec", "seconds"], 60: ["m", "min", "minutes"],
                  3600: ["h", "hr", "hours"], 86400: ["d", "day", "days"],
                  604800: ["w", "wk", "weeks"], 2592000: ["mo", "month", "months"],
                  31536000: ["y", "yr", "years"]}


@given(whole_durations)
def test_duration_round_trip(delta: timedelta) -> None:
    text = format_duration(delta)
    assert parse_duration(text) == delta
    assert parse_duration(text, allow_indefinite=True) == delta
    assert format_duration(parse_duration(text)) == text


@given(st.lists(st.tuples(st.integers(0, 10**4), st.sampled_from(sorted(UNIT_SPELLINGS)),
                          st.integers(0, 2), st.data()), min_size=1, max_size=6),
       st.sampled_from(["", " ", "  "]))
def test_compound_durations_add_up(parts: list[tuple[int, int, int, Any]], sep: str) -> None:
    text = sep.join(f"{n}{' ' * gap}{data.draw(st.sampled_from(UNIT_SPELLINGS[size]))}"
                    for n, size, gap, data in parts)
    total = sum(n * size for n, size, _, _ in parts)
    assume(total <= MAX_DURATION // timedelta(seconds=1))
    assert parse_duration(text) == timedelta(seconds=total)


@given(instants, offsets, st.booleans())
def test_timestamp_round_trip(instant: datetime, offset: timezone, fraction: bool) -> None:
    dt = instant.astimezone(offset)
    if not fraction:
        dt = dt.replace(microsecond=0)
    text = dt.isoformat()
    assert parse_rfc3339(text) == dt and parse_rfc3339(text).utcoffset() == dt.utcoffset()
    assert try_parse_rfc3339(text) == dt
    out = format_rfc3339(dt)
    assert out.endswith("Z") and len(out) == 20
    assert parse_rfc3339(out) == dt.replace(microsecond=0)
    assert format_rfc3339(parse_rfc3339(out)) == out


@given(st.integers(0, 253402300799), offsets)
def test_commit_times_and_epoch_seconds(ts: int, offset: timezone) -> None:
    dt = from_timestamp(ts)
    assert dt.tzinfo is not None and dt.utcoffset() == timedelta(0)
    assert parse_rfc3339(format_rfc3339(dt)) == dt
    assert int((dt - MIN_COMMIT_TIME).total_seconds()) == ts
    try:
        local = dt.astimezone(offset)
    except OverflowError:  # a wall time past 9999-12-31 in that offset
        assume(False)
    assert check_commit_time(local) == dt
    assert offset_minutes(local) * 60 == offset.utcoffset(None).total_seconds()


@given(whole_durations)
def test_parse_when_duration_is_that_long_ago(delta: timedelta) -> None:
    assert parse_when(format_duration(delta), now=NOW) == NOW - delta


# --------------------------------------------------------------------------- only UsageError

anything = st.one_of(
    st.text(), st.text(alphabet="0123456789-:+TZtz. _smhdwoyrietn"), st.none(), st.booleans(),
    st.integers(), st.integers(min_value=10**4000), st.floats(), st.binary(), st.timedeltas(),
    st.datetimes(), st.datetimes(timezones=st.timezones()), st.lists(st.integers()),
    st.dictionaries(st.text(), st.text()),
    st.from_regex(r"[0-9]{1,25} ?[a-zA-Z]{1,7}( ?[0-9]{1,25}[a-z]{1,7}){0,3}", fullmatch=True),
    st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{0,11})?"
                  r"([Zz]|[+-][0-9]{2}:?[0-9]{2})?", fullmatch=True),
)


def only_usage_errors(call: Callable[[], object]) -> object:
    try:
        return call()
    except UsageError as exc:
        message = str(exc)
        assert message.startswith("invalid ") and "\n" not in message and "\r" not in message
        assert "expected" in message
        return exc


@given(anything)
def test_timestamps_refuse_only_with_usage_error(value: Any) -> None:
    result = only_usage_errors(lambda: parse_rfc3339(value))
    assert isinstance(result, UsageError) or (
        isinstance(result, datetime) and result.tzinfo is not None
        and MIN_TIME <= result <= MAX_TIME)
    assert (try_parse_rfc3339(value) is None) == isinstance(result, UsageError)


@given(anything, st.booleans())
def test_durations_refuse_only_with_usage_error(value: Any, indefinite: bool) -> None:
    result = only_usage_errors(lambda: parse_duration(value, allow_indefinite=indefinite))
    assert isinstance(result, UsageError) or (result is None and indefinite) or (
        isinstance(result, timedelta) and timedelta(0) <= result <= MAX_DURATION)


@given(anything, st.datetimes(timezones=st.one_of(st.none(), st.timezones())))
def test_parse_when_refuses_only_with_usage_error(value: Any, now: datetime) -> None:
    result = only_usage_errors(lambda: parse_when(value, now=now))
    assert isinstance(result, UsageError | datetime)


@given(st.one_of(st.datetimes(), st.datetimes(timezones=st.timezones()), st.integers()))
def test_conversions_refuse_only_with_usage_error(value: Any) -> None:
    if isinstance(value, datetime):
        only_usage_errors(lambda: format_rfc3339(value))
        only_usage_errors(lambda: check_commit_time(value))
    else:
        only_usage_errors(lambda: from_timestamp(value))
