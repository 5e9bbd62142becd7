"""Where the text of an inference request lives, for the input guardrails to scan and rewrite.

The gateway's guardrails stage (``corral.server.guardrails_extension``) scans every text a
caller sends, wherever the OpenAI API lets text go:

- chat: ``messages[i].content`` (a string, or a list of parts whose ``text`` parts count; image
  and audio parts carry no text), ``messages[i].tool_calls[j].function.arguments`` and the legacy
  ``messages[i].function_call.arguments``;
- completions: ``prompt`` (a string or a list of strings; token-id prompts carry no text) and
  ``suffix``;
- embeddings: ``input`` (the same shapes as ``prompt``).

Each text comes with its location (``messages[1].content[0].text``), which findings, errors and
audit records name, and a setter that writes a redacted text back into the parsed payload.
A field of a shape the API does not allow (a number as ``content``) is refused here with its
location, so nothing the upstream might read slips past unscanned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from corral.gateway import GatewayError
from corral.gateway.errors import bad_request


@dataclass(frozen=True, slots=True)
class RequestText:
    """One text of a request: where it is, what it says, who sent it, how to replace it."""

    location: str
    text: str
    role: str  # the message role ("user", "system", ...), or "prompt"/"input"
    replace: Callable[[str], None]


def request_texts(operation: str, payload: dict[str, Any]) -> list[RequestText]:
    """Every text of ``payload`` for ``operation`` ("chat", "text_completion", "embeddings")."""
    if operation == "chat":
        return _chat_texts(payload)
    if operation == "text_completion":
        texts = _prompt_texts(payload, "prompt")
        suffix = payload.get("suffix")
        if isinstance(suffix, str):
            texts.append(RequestText("suffix", suffix, "prompt", _setter(payload, "suffix")))
        return texts
    if operation == "embeddings":
        return _prompt_texts(payload, "input")
    return []


def _refuse(location: str, expected: str, value: object) -> GatewayError:
    return bad_request(
        f"{location}: expected {expected}, got {type(value).__name__}", param=location
    )


def _setter(container: Any, key: Any) -> Callable[[str], None]:
    def replace(text: str) -> None:
        container[key] = text

    return replace


def _chat_texts(payload: dict[str, Any]) -> list[RequestText]:
    messages = payload.get("messages")
    if not isinstance(messages, list):
        return []  # the upstream refuses it; there is no text to screen
    texts: list[RequestText] = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _refuse(where, "an object", message)
        role = message.get("role")
        role = role if isinstance(role, str) else ""
        content = message.get("content")
        if isinstance(content, str):
            texts.append(
                RequestText(f"{where}.content", content, role, _setter(message, "content"))
            )
        elif isinstance(content, list):
            for part_index, part in enumerate(content):
                part_where = f"{where}.content[{part_index}]"
                if not isinstance(part, dict):
                    raise _refuse(part_where, "an object", part)
                if "text" not in part:
                    continue  # image_url, input_audio, file: no text to read
                text = part["text"]
                if not isinstance(text, str):
                    raise _refuse(f"{part_where}.text", "a string", text)
                texts.append(RequestText(f"{part_where}.text", text, role, _setter(part, "text")))
        elif content is not None:
            raise _refuse(f"{where}.content", "a string or a list of parts", content)
        tool_calls = message.get("tool_calls")
        if isinstance(tool_calls, list):
            for call_index, tool_call in enumerate(tool_calls):
                call_where = f"{where}.tool_calls[{call_index}].function"
                function = tool_call.get("function") if isinstance(tool_call, dict) else None
                if isinstance(function, dict):
                    _arguments(function, call_where, role, texts)
        function_call = message.get("function_call")
        if isinstance(function_call, dict):
            _arguments(function_call, f"{where}.function_call", role, texts)
    return texts


def _arguments(function: dict[str, Any], where: str, role: str, texts: list[RequestText]) -> None:
    arguments = function.get("arguments")
    if arguments is None:
        return
    if not isinstance(arguments, str):
        raise _refuse(f"{where}.arguments", "a string", arguments)
    texts.append(RequestText(f"{where}.arguments", arguments, role, _setter(function, "arguments")))


def _prompt_texts(payload: dict[str, Any], field: str) -> list[RequestText]:
    value = payload.get(field)
    if isinstance(value, str):
        return [RequestText(field, value, field, _setter(payload, field))]
    texts: list[RequestText] = []
    if isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, str):
                texts.append(RequestText(f"{field}[{index}]", item, field, _setter(value, index)))
    return texts  # token ids (ints or lists of ints) carry no text
