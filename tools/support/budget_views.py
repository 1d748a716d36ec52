"""How a budget appears in the tools' answers: the limit and what is left of it."""

from __future__ import annotations

from server.agents.budgets import BudgetState
from tools.support.compact import CompactModel


class ShownBudget(CompactModel):
    # A limit, and what is left of it (what was spent is beside it: cost_usd and the tokens). A
    # comment, not a docstring: it would be the schema's description in three tools' answers.

    budget_usd: float | None = None
    remaining_usd: float | None = None
    budget_tokens: int | None = None
    remaining_tokens: int | None = None

    @classmethod
    def from_engine(cls, state: BudgetState) -> ShownBudget:
        shown = cls()
        if state.limit.usd is not None:
            shown.budget_usd, shown.remaining_usd = state.limit.usd, round(state.remaining_usd or 0.0, 6)
        if state.limit.tokens is not None:
            shown.budget_tokens, shown.remaining_tokens = state.limit.tokens, state.remaining_tokens
        return shown
