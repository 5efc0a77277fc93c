"""Who made a change, when, and under which idempotency key: the
:class:`Authorship` every write carries through the writer seam
(:mod:`gitstore.store.writer`), and :func:`authorship`, which checks the forms
callers give it.

Invariants: an identity is printable ``Name <email>`` git can record; a write
time is timezone-aware and within git's range; an idempotency key is 1-200
printable characters without surrounding spaces; a key names one write
(:mod:`gitstore.store.replays`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

from gitstore.core.commits import Identity
from gitstore.core.time import check_commit_time, parse_rfc3339
from gitstore.errors import UsageError
from gitstore.store.replays import Intent

__all__ = ["Authorship", "authorship"]


class Authorship(NamedTuple):
    """Who made a change, when, and under which idempotency key.

    ``author`` defaults to the store's agent, ``time`` to the store's clock
    (an aware datetime; its offset is kept). ``idempotency_key`` makes a retried
    write return the first result instead of writing twice; it is recorded in the
    commit's ``Idempotency-Key`` trailer. With ``idempotency_window`` the key
    matches only a commit among the newest :data:`RETRY_SCAN` whose time lies
    within that window of this write's time (a key derived from the content, which
    a later, deliberate write may repeat); without, any of the newest
    :data:`IDEMPOTENCY_SCAN` commits. ``message`` and
    ``tag_message``, when given, replace the generated commit and tag messages
    verbatim (an import replaying history); the writer still checks that the
    message's ``Manifest`` trailer matches the tree it wrote. ``intent``: what this
    write does, so that a key already used for another write is refused
    (:class:`~gitstore.store.replays.Intent`)."""

    author: Identity | None = None
    time: datetime | None = None
    idempotency_key: str | None = None
    idempotency_window: timedelta | None = None
    message: str | None = None
    tag_message: str | None = None
    tagger: Identity | None = None
    tag_time: datetime | None = None
    intent: Intent | None = None


def authorship(author: str | Identity | None = None, at: datetime | str | None = None,
               idempotency_key: str | None = None, intent: Intent | None = None
               ) -> Authorship:
    """An :class:`Authorship` from the forms callers use: ``author`` as
    ``"Name <email>"`` or an :class:`Identity`, ``at`` as an aware datetime or an
    RFC 3339 string, ``idempotency_key`` as 1-200 printable characters."""
    who = author.checked() if isinstance(author, Identity) else None if author is None else \
        Identity.parse(author) if isinstance(author, str) else None
    if author is not None and who is None:
        raise UsageError(f"author must be 'Name <email>' or an Identity, not "
                         f"{type(author).__name__}")
    if who is not None and not (who.name + who.email).isprintable():
        raise UsageError("author must be printable 'Name <email>' (no control characters)")
    when: datetime | None
    if at is None or isinstance(at, datetime):
        when = at
        if when is not None and when.tzinfo is None:
            raise UsageError("a write time needs a UTC offset (an aware datetime)")
    elif isinstance(at, str):
        when = parse_rfc3339(at, what="write time")
    else:
        raise UsageError(f"at must be an RFC 3339 string or a datetime, not {type(at).__name__}")
    if when is not None:
        when = check_commit_time(when)
    if idempotency_key is not None and (
            not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= 200
            or not idempotency_key.isprintable() or idempotency_key != idempotency_key.strip()):
        raise UsageError("an idempotency key is 1-200 printable characters without "
                         "surrounding spaces")
    return Authorship(author=who, time=when, idempotency_key=idempotency_key, intent=intent)
