"""Secret and personal-data scanning and redaction (gitstore.rules.secrets), with the real
detect-secrets and phonenumbers libraries: no mocks.

Every fake credential below is assembled at run time, so this file does not itself
look like it leaks one to secret scanners.
"""

from __future__ import annotations

import base64
import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import CUSTOMER, EXAMPLES

from gitstore.core import canonical
from gitstore.core.render import render_sow
from gitstore.errors import InvalidDocumentError, UsageError
from gitstore.rules.pipeline import Pipeline, Proposal
from gitstore.rules.policy import DEFAULT_POLICY, Policy
from gitstore.rules.secrets import (
    Finding,
    SecretsHook,
    apply,
    check_secrets,
    luhn_valid,
    message,
    scan,
    summary,
)

QUERY = "/conversation_turns/0/user_input/query"
AWS_ID = "AKIA" + "IOSFODNN7" + "EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG" + "/bPxRfiCYEXAMPLEKEY"
GITHUB = "ghp_" + "a1B2c3D4e5F6g7H8i9J0" + "k1L2m3N4o5P6q7R8"
SLACK = "xoxb-" + "123456789012-1234567890123-" + "AbCdEfGhIjKlMnOpQrStUvWx"
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." + "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6Ikpv"
       "aG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ." + "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
PEM = ("-----BEGIN RSA " + "PRIVATE KEY-----\nMIIEowIBAAKCAQEAx7kM3nq9Zb2Xc4Vf8LpQwErTyUiOp\n"
       "c2VjcmV0IGtleSBtYXRlcmlhbA==\n-----END RSA " + "PRIVATE KEY-----")
BASIC = base64.b64encode(b"admin:" + b"hunter2").decode()
BEARER = "mF_9.B5f-4.1JqM" + "8x2Kz7Q0wL"
CARD = "4111 1111 " + "1111 1111"
EMAIL = "jane.doe@example.com"
PHONE = "+1 415-555-2671"

# (text of a user query, kind, the caught value)
CREDENTIALS = [
    (f"my access key id is {AWS_ID}, is that enough?", "aws_access_key", AWS_ID),
    (f'aws_secret_access_key = "{AWS_SECRET}"', "aws_access_key", AWS_SECRET),
    (f"and the secret is {AWS_SECRET} if you need it", "high_entropy_string", AWS_SECRET),
    (f"here is the deploy key:\n{PEM}\nthanks", "private_key", PEM),
    (f"use token {GITHUB} for the repo", "github_token", GITHUB),
    (f"our bot token {SLACK} posts alerts", "slack_token", SLACK),
    (f"the API wants {JWT} as the session", "jwt", JWT),
    ("it connects to postgres://user:" + "hunter2@db:5432/x daily", "password_in_url",
     "hunter2"),
    (f"curl -H 'Authorization: Basic {BASIC}' https://api.example.com", "basic_auth", BASIC),
    (f"Authorization: Bearer {BEARER}", "bearer_token", BEARER),
    ('config has db_password = "' + 'Tr0ub4dor&3"', "generic_secret_keyword", "Tr0ub4dor&3"),
    ("my .env says DB_PASSWORD=" + "s3cr3tValue and nothing else", "generic_secret_keyword",
     "s3cr3tValue"),
]

INNOCENT = [
    "arn:aws:lambda:us-east-1:123456789012:function:orders-handler",
    "arn:aws:iam::123456789012:role/apigw-cloudwatch-logs-role in account 123456789012",
    "session orchestrator-session-4f1c2d9e-8b7a-4e21-9c3d-5a6b7c8d9e0f",
    "uuid 4f1c2d9e-8b7a-4e21-9c3d-5a6b7c8d9e0f",
    "at 2025-01-15T10:30:00Z, epoch 1736937000 or 1736937000000 ms",
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "Luhn-invalid 4111 1111 1111 1112 and 4111-1111-1111-1112",
    "a 20-digit run 41111111111111111111 and a 16 inside 1234111111111111111199",
    "attach AmazonEC2ContainerRegistryReadOnlyAccess and AWSLambdaBasicExecutionRole",
    "bucket my-bucket-prod-2024-us-east-1-LogsArchive-Q3 and arn-aws-iam-123456789012-role-X",
    "log group /aws/lambda/orders-handler-2024/abcdefghijklmnop1234567890",
    "we use Authorization: Basic authentication and a token authorizer",
    'password_policy = "strict"; secret_arn = "arn:aws:secretsmanager:x"',
    'password = "${DB_PASSWORD}" and password = "<your password>" and password = "********"',
    "the password must be rotated every 90 days; store the secret in Secrets Manager",
    "version v1.0.0, 512 MB, 30-day retention, 4XXError and 5XXError, port 5432",
    "ids like 01HZX4KQ3M7Y8N2P5R6S9T0VWX and base64ish aGVsbG8td29ybGQ",
    "clone git@github.com:org/repo.git or https://bob@host.example.com/x",
]


