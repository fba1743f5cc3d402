"""Models that cross the gateway ↔ Temporal ↔ worker boundary (workflow input and result).

Pure pydantic: imported by the workflow sandbox (passed through), the gateway and the CLI.
Changing a field here changes recorded histories: add fields with defaults, never rename.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from core.budget import BudgetSpec

JobStatus = Literal["queued", "running", "completed", "failed", "cancelled", "timed_out"]
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "timed_out"})
StepStatus = Literal["pending", "running", "completed", "failed", "skipped", "cancelled"]

INTERPRETER_WORKFLOW = "InterpreterWorkflow"
# Activity names: what the workflows schedule and the worker registers, in one place.
LLM_CALL = "llm_call"
EXTERNAL_API_CALL = "external_api_call"
HTTP_REQUEST = "http_request"
WEBHOOK_SEND = "webhook_send"
DELIVER_JOB_WEBHOOK = "deliver_job_webhook"
MIRROR_JOB = "mirror_job"
RAISE_ALERT = "raise_alert"
FORGET_JOB_SECRET = "forget_job_secret"


class ResolvedDefinition(BaseModel):
    """A definition frozen for one run: prompt templates inlined, plus a content hash, and the
    definitions its sub_workflow steps run (by `name@version`, frozen the same way)."""

    name: str
    version: str
    content_hash: str
    definition: dict[str, Any]
    prompts: dict[str, str] = Field(default_factory=dict)
    children: dict[str, ResolvedDefinition] = Field(default_factory=dict)


class WebhookTarget(BaseModel):
    url: str
    # A reference to where the secret lives (never the secret itself): "job:<id>" → the job
    # row's stored secret, "env" → LLM_WEBHOOK_SECRET.
    secret_ref: str | None = None


class RunOptions(BaseModel):
    # Outputs recorded by an earlier run, reused instead of re-running those steps (rerun).
    reuse_steps: dict[str, Any] = Field(default_factory=dict)
    # The recorded outputs of a reused parallel's branch steps, by id: they stay referable
    # after the parallel, so a later step that reads one must find it (rerun).
    reuse_exported: dict[str, Any] = Field(default_factory=dict)
    # A failed foreach rerun from itself: the outputs of the items that completed, by foreach
    # path and item index; only the failed and unrun items run again.
    reuse_items: dict[str, dict[str, Any]] = Field(default_factory=dict)
    mirror: bool = True
    # How long the interpreter itself retries a mirror write before handing it to a detached
    # MirrorWorkflow and finishing the job (the database being down never holds a job open).
    mirror_budget_seconds: float = 120.0
    # False where the namespace has no WorkflowName/WorkflowVersion/JobStatus attributes
    # (TEMPORAL_SEARCH_ATTRIBUTES=false): the job then sets and upserts none.
    search_attributes: bool = True
    # The submit's `budget`: lowers the definition's (the gateway refuses one that raises it).
    budget: BudgetSpec | None = None


class JobLabels(BaseModel):
    """What the caller said about the job besides its input (the earlier service's submit
    fields). Echoed in callbacks; `debug_mode` also sends an event per finished LLM step."""

    user_id: str | None = None
    username: str | None = None
    action: str | None = None
    priority: int | None = None
    debug_mode: bool = False


class InterpreterInput(BaseModel):
    job_id: str
    definition: ResolvedDefinition
    input_data: dict[str, Any] = Field(default_factory=dict)
    webhook: WebhookTarget | None = None
    options: RunOptions = Field(default_factory=RunOptions)
    labels: JobLabels = Field(default_factory=JobLabels)
    parent_job_id: str | None = None  # set for a sub_workflow's child job


class StepRecord(BaseModel):
    id: str
    type: str
    # Where in the step tree: `enrich[3].summarize`; a top-level step's path is its id.
    path: str | None = None
    parent: str | None = None  # path of the control step whose block holds it
    status: StepStatus = "pending"
    output: Any = None
    error: dict[str, Any] | None = None
    attempts: int = 0
    started_at: str | None = None
    duration_ms: int | None = None
    tokens: int = 0
    cost_usd: float = 0.0
    warnings: list[str] = Field(default_factory=list)
    # A control step's own account: branches taken, items done/failed, iterations.
    summary: dict[str, Any] | None = None


def llm_calls(records: list[StepRecord]) -> list[dict[str, Any]]:
    """One entry per LLM step that ran: the earlier service's `llm_calls` / `cost_data` rows."""
    calls = []
    for record in records:
        if record.type != "llm" or record.status != "completed":
            continue
        output: dict[str, Any] = record.output if isinstance(record.output, dict) else {}
        usage: dict[str, Any] = output.get("usage") or {}
        calls.append(
            {
                "step_id": record.id,
                "model": output.get("model"),
                "input_tokens": usage.get("input_tokens", 0),
                "output_tokens": usage.get("output_tokens", 0),
                "total_tokens": record.tokens,
                "cost_usd": record.cost_usd,
                "duration_ms": record.duration_ms,
            }
        )
    return calls


