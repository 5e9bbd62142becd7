"""One request's telemetry, from the gateway's first stage to the last byte of the response.

The gateway calls ``Telemetry.start(info)`` when it knows the endpoint, then ``first_chunk()``,
``usage(...)`` (and ``response``, ``cost``, ``set_policy`` as it learns them) and ``finish``.
Until ``finish`` the object only stores numbers and clock readings. ``finish`` appends the
trace store record and the Prometheus samples, then queues the call for the recorder thread,
which builds the span (with its real start and end times, so nothing is left open if a request
is abandoned) and the GenAI histograms; exporting is the batch processor's thread's job.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeGuard

import orjson
from opentelemetry.context import get_current
from opentelemetry.trace import INVALID_SPAN_CONTEXT, get_current_span

from corral.observability._recorder import FinishedCall
from corral.observability.traces import TraceRecord

if TYPE_CHECKING:
    from corral.observability.telemetry import Telemetry

OPERATIONS = frozenset({"chat", "text_completion", "embeddings"})


class _CallInfoFields(NamedTuple):
    operation: str
    """``chat``, ``text_completion`` or ``embeddings`` (the GenAI operation name)."""
    endpoint: str
    team: str
    request_model: str
    provider: str
    """The upstream's kind (``openai``, ``vllm``, ``llamacpp``): gen_ai.provider.name."""
    server_address: str | None = None
    policy: str | None = None
    stream: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    input: Any = None
    """The prompt as sent (messages, prompt or input); recorded only with content capture."""


class CallInfo(_CallInfoFields):
    """What the gateway knows about a request when it starts it.

    An immutable named tuple whose construction checks the operation: the gateway builds one
    per request, and a frozen dataclass's ``__init__`` (one ``object.__setattr__`` a field)
    took three times as long.
    """

    __slots__ = ()

    def __new__(
        cls,
        operation: str,
        endpoint: str,
        team: str,
        request_model: str,
        provider: str,
        server_address: str | None = None,
        policy: str | None = None,
        stream: bool = False,
        max_tokens: int | None = None,
        temperature: float | None = None,
        input: Any = None,
    ) -> CallInfo:
        _check_operation(operation)
        return tuple.__new__(
            cls,
            (
                operation,
                endpoint,
                team,
                request_model,
                provider,
                server_address,
                policy,
                stream,
                max_tokens,
                temperature,
                input,
            ),
        )

    @classmethod
    def from_request(
        cls,
        operation: str,
        payload: Mapping[str, Any],
        *,
        endpoint: str,
        team: str,
        provider: str,
        server_address: str | None = None,
        policy: str | None = None,
    ) -> CallInfo:
        """Read model, sampling limits, streaming and the prompt from an OpenAI request body."""
        _check_operation(operation)
        get = payload.get
        max_tokens = get("max_completion_tokens", get("max_tokens"))
        temperature = get("temperature")
        prompt = get("messages", get("prompt", get("input")))
        # In field order, past the checking __new__ (the operation was checked above).
        return tuple.__new__(
            cls,
            (
                operation,
                endpoint,
                team,
                str(get("model", "")),  # request_model
                provider,
                server_address,
                policy,
                get("stream") is True,
                max_tokens if _is_int(max_tokens) else None,
                float(temperature) if _is_number(temperature) else None,
                prompt,  # input
            ),
        )


def _check_operation(operation: str) -> None:
    if operation not in OPERATIONS:
        raise ValueError(
            f"CallInfo.operation: must be one of {sorted(OPERATIONS)}, got {operation!r}"
        )


