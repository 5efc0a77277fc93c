"""The gate of the credential scan (:mod:`gitstore.rules.gate`) against detect-secrets.

The gate lets a scan skip detect-secrets for a line none of its regexes matches; these
tests hold it to the installed detect-secrets: the generated data is what detect-secrets
has now, every plugin reports only matches of those regexes, the entropy measure is
bit-for-bit detect-secrets' own, and (Hypothesis) a line the gate rules out is a line
every plugin reports nothing in. Fake credentials are assembled at run time.
"""

from __future__ import annotations

import base64
import re
import subprocess
import sys

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitstore.rules import detectordata, detectors, gate, hints
from gitstore.rules.detectors import (
    AuthorizationDetector,
    ConnectionStringDetector,
    RegexBasedDetector,
    plugins,
)
from gitstore.rules.secrets import scan

AWS_ID = "AKIA" + "IOSFODNN7" + "EXAMPLE"
GITHUB = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9" + ".eyJzdWIiOiIxMjM0NTY3ODkwIn0"
       + ".dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U")
STRIPE = "sk_" + "live_" + "4eC39HqLyjWDarjtT1zdp7dc"
SLACK = "xoxb-" + "123456789012-1234567890123-abcdefghijABCDEFGHIJklmn"
PEM = "-----BEGIN RSA " + "PRIVATE KEY-----"
BASIC = "Authorization: Basic " + base64.b64encode(b"admin:" + b"hunter2").decode()
CONN = "postgres://app:" + "s3cr3tPassw0rd" + "@db.internal:5432/app"
CLOUDANT = "https://acct:" + "0123456789abcdef" * 4 + "@acct.cloudant.com"   # "cl" hint
IBM = "ibm_cloud_iam_key = " + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5bC7dE9fG"    # inside longer
KNOWN = (AWS_ID, GITHUB, JWT, STRIPE, SLACK, PEM, BASIC, CONN, CLOUDANT, IBM)

#: Pieces that come near what the plugins look for, so the law meets real near-misses.
PIECES = ("AKIA", "ghp_", "glpat-", "eyJ", ".", "://", ":", "@", "-----BEGIN", "PRIVATE KEY",
          "sk_live_", "rk_live_", "xoxb-", "SG.", "AC", "SK", "npm_", "pypi-", "Basic ",
          "Bearer ", "Authorization: ", "aws", "key", "password", "token", "=", '"', "'",
          " ", "\n", "/", "AccountKey=", "sq0csp-", "_authToken=", "hooks.slack.com",
          "T3BlbkFJ", "cloudant", "ibm", "https://", "redis://:", "0123456789",
          "abcdefghijklmnopqrstuvwxyzABCDEF", "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345")
lines = st.lists(st.one_of(st.sampled_from(PIECES), st.sampled_from(KNOWN),
                           st.text(alphabet="abcXYZ0189+/=_-.:@ ", max_size=40)),
                 max_size=12).map("".join)


def test_the_generated_data_is_the_installed_detect_secrets() -> None:
    assert detectors.gate_source() == detectors.GATE_MODULE.read_text(encoding="utf-8"), (
        "gitstore/rules/detectordata.py is stale: run python -m gitstore.rules.detectors "
        "--write and review the change")


def test_every_plugin_reports_only_matches_of_its_regexes() -> None:
    jwt = type(dict(plugins())["jwt"])
    only_filters = {RegexBasedDetector.analyze_string, jwt.analyze_string,
                    AuthorizationDetector.analyze_string, ConnectionStringDetector.analyze_string}
    for kind, plugin in plugins():
        assert isinstance(plugin, RegexBasedDetector), kind
        assert type(plugin).analyze_string in only_filters, (
            f"{kind} has an analyze_string of its own: check that it only filters what its "
            "regexes match before adding it here")


def test_the_keyword_data_is_detect_secrets_own() -> None:
    assert [(p.pattern, p.flags, g) for p, g in gate.keyword_patterns()] == [
        (p.pattern, p.flags, g) for p, g in detectors.KEYWORD_PATTERNS.items()]
    assert gate.KEYWORD_DENYLIST == detectors.KEYWORD_DENYLIST
    assert gate.KEYWORD_SECRET == detectors.KEYWORD_SECRET
    assert (gate.ENTROPY_CHARSET, gate.ENTROPY_LIMIT) == (
        detectors.ENTROPY_CHARSET, detectors.ENTROPY_LIMIT)


@given(st.text(alphabet=gate.ENTROPY_CHARSET + "é ~", max_size=80))
def test_the_entropy_is_detect_secrets_own_to_the_bit(text: str) -> None:
    assert gate.shannon_entropy(text) == (detectors.shannon_entropy(text) if text else 0.0)


def test_the_gate_lets_every_known_credential_through() -> None:
    for secret in KNOWN:
        line = f"here it is: {secret} ok"
        assert gate.may_hold_plugin_secret(line), secret
        assert any(list(p.analyze_string(line)) for _, p in plugins()), secret
    assert not gate.may_hold_plugin_secret("We deploy three web servers behind a balancer.")


