"""The price table that claude queries' live cost estimates come from."""

from __future__ import annotations

import re

import pytest

from server.agents.pricing import PRICING_READ_ON, PRICING_SOURCE, cost_usd, price_of

MILLION = 1_000_000
# A million tokens of each kind: the cost is the sum of the four rates.
EACH_KIND = {"input_tokens": MILLION, "output_tokens": MILLION, "cache_creation_input_tokens": MILLION,
             "cache_read_input_tokens": MILLION}


def test_a_known_model_is_priced_per_kind_of_token() -> None:
    # Sonnet 4.5: $3 input, $15 output, $3.75 5-minute cache writes, $0.30 cache reads per million.
    assert cost_usd("claude-sonnet-4-5", EACH_KIND) == pytest.approx(3 + 15 + 3.75 + 0.30)
    assert cost_usd("claude-sonnet-4-5", {"input_tokens": 14_690}) == pytest.approx(0.04407)
    # Opus 5.5 reads its cache at 0.05x input: $4 + $20 + $5 + $0.20.
    assert cost_usd("claude-opus-5-5", EACH_KIND) == pytest.approx(4 + 20 + 5 + 0.20)
    assert cost_usd("claude-haiku-4-5", {"output_tokens": 2_000}) == pytest.approx(0.01)
    assert cost_usd("claude-sonnet-4-5", {}) == 0.0


def test_dated_and_provider_ids_resolve_to_their_model_and_no_neighbour() -> None:
    sonnet_4_5 = price_of("claude-sonnet-4-5")
    assert sonnet_4_5 is not None
    for model in ("claude-sonnet-4-5-20250929", "CLAUDE-SONNET-4-5-20250929", "claude-sonnet-4-5@20250929",
                  "us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5[1m]"):
        assert price_of(model) == sonnet_4_5, model
    assert cost_usd("claude-haiku-4-5-20251001", EACH_KIND) == pytest.approx(1 + 5 + 1.25 + 0.10)
    assert cost_usd("claude-opus-4-20250514", EACH_KIND) == pytest.approx(15 + 75 + 18.75 + 1.50)
    assert cost_usd("claude-opus-4-1-20250805", EACH_KIND) == pytest.approx(15 + 75 + 18.75 + 1.50)
    assert cost_usd("claude-3-5-haiku-20241022", EACH_KIND) == pytest.approx(0.80 + 4 + 1 + 0.08)
    # A longer model id is another model, never the shorter one's price: Sonnet 5.5 reads its cache
    # at $0.10, Sonnet 5 at $0.20; Opus 4.5 costs a third of Opus 4.
    assert cost_usd("claude-sonnet-5-5-20261001", {"cache_read_input_tokens": MILLION}) == pytest.approx(0.10)
    assert cost_usd("claude-sonnet-5-20260630", {"cache_read_input_tokens": MILLION}) == pytest.approx(0.20)
    assert cost_usd("claude-opus-4-5-20251101", {"input_tokens": MILLION}) == pytest.approx(5)


def test_an_unknown_model_has_no_price_not_a_zero_one() -> None:
    for model in ("claude-scripted", "claude-opus-4-9", "claude-sonnet-6", "gpt-5", "<synthetic>", "", None):
        assert price_of(model) is None, model
        assert cost_usd(model, EACH_KIND) is None, model


def test_one_hour_cache_writes_and_long_haiku_prompts_take_their_own_rates() -> None:
    # Of a million cache-write tokens, a quarter written for an hour (2x input) and the rest for 5 minutes.
    split = {"cache_creation_input_tokens": MILLION,
             "cache_creation": {"ephemeral_1h_input_tokens": MILLION // 4, "ephemeral_5m_input_tokens": 3 * MILLION // 4}}
    assert cost_usd("claude-sonnet-4-5", split) == pytest.approx(0.25 * 6 + 0.75 * 3.75)
    # Haiku 5.5: every token of a request whose prompt passes 100,000 tokens at the higher rates.
    assert cost_usd("claude-haiku-5-5", {"input_tokens": 100_000, "output_tokens": 1_000}) == pytest.approx(
        (100_000 * 0.10 + 1_000 * 0.50) / MILLION)
    assert cost_usd("claude-haiku-5-5", {"input_tokens": 50_000, "cache_read_input_tokens": 50_001,
                                         "output_tokens": 1_000}) == pytest.approx(
        (50_000 * 0.50 + 50_001 * 0.05 + 1_000 * 2.50) / MILLION)


def test_the_table_names_its_source_and_when_it_was_read() -> None:
    assert PRICING_SOURCE.startswith("https://") and "claude.com" in PRICING_SOURCE
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", PRICING_READ_ON)
