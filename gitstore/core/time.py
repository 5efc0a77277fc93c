"""The one time module: RFC 3339 timestamps and durations, one rule set for every layer.

**Timestamps** (:func:`parse_rfc3339`) are RFC 3339 ``date-time`` text, exactly
``YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)``: uppercase ``T`` and ``Z`` only
(the lowercase the RFC tolerates is refused, as for stored documents), a real calendar
date, hours 00-23, minutes and seconds 00-59 (no leap second ``:60``), 1-9 fraction
digits (kept to microseconds), an offset of at most ±23:59 (``-00:00`` means UTC), no
surrounding whitespace. Refused: naive times, a space for ``T``, non-``str`` values.
Parse bounds: the instant must lie in years 0001..9999 both as written and in UTC
(:data:`MIN_TIME`..:data:`MAX_TIME`). Commit times are narrower (:func:`check_commit_time`):
:data:`MIN_COMMIT_TIME` (1970-01-01T00:00:00Z, git has no negative dates) to
:data:`MAX_COMMIT_TIME` (9999-12-31T23:59:59Z), with a whole-minute offset.
Output (:func:`format_rfc3339`) is always UTC, whole seconds, ``Z``: ``2025-01-15T11:00:00Z``.

**Durations** (:func:`parse_duration`), lowercase ASCII::

    duration  := component (" "* component)*  |  n "_" unit "_retention"  |  indefinite
    component := n " "* unit                  n := [0-9]+
    unit      := s  | sec | secs | second | seconds     (1 second)
               | m  | min | mins | minute | minutes     (60 seconds)
               | h  | hr  | hrs  | hour   | hours       (3600 seconds)
               | d  | day | days                        (86400 seconds)
               | w  | wk  | wks  | week   | weeks       (7 days)
               | mo | mos | month  | months             (30 days)
               | y  | yr  | yrs  | year   | years       (365 days)
    indefinite := indefinite | indefinite_retention | never | forever   (and Python None)

e.g. ``90s``, ``30m``, ``1h30m``, ``2y6mo``, ``30 days``, ``1 hour 30 minutes``,
``2_year_retention``. Components add up; spaces may surround the whole. ``m`` is
minutes, ``mo`` months. A bare number is refused (which unit?) but Python ``int``/``float``
values are seconds and a :class:`~datetime.timedelta` passes through. Zero is allowed;
negative values and values above :data:`MAX_DURATION` (1000 years, so ``time ± duration``
stays representable) are refused. ``indefinite`` (None) only where ``allow_indefinite``.
:func:`format_duration` is the inverse: ``y d h m s``, largest first (``2y``, ``1h30m``,
``0s``), and ``parse_duration(format_duration(d)) == d`` for whole-second ``d``.

Every refusal is a :class:`~gitstore.errors.UsageError` with a one-line message naming
what was being parsed and the expected form; never another exception.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, timezone

from gitstore.errors import UsageError

__all__ = [
    "MAX_COMMIT_TIME", "MAX_DURATION", "MAX_TIME", "MIN_COMMIT_TIME", "MIN_TIME", "MONTH",
    "YEAR", "check_commit_time", "check_wait", "format_duration", "format_rfc3339",
    "from_timestamp", "offset_minutes", "parse_duration", "parse_rfc3339", "parse_when",
    "try_parse_rfc3339",
]

MIN_TIME = datetime.min.replace(tzinfo=UTC)
MAX_TIME = datetime.max.replace(tzinfo=UTC)
EPOCH = MIN_COMMIT_TIME = datetime(1970, 1, 1, tzinfo=UTC)
MAX_COMMIT_TIME = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
YEAR = timedelta(days=365)
MONTH = timedelta(days=30)
MAX_DURATION = 1000 * YEAR

_TS_FORM = "an RFC 3339 date-time like 2025-01-15T10:30:00Z or 2025-01-15T10:30:00+05:30"
_DUR_FORM = "a duration like 90s, 30m, 2h, 1h30m, 7d, 2w, 6mo, 2y or 2_year_retention"
_TS = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})"
                 r"(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})?")
_UNITS = {name: seconds for seconds, names in (
    (1, "s sec secs second seconds"), (60, "m min mins minute minutes"),
    (3600, "h hr hrs hour hours"), (86400, "d day days"), (604800, "w wk wks week weeks"),
    (2592000, "mo mos month months"), (31536000, "y yr yrs year years"),
) for name in names.split()}
_INDEFINITE = frozenset({"indefinite", "indefinite_retention", "never", "forever"})
_SEED = re.compile(r"([0-9]+)_([a-z]+)_retention")
_COMPOUND = re.compile(r"[0-9]+ *[a-z]+(?: *[0-9]+ *[a-z]+)*")
_COMPONENT = re.compile(r"([0-9]+) *([a-z]+)")
_YEAR_DASH = re.compile(r"[0-9]{4}-")
_MAX_SECONDS = MAX_DURATION // timedelta(seconds=1)


def _show(value: object) -> str:
    """``value`` for a message: a short repr for plain values, the type name otherwise."""
    if isinstance(value, datetime):
        return value.isoformat()
    if value is not None and not isinstance(value, str | int | float | timedelta):
        return f"(a {type(value).__name__})"
    try:
        text = repr(value)
    except ValueError:  # an int with too many digits to print
        text = f"<{type(value).__name__} too long to show>"
    return text if len(text) <= 48 else text[:45] + "..."


def _fail(what: str, value: object, reason: str, form: str) -> UsageError:
    return UsageError(f"invalid {what} {_show(value)}: {reason}; expected {form}")


# --------------------------------------------------------------------------- timestamps

def parse_rfc3339(text: str, *, what: str = "timestamp") -> datetime:
    """An aware datetime (in the written offset) from strict RFC 3339 text; see module doc."""
    m = _TS.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise _fail(what, text, "not an RFC 3339 date-time", _TS_FORM)
    if m[8] is None:
        raise _fail(what, text, "no timezone offset (Z or ±HH:MM)", _TS_FORM)
    tz = UTC
    if m[8] != "Z":
        hours, minutes = int(m[8][1:3]), int(m[8][4:6])
        if hours > 23 or minutes > 59:
            raise _fail(what, text, "offset beyond ±23:59", _TS_FORM)
        delta = timedelta(hours=hours, minutes=minutes)
        tz = timezone(-delta if m[8][0] == "-" else delta) if delta else UTC
    try:
        micro = int((m[7][1:] + "00000")[:6]) if m[7] else 0
        dt = datetime(int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]), int(m[6]),
                      micro, tzinfo=tz)
    except ValueError as exc:
        raise _fail(what, text, f"not a real date-time ({exc})", _TS_FORM) from None
    try:
        dt.astimezone(UTC)
    except OverflowError:
        raise _fail(what, text, "outside years 0001..9999 in UTC", _TS_FORM) from None
    return dt


def try_parse_rfc3339(value: object) -> datetime | None:
    """:func:`parse_rfc3339` with the same rules, but None instead of an error."""
    try:
        return parse_rfc3339(value) if isinstance(value, str) else None
    except UsageError:
        return None


def format_rfc3339(dt: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ``: UTC, fraction dropped; a naive ``dt`` is taken as UTC."""
    try:
        u = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    except OverflowError:
        raise _fail("timestamp", dt, "outside years 0001..9999 in UTC", _TS_FORM) from None
    return (f"{u.year:04d}-{u.month:02d}-{u.day:02d}"
            f"T{u.hour:02d}:{u.minute:02d}:{u.second:02d}Z")