def conversation(query: str) -> dict[str, Any]:
    return {"conversation_turns": [{"turn_id": 1, "user_input": {"query": query}}]}


def example_documents() -> list[Path]:
    return sorted(EXAMPLES.rglob("*.json"))


# --- credentials -------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "kind", "value"), CREDENTIALS,
                         ids=[c[1] + str(i) for i, c in enumerate(CREDENTIALS)])
def test_each_credential_kind_is_found_and_blocked(text: str, kind: str, value: str) -> None:
    doc = conversation(text)
    found = scan(doc, "conversation.json")
    assert [(f.kind, f.category, f.pointer) for f in found] == [(kind, "credential", QUERY)]
    assert text[found[0].start:found[0].end] == value
    new, redacted, blocked = apply(doc, "conversation.json")
    assert (new, redacted, blocked) == (doc, [], found)
    violations = list(check_secrets(Proposal(customer=CUSTOMER, files={},
                                             documents={"conversation.json": doc})))
    assert len(violations) == 1
    v = violations[0]
    assert (v.file, v.pointer, v.hook) == ("conversation.json", QUERY, "secrets")
    assert v.message == f"contains a credential ({kind}); remove it — the value is not shown"
    assert value not in str(v) and value not in repr(v)


def test_aws_key_id_and_secret_together() -> None:
    text = f"key {AWS_ID}\nsecret {AWS_SECRET}"
    found = scan(text, "notes")
    assert [(f.kind, text[f.start:f.end]) for f in found] == [
        ("aws_access_key", AWS_ID), ("high_entropy_string", AWS_SECRET)]


def test_json_member_named_like_a_secret() -> None:
    doc = {"configuration": {"master_password": "Tr0ub4dor3", "db_password": "",
                             "password": "stored in Secrets Manager", "secret_arn": "arn:x:1",
                             "password_policy": "strict", "api_key": "sk9f8a7b6c5d",
                             "client_secret": "redacted", "has_password": True},
           "session_info": {"api_key": "customer-xyz789"}}
    found = scan(doc, "deployment_context.json")
    assert [(f.pointer, f.kind, f.start, f.end) for f in found] == [
        ("/configuration/master_password", "generic_secret_keyword", 0, 10),
        ("/configuration/api_key", "generic_secret_keyword", 0, 12)]


def test_a_secret_in_an_object_key_is_masked_in_pointers() -> None:
    doc = {"configuration": {AWS_ID: {"note": f"call {PHONE}"}}}
    found = scan(doc, "deployment_context.json")
    assert [(f.pointer, f.kind, f.in_key) for f in found] == [
        ("/configuration/[REDACTED:aws_access_key]", "aws_access_key", True),
        ("/configuration/[REDACTED:aws_access_key]/note", "phone", False)]
    assert all(AWS_ID not in repr(f) + str(f) for f in found)
    assert "in an object key" in message(found[0], "block")


# --- personal data -----------------------------------------------------------------------

