"""Activities: the side effects of a session (a model call, a tool call), run through the seams.

Each returns the result that will be journaled, or raises :class:`ActivityError` with a code,
a message and whether trying again may help. Every outcome of the outside world is turned into
one of the two here, so a model that streams garbage, a tool that hangs, crashes or answers in
a shape nobody can read become journaled, visible errors rather than a stuck or lost session.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import orjson

from corral.agents.config import ToolBinding
from corral.agents.seams import ModelCaller, ToolCaller

MAX_TOOL_RESULT = 64 * 1024
"""Characters of a tool's answer kept in the journal and shown to the model."""


class Deadlines:
    """Timeouts for activities at the cost of two set operations each, not a timer each.

    ``asyncio.timeout`` arms a loop timer per call (tens of microseconds with its cancel); at
    thousands of steps a second that is a tenth of the runtime's time. Here deadlines fall into
    buckets of ``resolution`` seconds; one ticker task wakes once a bucket and cancels the
    tasks still in the buckets that passed. A timeout fires up to ``resolution`` late (fine for
    timeouts counted in seconds) and memory is one entry per activity in flight.
    """

    def __init__(self, resolution: float = 0.05) -> None:
        self._resolution = resolution
        self._bucket_of: dict[asyncio.Task[Any], int] = {}
        self._buckets: dict[int, set[asyncio.Task[Any]]] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._next = 0

    def arm(self, seconds: float, task: asyncio.Task[Any] | None = None) -> asyncio.Task[Any]:
        """Cancel ``task`` (the current one when not given) once ``seconds`` have passed."""
        if task is None:
            task = asyncio.current_task()
            if task is None:
                raise RuntimeError("activities run in a task")
        bucket = int((time.monotonic() + seconds) / self._resolution) + 1
        self._bucket_of[task] = bucket
        members = self._buckets.get(bucket)
        if members is None:
            self._buckets[bucket] = {task}
        else:
            members.add(task)
        if self._ticker is None or self._ticker.done():
            self._next = int(time.monotonic() / self._resolution)
            self._ticker = asyncio.get_running_loop().create_task(self._tick())
        return task

    def disarm(self, task: asyncio.Task[Any]) -> bool:
        """Forget the deadline; True when it had fired (the cancellation was ours)."""
        bucket = self._bucket_of.pop(task, None)
        if bucket is not None:
            members = self._buckets.get(bucket)
            if members is not None:
                members.discard(task)
                if not members:
                    del self._buckets[bucket]
        if task in self._expired:
            self._expired.discard(task)
            task.uncancel()
            return True
        return False

    async def _tick(self) -> None:
        while self._bucket_of:
            await asyncio.sleep(self._resolution)
            now = int(time.monotonic() / self._resolution)
            for bucket in range(self._next, now + 1):
                for task in self._buckets.pop(bucket, ()):
                    del self._bucket_of[task]
                    self._expired.add(task)
                    task.cancel()
            self._next = now + 1

    @property
    def armed(self) -> int:
        return len(self._bucket_of)

    def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()


class ActivityError(Exception):
    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


async def call_model(
    model: ModelCaller,
    request: dict[str, Any],
    token: str,
    *,
    seconds: float,
    deadlines: Deadlines | None = None,
    on_delta: Callable[[dict[str, Any]], None] | None = None,
    task: asyncio.Task[Any] | None = None,
) -> dict[str, Any]:
    """``{"message": {"content", "tool_calls"?}, "usage": {...}}`` of one chat completion.

    The runtime passes its :class:`Deadlines` (and ``task``, the session's task this runs in,
    which saves looking it up); without deadlines the call arms its own timer."""
    if deadlines is None:
        try:
            async with asyncio.timeout(seconds):
                return await _model_call(model, request, token, on_delta)
        except TimeoutError:
            raise _model_timeout(seconds) from None
    task = deadlines.arm(seconds, task)
    try:
        return await _model_call(model, request, token, on_delta)
    except asyncio.CancelledError:
        if deadlines.disarm(task):
            raise _model_timeout(seconds) from None
        raise
    finally:
        deadlines.disarm(task)


async def _model_call(
    model: ModelCaller,
    request: dict[str, Any],
    token: str,
    on_delta: Callable[[dict[str, Any]], None] | None,
) -> dict[str, Any]:
    try:
        response = await model(request, token)
        if type(response) is dict or isinstance(response, Mapping):  # see _is_mapping
            return _from_response(response)
        return await _from_stream(response, on_delta)
    except (ActivityError, asyncio.CancelledError):
        raise
    except Exception as error:  # the gateway's answer or a transport failure, kept as data
        raise ActivityError("model_error", _describe(error), retryable=True) from error


def _model_timeout(seconds: float) -> ActivityError:
    return ActivityError(
        "model_timeout", f"the model call took longer than {seconds:.1f}s", retryable=True
    )


def _from_response(response: Mapping[str, Any]) -> dict[str, Any]:
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices or not _is_mapping(choices[0]):
        raise ActivityError(
            "bad_model_response", "the model's response has no choices[0]", retryable=True
        )
    message = choices[0].get("message")
    if not _is_mapping(message):
        raise ActivityError(
            "bad_model_response", "the model's choices[0] has no message", retryable=True
        )
    out: dict[str, Any] = {"content": message.get("content")}
    if message.get("tool_calls"):
        out["tool_calls"] = message["tool_calls"]
    return {"message": out, "usage": _usage(response.get("usage"))}


