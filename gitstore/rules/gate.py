"""The first look of the credential scan: what rules a line out without detect-secrets.

Loading detect-secrets costs a fresh process well over 100 ms (it pulls in requests,
urllib3 and the rest), most of what a one-turn ``gitstore turn`` would otherwise spend.
Most lines of a conversation hold no credential, and proving that needs only the
regexes detect-secrets would match with, kept as literals in the generated
:mod:`gitstore.rules.detectordata`. So :mod:`gitstore.rules.secrets` asks this module
first and loads :mod:`gitstore.rules.detectors` (and detect-secrets) only for a line
that one of them matches.

Invariants (``tests/test_detectors_gate.py`` checks each against the installed
detect-secrets):

* :func:`may_hold_plugin_secret` is False only when no plugin of
  :func:`gitstore.rules.detectors.plugins` can report anything in the line: every
  plugin reports only matches of its ``denylist`` regexes (some keep fewer), and
  :data:`~gitstore.rules.detectordata.PLUGIN_PATTERNS` is every one of them, each
  with hints every match holds (so an ASCII line without them skips the pattern);
* :func:`shannon_entropy` is detect-secrets' own measure over
  :data:`ENTROPY_CHARSET`, to the last bit;
* the keyword data (:data:`KEYWORD_DENYLIST`, :func:`keyword_patterns`,
  :data:`KEYWORD_SECRET`) is detect-secrets' own, compiled with its flags.

Nothing is skipped: a line the gate lets through is scanned exactly as before, and
the heuristic filters (which need detect-secrets) run only on a candidate found.

Likewise for phonenumbers (about 20 ms to load): a string that is exactly a timestamp
with ``Z`` or a ``+`` offset and no fractional seconds (:func:`is_plain_timestamp`, what
every turn holds) or a digest id (:func:`is_digest_id`, a turn's default idempotency
key) has no phone number or card number in it, so the scan does not load it for one.
"""

from __future__ import annotations

import math
import re
from functools import cache
from typing import NamedTuple

from gitstore.rules import detectordata

__all__ = [
    "ENTROPY_CHARSET", "ENTROPY_LIMIT", "INTERNATIONAL_DIGITS", "KEYWORD_DENYLIST",
    "KEYWORD_SECRET", "SHORT_NATIONAL", "is_digest_id", "is_plain_timestamp",
    "keyword_patterns", "may_hold_number", "may_hold_plugin_secret", "shannon_entropy",
]

#: The base64 alphabet (with ``-_`` and ``=``) the entropy measure counts over.
ENTROPY_CHARSET: str = detectordata.ENTROPY_CHARSET
#: Bits of entropy per character above which a random-looking token is a secret.
ENTROPY_LIMIT: float = detectordata.ENTROPY_LIMIT
#: Regexes of secret-naming words (``pass(word|wd)?``, ``secret``, ``api_?key``, ...).
KEYWORD_DENYLIST: tuple[str, ...] = detectordata.KEYWORD_DENYLIST
#: Regex of a keyword's value.
KEYWORD_SECRET: str = detectordata.KEYWORD_SECRET


@cache
def _plugin_pattern(i: int) -> re.Pattern[str]:
    pattern, flags, _ = detectordata.PLUGIN_PATTERNS[i]
    return re.compile(pattern, flags)


class _Hints(NamedTuple):
    """Which patterns an ASCII line can meet: one finder per case mode, reporting at
    every position the longest hint that starts there (a shorter one starting there
    is its prefix); for each hint so reported, the patterns of every hint within it
    (``covers``, keyed by ``(folded, hint)``); and the patterns without hints."""

    exact: re.Pattern[str] | None
    folded: re.Pattern[str] | None
    covers: dict[tuple[bool, str], frozenset[int]]
    always: frozenset[int]


@cache
def _hints() -> _Hints:
    owners: dict[tuple[bool, str], list[int]] = {}
    always = []
    for i, (_, flags, hints) in enumerate(detectordata.PLUGIN_PATTERNS):
        for h in hints or ():
            owners.setdefault((bool(flags & re.IGNORECASE), h), []).append(i)
        if hints is None:
            always.append(i)

    def finder(folded: bool) -> re.Pattern[str] | None:
        words = sorted({h for f, h in owners if f == folded}, key=len, reverse=True)
        return re.compile("(?=(" + "|".join(map(re.escape, words)) + "))") if words else None

    covers = {(f, m): frozenset(i for (g, h), found in owners.items() if g == f and h in m
                                for i in found) for f, m in owners}
    return _Hints(finder(False), finder(True), covers, frozenset(always))


def _candidates(line: str) -> set[int]:
    """The patterns an ASCII ``line`` holds a hint of (and those without hints)."""
    table = _hints()
    found = set(table.always)
    for folded, finder, text in ((False, table.exact, line), (True, table.folded, line.lower())):
        if finder is not None:
            for m in {m.group(1) for m in finder.finditer(text)}:
                found |= table.covers[folded, m]
    return found


def may_hold_plugin_secret(line: str) -> bool:
    """Whether any credential plugin's regex matches ``line`` (False: none can report).

    In an ASCII line only the patterns one of whose hints occur are compiled and run
    (:mod:`gitstore.rules.hints`: every match holds one); any other line meets every
    pattern."""
    indices = sorted(_candidates(line)) if line.isascii() else \
        range(len(detectordata.PLUGIN_PATTERNS))
    return any(_plugin_pattern(i).search(line) is not None for i in indices)


