"""One exit-code table: defined with the exception classes in gitstore.errors; the
README, the errors docstring and ``gitstore --help`` show exactly that data."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gitstore import errors
from gitstore.errors import (
    DIFFERENCES,
    EXIT_CODES,
    EXIT_STATUSES,
    INTERNAL,
    OK,
    GitStoreError,
    InvalidNameError,
    UsageError,
    error_classes,
    exit_code_table,
)

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN = re.compile(r"^<!-- exit-codes:.*-->$", re.M)
END = "<!-- /exit-codes -->"

#: Scripts depend on these numbers: changing one is a breaking change, on purpose here.
PINNED = {"ok": 0, "differences": 1, "usage": 2, "not_found": 3, "invalid_document": 4,
          "version_rule": 5, "conflict": 6, "integrity": 7, "too_large": 8, "storage": 9,
          "render": 10, "remote": 11, "rejected": 12, "key_unavailable": 13, "shredded": 14,
          "internal": 70}


def _literal_block(doc: str, intro: str) -> list[str]:
    """The indented ``::`` block after the paragraph starting with ``intro``."""
    lines = doc.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(intro))
    while not lines[start].rstrip().endswith("::"):
        start += 1
    block: list[str] = []
    for line in lines[start + 2:]:          # skip the blank line after "::"
        if line and not line.startswith("    "):
            break
        block.append(line[4:])
    while block and not block[-1]:
        block.pop()
    return block


def test_codes_are_pinned() -> None:
    assert EXIT_CODES == PINNED
    assert [s.code for s in EXIT_STATUSES] == sorted(PINNED.values())
    assert (OK.code, DIFFERENCES.code, INTERNAL.code) == (0, 1, 70)


def test_every_error_class_has_a_distinct_code_unless_it_shares_its_parents() -> None:
    owners: dict[int, type[GitStoreError]] = {}
    names: dict[str, type[GitStoreError]] = {}
    classes = list(error_classes())
    assert classes, "no GitStoreError subclasses found"
    for cls in classes:
        assert cls.exit_code == cls.status.code and cls.code_name == cls.status.name, cls
        if "status" not in vars(cls):
            parent = cls.__mro__[1]
            assert issubclass(parent, GitStoreError) and parent is not GitStoreError, cls
            assert (cls.exit_code, cls.code_name) == (parent.exit_code, parent.code_name), cls
            continue
        assert cls.exit_code not in (OK.code, DIFFERENCES.code, INTERNAL.code), cls
        assert cls.exit_code not in owners, (cls, owners.get(cls.exit_code))
        assert cls.code_name not in names, (cls, names.get(cls.code_name))
        owners[cls.exit_code] = names[cls.code_name] = cls
    assert InvalidNameError.exit_code == UsageError.exit_code
    assert issubclass(InvalidNameError, UsageError)


@pytest.mark.parametrize("cls", list(error_classes()), ids=lambda c: c.__name__)
def test_each_class_is_a_row_of_the_table(cls: type[GitStoreError]) -> None:
    assert cls.status in EXIT_STATUSES
    assert cls.exit_code in EXIT_CODES.values()
    assert EXIT_CODES[cls.code_name] == cls.exit_code


def test_readme_table_is_generated_from_the_data() -> None:
    text = README.read_text(encoding="utf-8")
    begin = BEGIN.search(text)
    assert begin, "README has no '<!-- exit-codes: ... -->' marker"
    section = text[begin.end():text.index(END, begin.end())].strip()
    expected = exit_code_table("markdown")
    assert section == expected, (
        "README exit-code table is out of date; replace the section between the markers "
        f"with gitstore.errors.exit_code_table('markdown'):\n{expected}")


def test_errors_docstring_table_is_generated_from_the_data() -> None:
    block = _literal_block(errors.__doc__ or "", "Exit codes")
    assert "\n".join(block) == exit_code_table(), (
        f"gitstore/errors.py docstring table is out of date; it should read:\n"
        f"{exit_code_table()}")


def test_errors_docstring_draws_the_exception_tree() -> None:
    drawn = []
    for line in _literal_block(errors.__doc__ or "", "The exception tree"):
        m = re.match(r"^([│├└─ ]*)(\w+)\s+(\d+)\s+(\w+)", line)
        assert m, f"unreadable tree line: {line!r}"
        drawn.append((len(m.group(1)) // 4, m.group(2), int(m.group(3)), m.group(4)))
    actual = [(0, "GitStoreError", GitStoreError.exit_code, GitStoreError.code_name)]
    actual += [(c.__mro__.index(GitStoreError), c.__name__, c.exit_code, c.code_name)
               for c in error_classes()]
    assert drawn == actual


def test_text_table_has_one_line_per_code() -> None:
    lines = exit_code_table().splitlines()
    assert [int(line.split()[0]) for line in lines] == [s.code for s in EXIT_STATUSES]
    assert all(len(line) <= 80 and "`" not in line for line in lines)
    with pytest.raises(ValueError):
        exit_code_table("html")  # type: ignore[arg-type]


def test_cli_help_shows_the_generated_table() -> None:
    """``gitstore --help`` prints :func:`exit_code_table` (whitespace aside)."""
    from click.testing import CliRunner

    from gitstore.cli.app import cli

    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    shown = {" ".join(line.split()) for line in result.output.splitlines()}
    missing = [line for line in exit_code_table().splitlines()
               if " ".join(line.split()) not in shown]
    assert not missing, ("gitstore --help should use gitstore.errors.exit_code_table(); "
                         f"lines missing: {missing}")
