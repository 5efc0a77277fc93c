"""encryption: an encrypted store next to a plaintext one, in the same run.

Two stores side by side, identical but for ``"encrypt": true`` in the second's
``.gitstore/config.json`` (the master key: ``GITSTORE_MASTER_KEY``, 32 random
bytes made for the run), fed the very same turns, taking turns going first:

1. **size**: one 200-turn session (quick too: the issue's target is for 200)
   built turn by turn with ``Session.append_turn`` in each store; the objects
   (``objects/``: loose objects + ``.pack`` files) measured as the writes and
   gitstore's automatic background maintenance leave them
   (``Store.wait_for_maintenance()``), after ``gitstore maintain`` (incremental,
   :func:`gitstore.ops.maintenance.maintain`) and after ``gitstore maintain
   --full`` (everything in one delta-compressed pack). Target (the packed
   sizes): encrypted ≤ 3x plaintext; "as left" is informational. For
   reference, ``git repack -a -d -f`` of a copy of each. The build's per-append
   latencies give a median too.
2. **append**: one turn appended at 10, 200 and 1,000 turns of history (quick:
   10, 200), sessions seeded with one ``put`` of the whole conversation;
   durable (fsync, as shipped) and CPU-only (no fsync for either); 3 appends per
   ``--runs`` (a single append is a noisy sample). Target: encrypted ≤ 1.3x
   plaintext.
3. **read**: ``store.customer(c).read()`` + every document parsed, on the
   200-turn session (informational).

Checked: both stores read back the same documents, equal to the turns sent
(with the store's turn ids); the encrypted store's git objects (``git cat-file
--batch-all-objects --batch``: commits, tags, trees and every blob, deltas
resolved) and every other file under its root (audit logs, reflogs, the index)
contain none of the plaintext markers written into a few turns, while the
plaintext store's objects contain every one (so the check can fail); the
encrypted conversation holds ciphertext tokens. ``--profile``: cProfile, fsync
off, 20 appends at the largest history and 20 whole reads in each store; own
time by area side by side, and the sealing functions by cumulative time.
"""

from __future__ import annotations

import base64
import cProfile
import json
import os
import pstats
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from gitstore import Store
from gitstore.core.names import STORE_DIR
from gitstore.core.sealed import PREFIX
from gitstore.ops import maintenance

from .. import common
from ..common import CaseResult, Context, Row, check, timed

NAME = "encryption"
TITLE = "encrypted vs plaintext store: pack size of a 200-turn session, append, read"
CUSTOMER = "customer-encryption"
SESSION_TURNS = 200
SIZE_TARGET = 3.0
APPEND_TARGET = 1.3
PLAIN, SEALED = "plaintext", "encrypted"
BASELINE = "plaintext store"
MARKERS = ("ZEBRA-PASSPORT-4471", "QUOKKA-INVOICE-9083", "Enhanced Collector (answer 7)")
"""Plaintext that must not appear in an encrypted store: two written into a few
turns (query and answer), one that ``common.make_turn`` writes into turn 7."""
MARKED = frozenset({7, 77, 150})
PROFILE_APPENDS = 20
SAMPLES_PER_RUN = 3
"""Timed appends per ``--runs`` in the append measure (each one append, taking turns)."""


def run(ctx: Context) -> CaseResult:
    res = CaseResult(NAME)
    with _master_key():
        stores = _size(ctx, res)
        _read(ctx, res, stores)
        sizes = ctx.pick([10, SESSION_TURNS, 1000], [10, SESSION_TURNS])
        for durable in ([True, False] if ctx.fsync else [False]):
            for n in sizes:
                if durable:
                    _append(ctx, res, n, durable)
                else:
                    with common.fsync_off():
                        _append(ctx, res, n, durable)
        if ctx.profile:
            res.data["profile"] = _profile(ctx, max(sizes))
    res.note("ratios here are encrypted ÷ plaintext (the 'gitstore' column is the encrypted "
             "store, the baseline the plaintext store of the same run)")
    return res


@contextmanager
def _master_key() -> Iterator[None]:
    """A fresh master key in ``GITSTORE_MASTER_KEY`` for the case, then the old value back."""
    old = os.environ.get("GITSTORE_MASTER_KEY")
    os.environ["GITSTORE_MASTER_KEY"] = base64.b64encode(os.urandom(32)).decode("ascii")
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("GITSTORE_MASTER_KEY", None)
        else:
            os.environ["GITSTORE_MASTER_KEY"] = old