@cache
def keyword_patterns() -> tuple[tuple[re.Pattern[str], int], ...]:
    """detect-secrets' keyword patterns (``password = "..."``, ``"secret": "..."``, ...),
    each with the group holding the value (compiled on first use)."""
    return tuple((re.compile(pattern, flags), group)
                 for pattern, flags, group in detectordata.KEYWORD_PATTERNS)


def shannon_entropy(text: str) -> float:
    """Shannon entropy of ``text`` in bits per character, counting only the characters
    of :data:`ENTROPY_CHARSET` (detect-secrets' measure; 0 for an empty text)."""
    if not text:
        return 0.0
    entropy = 0.0
    size = len(text)
    for ch in ENTROPY_CHARSET:
        p = float(text.count(ch)) / size
        if p > 0:
            entropy += - p * math.log(p, 2)
    return entropy


_PLAIN_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}"
                              r"(?:[Zz]|\+[0-9]{2}:[0-9]{2})")


def is_plain_timestamp(text: str) -> bool:
    """Whether ``text`` is exactly ``YYYY-MM-DDTHH:MM:SS`` with ``Z`` or a ``+``
    offset.

    Such a string holds no phone number ``phonenumbers.PhoneNumberMatcher`` (leniency
    VALID, any region) finds, nor a card number: its only run of more than two digits
    is the date, and a match followed by a Latin letter (the ``T``) is refused; ``:``
    is no phone punctuation and ``+`` only leads a number. Others may hold one, so
    they are scanned: with fractional seconds (``20.12345678`` is a valid US number)
    or a ``-`` offset (``:80-00:00`` holds ``80-00``, a valid number of Saint Helena,
    whose numbers have four digits). ``tests/test_detectors_gate.py`` checks this
    against phonenumbers itself."""
    return _PLAIN_TIMESTAMP.fullmatch(text) is not None


_DIGEST_ID = re.compile(r"(?:[a-z]+-)*sha256:(?=[0-9]*[a-f])[0-9a-f]{64}")
_DIGITS = re.compile(r"[0-9]+")


def is_digest_id(text: str) -> bool:
    """Whether ``text`` is exactly ``[word-...]sha256:`` and 64 lowercase hex digits,
    at least one a letter and no run of digits longer than 20 (``turn-sha256:...``,
    ``turn-hmac-sha256:...``: what gitstore makes a turn's idempotency key).

    Such a string holds no phone number ``PhoneNumberMatcher`` (leniency VALID, any
    region) finds, nor a card number: it has no phone punctuation, so every candidate
    is one whole run of digits (at most 20, the matcher's block), and each run touches
    a Latin letter on one side (the ``a`` before ``256``; the hex letters), which the
    matcher refuses; a card must not touch a letter either. Checked against
    phonenumbers itself in ``tests/test_detectors_gate.py``."""
    return _DIGEST_ID.fullmatch(text) is not None and \
        max(map(len, _DIGITS.findall(text, text.index(":"))), default=0) <= 20


#: The regions whose shortest valid national number has fewer than 7 digits, and
#: that length (``tests/test_detectors_gate.py`` reads it off phonenumbers' metadata).
SHORT_NATIONAL: dict[str, int] = {
    "AC": 5, "AD": 6, "AE": 5, "AL": 6, "AT": 4, "AU": 5, "AX": 5, "BD": 6, "BG": 6, "BY": 6,
    "CC": 6, "CK": 5, "CU": 6, "CX": 6, "DE": 4, "FI": 5, "FK": 5, "FO": 6, "GL": 6, "HK": 5,
    "IR": 4, "IT": 6, "KI": 5, "KR": 5, "LU": 4, "MM": 6, "NC": 6, "NF": 6, "NL": 5, "NO": 5,
    "NU": 4, "NZ": 5, "PF": 6, "PH": 6, "PL": 6, "PM": 6, "PY": 6, "RO": 6, "RS": 6, "SB": 5,
    "SE": 6, "SH": 4, "SI": 5, "SJ": 5, "SK": 6, "SO": 6, "SR": 6, "TA": 4, "TK": 4, "TO": 5,
    "TV": 5, "UY": 4, "VA": 6, "VU": 5, "WF": 6, "WS": 5, "ZA": 5}
#: The fewest digits of a valid number written with ``+``: a 2-digit country
#: code and a 4-digit national number (Iran, Austria, Germany).
INTERNATIONAL_DIGITS = 6
_CLOSE = r"[\s().\-/_]{0,3}"  # digits "close together": lightly separated
_INTERNATIONAL = re.compile(rf"[+\uff0b]{_CLOSE}\d(?:{_CLOSE}\d){{{INTERNATIONAL_DIGITS - 1},}}")


@cache
def _close_digits(n: int) -> re.Pattern[str]:
    return re.compile(rf"\d(?:{_CLOSE}\d){{{n - 1},}}")


def may_hold_number(text: str, region: str) -> bool:
    """The scan's first look for a phone or card number: whether ``text`` has 7
    digits close together, or a ``+`` and :data:`INTERNATIONAL_DIGITS`, or as
    many as the shortest valid national number of the policy ``region``
    (:data:`SHORT_NATIONAL`). Only a text it passes is handed to phonenumbers.
    (Digits joined by other punctuation, or by letters phonenumbers reads as
    digits, are not looked at: a known gap, recorded in the tests.)"""
    if _close_digits(7).search(text):
        return True
    if ("+" in text or "\uff0b" in text) and _INTERNATIONAL.search(text):
        return True
    short = SHORT_NATIONAL.get(region.upper())
    return short is not None and _close_digits(short).search(text) is not None

