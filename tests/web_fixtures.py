"""Stores for the web viewer's tests (tests/test_web.py, tests/test_web_browser.py).

* :func:`viewer_store`: the four-version history of ``customer-xyz789`` (two scenarios,
  three agents; :func:`conftest.build_history`) plus a second customer,
  ``customer-other``, finalized once, and the tokens ``admin`` (every customer) and
  ``other`` (scoped to ``customer-other``).
* :func:`hostile_store`: a customer whose documents and statement of work are written
  to attack the viewer: ``<script>``, event handlers, ``javascript:`` and ``data:``
  links in Markdown and in raw HTML, HTML comments, a hostile JSON key and a hostile
  provider name (drawn in the statistics charts). Its SOW template is the store's own
  (``gitstore init --templates``), so the hostile Markdown reaches ``sow_document.md``
  exactly as written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import (
    EXAMPLES,
    Clock,
    build_history,
    example_turn,
    load_example,
    record_example_session,
)

from gitstore import Store
from gitstore.web.tokens import TokenFile

CUSTOMER = "customer-xyz789"
OTHER = "customer-other"
HOSTILE = "customer-hostile"

#: Text that would run script, load a remote image or hide content if it were not escaped.
ATTACK = ('<script>window.pwned = "script"</script> <img src=x onerror="window.pwned=\'img\'"> '
          '<!-- a hidden comment --> [click me](javascript:window.pwned=1) '
          '<a href="javascript:window.pwned=2">raw link</a> <style>body{display:none}</style> '
          '{{ 7 * 7 }} </textarea></title><svg onload="window.pwned=3">')
HOSTILE_KEY = '<script>window.pwned="key"</script>'
HOSTILE_PROVIDER = '<b onmouseover="window.pwned=4">evil-cloud</b>'
HOSTILE_SOW = """# Statement of work <script>window.pwned = "sow"</script>

<script>window.pwned = "block"</script>

<img src="x" onerror="window.pwned='sow-img'">

<!-- <p>hidden by a comment</p> -->

[a javascript link](javascript:window.pwned='md-link')

[a data link](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)

![an image](javascript:window.pwned='md-img')

[spaced](  JaVaScRiPt:window.pwned='spaced'  )

<a href="javascript:window.pwned='raw-a'">raw anchor</a>

<iframe src="https://example.invalid/"></iframe>

| a | b |
|---|---|
| <script>x</script> | [cell](javascript:alert(1)) |

Recommendation: {{ conversation.conversation_summary.final_recommendation }}
"""


@dataclass
class ViewerStore:
    root: Path
    admin: str
    other: str


def viewer_store(root: Path) -> ViewerStore:
    store = build_history(root)
    record_example_session(Store(root, clock=Clock()), OTHER)
    tokens = TokenFile(store.root)
    admin, _ = tokens.create("admin")
    other, _ = tokens.create("other", [OTHER])
    return ViewerStore(store.root, admin, other)


def _hostile_turn(n: int) -> dict[str, Any]:
    turn = example_turn(n)
    turn["user_input"]["query"] = ATTACK
    turn["agent_response"]["orchestrator_response"] = ATTACK + "\n\n**not bold** # not a heading"
    turn[HOSTILE_KEY] = ATTACK
    return dict(turn)


def hostile_store(root: Path) -> tuple[Path, str]:
    """A store holding :data:`HOSTILE` (v1.0.0 and v1.1.0) and its admin token."""
    add_hostile(root)
    token, _ = TokenFile(root).create("admin")
    return root, token


def add_hostile(root: Path) -> None:
    """Record :data:`HOSTILE` (v1.0.0 and v1.1.0) in the store at ``root`` (made if
    needed), with the hostile SOW template for these writes only."""
    templates = root.parent / f"{root.name}-templates"
    templates.mkdir(parents=True)
    (templates / "sow_document.md.j2").write_text(HOSTILE_SOW, encoding="utf-8")
    store = Store.init(root, clock=Clock(), templates=templates)
    session = store.customer(HOSTILE).new_session(session_id="hostile-session",
                                                  created="2025-01-15T10:30:00Z")
    for n in range(1, 6):
        session.append_turn(_hostile_turn(n))
    summary = load_example("session", "conversation.json")["conversation_summary"]
    summary.update(final_recommendation=ATTACK, primary_cloud_provider=HOSTILE_PROVIDER)
    session.set_summary(summary)
    context = load_example("session", "deployment_context.json")
    context[HOSTILE_KEY] = {HOSTILE_KEY: ATTACK, "list": [ATTACK, HOSTILE_KEY]}
    session.put("deployment_context.json", context)
    meta = load_example("session", "session_metadata.json")
    meta["session_info"]["api_key"] = HOSTILE
    meta["session_info"]["session_id"] = "hostile-session"
    session.put("session_metadata.json", meta)
    session.put("session_analytics.json", load_example("session", "session_analytics.json"))
    session.finalize(message=ATTACK)
    session.follow_up(message=ATTACK)
    session.append_turn(_hostile_turn(6))
    meta2 = load_example("follow_up", "session_metadata.json")
    meta2["session_info"]["api_key"] = HOSTILE
    meta2["session_info"]["session_id"] = "hostile-session"
    session.put("session_metadata.json", meta2)
    session.finalize(message=ATTACK)


__all__ = ["ATTACK", "CUSTOMER", "EXAMPLES", "HOSTILE", "HOSTILE_KEY", "HOSTILE_PROVIDER",
           "OTHER", "ViewerStore", "add_hostile", "hostile_store", "viewer_store"]
