"""Render a session's Deployment Statement of Work (``sow_document.md``).

:func:`render_sow` fills a Jinja2 template (by default the packaged
``templates/sow_document.md.j2``) with the session's parsed JSON documents.

Invariants:

* **Deterministic.** The same documents, customer and version give the same
  bytes: nothing reads the clock or the environment, every JSON object is
  rebuilt with its keys sorted (so the order keys arrived in never matters)
  while JSON arrays keep their order (it is meaningful: turns, steps), line
  endings are ``\\n``, runs of blank lines are collapsed to one, trailing
  whitespace is stripped and the text ends with exactly one newline.
* **Strict.** The environment uses :class:`jinja2.StrictUndefined`: using a
  value the data does not have is an error, never an empty string. The
  template decides what is optional by testing ``is defined`` / ``is none``.
  Every failure is a one-line :class:`~gitstore.errors.RenderError` (exit code
  10) naming what is missing and where, e.g. ``SOW template needs
  deployment_context.json: 'deployment_recommendations' is undefined``.
* **Escaped.** Document text is literal text in the SOW, never Markdown or HTML
  markup: the text filters (``inline``, ``md_escape``, ``term``, ``label``,
  ``provider``, ``code``) escape ``& < > [ ] ` \\`` (so ``<script>``,
  ``<img onerror=...>``, HTML comments, ``[x](javascript:...)`` links and
  ``![x](http://...)`` images show as the characters they are), ``code`` spans
  only text without ``<``/``>``, and every expression's output that no filter
  escaped is escaped on the way out (the template's own ``<br>`` excepted).

Template variables: ``conversation``, ``deployment_context``,
``session_metadata``, ``session_analytics`` (one per document; a document not
passed in is undefined), ``documents`` (all documents by file name),
``customer``, ``version`` (``1.2.3``) and ``version_tag`` (``v1.2.3``). A JSON
object's attributes are its keys and nothing else (a key named ``items`` is the
data, not ``dict.items``): iterate objects with ``|dictsort``.
Filters: ``percent``, ``number``, ``md_escape``, ``inline``, ``term``,
``code``, ``label`` and ``provider``.

The Jinja2 machinery lives in :mod:`gitstore.core.templating`, deferred
(:mod:`gitstore.core.lazy`): importing this module loads no jinja2, the first
render does.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitstore.core import lazy
from gitstore.core.versions import Version

if TYPE_CHECKING:
    from gitstore.core import templating
else:
    templating = lazy.module("gitstore.core.templating")

__all__ = ["render_sow"]


def render_sow(
    documents: Mapping[str, Any],
    *,
    customer: str,
    version: Version | str,
    template_dir: Path | None = None,
    template_name: str = "sow_document.md.j2",
) -> str:
    """Render the Statement of Work for one session version.

    ``documents`` maps file names (``conversation.json``...) to parsed JSON;
    ``template_dir``, when given, is searched before the packaged templates.
    Raises :class:`RenderError` for missing data, a missing template or a
    template that does not compile or run; an invalid ``version`` string is a
    :class:`~gitstore.errors.UsageError`.
    """
    ver = version if isinstance(version, Version) else Version.parse(version)
    return templating.render(documents, customer=customer, version=ver,
                             template_dir=template_dir, template_name=template_name)