def _open(root: Path, system: str, fsync: bool) -> Any:
    """A store at ``root``; the encrypted one with ``"encrypt": true`` in its config."""
    if system == SEALED:
        (root / STORE_DIR).mkdir(parents=True)
        (root / STORE_DIR / "config.json").write_text(json.dumps({"encrypt": True}),
                                                     encoding="utf-8")
    store = common.open_store(root, fsync=fsync)
    check(store.config.encrypt == (system == SEALED), f"{system} store: encrypt is "
          f"{store.config.encrypt}")
    return store


def _turn(i: int) -> dict[str, Any]:
    """``common.make_turn(i)``, with the plaintext markers in the turns of :data:`MARKED`."""
    turn = common.make_turn(i)
    if i in MARKED:
        turn["user_input"]["query"] += f" (passport {MARKERS[0]})"
        turn["agent_response"]["orchestrator_response"] += f" Invoice {MARKERS[1]}."
    return turn


def _expected_turns(indices: list[int], seeded: int = 0) -> list[dict[str, Any]]:
    """The stored turns: ``seeded`` turns of :func:`common.conversation`, then ``_turn(i)``
    for each index, numbered on."""
    turns = common.conversation(seeded)["conversation_turns"] if seeded else []
    turns += [{**_turn(i), "turn_id": seeded + k + 1} for k, i in enumerate(indices)]
    return turns


def _documents(store: Any) -> dict[str, Any]:
    return dict(store.customer(CUSTOMER).read().documents())


def _check_same(stores: dict[str, Any], turns: list[dict[str, Any]], where: str) -> None:
    docs = {system: _documents(store) for system, store in stores.items()}
    check(docs[SEALED] == docs[PLAIN], f"{where}: the encrypted session reads back different "
          f"documents: {sorted(k for k in docs[PLAIN] if docs[SEALED].get(k) != docs[PLAIN][k])}")
    got = docs[PLAIN]["conversation.json"]["conversation_turns"]
    check(got == turns, f"{where}: the session holds {len(got)} turns, not the {len(turns)} "
          "sent, in order")


# --------------------------------------------------------------------------- 1: size


