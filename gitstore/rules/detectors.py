"""The one adapter to detect-secrets: every ``detect_secrets`` import lives here.

:mod:`gitstore.rules.secrets` needs five things from detect-secrets (pinned to 1.5.0,
its last release), and this module exposes exactly those, under names of our own:

* its credential plugins (:func:`plugins`, one instance each per process, named by
  :data:`PLUGIN_KINDS`), driven only through the side-effect-free
  ``analyze_string(text) -> Iterable[str]``; never ``scan_line``/``analyze_line``, which
  read detect-secrets' global settings and may verify a secret over the network;
* three plugins of our own on its :class:`RegexBasedDetector` base
  (:class:`AuthorizationDetector`: ``Authorization: Basic``/``Bearer`` headers;
  :class:`ConnectionStringDetector`: the password of a ``scheme://user:pass@host``
  connection string, empty user included);
* its value-based heuristic filters (:func:`is_false_positive`,
  :func:`is_indirect_reference`);
* its keyword regexes (:data:`KEYWORD_PATTERNS`, :data:`KEYWORD_DENYLIST`,
  :data:`KEYWORD_SECRET`);
* its base64 charset and Shannon entropy (:data:`ENTROPY_DETECTOR`,
  :data:`ENTROPY_CHARSET`, :data:`ENTROPY_LIMIT`, :func:`shannon_entropy`).

Importing this module loads detect-secrets (about 80 ms), so its one user,
:mod:`gitstore.rules.secrets`, defers it (:mod:`gitstore.core.lazy`) until the first
scan; :data:`PLUGIN_KINDS` lives in :mod:`gitstore.rules.kinds`, re-exported here.

None of these is a documented API of detect-secrets. ``tests/test_detectors_contract.py``
pins each one (names, signatures, and behaviour on known secrets), so an upgrade that
changes them fails there, loudly, before a scan silently finds less.
"""

from __future__ import annotations

import base64
import binascii
import re
import sys
from collections.abc import Generator
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any, TypeAlias

from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.filters import heuristic
from detect_secrets.plugins import keyword
from detect_secrets.plugins.base import BasePlugin, RegexBasedDetector
from detect_secrets.plugins.high_entropy_strings import Base64HighEntropyString

from gitstore.rules import hints
from gitstore.rules.kinds import PLUGIN_KINDS

__all__ = [
    "ENTROPY_CHARSET", "ENTROPY_DETECTOR", "ENTROPY_LIMIT", "KEYWORD_DENYLIST",
    "KEYWORD_PATTERNS", "KEYWORD_SECRET", "PLUGIN_KINDS", "AuthorizationDetector",
    "ConnectionStringDetector", "Detector", "is_false_positive", "is_indirect_reference",
    "plugins", "shannon_entropy",
]

#: A detect-secrets plugin: ``analyze_string(text)`` yields the secret values found.
Detector: TypeAlias = BasePlugin

_DIGIT = re.compile(r"\d")


class AuthorizationDetector(RegexBasedDetector):
    """``Authorization: Basic <base64 user:pass>`` or ``Bearer <16+ chars, with digits>``."""

    secret_type = "Authorization Header"

    def __init__(self, scheme: str) -> None:
        self.scheme = scheme
        self._denylist = (re.compile(rf"\bAuthorization\s*[:=]\s*['\"]?{scheme}\s+"
                                     r"([A-Za-z0-9._~+/=-]{4,})", re.IGNORECASE),)

    @property
    def denylist(self) -> tuple[re.Pattern[str], ...]:
        return self._denylist

    def analyze_string(self, string: str) -> Generator[str, None, None]:
        for token in super().analyze_string(string):
            if (b":" in _b64decode(token) if self.scheme == "Basic" else
                    len(token) >= 16 and _DIGIT.search(token) and re.search("[A-Za-z]", token)):
                yield token


