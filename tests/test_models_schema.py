"""Models and JSON Schemas: examples, the spec's own JSON, generation, agreement.

The central property: for every JSON document, the pydantic model accepts it
exactly when the committed JSON Schema (with gitstore's strict validator)
does. Valid documents are generated from the schemas themselves, then mutated
in targeted ways; both sides must agree, and for targeted mutations both must
give the expected answer.
"""

from __future__ import annotations

import copy
import math
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator  # type: ignore[import-untyped, unused-ignore]

from gitstore.core import canonical
from gitstore.core.models import (
    MODELS,
    CompletionStatus,
    Conversation,
    SessionAnalytics,
    SessionMetadata,
    is_timestamp,
    parse_timestamp,
)
from gitstore.core.names import COMPLETION_STATUSES
from gitstore.core.schema import (
    DRAFT,
    SCHEMA_VERSION,
    generate,
    load,
    main,
    model_violations,
    parse_model,
    schema_filename,
    validate,
)
from gitstore.errors import InvalidDocumentError, Violation

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DOCS = list(MODELS)
SID = "orchestrator-session-4f1c2d9e-8b7a-4e21-9c3d-5a6b7c8d9e0f"


def read(path: Path) -> Any:
    return canonical.loads(path.read_bytes())


def schema_ok(filename: str, data: Any) -> bool:
    return not validate(filename, data)


def model_ok(filename: str, data: Any) -> bool:
    return not model_violations(filename, data)


def as_conversation(turns: list[Any]) -> dict[str, Any]:
    return {"session_id": SID, "conversation_turns": turns,
            "conversation_summary": {"total_turns": len(turns)}}


def parse_ts(text: str) -> datetime:
    return parse_timestamp(text)


# --------------------------------------------------------------------------- the spec's examples

SEED_DOCUMENTS: dict[str, Any] = {
    "conversation.json": {
        "session_id": "orchestrator-session-{uuid}",
        "conversation_turns": [
            {
                "turn_id": 1,
                "timestamp": "2025-01-15T10:30:00Z",
                "user_input": {
                    "query": "What collector should I use for my AWS API Gateway?",
                    "command": None,
                    "parameters": {},
                },
                "agent_response": {
                    "orchestrator_response": "...",
                    "sub_agents_invoked": ["deployment-advisor"],
                    "processing_time_seconds": 23.5,
                    "confidence_score": 8,
                },
                "decision_points": [
                    {"decision": "cloud_provider_identification", "value": "aws",
                     "confidence": 0.95}
                ],
            }
        ],
        "conversation_summary": {
            "total_turns": 5,
            "total_duration_minutes": 12,
            "primary_cloud_provider": "aws",
            "services_discussed": ["api-gateway", "lambda", "cloudwatch"],
            "final_recommendation": "AWS API Gateway Enhanced Collector",
        },
    },
    "deployment_context.json": {
        "cloud_assets_snapshot": {
            "timestamp": "2025-01-15T10:30:00Z",
            "assets": [
                {
                    "id": "api-gw-12345",
                    "type": "api_gateway",
                    "provider": "aws",
                    "configuration": {"name": "production-api", "stage": "v1",
                                      "integration_type": "lambda"},
                }
            ],
        },
        "deployment_recommendations": [
            {
                "collector_type": "AWS API Gateway Enhanced Collector",
                "complexity_score": 5,
                "confidence_level": 8,
                "success_probability": 0.92,
                "prerequisites": ["cloudwatch_role", "log_group_permissions"],
                "implementation_steps": ["..."],
            }
        ],
        "validation_results": {
            "validation_performed": True,
            "overall_status": "PARTIAL_SUCCESS",
            "completion_percentage": 85,
            "gaps_identified": ["missing_log_group", "incomplete_permissions"],
        },
        "error_resolutions": [
            {
                "error_description": "Permission denied accessing CloudWatch",
                "resolution_applied": "Updated IAM role permissions",
                "success": True,
                "resolution_time_minutes": 15,
            }
        ],
    },
    "session_metadata.json": {
        "session_info": {
            "session_id": "orchestrator-session-{uuid}",
            "api_key": "customer-xyz789",
            "session_version": "v1.0.0",
            "created_timestamp": "2025-01-15T10:30:00Z",
            "completed_timestamp": "2025-01-15T10:42:00Z",
            "session_duration_minutes": 12,
        },
        "workflow_tracking": {
            "workflow_type": "deployment_guidance",
            "completion_status": "completed",
            "user_satisfaction_indicators": {
                "explicit_positive_feedback": True,
                "completed_to_implementation": True,
                "follow_up_questions_answered": 3,
            },
            "escalation_events": [],
        },
        "agent_performance": {
            "orchestrator_invocations": 5,
            "sub_agent_invocations": {"deployment-advisor": 2, "data-extractor": 3,
                                      "validator": 1, "reporter": 1},
            "total_processing_time_seconds": 145,
            "average_response_time_seconds": 23.2,
        },
        "quality_metrics": {
            "recommendation_confidence_average": 8.2,
            "user_query_complexity_average": 6.5,
            "session_success_score": 9.1,
        },
    },
    "session_analytics.json": {
        "complexity_analysis": {
            "deployment_complexity_score": 5,
            "architecture_complexity": 4,
            "user_expertise_inferred": "intermediate",
            "question_complexity_average": 6.2,
        },
        "prediction_accuracy": {
            "estimated_time_hours": 3.5,
            "actual_time_hours": None,
            "estimated_success_probability": 0.92,
            "actual_success": None,
            "confidence_calibration": 8.2,
        },
        "learning_insights": {
            "successful_patterns": ["AWS API Gateway with Lambda integration",
                                    "Intermediate user with clear requirements"],
            "challenge_areas": ["IAM permission configuration complexity"],
            "recommendation_effectiveness": {"primary_recommendation_accepted": True,
                                             "alternative_options_considered": False},
        },
        "similarity_vectors": {
            "architecture_pattern_hash": "aws-api-gateway-lambda-v1",
            "user_interaction_pattern": "direct-questions-technical-focus",
            "complexity_profile": "intermediate-standard-deployment",
        },
    },
}