def test_email_phone_and_card_found_with_pointers_and_spans() -> None:
    text = f"Reach me at {EMAIL} or {PHONE}; bill card {CARD}, thanks."
    doc = {"conversation_turns": [{"agent_response": {"orchestrator_response": "ok"}},
                                  {"user_input": {"query": text}}]}
    found = scan(doc, "conversation.json")
    pointer = "/conversation_turns/1/user_input/query"
    assert [(f.pointer, f.kind, f.category, text[f.start:f.end]) for f in found] == [
        (pointer, "email", "pii", EMAIL), (pointer, "phone", "pii", PHONE),
        (pointer, "card_number", "pii", CARD)]
    assert found[2].start == text.index(CARD) and found[2].end == text.index(CARD) + len(CARD)


@pytest.mark.parametrize("card", ["4111111111111111", "5500-0000-0000-0004", "378282246310005",
                                  "6011 1111 1111 1117", "4222222222222"])
def test_luhn_valid_card_formats(card: str) -> None:
    found = scan(f"card: {card}.", "x")
    assert [(f.kind, f.start, f.end) for f in found] == [("card_number", 6, 6 + len(card))]


def test_card_number_written_as_a_json_number() -> None:
    doc = {"parameters": {"card": 4111111111111111, "epoch_ms": 1736937000000, "n": 7,
                          "ok": True, "account": 123456789012}}
    [f] = scan(doc, "conversation.json")
    assert (f.pointer, f.kind, f.start, f.end) == ("/parameters/card", "card_number", 0, 16)
    new, _, _ = apply(doc, "conversation.json")
    assert new["parameters"] == dict(doc["parameters"], card="[REDACTED:card_number]")


def test_luhn() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")


@pytest.mark.parametrize("text", INNOCENT)
def test_no_false_positives(text: str) -> None:
    assert scan(text, "x") == []
    assert scan(conversation(text), "conversation.json") == []


def test_phone_region_is_configurable() -> None:
    text = "ring 020 7946 0958 today"
    assert scan(text, "x") == []
    assert [f.kind for f in scan(text, "x", region="GB")] == ["phone"]
    policy = Policy(region="GB", pii={"phone": "block"})
    assert [f.kind for f in apply(text, "x", policy)[2]] == ["phone"]


EXTENDED = "call +1 650-253-0000 ext. 4111111111111111 now"


def test_phone_numbers_are_looked_for_only_when_the_policy_acts_on_them() -> None:
    """The default policy allows every phone number, so none is looked for (a finding
    it would allow changes nothing); a policy that redacts or blocks them finds them."""
    assert DEFAULT_POLICY.phone_region is None
    assert Policy(pii="allow").phone_region is None
    assert Policy(region="GB", pii={"phone": "redact"}).phone_region == "GB"
    assert Policy(pii={"*": "block"}).phone_region == "US"
    text = "ring 020 7946 0958 or +1 650-253-0000"
    assert apply(text, "x")[0] == text
    assert [f.kind for f in scan(text, "x", region=None)] == []
    new, redacted, _ = apply(text, "x", Policy(region="GB", pii={"phone": "redact"}))
    assert new == "ring [REDACTED:phone] or [REDACTED:phone]"
    assert [f.kind for f in redacted] == ["phone", "phone"]


def test_a_phone_number_in_a_key_stays_masked_in_pointers() -> None:
    """Phone numbers allowed, so not looked for in values; a key holding one is still
    shown masked in the pointer of a finding under it (errors and hook output)."""
    doc = {"context": {"+1 650-253-0000": f"token {GITHUB}"}}
    _, _, blocked = apply(doc, "x")
    assert [(f.kind, f.pointer) for f in blocked] == [
        ("github_token", "/context/[REDACTED:phone]")]
    violations = list(SecretsHook()(Proposal(customer=CUSTOMER, files={}, documents={"x": doc})))
    assert [v.pointer for v in violations] == ["/context/[REDACTED:phone]"]
    assert apply({"+1 650-253-0000": "fine"}, "x")[0] == {"+1 650-253-0000": "fine"}


def test_keys_masked_alike_keep_their_values_apart() -> None:
    """Two keys whose phone numbers mask to the same pointer segment: the password
    split across the values is masked in its own value only, under its own pointer."""
    doc = {"+1 650-253-0000": "some text password=",
           "+1 650-253-0001": "hunter2secretXYZ and more text here"}
    new, redacted, _ = apply(doc, "x", Policy(credential="redact"))
    assert list(new.values()) == ["some text password=",
                                  "[REDACTED:generic_secret_keyword] and more text here"]
    assert [f.pointer for f in redacted] == ["/[REDACTED:phone] #2"]


