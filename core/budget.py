"""A cost/token budget: the definition's, a step's, or a submit's (which may only lower it)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class BudgetSpec(BaseModel):
    """A cap on what llm calls may spend: inside a step's subtree, or the whole job."""

    # Strict: a misspelt limit (`max_cost`) must not silently leave a run unbounded.
    model_config = ConfigDict(extra="forbid")
    max_cost_usd: float | None = Field(default=None, ge=0, le=1_000_000)
    max_tokens: int | None = Field(default=None, ge=0, le=10**12)

    @model_validator(mode="after")
    def _some_limit(self) -> BudgetSpec:
        if self.max_cost_usd is None and self.max_tokens is None:
            raise ValueError("give max_cost_usd, max_tokens or both")
        return self

    def raised_by(self, other: BudgetSpec) -> str | None:
        """The field of `other` that is higher than (or absent from) this one, if any."""
        for name in ("max_cost_usd", "max_tokens"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine is not None and (theirs is None or theirs > mine):
                return name
        return None