# The smallest document of each kind that is valid from the first moment of a session.
MINIMAL_DOCUMENTS: dict[str, Any] = {
    "conversation.json": {"session_id": SID, "conversation_turns": [],
                          "conversation_summary": {"total_turns": 0}},
    "deployment_context.json": {},
    "session_metadata.json": {"session_info": {
        "session_id": SID, "api_key": "customer-xyz789", "session_version": "v1.0.0",
        "created_timestamp": "2025-01-15T10:30:00Z"}},
    "session_analytics.json": {},
}


@pytest.mark.parametrize("filename", DOCS)
def test_seed_examples_accepted_by_model_and_schema(filename: str) -> None:
    data = SEED_DOCUMENTS[filename]
    assert validate(filename, data) == []
    assert model_violations(filename, data) == []
    assert isinstance(parse_model(filename, data), MODELS[filename])


@pytest.mark.parametrize("filename", DOCS)
def test_minimal_documents_accepted(filename: str) -> None:
    assert validate(filename, MINIMAL_DOCUMENTS[filename]) == []
    assert model_violations(filename, MINIMAL_DOCUMENTS[filename]) == []


# --------------------------------------------------------------------------- examples

EXAMPLE_FILES = sorted(EXAMPLES.rglob("*.json"))


def example_document(path: Path) -> tuple[str, Any]:
    data = read(path)
    if path.parent.name == "turns":
        return "conversation.json", as_conversation([data])
    return path.name, data


def test_examples_exist() -> None:
    names = {p.relative_to(EXAMPLES).as_posix() for p in EXAMPLE_FILES}
    expected = {f"session/{n}" for n in DOCS}
    expected |= {f"session/turns/turn-0{i}.json" for i in range(1, 6)}
    expected |= {"follow_up/turns/turn-06.json", "follow_up/turns/turn-07.json",
                 "follow_up/session_metadata.json", "correction/session_analytics.json"}
    assert names == expected


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.relative_to(EXAMPLES).as_posix())
def test_example_valid_and_canonical(path: Path) -> None:
    raw = path.read_bytes()
    assert canonical.dumps(canonical.loads(raw)) == raw, "not canonical JSON"
    filename, data = example_document(path)
    assert validate(filename, data) == []
    assert model_violations(filename, data) == []
    model = parse_model(filename, data)
    assert model.model_dump(mode="json", exclude_unset=True) == data