def test_a_key_shown_as_written_keeps_its_pointer() -> None:
    """Only masked keys are numbered apart: a key already reading ``[REDACTED:email] #2``
    (a document an earlier redaction wrote) keeps that pointer, and the second masked
    email key under the same object becomes ``#3``, as its key does in the output."""
    doc = {"a@b.com": "1", "c@d.com": "2", "[REDACTED:email] #2": {"password": "hunter2Xq9!zz"}}
    found = {(f.pointer, f.kind) for f in scan(doc, "x")}
    assert found == {("/[REDACTED:email]", "email"), ("/[REDACTED:email] #3", "email"),
                     ("/[REDACTED:email] #2/password", "generic_secret_keyword")}
    new, _, _ = apply(doc, "x", Policy(pii={"email": "redact"}))
    assert list(new) == ["[REDACTED:email]", "[REDACTED:email] #3", "[REDACTED:email] #2"]


def test_an_allowed_phone_number_hides_no_card_number() -> None:
    """A card number in a phone number's extension was hidden by the phone number's span
    when phone numbers were looked for and allowed; it is redacted now. A policy that
    redacts phone numbers masks the whole span, card and all."""
    new, redacted, blocked = apply(EXTENDED, "x")
    assert new == "call +1 650-253-0000 ext. [REDACTED:card_number] now"
    assert [f.kind for f in redacted] == ["card_number"] and blocked == []
    hook = SecretsHook()
    assert [v.message for v in hook(Proposal(customer=CUSTOMER, files={},
                                             documents={"x": EXTENDED}))] == [
        message(redacted[0], "redact")]
    new, redacted, _ = apply(EXTENDED, "x", Policy(pii={"phone": "redact"}))
    assert new == "call [REDACTED:phone] now" and [f.kind for f in redacted] == ["phone"]


# --- the example data --------------------------------------------------------------------

def test_every_example_document_is_clean() -> None:
    files = example_documents()
    assert len(files) >= 10
    for path in files:
        assert scan(json.loads(path.read_text("utf-8")), path.name) == [], path


def test_rendered_example_sow_is_clean() -> None:
    docs = {p.name: json.loads(p.read_text("utf-8"))
            for p in (EXAMPLES / "session").glob("*.json")}
    text = render_sow(docs, customer=CUSTOMER, version="v1.0.0")
    assert scan(text, "sow_document.md") == []


# --- redaction ---------------------------------------------------------------------------

def test_redaction_replaces_exactly_the_span() -> None:
    text = f"pay with {CARD} please"
    new, redacted, blocked = apply(conversation(text), "conversation.json")
    assert new == conversation("pay with [REDACTED:card_number] please")
    assert blocked == [] and [(f.kind, f.pointer) for f in redacted] == [("card_number", QUERY)]


def test_nothing_caught_survives_redaction() -> None:
    everything = Policy(credential="redact", pii="redact")
    texts = [t for t, _, _ in CREDENTIALS] + [f"{EMAIL}, {PHONE}, {CARD}"]
    doc = {"conversation_turns": [{"turn_id": i, "user_input": {"query": t}}
                                  for i, t in enumerate(texts)],
           "keys": {AWS_ID: 1, f"x {AWS_ID}": 2, "[REDACTED:aws_access_key]": 3, EMAIL: 4}}
    original = copy.deepcopy(doc)
    new, redacted, blocked = apply(doc, "conversation.json", everything)
    assert doc == original and blocked == []
    assert len(redacted) == len(scan(doc, "conversation.json"))
    out = canonical.dumps(new).decode("utf-8")
    for value in (AWS_ID, AWS_SECRET, GITHUB, SLACK, JWT, BASIC, BEARER, "hunter2", "Tr0ub4dor",
                  "s3cr3tValue", "PRIVATE KEY", "MIIEowIBAAKCAQEA", EMAIL, "415-555-2671",
                  "4111"):
        assert value not in out, value
    assert scan(new, "conversation.json") == []        # idempotent
    assert apply(new, "conversation.json", everything) == (new, [], [])
    assert sorted(new["keys"]) == ["[REDACTED:aws_access_key]", "[REDACTED:aws_access_key] #2",
                                   "[REDACTED:email]", "x [REDACTED:aws_access_key]"]
    assert new["keys"]["[REDACTED:aws_access_key]"] == 3    # the existing key is kept
    basic = [kind for _, kind, _ in CREDENTIALS].index("basic_auth")
    assert new["conversation_turns"][basic]["user_input"]["query"] == (
        "curl -H 'Authorization: Basic [REDACTED:basic_auth]' https://api.example.com")


