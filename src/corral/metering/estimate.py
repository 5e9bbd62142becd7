"""The worst case a request can cost, reserved against budgets before the upstream call.

Prompt tokens are estimated from the request body: every string the model will read (message
contents and text parts, the completions ``prompt``, tool and function definitions) plus a
small per-message overhead for role and framing tokens. Two estimators:

- ``chars_per_token=4`` (the default): the usual English average of GPT and Claude tokenizers.
  It is an estimate, not a bound: code, non-Latin scripts or random strings take more tokens
  per character, and then the real cost settled afterwards exceeds the hold by that error.
- ``strict=True``: the UTF-8 byte count, a true upper bound for byte-level BPE tokenizers
  (every token covers at least one byte), for operators who need hard budgets never to be
  exceeded by a mis-estimate; it holds about four times more than English text needs.

Output tokens are ``max_completion_tokens`` or ``max_tokens`` when the request sets them, else
whatever the model's context window leaves after the prompt.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from corral.metering.pricing import Amount, Price

MESSAGE_OVERHEAD_TOKENS = 4
"""Role and separator tokens per chat message (OpenAI's published counting uses 3–4)."""
REPLY_PRIMING_TOKENS = 3
"""Tokens that start the assistant's reply."""
FALLBACK_CONTEXT_LENGTH = 128_000
"""The context window assumed when neither the request nor the Model gives a bound."""


def estimate_prompt_tokens(
    body: Mapping[str, Any], *, chars_per_token: float = 4.0, strict: bool = False
) -> int:
    """Tokens the request's input is estimated to take (see the module docstring)."""
    if not chars_per_token > 0:
        raise ValueError(f"chars_per_token must be > 0, got {chars_per_token}")
    texts: list[str] = []
    messages = body.get("messages")
    message_count = 0
    if messages is not None:
        if not isinstance(messages, list):
            raise ValueError("request body: 'messages' must be a list")
        message_count = len(messages)
        for message in messages:
            _collect_strings(message, texts)
    for field_name in _OTHER_TEXT_FIELDS:
        if field_name in body:
            _collect_strings(body[field_name], texts)
    if strict:
        text_tokens = sum(len(text.encode("utf-8")) for text in texts)
    else:
        text_tokens = math.ceil(sum(map(len, texts)) / chars_per_token)
    framing = message_count * MESSAGE_OVERHEAD_TOKENS + (REPLY_PRIMING_TOKENS if messages else 0)
    return text_tokens + framing


def max_output_tokens(
    body: Mapping[str, Any], prompt_tokens: int, context_length: int | None
) -> int:
    """The most tokens the reply can take: the request's limit, else what the context leaves."""
    for field_name in ("max_completion_tokens", "max_tokens"):
        value = body.get(field_name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"request body: {field_name!r} must be a non-negative integer")
        return value
    window = context_length if context_length is not None else FALLBACK_CONTEXT_LENGTH
    return max(window - prompt_tokens, 0)


def worst_case_cost(
    body: Mapping[str, Any],
    price: Price,
    *,
    context_length: int | None = None,
    chars_per_token: float = 4.0,
    strict: bool = False,
) -> Amount:
    """The amount to reserve for ``body`` before calling the model (see the module docstring)."""
    prompt = estimate_prompt_tokens(body, chars_per_token=chars_per_token, strict=strict)
    completion = max_output_tokens(body, prompt, context_length)
    return price.cost(prompt, completion)


_FRAMING_KEYS = frozenset({"role", "type"})
_OTHER_TEXT_FIELDS = ("prompt", "input", "tools", "functions", "response_format")


def _collect_strings(value: Any, into: list[str]) -> None:
    # Keys, and the values of "role" and "type", are framing the overhead constant covers.
    if isinstance(value, str):
        into.append(value)
    elif type(value) is dict or isinstance(value, Mapping):
        # Parsed JSON is a plain dict: the exact type is tested first, since isinstance
        # against the Mapping ABC costs several times more, on every request.
        for key, item in value.items():
            if key not in _FRAMING_KEYS:
                _collect_strings(item, into)
    elif isinstance(value, list):
        for item in value:
            _collect_strings(item, into)
