"""Find credentials and personal data in session documents; redact them (pure, no git).

:func:`scan` walks every string value *and object key* of a parsed JSON document
(or the SOW text) and returns :class:`Finding` objects: file, RFC 6901 pointer,
``kind``, ``category`` (``credential``/``pii``) and the span in the string, never
the value. A pointer segment (object key) holding a caught value is shown masked,
as :func:`apply` renames the key when it redacts.

* Credentials: the detect-secrets plugins (only via :mod:`gitstore.rules.detectors`,
  loaded for a line :mod:`gitstore.rules.gate` lets by), created once, driven by their
  side-effect-free ``analyze_string`` line by line (``scan_line``/``analyze_line``
  use global settings and may verify over the network), with detect-secrets'
  heuristic filters (sequential, UUID, ``${X}``/``<x>``, ``$VAR``, non-alphanumeric,
  id-like, indirect reference). Two plugins on its base class add ``Authorization:
  Basic``/``Bearer`` headers. Hex entropy is off (digests are normal content); base64
  entropy (limit 4.5) only sees 32+ character tokens with a digit, both cases, not
  made of words (mean lowercase run < 3) and not a path. Keyword patterns count only
  when the name *ends* in the keyword (``db_password``, not ``password_policy`` or
  ``secret_arn``); so does a JSON member with such a key whose value is one
  non-placeholder token, except ``/session_info/api_key`` (the customer's name).
* Phones: ``phonenumbers.PhoneNumberMatcher``, leniency VALID, policy region (US),
  only when the policy redacts or blocks them (:attr:`Policy.phone_region`).
* Cards: 13-19 digits (single space/dash separators) passing Luhn, starting 2-6,
  not part of a longer digit run or word (so not account ids or epoch timestamps);
  also JSON integers (redacted to the placeholder string).
* Emails: a small, conservative regex (no maintained library *finds* addresses in
  text; email-validator checks one): dotted domain, alphabetic TLD, not a URL's
  ``user@host`` nor scp-style ``git@host:path``.
* Connection strings (``postgres://user:pass@host``, ``redis://:pass@host``, ...): the
  password (:class:`~gitstore.rules.detectors.ConnectionStringDetector`; a span that
  detect-secrets' ``password_in_url`` also reports keeps that kind).

**Normalised.** A string with non-ASCII characters or ``%`` is also scanned as
:func:`~gitstore.rules.normalise.normalise` reads it (NFKC, Unicode digits, ``%XX``),
hits mapped back to the characters they came from. Adjacent string values are also
scanned *joined* (last line of one, first line of the next): a credential split
across two fields (a PEM key, ``password=`` and its value) is caught in both (not
entropy). Cards may be grouped 4-4-4-4(-3) or 4-6-5 by one repeated separator among
space, no-break or thin space, dot, underscore and dash. :func:`screen` applies a
policy to a commit's other texts (messages, trailers, ids, identities); :func:`holds`
finds a string in decoded JSON.

A PII hit inside a credential is reported as the credential. Default policy: block
credentials, redact card numbers, allow emails and phones. Redaction replaces the
span with ``[REDACTED:<kind>]``; a key is renamed likewise (`` #2`` if taken).
Reading or checking a policy loads neither detect-secrets nor phonenumbers (deferred,
:mod:`gitstore.core.lazy`; kinds in :mod:`gitstore.rules.kinds`).
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

from gitstore.core import lazy
from gitstore.core.names import SOW_DOCUMENT
from gitstore.errors import InvalidDocumentError, Violation
from gitstore.rules import gate
from gitstore.rules.kinds import ENTROPY, KEYWORD
from gitstore.rules.normalise import needs_normalising, normalise
from gitstore.rules.policy import (
    CREDENTIAL,
    DEFAULT_POLICY,
    DEFAULT_REGION,
    PII,
    Action,
    Policy,
    category_of,
)

if TYPE_CHECKING:
    import phonenumbers

    from gitstore.rules import detectors
    from gitstore.rules.proposal import Proposal
else:  # loaded by the first scan, not by reading a policy (gitstore.core.lazy)
    phonenumbers = lazy.module("phonenumbers")
    detectors = lazy.module("gitstore.rules.detectors")

#: Members whose keyword-like key holds no secret: the customer's name.
EXEMPT_POINTERS = frozenset({"/session_info/api_key"})


class Finding(NamedTuple):
    """One caught value: ``file``, ``pointer``, span ``start:end`` within the string
    (an object key when ``in_key``), ``kind`` and ``category``. Never the value."""

    file: str
    pointer: str
    kind: str
    category: str
    start: int
    end: int
    in_key: bool = False

    def __str__(self) -> str:
        where = f"{self.file}#{self.pointer}" if self.pointer else self.file
        key = " of an object key" if self.in_key else ""
        return f"{where}: {self.kind} at characters {self.start}-{self.end}{key}"

    def to_json(self) -> dict[str, Any]:
        return dict(self._asdict())


class _Hit(NamedTuple):
    start: int
    end: int
    kind: str


@cache
def _patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """An entropy token, a name ending in a secret-naming keyword, and the name around
    a keyword match (detect-secrets' data, via the gate; made by the first scan)."""
    deny = "|".join(gate.KEYWORD_DENYLIST)
    return (re.compile(f"[{re.escape(gate.ENTROPY_CHARSET)}]{{32,}}"),
            re.compile(rf"(?:{deny})(?:[_-]?(?:key|token|value|string))?$", re.IGNORECASE),
            re.compile(rf"[\w.-]*(?:{deny})[\w.-]*", re.IGNORECASE))


_DIGIT = re.compile(r"\d")
_KEYWORD_HINT = re.compile(r"key|pass|pwd|secret|contras", re.IGNORECASE)  # in each DENYLIST entry
_PLACEHOLDER_WORDS = frozenset({"redacted", "none", "null", "n/a", "na", "unset", "hidden",
                                "masked", "required", "optional", "true", "false", "yes", "no",
                                "enabled", "disabled", "tbd", "todo", "example", "placeholder"})
_PLACEHOLDER = re.compile(r"\[REDACTED:[a-z0-9_]+\]")
_TOKEN_LEFT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.+-")
_TOKEN_AFTER = re.compile(r"[A-Za-z0-9_.+/=-]*")
_LOWER_RUN = re.compile(r"[a-z]+")
_PEM_END = re.compile(r"-----END[A-Z0-9 ]*-----")


def _random_token(token: str) -> bool:
    """A long token that looks random rather than made of words or a path."""
    lower_runs = _LOWER_RUN.findall(token)
    return (_DIGIT.search(token) is not None and not token.isupper() and not token.islower()
            and not token.startswith("/")
            and sum(map(len, lower_runs)) < 3 * len(lower_runs)   # mean run of a-z < 3
            and gate.shannon_entropy(token) > gate.ENTROPY_LIMIT)


def _keyword_hits(line: str) -> Iterator[tuple[int, int]]:
    """detect-secrets' keyword patterns (every match, exact span), name-end guarded."""
    if not _KEYWORD_HINT.search(line):
        return
    _, keyword_name, name_around = _patterns()
    for pattern, group in gate.keyword_patterns():
        for m in pattern.finditer(line):
            start, end = m.span(group)
            name = name_around.search(line[m.start():start] + " " + line[end:m.end()])
            value = line[start:end]
            if not (start > 0 and line[start - 1] in "'\"`"):   # unquoted: one token
                value = value.split()[0] if value.split() else ""
            if (name and keyword_name.search(name.group()) and value
                    and value.lower() not in _PLACEHOLDER_WORDS
                    and not detectors.is_false_positive(value, line)
                    and not detectors.is_indirect_reference(line)):
                yield start, start + len(value)


def _extend(text: str, start: int, end: int, kind: str) -> _Hit:
    """Widen a plugin's hit to the whole credential: a PEM block, or the whole token
    (some plugins report a part, e.g. a JWT without its signature, ``ghp`` of a token)."""
    if kind == "private_key":
        start = start - 5 if text[max(0, start - 5):start] == "-----" else start
        pem_end = _PEM_END.search(text, end)
        return _Hit(start, pem_end.end() if pem_end else len(text), kind)
    while start > 0 and text[start - 1] in _TOKEN_LEFT:
        start -= 1
    after = _TOKEN_AFTER.match(text, end)
    return _Hit(start, after.end() if after else end, kind)


def _credential_hits(text: str) -> Iterator[_Hit]:
    offset = 0
    entropy_token = _patterns()[0]
    for line in text.splitlines(keepends=True):
        if len(line) >= 8:
            seen: set[tuple[int, int]] = set()
            # detect-secrets is loaded only for a line one of its regexes matches
            for kind, plugin in detectors.plugins() if gate.may_hold_plugin_secret(line) else ():
                for value in set(plugin.analyze_string(line)):
                    if value and not detectors.is_false_positive(value, line, plugin):
                        for m in re.finditer(re.escape(value), line):
                            hit = _extend(text, offset + m.start(), offset + m.end(), kind)
                            if kind != "connection_string" or (hit.start, hit.end) not in seen:
                                seen.add((hit.start, hit.end))
                                yield hit
            for start, end in _keyword_hits(line):
                yield _Hit(offset + start, offset + end, KEYWORD)
            for m in entropy_token.finditer(line):
                if _random_token(m.group()) and not detectors.is_false_positive(
                        m.group(), line, detectors.ENTROPY_DETECTOR):
                    yield _Hit(offset + m.start(), offset + m.end(), ENTROPY)
        offset += len(line)


_CARD = re.compile(r"(?<![\w.])(?<!\d[ -])\d(?:[ -]?\d){12,18}(?![ -]?\d)(?!\w)")
_SEP = "[ ._\u00a0\u2007\u2009\u202f-]"
_CARD_GROUPED = re.compile(  # 4-4-4-4(-1..3) or 4-6-5, one separator repeated
    rf"(?<![\w.])(?<!\d{_SEP})(?:\d{{4}}({_SEP})\d{{4}}(?:\1\d{{4}}){{2}}(?:\1\d{{1,3}})?"
    rf"(?!\1\d|\w)|\d{{4}}({_SEP})\d{{6}}\2\d{{5}}(?!\2\d|\w))")
_EMAIL = re.compile(r"(?<![\w.%+/-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@"
                    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}"
                    r"(?![\w-]|\.[A-Za-z0-9]|:\S)")


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _pii_hits(text: str, region: str | None) -> Iterator[_Hit]:
    if "@" in text:
        yield from (_Hit(m.start(), m.end(), "email") for m in _EMAIL.finditer(text))
    if not gate.may_hold_number(text, region or DEFAULT_REGION) or \
            gate.is_plain_timestamp(text) or gate.is_digest_id(text):
        return
    for m in (*_CARD.finditer(text), *_CARD_GROUPED.finditer(text)):
        digits = re.sub(r"[^0-9]", "", m.group())
        if 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_valid(digits):
            yield _Hit(m.start(), m.end(), "card_number")
    if region is None:  # the policy allows every phone number: none is looked for
        return
    for match in phonenumbers.PhoneNumberMatcher(text, region,
                                                 leniency=phonenumbers.Leniency.VALID):
        yield _Hit(match.start, match.end, "phone")