def test_redaction_keeps_everything_else() -> None:
    doc = json.loads((EXAMPLES / "session" / "conversation.json").read_text("utf-8"))
    doc["conversation_turns"][0]["user_input"]["query"] += f" My card is {CARD}."
    new, redacted, _ = apply(doc, "conversation.json")
    assert len(redacted) == 1
    doc["conversation_turns"][0]["user_input"]["query"] = (
        doc["conversation_turns"][0]["user_input"]["query"].replace(CARD, "[REDACTED:card_number]"))
    assert new == doc


# --- findings never hold values ----------------------------------------------------------

def test_findings_never_contain_the_value() -> None:
    texts = [t for t, _, _ in CREDENTIALS] + [f"{EMAIL}, {PHONE}, {CARD}"]
    doc = {"turns": texts, "keys": {AWS_ID: 1}}
    found = scan(doc, "conversation.json")
    assert len(found) == len(CREDENTIALS) + 4
    shown = [repr(found), summary(found), *(str(f) for f in found),
             *(json.dumps(f.to_json()) for f in found),
             *(message(f, a) for f in found for a in ("block", "redact"))]
    secrets = [v for _, _, v in CREDENTIALS] + [EMAIL, PHONE, CARD, AWS_ID]
    for text in shown:
        for value in secrets:
            assert value not in text


def test_summary() -> None:
    f = [Finding("conversation.json", "/a", "card_number", "pii", 0, 1),
         Finding("conversation.json", "/b", "card_number", "pii", 0, 1),
         Finding("deployment_context.json", "/c", "jwt", "credential", 0, 1),
         Finding("conversation.json", "/d", "email", "pii", 0, 1)]
    times = "\N{MULTIPLICATION SIGN}"
    assert summary(f) == (f"card_number{times}2, email{times}1 (conversation.json); "
                          f"jwt{times}1 (deployment_context.json)")
    assert summary([]) == ""


# --- policy ------------------------------------------------------------------------------

def test_default_policy() -> None:
    assert DEFAULT_POLICY.to_json() == {
        "credential": "block", "region": "US",
        "pii": {"card_number": "redact", "email": "allow", "phone": "allow"}}
    assert [DEFAULT_POLICY.action(k) for k in ("jwt", "card_number", "email", "phone")] == [
        "block", "redact", "allow", "allow"]
    with pytest.raises(TypeError):
        DEFAULT_POLICY.pii["email"] = "block"  # type: ignore[index]


@pytest.mark.parametrize("data", [
    {}, {"credential": "redact"}, {"pii": "block", "region": "GB"},
    {"credential": {"jwt": "allow", "*": "redact"}, "pii": {"email": "redact"}},
])
def test_policy_json_round_trip(data: dict[str, Any]) -> None:
    policy = Policy.from_json(data)
    assert Policy.from_json(policy.to_json()) == policy
    assert Policy.from_json(json.loads(json.dumps(policy.to_json()))).to_json() == policy.to_json()


def test_policy_per_kind_and_fallbacks() -> None:
    policy = Policy.from_json({"credential": {"jwt": "allow", "*": "redact"},
                               "pii": {"email": "redact"}})
    assert [policy.action(k) for k in ("jwt", "github_token", "email", "card_number", "phone")] \
        == ["allow", "redact", "redact", "redact", "allow"]
    assert Policy(credential={"jwt": "allow"}).action("slack_token") == "block"


