"""RFC 3339 ``date-time`` strings of the session documents: one definition for the
models (:mod:`gitstore.core.models`, which re-exports these names) and the schema
validator's ``date-time`` format (:mod:`gitstore.core.schema`).

A module of its own, without pydantic, so that validating a document against its
JSON Schema does not load the models.

Invariant: :func:`is_timestamp` and :func:`timestamp_problem` agree with
:func:`parse_timestamp` on every value (they are defined through it).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

__all__ = ["TIMESTAMP_RANGE", "is_timestamp", "parse_timestamp", "timestamp_problem"]

_TIMESTAMP_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,9})?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})"
)


def parse_timestamp(value: object) -> datetime:
    """Parse an RFC 3339 ``date-time`` string into an aware :class:`datetime`.

    Accepted: ``YYYY-MM-DDTHH:MM:SS[.fraction](Z|+hh:mm|-hh:mm)`` with an
    uppercase ``T`` and ``Z``, a real calendar date, hours 00-23, minutes and
    seconds 00-59, at most nine fraction digits (kept to microseconds) and an
    offset below 24 hours. Refused: anything that is not a ``str``, a missing
    timezone (naive times), a space instead of ``T``, lowercase ``t``/``z``,
    leap seconds (``:60``, which :class:`datetime` cannot hold), any
    surrounding whitespace and an instant outside years 0001..9999 in UTC
    (``0001-01-01T00:00:00+14:00`` is in year 0: the same bound as
    :func:`gitstore.core.time.parse_rfc3339`, so every layer can convert and
    compare what passes). Raises :class:`ValueError` (never ``TypeError``, so
    pydantic reports it as a validation error).
    """
    if not isinstance(value, str):
        raise ValueError(f"expected an RFC 3339 date-time string, got {type(value).__name__}")
    m = _TIMESTAMP_RE.fullmatch(value)
    if m is None:
        raise ValueError("expected an RFC 3339 date-time with timezone, e.g. 2025-01-15T10:30:00Z")
    year, month, day, hour, minute, second = (int(m[i]) for i in range(1, 7))
    micro = int((m[7][1:] + "000000")[:6]) if m[7] else 0
    zone = m[8]
    if zone == "Z":
        tz = UTC
    else:
        off_h, off_m = int(zone[1:3]), int(zone[4:6])
        if off_h > 23 or off_m > 59:
            raise ValueError(f"invalid timezone offset {zone}")
        delta = timedelta(hours=off_h, minutes=off_m)
        tz = timezone(-delta if zone[0] == "-" else delta) if delta else UTC
    try:
        parsed = datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    except ValueError as exc:
        raise ValueError(f"invalid date-time: {exc}") from None
    try:
        parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError(TIMESTAMP_RANGE) from None
    return parsed


TIMESTAMP_RANGE = "outside years 0001..9999 in UTC"
"""Why :func:`parse_timestamp` refuses a well-formed time whose UTC instant no
``datetime`` can hold."""


def timestamp_problem(value: object) -> str | None:
    """Why :func:`parse_timestamp` refuses ``value`` (one line), or None."""
    try:
        parse_timestamp(value)
    except ValueError as exc:
        return str(exc)
    return None


def is_timestamp(value: object) -> bool:
    """True if :func:`parse_timestamp` accepts ``value``."""
    try:
        parse_timestamp(value)
    except ValueError:
        return False
    return True
