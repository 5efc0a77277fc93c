"""Laws of sync's pure parts, with Hypothesis: remote templates and travelled logs.

* ``check_remote`` takes or refuses any text with a UsageError, and what it takes
  names each customer, starts with no ``-`` and holds no password;
* a shard is stable and in range;
* a travelled log split into batches anywhere verifies; any change to one byte
  of a record, or a record lost before the last, is a problem (the last one
  cannot be lost on a hub: it refuses to change a batch once it travelled);
  hostile batch files are problems, never exceptions.
"""

from __future__ import annotations

import itertools
import json
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st

from gitstore.errors import UsageError
from gitstore.store import config as config_mod
from gitstore.store.audit import AuditLog
from gitstore.store.travel import batch_name, check_travelled


@given(st.text(max_size=80))
def test_check_remote_takes_or_refuses_any_text(text: str) -> None:
    try:
        taken = config_mod.check_remote(text)
    except UsageError:
        return
    assert taken == text and "{customer}" in text and not text.startswith("-")
    sample = text.replace("{customer}", "c").replace("{shard}", "0")
    if "://" in sample:
        assert urlsplit(sample).password is None


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=40),
       st.integers(min_value=1, max_value=64))
def test_a_customers_shard_is_stable_and_in_range(name: str, shards: int) -> None:
    cfg = config_mod.Config(remote="git://hub-{shard}.example/{customer}", remote_shards=shards)
    url = config_mod.remote_url(cfg, name)
    assert url is not None and url == config_mod.remote_url(cfg, name)
    assert url.endswith(f"/{name}")
    assert 0 <= int(url.split("://hub-")[1].split(".")[0]) < shards


def _log(tmp: Path, n: int) -> tuple[list[bytes], str]:
    log = AuditLog(tmp)
    for i in range(n):
        log.append(actor="a <a@example.invalid>", op="read", customer="acme", rev=f"v{i}")
    lines = (tmp / "gitstore-audit.jsonl").read_bytes().splitlines(keepends=True)
    log_id = log.log_id()
    assert log_id is not None
    return lines, log_id


def _batches(lines: list[bytes], cuts: list[int]) -> dict[str, bytes]:
    edges = sorted({0, len(lines), *(c % len(lines) for c in cuts)})
    return {batch_name(a + 1, b): b"".join(lines[a:b]) for a, b in itertools.pairwise(edges)}


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=1, max_value=12), st.lists(st.integers(0, 100), max_size=5),
       st.data())
def test_a_travelled_log_verifies_and_any_change_shows(n: int, cuts: list[int],
                                                        data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lines, log_id = _log(Path(tmp), n)
    files = _batches(lines, cuts)
    problems, last, digest = check_travelled(files, log_id, "acme")
    assert problems == [] and last == n and digest == json.loads(lines[-1])["hash"]
    assert check_travelled(files, log_id, "other-customer")[0]       # not this customer's
    name = data.draw(st.sampled_from(sorted(files)))
    body = files[name]
    at = data.draw(st.integers(0, len(body) - 2))                    # a byte, not the \n
    flipped = body[:at] + bytes([body[at] ^ 0x01]) + body[at + 1:]
    assert check_travelled({**files, name: flipped}, log_id)[0]
    if n > 1:  # a record lost before the last (the end: the hub keeps every old batch)
        drop = data.draw(st.integers(0, n - 2))
        assert check_travelled(_batches(lines[:drop] + lines[drop + 1:], cuts), log_id)[0]


@given(st.dictionaries(st.text(max_size=30), st.binary(max_size=200), max_size=4),
       st.text(max_size=20))
def test_hostile_batches_are_problems_never_exceptions(files: dict[str, bytes],
                                                       log_id: str) -> None:
    problems, _, _ = check_travelled(files, log_id)
    assert problems
