"""Fast acceptance of a JSON document by a JSON Schema, without loading jsonschema.

:func:`conforms` decides "is ``data`` certainly valid under ``schema``?" by the rules
of :mod:`gitstore.core.schema`'s validator (jsonschema's draft 2020-12, made strict:
:func:`is_integer`, :func:`is_number`, :func:`compile_pattern`'s ECMA-262 ``$``,
``date-time`` = :func:`gitstore.core.timestamps.is_timestamp`), so that
:func:`gitstore.core.schema.validate` loads jsonschema only for what it cannot accept.

Invariants:

* sound for acceptance: True only when jsonschema's strict validator reports no
  violation for ``data`` (and raises nothing);
* False decides nothing: ``data`` is invalid, or valid in a way not proved here (an
  ``enum``/``const`` member equal to the value but of another JSON type, as in
  jsonschema's ``1 == 1.0``; an array or object under ``enum``/``const``; a nesting
  past the recursion limit);
* conservative about the schema: it is compiled once, whole (cached by identity: do
  not mutate a schema once passed here), and any keyword but ``type``,
  ``properties``, ``required``, ``additionalProperties``, ``items``, ``anyOf``,
  ``$ref`` (``#/$defs/Name`` only, with its siblings as in 2020-12), ``enum``,
  ``const``, the four numeric bounds, ``minLength``, ``maxLength``, ``pattern``,
  ``format`` (``date-time`` only), the annotations and, at the root, ``$schema``
  (2020-12), ``$id`` and ``$defs`` makes every answer False.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import Any, TypeGuard, TypeVar

from gitstore.core.timestamps import is_timestamp

__all__ = ["compile_pattern", "conforms", "is_integer", "is_number"]

Check = Callable[[object], bool]
T = TypeVar("T")

_DRAFT = "https://json-schema.org/draft/2020-12/schema"
_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$comment",
                          "deprecated", "readOnly", "writeOnly"})
_ROOT_ONLY = frozenset({"$schema", "$id", "$defs"})
_OBJECT = ("properties", "required", "additionalProperties")
_NUMBER = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_STRING = ("minLength", "maxLength", "pattern", "format")
_KNOWN = frozenset({"type", "items", "anyOf", "$ref", "enum", "const",
                    *_OBJECT, *_NUMBER, *_STRING})
_REF = re.compile(r"#/\$defs/([A-Za-z0-9_.-]+)")


def is_integer(instance: object) -> bool:
    """JSON ``integer``: an int, not a bool (a whole float such as ``5.0`` is not)."""
    return isinstance(instance, int) and not isinstance(instance, bool)


def is_number(instance: object) -> TypeGuard[int | float]:
    """JSON ``number``: a finite float or an int a float can hold; never a bool."""
    if isinstance(instance, bool):
        return False
    if isinstance(instance, int):
        try:
            float(instance)
        except OverflowError:
            return False
        return True
    return isinstance(instance, float) and math.isfinite(instance)


@cache
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """``pattern`` as a Python regex with ECMA-262's final ``$`` (the very end of the
    input, where Python's ``$`` would also accept a trailing newline)."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


class _Unsupported(Exception):
    """The schema uses something :func:`conforms` does not decide."""


def _yes(_instance: object) -> bool:
    return True


def _no(_instance: object) -> bool:
    return False


_TYPES: dict[str, Check] = {
    "string": lambda x: isinstance(x, str), "integer": is_integer, "number": is_number,
    "boolean": lambda x: isinstance(x, bool), "null": lambda x: x is None,
    "array": lambda x: isinstance(x, list), "object": lambda x: isinstance(x, dict),
}

# Hot paths loop with `for` (or all(map(...))): twice as fast as all() over a generator.


def _every(checks: Sequence[Callable[[T], bool]]) -> Callable[[T], bool]:
    """All of ``checks``, tried in order up to the first that fails."""
    if len(checks) <= 1:
        return checks[0] if checks else _yes
    every = tuple(checks)

    def check(x: T) -> bool:
        for c in every:  # noqa: SIM110 (hot path, see above)
            if not c(x):
                return False
        return True
    return check


def _some(checks: Sequence[Check]) -> Check:
    """Any of ``checks``, tried in order up to the first that passes."""
    some = tuple(checks)

    def check(x: object) -> bool:
        for c in some:  # noqa: SIM110 (hot path, see above)
            if c(x):
                return True
        return False
    return check


def _type(value: object) -> Check:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) and n in _TYPES for n in names):
        raise _Unsupported
    return _TYPES[names[0]] if len(names) == 1 else _some([_TYPES[n] for n in names])


def _same(member: object, x: object) -> bool:
    """``member`` equals ``x`` and is of its JSON type, so jsonschema's equality agrees."""
    if x is None or isinstance(x, bool):
        return member is x
    if isinstance(x, int):
        return is_integer(member) and member == x
    return isinstance(x, float) and isinstance(member, float) and member == x


def _enum(members: object) -> Check:
    if not isinstance(members, list) or not all(
            m is None or isinstance(m, (str, bool, int, float, list, dict)) for m in members):
        raise _Unsupported
    strings = frozenset(m for m in members if isinstance(m, str))
    scalars = tuple(m for m in members if not isinstance(m, (str, list, dict)))
    return lambda x: x in strings if isinstance(x, str) else any(_same(m, x) for m in scalars)


