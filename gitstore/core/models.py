"""Pydantic models of the four JSON session documents.

The documents are the ones the reporter agent writes during a session:
``conversation.json``, ``deployment_context.json``, ``session_metadata.json``
and ``session_analytics.json``; field names are exactly the ones of the spec.
The committed JSON Schemas under ``schemas/`` are *generated* from these models
(:mod:`gitstore.core.schema`), and the two are kept in agreement: a document is
accepted by the model exactly when it is accepted by the schema (tested with
Hypothesis in ``tests/test_models_schema.py``).

Invariants:

* **Forward compatibility.** Unknown fields are allowed and preserved at every
  level (``extra="allow"``; the schemas say ``additionalProperties: true``), so
  a document written by a newer agent keeps its extra fields when it is read,
  validated and written back by an older gitstore.
* **No coercion.** Models are ``strict``: ``"5"`` is not a number, ``5.0`` and
  ``true`` are not integers, ``1`` is not a boolean. A ``number`` field accepts
  integers (as JSON does) but never booleans, NaN or infinities.
* **Timestamps** are RFC 3339 ``date-time`` *strings* that carry a timezone
  (``Z`` or ``+hh:mm``/``-hh:mm``); see :func:`parse_timestamp`, which is also
  the ``date-time`` format check of the schema validator. On the models they are
  timezone-aware :class:`~datetime.datetime` values.
* **Live documents.** Documents grow during a session, so only what exists from
  the first moment is required; everything else is optional. An optional field
  is *nullable* (accepts JSON ``null``) only where the spec shows ``null`` or a
  value that is unknown until later (summary fields, ``completed_timestamp``,
  ``session_duration_minutes``, the ``actual_*`` prediction outcomes, an error
  resolution's ``resolution_applied``, ``success`` and
  ``resolution_time_minutes`` while the error is unresolved); other optional
  fields may be absent but not ``null``. Completeness of a finalized session is
  checked elsewhere, not by these models.
* **Renderable.** Every document these models accept renders the SOW
  (``templates/sow_document.md.j2`` tests each optional field it reads with
  ``is defined`` / ``is none``); ``tests/test_defects_render.py`` proves it with
  documents generated from the schemas.
* **Ranges.** Probabilities are in ``[0, 1]``, scores in ``[0, 10]``,
  percentages in ``[0, 100]``, durations and counts are ``>= 0``, ``turn_id``
  is ``>= 1``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic.json_schema import SkipJsonSchema

from gitstore.core.names import COMPLETION_STATUSES as COMPLETION_STATUSES
from gitstore.core.timestamps import (
    TIMESTAMP_RANGE,
    is_timestamp,
    parse_timestamp,
    timestamp_problem,
)

__all__ = [
    "API_KEY_PATTERN",
    "COMPLETION_STATUSES",
    "MODELS",
    "OVERALL_STATUSES",
    "SESSION_VERSION_PATTERN",
    "TIMESTAMP_RANGE",
    "USER_EXPERTISE_LEVELS",
    "AgentPerformance",
    "AgentResponse",
    "CloudAsset",
    "CloudAssetsSnapshot",
    "ComplexityAnalysis",
    "Conversation",
    "ConversationSummary",
    "DecisionPoint",
    "DeploymentContext",
    "DeploymentRecommendation",
    "ErrorResolution",
    "LearningInsights",
    "PredictionAccuracy",
    "QualityMetrics",
    "RecommendationEffectiveness",
    "Record",
    "SessionAnalytics",
    "SessionInfo",
    "SessionMetadata",
    "SimilarityVectors",
    "Timestamp",
    "Turn",
    "UserInput",
    "UserSatisfactionIndicators",
    "ValidationResults",
    "WorkflowTracking",
    "is_timestamp",
    "parse_timestamp",
    "timestamp_problem",
]

# --------------------------------------------------------------------------- field types

_T = TypeVar("_T")


def _refuse_null(value: Any) -> Any:
    if value is None:
        raise ValueError("may be omitted but must not be null")
    return value


#: An optional field that may be absent but not ``null``. The model attribute is
#: ``None`` when the field is absent; the schema does not list ``null``.
Opt = Annotated[_T | SkipJsonSchema[None], BeforeValidator(_refuse_null)]

Timestamp = Annotated[
    datetime,
    BeforeValidator(parse_timestamp),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
Probability = Annotated[float, Field(ge=0, le=1)]
Score = Annotated[float, Field(ge=0, le=10)]
Percentage = Annotated[float, Field(ge=0, le=100)]
NonNegative = Annotated[float, Field(ge=0)]
Count = Annotated[int, Field(ge=0)]
Name = Annotated[str, Field(min_length=1)]

#: ``session_info.session_version``: ``vMAJOR.MINOR.PATCH`` without leading zeros.
SESSION_VERSION_PATTERN = r"^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$"
#: ``session_info.api_key``: the customer-name alphabet of :mod:`gitstore.core.names`.
API_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"

OVERALL_STATUSES = ("SUCCESS", "PARTIAL_SUCCESS", "FAILED", "NOT_PERFORMED")
USER_EXPERTISE_LEVELS = ("beginner", "intermediate", "advanced", "expert")

CompletionStatus = Literal["in_progress", "completed", "abandoned", "escalated", "expired",
                           "failed"]
OverallStatus = Literal["SUCCESS", "PARTIAL_SUCCESS", "FAILED", "NOT_PERFORMED"]
UserExpertise = Literal["beginner", "intermediate", "advanced", "expert"]


class Record(BaseModel):
    """Base of every document model: strict, unknown fields kept."""

    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)


# --------------------------------------------------------------------------- conversation.json


class UserInput(Record):
    """What the user sent in one turn."""

    query: str = Field(description="The user's message, verbatim.")
    command: str | None = Field(None, description="Slash command issued, or null for none.")
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="Free-form parameters of the command or query."
    )


class AgentResponse(Record):
    """The orchestrator's answer to one turn."""

    orchestrator_response: str = Field(description="The answer shown to the user.")
    sub_agents_invoked: list[str] = Field(
        default_factory=list, description="Sub-agents the orchestrator called for this turn."
    )
    processing_time_seconds: Opt[NonNegative] = Field(
        None, description="Wall-clock time to produce the answer, in seconds."
    )
    confidence_score: Opt[Score] = Field(None, description="Self-assessed confidence, 0-10.")


