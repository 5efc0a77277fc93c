"""What every page of the web viewer works with: the running viewer (:class:`WebApp`),
the person looking (:class:`Viewer`), query parameters, and pages and errors.

Invariants:

* each token label gets its own :class:`~gitstore.store.facade.Store`, whose agent
  is ``web:<label>``; every read a page makes goes through that store, so every
  access-log record it appends names the viewer;
* :meth:`Viewer.customer` is the only way a page reaches a customer: a name
  outside the token's scope, an invalid name and an unknown customer all answer
  the same 404, so a scoped token learns nothing of other customers; a customer
  reached gets a ``web:view`` record naming the page;
* a page handler's :class:`~gitstore.errors.GitStoreError` becomes an error page
  (404 not found, 400 bad request, 403 an encrypted session without its key here,
  410 a shredded one, 500 otherwise) whose text never names the
  store's path on disk; anything else is a 500 with no detail.
"""

from __future__ import annotations

import os
import re
import threading
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from gitstore.catalog.browse import Browser
from gitstore.core.commits import Identity
from gitstore.errors import (
    GitStoreError,
    KeyUnavailableError,
    NotFoundError,
    ShreddedError,
    UsageError,
)
from gitstore.store.facade import Customer, Store
from gitstore.version import __version__
from gitstore.web.render import environment
from gitstore.web.tokens import Token, TokenFile

#: What a revision in a URL may be: a version, a scenario or a commit id (never
#: git's revision syntax, which could name reflogs or other refs).
REVISION = re.compile(r"v[0-9]{1,9}(?:\.[0-9]{1,9}\.[0-9]{1,9})?|[0-9a-f]{7,40}")
VIEWER_EMAIL = "web-viewer@gitstore.invalid"


class PageError(Exception):
    """A request the viewer answers with an error page (``status``, one line)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def not_found(what: str = "page") -> PageError:
    return PageError(404, f"no such {what} (or not yours to see)")


@dataclass(frozen=True)
class Viewer:
    """The person looking: their token and the store that reads on their behalf."""

    token: Token
    store: Store

    @property
    def label(self) -> str:
        return self.token.label

    @property
    def scope(self) -> tuple[str, ...] | None:
        return self.token.customers

    def customer(self, name: str, request: Request) -> Customer:
        """The customer ``name`` if this viewer may see it; records the page view."""
        try:
            found = self.store.customer_named(name)  # a URL holds the repository name
        except UsageError:
            raise not_found("customer") from None
        if not self.token.allows(found.name) or not found.exists:
            raise not_found("customer")
        query = f"?{request.url.query}" if request.url.query else ""
        found.audit("web:view", detail=f"{request.method} {request.url.path}{query}"[:500])
        return found


class WebApp:
    """One running viewer of the store at ``root``: tokens, templates, the catalog
    browser (refreshed at most every ``index_max_age`` seconds) and the viewers'
    stores."""

    def __init__(self, root: str | os.PathLike[str], *, index_max_age: float = 2.0) -> None:
        self.store = Store(root)
        self.root = self.store.root
        self.tokens = TokenFile(self.root)
        self.env: Environment = environment()
        self.browser = Browser(self.store.catalog, max_age=index_max_age)
        self._stores: dict[str, Store] = {}
        self._lock = threading.Lock()
        self._cached: tuple[tuple[int, int, int], list[Token]] | None = None

    def token_list(self) -> list[Token]:
        """The stored tokens, re-read whenever the file changes (a token made or
        revoked counts from the next request)."""
        try:
            st = self.tokens.path.stat()
            key = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            return []
        cached = self._cached
        if cached is not None and cached[0] == key:
            return cached[1]
        tokens = self.tokens.load()
        self._cached = (key, tokens)
        return tokens

    def viewer(self, token: Token) -> Viewer:
        with self._lock:
            store = self._stores.get(token.label)
            if store is None:
                store = Store(self.root, agent=Identity(f"web:{token.label}", VIEWER_EMAIL))
                self._stores[token.label] = store
        return Viewer(token, store)

    # -- pages ---------------------------------------------------------------------
    def page(self, request: Request, template: str, status: int = 200,
             **context: Any) -> HTMLResponse:
        viewer = request.scope.get("state", {}).get("viewer")
        html = self.env.get_template(template).render(
            request=request, viewer=viewer, version=__version__, path=request.url.path,
            **context)
        return HTMLResponse(html, status_code=status)

    def error(self, request: Request, status: int, message: str) -> HTMLResponse:
        return self.page(request, "error.html", status, code=status,
                         message=message.replace(str(self.root), "the store"))


Handler = Callable[[WebApp, Viewer, Request], Response]


def run(handler: Handler) -> Callable[[Request], Response]:
    """A Starlette endpoint (run in the thread pool) around a page handler."""

    def endpoint(request: Request) -> Response:
        web: WebApp = request.app.state.web
        viewer: Viewer = request.scope["state"]["viewer"]
        try:
            return handler(web, viewer, request)
        except PageError as exc:
            return web.error(request, exc.status, str(exc))
        except NotFoundError:
            return web.error(request, 404, str(not_found()))
        except UsageError as exc:
            return web.error(request, 400, str(exc))
        except KeyUnavailableError as exc:  # encrypted, and this server has no key for it
            return web.error(request, 403, f"encrypted session: {exc}")
        except ShreddedError as exc:  # erased for good: its history is still listed
            return web.error(request, 410, str(exc))
        except GitStoreError as exc:
            return web.error(request, 500, f"{type(exc).__name__}: {exc}")
        except Exception:  # a bug: the details go to the server's log, not the page
            traceback.print_exc()
            return web.error(request, 500, "internal error (see the server's log)")

    endpoint.__name__ = handler.__name__
    return endpoint


# -- query parameters ----------------------------------------------------------------

def text(params: Mapping[str, str], key: str, limit: int = 200) -> str | None:
    """A text parameter, stripped; None when absent or empty."""
    value = params.get(key, "").strip()
    if len(value) > limit or "\x00" in value:
        raise PageError(400, f"parameter {key} is too long or contains NUL")
    return value or None


def integer(params: Mapping[str, str], key: str, default: int, lo: int, hi: int) -> int:
    value = params.get(key, "").strip()
    if not value:
        return default
    if not value.isdigit() or not lo <= int(value) <= hi:
        raise PageError(400, f"parameter {key} must be a whole number from {lo} to {hi}")
    return int(value)


def choice(params: Mapping[str, str], key: str, choices: tuple[str, ...], default: str) -> str:
    value = params.get(key, "") or default
    if value not in choices:
        raise PageError(400, f"parameter {key} must be one of {', '.join(choices)}")
    return value


def day(params: Mapping[str, str], key: str, *, end: bool = False) -> datetime | None:
    """A ``YYYY-MM-DD`` parameter as the first (or with ``end`` the last) second of
    that day, UTC."""
    value = params.get(key, "").strip()
    if not value:
        return None
    try:
        d = date.fromisoformat(value)
    except ValueError:
        raise PageError(400, f"parameter {key} must be a date YYYY-MM-DD") from None
    return datetime.combine(d, time(23, 59, 59) if end else time(0, 0), UTC)


def revision(value: str | None, what: str = "revision") -> str:
    if value is None or not REVISION.fullmatch(value):
        raise PageError(400, f"{what} must be a version (v1.0.0), a scenario (v1) or a "
                             "commit id")
    return value

