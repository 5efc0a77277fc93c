"""JSON Schemas of the session documents, generated from :mod:`gitstore.core.models`.

The schemas (JSON Schema draft 2020-12) are *generated* from the pydantic
models and committed as ``schemas/<name>.schema.json``; regenerate them with
``python -m gitstore.core.schemagen --write`` and check them in CI with
``python -m gitstore.core.schemagen --check`` (exit status 1 if a file is stale).

Invariants:

* model and schema accept exactly the same JSON documents. The validator built
  here therefore uses the same rules as the strict models:

  - ``integer`` excludes floats (``5.0``) and booleans;
  - ``number`` excludes booleans, NaN, infinities and integers too large to be
    a float;
  - ``date-time`` is :func:`gitstore.core.timestamps.parse_timestamp` (the models'
    own; RFC 3339 with a timezone), not one of jsonschema's optional format libraries;
  - ``pattern`` uses ECMA-262 end anchoring: a final ``$`` matches only at the
    very end of the string (Python's ``$`` would also accept a trailing ``\\n``,
    which the models' Rust regex engine refuses);

* :func:`validate` reports *every* violation, not just the first, each with the
  RFC 6901 pointer of the failing instance (``""`` for the document root) and a
  short one-line message, sorted by pointer (array indices numerically);
* the schema files are canonical JSON (:func:`gitstore.core.canonical.dumps`), and
  :func:`load` reads the committed files, so what is validated is what is
  published;
* :func:`validate` first asks :func:`gitstore.core.conform.conforms`, an exact
  interpreter of these schemas that can only *accept* (True means jsonschema reports
  nothing; the type, pattern and ``date-time`` rules above are defined there, once,
  for both); only a document it does not accept, an invalid one say, goes through
  jsonschema (:func:`validate_full`), so the violations and messages are always
  jsonschema's;
* importing this module loads neither jsonschema nor pydantic nor the models
  (:mod:`gitstore.core.lazy`), and validating a valid document loads none of them
  either: the validator class is made on the first :func:`validate_full` (the first
  document that is not provably valid), each document's validator is compiled once
  per process (:func:`_validator`), and the models are loaded by the first model
  check or generation, so a command that validates only valid documents, or
  nothing, pays for none of it.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitstore.core import canonical, conform, lazy
from gitstore.core.names import check_document
from gitstore.core.resources import schemas_dir
from gitstore.core.timestamps import TIMESTAMP_RANGE, is_timestamp, timestamp_problem
from gitstore.errors import InvalidDocumentError, Violation

if TYPE_CHECKING:
    import argparse

    # jsonschema ships no type information; types-jsonschema may or may not be installed.
    import jsonschema  # type: ignore[import-untyped, unused-ignore]
    import jsonschema.validators as jsonschema_validators  # type: ignore[import-untyped, unused-ignore]
    import pydantic
    import pydantic.json_schema as pydantic_json_schema
    from jsonschema.exceptions import (  # type: ignore[import-untyped, unused-ignore]
        ValidationError as SchemaError,
    )
    from jsonschema.protocols import Validator  # type: ignore[import-untyped, unused-ignore]
    from pydantic import BaseModel

    from gitstore.core import models
else:
    argparse = lazy.module("argparse")  # for main() only
    jsonschema = lazy.module("jsonschema")
    jsonschema_validators = lazy.module("jsonschema.validators")
    pydantic = lazy.module("pydantic")
    pydantic_json_schema = lazy.module("pydantic.json_schema")
    models = lazy.module("gitstore.core.models")

__all__ = [
    "DRAFT",
    "SCHEMA_VERSION",
    "generate",
    "load",
    "main",
    "model_violations",
    "parse_model",
    "schema_filename",
    "validate",
    "validate_full",
]

SCHEMA_VERSION = "1"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
HOOK = "schema"

_SOURCE_SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"


def _document(filename: str) -> str:
    return check_document(filename, allow_sow=False)


def schema_filename(filename: str) -> str:
    """``conversation.json`` -> ``conversation.schema.json``."""
    return _document(filename).removesuffix(".json") + ".schema.json"


# --------------------------------------------------------------------------- generation


@cache
def _generator() -> type[pydantic_json_schema.GenerateJsonSchema]:
    """Pydantic's generator minus noise: no per-field titles, no ``default: null``
    (a class made on first use: pydantic is loaded only by what generates)."""

    class Generator(pydantic_json_schema.GenerateJsonSchema):
        def field_title_should_be_set(self, schema: Any) -> bool:
            return False

        def default_schema(self, schema: Any) -> pydantic_json_schema.JsonSchemaValue:
            result = super().default_schema(schema)
            if "default" in result and result["default"] is None:
                del result["default"]
            return result

    return Generator


def generate(filename: str) -> dict[str, Any]:
    """Generate the JSON Schema of document ``filename`` from its model."""
    filename = _document(filename)
    model = models.MODELS[filename]
    body = model.model_json_schema(schema_generator=_generator())
    doc = (model.__doc__ or "").strip().splitlines()[0]
    return {
        "$schema": DRAFT,
        "$id": f"urn:gitstore:schema:{SCHEMA_VERSION}:{filename}",
        **body,
        "title": f"gitstore {filename}",
        "description": (
            f"{doc} Schema version {SCHEMA_VERSION}, generated from gitstore.core.models "
            "(python -m gitstore.core.schemagen --write); unknown fields are allowed and kept."
        ),
    }


@cache
def load(filename: str) -> dict[str, Any]:
    """The committed schema of ``filename`` (read once, then cached: do not mutate it)."""
    path = schemas_dir() / schema_filename(filename)
    schema = canonical.loads(path.read_bytes())
    if not isinstance(schema, dict):
        raise ValueError(f"{path} is not a JSON object")
    return schema


# --------------------------------------------------------------------------- validation


def _is_integer(_checker: Any, instance: object) -> bool:
    return conform.is_integer(instance)


def _is_number(_checker: Any, instance: object) -> bool:
    return conform.is_number(instance)


def _pattern(validator: Any, pattern: str, instance: object, _schema: Any) -> Iterator[SchemaError]:
    # ECMA-262 (and the models' Rust engine): '$' is the very end of the input.
    if isinstance(instance, str) and conform.compile_pattern(pattern).search(instance) is None:
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


def _is_date_time(instance: object) -> bool:
    # Formats only constrain strings; a non-string is reported by "type".
    return not isinstance(instance, str) or is_timestamp(instance)


@cache
def _strict() -> tuple[Any, Any]:
    """The validator class with the models' rules and its format checker, made once,
    on the first validation (loading jsonschema then, not at import)."""
    checker = jsonschema.FormatChecker(formats=())
    checker.checks("date-time")(_is_date_time)
    base = jsonschema.Draft202012Validator
    strict = jsonschema_validators.extend(
        base,
        validators={"pattern": _pattern},
        type_checker=base.TYPE_CHECKER.redefine_many(
            {"integer": _is_integer, "number": _is_number}
        ),
    )
    return strict, checker


@cache
def _validator(filename: str) -> Validator:
    """The compiled validator of ``filename``: built once per process, on first use."""
    strict, checker = _strict()
    return strict(load(filename), format_checker=checker)


_JSON_TYPES = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"),
               (list, "array"), (dict, "object"), (type(None), "null"))


def _json_type(instance: object) -> str:
    for cls, name in _JSON_TYPES:
        if isinstance(instance, cls):
            if name == "number" and isinstance(instance, float) and not math.isfinite(instance):
                return "non-finite number"
            return name
    return type(instance).__name__


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _pointer(path: Sequence[str | int]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def _expected(types: object) -> str:
    return " or ".join(types) if isinstance(types, list) else str(types)


def _message(error: SchemaError, or_null: bool = False) -> str:
    """One short line for ``error``; ``or_null``: the failing schema also allowed null."""
    kind, value, instance = error.validator, error.validator_value, error.instance
    null, nor_null = (" or null", " nor null") if or_null else ("", "")
    if kind == "type":
        return f"expected {_expected(value)}{null}, got {_json_type(instance)}"
    if kind == "required":
        return str(error.message)
    if kind == "enum" and isinstance(value, list):
        return f"{_short(instance)} is not one of {', '.join(map(str, value))}{nor_null}"
    if kind == "format":
        if timestamp_problem(instance) == TIMESTAMP_RANGE:
            return f"{_short(instance)} is {TIMESTAMP_RANGE}{nor_null}"
        return f"{_short(instance)} is not an RFC 3339 date-time with timezone{nor_null}"
    if kind == "pattern":
        return f"{_short(instance)} does not match {value}"
    if kind == "minLength" and value == 1:
        return "must not be empty"
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        word = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">",
                "exclusiveMaximum": "<"}[str(kind)]
        return f"{_short(instance)} is out of range: must be {word} {value}"
    text = " ".join(str(error.message).split())
    return text if len(text) <= 160 else text[:157] + "..."


def _flatten(error: SchemaError, or_null: bool = False) -> Iterator[tuple[str, str]]:
    """Yield (pointer, message) for ``error``, opening up ``anyOf``/``oneOf``.

    For a nullable field (``anyOf: [X, {"type": "null"}]``) the errors against
    ``X`` are reported, each saying "or null" where that matters, instead of
    jsonschema's "is not valid under any of the given schemas".
    """
    if error.validator in ("anyOf", "oneOf") and error.context:
        branches = error.validator_value if isinstance(error.validator_value, list) else []
        null_branches = {i for i, b in enumerate(branches) if b == {"type": "null"}}
        real = [e for e in error.context if e.relative_schema_path[0] not in null_branches]
        if {e.relative_schema_path[0] for e in real} == set(range(len(branches))) - null_branches \
                and len(branches) - len(null_branches) == 1:
            for sub in real:
                same_instance = len(sub.relative_path) == 0
                yield from _flatten(sub, or_null=bool(null_branches) and same_instance)
            return
        yield _pointer(list(error.absolute_path)), "does not match any allowed alternative"
        return
    yield _pointer(list(error.absolute_path)), _message(error, or_null)


def _sort_key(v: Violation) -> tuple[tuple[tuple[int, int, str], ...], str]:
    parts = v.pointer.split("/")[1:] if v.pointer else []
    key = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)
    return key, v.message


def validate(filename: str, data: Any) -> list[Violation]:
    """Every schema violation of ``data`` as document ``filename`` (empty: valid).

    Same answer as :func:`validate_full`; a document :mod:`gitstore.core.conform`
    proves valid is answered without jsonschema."""
    filename = _document(filename)
    if conform.conforms(load(filename), data):
        return []
    return validate_full(filename, data)


def validate_full(filename: str, data: Any) -> list[Violation]:
    """:func:`validate` by jsonschema alone, always (loading it on the first call)."""
    filename = _document(filename)
    found = {
        Violation(file=filename, pointer=pointer, message=message, hook=HOOK)
        for error in _validator(filename).iter_errors(data)
        for pointer, message in _flatten(error)
    }
    return sorted(found, key=_sort_key)


# --------------------------------------------------------------------------- models


def _model_pointer(data: Any, loc: Sequence[str | int]) -> str:
    # pydantic's loc mixes real keys with union/validator tags ("none",
    # "function-before[...]"); keep only the parts that exist in the data. A
    # missing required key is not in the data either: the pointer then names
    # the object that lacks it, as jsonschema's does.
    path: list[str | int] = []
    node = data
    for part in loc:
        in_object = isinstance(node, Mapping) and isinstance(part, str) and part in node
        in_array = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_object or in_array:
            node = node[part]
            path.append(part)
    return _pointer(path)


def model_violations(filename: str, data: Any) -> list[Violation]:
    """The model's view of ``data``: one violation per pydantic error (empty: valid)."""
    filename = _document(filename)
    try:
        models.MODELS[filename].model_validate(data)
    except pydantic.ValidationError as exc:
        errors = [(_model_pointer(data, err["loc"]), err) for err in exc.errors(include_url=False)]
    else:
        return []
    # An optional non-null field is a union with None; its "should be None" arm
    # only adds noise next to the real errors at or below the same place.
    real = [pointer for pointer, err in errors if err["type"] != "none_required"]

    def noise(pointer: str, err: Any) -> bool:
        return err["type"] == "none_required" and any(
            p == pointer or p.startswith(pointer + "/") for p in real)

    found = {
        Violation(file=filename, pointer=pointer, hook=HOOK,
                  message=" ".join(str(err["msg"]).removeprefix("Value error, ").split()))
        for pointer, err in errors
        if not noise(pointer, err)
    }
    return sorted(found, key=_sort_key)


def parse_model(filename: str, data: Any) -> BaseModel:
    """Validate ``data`` with the model of ``filename`` and return the instance.

    Raises :class:`InvalidDocumentError` listing every problem when invalid.
    """
    filename = _document(filename)
    try:
        return models.MODELS[filename].model_validate(data)
    except pydantic.ValidationError:
        raise InvalidDocumentError(model_violations(filename, data),
                                   f"{filename} does not match its model") from None


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gitstore.core.schemagen --write|--check [--dir DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m gitstore.core.schemagen",
                                     description="Generate the JSON Schemas from the models.")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="write schemas/*.schema.json")
    mode.add_argument("--check", action="store_true", help="exit 1 if any schema is stale")
    parser.add_argument("--dir", type=Path, default=_SOURCE_SCHEMAS_DIR,
                        help="schema directory (default: the checkout's schemas/)")
    args = parser.parse_args(argv)
    stale = []
    for filename in models.MODELS:
        path: Path = args.dir / schema_filename(filename)
        text = canonical.dumps(generate(filename))
        current = path.read_bytes() if path.is_file() else None
        if current == text:
            continue
        if args.write:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text)
            print(f"wrote {path}")
        else:
            stale.append(path)
            print(f"stale: {path}", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
