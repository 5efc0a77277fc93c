"""The web viewer's routes, through Starlette's TestClient (no network).

Covers issue 17's "done when" for routes: every page answers 401 without a token; a
token scoped to one customer cannot open another's pages by URL (404, the same answer
as for a customer that does not exist) and sees only its customers in the lists,
totals, charts and search; every page renders what a person needs; hostile documents
come out escaped (no ``<script>``, no event handler, no ``javascript:`` URL, no HTML
comment reaches the page); only GET/HEAD reach pages (405 otherwise); downloads are
attachments with the right content; each page view is recorded in the customer's
access log under the token's label. The browser tests are tests/test_web_browser.py.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import Clock, git, record_example_session, run_cli
from starlette.testclient import TestClient
from web_fixtures import (
    CUSTOMER,
    HOSTILE,
    OTHER,
    ViewerStore,
    hostile_store,
    viewer_store,
)

import gitstore.web
from gitstore import Store
from gitstore.catalog import browse
from gitstore.catalog.db import Database
from gitstore.catalog.rows import COLUMNS
from gitstore.errors import UsageError
from gitstore.store.audit import AuditLog
from gitstore.web import charts
from gitstore.web.app import create_app
from gitstore.web.render import line_rows, markdown
from gitstore.web.security import CSP
from gitstore.web.tokens import TokenFile, digest, find

#: Every page of customer-xyz789 and of the store, and what a person must find on it.
PAGES = {
    "/": ["customer-xyz789", "customer-other", "v2.0.0", "3 session(s)"],
    "/?status=finalized&sort=customer&order=asc&per=25": ["customer-xyz789"],
    "/?provider=aws&service=lambda&since=2000-01-01&until=2999-12-31": ["customer-xyz789"],
    "/?name=xyz": ["customer-xyz789", "2 session(s)"],
    "/search?q=collector": ["matching turn(s)", "customer-xyz789"],
    "/stats": ["Sessions started over time", "<svg", "By cloud provider", "Average completeness"],
    "/health": ["customer-xyz789", "No store file can be reached"],
    f"/c/{CUSTOMER}": ["Scenario v1", "Scenario v2", "v1.1.1", "actual outcome known",
                       "advisor", "planner", "follow-up answered"],
    f"/c/{CUSTOMER}/v/v1.0.0": ["What collector should I use for my AWS API Gateway?",
                                "Deployment context", "collector_type", "Statement of work",
                                "raw/conversation.json"],
    f"/c/{CUSTOMER}/v/v1": ["v1.1.1"],
    f"/c/{CUSTOMER}/v/v1.0.0/raw/conversation.json": ['"conversation_turns"'],
    f"/c/{CUSTOMER}/diff": ["v1.1.1", "v2.0.0", "document(s) differ"],
    f"/c/{CUSTOMER}/diff?a=v1.0.0&b=v1.1.0": ["op-add", "conversation.json", "session_version"],
    f"/c/{CUSTOMER}/diff?a=v1.0.0&b=v1.1.1&doc=sow_document.md": ["line-", "sow_document.md"],
    f"/c/{CUSTOMER}/diff.json?a=v1.0.0&b=v1.1.0": ['"format": "gitstore-diff"'],
    f"/c/{CUSTOMER}/history/session_analytics.json": ["correction", "actual outcome known"],
    f"/c/{CUSTOMER}/history/conversation.json?scenario=v1": ["turn 7", "what changed"],
    f"/c/{CUSTOMER}/access": ["hash chain is intact", "web:admin"],
    f"/c/{CUSTOMER}/health": ["No problem found", "unsigned", "v1.1.1", "intact"],
    f"/c/{CUSTOMER}/export": ['"format": "gitstore-export"'],
    f"/c/{CUSTOMER}/v/v1.1.0/download": ['"selection": "v1.1.0"'],
    f"/c/{CUSTOMER}/escalation/v1": ["# Support escalation"],
}
CUSTOMER_PAGES = [p for p in PAGES if p.startswith(f"/c/{CUSTOMER}")]


@pytest.fixture(scope="module")
def viewer(tmp_path_factory: pytest.TempPathFactory) -> ViewerStore:
    return viewer_store(tmp_path_factory.mktemp("web") / "sessions")


@pytest.fixture(scope="module")
def client(viewer: ViewerStore) -> Iterator[TestClient]:
    with TestClient(create_app(viewer.root, index_max_age=0), follow_redirects=False) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def log_lines(root: Path, customer: str) -> list[dict[str, object]]:
    return list(AuditLog(root / customer).records())


# -- authentication ----------------------------------------------------------------

@pytest.mark.parametrize("path", [*PAGES, "/c/customer-none", "/no-such-page"])
def test_every_page_answers_401_without_a_valid_token(client: TestClient, viewer: ViewerStore,
                                                      path: str) -> None:
    before = len(log_lines(viewer.root, CUSTOMER))
    forged = viewer.admin[:-1] + ("A" if viewer.admin[-1] != "A" else "B")
    for headers in ({}, bearer(forged), bearer("gsw_short"), {"Authorization": "Basic eA=="},
                    {"Cookie": f"gitstore_web={forged}"}):
        r = client.get(path, headers=headers)
        assert r.status_code == 401, (path, headers)
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert "Sign in" in r.text and "What collector" not in r.text
        assert "actual outcome known" not in r.text and "customer-other" not in r.text
    assert len(log_lines(viewer.root, CUSTOMER)) == before  # nothing was read


@pytest.mark.parametrize("path", list(PAGES))
def test_every_page_renders(client: TestClient, viewer: ViewerStore, path: str) -> None:
    r = client.get(path, headers=bearer(viewer.admin))
    assert r.status_code == 200, r.text[:2000]
    for needle in PAGES[path]:
        assert needle in r.text, (path, needle)
    if r.headers["content-type"].startswith("text/html"):
        assert "<script" not in r.text.lower()


def test_head_is_answered_like_get(client: TestClient, viewer: ViewerStore) -> None:
    r = client.head(f"/c/{CUSTOMER}", headers=bearer(viewer.admin))
    assert r.status_code == 200 and r.content == b""


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
@pytest.mark.parametrize("path", ["/", f"/c/{CUSTOMER}", f"/c/{CUSTOMER}/v/v1.0.0",
                                  "/stats", "/static/style.css"])
def test_nothing_but_get_reaches_a_page(client: TestClient, viewer: ViewerStore, method: str,
                                        path: str) -> None:
    r = client.request(method, path, headers=bearer(viewer.admin), content=b"x=1")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, HEAD"
    assert r.headers["content-security-policy"] == CSP


def test_every_answer_carries_the_security_headers(client: TestClient,
                                                   viewer: ViewerStore) -> None:
    answers = [client.get("/"), client.get("/login"), client.get("/static/style.css"),
               client.get("/", headers=bearer(viewer.admin)),
               client.get(f"/c/{CUSTOMER}/v/v1.0.0/raw/sow_document.md",
                          headers=bearer(viewer.admin)),
               client.get("/c/customer-none", headers=bearer(viewer.admin)),
               client.delete("/")]
    for r in answers:
        assert r.headers["content-security-policy"] == CSP
        assert "script-src" not in CSP and "default-src 'none'" in CSP
        assert "frame-ancestors 'none'" in CSP
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "same-origin"
        assert r.headers["cache-control"] == "no-store"


def test_sign_in_sets_a_strict_httponly_cookie(viewer: ViewerStore) -> None:
    with TestClient(create_app(viewer.root, index_max_age=0), follow_redirects=False) as c:
        bad = c.post("/login", data={"token": "gsw_wrong", "next": "/stats"})
        assert bad.status_code == 401 and "not valid" in bad.text
        assert "set-cookie" not in bad.headers
        r = c.post("/login", data={"token": viewer.admin, "next": "/stats"})
        assert r.status_code == 303 and r.headers["location"] == "/stats"
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        assert "Max-Age" not in cookie and "expires" not in cookie.lower()  # session cookie
        assert c.get("/stats").status_code == 200          # the cookie now signs in
        out = c.post("/logout")
        assert out.status_code == 303 and c.get("/stats").status_code == 401


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil",
                                    "javascript:alert(1)", ""])
def test_sign_in_never_redirects_off_the_site(client: TestClient, viewer: ViewerStore,
                                              target: str) -> None:
    r = client.post("/login", data={"token": viewer.admin, "next": target})
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_sign_in_from_another_site_is_refused(client: TestClient, viewer: ViewerStore) -> None:
    for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"},
                    {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}):
        r = client.post("/login", data={"token": viewer.admin}, headers=headers)
        assert r.status_code == 403 and "set-cookie" not in r.headers


# -- scope ---------------------------------------------------------------------------

@pytest.mark.parametrize("path", CUSTOMER_PAGES)
def test_a_scoped_token_cannot_open_another_customers_pages(
        client: TestClient, viewer: ViewerStore, path: str) -> None:
    before = len(log_lines(viewer.root, CUSTOMER))
    r = client.get(path, headers=bearer(viewer.other))
    assert r.status_code == 404
    missing = client.get(path.replace(CUSTOMER, "customer-none"), headers=bearer(viewer.other))
    assert missing.status_code == 404 and missing.text == r.text   # indistinguishable
    assert "What collector" not in r.text and "v1.1.1" not in r.text
    assert len(log_lines(viewer.root, CUSTOMER)) == before        # nothing was read
    own = client.get(path.replace(CUSTOMER, OTHER).replace("v1.1.0", "v1.0.0")
                     .replace("a=v1.0.0&b=v1.1.0", "a=v1.0.0&b=v1")
                     .replace("a=v1.0.0&b=v1.1.1", "a=v1.0.0&b=v1"),
                     headers=bearer(viewer.other))
    assert own.status_code == 200, (path, own.text[:500])


def test_a_scoped_token_sees_only_its_customers_everywhere(client: TestClient,
                                                           viewer: ViewerStore) -> None:
    h = bearer(viewer.other)
    listing = client.get("/?per=200", headers=h).text
    assert OTHER in listing and CUSTOMER not in listing and "1 session(s)" in listing
    named = client.get(f"/?name={CUSTOMER}", headers=h).text
    assert "0 session(s)" in named and f"/c/{CUSTOMER}" not in named
    stats = client.get("/stats", headers=h).text
    assert re.search(r'id="total-customers">1<', stats)
    assert re.search(r'id="total-sessions">1<', stats)
    found = client.get("/search?q=collector", headers=h).text
    assert OTHER in found and CUSTOMER not in found
    health = client.get("/health", headers=h).text
    assert OTHER in health and CUSTOMER not in health
    assert "No store file can be reached" not in health   # store-wide checks: unscoped only
    everyone = client.get("/stats", headers=bearer(viewer.admin)).text
    assert re.search(r'id="total-customers">2<', everyone)


# -- what the access log records ---------------------------------------------------------

def test_every_page_view_is_recorded_with_the_viewers_label(client: TestClient,
                                                            viewer: ViewerStore) -> None:
    before = len(log_lines(viewer.root, CUSTOMER))
    assert client.get(f"/c/{CUSTOMER}/v/v1.0.0?page=1",
                      headers=bearer(viewer.admin)).status_code == 200
    new = log_lines(viewer.root, CUSTOMER)[before:]
    views = [r for r in new if r["op"] == "web:view"]
    assert len(views) == 1 and views[0]["detail"] == f"GET /c/{CUSTOMER}/v/v1.0.0?page=1"
    assert all(str(r["actor"]).startswith("web:admin <") for r in new)
    assert any(r["op"] == "read" and r["rev"] == "v1.0.0" for r in new)
    # a listing records the customers it shows (once, in the store's answer log, which
    # `gitstore audit` shows among each one's records), under the viewer's label too
    before = len(AuditLog(viewer.root / OTHER).history())
    client.get("/", headers=bearer(viewer.other))
    listed = AuditLog(viewer.root / OTHER).history()[before:]
    assert [r["op"] for r in listed] == ["list"] and listed[0]["actor"].startswith("web:other")
    assert AuditLog(viewer.root / CUSTOMER).verify() == []


# -- hostile documents -------------------------------------------------------------------

HOSTILE_PAGES = [f"/c/{HOSTILE}", f"/c/{HOSTILE}/v/v1.0.0", f"/c/{HOSTILE}/v/v1.1.0",
                 f"/c/{HOSTILE}/diff?a=v1.0.0&b=v1.1.0", f"/c/{HOSTILE}/history/conversation.json",
                 f"/c/{HOSTILE}/access", f"/c/{HOSTILE}/health", "/", "/stats",
                 "/search?q=pwned", "/health",
                 f"/c/{HOSTILE}/diff?a=v1.0.0&b=v1.1.0&doc=sow_document.md"]
class Dangers(HTMLParser):
    """What only an unescaped attack could put into a page, as a browser parses it:
    script, style, frames, images, comments, event-handler attributes, and URLs with
    a scheme that runs or embeds content."""

    TAGS = frozenset({"script", "style", "iframe", "img", "object", "embed", "base", "meta",
                      "link", "textarea", "b"})
    URL_ATTRS = frozenset({"href", "src", "action", "formaction", "xlink:href"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self.head = True

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self.head = False
        if self.head and tag in ("meta", "link"):
            return                                 # the page's own head (no data in it)
        if tag in self.TAGS:
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}=>")
            if name in self.URL_ATTRS and re.match(r"\s*(javascript|data|vbscript):",
                                                   value or "", re.I):
                self.found.append(f"<{tag} {name}={value}>")

    def handle_comment(self, data: str) -> None:
        self.found.append(f"<!--{data}-->")


def dangers(html: str) -> list[str]:
    parser = Dangers()
    parser.feed(html)
    parser.close()
    return parser.found


def test_the_danger_finder_finds_danger() -> None:
    page = ('<html><head><meta charset="utf-8"></head><body><p title="&lt;script&gt; onx=">'
            'ok</p><a href=" JavaScript:x">a</a><svg onload="x"></svg><!-- c --><script>'
            '</script><img src="data:x"></body></html>')
    assert dangers(page) == ['<a href= JavaScript:x>', '<svg onload=>', '<!-- c -->',
                             '<script>', '<img>', '<img src=data:x>']


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[TestClient, str]:
    root, token = hostile_store(tmp_path_factory.mktemp("hostile") / "sessions")
    return TestClient(create_app(root, index_max_age=0)), token


@pytest.mark.parametrize("path", HOSTILE_PAGES)
def test_hostile_documents_are_escaped(hostile: tuple[TestClient, str], path: str) -> None:
    client, token = hostile
    r = client.get(path, headers=bearer(token))
    assert r.status_code == 200, r.text[:1000]
    body = r.text
    # the page's own markup has no script, comment, event handler etc.: any is the attack
    assert dangers(body) == [], path
    if path == f"/c/{HOSTILE}/v/v1.0.0":
        # the attack is shown, as text
        assert "&lt;script&gt;window.pwned = &#34;script&#34;&lt;/script&gt;" in body \
            or "&lt;script&gt;window.pwned = &quot;script&quot;&lt;/script&gt;" in body
        assert "&lt;!-- &lt;p&gt;hidden by a comment&lt;/p&gt; --&gt;" in body   # SOW comment
        assert "[a javascript link](javascript:window.pwned=&#39;md-link&#39;)" in body \
            or "[a javascript link](javascript:window.pwned='md-link')" in body
        assert "{{ 7 * 7 }}" in body                      # data is never a template
    if path == "/stats":
        assert "&lt;b onmouseover=" in body and "evil-cloud" in body   # escaped in the SVG too


def test_hostile_raw_files_are_never_html(hostile: tuple[TestClient, str]) -> None:
    client, token = hostile
    for name, media in (("conversation.json", "application/json"),
                        ("sow_document.md", "text/plain; charset=utf-8"),
                        ("SHA256SUMS", "text/plain; charset=utf-8")):
        r = client.get(f"/c/{HOSTILE}/v/v1.0.0/raw/{name}", headers=bearer(token))
        assert r.status_code == 200 and r.headers["content-type"] == media
        assert r.headers["x-content-type-options"] == "nosniff"


def test_markdown_keeps_safe_links_and_drops_the_rest() -> None:
    html = str(markdown("[ok](https://example.com/a?b=1) [mail](mailto:a@example.com) "
                        "[frag](#top) [js](javascript:alert(1)) [rel](/c/x) [proto](//evil) "
                        "[data](data:text/html,x) ![i](https://example.com/i.png)"))
    assert '<a href="https://example.com/a?b=1" rel="noopener noreferrer nofollow">ok</a>' in html
    assert 'href="mailto:a@example.com"' in html and 'href="#top"' in html
    for bad in ("javascript:", "/c/x", "//evil", "data:"):
        assert f'href="{bad}' not in html
    assert "[js](javascript:alert(1))" in html
    assert "<p>&lt;b&gt;x&lt;/b&gt;</p>" in str(markdown("<b>x</b>"))
    cell = str(markdown("| a |\n|---|\n| x<br>y<br/>z <br onclick=\"p()\"> `<br>` |\n"))
    assert ("<td>x<br />\ny<br />\nz &lt;br onclick=&quot;p()&quot;&gt; "
            "<code>&lt;br&gt;</code></td>") in cell


# -- downloads ------------------------------------------------------------------------

def test_downloads_are_attachments_with_the_right_content(client: TestClient,
                                                          viewer: ViewerStore) -> None:
    h = bearer(viewer.admin)
    one = client.get(f"/c/{CUSTOMER}/v/v1.1.0/download", headers=h)
    assert one.headers["content-disposition"] == \
        f'attachment; filename="{CUSTOMER}-v1.1.0.json"'
    bundle = one.json()
    assert bundle["format"] == "gitstore-export" and bundle["selection"] == "v1.1.0"
    [entry] = bundle["customers"]
    assert [v["version"] for s in entry["scenarios"] for v in s["versions"]] == ["v1.1.0"]
    everything = client.get(f"/c/{CUSTOMER}/export", headers=h)
    assert everything.headers["content-disposition"].startswith(
        f'attachment; filename="{CUSTOMER}-export-')
    versions = [v["version"] for s in everything.json()["customers"][0]["scenarios"]
                for v in s["versions"]]
    assert versions == ["v1.0.0", "v1.1.0", "v1.1.1", "v2.0.0"]
    brief = client.get(f"/c/{CUSTOMER}/escalation/v1", headers=h)
    assert brief.headers["content-type"].startswith("text/markdown")
    assert brief.headers["content-disposition"].endswith('-v1-escalation.md"')
    assert "## Conversation" in brief.text
    raw = client.get(f"/c/{CUSTOMER}/v/v1.0.0/raw/conversation.json", headers=h)
    assert raw.content == git(viewer.root / CUSTOMER, "show",
                              "v1.0.0:conversation.json").encode()
    assert client.get(f"/c/{CUSTOMER}/v/v1/download", headers=h).status_code == 400
    assert client.get(f"/c/{CUSTOMER}/escalation/v9", headers=h).status_code == 404


@pytest.mark.parametrize("path", [f"/c/{CUSTOMER}/v/HEAD@{{1}}", f"/c/{CUSTOMER}/v/v1~1",
                                  f"/c/{CUSTOMER}/v/v1.0.0/raw/..%2Fconfig",
                                  f"/c/{CUSTOMER}/v/v1.0.0/raw/config",
                                  f"/c/{CUSTOMER}/history/HEAD", f"/c/{CUSTOMER}/diff?a=v1&b=--all",
                                  "/c/..%2F..%2Fetc", "/?page=0", "/?sort=password",
                                  "/?since=yesterday", f"/c/{CUSTOMER}/v/v1.0.0?page=99"])
def test_odd_requests_are_refused_plainly(client: TestClient, viewer: ViewerStore,
                                          path: str) -> None:
    r = client.get(path, headers=bearer(viewer.admin))
    assert r.status_code in (400, 404), (path, r.status_code)
    assert "Traceback" not in r.text and str(viewer.root) not in r.text


# -- paging and speed -------------------------------------------------------------------

def test_the_customer_list_pages(client: TestClient, viewer: ViewerStore) -> None:
    h = bearer(viewer.admin)
    first = client.get("/?per=2&sort=customer&order=asc", headers=h).text
    second = client.get("/?per=2&sort=customer&order=asc&page=2", headers=h).text
    assert "page 1 of 2" in first and "page 2 of 2" in second
    assert "showing 1\u20132" in first and "showing 3\u20133" in second
    rows = [re.findall(r'<td><a href="/c/[^"]+/v/(v[0-9.]+)">', t) for t in (first, second)]
    assert rows == [["v1.0.0", "v1.1.1"], ["v2.0.0"]]      # other, then xyz789's v1 and v2
    assert 'rel="next"' in first and 'rel="next"' not in second


def test_catalog_pages_use_limit_and_offset_and_stay_fast(tmp_path: Path) -> None:
    """10,000 sessions: a page, its total and the facets in well under a second."""
    db = Database(tmp_path / "index.sqlite")
    rows = []
    for i in range(10_000):
        row = dict.fromkeys(COLUMNS)
        row.update(customer=f"customer-{i:05d}", scenario="v1", version="v1.0.0", major=1,
                   minor=0, patch=0, latest=1, status="finalized" if i % 3 else "open",
                   completion_status="completed", created=f"2025-{i % 12 + 1:02d}-01T00:00:00Z",
                   updated=f"2025-{i % 12 + 1:02d}-02T{i % 24:02d}:00:00Z",
                   provider=("aws", "gcp", "azure")[i % 3], services='["lambda"]',
                   completeness=i % 101, satisfaction=(i % 11) / 10, turns=i % 40,
                   commit_id="0" * 40)
        rows.append(tuple(row[c] for c in COLUMNS))
    with db.write() as cx:
        cx.executemany(f"INSERT INTO versions VALUES ({', '.join('?' for _ in COLUMNS)})", rows)
    f = browse.Filters(status="open", provider="aws")
    start = time.perf_counter()
    page = browse.page(db.cx, f, "completeness", True, 50, 1000)
    total = browse.count(db.cx, f)
    browse.facets(db.cx, None)
    browse.distributions(db.cx, None)
    assert time.perf_counter() - start < 1.0
    assert total == 3334 and len(page) == 50
    everything = browse.page(db.cx, f, "completeness", True, 10_000, 0)
    assert page == everything[1000:1050]                     # OFFSET pages the same order
    assert browse.page(db.cx, browse.Filters(scope=()), limit=10) == []   # empty scope
    scoped = browse.Filters(scope=("customer-00001", "customer-00002"))
    assert {r["customer"] for r in browse.page(db.cx, scoped)} == {"customer-00001",
                                                                   "customer-00002"}
    assert browse.count(db.cx, browse.Filters(name="%")) == 0   # LIKE wildcards are literal
    dist = browse.distributions(db.cx, None)
    assert sum(dist["completeness"]) == 10_000 and sum(dist["satisfaction"]) == 10_000


def test_a_long_conversation_is_paged(tmp_path: Path) -> None:
    store = Store.init(tmp_path / "sessions")
    session = store.customer("customer-long").new_session(created="2025-01-15T10:00:00Z")
    for n in range(205):
        session.append_turn({"timestamp": f"2025-01-15T{10 + n // 60:02d}:{n % 60:02d}:00Z",
                             "user_input": {"query": f"question number {n + 1}"},
                             "agent_response": {"orchestrator_response": f"answer {n + 1}"}})
    token, _ = TokenFile(store.root).create("admin")
    with TestClient(create_app(store.root, index_max_age=0)) as client:
        pages = [client.get(f"/c/customer-long/v/v1?page={n}", headers=bearer(token))
                 for n in (1, 2, 3)]
        assert all(p.status_code == 200 for p in pages)
        counts = [len(re.findall(r'<li class="turn"', p.text)) for p in pages]
        assert counts == [100, 100, 5]
        assert "question number 1<" in pages[0].text and "question number 101<" in pages[1].text
        assert "question number 101<" not in pages[0].text and "page 3 of 3" in pages[2].text
        assert client.get("/c/customer-long/v/v1?page=4",
                          headers=bearer(token)).status_code == 400


# -- tokens ---------------------------------------------------------------------------------

def test_tokens_are_stored_hashed_and_private(tmp_path: Path) -> None:
    Store.init(tmp_path / "s")
    tokens = TokenFile(tmp_path / "s")
    token, record = tokens.create("alice", ["customer-a"])
    text = tokens.path.read_text()
    assert token not in text and digest(token) in text and record.sha256 == digest(token)
    assert stat.S_IMODE(tokens.path.stat().st_mode) == 0o600
    assert re.fullmatch(r"gsw_[A-Za-z0-9_-]{43}", token)
    loaded = tokens.load()
    assert find(loaded, token) == record and find(loaded, token + "x") is None
    assert record.allows("customer-a") and not record.allows("customer-b")
    with pytest.raises(UsageError):
        tokens.create("alice")
    with pytest.raises(UsageError):
        tokens.create("bad label <x>")
    assert tokens.revoke("alice") and not tokens.revoke("alice") and find(tokens.load(),
                                                                          token) is None
    tokens.path.write_text("{not json")
    with pytest.raises(UsageError):
        tokens.load()                  # never read as "no tokens" (that would mint one)


def test_a_revoked_token_stops_working_at_once(viewer: ViewerStore) -> None:
    token, _ = TokenFile(viewer.root).create("temporary")
    with TestClient(create_app(viewer.root, index_max_age=0)) as client:
        assert client.get("/", headers=bearer(token)).status_code == 200
        assert TokenFile(viewer.root).revoke("temporary")
        assert client.get("/", headers=bearer(token)).status_code == 401


def test_the_web_command_makes_lists_and_revokes_tokens(viewer: ViewerStore) -> None:
    made = run_cli(viewer.root, "web", "--new-token", "--label", "carol",
                   "--customer", CUSTOMER)
    assert made.code == 0, made.err
    token = made.text.strip()
    assert re.fullmatch(r"gsw_[A-Za-z0-9_-]{43}", token) and "carol" in made.err
    listed = run_cli(viewer.root, "web", "--list-tokens")
    assert re.search(rf"^carol\t\S+\t{CUSTOMER}$", listed.text, re.M)
    assert token not in listed.text
    assert re.search(r"^admin\t\S+\tall customers$", listed.text, re.M)
    assert run_cli(viewer.root, "web", "--revoke-token", "carol").code == 0
    assert run_cli(viewer.root, "web", "--revoke-token", "carol").code == 2
    assert run_cli(viewer.root, "web", "--label", "x").code == 2
    assert run_cli(viewer.root / "nope", "web", "--new-token").code == 3


def test_the_web_command_says_how_to_install_the_extra(viewer: ViewerStore,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "gitstore.web.server", raising=False)
    monkeypatch.delattr(gitstore.web, "server", raising=False)
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    result = run_cli(viewer.root, "web", "--list-tokens")
    assert result.code == 2 and "pip install 'gitstore[web]'" in result.err


# -- pieces ---------------------------------------------------------------------------------

def test_charts_escape_their_labels_and_count_right() -> None:
    svg = str(charts.hbars([("<b>x</b>", 3), ("aws", 1)], 'a "label"'))
    assert "<b>" not in svg and "&lt;b&gt;x&lt;/b&gt;" in svg and "style=" not in svg
    assert svg.count("<rect") == 2 and 'aria-label="a &#34;label&#34;"' in svg
    hist = str(charts.histogram([1, 0, 2, 0, 0, 0, 0, 0, 0, 5], "h", scale=100, suffix="%"))
    assert hist.count("<rect") == 10 and "90-100%" in hist
    days = str(charts.timeline([("2025-01-01", 2), ("2025-01-03", 1)], "t"))
    assert days.count("<rect") == 3                         # the day between counts zero
    months = str(charts.timeline([("2024-01-05", 2), ("2025-03-01", 1)], "t"))
    assert months.count("<rect") == 15 and "2024-01" in months
    assert "no data" in str(charts.timeline([], "t"))


def test_side_by_side_text_diff_rows() -> None:
    old = b"".join(f"line {n}\n".encode() for n in range(1, 21))
    new = old.replace(b"line 10\n", b"line ten\n") + b"line 21\n"
    rows = line_rows(old, new)
    changed = [r for r in rows if r is not None and r.kind != "equal"]
    assert [(r.kind, r.old, r.new) for r in changed] == [("replace", "line 10", "line ten"),
                                                          ("insert", None, "line 21")]
    assert rows[0] is None and None in rows[1:]             # long equal runs are cut
    assert not any(r is not None and r.kind == "equal" and r.old == "line 1" for r in rows)


def test_the_server_prints_its_url_and_one_first_token(tmp_path: Path) -> None:
    """`gitstore web` on a store without tokens: one admin token, printed once."""
    import subprocess

    Store.init(tmp_path / "s")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    proc = subprocess.Popen([sys.executable, "-m", "gitstore", "--root", str(tmp_path / "s"),
                             "web", "--port", "0"], stderr=subprocess.PIPE, env=env, text=True)
    try:
        assert proc.stderr is not None
        lines = [proc.stderr.readline() for _ in range(4)]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    text = "".join(lines)
    assert "first start" in lines[0] and re.fullmatch(r"\s+gsw_[A-Za-z0-9_-]{43}\n", lines[1])
    assert "index up to date" in lines[2]
    assert re.search(r"serving .* at http://127\.0\.0\.1:[0-9]+/", lines[3]), text
    stored = json.loads((tmp_path / "s" / ".gitstore" / "web-tokens.json").read_text())
    assert [t["label"] for t in stored["tokens"]] == ["admin"]
    assert lines[1].strip() not in json.dumps(stored)


def test_health_shows_each_tags_signature_and_signer(tmp_path: Path) -> None:
    """A signing store: every tag good, with its signer; once the allowed-signers file
    trusts only another key, every tag bad; a store without signing: unsigned."""
    import subprocess

    keys = []
    for name in ("store_key", "other_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f",
                        str(tmp_path / name)], check=True, capture_output=True,
                       stdin=subprocess.DEVNULL)
        keys.append(tmp_path / name)
    root = tmp_path / "sessions"
    assert run_cli(root, "init", "--signing-key", str(keys[0])).code == 0
    record_example_session(Store(root, clock=Clock()))
    token, _ = TokenFile(root).create("auditor")
    with TestClient(create_app(root, index_max_age=0)) as client:
        page = client.get(f"/c/{CUSTOMER}/health", headers=bearer(token)).text
        assert re.search(r'badge-good">good</span>\s*</td>\s*<td>gitstore@', page), page
        assert "No problem found" in page
        allowed = root / ".gitstore" / "allowed_signers"
        other = Path(str(keys[1]) + ".pub").read_text().split()
        allowed.write_text(f'gitstore@example.invalid namespaces="git" {other[0]} {other[1]}\n')
        page = client.get(f"/c/{CUSTOMER}/health", headers=bearer(token)).text
        assert 'badge-bad">bad</span>' in page and "not in the allowed signers" in page
        assert "problem(s)" in page and "badge-good" not in page


def test_a_stale_index_is_refreshed_in_the_background(tmp_path: Path) -> None:
    """With a max age, a page never waits for the freshness check: the first answer
    refreshes first; a stale one is served as it is (with its check time) while one
    background refresh runs; the answers after it see what changed in git."""
    import shutil

    root = tmp_path / "sessions"
    store = Store.init(root, clock=Clock())
    record_example_session(store, "customer-a")
    viewer = Store(root)
    browser = browse.Browser(Store(root).catalog, max_age=0.3)

    def names() -> list[str]:
        return [r["customer"] for r in browser.sessions(viewer, browse.Filters()).rows]

    assert names() == ["customer-a"] and browser.checked is not None
    shutil.copytree(root / "customer-a", root / "customer-c")   # behind the store's back
    first = browser.checked
    assert names() == ["customer-a"]                 # fresh enough: no refresh at all
    time.sleep(0.35)
    assert names() == ["customer-a"]                 # stale: served now, refreshed behind
    deadline = time.monotonic() + 30
    while browser.checked == first and time.monotonic() < deadline:
        time.sleep(0.02)
    assert browser.checked != first
    assert sorted(names()) == ["customer-a", "customer-c"]
    assert browse.Browser(Store(root).catalog, max_age=0).sessions(
        viewer, browse.Filters()).total == 2