@lru_cache(maxsize=1 << 14)
def _hits(text: str, region: str | None, named: bool = False) -> tuple[_Hit, ...]:
    """All hits in one string (cached: re-checking a growing conversation stays cheap).
    ``named``: the string is the value of a member whose key names a secret."""
    raw = [*_credential_hits(text), *_pii_hits(text, region), *_normalised_hits(text, region)]
    if (named and text.lower() not in _PLACEHOLDER_WORDS and not any(c.isspace() for c in text)
            and re.fullmatch(gate.KEYWORD_SECRET, text)
            and not detectors.is_false_positive(text, "")):
        raw.append(_Hit(0, len(text), KEYWORD))
    creds = [h for h in raw if category_of(h.kind) == CREDENTIAL]
    guards = _merged([m.span() for m in _PLACEHOLDER.finditer(text)])
    all_creds = _merged([(h.start, h.end) for h in creds])
    specific = _merged([(h.start, h.end) for h in creds if h.kind != ENTROPY])
    kept: list[_Hit] = []
    reach = {CREDENTIAL: -1, PII: -1}     # furthest end of a kept hit, per category
    for hit in sorted(set(raw), key=lambda h: (h.start, -h.end, h.kind)):
        cat = category_of(hit.kind)
        if (hit.end <= reach[cat]                  # inside a kept hit of its category
                or _overlaps(guards, hit)          # touches a [REDACTED:...] placeholder
                or (cat == PII and _overlaps(all_creds, hit))
                or (hit.kind == ENTROPY and _overlaps(specific, hit))):
            continue
        kept.append(hit)
        reach[cat] = max(reach[cat], hit.end)
    return tuple(kept)


