"""Bodies of POST /jobs/{id}/fork, GET /jobs/{id}/forks and GET /jobs/{id}/compare/{other}."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas import ForkInfo, JobAccepted, JobSummary


class DefinitionVersion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(min_length=1, max_length=50)


class ForkRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "from_step": "generate_contacts",
                    "input_patch": {"family_size": 6},
                    "definition": "original",
                    "step_overrides": {"generate_contacts": {"config": {"temperature": 0}}},
                    "output_overrides": {"fetch_weather": {"data": {"current": {"temp_c": 30}}}},
                    "reason": "a bigger household, a cooler model",
                }
            ]
        },
    )

    from_step: str | None = Field(
        default=None,
        max_length=500,
        description="Run again from here (a step id, or a path into a foreach such as "
        "`enrich[3].summarize`: items before 3 are reused). Earlier steps reuse the parent's "
        "outputs unless what they read changed. Omit: every step is reused unless what it "
        "reads or its definition changed.",
    )
    input_patch: dict[str, Any] = Field(
        default_factory=dict,
        description="A JSON merge patch (RFC 7386) onto the parent's input; null removes a "
        "field. The result is checked against the definition's inputs.",
    )
    definition: Literal["original", "latest"] | DefinitionVersion = Field(
        default="original",
        description="`original`: the parent's definition snapshot; `latest`: the newest "
        "loaded version; `{version}`: that version. Steps are matched by id.",
    )
    step_overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per step id, a merge patch onto that step's definition, e.g. "
        '`{"config": {"model": "…"}}`; the result is validated like any definition.',
    )
    output_overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Per top-level step id, its output: the step is not run.",
    )
    reason: str | None = Field(default=None, max_length=2000)


class ForkAccepted(JobAccepted):
    fork: ForkInfo


class ForkSummary(JobSummary):
    fork: ForkInfo | None = None


class ForkList(BaseModel):
    items: list[ForkSummary]


class StepSide(BaseModel):
    status: str | None = None
    tokens: int = 0
    cost_usd: float = 0.0
    duration_ms: int | None = None
    reused: bool = Field(default=False, description="Its output came from an earlier run.")


class StepComparison(BaseModel):
    path: str
    type: str | None = None
    job: StepSide | None = Field(default=None, description="None: the step has no record here.")
    other: StepSide | None = None
    output_changed: bool


class RunTotals(BaseModel):
    status: str
    tokens: int = 0
    cost_usd: float = 0.0
    duration_ms: int | None = None


class RunComparison(BaseModel):
    job_id: str
    other_job_id: str
    job: RunTotals
    other: RunTotals
    output_changed: bool
    steps: list[StepComparison]