#: URL schemes of databases, queues, caches and the web whose ``user:password@`` is a login.
CONNECTION_SCHEMES = (
    "postgres", "postgresql", "mysql", "mariadb", "mssql", "sqlserver", "oracle", "db2",
    "mongodb", "mongodb+srv", "redis", "rediss", "valkey", "memcached", "amqp", "amqps",
    "mqtt", "mqtts", "nats", "kafka", "couchdb", "cassandra", "neo4j", "neo4j+s", "bolt",
    "clickhouse", "snowflake", "http", "https", "ftp", "ftps", "sftp", "ssh", "smtp",
    "smtps", "imap", "imaps", "ldap", "ldaps", "git", "svn", "jdbc:postgresql",
    "jdbc:mysql", "jdbc:sqlserver", "jdbc:oracle",
)
_PLACEHOLDER_PASSWORD = re.compile(r"[*xX.\-_]+|\$\{?\w+\}?|<[^>]*>|\{[^}]*\}|%s", re.ASCII)


class ConnectionStringDetector(RegexBasedDetector):
    """The password of ``scheme://user:password@host`` for a scheme of
    :data:`CONNECTION_SCHEMES` (the user may be empty: ``redis://:password@host``);
    placeholders (``***``, ``${DB_PASS}``, ``<password>``, ``{pw}``) are not."""

    secret_type = "Connection String"
    denylist = (re.compile(
        r"(?<![\w+.-])(?:" + "|".join(re.escape(s) for s in
                                     sorted(CONNECTION_SCHEMES, key=len, reverse=True))
        + r")://[^\s:/@?#]*:([^\s/@?#]+)@[\w\[]", re.IGNORECASE),)

    def analyze_string(self, string: str) -> Generator[str, None, None]:
        for password in super().analyze_string(string):
            if not _PLACEHOLDER_PASSWORD.fullmatch(password):
                yield password


def _b64decode(token: str) -> bytes:
    try:
        return base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
    except (binascii.Error, ValueError):
        return b""


@cache
def plugins() -> tuple[tuple[str, Detector], ...]:
    """``(kind, detector)`` for every plugin of :data:`PLUGIN_KINDS` that detect-secrets
    has, then ``basic_auth``, ``bearer_token`` and ``connection_string``; instantiated
    once per process."""
    mapping: dict[str, Any] = dict(get_mapping_from_secret_type_to_class())
    classes: dict[str, type[BasePlugin]] = {c.__name__: c for c in mapping.values()}
    found = [(kind, classes[name]()) for name, kind in PLUGIN_KINDS.items() if name in classes]
    return (*found, ("basic_auth", AuthorizationDetector("Basic")),
            ("bearer_token", AuthorizationDetector("(?:Bearer|Token)")),
            ("connection_string", ConnectionStringDetector()))


def is_false_positive(secret: str, line: str, detector: Detector | None = None) -> bool:
    """detect-secrets' default heuristic filters (the value-based ones): sequential,
    UUID, ``{x}``/``<x>``/``${X}``, ``$VAR``, no letter, and id-like (``user_id=...``;
    skipped when ``detector`` is regex-based, as detect-secrets does)."""
    return bool(heuristic.is_sequential_string(secret) or heuristic.is_potential_uuid(secret)
                or heuristic.is_templated_secret(secret)
                or heuristic.is_prefixed_with_dollar_sign(secret)
                or heuristic.is_not_alphanumeric_string(secret)
                or heuristic.is_likely_id_string(secret, line, detector))


def is_indirect_reference(line: str) -> bool:
    """``secret = get_secret_key()`` or ``= request.headers['apikey']``: no value here."""
    return bool(heuristic.is_indirect_reference(line))


#: Bits of entropy per character above which a random-looking token is a secret.
ENTROPY_LIMIT: float = 4.5
_ENTROPY = Base64HighEntropyString(limit=ENTROPY_LIMIT)
#: The base64 high-entropy plugin at :data:`ENTROPY_LIMIT` (for :func:`is_false_positive`).
ENTROPY_DETECTOR: Detector = _ENTROPY
#: The base64 alphabet (with ``-_`` and ``=``) the entropy plugin measures over.
ENTROPY_CHARSET: str = _ENTROPY.charset


def shannon_entropy(text: str) -> float:
    """Shannon entropy of ``text`` over :data:`ENTROPY_CHARSET`, as detect-secrets computes it."""
    return float(_ENTROPY.calculate_shannon_entropy(text))


