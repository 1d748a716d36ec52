"""The settings of one adaptive query rule (``[[query_rules]]``), checked when the settings are
read; `server.queries.rules` runs them."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

RuleAction = Literal["terminate", "pause", "change_model"]


class QueryRule(BaseModel):
    """One ``[[query_rules]]`` table: when every given condition holds, ``action`` is taken."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, description="Shown in the query's log as rule:<name>.")
    action: RuleAction = Field(description="terminate | pause | change_model (needs `model`).")
    model: str | None = Field(None, description="change_model: the model to switch to.")
    agent_type: str | None = Field(None, description="Only queries of this agent type.")
    max_runtime_s: float | None = Field(None, gt=0, description="Active time (pauses excluded) above this.")
    max_cost_usd: float | None = Field(None, gt=0, description="Cost so far above this.")
    max_tokens: int | None = Field(None, gt=0, description="Input plus output tokens so far above this.")
    min_turns: int | None = Field(None, gt=0, description="At least this many model turns.")
    max_turn_latency_s: float | None = Field(
        None, gt=0, description="The last model turn took longer than this to begin (claude).")

    @model_validator(mode="after")
    def _complete(self) -> Self:
        conditions = (self.max_runtime_s, self.max_cost_usd, self.max_tokens, self.min_turns, self.max_turn_latency_s)
        if all(condition is None for condition in conditions):
            raise ValueError(f"rule {self.name!r} has no condition (max_runtime_s, max_cost_usd, max_tokens, "
                             "min_turns or max_turn_latency_s)")
        if (self.action == "change_model") != (self.model is not None):
            raise ValueError(f"rule {self.name!r}: `model` goes with action change_model, and only with it")
        return self