def _size(ctx: Context, res: CaseResult) -> dict[str, Any]:
    n = SESSION_TURNS
    scratch = ctx.tmpdir("encryption-size")
    stores = {s: _open(scratch / s, s, ctx.fsync) for s in (PLAIN, SEALED)}
    sessions = {s: store.customer(CUSTOMER).new_session(
        session_id=common.SESSION_ID, created=common.stamp(common.BASE_TIME))
        for s, store in stores.items()}
    check(stores[SEALED].customer(CUSTOMER).encrypted
          and not stores[PLAIN].customer(CUSTOMER).encrypted, "the customers' encryption is "
          "not what the stores' config says")
    order = list(sessions)
    lat: dict[str, list[float]] = {s: [] for s in order}
    common.log(f"encryption: building a {n}-turn session turn by turn in both stores")
    for i in range(n):
        turn = _turn(i)
        for s in order[i % 2:] + order[:i % 2]:
            seconds, written = timed(partial(sessions[s].append_turn, turn))
            check(written.turn == i + 1, f"{s}: turn {i + 1} was stored as {written.turn}")
            lat[s].append(seconds)
    Store.wait_for_maintenance()
    turns = _expected_turns(list(range(n)))
    _check_same(stores, turns, f"{n}-turn build")
    res.verified(f"{n}-turn build: the encrypted session reads back exactly the plaintext "
                 f"one's documents, every turn sent, in order")
    paths = {s: store.root / CUSTOMER for s, store in stores.items()}
    sizes: dict[str, dict[str, dict[str, int]]] = {"as left": {
        s: _objects(p) for s, p in paths.items()}}
    _check_markers(res, paths, stores[SEALED].root, "as left by the writes")
    for label, full in (("maintain", False), ("maintain --full", True)):
        for store in stores.values():
            maintenance.maintain(store.customer(CUSTOMER), full=full)
        sizes[label] = {s: _objects(p) for s, p in paths.items()}
    _check_markers(res, paths, stores[SEALED].root, "after maintain --full")
    label = "git repack -a -d -f"  # git's own repack of a copy, for reference
    sizes[label] = {}
    for s, p in paths.items():
        copy = scratch / f"{s}-repack"
        shutil.copytree(p, copy)
        common.git(copy, "repack", "-a", "-d", "-f", "-q")
        sizes[label][s] = _objects(copy)
    _check_same(stores, turns, f"{n}-turn build after maintenance")
    res.data["objects_bytes"] = sizes
    what = {"as left": "as left (writes + automatic maintenance)",
            "maintain": "after gitstore maintain",
            "maintain --full": "after gitstore maintain --full",
            label: "after git repack -a -d -f (reference)"}
    for key, by in sizes.items():
        enc, plain = by[SEALED]["stored"], by[PLAIN]["stored"]
        ratio = enc / plain
        ours = key not in (label, "as left")  # the target is for packs: "as left" informs
        res.rows.append(Row(
            NAME, f"{n} turns", f"objects {what[key]}", "KiB", round(enc / 1024, 1),
            BASELINE, round(plain / 1024, 1), ratio, "encrypted bytes ÷ plaintext bytes",
            f"≤ {SIZE_TARGET:.2f}" if ours else "", ratio <= SIZE_TARGET if ours else None,
            f"encrypted {by[SEALED]['packs']} pack(s) + {by[SEALED]['loose']} loose, "
            f"plaintext {by[PLAIN]['packs']} pack(s) + {by[PLAIN]['loose']} loose; "
            f".idx files (not counted) {by[SEALED]['idx'] / 1024:.0f} vs "
            f"{by[PLAIN]['idx'] / 1024:.0f} KiB" + (
                "; packs written since the last background run hold whole objects, so this "
                "varies with where that run fell" if key == "as left" else "")))
    med = {s: common.median(v) for s, v in lat.items()}
    res.data["build_latency"] = {s: common.summary(v) for s, v in lat.items()}
    res.rows.append(common.time_row(
        NAME, f"0→{n} turns", f"per append, median of the {n}-turn build", med[SEALED],
        BASELINE, med[PLAIN], max_ratio=APPEND_TARGET,
        note=f"{'fsync' if ctx.fsync else 'no fsync'}; {n} appends each, taking turns, "
             "automatic maintenance running in the background as shipped"))
    return stores


def _objects(repo: Path) -> dict[str, int]:
    """Bytes of a repository's objects: loose objects and ``.pack`` files (``stored``),
    their counts, and the pack indexes apart."""
    out = {"stored": 0, "loose": 0, "loose_bytes": 0, "packs": 0, "pack_bytes": 0, "idx": 0}
    for path in (repo / "objects").rglob("*"):
        if not path.is_file():
            continue
        size = path.stat().st_size
        if path.parent.name == "pack":
            if path.suffix == ".pack":
                out["packs"] += 1
                out["pack_bytes"] += size
            elif path.suffix == ".idx":
                out["idx"] += size
        elif len(path.parent.name) == 2:
            out["loose"] += 1
            out["loose_bytes"] += size
    out["stored"] = out["loose_bytes"] + out["pack_bytes"]
    return out


def _check_markers(res: CaseResult, paths: dict[str, Path], sealed_root: Path,
                   when: str) -> None:
    """No marker in the encrypted repository's objects nor in any file under its store
    root; every marker in the plaintext repository's objects (the check can fail)."""
    dumps = {s: common.git(p, "cat-file", "--batch-all-objects", "--batch")
             for s, p in paths.items()}
    for marker in MARKERS:
        check(marker.encode() in dumps[PLAIN], f"{when}: the plaintext store's objects lack "
              f"the marker {marker!r}: the check cannot fail")
        check(marker.encode() not in dumps[SEALED], f"{when}: the encrypted store's git "
              f"objects contain the plaintext {marker!r}")
    tokens = dumps[SEALED].count(PREFIX.encode())
    check(tokens >= SESSION_TURNS, f"{when}: the encrypted objects hold only {tokens} "
          "ciphertext tokens")
    leaks = [f"{p.relative_to(sealed_root)} ({m!r})" for p in sorted(sealed_root.rglob("*"))
             if p.is_file() for m in MARKERS if m.encode() in p.read_bytes()]
    check(not leaks, f"{when}: plaintext under the encrypted store's root: {leaks[:5]}")
    res.verified(f"{when}: none of {len(MARKERS)} plaintext markers in the encrypted store's "
                 f"{dumps[SEALED].count(b' blob ')} blobs and other objects ({tokens} tokens), "
                 "nor in any file under its root; all of them in the plaintext store's objects")