def test_example_session_is_consistent() -> None:
    conv = read(EXAMPLES / "session/conversation.json")
    meta = read(EXAMPLES / "session/session_metadata.json")
    info = meta["session_info"]
    turns = conv["conversation_turns"]
    assert conv["session_id"] == info["session_id"] == SID
    assert info["api_key"] == "customer-xyz789" and info["session_version"] == "v1.0.0"
    assert conv["conversation_summary"]["total_turns"] == len(turns) == 5
    assert conv["conversation_summary"]["total_duration_minutes"] == 12
    assert [t["turn_id"] for t in turns] == [1, 2, 3, 4, 5]
    stamps = [parse_ts(t["timestamp"]) for t in turns]
    assert stamps == sorted(stamps)
    created, completed = parse_ts(info["created_timestamp"]), parse_ts(info["completed_timestamp"])
    assert created <= stamps[0] and stamps[-1] <= completed
    assert (created, completed) == (parse_ts("2025-01-15T10:30:00Z"),
                                    parse_ts("2025-01-15T10:42:00Z"))
    assert info["session_duration_minutes"] == (completed - created) // timedelta(minutes=1) == 12
    assert meta["workflow_tracking"]["completion_status"] == "completed"
    for i, turn in enumerate(turns, 1):
        assert read(EXAMPLES / f"session/turns/turn-0{i}.json") == turn
    # Agent bookkeeping adds up.
    perf = meta["agent_performance"]
    assert perf["orchestrator_invocations"] == len(turns)
    times = [t["agent_response"]["processing_time_seconds"] for t in turns]
    assert math.isclose(sum(times), perf["total_processing_time_seconds"])
    calls: dict[str, int] = {}
    for t in turns:
        for agent in t["agent_response"]["sub_agents_invoked"]:
            calls[agent] = calls.get(agent, 0) + 1
    assert calls == perf["sub_agent_invocations"]
    ctx = read(EXAMPLES / "session/deployment_context.json")
    recs = ctx["deployment_recommendations"]
    assert len(recs) == 2
    assert all(r["prerequisites"] and 4 <= len(r["implementation_steps"]) <= 6 for r in recs)
    assert not any(s == "..." for r in recs for s in r["implementation_steps"])


def test_example_follow_up_and_correction_are_consistent() -> None:
    meta = read(EXAMPLES / "session/session_metadata.json")
    follow = read(EXAMPLES / "follow_up/session_metadata.json")
    info = follow["session_info"]
    assert info["session_id"] == SID and info["session_version"] == "v1.1.0"
    created, completed = parse_ts(info["created_timestamp"]), parse_ts(info["completed_timestamp"])
    assert info["created_timestamp"] == meta["session_info"]["created_timestamp"]
    assert completed == parse_ts("2025-01-15T14:20:00Z")
    assert info["session_duration_minutes"] == (completed - created) // timedelta(minutes=1) == 230
    answered = "follow_up_questions_answered"
    old = meta["workflow_tracking"]["user_satisfaction_indicators"][answered]
    assert follow["workflow_tracking"]["user_satisfaction_indicators"][answered] > old
    turns = [read(EXAMPLES / f"follow_up/turns/turn-0{i}.json") for i in (6, 7)]
    assert [t["turn_id"] for t in turns] == [6, 7]
    stamps = [parse_ts(t["timestamp"]) for t in turns]
    assert parse_ts("2025-01-15T14:00:00Z") <= stamps[0] <= stamps[1] <= completed
    last_v1 = read(EXAMPLES / "session/conversation.json")["conversation_turns"][-1]
    assert parse_ts(last_v1["timestamp"]) <= stamps[0]
    # The correction changes exactly the two prediction outcomes.
    before = read(EXAMPLES / "session/session_analytics.json")
    after = read(EXAMPLES / "correction/session_analytics.json")
    assert after["prediction_accuracy"]["actual_time_hours"] == 4.0
    assert after["prediction_accuracy"]["actual_success"] is True
    patched = copy.deepcopy(before)
    patched["prediction_accuracy"].update(actual_time_hours=4.0, actual_success=True)
    assert patched == after


# --------------------------------------------------------------------------- generation


