"""What a request costs: prices by Model or name, exact micro-USD, and the worst case to hold."""

from __future__ import annotations

import pytest

from corral.api.kinds.model import Pricing
from corral.metering import DEFAULT_PRICES, Amount, Price, estimate_prompt_tokens, price_for
from corral.metering.estimate import FALLBACK_CONTEXT_LENGTH, worst_case_cost


def test_a_models_own_pricing_wins_over_the_shipped_table() -> None:
    own = Pricing(inputPerMillion=1.0, outputPerMillion=2.0)
    assert price_for("gpt-4o", own) == Price(1.0, 2.0)
    assert price_for("gpt-4o") == DEFAULT_PRICES["gpt-4o"]


@pytest.mark.parametrize(
    ("name", "shipped"),
    [
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("openai/gpt-4o-2024-08-06", "gpt-4o"),
        ("GPT-4o", "gpt-4o"),
        ("claude-3-5-sonnet-20241022", "claude-3.5-sonnet"),
        ("anthropic/claude-3.5-haiku", "claude-3.5-haiku"),
    ],
)
def test_hosted_model_names_find_their_shipped_price(name: str, shipped: str) -> None:
    assert price_for(name) == DEFAULT_PRICES[shipped]


def test_an_unknown_model_has_no_price_rather_than_a_guess() -> None:
    assert price_for("smollm2-135m") is None
    assert price_for("gpt-4oo") is None


def test_costs_are_whole_micro_usd_rounded_up_never_down() -> None:
    price = Price(2.50, 10.00)  # USD per million tokens == micro-USD per token
    assert price.cost(1000, 100) == Amount(1100, 3500)
    assert Price(0.15, 0.60).cost(1, 1) == Amount(2, 1)  # 0.75 micro-USD rounds up
    assert Price(0.1, 0.2).cost(10, 10) == Amount(20, 3)  # float noise does not add one
    assert Amount(0, 1_500_000).usd == 1.5


def test_bad_prices_and_counts_are_refused_with_the_field_named() -> None:
    with pytest.raises(ValueError, match="input_per_million must be a finite number >= 0"):
        Price(-1.0, 0.0)
    with pytest.raises(ValueError, match="token counts cannot be negative"):
        Price(1.0, 1.0).cost(-1, 0)
    with pytest.raises(ValueError, match="cannot be negative"):
        Amount(-1, 0)


def test_prompt_tokens_count_every_text_the_model_reads_plus_framing() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "x" * 40},
            {"role": "user", "content": [{"type": "text", "text": "y" * 80}]},
        ],
        "tools": [{"type": "function", "function": {"name": "f" * 8, "description": "d" * 32}}],
    }
    # (40 + 80 + 8 + 32) / 4 = 40, + 2 messages * 4 + 3 to prime the reply; roles are framing.
    assert estimate_prompt_tokens(body) == 40 + 8 + 3
    assert estimate_prompt_tokens({"prompt": "abcdefgh"}) == 2


def test_strict_estimates_count_utf8_bytes_an_upper_bound_for_byte_level_tokenizers() -> None:
    body = {"prompt": "héllo 世界"}  # 13 UTF-8 bytes, 8 characters
    assert estimate_prompt_tokens(body, strict=True) == 13
    assert estimate_prompt_tokens(body) == 2


def test_the_worst_case_is_the_prompt_plus_the_longest_reply_allowed() -> None:
    price = Price(1.0, 3.0)
    body = {"messages": [{"role": "user", "content": "z" * 400}], "max_tokens": 50}
    assert worst_case_cost(body, price) == Amount(107 + 50, 107 + 150)
    newer = {"prompt": "z" * 40, "max_completion_tokens": 5, "max_tokens": 500}
    assert worst_case_cost(newer, price) == Amount(15, 10 + 15)


def test_without_max_tokens_the_reply_may_fill_the_context_window() -> None:
    price = Price(0.0, 1.0)
    assert worst_case_cost({"prompt": "z" * 40}, price, context_length=4096) == Amount(4096, 4086)
    assert worst_case_cost({"prompt": ""}, price).tokens == FALLBACK_CONTEXT_LENGTH


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"messages": "hi"}, "'messages' must be a list"),
        ({"prompt": "x", "max_tokens": -1}, "'max_tokens' must be a non-negative integer"),
        ({"prompt": "x", "max_tokens": "10"}, "'max_tokens' must be a non-negative integer"),
    ],
)
def test_a_malformed_request_body_is_named(body: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        worst_case_cost(body, Price(1.0, 1.0))