# --------------------------------------------------------------------------- 3: read


def _read(ctx: Context, res: CaseResult, stores: dict[str, Any]) -> None:
    n = SESSION_TURNS
    common.log(f"encryption: reading the {n}-turn session whole, 1 warm-up + {ctx.runs} runs")
    samples, got = common.interleaved(ctx.runs, {
        s: partial(_documents, store) for s, store in stores.items()})
    check(got[SEALED] == got[PLAIN], "the encrypted read returned other documents")
    res.verified(f"read of the {n}-turn session: both stores return the same documents")
    med = {s: common.median(v) for s, v in samples.items()}
    res.data["read_samples"] = {s: common.summary(v) for s, v in samples.items()}
    res.rows.append(common.time_row(
        NAME, f"{n} turns", "read the session (read() + parse every document)", med[SEALED],
        BASELINE, med[PLAIN], note="informational; after maintain --full, the customer "
                                   "opened afresh each time"))


# --------------------------------------------------------------------------- 2: append


def _append(ctx: Context, res: CaseResult, n: int, durable: bool) -> None:
    label = "fsync" if durable else "no fsync"
    scratch = ctx.tmpdir(f"encryption-append-{n}")
    stores = {s: _open(scratch / s, s, durable) for s in (PLAIN, SEALED)}
    common.log(f"encryption: append ({label}) at {n} turns, 1 warm-up + {ctx.runs} runs")
    sessions = {s: common.seed_session(store, CUSTOMER, n) for s, store in stores.items()}
    order = list(sessions)
    samples: dict[str, list[float]] = {s: [] for s in order}
    runs = ctx.runs * SAMPLES_PER_RUN
    for r in range(-1, runs):
        index = n + r + 1
        turn = _turn(index)
        for s in order[r % 2:] + order[:r % 2]:
            seconds, written = timed(partial(sessions[s].append_turn, turn))
            check(written.turn == index + 1, f"{s}: turn {index + 1} was stored as "
                  f"{written.turn}")
            if r >= 0:
                samples[s].append(seconds)
    Store.wait_for_maintenance()
    _check_same(stores, _expected_turns(list(range(n, n + runs + 1)), n),
                f"append at {n} ({label})")
    res.verified(f"append at {n} ({label}): both sessions read back the same "
                 f"{n + runs + 1} turns, the ones sent")
    med = {s: common.median(v) for s, v in samples.items()}
    res.data[f"append_samples_{n}_{label.replace(' ', '_')}"] = {
        s: common.summary(v) for s, v in samples.items()}
    res.rows.append(common.time_row(
        NAME, f"{n} turns", f"per append, {label}", med[SEALED], BASELINE, med[PLAIN],
        max_ratio=APPEND_TARGET, note=f"median of {runs} appends each ({SAMPLES_PER_RUN} per "
                                      f"--runs: one append is a noisy sample), history {n} to "
                                      f"{n + runs} turns"))


# --------------------------------------------------------------------------- --profile


AREAS = (  # (substring of "file function", area), first match wins
    ("gitstore/core/sealed.py", "sealing (core/sealed.py)"),
    ("gitstore/store/keys.py", "sealer (store/keys.py)"),
    ("AESGCM", "AES-GCM (cryptography)"),
    ("cryptography", "AES-GCM (cryptography)"),
    ("hmac", "HMAC / SHA-256"),
    ("_hashlib", "HMAC / SHA-256"),
    ("sha256", "HMAC / SHA-256"),
    ("zlib", "zlib"),
    ("base64", "base64"),
    ("binascii", "base64"),
    ("jsonschema", "schema validation"),
    ("referencing", "schema validation"),
    ("json/encoder", "JSON encode"),
    ("encode_basestring", "JSON encode"),
    ("json/decoder", "JSON decode"),
    ("scanner", "JSON decode"),
    ("json", "JSON, other"),
    ("gitstore/core/canonical.py", "JSON, other"),
    ("pygit2", "libgit2"),
    ("gitstore/", "gitstore, other"),
)


