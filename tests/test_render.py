"""Tests for gitstore.core.render: the SOW template rendered from the example session."""

from __future__ import annotations

import copy
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitstore.core.render import render_sow
from gitstore.core.versions import Version
from gitstore.errors import RenderError, UsageError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "session"
NAMES = ("conversation.json", "deployment_context.json", "session_metadata.json",
         "session_analytics.json")

Docs = dict[str, Any]


def load_example() -> Docs:
    return {name: json.loads((EXAMPLE / name).read_text(encoding="utf-8")) for name in NAMES}


_EXAMPLE = load_example()
_INFO = _EXAMPLE["session_metadata.json"]["session_info"]
CUSTOMER: str = _INFO["api_key"]
VERSION = Version.parse(_INFO["session_version"])


@pytest.fixture
def docs() -> Docs:
    return copy.deepcopy(_EXAMPLE)


def render(documents: Docs, **kwargs: Any) -> str:
    kwargs.setdefault("customer", CUSTOMER)
    kwargs.setdefault("version", VERSION)
    return render_sow(documents, **kwargs)


def inline(value: Any) -> str:
    return " ".join(str(value).split())


def section(text: str, number: int) -> str:
    """The body of ``## <number>. ...`` up to the next ``## `` heading."""
    match = re.search(rf"^## {number}\. .*?\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"section {number} missing"
    return match.group(1)


# --- content -------------------------------------------------------------------------

def test_header_follows_the_seed_layout(docs: Docs) -> None:
    # The seed's four header lines, each its own paragraph so that Markdown
    # viewers show them on separate lines.
    lines = render(docs).splitlines()
    assert lines[:9] == [
        "# Deployment Statement of Work",
        "",
        f"**Document Version**: {VERSION.document_version}",
        "",
        f"**Created**: {_INFO['completed_timestamp']}",
        "",
        f"**Customer**: {CUSTOMER}",
        "",
        f"**Session ID**: {_INFO['session_id']}",
    ]


def test_example_renders_every_recommendation_prerequisite_and_step(docs: Docs) -> None:
    text = render(docs)
    summary = docs["conversation.json"]["conversation_summary"]
    assert inline(summary["final_recommendation"]) in section(text, 1)
    for service in summary["services_discussed"]:
        assert inline(service) in section(text, 1)
    recommendations = docs["deployment_context.json"]["deployment_recommendations"]
    assert recommendations, "the example should have at least one recommendation"
    body = section(text, 3)
    for number, rec in enumerate(recommendations, 1):
        assert f"### 3.{number} {inline(rec['collector_type'])}" in body
        assert f"| Success probability | {round(rec['success_probability'] * 100)}%" in body \
            or f"{rec['success_probability'] * 100:.1f}%" in body
        for item in rec["prerequisites"]:
            assert f"- {inline(item)}" in body or f"- `{inline(item)}`" in body
        for step_number, step in enumerate(rec["implementation_steps"], 1):
            assert f"\n{step_number}. {inline(step)}\n" in body


def test_example_renders_validation_errors_estimates_and_risks(docs: Docs) -> None:
    text = render(docs)
    validation = docs["deployment_context.json"]["validation_results"]
    for gap in validation["gaps_identified"]:
        assert inline(gap) in section(text, 4)
    assert f"**Completion**: {validation['completion_percentage']}%" in section(text, 4)
    for item in docs["deployment_context.json"]["error_resolutions"]:
        assert inline(item["error_description"]).replace("|", "\\|") in section(text, 5)
    hours = docs["session_analytics.json"]["prediction_accuracy"]["estimated_time_hours"]
    if hours is not None:
        assert f"| Estimated effort | {hours:g} hour" in section(text, 6)
    for area in docs["session_analytics.json"]["learning_insights"]["challenge_areas"]:
        assert inline(area) in section(text, 7)
    assert "| Customer (" + CUSTOMER + ")" in section(text, 8)


def test_output_is_clean_markdown(docs: Docs) -> None:
    docs["deployment_context.json"]["error_resolutions"].append({
        "error_description": "pipe | in\r\nthe  description",
        "resolution_applied": "a|b",
        "success": False,
        "resolution_time_minutes": None,
    })
    text = render(docs)
    assert text.endswith("\n") and not text.endswith("\n\n")
    assert "\n\n\n" not in text and "\r" not in text
    assert all(line == line.rstrip() for line in text.splitlines())
    assert "| pipe \\| in the description | a\\|b | No | — |" in text
    # Every table row has as many unescaped cell separators as its header row.
    for table in re.findall(r"(?:^\|.*\n)+", text, re.M):
        counts = {len(re.findall(r"(?<!\\)\|", row)) for row in table.splitlines()}
        assert len(counts) == 1, table
    # The unresolved error shows up as an open risk.
    assert "- pipe | in the description" in section(text, 7)


def test_asset_configuration_values_are_code_spans(docs: Docs) -> None:
    asset = docs["deployment_context.json"]["cloud_assets_snapshot"]["assets"][0]
    asset["configuration"] = {"z": "has `tick` | pipe", "a": False, "m": [1, None]}
    row = next(line for line in section(render(docs), 2).splitlines()
               if line.startswith(f"| `{asset['id']}` |"))
    assert row.endswith("| a: `false`<br>m: `[1, null]`<br>z: ``has `tick` \\| pipe`` |")


def test_created_falls_back_to_last_turn_then_not_recorded(docs: Docs) -> None:
    docs["session_metadata.json"]["session_info"]["completed_timestamp"] = None
    turns = docs["conversation.json"]["conversation_turns"]
    turns.append(dict(turns[-1], turn_id=len(turns) + 1, timestamp="2031-02-03T04:05:06Z"))
    assert "**Created**: 2031-02-03T04:05:06Z\n" in render(docs)
    docs["conversation.json"]["conversation_turns"] = []
    assert "**Created**: _Not recorded._\n" in render(docs)


def test_version_may_be_a_string_with_its_v(docs: Docs) -> None:
    expected = render(docs, version=Version(2, 3, 4))
    assert "**Document Version**: 2.3.4\n" in expected
    assert render(docs, version="v2.3.4") == expected
    for bad in ("2.3.4", "2.3"):  # one grammar for every version argument: the v is required
        with pytest.raises(UsageError):
            render(docs, version=bad)


# --- determinism ---------------------------------------------------------------------

def shuffle_keys(value: Any, rnd: random.Random) -> Any:
    """The same JSON with every object's keys in a random order (arrays untouched)."""
    if isinstance(value, dict):
        keys = list(value)
        rnd.shuffle(keys)
        return {k: shuffle_keys(value[k], rnd) for k in keys}
    if isinstance(value, list):
        return [shuffle_keys(v, rnd) for v in value]
    return value


def test_rendering_twice_gives_the_same_bytes(docs: Docs) -> None:
    assert render(docs).encode() == render(copy.deepcopy(docs)).encode()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rnd=st.randoms(use_true_random=False),
       order=st.permutations(NAMES))
