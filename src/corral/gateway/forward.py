"""The terminal stage: send the request to a replica and relay the answer as it arrives.

Tries replicas chosen by the ``Balancer``, each try bounded by the Endpoint's
``timeouts.perTrySeconds`` to the first response byte and all of them by ``totalSeconds``. A try
that fails before the upstream's first response byte (``UpstreamUnreachable``, or no headers in
time) moves on to another replica, never the same one; so does an upstream answer of 429 or 503
(it is busy, another replica may not be); any other status is the upstream's answer and ends the
Endpoint's tries. Every try after the first spends the Endpoint's retry budget, and each outcome
is reported to the Balancer's outlier ejection (``corral.gateway.resilience``).

Fallback: when the Endpoint has no ready replica, or its tries all failed (unreachable, timed
out, 5xx, 429), the request goes to the first of ``spec.routing.fallback`` that has a ready
replica, within what is left of the total timeout; the answer carries ``x-corral-fallback:
<endpoint>``. Only the requested Endpoint's list is followed, so fallbacks cannot loop. When
nothing answers well, the client gets the last upstream error status as the upstream sent it,
else 504 ``upstream_timeout`` if a try ran out of time, else 502, else 503 ``no_ready_replica``.

Relaying runs the call's ``response_hooks`` over every chunk and always watches the answer's
token usage (``corral.gateway.usage_watch``): a streamed chat or completion request asks its
upstream for the usage chunk, which the client only sees when it asked too. When the relay ends,
``call.usage``, ``call.upstream_status`` and ``call.served_by`` say what happened.

Once the response has started towards the client nothing is retried: an upstream that breaks
mid-body leaves the client with a cut-off response (the server closes the connection), which is
the honest signal. Chunks are relayed one by one as the transport yields them; nothing is
buffered, which is what makes server-sent events stream.

Upstream request: ``POST {apiBase}{path after /v1}`` with the route's upstream headers
(content-type, and the upstream's own API key when it has one; never the caller's). The body is
the client's, with ``model`` set to the chosen version's name: that is the name the runtime
serves (llama.cpp's alias, vLLM's served-model-name, an OpenAI upstream's model id), and the
response's ``model`` then tells the client which version answered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from corral.gateway import deadlines
from corral.gateway.balancer import Balancer, affinity_key, session_key
from corral.gateway.call import Call, Handler
from corral.gateway.errors import bad_gateway, gateway_timeout, no_ready_replica
from corral.gateway.routes import API_PREFIX, EndpointRoute
from corral.gateway.transport import (
    Headers,
    UpstreamError,
    UpstreamResponse,
    UpstreamTransport,
    UpstreamUnreachable,
)
from corral.gateway.usage_watch import UsageWatch, ask_for_stream_usage, output_cap

log = logging.getLogger("corral.gateway")

FALLBACK_HEADER = b"x-corral-fallback"
SESSION_HEADER = b"x-session-id"
_RETRIED_STATUSES = frozenset({429, 503})

# Hop-by-hop headers describe one connection, not the message; date and server are the
# gateway's own (uvicorn writes them).
_NOT_RELAYED = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
        b"date",
        b"server",
    }
)
_NOT_RELAYED_REWRITTEN = _NOT_RELAYED | {b"content-length"}  # a hook may change the length

PromptEstimate = Callable[[Mapping[str, Any]], int]
"""Prompt tokens a request body is estimated to take (``corral.metering`` has one); used for
the usage chunk the gateway supplies when the client asked and the upstream sent none."""


class _Outcome:
    """What one request's tries came to while none has been relayed."""

    __slots__ = (
        "cancelling",
        "expired",
        "held",
        "held_from",
        "payload",
        "problems",
        "strip_usage",
        "task",
        "timed_out",
        "tried",
    )

    def __init__(self, task: asyncio.Task[Any], call: Call) -> None:
        self.task = task
        # What goes upstream: a streamed generation also asks for its usage chunk.
        self.payload = call.payload
        self.strip_usage = False
        if call.stream and call.operation != "embeddings":
            self.payload, asked = ask_for_stream_usage(call.payload)
            self.strip_usage = not asked
        self.cancelling = task.cancelling()  # cancels beyond these are someone else's
        self.expired = False  # the running try's timer went off
        self.held: UpstreamResponse | None = None  # the latest upstream error answer
        self.held_from: str | None = None  # the fallback Endpoint it came from, if any
        self.problems: list[str] = []
        self.timed_out = False
        self.tried = False

    def expire(self) -> None:
        self.expired = True
        self.task.cancel()

    async def hold(self, response: UpstreamResponse, fallback: str | None) -> None:
        if self.held is not None:
            await self.held.aclose()
        self.held, self.held_from = response, fallback


