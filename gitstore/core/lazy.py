"""Deferred imports: a heavy module is loaded when it is first used, not when the
module that needs it is imported.

Every ``gitstore`` command is a new process, and most commands need none of the
libraries behind validation, rendering and scanning (jsonschema, pydantic, jinja2,
detect-secrets, phonenumbers) nor SQLite: ``gitstore show`` reads a blob. So the
module that owns such a dependency binds it with :func:`module` instead of
importing it, always in this form, at module level::

    if TYPE_CHECKING:
        import jsonschema.validators as jsonschema_validators
    else:
        jsonschema_validators = lazy.module("jsonschema.validators")

The same applies to the few gitstore modules that exist to hold such a library's
subclasses (:mod:`gitstore.core.models` for pydantic,
:mod:`gitstore.core.templating` for jinja2, :mod:`gitstore.rules.detectors` for
detect-secrets): their users defer them the same way.

Invariants:

* creating a deferred module imports nothing; the first attribute read imports the
  real module through the normal import system (so ``sys.modules`` holds it from
  then on, never before) and every read returns the real module's attribute:
  deferral changes *when* a module is imported, never what runs;
* every deferred binding sits in the ``else`` of an ``if TYPE_CHECKING:`` that
  imports the same module under the same name, so mypy checks the real module's
  types, and the layer contract (import-linter) and the cycle check
  (``tests/test_structure.py``), which both count ``TYPE_CHECKING`` imports, see
  the dependency exactly as they would see a plain import.
  ``tests/test_startup.py`` checks that pairing for every use;
* only module objects are deferred, never a name imported from one (a class must
  exist to be subclassed, so a module that subclasses a library's class is itself
  the one deferred).
"""

from __future__ import annotations

import importlib
import threading
from types import ModuleType
from typing import Any

__all__ = ["Deferred", "module"]


class Deferred:
    """A stand-in for the module ``name``, imported on the first attribute read."""

    __slots__ = ("_lazy_lock", "_lazy_module", "_lazy_name")

    def __init__(self, name: str) -> None:
        self._lazy_name = name
        self._lazy_module: ModuleType | None = None
        self._lazy_lock = threading.Lock()

    def _lazy_load(self) -> ModuleType:
        loaded = self._lazy_module
        if loaded is None:
            with self._lazy_lock:
                loaded = self._lazy_module
                if loaded is None:
                    loaded = self._lazy_module = importlib.import_module(self._lazy_name)
        return loaded

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._lazy_load(), attr)

    def __dir__(self) -> list[str]:
        return dir(self._lazy_load())

    def __repr__(self) -> str:
        state = "loaded" if self._lazy_module is not None else "not loaded yet"
        return f"<deferred module {self._lazy_name!r} ({state})>"


def module(name: str) -> Any:
    """The module ``name`` (absolute), imported when one of its attributes is first
    read. Typed ``Any``: bind it in the ``else`` of the ``if TYPE_CHECKING:`` that
    imports the real module (see the module docstring)."""
    return Deferred(name)