def test_key_order_does_not_matter(rnd: random.Random, order: list[str]) -> None:
    shuffled = {name: shuffle_keys(_EXAMPLE[name], rnd) for name in order}
    assert render(shuffled) == render(_EXAMPLE)


# --- strictness and errors -----------------------------------------------------------

def delete(docs: Docs, file: str, path: str) -> None:
    *parents, last = path.split(".")
    node: Any = docs[file]
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    del node[int(last) if last.isdigit() else last]


# Only what the schemas require can be missing here (the documents are then invalid);
# every optional field renders when absent (tests/test_defects_render.py).
@pytest.mark.parametrize(("file", "path", "shown"), [
    ("deployment_context.json", "deployment_recommendations.0.collector_type",
     "deployment_recommendations[0].collector_type"),
    ("deployment_context.json", "error_resolutions.0.error_description",
     "error_resolutions[0].error_description"),
    ("session_metadata.json", "session_info.session_id", "session_info.session_id"),
    ("conversation.json", "conversation_summary", "conversation_summary"),
    ("session_analytics.json", "prediction_accuracy.estimated_time_hours",
     "prediction_accuracy.estimated_time_hours"),
])
def test_missing_required_data_is_a_one_line_render_error(
        docs: Docs, file: str, path: str, shown: str) -> None:
    delete(docs, file, path)
    with pytest.raises(RenderError) as info:
        render(docs)
    message = str(info.value)
    assert message.startswith(f"SOW template needs {file}: {shown!r} is undefined")
    assert re.search(r"\(at sow_document\.md\.j2 line \d+\)$", message)
    assert "\n" not in message
    assert info.value.exit_code == 10


def test_missing_required_document_is_named(docs: Docs) -> None:
    del docs["deployment_context.json"]
    with pytest.raises(RenderError, match=r"^SOW template needs deployment_context\.json: "
                                          r"the document was not provided"):
        render(docs)


def test_documents_mapping_names_a_missing_document(docs: Docs, tmp_path: Path) -> None:
    (tmp_path / "docs.md.j2").write_text(
        "{{ documents['conversation.json'].session_id }}\n"
        "{{ documents['sow_extra.json'].x }}\n", encoding="utf-8")
    with pytest.raises(RenderError, match=r"^SOW template needs sow_extra\.json: the document "
                                          r"was not provided \(at docs\.md\.j2 line 2\)$"):
        render(docs, template_dir=tmp_path, template_name="docs.md.j2")


