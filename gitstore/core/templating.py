"""The Jinja2 side of the SOW renderer: environment, undefined values, loader, filters.

:func:`gitstore.core.render.render_sow` is the public entry point; it defers this
module (:mod:`gitstore.core.lazy`), so jinja2 is loaded by the first render, not by
everything that imports the renderer (every write path does). The invariants of the
output (deterministic, strict, escaped), the template variables and the filters are
documented there; this module implements them.
"""

from __future__ import annotations

import json
import re
import traceback
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2.utils import missing

from gitstore.core.resources import templates_dir
from gitstore.core.versions import Version
from gitstore.errors import RenderError

__all__ = ["DOCUMENT_VARIABLES", "render"]

DOCUMENT_VARIABLES: dict[str, str] = {
    "conversation.json": "conversation",
    "deployment_context.json": "deployment_context",
    "session_metadata.json": "session_metadata",
    "session_analytics.json": "session_analytics",
}
"""Session document file name -> the template variable holding it."""

_FILE_OF_VARIABLE = {var: name for name, var in DOCUMENT_VARIABLES.items()}

_PROVIDERS = {"aws": "AWS", "azure": "Microsoft Azure", "gcp": "Google Cloud",
              "oci": "Oracle Cloud", "ibm": "IBM Cloud"}


# --- data wrappers: sorted keys, and each value knows where it came from ------------

class _Node(dict[str, Any]):
    """A JSON object rebuilt with sorted keys; ``where`` is (file, path parts...)."""

    __slots__ = ("where",)
    where: tuple[str | int, ...]


class _List(list[Any]):
    """A JSON array (order kept) that knows where it came from."""

    __slots__ = ("where",)
    where: tuple[str | int, ...]


def _wrap(value: Any, where: tuple[str | int, ...]) -> Any:
    if isinstance(value, Mapping):
        node = _Node((str(k), _wrap(value[k], (*where, str(k)))) for k in sorted(value, key=str))
        node.where = where
        return node
    if isinstance(value, list | tuple):
        items = _List(_wrap(v, (*where, i)) for i, v in enumerate(value))
        items.where = where
        return items
    return value


def _describe(where: tuple[str | int, ...], name: Any) -> str:
    """``("deployment_context.json", "recs", 0)`` + ``"x"`` -> ``recs[0].x``."""
    text = ""
    for part in (*where[1:], name):
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


class _SessionUndefined(jinja2.StrictUndefined):
    """StrictUndefined whose message names the session document and key path."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        obj, name = self._undefined_obj, self._undefined_name
        if self._undefined_hint:
            return self._undefined_hint
        if isinstance(obj, _Node | _List) and obj.where:
            return f"SOW template needs {obj.where[0]}: {_describe(obj.where, name)!r} is undefined"
        if obj is missing and name in _FILE_OF_VARIABLE:
            return f"SOW template needs {_FILE_OF_VARIABLE[name]}: the document was not provided"
        if isinstance(obj, _Node):  # the ``documents`` mapping itself
            return f"SOW template needs {name}: the document was not provided"
        return super()._undefined_message


class _SessionEnvironment(jinja2.Environment):
    """Prefer JSON keys over Python attributes, so a key named ``items`` is the data."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, _Node):
            if attribute in obj:
                return obj[attribute]
            return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, _Node):
            return self.getattr(obj, argument) if isinstance(argument, str) else \
                self.undefined(obj=obj, name=argument)
        return super().getitem(obj, argument)


# --- filters ------------------------------------------------------------------------

def _defined(value: Any) -> Any:
    """Raise the usual "... is undefined" error for an undefined value."""
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()
    return value


