"""Real git servers for the sync tests: ``git daemon`` and ``git http-backend``.

Each server listens on 127.0.0.1 on an ephemeral port and is a process of its
own, stopped by its PID. ``git daemon`` needs its port named: one is found by
binding 127.0.0.1:0 first. ``git http-backend`` runs behind a small CGI server
written here (``python tests/servers.py http HUB``: :mod:`http.server` with a
handler that runs the hub's CGI program, ``HUB/.gitstore/hub.cgi``, for every
request), which binds port 0 itself and prints the port it got.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HOST = "127.0.0.1"
START_TIMEOUT = 20.0


def free_port() -> int:
    """A port nothing listens on now (bind 127.0.0.1:0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((HOST, port)) == 0


@dataclass
class Server:
    """A running server process: its kind, port, log and the remote URL template."""

    kind: str
    proc: subprocess.Popen[bytes]
    port: int
    hub: Path
    log: Path
    template: str = field(default="")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, customer: str) -> str:
        return self.template.replace("{customer}", customer)

    def stop(self) -> None:
        """Stop the server by its PID (TERM, then KILL), and wait for it."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_daemon(hub: Path, log: Path, port: int | None = None) -> Server:
    """``git daemon --enable=receive-pack`` serving ``hub`` (on ``port``, or a free one)."""
    port = port or free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            ["git", "daemon", "--reuseaddr", f"--listen={HOST}", f"--port={port}",
             f"--base-path={hub}", "--enable=receive-pack", "--informative-errors",
             "--verbose", str(hub)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    server = Server("daemon", proc, port, hub, log, f"git://{HOST}:{port}/{{customer}}")
    deadline = time.monotonic() + START_TIMEOUT
    while not _listening(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"git daemon did not start: {log.read_text(errors='replace')}")
        time.sleep(0.05)
    return server


def start_http(hub: Path, log: Path, port: int = 0) -> Server:
    """``git http-backend`` (through the hub's CGI program) behind the CGI server below."""
    err = log.open("ab")
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "http", str(hub),
                             str(port)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=err)
    err.close()
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT)
    line = proc.stdout.readline().decode() if ready else ""
    if not line.startswith("PORT "):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"the CGI server did not start: {log.read_text(errors='replace')}")
    got = int(line.split()[1])
    return Server("http", proc, got, hub, log, f"http://{HOST}:{got}/git/{{customer}}")


# -- stores that sync with a hub ------------------------------------------------------------

def git_out(repo: Path, *args: str) -> str:
    """``git -C repo args`` (a bounded run); stdout as text."""
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          timeout=60, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout


def shared_refs(repo: Path) -> str:
    """The refs every root and the hub must agree on: branches, tags, merge markers."""
    return git_out(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads",
                   "refs/tags", "refs/gitstore/merged")


def synced_store(root: Path, template: str, clock: object = None, timeout: float = 30.0
                 ) -> Any:
    """A new store at ``root`` whose remote is ``template`` (what `gitstore remote`
    saves), with the deterministic test clock unless ``clock`` is given."""
    from conftest import Clock

    from gitstore import Store
    from gitstore.store import config

    store = Store.init(root, clock=clock or Clock())
    store.config = store.config._replace(remote=template, sync_timeout=timeout)
    config.save(root, store.config)
    return store


def turn(timestamp: str, query: str) -> dict[str, object]:
    """A conversation turn (its text is unique enough to find it again)."""
    return {"timestamp": timestamp, "user_input": {"query": query},
            "agent_response": {"orchestrator_response": f"answer to: {query}"}}


# -- the CGI server (run as a process of its own) -------------------------------------------

class CGIHandler(BaseHTTPRequestHandler):
    """Runs ``<hub>/.gitstore/hub.cgi`` for every request under ``/git/`` (RFC 3875)."""

    hub: Path = Path(".")

    def do_GET(self) -> None:
        self._cgi()

    def do_POST(self) -> None:
        self._cgi()

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _cgi(self) -> None:
        parts = urlsplit(self.path)
        if not parts.path.startswith("/git/"):
            self.send_error(404)
            return
        body = self._body()
        env = {k: v for k, v in os.environ.items() if not k.startswith("HTTP_")}
        env.update(GATEWAY_INTERFACE="CGI/1.1", SERVER_PROTOCOL=self.request_version,
                   SERVER_SOFTWARE="gitstore-test-cgi", SERVER_NAME=HOST,
                   SERVER_PORT=str(self.server.server_address[1]),
                   REQUEST_METHOD=self.command, SCRIPT_NAME="/git",
                   PATH_INFO=parts.path[len("/git"):], QUERY_STRING=parts.query,
                   REMOTE_ADDR=self.client_address[0], REMOTE_USER="sync-test",
                   CONTENT_LENGTH=str(len(body)),
                   CONTENT_TYPE=self.headers.get("Content-Type", ""))
        for key, value in self.headers.items():
            name = "HTTP_" + key.upper().replace("-", "_")
            if name not in ("HTTP_CONTENT_LENGTH", "HTTP_CONTENT_TYPE",
                            "HTTP_TRANSFER_ENCODING"):
                env[name] = value
        proc = subprocess.run([str(self.hub / ".gitstore" / "hub.cgi")], input=body,
                              capture_output=True, env=env, check=False)
        sys.stderr.write(proc.stderr.decode(errors="replace"))
        head, sep, rest = proc.stdout.partition(b"\r\n\r\n")
        if not sep:
            head, sep, rest = proc.stdout.partition(b"\n\n")
        status, headers = 200, []
        for raw in head.decode("latin-1").splitlines():
            key, _, value = raw.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers.append((key.strip(), value.strip()))
        if proc.returncode != 0 and not sep:
            status, headers, rest = 500, [("Content-Type", "text/plain")], proc.stderr
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(rest)))
        self.end_headers()
        self.wfile.write(rest)


def serve_http(hub: Path, port: int) -> None:
    CGIHandler.hub = hub
    server = ThreadingHTTPServer((HOST, port), CGIHandler)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "http":
        serve_http(Path(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit("usage: python tests/servers.py http HUB PORT")