#: Keyword patterns (``password = "..."``, ``"secret": "..."``, ...) -> the group holding
#: the value: detect-secrets' quotes-required set plus its unquoted ``name = value``.
KEYWORD_PATTERNS: dict[re.Pattern[str], int] = {
    **keyword.QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP, keyword.FOLLOWED_BY_EQUAL_SIGNS_REGEX: 5}
#: Regexes of secret-naming words (``pass(word|wd)?``, ``secret``, ``api_?key``, ...).
KEYWORD_DENYLIST: tuple[str, ...] = tuple(keyword.DENYLIST)
#: Regex of a keyword's value.
KEYWORD_SECRET: str = keyword.SECRET


# --------------------------------------------------------------------------- the gate's data

#: Where :func:`gate_source` is written: what the first look of a scan needs, without us.
GATE_MODULE = Path(__file__).with_name("detectordata.py")


def gate_source() -> str:
    """The text of :mod:`gitstore.rules.detectordata`: the regexes of every plugin of
    :func:`plugins` and of the keyword patterns, the entropy charset and limit, as
    literals (so a scan can rule a line out without importing detect-secrets)."""
    regex_based = [plugin for _, plugin in plugins() if isinstance(plugin, RegexBasedDetector)]
    if len(regex_based) != len(plugins()):  # the gate would not know what such a plugin finds
        raise TypeError("a credential plugin is not regex-based: the gate cannot rule it out")
    plugin_patterns = [(pattern, flags, hints.required(pattern, flags)) for pattern, flags in
                       sorted({(p.pattern, p.flags) for plugin in regex_based
                               for p in plugin.denylist})]
    keyword = [(p.pattern, p.flags, group) for p, group in KEYWORD_PATTERNS.items()]

    def block(name: str, kind: str, doc: str, items: list[Any]) -> str:
        body = "".join(f"    {item!r},\n" for item in items)
        return f"#: {doc}\n{name}: {kind} = (\n{body})\n"

    return (
        "# ruff: noqa: E501\n"
        f'"""Generated from detect-secrets {_version()} by ``python -m '
        'gitstore.rules.detectors --write``.\n\n'
        "Do not edit. What the first look of a secrets scan (:mod:`gitstore.rules.gate`)\n"
        "needs from detect-secrets, as literals; ``tests/test_detectors_gate.py`` fails\n"
        'when this file and the installed detect-secrets disagree.\n"""\n\n'
        f"DETECT_SECRETS_VERSION = {_version()!r}\n"
        f"ENTROPY_CHARSET = {ENTROPY_CHARSET!r}\n"
        f"ENTROPY_LIMIT = {ENTROPY_LIMIT!r}\n"
        f"KEYWORD_SECRET = {KEYWORD_SECRET!r}\n\n"
        + block("KEYWORD_DENYLIST", "tuple[str, ...]", "Regexes of secret-naming words.",
                list(KEYWORD_DENYLIST)) + "\n"
        + block("KEYWORD_PATTERNS", "tuple[tuple[str, int, int], ...]",
                "(pattern, flags, group of the value) of each keyword pattern.", keyword) + "\n"
        + block("PLUGIN_PATTERNS", "tuple[tuple[str, int, tuple[str, ...] | None], ...]",
                "(pattern, flags, hints) of every regex a credential plugin matches with: "
                "every match holds one of the hints (gitstore.rules.hints.required).",
                plugin_patterns))


def _version() -> str:
    return version("detect-secrets")


def main(argv: list[str] | None = None) -> int:
    """``python -m gitstore.rules.detectors --write|--check``: (re)write or check
    :data:`GATE_MODULE` against the installed detect-secrets (exit 1 if stale)."""
    args = sys.argv[1:] if argv is None else argv
    if args not in (["--write"], ["--check"]):
        print("usage: python -m gitstore.rules.detectors --write|--check", file=sys.stderr)
        return 2
    text = gate_source()
    current = GATE_MODULE.read_text(encoding="utf-8") if GATE_MODULE.is_file() else None
    if current == text:
        return 0
    if args == ["--check"]:
        print(f"stale: {GATE_MODULE}", file=sys.stderr)
        return 1
    GATE_MODULE.write_text(text, encoding="utf-8")
    print(f"wrote {GATE_MODULE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