def _normalised_hits(text: str, region: str | None) -> list[_Hit]:
    """Hits in the normalised ``text``, as spans of ``text`` (none when it is its own
    normal form)."""
    if not needs_normalising(text):
        return []
    norm, starts, ends = normalise(text)
    if norm == text or not norm:
        return []
    return [_Hit(starts[h.start], ends[max(h.start, h.end - 1)], h.kind)
            for h in (*_credential_hits(norm), *_pii_hits(norm, region)) if h.end > h.start]


_WINDOW = 256


def _split_hits(document: Any, base: str, region: str | None, pointers: str = DEFAULT_REGION
                ) -> dict[str, list[_Hit]]:
    """Credentials split across two adjacent string values of ``document``: pointer ->
    the part of each such credential that lies in that value (see the module doc)."""
    values: list[tuple[str, str]] = []

    def collect(text: str, pointer: str, in_key: bool, hits: tuple[_Hit, ...]) -> str:
        if not in_key and text:
            values.append((pointer, text))
        return text

    _walk(document, base, False, region, collect, pointers=pointers)
    extra: dict[str, list[_Hit]] = {}
    for (p1, a), (p2, b) in itertools.pairwise(values):
        left = a[max(a.rfind("\n") + 1, len(a) - _WINDOW):]
        right = b[:min(len(b), _WINDOW) if "\n" not in b[:_WINDOW] else b.index("\n")]
        if not left or not right:
            continue
        cut = len(left)
        for h in _joined_hits(left + right):
            if not h.start <= cut < h.end:  # new only if it crosses (or its name is in a)
                continue
            end = h.end - cut
            if h.kind == "private_key":  # the rest of the block, as in one string
                pem_end = _PEM_END.search(b, end)
                end = pem_end.end() if pem_end else len(b)
            head, tail = _Hit(len(a) - cut + h.start, len(a), h.kind), _Hit(0, end, h.kind)
            if _overlaps(_own(a, region, h.kind), head) or \
                    _overlaps(_own(b, region, h.kind), tail):
                continue  # a credential of one value, seen whole there
            if h.start < cut:
                extra.setdefault(p1, []).append(head)
            extra.setdefault(p2, []).append(tail)
    return extra


