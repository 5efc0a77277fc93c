"""Find credentials and personal data in session documents, and redact them (pure, no git).

A git history is kept for years and copied everywhere, so a customer's password
pasted into a conversation must never be committed. :func:`scan` walks every
string value *and object key* of a parsed JSON document (or the text of the SOW)
and reports :class:`Finding` objects: file, RFC 6901 pointer, ``kind``,
``category`` (``credential`` or ``pii``) and the character span. A finding never
holds the value itself; a pointer segment (an object key) that contains a
caught value is shown masked, exactly as :func:`apply` renames it.

Detection uses maintained libraries wherever one exists:

* credentials: the detect-secrets plugins, instantiated once and driven through
  their side-effect-free ``analyze_string`` API line by line (``analyze_line``
  and ``scan_line`` read and mutate detect-secrets' global settings and may try
  network verification). detect-secrets' own false-positive filters are applied
  (sequential strings, UUIDs, templates like ``${X}`` / ``<x>``, ``$VAR``,
  non-alphanumeric values, id-like names, indirect references). Two small
  plugins on the same base class add ``Authorization: Basic``/``Bearer``
  headers, which detect-secrets only covers as ``user:pass@`` URLs.
  The hex high-entropy plugin is off (sha256 digests and commit ids are normal
  content); the base64 one runs only on 32+ character tokens with two digits
  and both letter cases, above detect-secrets' default limit of 4.5 bits.
  The keyword plugin's patterns count only when the assigned name *ends* with
  the keyword (``db_password`` yes, ``password_policy``/``secret_arn`` no), and
  a JSON member whose key is such a name counts when its value is a single
  token that is not a placeholder; ``/session_info/api_key`` is the customer's
  name, not a secret, and is exempt.
* phone numbers: ``phonenumbers.PhoneNumberMatcher`` (leniency VALID, region
  from the policy, default US);
* card numbers: 13-19 digit runs (single spaces/dashes allowed) that pass the
  Luhn check, start like a card (2-6) and are not part of a longer digit run or
  word, so AWS account ids (12 digits) and epoch timestamps do not match;
* email addresses: a deliberately small regex. No maintained library *finds*
  addresses in free text (email-validator only validates one), and the pattern
  is conservative: a dotted domain with an alphabetic TLD, not a URL's
  ``user@host`` part nor scp-style ``git@host:path``.

A PII hit inside a credential is reported as the credential only.

Policy (see :class:`Policy`): per category, optionally per kind, ``block``,
``redact`` or ``allow``. The default blocks every credential, redacts card
numbers and allows emails and phone numbers. Redaction replaces only the span
with ``[REDACTED:<kind>]``; an object key is renamed the same way (``" #2"``
is appended if the new name is taken).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, cast

import phonenumbers
from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.filters import heuristic
from detect_secrets.plugins import keyword
from detect_secrets.plugins.base import BasePlugin, RegexBasedDetector
from detect_secrets.plugins.high_entropy_strings import Base64HighEntropyString

from .errors import UsageError, Violation
from .names import SOW_DOCUMENT

if TYPE_CHECKING:
    from .pipeline import Proposal

Action = Literal["block", "redact", "allow"]
ACTIONS: tuple[str, ...] = ("block", "redact", "allow")
CREDENTIAL, PII = "credential", "pii"

#: detect-secrets plugin class -> our short, stable kind.
PLUGIN_KINDS: dict[str, str] = {
    "AWSKeyDetector": "aws_access_key", "ArtifactoryDetector": "artifactory_token",
    "AzureStorageKeyDetector": "azure_storage_key", "BasicAuthDetector": "password_in_url",
    "CloudantDetector": "cloudant_credential", "DiscordBotTokenDetector": "discord_token",
    "GitHubTokenDetector": "github_token", "GitLabTokenDetector": "gitlab_token",
    "IbmCloudIamDetector": "ibm_cloud_iam_key", "IbmCosHmacDetector": "ibm_cos_hmac",
    "JwtTokenDetector": "jwt", "MailchimpDetector": "mailchimp_key", "NpmDetector": "npm_token",
    "OpenAIDetector": "openai_key", "PrivateKeyDetector": "private_key",
    "PypiTokenDetector": "pypi_token", "SendGridDetector": "sendgrid_key",
    "SlackDetector": "slack_token", "SoftlayerDetector": "softlayer_credential",
    "SquareOAuthDetector": "square_oauth_secret", "StripeDetector": "stripe_key",
    "TelegramBotTokenDetector": "telegram_token", "TwilioKeyDetector": "twilio_key",
}
KEYWORD, ENTROPY = "generic_secret_keyword", "high_entropy_string"
CREDENTIAL_KINDS = frozenset({*PLUGIN_KINDS.values(), "basic_auth", "bearer_token", KEYWORD,
                              ENTROPY})
PII_KINDS = frozenset({"card_number", "email", "phone"})
_DEFAULTS: dict[str, Action] = {"card_number": "redact", "email": "allow", "phone": "allow"}
#: Members whose keyword-like key holds no secret: the customer's name.
EXEMPT_POINTERS = frozenset({"/session_info/api_key"})


class _Hit(NamedTuple):
    start: int
    end: int
    kind: str


@dataclass(frozen=True, order=True)
class Finding:
    """One caught value: where it is (``file``, ``pointer``, span ``start:end`` of the
    string, ``in_key`` when that string is an object key) and what it is. Never the value."""

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
        return {"file": self.file, "pointer": self.pointer, "kind": self.kind,
                "category": self.category, "start": self.start, "end": self.end,
                "in_key": self.in_key}


def category_of(kind: str) -> str:
    return PII if kind in PII_KINDS else CREDENTIAL


# --- credentials: detect-secrets ---------------------------------------------------------

class AuthorizationBasicDetector(RegexBasedDetector):
    """``Authorization: Basic <base64 of user:password>`` (the token must decode so)."""

    secret_type = "Authorization Basic Header"
    denylist = (re.compile(r"\bAuthorization\s*[:=]\s*['\"]?Basic\s+([A-Za-z0-9+/]{4,}={0,2})",
                           re.IGNORECASE),)

    def analyze_string(self, string: str) -> Generator[str, None, None]:
        for token in super().analyze_string(string):
            try:
                if b":" in base64.b64decode(token + "=" * (-len(token) % 4), validate=True):
                    yield token
            except (binascii.Error, ValueError):
                continue


class AuthorizationBearerDetector(RegexBasedDetector):
    """``Authorization: Bearer <token>`` with a token of 16+ characters, letters and digits."""

    secret_type = "Authorization Bearer Header"
    denylist = (re.compile(r"\bAuthorization\s*[:=]\s*['\"]?(?:Bearer|Token)\s+"
                           r"([A-Za-z0-9._~+/=-]{16,})", re.IGNORECASE),)

    def analyze_string(self, string: str) -> Generator[str, None, None]:
        for token in super().analyze_string(string):
            if re.search(r"\d", token) and re.search(r"[A-Za-z]", token):
                yield token


@cache
def _plugins() -> tuple[tuple[str, BasePlugin], ...]:
    """The detect-secrets plugins, instantiated once per process."""
    classes: dict[str, type[BasePlugin]] = {
        cls.__name__: cls for cls in get_mapping_from_secret_type_to_class().values()}
    found = [(kind, classes[name]()) for name, kind in PLUGIN_KINDS.items() if name in classes]
    return (*found, ("basic_auth", AuthorizationBasicDetector()),
            ("bearer_token", AuthorizationBearerDetector()))


_ENTROPY_PLUGIN = Base64HighEntropyString(limit=4.5)
_ENTROPY_TOKEN = re.compile(f"[{re.escape(_ENTROPY_PLUGIN.charset)}]{{32,}}")
_KEYWORD_PATTERNS: dict[re.Pattern[str], int] = {
    **keyword.QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP, keyword.FOLLOWED_BY_EQUAL_SIGNS_REGEX: 5}
_DENY = "|".join(keyword.DENYLIST)
_KEYWORD_NAME = re.compile(rf"(?:{_DENY})(?:[_-]?(?:key|token|value|string))?$", re.IGNORECASE)
_NAME_AROUND = re.compile(rf"[\w.-]*(?:{_DENY})[\w.-]*", re.IGNORECASE)
_PLACEHOLDER_WORDS = frozenset({"redacted", "none", "null", "n/a", "na", "unset", "hidden",
                                "masked", "required", "optional", "true", "false", "yes", "no",
                                "enabled", "disabled", "tbd", "todo", "example", "placeholder"})
_PLACEHOLDER = re.compile(r"\[REDACTED:[a-z0-9_]+\]")
_TOKEN_CHAR = re.compile(r"[A-Za-z0-9_.+/=-]")
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_.+/=-]*")
_LOWER_RUN = re.compile(r"[a-z]+")
_DIGIT = re.compile(r"\d")
_PEM_END = re.compile(r"-----END[A-Z0-9 ]*-----")


def _filtered(secret: str, line: str, plugin: BasePlugin | None) -> bool:
    """detect-secrets' default heuristic filters (the value-based ones)."""
    return bool(heuristic.is_sequential_string(secret) or heuristic.is_potential_uuid(secret)
                or heuristic.is_templated_secret(secret)
                or heuristic.is_prefixed_with_dollar_sign(secret)
                or heuristic.is_not_alphanumeric_string(secret)
                or heuristic.is_likely_id_string(secret, line, plugin))