class DecisionPoint(Record):
    """A decision the agent took during a turn, with its confidence."""

    decision: Name = Field(description="What was decided, e.g. cloud_provider_identification.")
    value: Any = Field(None, description="The decided value (any JSON value).")
    confidence: Opt[Probability] = Field(None, description="Probability the decision is right.")


class Turn(Record):
    """One user message and the agent's answer."""

    turn_id: int = Field(ge=1, description="1-based position of the turn in the conversation.")
    timestamp: Timestamp = Field(description="When the turn started (RFC 3339 with timezone).")
    user_input: UserInput = Field(description="The user's side of the turn.")
    agent_response: AgentResponse = Field(description="The agent's side of the turn.")
    decision_points: list[DecisionPoint] = Field(
        default_factory=list, description="Decisions taken in this turn."
    )


class ConversationSummary(Record):
    """Running summary of the conversation; filled in as the session progresses."""

    total_turns: Count = Field(description="Number of turns in conversation_turns.")
    total_duration_minutes: NonNegative | None = Field(
        None, description="Length of the conversation in minutes."
    )
    primary_cloud_provider: str | None = Field(None, description="Main cloud provider discussed.")
    services_discussed: list[str] | None = Field(None, description="Cloud services discussed.")
    final_recommendation: str | None = Field(None, description="The recommendation given.")


class Conversation(Record):
    """conversation.json: the turn-by-turn transcript of a session."""

    session_id: Name = Field(description="The session identifier, orchestrator-session-{uuid}.")
    conversation_turns: list[Turn] = Field(description="The turns in order; may be empty.")
    conversation_summary: ConversationSummary = Field(description="Summary of the conversation.")


# ------------------------------------------------------------------------- deployment_context.json


class CloudAsset(Record):
    """One resource in the customer's cloud account."""

    id: Name = Field(description="Provider-side identifier of the asset.")
    type: Name = Field(description="Kind of asset, e.g. api_gateway or lambda_function.")
    provider: Name = Field(description="Cloud provider (free text), e.g. aws.")
    configuration: dict[str, Any] = Field(
        default_factory=dict, description="Relevant configuration of the asset."
    )