def _own(text: str, region: str | None, kind: str) -> list[tuple[int, int]]:
    return _merged([(h.start, h.end) for h in _hits(text, region) if h.kind == kind])


@lru_cache(maxsize=1 << 12)
def _joined_hits(text: str) -> tuple[_Hit, ...]:
    return tuple(h for h in _credential_hits(text) if h.kind != ENTROPY)


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if out and start < out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _overlaps(merged: list[tuple[int, int]], hit: _Hit) -> bool:
    i = bisect.bisect_left(merged, (hit.end,))       # merged[:i] start before hit.end
    return i > 0 and merged[i - 1][1] > hit.start


def _mask(text: str, hits: Iterable[_Hit]) -> str:
    """``text`` with each hit's span replaced by ``[REDACTED:<kind>]`` (overlaps merged)."""
    out, pos = [], 0
    for hit in sorted(hits, key=lambda h: (h.start, -h.end)):
        if hit.start < pos:               # overlaps the previous placeholder: extend it
            pos = max(pos, hit.end)
            continue
        out.append(text[pos:hit.start] + f"[REDACTED:{hit.kind}]")
        pos = hit.end
    return "".join(out) + text[pos:]


Visit = Callable[[str, str, bool, tuple[_Hit, ...]], str]


def _walk(value: Any, pointer: str, named: bool, region: str | None, visit: Visit,
          extra: Mapping[str, list[_Hit]] | None = None, *, pointers: str = DEFAULT_REGION
          ) -> Any:
    """``value`` rebuilt by ``visit`` (each string and object key with its hits, phone
    numbers looked for as written in ``region``, none when None). A pointer segment
    masks every hit of its key, phone numbers as written in ``pointers`` included
    even when ``region`` is None: a pointer is shown in errors and hook output."""
    if isinstance(value, str):
        hits = _hits(value, region, named)
        if extra and pointer in extra:  # parts of credentials split across values
            hits = (*hits, *(h for h in extra[pointer] if not _overlaps(
                _merged([(o.start, o.end) for o in hits if o.kind == h.kind]), h)))
        return visit(value, pointer, False, hits)
    if isinstance(value, list):
        return [_walk(v, f"{pointer}/{i}", False, region, visit, extra, pointers=pointers)
                for i, v in enumerate(value)]
    if isinstance(value, int) and not isinstance(value, bool) and value > 10**12:
        text = str(value)                 # a card number written as a JSON number
        hits = tuple(h for h in _hits(text, region) if h.kind == "card_number")
        if not hits:
            return value
        masked = visit(text, pointer, False, hits)
        return value if masked == text else masked  # a number stays a number unless redacted
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    shown = {key: _segment(key, region, pointers) for key in value}
    # a key shown as written keeps its segment; keys masked alike get " #2", " #3"...
    segments = {seg for key, seg in shown.items() if seg == _escaped(key)}
    for key, child in value.items():
        key_hits = _hits(key, region)
        segment = first = shown[key]
        if segment != _escaped(key):
            n = 1
            while segment in segments:  # each value its own pointer
                n += 1
                segment = f"{first} #{n}"
            segments.add(segment)
        child_pointer = f"{pointer}/{segment}"
        new_key = visit(key, child_pointer, True, key_hits) if key_hits else key
        base, n = new_key, 1
        while new_key != key and (new_key in out or new_key in value):
            n += 1
            new_key = f"{base} #{n}"
        named = bool(_patterns()[1].search(key)) and child_pointer not in EXEMPT_POINTERS
        out[new_key] = _walk(child, child_pointer, named, region, visit, extra,
                             pointers=pointers)
    return out