def _secret_name(name: str) -> bool:
    return bool(_KEYWORD_NAME.search(name))


def _plain_value(value: str) -> bool:
    return (bool(value) and not any(c.isspace() for c in value)
            and value.lower() not in _PLACEHOLDER_WORDS)


def _random_token(token: str) -> bool:
    """A long token that looks random rather than made of words or a path."""
    lower_runs = _LOWER_RUN.findall(token)
    return (_DIGIT.search(token) is not None and not token.isupper() and not token.islower()
            and not token.startswith("/")
            and sum(map(len, lower_runs)) < 3 * len(lower_runs)   # mean run of a-z < 3
            and _ENTROPY_PLUGIN.calculate_shannon_entropy(token) > _ENTROPY_PLUGIN.entropy_limit)


def _keyword_hits(line: str) -> Iterator[tuple[int, int]]:
    """detect-secrets' keyword patterns (all matches, exact spans), name-end guarded."""
    for pattern, group in _KEYWORD_PATTERNS.items():
        for m in pattern.finditer(line):
            start, end = m.span(group)
            around = line[m.start():start] + " " + line[end:m.end()]
            name = _NAME_AROUND.search(around)
            value = line[start:end]
            if not (start > 0 and line[start - 1] in "'\"`"):   # unquoted: one token
                value = value.split()[0] if value.split() else ""
            if (name and _secret_name(name.group()) and value and not _filtered(value, line, None)
                    and value.lower() not in _PLACEHOLDER_WORDS
                    and not heuristic.is_indirect_reference(line)):
                yield start, start + len(value)


