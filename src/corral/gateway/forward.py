"""The terminal stage: send the request to a replica and relay the answer as it arrives.

Tries replicas chosen by the ``Balancer``; a try that fails before the upstream's first response
byte (``UpstreamUnreachable``) moves on to another replica, never the same one. Once the response
has started towards the client nothing is retried: an upstream that breaks mid-body leaves the
client with a cut-off response (the server closes the connection), which is the honest signal.
Chunks are relayed one by one as the transport yields them; nothing is buffered, which is what
makes server-sent events stream.

Upstream request: ``POST {apiBase}{path after /v1}`` with the route's upstream headers
(content-type, and the upstream's own API key when it has one; never the caller's). The body is
the client's, with ``model`` set to the chosen version's name: that is the name the runtime
serves (llama.cpp's alias, vLLM's served-model-name, an OpenAI upstream's model id), and the
response's ``model`` then tells the client which version answered.
"""

from __future__ import annotations

import asyncio
import logging

import orjson

from corral.gateway.balancer import Balancer, affinity_key
from corral.gateway.call import Call, Handler
from corral.gateway.errors import bad_gateway, no_ready_replica
from corral.gateway.routes import API_PREFIX
from corral.gateway.transport import (
    Headers,
    UpstreamError,
    UpstreamResponse,
    UpstreamTransport,
    UpstreamUnreachable,
)

log = logging.getLogger("corral.gateway")

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


def forward(
    transport: UpstreamTransport,
    balancer: Balancer,
    *,
    max_attempts: int,
    retry_after_seconds: int,
) -> Handler:
    async def forward_stage(call: Call) -> None:
        endpoint = call.endpoint
        if endpoint is None:
            raise RuntimeError("forward needs call.endpoint: resolve_endpoint must run first")
        affinity = affinity_key(call.payload) if endpoint.strategy == "prefix-affinity" else None
        query = call.scope.get("query_string")
        path = call.path[len(API_PREFIX) :]
        target = f"{path}?{query.decode('latin-1')}" if query else path
        headers: Headers = list(endpoint.upstream_headers)
        failed: list[str] = []
        problems: list[str] = []
        for _ in range(max_attempts):
            picked = balancer.pick(endpoint, affinity, failed)
            if picked is None:
                break
            version, address = picked
            balancer.acquire(address)
            try:
                response = await transport.send(
                    "POST", address + target, headers, _body_for(call, version.model)
                )
            except UpstreamUnreachable as error:
                balancer.release(address)
                failed.append(address)
                problems.append(f"{address}: {error}")
                log.warning(
                    "endpoint %s: replica %s failed, trying another: %s",
                    endpoint.public_name,
                    address,
                    error,
                )
                continue
            except BaseException:
                balancer.release(address)
                raise
            try:
                await _relay(call, response)
            finally:
                balancer.release(address)
                await response.aclose()
            return
        if not failed:
            raise no_ready_replica(endpoint.unavailable_reason, retry_after_seconds)
        raise bad_gateway(
            f"Endpoint {endpoint.public_name!r}: every try failed ({'; '.join(problems)})"
        )

    return forward_stage


def _body_for(call: Call, model: str) -> bytes:
    if call.payload.get("model") == model:
        return call.body
    # Same keys in the same order; only ``model`` differs.
    return orjson.dumps({**call.payload, "model": model})


async def _relay(call: Call, response: UpstreamResponse) -> None:
    send = call.send
    await send(
        {
            "type": "http.response.start",
            "status": response.status,
            "headers": [pair for pair in response.headers if pair[0] not in _NOT_RELAYED],
        }
    )
    call.response_started = True
    # A streamed generation can run for minutes: stop pulling it once the client is gone.
    # (uvicorn's send() silently drops data for a disconnected client, so ask receive().)
    disconnected = asyncio.ensure_future(call.receive()) if call.stream else None
    try:
        async for chunk in response.chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if disconnected is not None and disconnected.done():
                return
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except UpstreamError as error:
        log.warning(
            "endpoint %s: upstream broke mid-response: %s",
            call.endpoint.public_name if call.endpoint else "?",
            error,
        )
    finally:
        if disconnected is not None and not disconnected.done():
            disconnected.cancel()