def _number(value: Any) -> str:
    """``3`` -> ``3``, ``3.50`` -> ``3.5``, ``2.0`` -> ``2``; at most two decimals.
    Integers print exactly, however large (JSON integers have no size limit)."""
    if isinstance(_defined(value), bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    if isinstance(value, int):
        return str(value)
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _percent(value: Any) -> str:
    """A probability in [0, 1] as a percentage: ``0.92`` -> ``92%``."""
    if isinstance(_defined(value), bool) or not isinstance(value, int | float) \
            or not 0 <= value <= 1:
        raise ValueError(f"expected a probability between 0 and 1, got {value!r}")
    return _number(round(value * 100, 1)) + "%"


class _Escaped(str):
    """Text already escaped for Markdown and HTML (a filter's result): never escaped
    twice, so filters chain (``provider|md_escape``)."""

    __slots__ = ()


#: Characters that could make document text into markup: raw HTML, comments and
#: autolinks (``<``), entities (``&``), links and images (``[``, ``]``), code spans
#: (a backtick) and escapes (a backslash). ``>`` too, for viewers that are lax.
_MARKUP = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\\": "\\\\",
                         "`": "\\`", "[": "\\[", "]": "\\]"})
#: Markup the template itself writes through an expression (never escaped).
_TEMPLATE_MARKUP = frozenset({"<br>"})


def _one_line(value: Any) -> str:
    return " ".join(str(value).split())


def _escape(text: str) -> _Escaped:
    """``text`` as literal Markdown text: HTML and Markdown markup characters escaped,
    so ``<script>``, ``<img onerror=...>``, ``<!-- -->``, ``[x](javascript:...)`` and
    ``![x](http://...)`` show as the characters they are and never become markup."""
    return _Escaped(text.translate(_MARKUP))


def _inline(value: Any) -> str:
    """One line of literal Markdown text: whitespace (including newlines) collapsed,
    markup escaped (see :func:`_escape`)."""
    if isinstance(value, _Escaped):
        return _Escaped(_one_line(value))
    return _escape(_one_line(value))


def _md_escape(value: Any) -> str:
    """A Markdown table cell: :func:`_inline`, and ``|`` escaped."""
    return _Escaped(_inline(value).replace("|", "\\|"))


_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/@+-]*")


def _term(value: Any) -> str:
    """A lower-case identifier (``cloudwatch_role``) as a code span; other text as
    :func:`_md_escape` (so it is safe in a table cell too)."""
    text = _one_line(value)
    if _IDENTIFIER.fullmatch(text) and text == text.lower():
        return _Escaped(f"`{text}`")
    return _md_escape(text)


def _code(value: Any) -> str:
    """Any JSON value as a code span for a table cell: strings as they are, other values
    as compact JSON (``false``, ``[...]``), ``|`` escaped. A value with ``<`` or ``>``
    is escaped text instead (:func:`_md_escape`): no markup reaches the file verbatim,
    not even inside a code span."""
    text = value if isinstance(_defined(value), str) else json.dumps(
        value, sort_keys=True, ensure_ascii=False, separators=(", ", ": "))
    text = _one_line(text)
    if "<" in text or ">" in text:
        return _md_escape(text)
    text = text.replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return _Escaped(f"{fence}{pad}{text}{pad}{fence}")


def _label(value: Any) -> str:
    """``PARTIAL_SUCCESS`` / ``partial-success`` -> ``Partial success``."""
    text = _one_line(str(value).replace("_", " ").replace("-", " "))
    text = text[:1].upper() + text[1:].lower() if text.isupper() or text.islower() else text
    return _escape(text)


def _provider(value: Any) -> str:
    known = _PROVIDERS.get(str(value).lower())
    return _Escaped(known) if known is not None else _inline(value)


def _finalize(value: Any) -> Any:
    """Every expression's output: text no filter escaped is escaped here, so document
    text never reaches the SOW as markup, whatever the template forgets."""
    if isinstance(value, str) and not isinstance(value, _Escaped) \
            and value not in _TEMPLATE_MARKUP:
        return value.translate(_MARKUP)
    return value


# --- environment --------------------------------------------------------------------