@settings(max_examples=400, deadline=None)
@given(lines)
def test_a_line_the_gate_rules_out_is_one_no_plugin_reports_in(line: str) -> None:
    if not gate.may_hold_plugin_secret(line):
        assert all(not list(plugin.analyze_string(line)) for _, plugin in plugins()), line


def test_a_clean_text_is_scanned_without_loading_detect_secrets() -> None:
    """The cost the gate saves is real: a scan of a text with no candidate line leaves
    detect-secrets unloaded, and a text with one loads it and finds the credential."""
    src = ("import sys\nfrom gitstore.rules.secrets import scan\n"
           "clean = {'user_input': {'query': 'Deploy at 2026-12-02T13:15:21Z please'},"
           " 'agent_response': {'message': 'Sure: three servers behind a load balancer.'}}\n"
           "print(scan(clean, 'conversation.json'), 'detect_secrets' in sys.modules)\n"
           f"print([f.kind for f in scan({{'q': 'id {AWS_ID}'}}, 'conversation.json')],"
           " 'detect_secrets' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out == ["[] False", "['aws_access_key'] True"]


two = st.integers(0, 99).map("{:02d}".format)
plain_timestamps = st.builds(
    lambda y, mo, d, t, h, mi, s, z: f"{y:04d}-{mo}-{d}{t}{h}:{mi}:{s}{z}",
    st.integers(0, 9999), two, two, st.sampled_from("Tt"), two, two, two,
    st.one_of(st.sampled_from("Zz"), st.builds("+{}:{}".format, two, two)))


@settings(max_examples=300, deadline=None)
@given(plain_timestamps, st.sampled_from(["US", "GB", "DE", "IN", "BR", "JP", "AU", "SH"]))
def test_a_plain_timestamp_holds_no_phone_or_card(text: str, region: str) -> None:
    assert gate.is_plain_timestamp(text)
    assert not list(phonenumbers.PhoneNumberMatcher(text, region,
                                                    leniency=phonenumbers.Leniency.VALID))
    assert scan({"t": text, "u": f"at {text}"}, "conversation.json", region=region) == []


def test_other_timestamps_are_still_scanned_for_phones() -> None:
    assert scan({"t": "2025-01-15T10:00:80-00:00"}, "conversation.json", region="SH")
    assert not gate.is_plain_timestamp("2025-01-15T10:00:80-00:00")
    text = "2025-01-15T10:00:20.12345678+01:00"
    assert not gate.is_plain_timestamp(text)
    policy_phone = [f.kind for f in scan({"t": text}, "conversation.json")]
    assert policy_phone == ["phone"]


#: Valid numbers of several regions (Saint Helena's have four digits), to plant in ids.
PHONES = ("2025550123", "12025550123", "4155552671", "442079460958", "919876543210", "8000",
          "22155", "4930901820", "61291234567", "0011442079460958")
hex_ids = st.builds(
    lambda prefix, parts: f"{prefix}sha256:" + "".join(parts)[:64].ljust(64, "a"),
    st.sampled_from(["", "turn-", "turn-hmac-"]),
    st.lists(st.one_of(st.sampled_from(PHONES), st.text(alphabet="0123456789abcdef",
                                                          min_size=1, max_size=9)),
             min_size=1, max_size=12))


@settings(max_examples=400, deadline=None)
@given(hex_ids, st.sampled_from(["US", "GB", "DE", "IN", "SH", "AU", "NU", "TK"]))
def test_a_digest_id_holds_no_phone_or_card(text: str, region: str) -> None:
    if not gate.is_digest_id(text):   # all digits, or a run of over 20: scanned as any text
        return
    assert not list(phonenumbers.PhoneNumberMatcher(text, region,
                                                    leniency=phonenumbers.Leniency.VALID))
    assert [f for f in scan({"k": text}, "conversation.json", region=region)
            if f.category == "pii"] == []


def test_digest_ids_the_gate_does_not_vouch_for() -> None:
    assert gate.is_digest_id("turn-sha256:" + "ab" * 32)
    assert not gate.is_digest_id("turn-sha256:" + "1" * 64)               # no letter
    assert not gate.is_digest_id("turn-sha256:" + "1" * 21 + "a" * 43)     # a run over 20
    assert not gate.is_digest_id("turn-sha256:" + "AB" * 32)               # not lowercase
    assert not gate.is_digest_id("call 2025550123 sha256:" + "ab" * 32)    # not only the id


# ------------------------------------------------------------------ hints: what every match holds

@settings(max_examples=300, deadline=None)
@given(lines)
def test_every_match_of_a_plugin_pattern_holds_one_of_its_hints(line: str) -> None:
    if not line.isascii():
        return
    for pattern, flags, found in detectordata.PLUGIN_PATTERNS:
        m = re.compile(pattern, flags).search(line)
        if m is not None and found is not None:
            text = m.group().lower() if flags & re.IGNORECASE else m.group()
            assert any(h in text for h in found), (pattern, line)


def test_required_hints_of_small_patterns() -> None:
    assert hints.required("abc") == ("abc",)
    assert hints.required("x?abc") == ("abc",)
    assert hints.required("ABC", re.IGNORECASE) == ("abc",)
    assert hints.required("(?i)ABC") == ("abc",)
    assert hints.required("(?i:abc)de") == ("de",)     # a scoped case flag proves nothing
    assert hints.required("[ab]cd") == ("cd",)
    assert hints.required("(?=abc)d") == ("d",)          # a lookahead is not consumed
    assert hints.required("(?:ab|cd)(?:e|fg)") == ("ab", "cd")
    assert hints.required("(?:ab|c?)") is None           # a branch that needs nothing
    assert hints.required("a*") is None and hints.required("(?:xy){0,3}") is None
    assert hints.required("(?:xy){2,3}") == ("xy",)
    assert hints.required("é+") is None                  # only ASCII hints are kept
    assert hints.required(r"(a)b\1") == ("a",)


atoms = st.sampled_from(["a", "b", "ab", "ba", "[ab]", ".", "\\d", "x"])
regexes = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.tuples(inner, inner).map("".join),
        st.tuples(inner, inner).map(lambda t: f"(?:{t[0]}|{t[1]})"),
        inner.map(lambda r: f"(?:{r})?"), inner.map(lambda r: f"(?:{r})+"),
        inner.map(lambda r: f"(?:{r}){{2,3}}"), inner.map(lambda r: f"(?=x)(?:{r})")),
    max_leaves=8)