def _numbers(schema: Mapping[str, Any]) -> Check:
    """The bounds, which jsonschema applies to a strict ``number`` only."""
    bounds = [schema.get(k) for k in _NUMBER]
    if not all(b is None or is_integer(b) or isinstance(b, float) for b in bounds):
        raise _Unsupported
    low, high, above, below = bounds

    def check(x: object) -> bool:
        return not is_number(x) or not (
            (low is not None and x < low) or (high is not None and x > high)
            or (above is not None and x <= above) or (below is not None and x >= below))
    return check


def _strings(schema: Mapping[str, Any]) -> Check:
    """Length, pattern and format, which constrain strings only."""
    tests: list[Callable[[str], bool]] = []
    shortest, longest = schema.get("minLength", 0), schema.get("maxLength")
    if not is_integer(shortest) or not (longest is None or is_integer(longest)):
        raise _Unsupported
    if shortest > 0:
        tests.append(lambda s: len(s) >= shortest)
    if longest is not None:
        tests.append(lambda s: len(s) <= longest)
    if "pattern" in schema:
        if not isinstance(schema["pattern"], str):
            raise _Unsupported
        try:
            regex = compile_pattern(schema["pattern"])
        except re.error:
            raise _Unsupported from None
        tests.append(lambda s: regex.search(s) is not None)
    if schema.get("format", "date-time") != "date-time":
        raise _Unsupported
    if "format" in schema:
        tests.append(is_timestamp)
    every = _every(tests)
    return lambda x: not isinstance(x, str) or every(x)


class _Compiler:
    """Turns one root schema into a predicate; each ``$ref`` target is compiled once."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        defs, base = root.get("$defs", {}), root.get("$id", "")
        if not isinstance(defs, dict) or root.get("$schema", _DRAFT) != _DRAFT \
                or not isinstance(base, str) or "#" in base:
            raise _Unsupported
        self.defs = defs
        self.refs: dict[str, list[Check]] = {}  # name -> [its predicate] ([] while compiling)

    def ref(self, ref: object) -> Check:
        match = _REF.fullmatch(ref) if isinstance(ref, str) else None
        if match is None or match[1] not in self.defs:
            raise _Unsupported
        cell = self.refs.get(match[1])
        if cell is None:
            cell = self.refs[match[1]] = []
            cell.append(self.schema(self.defs[match[1]]))
        return cell[0] if cell else lambda x: cell[0](x)  # recursive: bound once compiled

    def schema(self, schema: object, root: bool = False) -> Check:
        if schema is True or schema is False:
            return _yes if schema else _no
        if not isinstance(schema, dict):  # as jsonschema tells a schema (additionalProperties)
            raise _Unsupported
        for key in schema:
            if key not in _KNOWN and key not in _ANNOTATIONS and not (root and key in _ROOT_ONLY):
                raise _Unsupported
        checks: list[Check] = []
        if "type" in schema:
            checks.append(_type(schema["type"]))
        if any(k in schema for k in _OBJECT):
            checks.append(self.keys(schema))
        if "items" in schema:
            checks.append(self.items(schema["items"]))
        if "$ref" in schema:
            checks.append(self.ref(schema["$ref"]))
        if "anyOf" in schema:
            if not isinstance(schema["anyOf"], list):
                raise _Unsupported
            checks.append(_some([self.schema(b) for b in schema["anyOf"]]))
        if "enum" in schema:
            checks.append(_enum(schema["enum"]))
        if "const" in schema:
            checks.append(_enum([schema["const"]]))
        if any(k in schema for k in _NUMBER):
            checks.append(_numbers(schema))
        if any(k in schema for k in _STRING):
            checks.append(_strings(schema))
        return _every(checks)

    def keys(self, schema: Mapping[str, Any]) -> Check:
        """``properties``, ``required`` and ``additionalProperties`` of one schema."""
        properties, required = schema.get("properties", {}), schema.get("required", [])
        if not isinstance(properties, dict) or not isinstance(required, list) \
                or not all(isinstance(r, str) for r in required):
            raise _Unsupported
        named = {key: self.schema(sub) for key, sub in properties.items()}
        checked = tuple((k, c) for k, c in named.items() if c is not _yes)
        needed = tuple(required)
        extra = self.schema(schema.get("additionalProperties", True))

        def check(x: object) -> bool:
            if not isinstance(x, dict):
                return True
            for key in needed:
                if key not in x:
                    return False
            if extra is _yes:
                for key, c in checked:  # noqa: SIM110 (hot path, see above)
                    if key in x and not c(x[key]):
                        return False
                return True
            for key, value in x.items():  # noqa: SIM110 (hot path, see above)
                if not named.get(key, extra)(value):
                    return False
            return True
        return check

    def items(self, items: object) -> Check:
        each = self.schema(items)
        return _yes if each is _yes else lambda x: not isinstance(x, list) or all(map(each, x))


#: id(schema) -> (schema, its predicate or None: unsupported); the entry keeps the id unique.
_compiled: dict[int, tuple[Mapping[str, Any], Check | None]] = {}


def conforms(schema: Mapping[str, Any], data: object) -> bool:
    """True only if ``data`` is certainly valid under ``schema`` (see the module
    invariants); False when it is invalid or not provably valid."""
    entry = _compiled.get(id(schema))
    if entry is None or entry[0] is not schema:
        try:
            entry = (schema, _Compiler(schema).schema(schema, root=True))
        except (_Unsupported, RecursionError):
            entry = (schema, None)
        if len(_compiled) >= 32:  # a handful of schemas in real use
            _compiled.clear()
        _compiled[id(schema)] = entry
    try:
        return entry[1] is not None and entry[1](data)
    except RecursionError:
        return False