async def _from_stream(
    chunks: AsyncIterator[Mapping[str, Any]], on_delta: Callable[[dict[str, Any]], None] | None
) -> dict[str, Any]:
    text: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    usage: Any = None
    async for chunk in chunks:
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("content"):
                text.append(delta["content"])
                if on_delta is not None:
                    on_delta({"content": delta["content"]})
            for part in delta.get("tool_calls") or ():
                call = calls.setdefault(
                    int(part.get("index", len(calls))),
                    {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
                )
                call["id"] = part.get("id") or call["id"]
                function = part.get("function") or {}
                name = function.get("name") or ""
                # OpenAI sends the name in the first delta only; llama.cpp's server repeats it
                # whole in every delta: a repeat is not more of the name.
                if name and name != call["function"]["name"]:
                    call["function"]["name"] += name
                call["function"]["arguments"] += function.get("arguments") or ""
    message: dict[str, Any] = {"content": "".join(text) if text else None}
    if calls:
        message["tool_calls"] = [calls[index] for index in sorted(calls)]
    return {"message": message, "usage": _usage(usage)}


_USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens", "cost_usd")
_NUMBER = (int, float)  # a tuple: ``int | float`` in the loop would build a union each time


def _usage(usage: Any) -> dict[str, Any]:
    if usage is None or not _is_mapping(usage):  # None: most answers of a tool-calling turn
        return {}
    out: dict[str, Any] = {}
    for key in _USAGE_KEYS:
        value = usage.get(key)
        if isinstance(value, _NUMBER):
            out[key] = value
    if "total_tokens" not in out and ("prompt_tokens" in out or "completion_tokens" in out):
        out["total_tokens"] = out.get("prompt_tokens", 0) + out.get("completion_tokens", 0)
    return out


async def call_tool(
    tools: ToolCaller,
    binding: ToolBinding,
    arguments: dict[str, Any],
    idempotency_key: str,
    token: str,
    deadlines: Deadlines | None = None,
    task: asyncio.Task[Any] | None = None,
) -> dict[str, Any]:
    """``{"content": str}`` (plus ``"error": True`` when the tool reported an error); ``task``
    as for :func:`call_model`."""
    if deadlines is None:
        try:
            async with asyncio.timeout(binding.timeout_seconds):
                return await _tool_call(tools, binding, arguments, idempotency_key, token)
        except TimeoutError:
            raise _tool_timeout(binding) from None
    task = deadlines.arm(binding.timeout_seconds, task)
    try:
        return await _tool_call(tools, binding, arguments, idempotency_key, token)
    except asyncio.CancelledError:
        if deadlines.disarm(task):
            raise _tool_timeout(binding) from None
        raise
    finally:
        deadlines.disarm(task)


async def _tool_call(
    tools: ToolCaller,
    binding: ToolBinding,
    arguments: dict[str, Any],
    idempotency_key: str,
    token: str,
) -> dict[str, Any]:
    try:
        result = await tools.call(binding.tool, binding.name, arguments, idempotency_key, token)
    except asyncio.CancelledError:
        raise
    except Exception as error:  # the tool's process or connection failed: the model is told
        raise ActivityError(
            "tool_failed", f"tool {binding.function} failed: {_describe(error)}"
        ) from error
    return tool_result(binding.function, result)


def _tool_timeout(binding: ToolBinding) -> ActivityError:
    return ActivityError(
        "tool_timeout",
        f"tool {binding.function} did not answer within {binding.timeout_seconds:g}s",
    )


def tool_result(function: str, result: Any) -> dict[str, Any]:
    """The journaled form of an MCP tool result (or plain text); malformed ones are errors."""
    if isinstance(result, str):
        return {"content": result[:MAX_TOOL_RESULT]}
    if not _is_mapping(result):
        raise ActivityError(
            "malformed_tool_result",
            f"tool {function} answered {type(result).__name__}, not an MCP result or text",
        )
    parts: list[str] = []
    content = result.get("content")
    if content is not None and not isinstance(content, list):
        raise ActivityError("malformed_tool_result", f"tool {function}: content is not a list")
    for item in content or ():
        if not _is_mapping(item) or not isinstance(item.get("type"), str):
            raise ActivityError(
                "malformed_tool_result", f"tool {function}: a content item has no type"
            )
        if item["type"] == "text":
            parts.append(str(item.get("text", "")))
        else:
            parts.append(orjson.dumps(item).decode())
    if not parts and "structuredContent" in result:
        try:
            parts.append(orjson.dumps(result["structuredContent"]).decode())
        except TypeError as error:
            raise ActivityError(
                "malformed_tool_result", f"tool {function}: structuredContent: {error}"
            ) from None
    if not parts and content is None:
        raise ActivityError("malformed_tool_result", f"tool {function}: the result has no content")
    out: dict[str, Any] = {"content": "\n".join(parts)[:MAX_TOOL_RESULT]}
    if result.get("isError"):
        out["error"] = True
    return out


def _is_mapping(value: object) -> bool:
    """``isinstance(value, Mapping)``, with plain dicts (nearly every answer) found without the
    abstract-class check, which costs several times more."""
    return type(value) is dict or isinstance(value, Mapping)


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}"[:2_000]