class CloudAssetsSnapshot(Record):
    """The customer's relevant cloud assets at one moment."""

    timestamp: Timestamp = Field(description="When the snapshot was taken.")
    assets: list[CloudAsset] = Field(description="The assets found; may be empty.")


class DeploymentRecommendation(Record):
    """One collector the agent recommends deploying."""

    collector_type: Name = Field(description="The recommended collector.")
    complexity_score: Opt[Score] = Field(None, description="Deployment complexity, 0-10.")
    confidence_level: Opt[Score] = Field(None, description="Confidence in the advice, 0-10.")
    success_probability: Opt[Probability] = Field(
        None, description="Estimated probability the deployment succeeds."
    )
    prerequisites: list[str] = Field(
        default_factory=list, description="What must be in place before deploying."
    )
    implementation_steps: list[str] = Field(
        default_factory=list, description="Ordered steps to deploy the collector."
    )


class ValidationResults(Record):
    """Outcome of validating the customer's deployment."""

    validation_performed: bool = Field(description="Whether a validation was run.")
    overall_status: OverallStatus = Field(description="Overall validation outcome.")
    completion_percentage: Opt[Percentage] = Field(
        None, description="How much of the deployment is in place, 0-100."
    )
    gaps_identified: list[str] = Field(
        default_factory=list, description="Missing pieces found by the validation."
    )


class ErrorResolution(Record):
    """An error met during the session and how it was resolved."""

    error_description: Name = Field(description="The error as reported.")
    resolution_applied: str | None = Field(
        None, description="What was done about it; null while nothing has been applied."
    )
    success: bool | None = Field(
        None, description="Whether the resolution worked; null until it is known."
    )
    resolution_time_minutes: NonNegative | None = Field(
        None, description="Time taken to resolve, in minutes; null while unresolved."
    )


class DeploymentContext(Record):
    """deployment_context.json: assets, recommendations, validation and fixes."""

    cloud_assets_snapshot: Opt[CloudAssetsSnapshot] = Field(
        None, description="Snapshot of the customer's cloud assets."
    )
    deployment_recommendations: list[DeploymentRecommendation] = Field(
        default_factory=list, description="Recommended collectors, best first."
    )
    validation_results: Opt[ValidationResults] = Field(
        None, description="Result of validating the deployment."
    )
    error_resolutions: list[ErrorResolution] = Field(
        default_factory=list, description="Errors met and resolved."
    )


# ------------------------------------------------------------------------- session_metadata.json


class SessionInfo(Record):
    """Identity and timing of the session."""

    session_id: Name = Field(description="The session identifier, as in conversation.json.")
    api_key: str = Field(pattern=API_KEY_PATTERN, description="The customer (store directory).")
    session_version: str = Field(
        pattern=SESSION_VERSION_PATTERN, description="Semantic version vMAJOR.MINOR.PATCH."
    )
    created_timestamp: Timestamp = Field(description="When the session started.")
    completed_timestamp: Timestamp | None = Field(
        None, description="When the session ended; null while it is open."
    )
    session_duration_minutes: Count | None = Field(
        None, description="Whole minutes from created to completed; null while open."
    )


class UserSatisfactionIndicators(Record):
    """Signals of how satisfied the user was."""

    explicit_positive_feedback: Opt[bool] = Field(None, description="User said it helped.")
    completed_to_implementation: Opt[bool] = Field(
        None, description="User went on to implement the recommendation."
    )
    follow_up_questions_answered: Opt[Count] = Field(
        None, description="Number of follow-up questions answered."
    )


class WorkflowTracking(Record):
    """Which workflow ran and how it ended."""

    workflow_type: Opt[str] = Field(None, description="Kind of workflow, e.g. deployment_guidance.")
    completion_status: CompletionStatus = Field(description="Where the workflow stands.")
    user_satisfaction_indicators: Opt[UserSatisfactionIndicators] = Field(
        None, description="Satisfaction signals."
    )
    escalation_events: list[dict[str, Any]] = Field(
        default_factory=list, description="Escalations to humans (free-form event records)."
    )