@pytest.mark.parametrize("filename", DOCS)
def test_committed_schema_is_generated(filename: str) -> None:
    path = ROOT / "schemas" / schema_filename(filename)
    assert path.read_bytes() == canonical.dumps(generate(filename))
    assert load(filename) == generate(filename)
    schema = load(filename)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == DRAFT
    assert schema["$id"] == f"urn:gitstore:schema:{SCHEMA_VERSION}:{filename}"
    assert schema["title"] and schema["description"]
    assert schema["additionalProperties"] is True
    for sub in schema.get("$defs", {}).values():
        assert sub["additionalProperties"] is True


def test_schema_cli_write_and_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check"]) == 0
    assert main(["--check", "--dir", str(tmp_path)]) == 1
    assert main(["--write", "--dir", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(map(schema_filename, DOCS))
    assert main(["--check", "--dir", str(tmp_path)]) == 0
    victim = tmp_path / "session_metadata.schema.json"
    victim.write_bytes(victim.read_bytes().replace(b"in_progress", b"in-progress"))
    assert main(["--check", "--dir", str(tmp_path)]) == 1
    capsys.readouterr()


def test_schema_required_sets() -> None:
    def required(filename: str, definition: str | None = None) -> list[str]:
        schema = load(filename)
        node = schema["$defs"][definition] if definition else schema
        return sorted(node.get("required", []))

    assert required("conversation.json") == ["conversation_summary", "conversation_turns",
                                             "session_id"]
    assert required("conversation.json", "Turn") == ["agent_response", "timestamp", "turn_id",
                                                     "user_input"]
    assert required("conversation.json", "ConversationSummary") == ["total_turns"]
    assert required("session_metadata.json") == ["session_info"]
    assert required("session_metadata.json", "SessionInfo") == [
        "api_key", "created_timestamp", "session_id", "session_version"]
    assert required("deployment_context.json") == []
    assert required("deployment_context.json", "CloudAsset") == ["id", "provider", "type"]
    assert required("deployment_context.json", "DeploymentRecommendation") == ["collector_type"]
    assert required("session_analytics.json") == []


# --------------------------------------------------------------------------- timestamps

GOOD_TIMESTAMPS = ["2025-01-15T10:30:00Z", "2025-01-15T10:30:00.5Z", "2025-01-15T10:30:00+05:30",
                   "2025-01-15T10:30:00-08:00", "2024-02-29T23:59:59.123456789Z",
                   "2025-01-15T10:30:00-00:00"]
BAD_TIMESTAMPS = ["2025-01-15T10:30:00", "2025-01-15 10:30:00Z", "2025-01-15t10:30:00z",
                  "2025-13-01T00:00:00Z", "2025-02-29T00:00:00Z", "2025-01-15T24:00:00Z",
                  "2025-01-15T10:60:00Z", "2025-01-15T10:30:60Z", "2025-01-15T10:30:00+24:00",
                  "2025-01-15T10:30:00+05:60", "2025-01-15T10:30:00+0530", "2025-01-15",
                  "2025-01-15T10:30Z", " 2025-01-15T10:30:00Z", "2025-01-15T10:30:00Z\n",
                  "2025-01-15T10:30:00.Z", "0000-01-01T00:00:00Z", "",
                  "\uff12\uff10\uff12\uff15-01-15T10:30:00Z", 1736937000, None, True]


@pytest.mark.parametrize("value", GOOD_TIMESTAMPS)
def test_good_timestamps(value: str) -> None:
    assert is_timestamp(value)
    assert parse_timestamp(value).tzinfo is not None
    doc = copy.deepcopy(SEED_DOCUMENTS["conversation.json"])
    doc["conversation_turns"][0]["timestamp"] = value
    assert schema_ok("conversation.json", doc) and model_ok("conversation.json", doc)


@pytest.mark.parametrize("value", BAD_TIMESTAMPS)
def test_bad_timestamps(value: Any) -> None:
    assert not is_timestamp(value)
    with pytest.raises(ValueError):
        parse_timestamp(value)
    doc = copy.deepcopy(SEED_DOCUMENTS["conversation.json"])
    doc["conversation_turns"][0]["timestamp"] = value
    violations = validate("conversation.json", doc)
    assert [v.pointer for v in violations] == ["/conversation_turns/0/timestamp"]
    assert [v.pointer for v in model_violations("conversation.json", doc)] == [
        "/conversation_turns/0/timestamp"]


def test_timestamp_offsets_are_kept() -> None:
    ts = parse_timestamp("2025-01-15T10:30:00.5+05:30")
    assert ts.utcoffset() == timedelta(hours=5, minutes=30)
    assert ts.microsecond == 500000
    assert parse_timestamp("2025-01-15T05:00:00Z") == ts.replace(microsecond=0)
    assert parse_timestamp("2025-01-15T10:30:00Z").tzinfo is UTC


# --------------------------------------------------------------------------- violations


def test_violation_pointer_and_fields() -> None:
    doc = copy.deepcopy(SEED_DOCUMENTS["conversation.json"])
    doc["conversation_turns"][0]["timestamp"] = "2025-01-15T10:30:00"
    [v] = validate("conversation.json", doc)
    assert v == Violation(file="conversation.json", pointer="/conversation_turns/0/timestamp",
                          message=v.message, hook="schema")
    assert "date-time" in v.message and "\n" not in v.message


def test_all_violations_reported_sorted() -> None:
    turn = SEED_DOCUMENTS["conversation.json"]["conversation_turns"][0]
    turns = [dict(copy.deepcopy(turn), turn_id=i) for i in range(1, 12)]
    turns[10]["turn_id"] = 0
    turns[2]["user_input"]["query"] = 5
    turns[2]["agent_response"]["confidence_score"] = 11
    doc = as_conversation(turns)
    del doc["session_id"]
    pointers = [v.pointer for v in validate("conversation.json", doc)]
    assert pointers == ["", "/conversation_turns/2/agent_response/confidence_score",
                        "/conversation_turns/2/user_input/query", "/conversation_turns/10/turn_id"]
    assert sorted(pointers) != pointers  # numeric, not lexicographic, order


def test_missing_required_points_at_parent() -> None:
    doc = copy.deepcopy(SEED_DOCUMENTS["session_metadata.json"])
    del doc["session_info"]["api_key"]
    [v] = validate("session_metadata.json", doc)
    assert v.pointer == "/session_info" and "api_key" in v.message
    assert [m.pointer for m in model_violations("session_metadata.json", doc)] == ["/session_info"]


def test_pointer_escaping_and_root() -> None:
    doc = copy.deepcopy(SEED_DOCUMENTS["session_metadata.json"])
    doc["agent_performance"]["sub_agent_invocations"] = {"a/b~c": -1}
    [v] = validate("session_metadata.json", doc)
    assert v.pointer == "/agent_performance/sub_agent_invocations/a~1b~0c"
    assert [v.pointer for v in validate("session_metadata.json", [])] == [""]
    assert [v.pointer for v in model_violations("session_metadata.json", [])] == [""]


def test_nullable_messages_are_readable() -> None:
    doc = copy.deepcopy(SEED_DOCUMENTS["session_analytics.json"])
    doc["prediction_accuracy"]["actual_time_hours"] = "4"
    doc["prediction_accuracy"]["actual_success"] = "yes"
    doc["prediction_accuracy"]["confidence_calibration"] = None
    messages = {v.pointer: v.message for v in validate("session_analytics.json", doc)}
    assert messages == {
        "/prediction_accuracy/actual_success": "expected boolean or null, got string",
        "/prediction_accuracy/actual_time_hours": "expected number or null, got string",
        "/prediction_accuracy/confidence_calibration": "expected number, got null",
    }
    doc = copy.deepcopy(SEED_DOCUMENTS["session_metadata.json"])
    doc["session_info"]["session_duration_minutes"] = -1
    [v] = validate("session_metadata.json", doc)
    assert v.pointer == "/session_info/session_duration_minutes" and ">= 0" in v.message


def test_long_values_are_shortened() -> None:
    doc = copy.deepcopy(SEED_DOCUMENTS["session_analytics.json"])
    doc["complexity_analysis"]["user_expertise_inferred"] = "x" * 5000
    [v] = validate("session_analytics.json", doc)
    assert len(v.message) < 200


def test_parse_model_returns_instance_or_raises() -> None:
    model = parse_model("session_metadata.json", SEED_DOCUMENTS["session_metadata.json"])
    assert isinstance(model, SessionMetadata)
    assert model.session_info.created_timestamp == datetime(2025, 1, 15, 10, 30, tzinfo=UTC)
    assert parse_model("metadata", MINIMAL_DOCUMENTS["session_metadata.json"])
    bad = copy.deepcopy(SEED_DOCUMENTS["session_metadata.json"])
    bad["session_info"]["session_version"] = "1.0.0"
    bad["workflow_tracking"]["completion_status"] = "done"
    with pytest.raises(InvalidDocumentError) as info:
        parse_model("session_metadata.json", bad)
    assert {v.pointer for v in info.value.violations} == {
        "/session_info/session_version", "/workflow_tracking/completion_status"}
    assert all(v.hook == "schema" for v in info.value.violations)


def test_unknown_fields_are_preserved() -> None:
    doc = copy.deepcopy(SEED_DOCUMENTS["conversation.json"])
    doc["x_top"] = {"nested": [1, None]}
    doc["conversation_turns"][0]["agent_response"]["model_name"] = "newer-agent"
    doc["conversation_summary"]["sentiment"] = 0.7
    assert validate("conversation.json", doc) == []
    model = parse_model("conversation.json", doc)
    assert isinstance(model, Conversation)
    assert model.model_dump(mode="json", exclude_unset=True) == doc


def test_no_coercion() -> None:
    base = SEED_DOCUMENTS["session_analytics.json"]
    for value in ["3.5", True, None, float("nan"), float("inf"), -1, 10**400]:
        doc = copy.deepcopy(base)
        doc["prediction_accuracy"]["estimated_time_hours"] = value
        assert not schema_ok("session_analytics.json", doc), value
        assert not model_ok("session_analytics.json", doc), value
    doc = copy.deepcopy(base)
    doc["prediction_accuracy"]["estimated_time_hours"] = 4  # an int is a JSON number
    assert schema_ok("session_analytics.json", doc) and model_ok("session_analytics.json", doc)
    model = SessionAnalytics.model_validate(doc)
    assert model.prediction_accuracy is not None
    assert model.prediction_accuracy.estimated_time_hours == 4


@pytest.mark.parametrize("version", ["v1.0.0\n", "v01.0.0", "1.0.0", "v1.0", "v1.0.0-rc1",
                                     "V1.0.0", "v1.0.0 ", "v\uff11.0.0"])
def test_bad_session_versions(version: str) -> None:
    doc = copy.deepcopy(SEED_DOCUMENTS["session_metadata.json"])
    doc["session_info"]["session_version"] = version
    assert [v.pointer for v in validate("session_metadata.json", doc)] == [
        "/session_info/session_version"]
    assert not model_ok("session_metadata.json", doc)


# --------------------------------------------------------------------------- agreement (Hypothesis)


def resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = root["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=6,
)
EXTRA_KEYS = st.from_regex(r"x_[a-z]{1,8}", fullmatch=True)
ZONES = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)),
                         timezone(timedelta(hours=-8)), timezone(timedelta(minutes=-1))])