def from_timestamp(ts: int) -> datetime:
    """The aware UTC datetime ``ts`` seconds after the Unix epoch (negative: before it)."""
    form = "whole seconds since 1970"
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise _fail("epoch timestamp", ts, "not an integer", form)
    try:
        return EPOCH + timedelta(seconds=ts)
    except OverflowError:
        raise _fail("epoch timestamp", ts, "outside years 0001..9999", form) from None


def offset_minutes(dt: datetime) -> int:
    """The UTC offset of ``dt`` in whole minutes (east positive); 0 for a naive ``dt``."""
    off = dt.utcoffset()
    return 0 if off is None else int(off.total_seconds() / 60)


def check_commit_time(dt: datetime, *, what: str = "commit time") -> datetime:
    """``dt`` truncated to whole seconds (what git stores), if a commit can carry it:
    aware, a whole-minute offset, and MIN_COMMIT_TIME..MAX_COMMIT_TIME."""
    form = "an aware time from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z"
    if not isinstance(dt, datetime):
        raise _fail(what, dt, "not a datetime", form)
    off = dt.utcoffset()
    if off is None:
        raise _fail(what, dt, "no timezone offset", form)
    if off % timedelta(minutes=1):
        raise _fail(what, dt, "offset not in whole minutes", form)
    dt = dt.replace(microsecond=0)
    if not MIN_COMMIT_TIME <= dt <= MAX_COMMIT_TIME:
        raise _fail(what, dt, "out of range for a git commit", form)
    return dt