class AgentPerformance(Record):
    """How much work the agents did."""

    orchestrator_invocations: Opt[Count] = Field(None, description="Orchestrator calls.")
    sub_agent_invocations: dict[str, Count] = Field(
        default_factory=dict, description="Calls per sub-agent name."
    )
    total_processing_time_seconds: Opt[NonNegative] = Field(
        None, description="Total processing time, in seconds."
    )
    average_response_time_seconds: Opt[NonNegative] = Field(
        None, description="Mean response time per turn, in seconds."
    )


class QualityMetrics(Record):
    """Quality scores of the session, each 0-10."""

    recommendation_confidence_average: Opt[Score] = Field(
        None, description="Mean confidence of the recommendations."
    )
    user_query_complexity_average: Opt[Score] = Field(None, description="Mean query complexity.")
    session_success_score: Opt[Score] = Field(None, description="Overall success of the session.")


class SessionMetadata(Record):
    """session_metadata.json: identity, workflow, performance and quality of a session."""

    session_info: SessionInfo = Field(description="Identity and timing of the session.")
    workflow_tracking: Opt[WorkflowTracking] = Field(None, description="Workflow state.")
    agent_performance: Opt[AgentPerformance] = Field(None, description="Agent work done.")
    quality_metrics: Opt[QualityMetrics] = Field(None, description="Quality scores.")


# ------------------------------------------------------------------------- session_analytics.json


class ComplexityAnalysis(Record):
    """How complex the deployment and the conversation were (scores 0-10)."""

    deployment_complexity_score: Opt[Score] = Field(None, description="Deployment complexity.")
    architecture_complexity: Opt[Score] = Field(None, description="Architecture complexity.")
    user_expertise_inferred: Opt[UserExpertise] = Field(
        None, description="The user's inferred expertise."
    )
    question_complexity_average: Opt[Score] = Field(None, description="Mean question complexity.")


class PredictionAccuracy(Record):
    """Predicted versus actual outcome; the actuals are null until known."""

    estimated_time_hours: NonNegative = Field(description="Predicted implementation time (hours).")
    actual_time_hours: NonNegative | None = Field(
        None, description="Actual implementation time (hours); null until known."
    )
    estimated_success_probability: Probability = Field(
        description="Predicted probability of success."
    )
    actual_success: bool | None = Field(
        None, description="Whether the deployment succeeded; null until known."
    )
    confidence_calibration: Opt[Score] = Field(None, description="Calibration score, 0-10.")


class RecommendationEffectiveness(Record):
    """Whether the recommendations were taken up."""

    primary_recommendation_accepted: Opt[bool] = Field(None, description="Primary was accepted.")
    alternative_options_considered: Opt[bool] = Field(None, description="Alternatives weighed.")


class LearningInsights(Record):
    """What the system can learn from the session."""

    successful_patterns: list[str] = Field(default_factory=list, description="What worked.")
    challenge_areas: list[str] = Field(default_factory=list, description="What was hard.")
    recommendation_effectiveness: Opt[RecommendationEffectiveness] = Field(
        None, description="Uptake of the recommendations."
    )


class SimilarityVectors(Record):
    """Keys used to find similar sessions."""

    architecture_pattern_hash: Opt[str] = Field(None, description="Architecture pattern key.")
    user_interaction_pattern: Opt[str] = Field(None, description="Interaction pattern key.")
    complexity_profile: Opt[str] = Field(None, description="Complexity profile key.")


class SessionAnalytics(Record):
    """session_analytics.json: analytics and learning data extracted from a session."""

    complexity_analysis: Opt[ComplexityAnalysis] = Field(None, description="Complexity scores.")
    prediction_accuracy: Opt[PredictionAccuracy] = Field(
        None, description="Predicted versus actual outcome."
    )
    learning_insights: Opt[LearningInsights] = Field(None, description="Lessons learned.")
    similarity_vectors: Opt[SimilarityVectors] = Field(None, description="Similarity keys.")


#: The model of each JSON document, keyed by file name (the order of
#: :data:`gitstore.core.names.JSON_DOCUMENTS`).
MODELS: dict[str, type[BaseModel]] = {
    "conversation.json": Conversation,
    "deployment_context.json": DeploymentContext,
    "session_metadata.json": SessionMetadata,
    "session_analytics.json": SessionAnalytics,
}
