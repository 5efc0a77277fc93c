"""The web viewer in a real browser: Playwright driving Debian's headless Chromium against a
real ``gitstore web`` (uvicorn) started here on 127.0.0.1 with an ephemeral port and
stopped by its PID.

* a person's walk: sign in with the form → the customer list → filter it → a customer's
  timeline → a version (chat, tables, rendered SOW) → a diff → statistics → health,
  checking at each step what a person would see, with a screenshot of each page
  (under the test's tmp dir, and copied to ``$GITSTORE_ARTIFACTS`` when that is set);
  and no page breaks its own Content-Security-Policy (no console error at all);
* hostile documents: pages showing ``<script>``, event handlers, ``javascript:`` links
  and HTML comments from a customer's documents and SOW run nothing (``window.pwned``
  stays undefined, no script element, no event-handler attribute, no ``javascript:``
  link), and the CSP stops even a script injected into the page after it loaded.

Chromium: ``/usr/bin/chromium`` (Debian's package; ``.ci/run`` installs it with apt-get
and exports ``CI=true``). When it is missing the tests FAIL if ``CI`` is set, and are
skipped (with that reason) only on a developer's machine where ``CI`` is not set.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from web_fixtures import ATTACK, CUSTOMER, HOSTILE, add_hostile, viewer_store

from gitstore.web.tokens import TokenFile

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
ROOT = Path(__file__).resolve().parent.parent


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing: CI must install it (apt-get install chromium)")
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); outside CI only")


@dataclass
class Server:
    url: str
    process: subprocess.Popen[str]
    root: Path
    admin: str
    log: list[str] = field(default_factory=list)


def _start(root: Path) -> Server:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "gitstore", "--root", str(root), "web",
                             "--host", "127.0.0.1", "--port", "0"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env=env)
    assert proc.stderr is not None
    log: list[str] = []
    found = threading.Event()
    url: list[str] = []

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            log.append(line)
            m = re.search(r"at (http://127\.0\.0\.1:[0-9]+/)", line)
            if m and not url:
                url.append(m[1])
                found.set()
        found.set()

    threading.Thread(target=drain, daemon=True).start()
    if not found.wait(60) or not url:
        _stop(proc)
        raise AssertionError("gitstore web did not start:\n" + "".join(log))
    return Server(url[0], proc, root, "", log)


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    _require_chromium()
    root = tmp_path_factory.mktemp("browser") / "sessions"
    store = viewer_store(root)
    add_hostile(root)
    running = _start(root)
    running.admin = store.admin
    try:
        yield running
    finally:
        _stop(running.process)
    assert running.process.returncode is not None


@pytest.fixture(scope="module")
def browser(server: Server) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def shots(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[list[Path]]:
    """Screenshots taken by a test; copied to $GITSTORE_ARTIFACTS/<test> when set."""
    taken: list[Path] = []
    yield taken
    target = os.environ.get("GITSTORE_ARTIFACTS")
    if target and taken:
        folder = Path(target) / request.node.name
        folder.mkdir(parents=True, exist_ok=True)
        for shot in taken:
            shutil.copy2(shot, folder / shot.name)


class Visit:
    """One browser page with its console and CSP reports collected."""

    def __init__(self, browser: Any, server: Server, shots: list[Path], folder: Path) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900},
                                           base_url=server.url)
        self.page = self.context.new_page()
        self.console: list[str] = []
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.shots, self.folder, self.server = shots, folder, server

    def sign_in(self, token: str) -> None:
        page = self.page
        page.goto("/")
        assert page.locator("h1").inner_text() == "Sign in"
        page.fill("#token", token)
        page.click("button[type=submit]")
        page.wait_for_load_state()
        assert self.console == ["error: Failed to load resource: the server responded with a "
                                "status of 401 (Unauthorized)"], self.console
        self.console.clear()      # the 401 of the first page, before signing in

    def shot(self, name: str) -> None:
        path = self.folder / f"{len(self.shots) + 1:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.shots.append(path)

    def close(self) -> None:
        self.context.close()


def test_a_person_walks_from_the_customer_list_to_health(browser: Any, server: Server,
                                                         shots: list[Path],
                                                         tmp_path: Path) -> None:
    v = Visit(browser, server, shots, tmp_path)
    page = v.page
    try:
        v.sign_in(server.admin)
        # the customer list
        assert page.url == server.url
        rows = page.locator("table.sessions tbody tr")
        assert rows.count() == 4                     # xyz789 v1 and v2, other, hostile
        assert "4 session(s)" in page.locator("#count").inner_text()
        assert page.locator("header .who strong").inner_text() == "admin"
        v.shot("customers")
        # filter: by name and status
        page.fill("input[name=name]", "xyz")
        page.select_option("select[name=status]", "finalized")
        page.click("form.filters button[type=submit]")
        page.wait_for_load_state()
        assert "name=xyz" in page.url and "status=finalized" in page.url
        assert rows.count() == 2
        assert set(rows.locator("td:first-child").all_inner_texts()) == {CUSTOMER}
        v.shot("customers-filtered")
        # a customer: the timeline with who, when and why
        page.click(f"table.sessions a[href='/c/{CUSTOMER}']")
        page.wait_for_load_state()
        assert page.locator("h1").inner_text() == CUSTOMER
        events = page.locator("ol.timeline li.event")
        assert events.count() == 4
        timeline = page.locator("ol.timeline").first.inner_text() + \
            page.locator("ol.timeline").nth(1).inner_text()
        for seen in ("v1.0.0", "v1.1.0", "v1.1.1", "v2.0.0", "by advisor", "by planner",
                     "actual outcome known", "follow-up answered"):
            assert seen in timeline, seen
        assert page.locator("table.log tbody tr").count() >= 10
        v.shot("customer")
        # a version: the chat, the tables, the SOW
        page.click(f"ol.timeline a.version[href='/c/{CUSTOMER}/v/v1.0.0']")
        page.wait_for_load_state()
        turns = page.locator("ol.chat li.turn")
        assert turns.count() == 5
        first = turns.first
        assert "What collector should I use for my AWS API Gateway?" in \
            first.locator(".bubble.customer").inner_text()
        assert first.locator(".bubble.agent").is_visible()
        assert page.locator("#deployment table.grid th", has_text="collector_type").count() >= 1
        sow = page.locator("article.sow")
        assert sow.locator("h1").count() >= 1 and sow.locator("table").count() >= 1
        # the stylesheet applied (CSP allows 'self'): customer bubbles are tinted
        colour = first.locator(".bubble.customer").evaluate(
            "e => getComputedStyle(e).backgroundColor")
        assert colour == "rgb(232, 240, 254)"
        v.shot("version")
        raw = page.locator("a", has_text="raw JSON").first.get_attribute("href")
        assert raw == f"/c/{CUSTOMER}/v/v1.0.0/raw/deployment_context.json"
        # a diff, from the customer's timeline
        page.go_back()
        page.click("a:text('changes since v1.0.0')")
        page.wait_for_load_state()
        assert "a=v1.0.0" in page.url and "b=v1.1.0" in page.url
        added = page.locator("tr.op-add")
        assert added.count() >= 2                          # turns 6 and 7
        assert page.locator("tr.op-change").count() >= 1
        green = added.first.locator("td").first.evaluate(
            "e => getComputedStyle(e).backgroundColor")
        assert green == "rgb(227, 245, 230)"
        assert "conversation.json" in page.locator("section.docdiff h2").all_inner_texts()[0]
        v.shot("diff")
        # statistics
        page.click("header nav a:text('Statistics')")
        page.wait_for_load_state()
        assert page.locator("#total-customers").inner_text() == "3"
        charts = page.locator("svg.chart")
        assert charts.count() == 6
        assert page.locator("svg.chart rect").count() >= 10
        box = charts.first.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 100
        v.shot("statistics")
        # health: the store, then one customer
        page.click("header nav a:text('Health')")
        page.wait_for_load_state()
        assert "No store file can be reached" in page.locator("main").inner_text()
        page.click(f"a[href='/c/{CUSTOMER}/health']")
        page.wait_for_load_state()
        assert "No problem found" in page.locator("#verdict").inner_text()
        assert page.locator("table.grid tbody tr").count() == 4
        assert page.locator(".badge-unsigned").count() == 4
        v.shot("health")
        # the access log shows this very walk, under the token's label
        page.click("nav.sub a:text('Access log')")
        page.wait_for_load_state()
        assert "web:admin" in page.locator("table.log").inner_text()
        v.shot("access-log")
        assert v.errors == [] and v.console == [], (v.errors, v.console)
    finally:
        v.close()
    assert len(shots) == 8 and all(p.stat().st_size > 10_000 for p in shots)


def test_hostile_documents_run_nothing(browser: Any, server: Server, shots: list[Path],
                                       tmp_path: Path) -> None:
    v = Visit(browser, server, shots, tmp_path)
    page = v.page
    checks = """() => ({
        pwned: typeof window.pwned,
        scripts: document.querySelectorAll('script').length,
        handlers: [...document.querySelectorAll('*')].filter(
            e => [...e.attributes].some(a => a.name.startsWith('on'))).length,
        jsLinks: [...document.querySelectorAll('[href]:not(link[rel=icon]),[src]')].filter(
            e => /^\\s*(javascript|data|vbscript):/i.test(
                e.getAttribute('href') || e.getAttribute('src'))).length,
        images: document.images.length,
        iframes: document.querySelectorAll('iframe').length,
    })"""
    try:
        v.sign_in(server.admin)
        for path, name in ((f"/c/{HOSTILE}/v/v1.0.0", "hostile-version"),
                           (f"/c/{HOSTILE}/diff?a=v1.0.0&b=v1.1.0", "hostile-diff"),
                           (f"/c/{HOSTILE}", "hostile-customer"),
                           ("/stats", "hostile-statistics"), ("/", "hostile-customers")):
            page.goto(path)
            page.wait_for_load_state("load")
            found = page.evaluate(checks)
            assert found == {"pwned": "undefined", "scripts": 0, "handlers": 0, "jsLinks": 0,
                             "images": 0, "iframes": 0}, (path, found)
            v.shot(name)
        # the attack is there, shown as text a person can read
        page.goto(f"/c/{HOSTILE}/v/v1.0.0")
        bubble = page.locator("ol.chat .bubble.customer .text").first.inner_text()
        assert bubble == ATTACK
        sow = page.locator("article.sow").inner_text()
        assert '<script>window.pwned = "sow"</script>' in sow
        assert "<!-- <p>hidden by a comment</p> -->" in sow
        assert "[a javascript link](javascript:window.pwned='md-link')" in sow
        assert page.locator("article.sow a").count() == 0
        # and the policy stops a script even once it is in the page
        assert v.console == [] and v.errors == []
        page.evaluate("""() => { const s = document.createElement('script');
                                 s.textContent = 'window.pwned = "injected"';
                                 document.body.appendChild(s); }""")
        page.wait_for_timeout(200)
        assert page.evaluate("typeof window.pwned") == "undefined"
        assert any("Content Security Policy" in m for m in v.console), v.console
    finally:
        v.close()
    assert TokenFile(server.root).load()  # the server changed nothing but the access logs