def _area(func: tuple[str, int, str]) -> str:
    text = f"{func[0]} {func[2]}"
    return next((area for needle, area in AREAS if needle in text), "other")


def _profile(ctx: Context, n: int) -> dict[str, Any]:
    """cProfile, fsync off (CPU only), :data:`PROFILE_APPENDS` appends at ``n`` turns of
    history in each store, then as many whole reads of the session; per operation: own
    time by area, and the encrypted store's sealing functions by cumulative time."""
    scratch = ctx.tmpdir("encryption-profile")
    out: dict[str, Any] = {"history": n, "operations": PROFILE_APPENDS, "fsync": False}
    with common.fsync_off():
        stores = {s: _open(scratch / s, s, False) for s in (PLAIN, SEALED)}
        sessions = {s: common.seed_session(store, CUSTOMER, n) for s, store in stores.items()}
        for s, session in sessions.items():
            session.append_turn(_turn(n))  # warm caches (schema validator, key, ...)
            _documents(stores[s])

        def appends(s: str) -> None:
            for i in range(PROFILE_APPENDS):
                sessions[s].append_turn(_turn(n + 1 + i))

        def reads(s: str) -> None:
            for _ in range(PROFILE_APPENDS):
                _documents(stores[s])

        for what, fn in (("append", appends), ("read", reads)):
            out[what] = _profile_one(what, n, fn)
        Store.wait_for_maintenance()
    return out


def _profile_one(what: str, n: int, fn: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    areas: dict[str, dict[str, float]] = {}
    for s in (PLAIN, SEALED):
        profiler = cProfile.Profile()
        profiler.enable()
        fn(s)
        profiler.disable()
        raw: dict[Any, Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
        by: dict[str, float] = {}
        for func, (_cc, _nc, tt, _ct, _callers) in raw.items():
            by[_area(func)] = by.get(_area(func), 0.0) + tt / PROFILE_APPENDS
        areas[s] = by
        out[f"total_ms_{s}"] = round(sum(by.values()) * 1e3, 3)
        if s == SEALED:
            mine = sorted(((f, v) for f, v in raw.items()
                           if f[0].endswith(("core/sealed.py", "store/keys.py"))),
                          key=lambda kv: kv[1][3], reverse=True)[:12]
            out["sealing_by_cumulative"] = [
                {"function": f"{Path(f[0]).name}:{f[1]}({f[2]})",
                 "calls": v[1] / PROFILE_APPENDS,
                 "cumulative_ms": round(v[3] / PROFILE_APPENDS * 1e3, 3),
                 "own_ms": round(v[2] / PROFILE_APPENDS * 1e3, 3)} for f, v in mine]
    names = sorted(set(areas[PLAIN]) | set(areas[SEALED]),
                   key=lambda a: areas[PLAIN].get(a, 0.0) - areas[SEALED].get(a, 0.0))
    out["by_area_ms"] = {a: {s: round(areas[s].get(a, 0.0) * 1e3, 3) for s in areas}
                         for a in names}
    common.log(f"encryption: profile (no fsync), {PROFILE_APPENDS} x {what} at {n} turns: per "
               f"{what} {out[f'total_ms_{SEALED}']:.1f} ms encrypted, "
               f"{out[f'total_ms_{PLAIN}']:.1f} ms plaintext (under cProfile); own time by "
               "area: encrypted, plaintext, difference")
    for a in names:
        e, p = areas[SEALED].get(a, 0.0), areas[PLAIN].get(a, 0.0)
        common.log(f"  {a:28} {e * 1e3:8.2f} ms {p * 1e3:8.2f} ms {(e - p) * 1e3:+8.2f} ms")
    common.log(f"encryption: {what}: sealing functions by cumulative time, per {what}:")
    for row in out["sealing_by_cumulative"]:
        common.log(f"  {row['cumulative_ms']:8.2f} ms cum {row['own_ms']:8.2f} ms own "
                   f"{row['calls']:8.1f} calls  {row['function']}")
    return out