def _segment(key: str, region: str | None, pointers: str) -> str:
    """``key`` as a JSON pointer segment, every hit masked (phone numbers as written in
    ``pointers`` included when ``region`` is None)."""
    hits = _hits(key, region)
    if region is None:
        hits = (*hits, *(h for h in _hits(key, pointers) if h.kind == "phone"))
    return _escaped(_mask(key, hits))


def _escaped(key: str) -> str:
    """``key`` as a JSON pointer segment (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


def scan(document: Any, file: str, *, region: str | None = "US", base: str = "",
         pointers: str | None = None) -> list[Finding]:
    """Every credential and piece of personal data in ``document`` (parsed JSON or text),
    phone numbers as written in ``region`` (None: none are looked for; a phone number
    in an object key is still masked in pointers, as written in ``pointers``, default
    ``region`` or the default region). ``base``: the pointer of ``document`` in
    ``file`` when scanning a part (a new turn)."""
    found: list[Finding] = []

    def visit(text: str, pointer: str, in_key: bool, hits: tuple[_Hit, ...]) -> str:
        found.extend(Finding(file, pointer, h.kind, category_of(h.kind), h.start, h.end, in_key)
                     for h in hits)
        return text

    shown = pointers or region or DEFAULT_REGION
    _walk(document, base, False, region, visit, _split_hits(document, base, region, shown),
          pointers=shown)
    return found


def apply(document: Any, file: str, policy: Policy = DEFAULT_POLICY, *, base: str = ""
          ) -> tuple[Any, list[Finding], list[Finding]]:
    """``(new_document, redacted, blocked)``: a new document in which every ``redact``
    finding's span is ``[REDACTED:<kind>]`` (keys renamed likewise). ``blocked``
    findings stay in place: the caller must refuse the write."""
    redacted: list[Finding] = []
    blocked: list[Finding] = []

    def visit(text: str, pointer: str, in_key: bool, hits: tuple[_Hit, ...]) -> str:
        chosen = []
        for h in hits:
            finding = Finding(file, pointer, h.kind, category_of(h.kind), h.start, h.end, in_key)
            action = policy.action(h.kind)
            if action != "allow":
                (blocked if action == "block" else redacted).append(finding)
                chosen += [h] if action == "redact" else []
        return _mask(text, chosen) if chosen else text

    region = policy.phone_region
    extra = _split_hits(document, base, region, policy.region)
    return _walk(document, base, False, region, visit, extra, pointers=policy.region), \
        redacted, blocked


def message(finding: Finding, action: Action) -> str:
    """The one-line violation message for a finding (never its value)."""
    key = " in an object key" if finding.in_key else ""
    what = (f"a credential ({finding.kind})" if finding.category == CREDENTIAL
            else f"personal data ({finding.kind})")
    if action == "redact":
        label = f"a {finding.kind.replace('_', ' ')}" if finding.category == PII else what
        return f"contains {label}{key} that must be redacted (use gitstore, which redacts it)"
    return f"contains {what}{key}; remove it — the value is not shown"


class SecretsHook:
    """Pipeline hook ``secrets``: a violation per ``block`` finding and, since a plain-git
    pre-receive hook cannot redact, per ``redact`` finding too. Scans the documents in
    ``p.changed`` (all when None). Policy: the one given, else ``p.secrets_policy``,
    else :data:`DEFAULT_POLICY`."""

    __name__ = "secrets"

    def __init__(self, policy: Policy | None = None) -> None:
        self.policy = policy

    def __call__(self, p: Proposal) -> Iterator[Violation]:
        policy = self.policy or getattr(p, "secrets_policy", None) or DEFAULT_POLICY
        targets: dict[str, Any] = dict(p.documents)
        if SOW_DOCUMENT in p.files:
            targets[SOW_DOCUMENT] = p.files[SOW_DOCUMENT].decode("utf-8", "replace")
        for name, document in targets.items():
            if p.changed is None or name in p.changed:
                for finding in scan(document, name, region=policy.phone_region,
                                    pointers=policy.region):
                    action = policy.action(finding.kind)
                    if action != "allow":
                        yield Violation(name, finding.pointer, message(finding, action),
                                        "secrets")


check_secrets = SecretsHook()


def summary(findings: Iterable[Finding]) -> str:
    """Kinds and counts per file for a commit trailer, never values, e.g.
    ``card_number\N{MULTIPLICATION SIGN}2 (conversation.json)``."""
    counts = Counter((f.file, f.kind) for f in findings)
    times = "\N{MULTIPLICATION SIGN}"
    return "; ".join(", ".join(f"{kind}{times}{n}" for (f, kind), n in sorted(counts.items())
                               if f == file) + f" ({file})"
                     for file in sorted({file for file, _ in counts}))


KEY_FOUND = ("contains the customer's api_key, which this store never stores (the value "
             "is not shown)")


def holds(value: Any, needle: str) -> bool:
    """Whether ``needle`` occurs in a string (value or object key) of decoded JSON
    ``value`` or in the text of one of its numbers: compared on the values, never on
    JSON text, so quotes, backslashes and control characters cannot hide it."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if needle in node:
                return True
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, int | float) and not isinstance(node, bool) \
                and needle in repr(node):
            return True
    return False


