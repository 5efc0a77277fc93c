"""The viewer's gate: methods, authentication, and the security headers of every answer.

Invariants:

* every response, errors and the stylesheet included, carries
  :data:`SECURITY_HEADERS`: a Content-Security-Policy that allows no script at all
  (``default-src 'none'``; styles and images from the viewer itself only; no
  framing, no ``<base>``, forms only to itself), ``X-Content-Type-Options:
  nosniff``, ``X-Frame-Options: DENY``, no referrer sent to other sites
  (``same-origin``) and ``Cache-Control: no-store`` (pages hold customer data);
* only ``GET`` and ``HEAD`` reach a page. The one other method answered is ``POST``
  to ``/login`` and ``/logout``, which change nothing in the store (they set or
  clear the sign-in cookie); anything else is 405 before any other check;
* every path but :data:`PUBLIC` needs a token, from ``Authorization: Bearer`` or
  the sign-in cookie; without a valid one the answer is 401 and nothing else
  happens (no store read, no access-log record);
* the sign-in cookie is ``HttpOnly``, ``SameSite=Strict``, ``Path=/`` and a
  session cookie (``Secure`` too when served over HTTPS); a sign-in form posted
  from another origin is refused (403).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from functools import cache
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gitstore.web.site import WebApp
from gitstore.web.tokens import find

COOKIE = "gitstore_web"
CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS: dict[str, str] = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}
#: Paths answered without a token (they show no store data).
PUBLIC = frozenset({"/login", "/logout", "/static/style.css"})
#: The only non-GET requests answered.
POSTS = frozenset({"/login", "/logout"})
READ_METHODS = frozenset({"GET", "HEAD"})
MAX_FORM = 4096


def presented_token(request: Request) -> str | None:
    """The token a request presents: the bearer token, else the sign-in cookie."""
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(COOKIE)


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of this site only (never ``//host``)."""
    if not target or not target.startswith("/") or target.startswith("//") \
            or "\\" in target or any(ord(c) < 0x20 for c in target):
        return "/"
    return target


class Guard:
    """ASGI middleware: methods, authentication and security headers (see the module
    docstring). Puts the :class:`~gitstore.web.site.Viewer` into ``scope["state"]``."""

    def __init__(self, app: ASGIApp, web: WebApp) -> None:
        self.app = app
        self.web = web

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.decode("latin-1").lower() not in SECURITY_HEADERS]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        method, path = scope["method"], scope["path"]
        if method not in READ_METHODS and not (method == "POST" and path in POSTS):
            allow = "GET, HEAD, POST" if path in POSTS else "GET, HEAD"
            response: Response = PlainTextResponse(
                "405 method not allowed: the viewer is read-only\n", status_code=405,
                headers={"allow": allow})
            await response(scope, receive, send_with_headers)
            return
        state: MutableMapping[str, Any] = scope.setdefault("state", {})
        if path not in PUBLIC:
            request = Request(scope)
            token = find(self.web.token_list(), presented_token(request))
            if token is None:
                state["viewer"] = None
                response = self.web.page(
                    request, "login.html", 401, next=safe_next(request.url.path),
                    failed=presented_token(request) is not None)
                response.headers["www-authenticate"] = 'Bearer realm="gitstore web"'
                await response(scope, receive, send_with_headers)
                return
            state["viewer"] = self.web.viewer(token)
        else:
            state["viewer"] = None
        await self.app(scope, receive, send_with_headers)


# -- the public endpoints --------------------------------------------------------------

def login_form(request: Request) -> Response:
    web: WebApp = request.app.state.web
    return web.page(request, "login.html", next=safe_next(request.query_params.get("next")),
                    failed=False)


def _same_origin(request: Request) -> bool:
    """No sign-in form posted from elsewhere: the browser's ``Sec-Fetch-Site`` (when
    sent) says same-origin, and ``Origin`` (when sent) is this site."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    return origin is None or origin == f"{request.url.scheme}://{request.url.netloc}"


async def login(request: Request) -> Response:
    web: WebApp = request.app.state.web
    if not _same_origin(request):
        return web.error(request, 403, "sign-in from another site refused")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return web.error(request, 413, "sign-in form too large")
    form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=8)
    token_text = (form.get("token") or [""])[0].strip()
    target = safe_next((form.get("next") or ["/"])[0])
    token = find(web.token_list(), token_text)
    if token is None:
        return web.page(request, "login.html", 401, next=target, failed=True)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, token_text, httponly=True, samesite="strict", path="/",
                        secure=request.url.scheme == "https")
    return response


async def logout(request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


@cache
def stylesheet() -> bytes:
    """The viewer's one stylesheet (package data)."""
    return files("gitstore.web").joinpath("static", "style.css").read_bytes()


async def style(request: Request) -> Response:
    return Response(stylesheet(), media_type="text/css; charset=utf-8")
