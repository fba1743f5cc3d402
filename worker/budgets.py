"""What a run's llm calls have spent, against the budgets that bound them (workflow code: pure).

Spend comes only from activity results (the usage and cost each `llm_call` reported), so a
replay recomputes the same numbers and no command is added. A budget is a Frame: the job's
(the definition's `budget`, lowered by the submit's), a control step's (every call inside its
subtree, all items and iterations) or an llm step's own. Before a call, its worst case is
reserved on every frame above it, so calls running at once (parallel branches, foreach items)
cannot each pass the check and cross the budget together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.llm.estimate import CallEstimate
    from core.budget import BudgetSpec


@dataclass
class Frame:
    where: str  # how errors name it: `budget`, `steps.refine.budget`, `submit budget`
    max_cost_usd: float | None
    max_tokens: int | None
    tokens: int = 0
    cost_usd: float = 0.0
    reserved_tokens: int = 0
    reserved_cost_usd: float = 0.0

    @classmethod
    def of(cls, spec: BudgetSpec, where: str) -> Frame:
        return cls(where, spec.max_cost_usd, spec.max_tokens)

    def crossing(self, estimate: CallEstimate) -> dict[str, Any] | None:
        """What this call could cross (which limit, the spend, the estimate), or None."""
        if self.max_tokens is not None:
            if self.tokens + self.reserved_tokens + estimate.tokens > self.max_tokens:
                return self._problem("max_tokens", self.max_tokens, estimate.tokens)
        if self.max_cost_usd is not None:
            if estimate.cost_usd is None:
                return {
                    **self._problem("max_cost_usd", self.max_cost_usd, None),
                    "unknown_price": True,
                }
            total = round(self.cost_usd + self.reserved_cost_usd + estimate.cost_usd, 8)
            if total > self.max_cost_usd:
                return self._problem("max_cost_usd", self.max_cost_usd, estimate.cost_usd)
        return None

    def _problem(self, limit: str, value: float, estimate: float | None) -> dict[str, Any]:
        tokens = limit == "max_tokens"
        return {
            "budget": f"{self.where}.{limit}",
            "limit": value,
            "spent": self.tokens if tokens else round(self.cost_usd, 8),
            "in_flight": self.reserved_tokens if tokens else round(self.reserved_cost_usd, 8),
            "estimate": estimate,
        }


@dataclass
class Reservation:
    frames: list[Frame]
    tokens: int
    cost_usd: float

    def release(self) -> None:
        for frame in self.frames:
            frame.reserved_tokens -= self.tokens
            frame.reserved_cost_usd = round(frame.reserved_cost_usd - self.cost_usd, 8)


@dataclass
class Ledger:
    """The job's spend (exposed as `${context.cost_usd}` / `${context.tokens}`) and its frames."""

    context: dict[str, Any]  # the run's `context` namespace, updated in place
    job: list[Frame] = field(default_factory=list)
    steps: dict[str, Frame] = field(default_factory=dict)  # control step path → its frame
    tokens: int = 0
    cost_usd: float = 0.0

    @classmethod
    def for_job(
        cls, context: dict[str, Any], defined: BudgetSpec | None, submitted: BudgetSpec | None
    ) -> Ledger:
        ledger = cls(context)
        if defined is not None:
            ledger.job.append(Frame.of(defined, "budget"))
        if submitted is not None:
            ledger.job.append(Frame.of(submitted, "submit budget"))
        ledger._publish()
        return ledger

    def open_step(self, path: str, step_id: str, spec: BudgetSpec) -> None:
        # A retried control step keeps its frame: what the failed attempt spent was spent.
        self.steps.setdefault(path, Frame.of(spec, f"steps.{step_id}.budget"))

    def add(self, frames: list[Frame], tokens: int, cost_usd: float) -> None:
        """A step reported what it spent: the job and every frame above it pay for it."""
        if not tokens and not cost_usd:
            return
        for frame in frames:
            frame.tokens += tokens
            frame.cost_usd = round(frame.cost_usd + cost_usd, 8)
        self.tokens += tokens
        self.cost_usd = round(self.cost_usd + cost_usd, 8)
        self._publish()

    @staticmethod
    def share(frames: list[Frame], parts: int) -> BudgetSpec | None:
        """An equal part of what is left of every frame (for child workflows that run at
        once and cannot see each other's spend), or None when no frame limits anything."""
        cost = [
            f.max_cost_usd - f.cost_usd - f.reserved_cost_usd
            for f in frames
            if f.max_cost_usd is not None
        ]
        tokens = [
            f.max_tokens - f.tokens - f.reserved_tokens for f in frames if f.max_tokens is not None
        ]
        if not cost and not tokens:
            return None
        return BudgetSpec(
            max_cost_usd=max(0.0, round(min(cost) / parts, 8)) if cost else None,
            max_tokens=max(0, min(tokens) // parts) if tokens else None,
        )

    @staticmethod
    def reserve(frames: list[Frame], tokens: int, cost_usd: float) -> Reservation:
        for frame in frames:
            frame.reserved_tokens += tokens
            frame.reserved_cost_usd = round(frame.reserved_cost_usd + cost_usd, 8)
        return Reservation(frames, tokens, cost_usd)

    def _publish(self) -> None:
        self.context["cost_usd"] = round(self.cost_usd, 6)
        self.context["tokens"] = self.tokens