def forward(
    transport: UpstreamTransport,
    balancer: Balancer,
    *,
    max_attempts: int,
    retry_after_seconds: int,
    estimate_prompt_tokens: PromptEstimate | None = None,
) -> Handler:
    async def forward_stage(call: Call) -> None:
        endpoint = call.endpoint
        if endpoint is None:
            raise RuntimeError("forward needs call.endpoint: resolve_endpoint must run first")
        query = call.scope.get("query_string")
        path = call.path[len(API_PREFIX) :]
        target = f"{path}?{query.decode('latin-1')}" if query else path
        loop = asyncio.get_running_loop()
        deadline = loop.time() + endpoint.policy.total_seconds
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("forward runs inside an asyncio task")
        outcome = _Outcome(task, call)
        try:
            if await try_endpoint(call, endpoint, target, deadline, outcome, None):
                return
            for name in endpoint.policy.fallback:
                fallback = call.routes.lookup(name)
                if fallback is None or not fallback.serving:
                    continue
                public = fallback.public_name
                if await try_endpoint(call, fallback, target, deadline, outcome, public):
                    return
                break
            if outcome.held is not None:
                response, outcome.held = outcome.held, None
                try:
                    await _relay(
                        call,
                        response,
                        outcome.held_from,
                        outcome.strip_usage,
                        estimate_prompt_tokens,
                    )
                finally:
                    await response.aclose()
                return
        finally:
            if outcome.held is not None:
                await outcome.held.aclose()
        tries = "; ".join(outcome.problems)
        if outcome.timed_out:
            raise gateway_timeout(
                f"Endpoint {endpoint.public_name!r}: no upstream answered in time ({tries})"
            )
        if outcome.tried:
            raise bad_gateway(f"Endpoint {endpoint.public_name!r}: every try failed ({tries})")
        raise no_ready_replica(endpoint.unavailable_reason, retry_after_seconds)

    async def try_endpoint(
        call: Call,
        endpoint: EndpointRoute,
        target: str,
        deadline: float,
        outcome: _Outcome,
        fallback: str | None,
    ) -> bool:
        """Try ``endpoint``'s replicas; True once an answer was relayed."""
        policy = endpoint.policy
        affinity = affinity_key(call.payload) if endpoint.strategy == "prefix-affinity" else None
        session = (
            session_key(call.payload, call.header(SESSION_HEADER))
            if len(endpoint.serving) > 1
            else None
        )
        headers: Headers = list(endpoint.upstream_headers)
        loop = asyncio.get_running_loop()
        balancer.count_request(endpoint)
        failed: list[str] = []
        for attempt in range(max_attempts):
            picked = balancer.pick(endpoint, affinity, failed, session)
            if picked is None:
                return False
            remaining = deadline - loop.time()
            if remaining <= 0:
                outcome.timed_out = True
                outcome.problems.append(f"total timeout of {policy.total_seconds:g}s reached")
                return False
            if attempt and not balancer.take_retry(endpoint):
                outcome.problems.append(f"{endpoint.public_name}: retry budget spent")
                return False
            version, address = picked
            outcome.tried = True
            per_try = min(policy.per_try_seconds, remaining)
            balancer.acquire(address)
            # What asyncio.timeout does, minus its bookkeeping: a deadline that cancels this task.
            outcome.expired = False
            timer = deadlines.arm(per_try, outcome.expire)
            try:
                response = await transport.send(
                    "POST", address + target, headers, _body_for(call, outcome, version.model)
                )
            except asyncio.CancelledError:
                if not outcome.expired or outcome.task.uncancel() > outcome.cancelling:
                    balancer.release(address)
                    raise
                problem = f"{address}: no response within {per_try:g}s"
                outcome.timed_out = True
            except UpstreamUnreachable as error:
                problem = f"{address}: {error}"
            except BaseException:
                balancer.release(address)
                raise
            else:
                problem = ""
            finally:
                timer.cancel()
            if problem:
                balancer.release(address)
                failed.append(address)
                outcome.problems.append(problem)
                ejected = balancer.failed(endpoint, version, address)
                log.warning(
                    "endpoint %s: replica %s failed%s: %s",
                    endpoint.public_name,
                    address,
                    " and is ejected" if ejected else "",
                    problem,
                )
                continue
            status = response.status
            if status < 500 and status != 429:
                balancer.succeeded(address)
                call.served_by = address
                try:
                    await _relay(
                        call, response, fallback, outcome.strip_usage, estimate_prompt_tokens
                    )
                finally:
                    balancer.release(address)
                    await response.aclose()
                return True
            balancer.release(address)
            if status >= 500:
                balancer.failed(endpoint, version, address)
            failed.append(address)
            outcome.problems.append(f"{address}: answered {status}")
            await outcome.hold(response, fallback)
            if status not in _RETRIED_STATUSES:
                return False
        return False

    return forward_stage


