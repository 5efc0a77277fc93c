"""Search over encrypted sessions, which the index cannot answer.

The index holds only what an encrypted session keeps in clear (ids, versions,
timestamps, counts), so that no plaintext of it lands on disk outside git.
:func:`search` therefore scans the conversations of the encrypted sessions whose
keys are at hand, in memory, at query time.

Invariants: nothing decrypted here is written anywhere; a session whose key is
unavailable or shredded is skipped (and counted), never reported as a match; an
answer with hits is one ``search`` record of the store's answer log naming the
customers shown and a count, never the text.
"""

from __future__ import annotations

import json
import re
from typing import Any

from gitstore.core import canonical
from gitstore.core.names import CONV
from gitstore.core.versions import Scenario
from gitstore.errors import GitStoreError
from gitstore.store.context import StoreContext
from gitstore.store.tip import read_state

__all__ = ["search"]


def _words(text: str) -> list[tuple[str, bool]]:
    return [(w.lower(), bool(star)) for w, star in re.findall(r"(\w+)(\*?)", text or "")[:32]]


def _matches(words: list[tuple[str, bool]], hay: str) -> bool:
    tokens = re.findall(r"\w+", hay.lower())
    found = set(tokens)
    return all(w in found if not star else any(t.startswith(w) for t in tokens)
               for w, star in words)


def search(store: StoreContext, text: str, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Turns of encrypted sessions matching every word of ``text`` (``word*``: a
    prefix), in customer, scenario and turn order, at most ``limit``; and how
    many encrypted sessions could not be searched (no key here, or shredded)."""
    words = _words(text)
    if not words or limit <= 0:
        return [], 0
    hits: list[dict[str, Any]] = []
    skipped = 0
    for name, major in store.keys.kids():
        customer = store.customer_named(name)
        if not customer.exists or len(hits) >= limit:
            continue
        try:
            state = read_state(customer.repo, Scenario(major))
            turns = canonical.loads_stored(state.files.get(CONV, b"{}")).get(
                "conversation_turns", [])
        except GitStoreError:
            skipped += 1
            continue
        found = []
        for turn in turns if isinstance(turns, list) else []:
            if not isinstance(turn, dict):
                continue
            hay = json.dumps([turn.get("user_input"), turn.get("agent_response")],
                             ensure_ascii=False)
            if _matches(words, hay):
                found.append({"customer": name, "scenario": str(Scenario(major)),
                              "turn_id": turn.get("turn_id"), "timestamp": turn.get("timestamp"),
                              "version": str(state.version), "snippet": None, "score": None,
                              "encrypted": True})
        hits.extend(found[:limit - len(hits)])
    if hits:  # one answer record naming every customer shown, as the index's queries do
        store.record_answer("search", sorted({h["customer"] for h in hits}),
                            f"{len(hits)} matching turn(s) of encrypted sessions, scanned")
    return hits, skipped
