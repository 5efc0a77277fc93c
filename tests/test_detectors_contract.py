"""Contract test: the detect-secrets internals that gitstore.rules.detectors relies on.

detect-secrets is pinned (pyproject.toml); none of what we use is its documented API.
If an upgrade renames, re-signs or changes any of it, this file fails first and says
what moved, before a secrets scan silently finds less. Every fake credential is
assembled at run time so this file does not itself look like a leak.
"""

from __future__ import annotations

import base64
import importlib
import inspect
import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

from gitstore.rules import detectors
from gitstore.rules.detectors import (
    ENTROPY_CHARSET,
    ENTROPY_DETECTOR,
    ENTROPY_LIMIT,
    KEYWORD_DENYLIST,
    KEYWORD_PATTERNS,
    KEYWORD_SECRET,
    PLUGIN_KINDS,
    AuthorizationDetector,
    is_false_positive,
    is_indirect_reference,
    plugins,
    shannon_entropy,
)

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
AWS_ID = "AKIA" + "IOSFODNN7" + "EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG" + "/bPxRfiCYEXAMPLEKEY"
PEM_HEADER = "-----BEGIN RSA " + "PRIVATE KEY-----"
PASSWORD = "Xk9#" + "mP2qR7vL"

#: module -> names gitstore.rules.detectors imports from it.
INTERNALS = {
    "detect_secrets.core.plugins.util": ["get_mapping_from_secret_type_to_class"],
    "detect_secrets.filters.heuristic": [
        "is_sequential_string", "is_potential_uuid", "is_templated_secret",
        "is_prefixed_with_dollar_sign", "is_not_alphanumeric_string", "is_likely_id_string",
        "is_indirect_reference"],
    "detect_secrets.plugins.keyword": [
        "QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP", "FOLLOWED_BY_EQUAL_SIGNS_REGEX", "DENYLIST",
        "SECRET"],
    "detect_secrets.plugins.base": ["BasePlugin", "RegexBasedDetector"],
    "detect_secrets.plugins.high_entropy_strings": ["Base64HighEntropyString"],
}

#: callable -> its parameters, as detect-secrets 1.5.0 declares them.
SIGNATURES = {
    "detect_secrets.core.plugins.util.get_mapping_from_secret_type_to_class": [],
    "detect_secrets.filters.heuristic.is_sequential_string": ["secret"],
    "detect_secrets.filters.heuristic.is_potential_uuid": ["secret"],
    "detect_secrets.filters.heuristic.is_templated_secret": ["secret"],
    "detect_secrets.filters.heuristic.is_prefixed_with_dollar_sign": ["secret"],
    "detect_secrets.filters.heuristic.is_not_alphanumeric_string": ["secret"],
    "detect_secrets.filters.heuristic.is_likely_id_string": ["secret", "line", "plugin"],
    "detect_secrets.filters.heuristic.is_indirect_reference": ["line"],
    "detect_secrets.plugins.base.BasePlugin.analyze_string": ["self", "string"],
    "detect_secrets.plugins.base.RegexBasedDetector.analyze_string": ["self", "string"],
    "detect_secrets.plugins.high_entropy_strings.Base64HighEntropyString.__init__":
        ["self", "limit"],
    "detect_secrets.plugins.high_entropy_strings.HighEntropyStringsPlugin"
    ".calculate_shannon_entropy": ["self", "data"],
}


def _resolve(dotted: str) -> object:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def _kind(kind: str) -> detectors.Detector:
    return dict(plugins())[kind]


def test_the_pinned_version_is_the_one_installed() -> None:
    deps = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["dependencies"]
    pin = next(d for d in deps if d.startswith("detect-secrets"))
    assert pin == f"detect-secrets=={version('detect-secrets')}", (
        f"pyproject pins {pin!r} but {version('detect-secrets')} is installed: re-run this "
        "contract against the new version before changing the pin")


@pytest.mark.parametrize(("module", "names"), INTERNALS.items())
def test_internals_exist(module: str, names: list[str]) -> None:
    mod = importlib.import_module(module)
    missing = [n for n in names if not hasattr(mod, n)]
    assert not missing, f"detect-secrets no longer has {module}.{missing}"


@pytest.mark.parametrize(("dotted", "params"), SIGNATURES.items())
def test_signatures(dotted: str, params: list[str]) -> None:
    assert list(inspect.signature(_resolve(dotted)).parameters) == params, dotted  # type: ignore[arg-type]


def test_only_the_adapter_imports_detect_secrets() -> None:
    package = Path(detectors.__file__).resolve().parent.parent
    importers = sorted(str(p.relative_to(package.parent)) for p in package.rglob("*.py")
                       if re.search(r"^\s*(from|import)\s+detect_secrets\b",
                                    p.read_text(encoding="utf-8"), re.M))
    assert importers == ["gitstore/rules/detectors.py"]


