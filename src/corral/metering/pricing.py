"""Prices and costs: what a request costs in tokens and micro-USD.

A Model's ``spec.pricing`` wins; otherwise the shipped table below prices well-known hosted
models by name. Costs are integers in micro-USD (1e-6 USD) so budget counters add and compare
exactly in every backend; a price of P USD per million tokens is P micro-USD per token, and a
cost is rounded up to the next micro-USD so pricing never undercounts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from corral.api.kinds.model import Pricing

MICRO_USD_PER_USD = 1_000_000


@dataclass(frozen=True, slots=True, init=False)
class Amount:
    """A quantity budgets count: tokens (input + output) and cost in micro-USD."""

    tokens: int
    micro_usd: int

    def __init__(self, tokens: int, micro_usd: int) -> None:
        # Several per gateway request: the slots are set directly, not by a frozen dataclass's
        # generated ``__init__`` and ``__post_init__`` (twice the time).
        if tokens < 0 or micro_usd < 0:
            raise ValueError(
                f"an amount cannot be negative: Amount(tokens={tokens!r}, micro_usd={micro_usd!r})"
            )
        _set_tokens(self, tokens)
        _set_micro_usd(self, micro_usd)

    @property
    def usd(self) -> float:
        return self.micro_usd / MICRO_USD_PER_USD


_set_tokens = Amount.__dict__["tokens"].__set__
_set_micro_usd = Amount.__dict__["micro_usd"].__set__


@dataclass(frozen=True)
class Price:
    """USD per million input (prompt) and output (completion) tokens."""

    input_per_million: float
    output_per_million: float

    def __post_init__(self) -> None:
        for field_name in ("input_per_million", "output_per_million"):
            value = getattr(self, field_name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"price {field_name} must be a finite number >= 0, got {value}")

    def cost(self, input_tokens: int, output_tokens: int) -> Amount:
        """The amount ``input_tokens`` in and ``output_tokens`` out cost at this price."""
        if input_tokens < 0 or output_tokens < 0:
            raise ValueError(
                f"token counts cannot be negative: input={input_tokens}, output={output_tokens}"
            )
        micro = input_tokens * self.input_per_million + output_tokens * self.output_per_million
        whole = int(micro)  # micro >= 0: int() is floor
        if micro - whole > 1e-6:
            # Clearly a fraction above ``whole`` (no float noise): round up. The same as the
            # general case below, without the costlier decimal rounding.
            return Amount(input_tokens + output_tokens, whole + 1)
        # The float product can land a hair above an exact integer; round that noise away
        # before rounding up, or a whole-micro-USD cost would be charged one micro-USD more.
        return Amount(input_tokens + output_tokens, math.ceil(round(micro, 6)))


FREE = Price(0.0, 0.0)

PRICES_AS_OF = "2024-11"
"""When the shipped prices were the providers' list prices (standard tier, no batch or cache
discounts). Providers change prices: set ``spec.pricing`` on a Model to be exact."""

DEFAULT_PRICES: Mapping[str, Price] = MappingProxyType(
    {
        "gpt-4o": Price(2.50, 10.00),
        "gpt-4o-mini": Price(0.15, 0.60),
        "gpt-4-turbo": Price(10.00, 30.00),
        "gpt-3.5-turbo": Price(0.50, 1.50),
        "o1-preview": Price(15.00, 60.00),
        "o1-mini": Price(3.00, 12.00),
        "claude-3.5-sonnet": Price(3.00, 15.00),
        "claude-3.5-haiku": Price(0.80, 4.00),
        "claude-3-opus": Price(15.00, 75.00),
        "claude-3-haiku": Price(0.25, 1.25),
        "gemini-1.5-pro": Price(1.25, 5.00),
        "gemini-1.5-flash": Price(0.075, 0.30),
        "mistral-large": Price(2.00, 6.00),
    }
)


def price_for(model: str, pricing: Pricing | None = None) -> Price | None:
    """The price of ``model``: its Model ``spec.pricing`` when given, else the shipped table.

    Names match case-insensitively, with a provider prefix (``openai/gpt-4o``) or a dated
    snapshot suffix (``gpt-4o-2024-08-06``, ``claude-3-5-sonnet-20241022``) allowed. None means
    the model is unknown: the caller decides whether that is free (a local model) or an error.
    """
    if pricing is not None:
        return Price(pricing.inputPerMillion, pricing.outputPerMillion)
    name = model.lower().rsplit("/", 1)[-1]
    candidates = (name, name.replace("-3-5-", "-3.5-"))
    for candidate in candidates:
        # Longest name first, so "gpt-4o-mini-2024-07-18" is not priced as "gpt-4o".
        for known in sorted(DEFAULT_PRICES, key=len, reverse=True):
            if candidate == known or candidate.startswith(known + "-"):
                return DEFAULT_PRICES[known]
    return None
