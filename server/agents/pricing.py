"""What Claude models cost per token, to estimate a claude query's cost while it runs.

Claude Code reports a task's cost only in its final ``result``; until then the cost of each model
turn is estimated from the turn's usage (fresh input, cache writes, cache reads, output) at its
model's list price. The CLI's own figure replaces the estimate when the task ends.

Source: Anthropic's public pricing page, https://platform.claude.com/docs/en/about-claude/pricing
("Model pricing": base input, 5m and 1h cache writes, cache hits, output; "Long context pricing"
for Haiku 5.5), read on 2026-12-06, and checked against the price catalog Claude Code 2.1.337
ships (the one its ``total_cost_usd`` comes from). These are the standard Claude API rates: not
batch, not fast mode, not US-only inference (x1.1), not Bedrock/Vertex prices. Update them here,
and only here, when the page changes.

A model id is matched by the longest model prefix in the table that ends at a separator, so
dated and provider ids resolve (``claude-sonnet-4-5-20250929``, ``us.anthropic.claude-opus-4-1-
20250805-v1:0``, ``claude-opus-4-6@20260205``, ``claude-opus-5-5[1m]``). What follows the prefix
may not be a minor version: ``claude-sonnet-5-5`` never takes ``claude-sonnet-5``'s price, nor an
unlisted ``claude-opus-4-9`` Opus 4's. A model not in the table has no price: its tokens are
counted, its cost stays unknown (None, never 0).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PRICING_SOURCE = "https://platform.claude.com/docs/en/about-claude/pricing"
PRICING_READ_ON = "2026-12-06"

_PER_MILLION = 1_000_000


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens. ``cache_write`` is the 5-minute write (the API's default) and
    ``cache_write_1h`` the 1-hour one; ``long_prompt`` (with ``long_prompt_above``) prices every
    token of a request whose prompt is longer than that many tokens."""

    input: float
    output: float
    cache_write: float
    cache_write_1h: float
    cache_read: float
    long_prompt: Price | None = None
    long_prompt_above: int | None = None

    def cost_usd(self, usage: Mapping[str, Any]) -> float:
        """The cost of one request from its usage, in the Messages API's field names."""
        fresh = _count(usage, "input_tokens")
        written = _count(usage, "cache_creation_input_tokens")
        read = _count(usage, "cache_read_input_tokens")
        output = _count(usage, "output_tokens")
        price = self
        if self.long_prompt is not None and self.long_prompt_above is not None \
                and fresh + written + read > self.long_prompt_above:
            price = self.long_prompt
        # The API splits cache writes by lifetime when the request used both; otherwise all are 5-minute.
        split = usage.get("cache_creation")
        written_1h = min(_count(split, "ephemeral_1h_input_tokens"), written) if isinstance(split, Mapping) else 0
        return (fresh * price.input + output * price.output + read * price.cache_read
                + (written - written_1h) * price.cache_write + written_1h * price.cache_write_1h) / _PER_MILLION


def _count(usage: Mapping[str, Any], name: str) -> int:
    value = usage.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _rate(input: float, output: float, cache_read: float) -> Price:
    # Cache writes are 1.25x (5 minutes) and 2x (1 hour) the base input rate on every current model.
    return Price(input=input, output=output, cache_write=input * 1.25, cache_write_1h=input * 2, cache_read=cache_read)


_HAIKU_5_5 = Price(input=0.10, output=0.50, cache_write=0.125, cache_write_1h=0.20, cache_read=0.01,
                   long_prompt=Price(input=0.50, output=2.50, cache_write=0.625, cache_write_1h=1.00, cache_read=0.05),
                   long_prompt_above=100_000)

PRICES: dict[str, Price] = {
    # Fable and Mythos
    "claude-fable-5-2": _rate(8, 40, 0.20),
    "claude-mythos-5-2": _rate(8, 40, 0.20),
    "claude-fable-5-1": _rate(10, 50, 0.25),
    "claude-mythos-5-1": _rate(10, 50, 0.25),
    "claude-fable-5": _rate(10, 50, 1.00),
    "claude-mythos-5": _rate(10, 50, 1.00),
    # Opus
    "claude-opus-5-5": _rate(4, 20, 0.20),
    "claude-opus-5": _rate(5, 25, 0.50),
    "claude-opus-4-8": _rate(5, 25, 0.50),
    "claude-opus-4-7": _rate(5, 25, 0.50),
    "claude-opus-4-6": _rate(5, 25, 0.50),
    "claude-opus-4-5": _rate(5, 25, 0.50),
    "claude-opus-4-1": _rate(15, 75, 1.50),
    "claude-opus-4": _rate(15, 75, 1.50),
    "claude-opus-4-0": _rate(15, 75, 1.50),
    "claude-3-opus": _rate(15, 75, 1.50),
    # Sonnet
    "claude-sonnet-5-5": _rate(2, 10, 0.10),
    "claude-sonnet-5": _rate(2, 10, 0.20),
    "claude-sonnet-4-6": _rate(3, 15, 0.30),
    "claude-sonnet-4-5": _rate(3, 15, 0.30),
    "claude-sonnet-4": _rate(3, 15, 0.30),
    "claude-sonnet-4-0": _rate(3, 15, 0.30),
    "claude-3-7-sonnet": _rate(3, 15, 0.30),
    "claude-3-5-sonnet": _rate(3, 15, 0.30),
    # Haiku
    "claude-haiku-5-5": _HAIKU_5_5,
    "claude-haiku-4-5": _rate(1, 5, 0.10),
    "claude-3-5-haiku": Price(input=0.80, output=4, cache_write=1, cache_write_1h=1.6, cache_read=0.08),
    "claude-3-haiku": Price(input=0.25, output=1.25, cache_write=0.30, cache_write_1h=0.50, cache_read=0.03),
}

# What may follow a model's prefix in an id: a date, Vertex's @date, Bedrock's -v1:0, Claude Code's
# [1m] context suffix; never a minor version (`-9`), which would be another model.
_SUFFIX = re.compile(r"$|[@:\[]|-(?!\d{1,2}(?:$|\D))")


def price_of(model: str | None) -> Price | None:
    """The list price of ``model`` (an id as the API or Claude Code reports it), or None if unknown."""
    if not model:
        return None
    name = model.strip().lower()
    start = name.find("claude-")
    if start < 0:
        return None
    name = name[start:]  # Bedrock ids lead with a region and vendor: us.anthropic.claude-...
    matches = [key for key in PRICES if name.startswith(key) and _SUFFIX.match(name, len(key))]
    return PRICES[max(matches, key=len)] if matches else None


def cost_usd(model: str | None, usage: Mapping[str, Any]) -> float | None:
    """One request's cost at ``model``'s list price; None when the model has no price here."""
    price = price_of(model)
    return price.cost_usd(usage) if price is not None else None