def test_every_plugin_we_name_exists() -> None:
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    names = {cls.__name__ for cls in get_mapping_from_secret_type_to_class().values()}
    assert not set(PLUGIN_KINDS) - names, f"plugins gone: {sorted(set(PLUGIN_KINDS) - names)}"
    kinds = [kind for kind, _ in plugins()]
    assert kinds == [*PLUGIN_KINDS.values(), "basic_auth", "bearer_token", "connection_string"]
    assert len(set(kinds)) == len(kinds)


def test_aws_access_key() -> None:
    assert list(_kind("aws_access_key").analyze_string(f"key id {AWS_ID}, region x")) == [AWS_ID]
    assert list(_kind("aws_access_key").analyze_string("no key here at all")) == []


def test_private_key_header() -> None:
    # secrets._extend widens this hit to the whole PEM block: it relies on the value
    # being the header's text between the dashes.
    found = list(_kind("private_key").analyze_string(f"here:\n{PEM_HEADER}\nMIIE"))
    assert found == ["BEGIN RSA PRIVATE KEY"]
    line = f"x {PEM_HEADER}"
    assert line[line.index(found[0]) - 5:line.index(found[0])] == "-----"


def test_high_entropy_base64_string() -> None:
    assert ENTROPY_LIMIT == 4.5
    assert ENTROPY_DETECTOR.entropy_limit == ENTROPY_LIMIT  # type: ignore[attr-defined]
    assert set(ENTROPY_CHARSET) >= set("abcXYZ0189+/=")
    assert re.fullmatch(f"[{re.escape(ENTROPY_CHARSET)}]+", AWS_SECRET)
    assert shannon_entropy("aaaaaaaa") == 0.0
    assert shannon_entropy("abcd") == pytest.approx(2.0)
    assert shannon_entropy(AWS_SECRET) == pytest.approx(4.6628, abs=1e-3)
    assert shannon_entropy(AWS_SECRET) > ENTROPY_LIMIT > shannon_entropy("thisisjustwordsnotakey")


def test_keyword_password() -> None:
    assert "password" in KEYWORD_DENYLIST and "secret" in KEYWORD_DENYLIST
    assert all(isinstance(p, re.Pattern) and isinstance(g, int)
               for p, g in KEYWORD_PATTERNS.items())
    quoted = f'db_password = "{PASSWORD}"'
    assert {m.group(g) for p, g in KEYWORD_PATTERNS.items() for m in p.finditer(quoted)} == {
        PASSWORD}
    unquoted = "password = hunter2x"   # the unquoted pattern: group 5 holds the value
    assert {m.group(g) for p, g in KEYWORD_PATTERNS.items() for m in p.finditer(unquoted)} == {
        "hunter2x"}
    assert re.fullmatch(KEYWORD_SECRET, PASSWORD)
    assert not re.fullmatch(KEYWORD_SECRET, 'a"b')


def test_authorization_detectors_on_the_regex_base() -> None:
    basic = base64.b64encode(b"admin:" + b"hunter2").decode()
    assert list(AuthorizationDetector("Basic").analyze_string(
        f"Authorization: Basic {basic}")) == [basic]
    assert list(AuthorizationDetector("Basic").analyze_string(
        "Authorization: Basic " + base64.b64encode(b"no colon").decode())) == []
    bearer = "mF_9.B5f-4.1JqM" + "8x2Kz7Q0wL"
    assert list(_kind("bearer_token").analyze_string(f"authorization: bearer {bearer}")) == [
        bearer]


def test_heuristic_filters() -> None:
    assert is_false_positive("ABCDEFGHIJKLMNOP", "")                     # sequential
    assert is_false_positive("123e4567-e89b-12d3-a456-426614174000", "")  # uuid
    assert is_false_positive("${DB_PASSWORD}", "")                         # templated
    assert is_false_positive("<password>", "")
    assert is_false_positive("$DB_PASSWORD", "")                           # $VAR
    assert is_false_positive("********", "")                               # no letter
    assert is_false_positive("ab12cd34ef", "user_id = ab12cd34ef")         # id-like
    # ... but the id-like filter is skipped for regex-based plugins, as detect-secrets does
    assert not is_false_positive("ab12cd34ef", "user_id = ab12cd34ef",
                                 _kind("aws_access_key"))
    assert not is_false_positive(PASSWORD, f"password = {PASSWORD}")
    assert is_indirect_reference("secret = get_secret_key()")
    assert is_indirect_reference("api_key = request.headers['apikey']")
    assert not is_indirect_reference(f"secret = {PASSWORD}")


def test_the_scanner_still_finds_the_four_known_secrets() -> None:
    from gitstore.rules.secrets import scan

    text = (f"id {AWS_ID}\n{PEM_HEADER}\nMIIEowIBAAKCAQEAx7kM3nq9Zb2Xc4Vf8LpQwErTyUiOp\n"
            "-----END RSA " f"PRIVATE KEY-----\nand the secret is {AWS_SECRET} ok\n"
            f'db_password = "{PASSWORD}"\n')
    assert {f.kind for f in scan(text, "sow_document.md")} == {
        "aws_access_key", "private_key", "high_entropy_string", "generic_secret_keyword"}
