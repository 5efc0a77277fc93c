"""The secrets policy covers every byte gitstore writes (issue 11, items 12, 13, 14).

* Item 12: a credential in a commit or tag message (``turn -m``, ``finalize -m``,
  ``correct -r``, ``follow-up -m``), a session id, an idempotency key or an identity
  (``--agent``, ``author=``) is refused before anything is written, through the API
  and the CLI; a card number in a message is redacted per the default policy. No git
  object ever holds the caught value.
* Item 13: text is normalised before it is scanned (NFKC, ``%XX`` decoding, every
  Unicode digit) and adjacent fields are scanned joined; connection strings with a
  password are credentials; card numbers grouped by dots, underscores, no-break or
  thin spaces, or written in other digits, are redacted.
* Item 14: in a store with hashed names every api_key is hashed (one shaped like a
  hash too), the "document contains the key" check compares decoded values (quotes,
  backslashes, tabs), and a hash that ``customers`` lists is never taken as a key.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    EXAMPLES,
    Clock,
    load_example,
    record_example_session,
    repo_state,
    run_cli,
)

from gitstore import InvalidDocumentError, NotFoundError, Store, UsageError
from gitstore.core.names import CONV
from gitstore.errors import InvalidNameError
from gitstore.rules.policy import Policy
from gitstore.rules.secrets import apply, scan

AWS = "AKIA" + "IOSFODNN7" + "EXAMPLE"
GITHUB = "ghp_" + "a1B2c3D4e5F6g7H8i9J0" + "k1L2m3N4o5P6q7R8"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"
CARD = "4111 1111 " + "1111 1111"
CAUGHT = (AWS, GITHUB, AWS_SECRET, "41111111", "4111 1111 1111 1111", "s3cretPw")
OPEN = "acme-open"


def turn(n: int = 3) -> dict[str, Any]:
    t = load_example("session", "turns", f"turn-{n:02d}.json")
    t.pop("turn_id")
    return t


def objects_of(root: Path) -> bytes:
    """Every object of every repository under ``root``, decompressed."""
    out = b""
    for repo in sorted(p for p in root.iterdir() if (p / "objects").is_dir()):
        out += subprocess.run(["git", "-C", str(repo), "cat-file", "--batch-all-objects",
                               "--batch"], capture_output=True, check=True).stdout
    return out


def state(root: Path) -> tuple[tuple[str, str], ...]:
    return tuple(repo_state(p) for p in sorted(root.iterdir()) if p.name != ".gitstore")


@pytest.fixture
def opened(tmp_path: Path) -> Path:
    """Customer OPEN with v1.0.0 open (two turns) and customer-xyz789 finalized."""
    store = Store.init(tmp_path / "s", clock=Clock())
    session = store.customer(OPEN).new_session(session_id=f"orchestrator-session-{OPEN}",
                                               created="2025-01-15T10:30:00Z")
    session.append_turn(turn(1))
    session.append_turn(turn(2))
    record_example_session(store)
    return store.root


# =========================================================================== item 12

def _api_writes(root: Path, secret: str) -> list[tuple[str, Any]]:
    store = Store(root)
    open_s = store.customer(OPEN).session()
    done = store.customer("customer-xyz789").session()
    correction = {"session_analytics.json": EXAMPLES / "correction" / "session_analytics.json"}
    return [
        ("message", lambda: open_s.append_turn(turn(), message=f"note {secret}")),
        ("message", lambda: open_s.put("deployment_context.json", load_example(
            "session", "deployment_context.json"), message=f"ctx {secret}")),
        ("reason", lambda: open_s.finalize(message=f"agreed, key {secret}")),
        ("reason", lambda: done.correct(correction, reason=f"fix {secret}")),
        ("reason", lambda: done.follow_up(message=f"more {secret}")),
        ("session id", lambda: store.customer("fresh").new_session(
            session_id=f"orchestrator-session-{secret}")),
        ("idempotency key", lambda: open_s.append_turn(turn(), idempotency_key=secret)),
        ("author name", lambda: open_s.append_turn(turn(), author=f"bot{secret} <b@x.io>")),
        ("author email", lambda: open_s.append_turn(turn(), author=f"bot <{secret}@x.io>")),
        ("author name", lambda: Store(root, agent=f"agent {secret}").customer(OPEN)
         .session().append_turn(turn())),
    ]


@pytest.mark.parametrize("secret", [AWS, GITHUB])
def test_a_credential_outside_the_documents_is_refused_before_any_write(opened: Path,
                                                                        secret: str) -> None:
    before = state(opened)
    for where, write in _api_writes(opened, secret):
        with pytest.raises(InvalidDocumentError) as info:
            write()
        files = {v.file for v in info.value.violations}
        assert where in files, (where, info.value.violations)
        assert all(v.hook == "secrets" for v in info.value.violations)
        assert secret not in str(info.value), str(info.value)
    assert state(opened) == before
    assert not (opened / "fresh").exists()
    assert secret.encode() not in objects_of(opened)


def test_the_cli_refuses_credentials_in_messages_ids_and_identities(opened: Path,
                                                                    tmp_path: Path) -> None:
    before = state(opened)
    t = tmp_path / "turn.json"
    t.write_text(json.dumps(turn()))
    analytics = str(EXAMPLES / "correction" / "session_analytics.json")
    for args in (["turn", OPEN, str(t), "-m", f"see {AWS}"],
                 ["finalize", OPEN, "-m", f"agreed {AWS}"],
                 ["correct", "customer-xyz789", analytics, "-r", f"key {AWS}"],
                 ["follow-up", "customer-xyz789", "-m", f"more {AWS}"],
                 ["new", "fresh", "--session-id", f"orchestrator-{AWS}"],
                 ["--agent", f"bot-{AWS} <b@x.io>", "turn", OPEN, str(t)]):
        r = run_cli(opened, *args)
        assert r.code == 4, (args, r.code, r.err)
        assert r.out == b"" and "Traceback" not in r.err and AWS not in r.err
        assert "credential (aws_access_key)" in r.err
    assert state(opened) == before and not (opened / "fresh").exists()
    assert AWS.encode() not in objects_of(opened)


def test_a_card_number_in_a_message_is_redacted_and_counted(opened: Path) -> None:
    store = Store(opened)
    session = store.customer(OPEN).session()
    session.append_turn(turn(), message=f"customer read out {CARD} by mistake")
    raw = subprocess.run(["git", "-C", str(opened / OPEN), "log", "-1", "--format=%B"],
                         capture_output=True, check=True, text=True).stdout
    assert "customer read out [REDACTED:card_number] by mistake" in raw
    assert re.search(r"^Redacted: card_number\u00d71 \(message\)$", raw, re.M), raw
    assert CARD.encode() not in objects_of(opened)


def test_a_clean_message_and_identity_still_write(opened: Path) -> None:
    store = Store(opened, agent="advisor <advisor@agents.example.com>")
    session = store.customer(OPEN).session()
    written = session.append_turn(turn(), message="follow-up on alarms (uuid "
                                  "4f1c2d9e-8b7a-4e21-9c3d-5a6b7c8d9e0f)",
                                  idempotency_key="req-7f3a-2025-01-15")
    assert not written.replayed
    raw = subprocess.run(["git", "-C", str(opened / OPEN), "log", "-1", "--format=%an <%ae>%n%B"],
                         capture_output=True, check=True, text=True).stdout
    assert raw.startswith("advisor <advisor@agents.example.com>\nfollow-up on alarms")
    assert "Redacted" not in raw


# =========================================================================== item 13

QUERY = "/conversation_turns/0/user_input/query"


def kinds(text: Any) -> list[str]:
    return [f.kind for f in scan(text, "x")]


@pytest.mark.parametrize(("text", "kind"), [
    ("aws_secret_access_key%3D" + AWS_SECRET.replace("/", "%2F"), "high_entropy_string"),
    ("token%3D" + GITHUB, "github_token"),
    ("\uff21\uff2b\uff29\uff21" + "IOSFODNN7EXAMPLE", "aws_access_key"),  # full-width AKIA
    ("postgres://app:s3cretPw@db.internal:5432/orders", "password_in_url"),
    ("mysql://root:s3cretPw@10.0.0.5/shop", "password_in_url"),
    ("mongodb+srv://svc:s3cretPw@cluster0.abcd.mongodb.net/app", "password_in_url"),
    ("redis://:s3cretPw@cache.internal:6379/0", "connection_string"),
    ("amqp://guest:s3cretPw@rabbit.internal:5672/", "password_in_url"),
    ("https://deploy:s3cretPw@git.example.com/org/repo.git", "password_in_url"),
])
def test_normalised_and_connection_string_credentials_are_found(text: str, kind: str) -> None:
    found = scan(f"config: {text} ok", "x")
    assert [f.kind for f in found] == [kind], found
    assert found[0].category == "credential"


@pytest.mark.parametrize("text", [
    "redis://:${REDIS_PASSWORD}@cache:6379", "postgres://app:***@db/orders",
    "postgres://app:<password>@db/orders", "https://bob@host.example.com/x",
    "version 1.2.3.4 on 10.0.0.1, released 2025.01.15, pi 3.14159265358979",
    "Größe 4 \u00d7 10 Einheiten, café au lait, naïve résumé", "50% off, 100%20 and %zz",
    "\uff11\uff12\uff13 full-width digits and \u0663 arabic-indic three",
])
def test_normalising_adds_no_false_positives(text: str) -> None:
    assert scan(text, "x") == []
    assert scan({"a": text, "b": text}, "x") == []


SEPARATED_CARDS = [
    "4111.1111.1111.1111", "4111_1111_1111_1111", "4111\u00a01111\u00a01111\u00a01111",
    "4111\u20091111\u20091111\u20091111", "4111\u202f1111\u202f1111\u202f1111",
    "3782.822463.10005", "\uff14\uff11\uff11\uff11 \uff11\uff11\uff11\uff11 1111 1111",
    "\u0664\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661"
    "\u0661\u0661",
    "\u096a\u0967\u0967\u0967-\u0967\u0967\u0967\u0967-\u0967\u0967\u0967\u0967-"
    "\u0967\u0967\u0967\u0967",
]


@pytest.mark.parametrize("card", SEPARATED_CARDS, ids=range(len(SEPARATED_CARDS)))
def test_card_numbers_with_other_separators_and_digits_are_redacted(card: str) -> None:
    text = f"pay with {card} today"
    [f] = scan(text, "x")
    assert (f.kind, text[f.start:f.end]) == ("card_number", card)
    new, _, blocked = apply({"q": text}, "x")
    assert new == {"q": "pay with [REDACTED:card_number] today"} and blocked == []


def test_a_credential_split_across_two_fields_is_caught_in_both() -> None:
    pem = ("-----BEGIN RSA PRIV", "ATE KEY-----\nMIIEowIBAAKCAQEAx7kM3nq9Zb2Xc4Vf8LpQ\n"
           "-----END RSA PRIVATE KEY-----")
    doc = {"user_input": {"part1": "my key: " + pem[0], "part2": pem[1]}}
    found = scan(doc, "conversation.json")
    assert {(f.pointer, f.kind) for f in found} >= {("/user_input/part1", "private_key"),
                                                    ("/user_input/part2", "private_key")}
    new, _, _ = apply(doc, "conversation.json", Policy(credential="redact"))
    assert "PRIV" not in json.dumps(new) and "MIIE" not in json.dumps(new)
    assert new["user_input"]["part1"] == "my key: [REDACTED:private_key]"
    split = {"a": "AKIAIOSF", "b": "ODNN7EXAMPLE"}
    assert {f.pointer for f in scan(split, "x")} == {"/a", "/b"}
    named = {"env": "DB_PASSWORD=", "value": "Tr0ub4dorXyz9"}
    assert [(f.pointer, f.kind) for f in scan(named, "x")] == [("/value",
                                                               "generic_secret_keyword")]


def test_the_store_refuses_a_split_key_and_redacts_a_spaced_card(opened: Path) -> None:
    before = state(opened)
    session = Store(opened).customer(OPEN).session()
    t = turn()
    # adjacent as stored (keys sorted): command, parameters (no text), query
    t["user_input"]["command"] = "here is the deploy key -----BEGIN OPENSSH PRIV"
    t["user_input"]["query"] = "ATE KEY-----"
    with pytest.raises(InvalidDocumentError) as info:
        session.append_turn(t)
    assert {v.pointer for v in info.value.violations} == {
        "/conversation_turns/-/user_input/query", "/conversation_turns/-/user_input/command"}
    assert state(opened) == before
    t = turn()
    t["user_input"]["query"] = "card 4111\u00a01111\u00a01111\u00a01111 and 4111.1111.1111.1111"
    session.append_turn(t)
    conv = Store(opened).customer(OPEN).read().document(CONV)
    assert conv["conversation_turns"][-1]["user_input"]["query"] == \
        "card [REDACTED:card_number] and [REDACTED:card_number]"
    objects = objects_of(opened)
    assert "4111\u00a01111".encode() not in objects and b"4111.1111" not in objects


# =========================================================================== item 14

QUOTED = 'sk_live"Acme\\corp\tkey-7f3K'          # a key with a quote, a backslash and a TAB
HASHY = "k" + "0123456789abcdef" * 2 + "01234567"  # a key shaped like a repository hash


@pytest.fixture
def hashed(tmp_path: Path) -> Store:
    store = Store.init(tmp_path / "s", clock=Clock())
    store.enable_hashed_names()
    return store


def _leaks(root: Path, key: str) -> list[str]:
    """Where ``key`` (raw or JSON-escaped) appears: paths, files, git objects."""
    forms = {key.encode(), json.dumps(key)[1:-1].encode()}
    found = [str(p) for p in root.rglob("*") if key in str(p)]
    for p in root.rglob("*"):
        if p.is_file() and any(f in p.read_bytes() for f in forms):
            found.append(str(p))
    objects = objects_of(root)
    found += ["object"] if any(f in objects for f in forms) else []
    return found


def test_a_key_with_quotes_backslashes_or_tabs_is_caught_in_documents(hashed: Store) -> None:
    customer = hashed.customer(QUOTED)
    session = customer.new_session(created="2025-01-15T10:30:00Z")
    root = hashed.root
    before = state(root)
    for where in ("query", "command"):
        t = turn()
        t["user_input"][where] = f"my api key is {QUOTED}, ok?"
        with pytest.raises(InvalidDocumentError) as info:
            session.append_turn(t)
        assert "api_key" in str(info.value) and QUOTED not in str(info.value)
    t = turn()
    t["user_input"]["parameters"] = {QUOTED: 1}
    with pytest.raises(InvalidDocumentError):
        session.append_turn(t)
    with pytest.raises(InvalidDocumentError):
        session.append_turn(turn(), message=f"for {QUOTED}")
    assert state(root) == before
    session.append_turn(turn())
    assert run_cli(root, "reindex").code == 0 and run_cli(root, "list").code == 0
    assert _leaks(root, QUOTED) == []


def test_a_key_shaped_like_a_hash_is_hashed_too(hashed: Store) -> None:
    customer = hashed.customer(HASHY)
    assert customer.name != HASHY and re.fullmatch(r"k[0-9a-f]{40}", customer.name)
    session = customer.new_session(created="2025-01-15T10:30:00Z")
    session.append_turn(turn())
    root = hashed.root
    assert run_cli(root, "reindex").code == 0 and run_cli(root, "list").code == 0
    assert hashed.customers() == [customer.name]
    assert _leaks(root, HASHY) == []
    assert Store(root).customer(HASHY).name == customer.name  # the same key, the same repo


def test_a_listed_hash_is_never_taken_as_an_api_key(hashed: Store) -> None:
    key = "sk_live-Acme.7f3Kq9ZxW2pL"
    record_example_session(hashed, key)
    root = hashed.root
    [name] = hashed.customers()
    before = state(root)
    as_key = Store(root).customer(name)
    assert as_key.name != name and not as_key.exists
    with pytest.raises(NotFoundError):
        as_key.versions()
    with pytest.raises(NotFoundError):
        as_key.read("v1.0.0")
    r = run_cli(root, "show", name, "v1.0.0", "session_metadata.json")
    assert r.code == 3 and r.out == b""
    r = run_cli(root, "versions", name)
    assert r.code == 3
    assert state(root) == before
    # reaching the repository by its listed name is a separate, explicit accessor
    by_name = Store(root).customer_named(name)
    assert by_name.exists and [str(v.version) for v in by_name.versions()] == ["v1.0.0"]
    r = run_cli(root, "--by-name", "versions", name)
    assert r.code == 0 and b"v1.0.0" in r.out
    with pytest.raises(InvalidNameError):
        Store(root).customer_named(key)       # a key is not a repository name
    with pytest.raises(UsageError):
        Store(root).customer_named(name.upper())


def test_a_plain_store_keeps_one_namespace(tmp_path: Path) -> None:
    store = Store.init(tmp_path / "plain", clock=Clock())
    record_example_session(store)
    assert store.customer("customer-xyz789").path == store.customer_named("customer-xyz789").path
    assert store.customer(HASHY).name == HASHY  # a valid name, used as it is