@settings(max_examples=400, deadline=None)
@given(regexes, st.text(alphabet="abxAB1", max_size=12), st.booleans())
def test_a_match_holds_one_of_the_hints(pattern: str, text: str, icase: bool) -> None:
    flags = re.IGNORECASE if icase else 0
    found = hints.required(pattern, flags)
    m = re.search(pattern, text, flags)
    if m is not None and found is not None:
        got = m.group().lower() if icase else m.group()
        assert any(h in got for h in found), (pattern, text, found)


# ------------------------------------------------ phones near letters: always scanned

#: Texts a tried gate ("digits glued to Latin letters hold no phone") vouched for
#: wrongly; a fresh-eyes review and a fuzzer found them: an ``int`` extension
#: takes at most 9 digits, so a candidate may start inside a long run; an inner
#: group may start with the label itself; and a number with three or more letters
#: is read as a vanity number (``396int`` is 396468). The gate was withdrawn.
NEAR_LETTERS = (("ticket q1int0000000004155552671 done", "US"), ("v2int0000000004155552671", "US"),
                ("1 int030123456", "DE"), ("44;9int - 497838697258696o", "DE"))
#: Numbers of 4 to 6 digits, valid in their regions: the scan's first look
#: (``gate.may_hold_number``) hands them to phonenumbers by the policy region's
#: shortest number, or the shortest written with ``+``.
SHORT = (("call +98 9601 now", "US"), ("1 int4002", "NU"), ("office 4002", "NU"),
         ("Ruf 030 1234", "DE"))
#: What it still passes over: digits joined by letters phonenumbers reads as
#: digits (``396int`` is the vanity number 396468). A known gap.
LETTERED = ((";396int - 4o", "TK"), ("354INT.82n#extn", "TK"))


@pytest.mark.parametrize(("text", "region"), NEAR_LETTERS + SHORT)
def test_a_phone_near_letters_is_found(text: str, region: str) -> None:
    assert list(phonenumbers.PhoneNumberMatcher(text, region,
                                                leniency=phonenumbers.Leniency.VALID))
    assert "phone" in [f.kind for f in scan({"q": text}, "conversation.json", region=region)]


@pytest.mark.xfail(strict=True, reason="known gap: digits joined by letters phonenumbers "
                                       "reads as a vanity number")
@pytest.mark.parametrize(("text", "region"), LETTERED)
def test_a_lettered_phone_is_found(text: str, region: str) -> None:
    assert list(phonenumbers.PhoneNumberMatcher(text, region,
                                                leniency=phonenumbers.Leniency.VALID))
    assert "phone" in [f.kind for f in scan({"q": text}, "conversation.json", region=region)]


def test_the_first_look_knows_each_regions_shortest_number() -> None:
    """SHORT_NATIONAL and INTERNATIONAL_DIGITS are phonenumbers' own: every region
    whose shortest valid national number has fewer than 7 digits, with it, and
    the fewest digits of a country code and a national number together."""
    metadata = phonenumbers.PhoneMetadata
    shortest = {r: min(metadata.metadata_for_region(r).general_desc.possible_length)
                for r in phonenumbers.SUPPORTED_REGIONS}
    assert {r: n for r, n in shortest.items() if n < 7} == gate.SHORT_NATIONAL
    spans = [len(str(metadata.metadata_for_region(r).country_code)) + n
             for r, n in shortest.items()]
    spans += [len(str(cc)) + min(metadata.metadata_for_nongeo_region(cc).general_desc
                                 .possible_length)
              for cc in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS]
    assert min(spans) == gate.INTERNATIONAL_DIGITS
    assert not gate.may_hold_number("in 2025 we had 3 outages", "US")    # no phonenumbers
    assert gate.may_hold_number("in 2025 we had 3 outages", "DE")        # 4 digits: maybe
