"""Serving the viewer: ``gitstore web`` binds a socket and runs uvicorn on it.

Invariants: the default address is loopback (``127.0.0.1``); the port is bound
before the address is announced, so the line ``serving http://HOST:PORT/`` names
the real port even for ``--port 0``; on the first start of a store without tokens
one unscoped token labelled ``admin`` is made and printed once (to stderr) and
never again; the catalog is brought up to date before the address is announced (so
the first page does not wait for it); uvicorn's own access log is off (the customers'
access logs record every page view, naming the viewer).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from collections.abc import Callable, Sequence

import uvicorn

from gitstore.errors import StorageError
from gitstore.store.facade import Store
from gitstore.web.app import create_app
from gitstore.web.tokens import Token, TokenFile

FIRST_LABEL = "admin"


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: any free port)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        raise StorageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def make_token(root: str | os.PathLike[str], label: str | None = None,
               customers: Sequence[str] = ()) -> tuple[str, Token, list[str]]:
    """A new token (scoped to ``customers`` when any are named), its record, and
    the named customers that have no repository (yet)."""
    store = Store(root)
    names = [store.customer(c).name for c in customers]  # api_key -> hash in such stores
    token, record = TokenFile(store.root).create(label, names or None)
    missing = [c for c, n in zip(customers, names, strict=True)
               if not store.customer_named(n).exists]
    return token, record, missing


def tokens(root: str | os.PathLike[str]) -> list[Token]:
    return TokenFile(Store(root).root).load()


def revoke(root: str | os.PathLike[str], label: str) -> bool:
    return TokenFile(Store(root).root).revoke(label)


def serve(root: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 8765, *,
          note: Callable[[str], None] | None = None) -> None:
    """Serve the viewer of the store at ``root`` until interrupted."""
    say = note or (lambda text: print(text, file=sys.stderr, flush=True))
    store = Store(root)  # NotFoundError when there is no store
    tokens = TokenFile(store.root)
    if not tokens.load():
        token, _ = tokens.create(FIRST_LABEL)
        say(f"gitstore web: first start: access token for '{FIRST_LABEL}' (shown only now; "
            f"stored hashed in {tokens.path}):\n  {token}")
    app = create_app(store.root)
    sock = bind(host, port)
    say("gitstore web: bringing the index up to date with git…")
    app.state.web.browser.fresh()
    if not _loopback(host):
        say(f"gitstore web: warning: listening on {host}, not on loopback: anyone who can "
            "reach it and holds a token can read; tokens and pages travel unencrypted")
    say(f"gitstore web: serving {store.root} read-only at {url(sock)} (Ctrl-C stops)")
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            server_header=False, proxy_headers=False)
    uvicorn.Server(config).run(sockets=[sock])
