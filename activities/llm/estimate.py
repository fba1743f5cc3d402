"""The worst case of one `llm_call` activity, before it runs (pure: the workflow calls it).

The estimate is an upper bound a budget can be checked against, not a forecast:

- input tokens of a call: the UTF-8 bytes of the prompt and system prompt plus 32 for the chat
  framing. Byte-level BPE tokenizers (OpenAI's, Anthropic's) never make more tokens than bytes.
- output tokens of a call: the step's `max_tokens` (a budgeted step without one is sent
  DEFAULT_MAX_TOKENS, so the bound holds).
- a JSON `response_format` may take `max_repairs` more calls; each repair call re-sends what
  came before plus the invalid reply (`max_tokens`) and the repair turn (REPAIR_TURN_TOKENS).
- cost: those tokens times the price table; provider `mock` costs nothing; a model the table
  does not know costs `max_cost_usd_per_call` per call when the step sets it, else is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass

from activities.llm.pricing import price_for

DEFAULT_MAX_TOKENS = 4096
FRAMING_TOKENS = 32
REPAIR_TURN_TOKENS = 1024


@dataclass(frozen=True)
class CallEstimate:
    provider: str | None
    model: str
    tokens: int
    cost_usd: float | None  # None: the model has no price and the step gave no per-call bound


def is_json_format(response_format: object) -> bool:
    return response_format is not None and response_format != "text"


def estimate_call(
    *,
    provider: str | None,
    model: str,
    prompt: str,
    system_prompt: str | None,
    max_tokens: int,
    response_format: object,
    max_repairs: int,
    max_cost_usd_per_call: float | None = None,
) -> CallEstimate:
    base = len(prompt.encode()) + len((system_prompt or "").encode()) + FRAMING_TOKENS
    calls = 1 + max_repairs if is_json_format(response_format) else 1
    # Call i (from 0) carries i earlier replies and repair turns on top of the prompt.
    growth = max_tokens + REPAIR_TURN_TOKENS
    input_tokens = calls * base + growth * calls * (calls - 1) // 2
    output_tokens = calls * max_tokens
    cost: float | None
    if provider == "mock":
        cost = 0.0
    else:
        price = price_for(model)
        if price is not None:
            cost = round((input_tokens * price[0] + output_tokens * price[1]) / 1_000_000, 8)
        elif max_cost_usd_per_call is not None:
            cost = round(max_cost_usd_per_call * calls, 8)
        else:
            cost = None
    return CallEstimate(provider, model, input_tokens + output_tokens, cost)