def _credential_hits(text: str) -> Iterator[_Hit]:
    offset = 0
    for line in text.splitlines(keepends=True):
        if len(line) >= 8:
            for kind, plugin in _plugins():
                for value in set(plugin.analyze_string(line)):
                    if not value or _filtered(value, line, plugin):
                        continue
                    for m in re.finditer(re.escape(value), line):
                        yield _extend(text, offset + m.start(), offset + m.end(), kind)
            for start, end in _keyword_hits(line):
                yield _Hit(offset + start, offset + end, KEYWORD)
            for m in _ENTROPY_TOKEN.finditer(line):
                token = m.group()
                if _random_token(token) and not _filtered(token, line, _ENTROPY_PLUGIN):
                    yield _Hit(offset + m.start(), offset + m.end(), ENTROPY)
        offset += len(line)


def _extend(text: str, start: int, end: int, kind: str) -> _Hit:
    """Widen a plugin's hit to the whole credential: a PEM block, or the whole token
    (some plugins report only part of it, e.g. a JWT without its signature)."""
    if kind == "private_key":
        start = start - 5 if text[max(0, start - 5):start] == "-----" else start
        pem_end = _PEM_END.search(text, end)
        return _Hit(start, pem_end.end() if pem_end else len(text), kind)
    while start > 0 and _TOKEN_CHAR.match(text[start - 1]):
        start -= 1
    tail = _TOKEN_CHARS.match(text, end)
    return _Hit(start, tail.end() if tail else end, kind)


# --- personal data -----------------------------------------------------------------------

_CARD = re.compile(r"(?<![\w.])(?<!\d[ -])\d(?:[ -]?\d){12,18}(?![ -]?\d)(?!\w)")
_EMAIL = re.compile(r"(?<![\w.%+/-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@"
                    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}"
                    r"(?![\w-]|\.[A-Za-z0-9]|:\S)")


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _pii_hits(text: str, region: str) -> Iterator[_Hit]:
    if "@" in text:
        for m in _EMAIL.finditer(text):
            yield _Hit(m.start(), m.end(), "email")
    if len(_DIGIT.findall(text)) < 4:
        return
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if digits[0] in "23456" and luhn_valid(digits):
            yield _Hit(m.start(), m.end(), "card_number")
    for match in phonenumbers.PhoneNumberMatcher(text, region,
                                                 leniency=phonenumbers.Leniency.VALID):
        yield _Hit(match.start, match.end, "phone")


# --- scanning ----------------------------------------------------------------------------