class RequestTelemetry:
    """Clock readings and facts for one request; ``finish`` records them everywhere."""

    __slots__ = (
        "_cost_usd",
        "_finish_reasons",
        "_finished",
        "_first_chunk_ns",
        "_input_tokens",
        "_output_chars",
        "_output_parts",
        "_output_tokens",
        "_parent",
        "_policy",
        "_response_model",
        "_server_address",
        "_start_ns",
        "_start_wall_ns",
        "_telemetry",
        "info",
    )

    def __init__(self, telemetry: Telemetry, info: CallInfo) -> None:
        self._telemetry = telemetry
        self.info = info
        self._start_wall_ns = time.time_ns()
        self._start_ns = time.perf_counter_ns()
        self._first_chunk_ns: int | None = None
        self._input_tokens: int | None = None
        self._output_tokens: int | None = None
        self._response_model: str | None = None
        self._finish_reasons: tuple[str, ...] = ()
        self._cost_usd: float | None = None
        self._policy = info.policy
        self._server_address = info.server_address
        self._output_parts: list[str] | None = [] if telemetry.config.capture_content else None
        self._output_chars = 0
        # Only worth reading when spans are built: the span's parent, e.g. an ASGI server span.
        self._parent = get_current() if telemetry.recorder is not None else None
        self._finished = False

    def first_chunk(self) -> None:
        """The first response chunk went out; later calls keep the first reading.

        Counted only for streamed requests (``CallInfo.stream``).
        """
        if self._first_chunk_ns is None:
            self._first_chunk_ns = time.perf_counter_ns()

    def usage(self, input_tokens: int | None, output_tokens: int | None) -> None:
        self._input_tokens = input_tokens
        self._output_tokens = output_tokens

    def response(self, model: str | None = None, finish_reasons: Sequence[str] = ()) -> None:
        if model is not None:
            self._response_model = model
        if finish_reasons:
            self._finish_reasons = tuple(finish_reasons)

    def cost(self, usd: float) -> None:
        self._cost_usd = usd

    def set_policy(self, name: str) -> None:
        self._policy = name

    def server(self, address: str) -> None:
        """The upstream host that answered, once known (``server.address``)."""
        self._server_address = address

    def output_text(self, text: str) -> None:
        """Generated text for content capture; ignored unless capture is on."""
        if self._output_parts is None:
            return
        # Keep only what the limit lets through, so a long stream cannot grow memory.
        room = self._telemetry.config.max_content_chars - self._output_chars
        if room > 0:
            self._output_parts.append(text[:room])
        self._output_chars += len(text)

    def guardrail(self, guardrail: str, action: str) -> None:
        metrics = self._telemetry.metrics
        if metrics is not None:
            metrics.guardrail_event(self.info.endpoint, self.info.team, guardrail, action)

    def finish(self, status: int, error: str | None = None) -> TraceRecord | None:
        """Record the request; a second call (say from a ``finally``) does nothing."""
        if self._finished:
            return None
        self._finished = True
        end_ns = time.perf_counter_ns()
        duration_ns = end_ns - self._start_ns
        # Time to first chunk is a streaming measure (as in the GenAI conventions).
        ttfc_s = (
            (self._first_chunk_ns - self._start_ns) / 1e9
            if self._first_chunk_ns is not None and self.info.stream
            else None
        )
        telemetry = self._telemetry
        info = self.info
        input_content, output_content = (
            (None, None) if self._output_parts is None else self._content()
        )
        # An empty context (the usual case: no server span around the gateway) holds no span.
        parent_span = (
            get_current_span(self._parent).get_span_context()
            if self._parent
            else INVALID_SPAN_CONTEXT
        )
        root = not parent_span.is_valid
        trace_id = f"{_new_trace_id(self._start_wall_ns) if root else parent_span.trace_id:032x}"
        # The tuple in field order, past the named tuple's generated __new__ (a Python-level
        # call with 23 arguments): a quarter of the time the keyword form takes.
        record: TraceRecord = tuple.__new__(
            TraceRecord,
            (
                trace_id,
                self._start_wall_ns / 1e9,  # started_at
                duration_ns / 1e9,  # duration_s
                ttfc_s,
                info.operation,
                info.endpoint,
                info.team,
                self._policy,
                info.provider,
                info.request_model,
                self._response_model,
                self._server_address,
                info.stream,
                info.max_tokens,
                info.temperature,
                self._input_tokens,
                self._output_tokens,
                self._finish_reasons,
                self._cost_usd,
                status,
                error,
                input_content,
                output_content,
            ),
        )
        telemetry.store.append(record)
        if telemetry.metrics is not None:
            telemetry.metrics.observe_request(
                info.endpoint,
                info.team,
                status,
                duration_ns / 1e9,
                time_to_first_chunk_s=ttfc_s,
                input_tokens=self._input_tokens or 0,
                output_tokens=self._output_tokens or 0,
                cost_usd=self._cost_usd or 0.0,
            )
        if telemetry.recorder is not None:
            telemetry.recorder.submit(
                tuple.__new__(
                    FinishedCall, (record, self._start_wall_ns, duration_ns, self._parent, root)
                )
            )
        return record

    def _content(self) -> tuple[str | None, str | None]:
        if self._output_parts is None:
            return None, None
        limit = self._telemetry.config.max_content_chars
        prompt = None
        if self.info.input is not None:
            try:
                prompt = orjson.dumps(self.info.input).decode()
            except TypeError:
                prompt = repr(self.info.input)
        output = "".join(self._output_parts)
        if self._output_chars > limit:
            output = f"{output}…[{self._output_chars - limit} more chars]"
        return _bounded(prompt, limit), output


def _bounded(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return f"{text[:limit]}…[{len(text) - limit} more chars]"


def _new_trace_id(wall_ns: int) -> int:
    """A trace id that starts with the request's start in milliseconds (48 bits) and ends with
    80 random bits.

    Trace ids the gateway makes are keys of the trace database's ``trace_id`` index. Random ids
    land on a random leaf page of it each, so every batch the recorder writes dirties hundreds
    of pages (22 µs of CPU per record on a 100,000-row table); ids in time order are appended
    to its right edge (9 µs, as cheap as no index at all). W3C Trace Context asks for the
    right-most 7 bytes to be random, which the 10 random bytes are; the time they show is the
    span's start, which every record carries anyway.
    """
    # All-zero is the invalid trace id (only a clock at the epoch could come near it).
    return (wall_ns // 1_000_000) << 80 | random.getrandbits(80) or 1


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)
