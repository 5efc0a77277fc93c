"""The public API is exactly ``gitstore.__all__`` (httpx-style).

Adding or removing a public name is a decision: change ``EXPECTED`` below in the same
commit, and document the name (a docstring, or for a type alias a ``#:`` comment or a
string right after its assignment in the module that defines it).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import types
from pathlib import Path
from typing import Any

import pytest

import gitstore

EXPECTED = {
    "Authorship",
    "ConflictError",
    "Customer",
    "GitStoreError",
    "Hook",
    "Identity",
    "InputTooLargeError",
    "IntegrityError",
    "InvalidDocumentError",
    "InvalidNameError",
    "KeyUnavailableError",
    "LogEntry",
    "NotFoundError",
    "PendingMerge",
    "Pipeline",
    "Plan",
    "Proposal",
    "RejectedError",
    "RemoteError",
    "RenderError",
    "Resumed",
    "Scenario",
    "Session",
    "ShreddedError",
    "Snapshot",
    "StorageError",
    "Store",
    "UsageError",
    "Version",
    "VersionInfo",
    "VersionRuleError",
    "Violation",
    "Writer",
    "Written",
    "__version__",
}

_TYPE_ALIAS = getattr(ast, "TypeAlias", ast.AnnAssign)   # "type X = ..." (Python 3.12+)
ROOT = Path(gitstore.__file__).resolve().parent.parent


def test_all_is_exactly_the_expected_public_api() -> None:
    assert len(gitstore.__all__) == len(set(gitstore.__all__)), "duplicates in __all__"
    assert set(gitstore.__all__) == EXPECTED, (
        f"added: {sorted(set(gitstore.__all__) - EXPECTED)}; "
        f"removed: {sorted(EXPECTED - set(gitstore.__all__))}")
    assert list(gitstore.__all__) == sorted(gitstore.__all__), "keep __all__ sorted"


def test_star_import_gives_every_name() -> None:
    namespace: dict[str, Any] = {}
    exec("from gitstore import *", namespace)
    assert set(namespace) >= EXPECTED


def test_nothing_public_looking_outside_all() -> None:
    public_looking = set()
    for name in {*vars(gitstore), *dir(gitstore)}:  # dir() names the lazy ones too
        value = getattr(gitstore, name)
        if name.startswith("_") or type(value).__module__ == "__future__":
            continue
        if isinstance(value, types.ModuleType) and value.__name__.startswith("gitstore."):
            continue
        public_looking.add(name)
    assert public_looking == EXPECTED - {"__version__"}, (
        f"exported but not in __all__: {sorted(public_looking - EXPECTED)}")


def test_version() -> None:
    from gitstore.version import __version__

    assert gitstore.__version__ == __version__
    assert re.fullmatch(r"\d+\.\d+\.\d+(?:[.+-]\w+)*", __version__)


def _defining_modules() -> dict[str, str]:
    """Public name -> the gitstore module gitstore/__init__.py imports it from."""
    tree = ast.parse((ROOT / "gitstore" / "__init__.py").read_text(encoding="utf-8"))
    return {alias.asname or alias.name: node.module
            for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
            for alias in node.names}


def _attribute_documented(module: str, name: str) -> bool:
    """``#: doc`` above ``name = ...`` or a string statement right after it."""
    path = ROOT.joinpath(*module.split(".")).with_suffix(".py")
    if not path.exists():
        path = ROOT.joinpath(*module.split("."), "__init__.py")
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    body = ast.parse(source).body
    for i, node in enumerate(body):
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, ast.AnnAssign)
                   else [node.name] if isinstance(node, _TYPE_ALIAS)
                   else [])
        if not any(isinstance(t, ast.Name) and t.id == name for t in targets):
            continue
        if node.lineno >= 2 and lines[node.lineno - 2].lstrip().startswith("#:"):
            return True
        after = body[i + 1] if i + 1 < len(body) else None
        return (isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str) and bool(after.value.value.strip()))
    return False


@pytest.mark.parametrize("name", sorted(EXPECTED - {"__version__"}))
def test_every_public_name_is_documented(name: str) -> None:
    value = getattr(gitstore, name)
    if inspect.isclass(value) or inspect.isfunction(value):
        doc = vars(value).get("__doc__") if inspect.isclass(value) else value.__doc__
        generated = (dataclasses.is_dataclass(value) and doc is not None
                     and doc.startswith(f"{value.__name__}("))
        assert doc and doc.strip() and not generated, f"{name} has no docstring of its own"
    else:
        module = _defining_modules().get(name)
        assert module, f"{name} is not imported by name in gitstore/__init__.py"
        assert _attribute_documented(module, name), (
            f"{name} ({module}) needs a '#:' comment above it or a docstring after it")