def test_document_that_is_not_an_object_is_refused(docs: Docs) -> None:
    docs["conversation.json"] = ["not", "an", "object"]
    with pytest.raises(RenderError, match=r"conversation\.json to be a JSON object"):
        render(docs)


def test_bad_value_is_a_render_error(docs: Docs) -> None:
    docs["deployment_context.json"]["deployment_recommendations"][0]["success_probability"] = 92
    with pytest.raises(RenderError, match=r"probability between 0 and 1, got 92 \(at "):
        render(docs)


@pytest.mark.parametrize(("file", "key", "number"), [
    ("deployment_context.json", "cloud_assets_snapshot", 2),
    ("deployment_context.json", "validation_results", 4),
    ("deployment_context.json", "error_resolutions", 5),
    ("session_analytics.json", "learning_insights", 7),
])
def test_absent_optional_section_renders_not_recorded(
        docs: Docs, file: str, key: str, number: int) -> None:
    assert "_Not recorded._" not in section(render(docs), number)
    del docs[file][key]
    assert section(render(docs), number).strip().startswith("_Not recorded._")


def test_absent_analytics_document_is_optional(docs: Docs) -> None:
    del docs["session_analytics.json"]
    text = render(docs)
    assert section(text, 6).strip() == "_Not recorded._"
    assert section(text, 7).strip() == "_Not recorded._"


def test_empty_and_null_values_read_sensibly(docs: Docs) -> None:
    context = docs["deployment_context.json"]
    context["deployment_recommendations"] = []
    context["error_resolutions"] = []
    context["validation_results"]["gaps_identified"] = []
    context["validation_results"]["completion_percentage"] = None
    docs["session_analytics.json"]["prediction_accuracy"]["estimated_time_hours"] = None
    text = render(docs)
    assert "No deployment recommendations were made" in section(text, 3)
    assert "**Completion**: Not measured" in section(text, 4)
    assert "No gaps were identified." in section(text, 4)
    assert "No errors were encountered" in section(text, 5)
    assert "| Estimated effort | Not estimated |" in section(text, 6)
    context["validation_results"]["validation_performed"] = False
    assert "Validation has not been performed yet." in section(render(docs), 4)


# --- templates -----------------------------------------------------------------------

def test_user_template_dir_overrides_the_packaged_template(docs: Docs, tmp_path: Path) -> None:
    (tmp_path / "sow_document.md.j2").write_text(
        "Custom SOW for {{ customer }} v{{ version }}\r\n"
        "{{ deployment_context.cloud_assets_snapshot.assets[0].configuration.items }}\n\n\n\n"
        "end", encoding="utf-8")
    first_asset = docs["deployment_context.json"]["cloud_assets_snapshot"]["assets"][0]
    first_asset["configuration"]["items"] = "a JSON key named items"
    text = render(docs, template_dir=tmp_path)
    assert text == (f"Custom SOW for {CUSTOMER} v{VERSION.document_version}\n"
                    "a JSON key named items\n\nend\n")


def test_user_template_dir_falls_back_to_packaged(docs: Docs, tmp_path: Path) -> None:
    (tmp_path / "other.md.j2").write_text("other", encoding="utf-8")
    assert render(docs, template_dir=tmp_path) == render(docs)
    assert render(docs, template_dir=tmp_path, template_name="other.md.j2") == "other\n"


def test_missing_template_names_the_directories_searched(docs: Docs, tmp_path: Path) -> None:
    with pytest.raises(RenderError) as info:
        render(docs, template_dir=tmp_path, template_name="nope.md.j2")
    message = str(info.value)
    assert "'nope.md.j2' not found" in message and str(tmp_path.resolve()) in message
    assert "\n" not in message


def test_missing_template_dir_is_an_error(docs: Docs, tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="does not exist"):
        render(docs, template_dir=tmp_path / "absent")


def test_template_syntax_error_names_file_and_line(docs: Docs, tmp_path: Path) -> None:
    (tmp_path / "broken.md.j2").write_text("# Title\n\n{% if customer %}\nno end\n",
                                           encoding="utf-8")
    with pytest.raises(RenderError) as info:
        render(docs, template_dir=tmp_path, template_name="broken.md.j2")
    message = str(info.value)
    assert "broken.md.j2 line " in message and "syntax error" in message
    assert "\n" not in message


def test_undefined_variable_in_user_template(docs: Docs, tmp_path: Path) -> None:
    (tmp_path / "typo.md.j2").write_text("line one\n{{ custmer }}\n", encoding="utf-8")
    with pytest.raises(RenderError, match=r"^SOW template typo\.md\.j2: 'custmer' is undefined "
                                          r"\(at typo\.md\.j2 line 2\)$"):
        render(docs, template_dir=tmp_path, template_name="typo.md.j2")