@pytest.mark.parametrize("data", [
    [], "block", {"credential": "hide"}, {"pii": {"card_number": "mask"}},
    {"pii": {"jwt": "allow"}}, {"credential": {"card_number": "block"}},
    {"credential": {"aws_key": "block"}}, {"secrets": {}}, {"region": "Narnia"},
    {"region": 1}, {"credential": 3}, {"pii": ["email"]},
])
def test_bad_policy_is_refused(data: Any) -> None:
    with pytest.raises(UsageError):
        Policy.from_json(data)


def test_bad_policy_constructor_is_refused() -> None:
    with pytest.raises(UsageError, match="must be one of block, redact, allow"):
        Policy(credential="warn")  # type: ignore[arg-type]


# --- the pipeline hook -------------------------------------------------------------------

def test_hook_reports_redactable_findings_for_plain_git() -> None:
    doc = conversation(f"card {CARD}")
    p = Proposal(customer=CUSTOMER, files={}, documents={"conversation.json": doc})
    [v] = list(SecretsHook()(p))
    assert v.message == ("contains a card number that must be redacted "
                         "(use gitstore, which redacts it)")
    assert list(SecretsHook(Policy(pii="allow"))(p)) == []
    p.secrets_policy = Policy(pii="allow")  # type: ignore[attr-defined]
    assert list(check_secrets(p)) == []


def test_hook_scans_only_changed_documents_and_the_sow() -> None:
    bad = conversation(f"key {AWS_ID}")
    p = Proposal(customer=CUSTOMER, files={"sow_document.md": f"card {CARD}".encode()},
                 documents={"conversation.json": bad, "session_metadata.json": bad},
                 changed=frozenset({"session_metadata.json"}))
    assert [(v.file, v.pointer) for v in check_secrets(p)] == [("session_metadata.json", QUERY)]
    p.changed = None
    assert [(v.file, v.pointer) for v in check_secrets(p)] == [
        ("conversation.json", QUERY), ("session_metadata.json", QUERY), ("sow_document.md", "")]


def test_hook_in_the_pipeline() -> None:
    pipeline = Pipeline([SecretsHook()])
    assert "secrets" in pipeline.names
    files = {p.name: p.read_bytes() for p in (EXAMPLES / "session").glob("*.json")}
    clean = Proposal(customer=CUSTOMER, files=dict(files))
    pipeline.run(clean)
    doc = json.loads(files["conversation.json"])
    doc["conversation_turns"][1]["user_input"]["query"] += f" Use {GITHUB}."
    files["conversation.json"] = canonical.dumps(doc)
    with pytest.raises(InvalidDocumentError) as err:
        pipeline.run(Proposal(customer=CUSTOMER, files=files))
    [v] = err.value.violations
    assert (v.hook, v.pointer) == ("secrets", "/conversation_turns/1/user_input/query")
    assert GITHUB not in str(err.value)


# --- performance -------------------------------------------------------------------------

def _synthetic(turns: int) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((EXAMPLES / "session" / "conversation.json").read_text())
    base = doc["conversation_turns"]

    def vary(x: Any, i: int) -> Any:
        if isinstance(x, str):
            return f"{x} (turn {i}, request req-{i:06d})" if len(x) > 40 else x
        if isinstance(x, list):
            return [vary(v, i) for v in x]
        if isinstance(x, dict):
            return {k: vary(v, i) for k, v in x.items()}
        return x

    doc["conversation_turns"] = [dict(vary(base[i % len(base)], i), turn_id=i + 1)
                                 for i in range(turns)]
    return doc


@pytest.mark.slow
def test_scanning_a_long_conversation_is_fast_enough() -> None:
    doc = _synthetic(1000)
    started = time.perf_counter()
    assert scan(doc, "conversation.json") == []
    assert time.perf_counter() - started < 10
    last = doc["conversation_turns"][-1]
    last["user_input"]["query"] += f" card {CARD}"
    [f] = scan(last, "conversation.json", base="/conversation_turns/999")
    assert f.pointer == "/conversation_turns/999/user_input/query"
