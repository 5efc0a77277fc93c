"""The web viewer as an ASGI application: :func:`create_app` and its route table.

Invariants: :data:`ROUTES` is the whole surface. Every page route is ``GET``
(``HEAD`` follows); the only ``POST`` routes are signing in and out, which touch
no store data; there is no route that writes to the store. The
:class:`~gitstore.web.security.Guard` wraps every route (methods, token, security
headers), so a route never checks the token itself.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from gitstore.web import customer, pages
from gitstore.web.security import Guard, login, login_form, logout, style
from gitstore.web.site import WebApp, run

C = "/c/{customer}"
GET = ["GET"]

ROUTES = [
    Route("/", run(pages.sessions), methods=GET, name="sessions"),
    Route("/search", run(pages.search), methods=GET, name="search"),
    Route("/stats", run(pages.stats), methods=GET, name="stats"),
    Route("/health", run(pages.store_health), methods=GET, name="health"),
    Route(C, run(customer.overview), methods=GET, name="customer"),
    Route(C + "/v/{rev}", run(customer.version), methods=GET, name="version"),
    Route(C + "/v/{rev}/raw/{document}", run(customer.raw), methods=GET, name="raw"),
    Route(C + "/v/{rev}/download", run(customer.download_version), methods=GET,
          name="download"),
    Route(C + "/export", run(customer.export), methods=GET, name="export"),
    Route(C + "/escalation/{scenario}", run(customer.briefing), methods=GET,
          name="escalation"),
    Route(C + "/diff", run(customer.diff), methods=GET, name="diff"),
    Route(C + "/diff.json", run(customer.diff_json), methods=GET, name="diff_json"),
    Route(C + "/history/{document}", run(customer.history), methods=GET, name="history"),
    Route(C + "/access", run(customer.access), methods=GET, name="access"),
    Route(C + "/health", run(customer.customer_health), methods=GET, name="customer_health"),
    Route("/login", login_form, methods=GET, name="login_form"),
    Route("/login", login, methods=["POST"], name="login"),
    Route("/logout", logout, methods=["POST"], name="logout"),
    Route("/static/style.css", style, methods=GET, name="style"),
]


def create_app(root: str | os.PathLike[str], *, index_max_age: float = 2.0) -> Starlette:
    """The viewer of the store at ``root`` (which must exist). ``index_max_age``:
    how many seconds a catalog answer may be behind git (0: never)."""
    web = WebApp(root, index_max_age=index_max_age)
    app = Starlette(routes=ROUTES, middleware=[Middleware(Guard, web=web)])
    app.state.web = web
    return app
