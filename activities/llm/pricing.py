"""Price table: USD per 1M input / output tokens, by model id.

List prices at the time of writing; this is the one place to update them. Ids are matched
loosely so the same model costs the same whichever way a definition spells it:
OpenRouter's `anthropic/claude-3.5-sonnet`, Anthropic's `claude-3-5-sonnet-20241022` /
`claude-3-5-sonnet-latest`, OpenAI's `gpt-4o-mini-2024-07-18`, OpenRouter `:free` variants.
"""

from __future__ import annotations

import re

from core.step_outputs import LlmUsage

# (input, output) USD per 1M tokens, keyed by the provider's bare id, lower case.
PRICES: dict[str, tuple[float, float]] = {
    # OpenAI
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-4": (30.00, 60.00),
    "gpt-3.5-turbo": (0.50, 1.50),
    "o1": (15.00, 60.00),
    "o1-mini": (1.10, 4.40),
    "o3": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    # Anthropic
    "claude-opus-4-5": (5.00, 25.00),
    "claude-opus-4-1": (15.00, 75.00),
    "claude-opus-4": (15.00, 75.00),
    "claude-sonnet-4-5": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-3-opus": (15.00, 75.00),
    "claude-3-sonnet": (3.00, 15.00),
    "claude-3-haiku": (0.25, 1.25),
    # Google (via OpenRouter)
    "gemini-2.5-pro": (1.25, 10.00),
    "gemini-2.5-flash": (0.30, 2.50),
    "gemini-2.0-flash-001": (0.10, 0.40),
    "gemini-2.0-flash": (0.10, 0.40),
    "gemini-flash-1.5": (0.075, 0.30),
    # Others commonly routed through OpenRouter
    "deepseek-chat": (0.27, 1.10),
    "mock": (0.0, 0.0),
}

_DATE_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|\d{4})$")
_DOTTED_VERSION = re.compile(r"(?<=\d)\.(?=\d)")
# Variant suffixes OpenRouter puts after ':' that don't change the price.
_SAME_PRICE_VARIANTS = {"beta", "nitro", "floor", "online", "extended", "thinking", "exacto"}


def _candidates(model: str) -> list[str]:
    base = model.strip().lower()
    bare = base.rsplit("/", 1)[-1]
    out = [base, bare]
    for name in (base, bare):
        trimmed = name.removesuffix("-latest")
        out += [trimmed, _DATE_SUFFIX.sub("", trimmed)]
    # Anthropic spells versions with dashes, OpenRouter with dots: claude-3.5-sonnet.
    out += [_DOTTED_VERSION.sub("-", c) for c in list(out) if c.startswith("claude")]
    return list(dict.fromkeys(out))


def price_for(model: str) -> tuple[float, float] | None:
    """(input, output) USD per 1M tokens, or None when the model isn't in the table."""
    name, _, variant = model.strip().lower().partition(":")
    if variant == "free":
        return (0.0, 0.0)
    if variant and variant not in _SAME_PRICE_VARIANTS:
        return None
    for candidate in _candidates(name):
        if candidate in PRICES:
            return PRICES[candidate]
    return None


def cost_usd(usage: LlmUsage, *models: str | None) -> tuple[float, str | None]:
    """Cost of one call, priced by the first of `models` in the table; warning when none is."""
    for model in models:
        if model:
            price = price_for(model)
            if price is not None:
                cost = (usage.input_tokens * price[0] + usage.output_tokens * price[1]) / 1_000_000
                return round(cost, 8), None
    named = next((m for m in models if m), "?")
    return 0.0, f"no price known for model {named!r}: cost_usd counts it as 0"