class JobMetadata(BaseModel):
    duration_ms: int = 0
    total_tokens: int = 0
    total_cost_usd: float = 0.0
    definition_hash: str | None = None
    steps: list[StepRecord] = Field(default_factory=list)


class JobResult(BaseModel):
    # Results recorded before each record was carried once also hold a `steps` map; it is
    # ignored when read (the property below rebuilds it).
    status: JobStatus
    output: Any = None
    error: dict[str, Any] | None = None
    metadata: JobMetadata = Field(default_factory=JobMetadata)

    @property
    def steps(self) -> dict[str, StepRecord]:
        return {record.id: record for record in self.metadata.steps}


class Waiting(BaseModel):
    """A step that waits for a person or an outside event."""

    path: str
    kind: Literal["approval", "event"]
    since: str
    timeout_at: str | None = None
    prompt: str | None = None  # approvals: what the approver is asked
    event: str | None = None  # events: the name to POST to
    approvers: list[str] = Field(default_factory=list)


class ApprovalDecision(BaseModel):
    """The `approve` update: a decision on the approval step at `path`."""

    path: str
    approved: bool
    comment: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    decided_by: str  # the API key's name (never the key), or "temporal-cli"


class EventDelivery(BaseModel):
    """The `event` update: an outside event a wait_for_event step waits for."""

    event: str
    payload: Any = None
    sent_by: str | None = None


class Progress(BaseModel):
    current_step: str | None = None  # the most recently started of `running`
    current_step_name: str | None = None
    # Every step path running now (branches and items run at once).
    running: list[str] = Field(default_factory=list)
    completed_steps: int = 0  # top-level steps finished, of total_steps
    total_steps: int = 0
    status: JobStatus = "queued"
    steps: dict[str, StepStatus] = Field(default_factory=dict)  # by path
    waiting: list[Waiting] = Field(default_factory=list)
    # Steps that ended, by path: attempts, duration_ms, error, and a streamed llm step's
    # `text`, so a live event stream says what the final records will (filled by the query).
    finished: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # When each step that ran so far started, by path (orders a live event stream).
    started: dict[str, str] = Field(default_factory=dict)
    # The llm spend so far (exact: the sum of the usages the providers reported).
    tokens: int = 0
    cost_usd: float = 0.0


class MirrorUpdate(BaseModel):
    """What the interpreter tells the mirror: an idempotent upsert of the job row."""

    job_id: str
    run_id: str | None = None
    workflow_name: str
    workflow_version: str
    status: JobStatus
    started_at: str | None = None
    completed_at: str | None = None
    output: Any = None
    error: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    owner: str | None = None  # for a row the interpreter creates (a sub_workflow's child)
    parent_job_id: str | None = None
    # None: no change; True: the job waits since `waiting_since` (GET /jobs?waiting=true);
    # False: it waits no more.
    waiting: bool | None = None
    waiting_since: str | None = None


FOREACH_BATCH_WORKFLOW = "ForeachBatchWorkflow"


class ForeachBatchInput(BaseModel):
    """A slice of a large foreach, run as a child workflow so no one history grows unbounded."""

    job: InterpreterInput  # the parent's input (definition snapshot, labels); no webhook
    step_id: str  # the foreach step
    path: str  # its path in the parent
    offset: int  # index of the first item of this batch
    items: list[Any]
    # The items' indexes when they are not offset, offset + 1, … (a rerun skipping some).
    indexes: list[int] | None = None
    # What the block may read: the namespace the foreach saw (input, steps, context).
    namespace: dict[str, Any]
    deadline: str  # the parent job's deadline, ISO 8601
    # Under budgets: this batch's share of what is left of them (reserved in the parent).
    budget: BudgetSpec | None = None


class ForeachBatchResult(BaseModel):
    outputs: dict[int, Any] = Field(default_factory=dict)  # item index → output
    failures: dict[int, dict[str, Any]] = Field(default_factory=dict)  # index → ErrorContext
    tokens: int = 0
    cost_usd: float = 0.0


WEBHOOK_DELIVERY_WORKFLOW = "WebhookDeliveryWorkflow"
MIRROR_WORKFLOW = "MirrorWorkflow"


class WebhookDeliveryInput(BaseModel):
    job_id: str
    url: str
    secret_ref: str | None = None
    event: str  # workflow.completed | workflow.failed
    delivery_id: str  # X-Webhook-Id / webhook-id: the same for every attempt
    payload: dict[str, Any]


class WebhookDeliveryResult(BaseModel):
    delivered: bool
    status_code: int | None = None
    attempts: int = 0
    error: dict[str, Any] | None = None


class AlertInput(BaseModel):
    level: Literal["INFO", "WARNING", "ERROR", "CRITICAL"]
    source: str
    message: str
    job_id: str | None = None
    details: dict[str, Any] | None = None
