"""What a task spent, and a limit on it: money (estimated USD) and tokens (input and output)."""

from __future__ import annotations

from dataclasses import dataclass

from server.agents.outcome import Usage


@dataclass(frozen=True, slots=True)
class Spend:
    usd: float = 0.0
    tokens: int = 0

    def __add__(self, other: Spend) -> Spend:
        return Spend(self.usd + other.usd, self.tokens + other.tokens)


def spend_of(usage: Usage | None) -> Spend:
    if usage is None:
        return Spend()
    return Spend(usage.cost_usd or 0.0, (usage.input_tokens or 0) + (usage.output_tokens or 0))


@dataclass(frozen=True, slots=True)
class Limit:
    usd: float | None = None
    tokens: int | None = None

    @property
    def set(self) -> bool:
        return self.usd is not None or self.tokens is not None

    def reached_by(self, spent: Spend) -> str | None:
        """How ``spent`` reaches this limit (``"$0.0123 of budget_usd $0.0100"``), or None."""
        if self.usd is not None and spent.usd >= self.usd:
            return f"${spent.usd:.4f} of budget_usd ${self.usd:.4f}"
        if self.tokens is not None and spent.tokens >= self.tokens:
            return f"{spent.tokens:,} tokens of budget_tokens {self.tokens:,}"
        return None