def format_timestamp(dt: datetime) -> str:
    text = dt.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


#: Valid instants only: a local time in year 1 (or 9999) whose UTC instant falls in
#: year 0 (or 10000) is refused by both the model and the schema check.
TIMESTAMPS = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                          timezones=ZONES).map(format_timestamp)


def strategy(schema: dict[str, Any], root: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Valid instances of ``schema`` (the subset of JSON Schema pydantic emits)."""
    s = resolve(schema, root)
    if "anyOf" in s:
        return st.one_of([strategy(branch, root) for branch in s["anyOf"]])
    if "enum" in s:
        return st.sampled_from(s["enum"])
    kind = s.get("type")
    if kind == "object":
        props: dict[str, Any] = s.get("properties", {})
        extra = s.get("additionalProperties", True)
        if not props:
            values = JSON_VALUES if extra is True else strategy(extra, root)
            return st.dictionaries(st.text(max_size=8), values, max_size=3)
        required = set(s.get("required", []))
        fixed = st.fixed_dictionaries(
            {k: strategy(v, root) for k, v in props.items() if k in required},
            optional={k: strategy(v, root) for k, v in props.items() if k not in required},
        )
        extras = st.dictionaries(EXTRA_KEYS, JSON_VALUES, max_size=2)
        return st.builds(lambda a, b: {**b, **a}, fixed, extras)
    if kind == "array":
        return st.lists(strategy(s["items"], root), max_size=3)
    if kind == "string":
        if s.get("format") == "date-time":
            return TIMESTAMPS
        if "pattern" in s:
            return st.from_regex(s["pattern"].strip("^$"), fullmatch=True)
        return st.text(min_size=s.get("minLength", 0), max_size=20)
    if kind in ("integer", "number"):
        lo, hi = s.get("minimum"), s.get("maximum")
        ints = st.integers(min_value=None if lo is None else math.ceil(lo),
                           max_value=None if hi is None else math.floor(hi))
        if kind == "integer":
            return ints
        return ints | st.floats(min_value=lo, max_value=hi, allow_nan=False,
                                allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    assert not s or set(s) <= {"description", "default"}, s
    return JSON_VALUES


def sites(value: Any, schema: dict[str, Any], root: dict[str, Any],
          path: tuple[str | int, ...] = ()) -> list[tuple[tuple[str | int, ...], dict[str, Any],
                                                      bool]]:
    """Every (path, non-null schema, nullable) location of a valid ``value``."""
    s = resolve(schema, root)
    nullable = False
    if "anyOf" in s:
        nullable = {"type": "null"} in s["anyOf"]
        real = [b for b in s["anyOf"] if b != {"type": "null"}]
        assert len(real) == 1
        s = resolve(real[0], root)
        if value is None:
            return [(path, s, True)]
    found = [(path, s, nullable)]
    if isinstance(value, dict) and s.get("type") == "object":
        props = s.get("properties", {})
        extra = s.get("additionalProperties", True)
        for key, item in value.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                found += sites(item, sub, root, (*path, key))
    elif isinstance(value, list) and s.get("type") == "array":
        for i, item in enumerate(value):
            found += sites(item, s["items"], root, (*path, i))
    return found


def get(doc: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def put(doc: Any, path: tuple[str | int, ...], value: Any) -> Any:
    if not path:
        return value
    get(doc, path[:-1])[path[-1]] = value
    return doc


def pointer(path: tuple[str | int, ...]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


JSON_TYPE_OF = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
                dict: "object", type(None): "null"}
WRONG_TYPED = ["text", 7, 2.5, True, [], {}, [1], {"k": 1}]


def accepts_type(kind: str, value: Any) -> bool:
    actual = JSON_TYPE_OF[type(value)]
    return actual == kind or (kind == "number" and actual == "integer")


def mutations(data: st.DataObject, doc: Any,
              site: tuple[tuple[str | int, ...], dict[str, Any], bool]
              ) -> tuple[str, Any, bool | None, str | None]:
    """Pick one mutation applicable at ``site``: (name, new doc, expected, pointer).

    ``expected`` is whether the mutated document must be accepted (None: either,
    only agreement is checked); ``pointer`` must then be among the violations.
    """
    draw = data.draw
    path, s, nullable = site
    kind = s.get("type")
    options: list[str] = ["random"]
    if kind == "object" and s.get("properties"):
        options.append("extra_field")
        if set(s.get("required", [])) & set(get(doc, path)):
            options.append("drop_required")
    if path:
        options.append("null")
    if kind:
        options.append("wrong_type")
    if kind in ("integer", "number"):
        options += ["string_number", "bool_for_number", "out_of_range"]
    if kind == "integer":
        options.append("float_for_int")
    if s.get("format") == "date-time":
        options.append("bad_timestamp")
    if "enum" in s:
        options.append("bad_enum")
    if s.get("minLength") == 1:
        options.append("empty_string")
    if "pattern" in s:
        options.append("bad_pattern")
    if "minimum" not in s and "maximum" not in s and "out_of_range" in options:
        options.remove("out_of_range")
    name = draw(st.sampled_from(options))
    doc = copy.deepcopy(doc)
    here = pointer(path)
    old = get(doc, path)
    if name == "random":
        return name, put(doc, path, draw(JSON_VALUES)), None, None
    if name == "extra_field":
        old[draw(EXTRA_KEYS.filter(lambda k: k not in old))] = draw(JSON_VALUES)
        return name, doc, True, None
    if name == "drop_required":
        del old[draw(st.sampled_from(sorted(set(s["required"]) & set(old))))]
        return name, doc, False, here
    if name == "null":
        accepted = nullable or not kind  # no "type": any JSON value, null included
        return name, put(doc, path, None), accepted, None if accepted else here
    if name == "wrong_type":
        bad = [v for v in WRONG_TYPED if not accepts_type(str(kind), v)]
        return name, put(doc, path, draw(st.sampled_from(bad))), False, here
    if name == "string_number":
        return name, put(doc, path, str(old if old is not None else 1)), False, here
    if name == "bool_for_number":
        return name, put(doc, path, draw(st.booleans())), False, here
    if name == "float_for_int":
        # a nullable integer may currently hold null: any whole float will do
        whole = old if isinstance(old, int) and not isinstance(old, bool) else 1
        return name, put(doc, path, float(whole)), False, here
    if name == "out_of_range":
        delta = draw(st.sampled_from([1, 2, 10**9] if kind == "integer" else [1e-6, 0.5, 1, 1e9]))
        ends = [("minimum", -1), ("maximum", 1)]
        limit, sign = draw(st.sampled_from([e for e in ends if e[0] in s]))
        return name, put(doc, path, s[limit] + sign * delta), False, here
    if name == "bad_timestamp":
        return name, put(doc, path, draw(st.sampled_from(BAD_TIMESTAMPS))), False, here
    if name == "bad_enum":
        return name, put(doc, path, draw(st.sampled_from(["bogus", "", "Completed"]))), False, here
    if name == "empty_string":
        return name, put(doc, path, ""), False, here
    assert name == "bad_pattern"
    candidates = ["1.0.0", "v01.0.0", "v1.0.0\n", "-x", "a/b", "v1.0", "", ".x", "x" * 200]
    bad = [v for v in candidates if not re.fullmatch(s["pattern"].strip("^$"), v)]
    return name, put(doc, path, draw(st.sampled_from(bad))), False, here


SLOW = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("filename", DOCS)
@SLOW
@given(data=st.data())
def test_generated_documents_accepted_by_both(filename: str, data: st.DataObject) -> None:
    root = load(filename)
    doc = data.draw(strategy(root, root))
    assert validate(filename, doc) == []
    assert model_violations(filename, doc) == []
    dumped = parse_model(filename, doc).model_dump(mode="json", exclude_unset=True)
    assert validate(filename, dumped) == []


@pytest.mark.parametrize("filename", DOCS)
@SLOW
@given(data=st.data())
def test_model_and_schema_agree_on_mutations(filename: str, data: st.DataObject) -> None:
    root = load(filename)
    doc = data.draw(strategy(root, root))
    site = data.draw(st.sampled_from(sites(doc, root, root)))
    name, mutated, expected, where = mutations(data, doc, site)
    from_schema = validate(filename, mutated)
    from_model = model_violations(filename, mutated)
    assert (not from_schema) == (not from_model), (name, from_schema, from_model)
    if expected is not None:
        assert (not from_schema) == expected, (name, from_schema)
    if where is not None:
        assert where in {v.pointer for v in from_schema}, (name, from_schema)
        assert where in {v.pointer for v in from_model}, (name, from_model)
    assert {v.pointer for v in from_schema} == {v.pointer for v in from_model}, name


@pytest.mark.parametrize("filename", DOCS)
@SLOW
@given(value=JSON_VALUES)
def test_model_and_schema_agree_on_arbitrary_json(filename: str, value: Any) -> None:
    assert schema_ok(filename, value) == model_ok(filename, value)


def test_generated_pattern_strategy_matches_model_regex() -> None:
    # The strategy strips the anchors: make sure that is the pattern we think it is.
    pattern = load("session_metadata.json")["$defs"]["SessionInfo"]["properties"][
        "session_version"]["pattern"]
    assert re.fullmatch(pattern.strip("^$"), "v10.0.3")
    assert not re.fullmatch(pattern.strip("^$"), "v1.0.0\n")


def test_completion_statuses_are_the_schemas() -> None:
    """The statuses a listing accepts (:mod:`gitstore.catalog.queries`) and the models
    use are the schema's enum."""
    found = [v for v in _enums(load("session_metadata.json")) if "completed" in v]
    assert found == [list(COMPLETION_STATUSES)]
    assert CompletionStatus.__args__ == COMPLETION_STATUSES


def _enums(node: Any) -> list[list[Any]]:
    if isinstance(node, dict):
        return ([node["enum"]] if "enum" in node else []) + \
            [e for v in node.values() for e in _enums(v)]
    if isinstance(node, list):
        return [e for v in node for e in _enums(v)]
    return []