class _PromptTokens:
    """The request's prompt estimate, computed only if a usage chunk has to be supplied."""

    __slots__ = ("_estimate", "_payload")

    def __init__(self, estimate: PromptEstimate, payload: Mapping[str, Any]) -> None:
        self._estimate, self._payload = estimate, payload

    def __call__(self) -> int:
        try:
            return self._estimate(self._payload)
        except ValueError:  # a body the estimator cannot read counts no prompt tokens
            return 0


def _body_for(call: Call, outcome: _Outcome, model: str) -> bytes:
    payload = outcome.payload
    if payload is call.payload and payload.get("model") == model:
        return call.body
    # Same keys in the same order; only ``model`` (and the stream options) differ.
    return orjson.dumps({**payload, "model": model})


async def _relay(
    call: Call,
    response: UpstreamResponse,
    fallback: str | None,
    strip_usage: bool,
    estimate_prompt_tokens: PromptEstimate | None,
) -> None:
    send = call.send
    hooks = call.response_hooks
    status = response.status
    call.upstream_status = status
    drop = _NOT_RELAYED_REWRITTEN if any(hook.rewrites for hook in hooks) else _NOT_RELAYED
    headers = [pair for pair in response.headers if pair[0] not in drop]
    if fallback is not None:
        headers.append((FALLBACK_HEADER, fallback.encode()))
    for hook in hooks:
        hook.start(status, headers)
    prompt_tokens = None
    if call.stream and not strip_usage and estimate_prompt_tokens is not None:
        # The client asked for the usage chunk: supplied if the upstream sends none.
        prompt_tokens = _PromptTokens(estimate_prompt_tokens, call.payload)
    watch = UsageWatch(
        stream=call.stream,
        strip_usage_chunk=strip_usage,
        prompt_tokens=prompt_tokens,
        output_cap=output_cap(call.payload) if call.stream else None,
    )
    await send({"type": "http.response.start", "status": status, "headers": headers})
    call.response_started = True
    # A streamed generation can run for minutes: stop pulling it once the client is gone.
    # (An ASGI send() may silently drop data for a disconnected client, so ask receive().)
    # The watcher starts after the first chunk went out, to keep it off time-to-first-chunk.
    watching = call.stream
    disconnected: asyncio.Future[Any] | None = None
    try:
        async for chunk in response.chunks:
            chunk = watch.chunk(chunk)
            for hook in hooks:
                chunk = hook.chunk(chunk)
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if disconnected is not None:
                if disconnected.done():
                    return
            elif watching:
                disconnected = asyncio.ensure_future(call.receive())
        tail = watch.end()
        for hook in hooks:
            tail = hook.chunk(tail) + hook.end() if tail else hook.end()
        await send({"type": "http.response.body", "body": tail, "more_body": False})
    except UpstreamError as error:
        log.warning(
            "endpoint %s: upstream broke mid-response: %s",
            call.endpoint.public_name if call.endpoint else "?",
            error,
        )
    finally:
        # Also when the client left or the upstream broke: what was generated was used.
        call.usage = watch.report()
        if disconnected is not None and not disconnected.done():
            disconnected.cancel()