def _hits(text: str, region: str, member: str | None = None, pointer: str = "") -> list[_Hit]:
    """All hits in one string; ``member`` is the object key the string is the value of."""
    raw = [*_credential_hits(text), *_pii_hits(text, region)]
    if (member is not None and pointer not in EXEMPT_POINTERS and _secret_name(member)
            and _plain_value(text) and re.fullmatch(keyword.SECRET, text)
            and not _filtered(text, f"{member} = {text}", None)):
        raw.append(_Hit(0, len(text), KEYWORD))
    guards = [(m.start(), m.end()) for m in _PLACEHOLDER.finditer(text)]
    kept: list[_Hit] = []
    for hit in sorted(set(raw), key=lambda h: (h.start, -h.end, h.kind)):
        cat = category_of(hit.kind)
        if any(s < hit.end and hit.start < e for s, e in guards):
            continue
        if any(k.start <= hit.start and hit.end <= k.end and category_of(k.kind) == cat
               for k in kept):
            continue
        cred = [k for k in raw if category_of(k.kind) == CREDENTIAL and k != hit
                and k.start < hit.end and hit.start < k.end]
        if cred and (cat == PII or (hit.kind == ENTROPY and any(k.kind != ENTROPY for k in cred))):
            continue
        kept.append(hit)
    return kept


def _mask(text: str, hits: Iterable[_Hit]) -> str:
    """``text`` with each hit's span replaced by ``[REDACTED:<kind>]`` (overlaps merged)."""
    out, pos = [], 0
    for hit in sorted(hits, key=lambda h: (h.start, -h.end)):
        if hit.end <= pos:
            continue
        if hit.start < pos:               # overlaps the previous placeholder: extend it
            pos = hit.end
            continue
        out.append(text[pos:hit.start] + f"[REDACTED:{hit.kind}]")
        pos = hit.end
    return "".join(out) + text[pos:]


def _escape(segment: str) -> str:
    return segment.replace("~", "~0").replace("/", "~1")


Visit = Callable[[str, str, bool, list[_Hit]], str]