class _ChoiceLoader(jinja2.ChoiceLoader):
    """A ChoiceLoader whose cached templates also go stale when a template of the
    same name appears in an earlier directory (a store's own template added while
    the process runs wins at once, as it would in a new process)."""

    load = jinja2.BaseLoader.load  # through get_source below, not each loader's own load

    def get_source(self, environment: jinja2.Environment, template: str
                   ) -> tuple[str, str | None, Any]:
        for i, loader in enumerate(self.loaders):
            try:
                source, filename, uptodate = loader.get_source(environment, template)
            except jinja2.TemplateNotFound:
                continue
            earlier = self.loaders[:i]

            def fresh(uptodate: Any = uptodate, earlier: Any = earlier) -> bool:
                if uptodate is not None and not uptodate():
                    return False
                for other in earlier:
                    try:
                        other.get_source(environment, template)
                    except jinja2.TemplateNotFound:
                        continue
                    return False
                return True

            return source, filename, fresh
        raise jinja2.TemplateNotFound(template)


@lru_cache(maxsize=32)
def _environment(search_path: tuple[str, ...]) -> jinja2.Environment:
    env = _SessionEnvironment(
        loader=_ChoiceLoader([jinja2.FileSystemLoader(p) for p in search_path]),
        undefined=_SessionUndefined,
        autoescape=False,
        finalize=_finalize,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(percent=_percent, number=_number, inline=_inline, md_escape=_md_escape,
                       term=_term, code=_code, label=_label, provider=_provider)
    return env


def _search_path(template_dir: Path | None) -> tuple[str, ...]:
    packaged = str(templates_dir())
    if template_dir is None:
        return (packaged,)
    user = Path(template_dir)
    if not user.is_dir():
        raise RenderError(f"SOW template directory {str(user)!r} does not exist")
    return (str(user.resolve()), packaged)


def _where_in_template(exc: BaseException, search_path: tuple[str, ...]) -> str:
    """`` (at sow_document.md.j2 line 42)`` from Jinja's rewritten traceback, or ``""``."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        for root in search_path:
            if frame.filename.startswith(root + "/"):
                return f" (at {frame.filename[len(root) + 1:]} line {frame.lineno})"
    return ""


_BLANK_RUNS = re.compile(r"\n{3,}")


def _tidy(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_RUNS.sub("\n\n", text).strip("\n") + "\n"


def render(documents: Mapping[str, Any], *, customer: str, version: Version,
           template_dir: Path | None, template_name: str) -> str:
    """The Statement of Work (see :func:`gitstore.core.render.render_sow`)."""
    context: dict[str, Any] = {}
    for name in sorted(documents):
        value = documents[name]
        if name in DOCUMENT_VARIABLES:
            if not isinstance(value, Mapping):
                raise RenderError(f"SOW template needs {name} to be a JSON object, "
                                  f"got {type(value).__name__}")
            context[DOCUMENT_VARIABLES[name]] = _wrap(value, (name,))
    context["documents"] = _wrap(
        {str(n): v for n, v in documents.items() if str(n).endswith(".json")}, ())
    context.update(customer=customer, version=version.document_version,
                   version_tag=str(version))

    search_path = _search_path(template_dir)
    env = _environment(search_path)
    try:
        template = env.get_template(template_name)
        text = template.render(context)
    except jinja2.TemplateNotFound as exc:
        raise RenderError(f"SOW template {exc.name!r} not found in "
                          f"{', '.join(search_path)}") from None
    except jinja2.TemplateSyntaxError as exc:
        where = exc.filename or exc.name or template_name
        raise RenderError(f"SOW template {where} line {exc.lineno}: "
                          f"syntax error: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        message = str(exc)
        if not message.startswith("SOW template"):
            message = f"SOW template {template_name}: {message}"
        raise RenderError(message + _where_in_template(exc, search_path)) from None
    except (jinja2.TemplateError, TypeError, ValueError, LookupError) as exc:
        raise RenderError(f"SOW template {template_name} failed: {exc}"
                          f"{_where_in_template(exc, search_path)}") from None
    return _tidy(text)