def parse_when(text: str, *, now: datetime, what: str = "time") -> datetime:
    """An RFC 3339 time, or a duration meaning that long before ``now`` (``7d``, ``2h30m``).
    Durations give an aware UTC result; a naive ``now`` is taken as UTC."""
    if isinstance(text, str) and _YEAR_DASH.match(text):
        return parse_rfc3339(text, what=what)
    form = f"{_TS_FORM}, or a duration ago like 30m, 2h or 7d"
    if not isinstance(text, str):
        raise _fail(what, text, "not text", form)
    delta = _duration(text, what, form, allow_indefinite=False) or timedelta()
    try:
        base = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
        return base - delta
    except OverflowError:
        raise _fail(what, text, "reaches before year 0001", form) from None


# --------------------------------------------------------------------------- durations

def parse_duration(value: str | int | float | timedelta | None, *, what: str = "duration",
                   allow_indefinite: bool = False) -> timedelta | None:
    """A :class:`timedelta` from the duration grammar of the module doc; None for
    ``indefinite`` (and Python None) when ``allow_indefinite``, else a UsageError."""
    form = _DUR_FORM + (" or indefinite" if allow_indefinite else "")
    return _duration(value, what, form, allow_indefinite=allow_indefinite)


def _duration(value: object, what: str, form: str, *, allow_indefinite: bool) -> timedelta | None:
    if value is None or (isinstance(value, str) and value.strip(" ") in _INDEFINITE):
        if allow_indefinite:
            return None
        raise _fail(what, value, "indefinite is not allowed here", form)
    if isinstance(value, timedelta):
        if value < timedelta():
            raise _fail(what, value, "negative", form)
        seconds: float = _MAX_SECONDS + 1 if value > MAX_DURATION else 0
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0 or (isinstance(value, float) and not math.isfinite(value)):
            raise _fail(what, value, "not a non-negative number of seconds", form)
        seconds = value
    elif isinstance(value, str):
        seconds = _text_seconds(value, what, form)
    else:
        raise _fail(what, value, "not text", form)
    if seconds > _MAX_SECONDS:
        raise _fail(what, value, "longer than 1000 years", form)
    return value if isinstance(value, timedelta) else timedelta(seconds=seconds)


def _text_seconds(text: str, what: str, form: str) -> int:
    body = text.strip(" ")
    m = _SEED.fullmatch(body)
    parts = [(m[1], m[2])] if m else _COMPONENT.findall(body) if _COMPOUND.fullmatch(body) else []
    if not parts:
        reason = "negative" if body.startswith("-") else "not a duration"
        if body.isascii() and body.isdigit():
            reason = "a number needs a unit (s, m, h, d, w, mo or y)"
        elif _COMPOUND.fullmatch(body.lower()) or _SEED.fullmatch(body.lower()):
            reason = "units are lowercase"
        raise _fail(what, text, reason, form)
    total = 0
    for number, unit in parts:
        if unit not in _UNITS:
            raise _fail(what, text, f"unknown unit {unit!r}", form)
        if len(number.lstrip("0")) > 20:
            raise _fail(what, text, "longer than 1000 years", form)
        total += int(number) * _UNITS[unit]
    return total


def check_wait(value: object, *, what: str = "timeout") -> float | None:
    """``value`` as seconds to wait: a finite number >= 0, or None (the
    caller's default); anything else is a one-line UsageError."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not 0 <= value < float("inf"):
        raise UsageError(f"{what} must be a number of seconds >= 0 or None, not {value!r}")
    return float(value)


def format_duration(delta: timedelta | None) -> str:
    """The canonical text of ``delta`` (``indefinite`` for None): units y d h m s, largest
    first, zeros omitted, sub-second part dropped; ``0s`` for zero."""
    if delta is None:
        return "indefinite"
    micros = (delta.days * 86400 + delta.seconds) * 10**6 + delta.microseconds
    sign, rest, out = ("-" if micros < 0 else ""), abs(micros) // 10**6, []
    for unit in ("y", "d", "h", "m", "s"):
        count, rest = divmod(rest, _UNITS[unit])
        if count:
            out.append(f"{count}{unit}")
    return sign + ("".join(out) or "0s")
