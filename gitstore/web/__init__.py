"""The read-only web viewer (``gitstore web``; the optional extra ``gitstore[web]``).

A top-layer interface beside :mod:`gitstore.cli`: it imports every layer below
the CLI and never the CLI itself. :mod:`~gitstore.web.app` builds the ASGI
application, :mod:`~gitstore.web.server` serves it with uvicorn,
:mod:`~gitstore.web.tokens` keeps the access tokens. This package file imports
nothing, so the token helpers work without the extra installed.
"""
