"""The MCP server: the store's public API as Model Context Protocol tools and resources.

``gitstore mcp`` (:mod:`gitstore.cli.serve`) runs :func:`gitstore.mcp.server.build_server`
over stdio or streamable HTTP. A top-layer interface beside :mod:`gitstore.cli`: it
uses the layers below (the facade, the ops) and never the CLI.

Invariants:

* it needs the optional ``mcp`` SDK (``pip install 'gitstore[mcp]'``); nothing else in
  gitstore imports this package, so a plain install never loads the SDK, and this
  ``__init__`` imports nothing;
* every tool is a thin call of the public API (:class:`~gitstore.store.facade.Store`,
  :class:`~gitstore.store.facade.Customer`, :class:`~gitstore.store.session.Session`,
  the ops); the store validates, writes, audits, exactly as for the CLI;
* every :class:`~gitstore.errors.GitStoreError` reaches the client as a tool error
  carrying its one-line message and its exit-code name (:mod:`gitstore.mcp.service`);
  nothing else is printed: stdout carries only protocol messages, logs go to stderr.

The parts: :mod:`~gitstore.mcp.service` (shared state, errors, annotations),
:mod:`~gitstore.mcp.writes` (the session lifecycle), :mod:`~gitstore.mcp.reads`
(questions and the document resource), :mod:`~gitstore.mcp.admin` (export, cleanup,
verify, reindex), :mod:`~gitstore.mcp.server` (the server and its transports).
"""