def _walk(value: Any, pointer: str, member: str | None, region: str, visit: Visit) -> Any:
    if isinstance(value, str):
        return visit(value, pointer, False, _hits(value, region, member, pointer))
    if isinstance(value, list):
        return [_walk(v, f"{pointer}/{i}", None, region, visit) for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, child in value.items():
        key_hits = _hits(key, region)
        child_pointer = f"{pointer}/{_escape(_mask(key, key_hits))}"
        new_key = visit(key, child_pointer, True, key_hits) if key_hits else key
        if new_key != key:
            base, n = new_key, 1
            while new_key in out or new_key in value:
                n += 1
                new_key = f"{base} #{n}"
        out[new_key] = _walk(child, child_pointer, key, region, visit)
    return out


def scan(document: Any, file: str, *, region: str = "US") -> list[Finding]:
    """Every credential and piece of personal data in ``document`` (parsed JSON or text)."""
    found: list[Finding] = []

    def visit(text: str, pointer: str, in_key: bool, hits: list[_Hit]) -> str:
        found.extend(Finding(file, pointer, h.kind, category_of(h.kind), h.start, h.end, in_key)
                     for h in hits)
        return text

    _walk(document, "", None, region, visit)
    return found


# --- policy ------------------------------------------------------------------------------

Rule = Action | Mapping[str, Action]


def _check_rule(category: str, rule: Any) -> None:
    kinds = CREDENTIAL_KINDS if category == CREDENTIAL else PII_KINDS
    entries = rule.items() if isinstance(rule, Mapping) else [("", rule)]
    for kind, action in entries:
        where = f"secrets.{category}" + (f".{kind}" if kind else "")
        if kind and kind != "*" and kind not in kinds:
            raise UsageError(f"{where}: unknown {category} kind; known: {', '.join(sorted(kinds))}")
        if action not in ACTIONS:
            raise UsageError(f"{where} must be one of {', '.join(ACTIONS)}, not {action!r}")


@dataclass(frozen=True)
class Policy:
    """What to do with each finding: ``block`` the write, ``redact`` the span, or ``allow``.

    ``credential`` and ``pii`` are each an action or a mapping ``{kind: action}``
    (``"*"`` for the rest of the category); kinds not mentioned keep their default.
    Default: block credentials, redact card numbers, allow emails and phones.
    ``region`` is the default region for phone numbers written without ``+``.
    """

    credential: Rule = "block"
    pii: Rule = field(default_factory=lambda: dict(_DEFAULTS))
    region: str = "US"

    def __post_init__(self) -> None:
        _check_rule(CREDENTIAL, self.credential)
        _check_rule(PII, self.pii)
        if self.region not in phonenumbers.SUPPORTED_REGIONS:
            raise UsageError(f"secrets.region: {self.region!r} is not a region code like 'US'")

    def action(self, kind: str) -> Action:
        rule = self.credential if category_of(kind) == CREDENTIAL else self.pii
        if isinstance(rule, str):
            return rule
        return rule.get(kind, rule.get("*", _DEFAULTS.get(kind, "block")))

    def to_json(self) -> dict[str, Any]:
        def plain(rule: Rule) -> Any:
            return rule if isinstance(rule, str) else dict(sorted(rule.items()))
        return {"credential": plain(self.credential), "pii": plain(self.pii),
                "region": self.region}

    @classmethod
    def from_json(cls, data: Any) -> Policy:
        if not isinstance(data, Mapping):
            raise UsageError("secrets policy must be a JSON object")
        unknown = sorted(set(data) - {"credential", "pii", "region"})
        if unknown:
            raise UsageError(f"secrets policy: unknown setting {unknown[0]!r}")
        for name in ("credential", "pii"):
            rule = data.get(name)
            if rule is not None and not isinstance(rule, str | Mapping):
                raise UsageError(f"secrets.{name} must be an action or an object of actions")
        region = data.get("region", "US")
        if not isinstance(region, str):
            raise UsageError("secrets.region must be a string")
        pii = data.get("pii", dict(_DEFAULTS))
        return cls(credential=cast(Rule, data.get("credential", "block")),
                   pii=cast(Rule, dict(pii) if isinstance(pii, Mapping) else pii),
                   region=region)


DEFAULT_POLICY = Policy()


def apply(document: Any, file: str, policy: Policy = DEFAULT_POLICY
          ) -> tuple[Any, list[Finding], list[Finding]]:
    """``(new_document, redacted, blocked)``: a new document with every ``redact``
    finding's span replaced by ``[REDACTED:<kind>]`` (keys renamed likewise).
    ``blocked`` findings are left in place: the caller must refuse the write."""
    redacted: list[Finding] = []
    blocked: list[Finding] = []

    def visit(text: str, pointer: str, in_key: bool, hits: list[_Hit]) -> str:
        chosen = []
        for h in hits:
            finding = Finding(file, pointer, h.kind, category_of(h.kind), h.start, h.end, in_key)
            action = policy.action(h.kind)
            if action == "block":
                blocked.append(finding)
            elif action == "redact":
                redacted.append(finding)
                chosen.append(h)
        return _mask(text, chosen) if chosen else text

    return _walk(document, "", None, policy.region, visit), redacted, blocked


def message(finding: Finding, action: Action) -> str:
    """The one-line violation message for a finding (never its value)."""
    key = " in an object key" if finding.in_key else ""
    what = (f"a credential ({finding.kind})" if finding.category == CREDENTIAL
            else f"personal data ({finding.kind})")
    if action == "redact":
        label = (f"a {finding.kind.replace('_', ' ')}" if finding.category == PII else what)
        return f"contains {label}{key} that must be redacted (use gitstore, which redacts it)"
    return f"contains {what}{key}; remove it — the value is not shown"


class SecretsHook:
    """Pipeline hook ``secrets``: a violation per ``block`` finding and, since nothing
    can be redacted in a plain-git pre-receive hook, per ``redact`` finding too.

    The policy is the one given, else ``p.secrets_policy`` if set, else the default.
    """

    __name__ = "secrets"

    def __init__(self, policy: Policy | None = None) -> None:
        self.policy = policy

    def __call__(self, p: Proposal) -> Iterator[Violation]:
        policy = self.policy or getattr(p, "secrets_policy", None) or DEFAULT_POLICY
        targets: dict[str, Any] = dict(p.documents)
        if SOW_DOCUMENT in p.files:
            targets[SOW_DOCUMENT] = p.files[SOW_DOCUMENT].decode("utf-8", "replace")
        for name, document in targets.items():
            if p.changed is not None and name not in p.changed:
                continue
            for finding in scan(document, name, region=policy.region):
                action = policy.action(finding.kind)
                if action != "allow":
                    yield Violation(name, finding.pointer, message(finding, action), "secrets")


check_secrets = SecretsHook()


def summary(findings: Iterable[Finding]) -> str:
    """Kinds and counts per file for a commit trailer, e.g. ``card_number\N{MULTIPLICATION SIGN}2
    (conversation.json)``; never values."""
    counts = Counter((f.file, f.kind) for f in findings)
    files = sorted({file for file, _ in counts})
    times = "\N{MULTIPLICATION SIGN}"
    return "; ".join(", ".join(f"{kind}{times}{n}" for (f, kind), n in sorted(counts.items())
                               if f == file) + f" ({file})" for file in files)