class Field(NamedTuple):
    """A text a commit or tag records (``label`` names it): a ``redactable`` one has
    ``redact`` findings masked; any other refuses every finding the policy does not
    allow, but the kinds in ``allowed`` (an email in an email address)."""

    label: str
    text: str | None
    redactable: bool = False
    allowed: frozenset[str] = frozenset()


def screen(fields: Iterable[Field], policy: Policy = DEFAULT_POLICY, *,
           forbidden: str | None = None) -> tuple[dict[str, str | None], list[Finding]]:
    """Apply ``policy`` to ``fields`` (each scanned as its own document). Returns each
    field's text by label (redactable ones masked) and the redacted findings; raises
    :class:`InvalidDocumentError` listing every blocked finding (values never shown),
    and when ``forbidden`` (a hashed-names store's api_key) occurs in any field."""
    texts: dict[str, str | None] = {}
    masked: list[Finding] = []
    found: list[Violation] = []
    for f in fields:
        texts[f.label] = f.text
        if f.text is None:
            continue
        clean, redacted, blocked = apply(f.text, f.label, policy)
        refused = [*blocked, *([] if f.redactable else redacted)]
        found.extend(Violation(f.label, "", message(x, "block"), "secrets")
                     for x in refused if x.kind not in f.allowed)
        if f.redactable and redacted:
            texts[f.label] = clean
            masked.extend(redacted)
        if forbidden and forbidden in f.text:
            found.append(Violation(f.label, "", KEY_FOUND, "secrets"))
    if found:
        raise InvalidDocumentError(found)
    return texts, masked
