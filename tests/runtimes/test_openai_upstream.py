"""An ``openai`` replica runs nothing: it is Ready while the upstream answers ``GET /models``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from corral.runtimes import ReplicaSpec, ReplicaState, Supervisor

from .helpers import Recorder, wait_for, wait_for_event


class FakeUpstream:
    """A minimal OpenAI-compatible upstream that checks the API key and can be made to fail."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.healthy = True
        self.authorizations: list[str | None] = []
        self.base_url = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        request_line, *header_lines = head.strip().split("\r\n")
        path = request_line.split()[1]
        headers = dict(line.lower().split(": ", 1) for line in header_lines)
        authorization = headers.get("authorization")
        self.authorizations.append(authorization)
        if path != "/v1/models":
            code, body = 404, b'{"error": "not found"}'
        elif authorization != f"bearer {self.key}":
            code, body = 401, b'{"error": "bad key"}'
        elif not self.healthy:
            code, body = 503, b'{"error": "overloaded"}'
        else:
            code, body = 200, b'{"object": "list", "data": [{"id": "gpt-up"}]}'
        writer.write(
            f"HTTP/1.1 {code} X\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()
        await writer.wait_closed()


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    fake = FakeUpstream("sk-up")
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    fake.base_url = f"http://127.0.0.1:{port}/v1"
    async with server:
        yield fake


def _upstream_spec(base_url: str, api_key: str) -> ReplicaSpec:
    return ReplicaSpec(
        name="default.gpt.up.0",
        namespace="default",
        endpoint="gpt",
        model="gpt-up",
        runtime="openai",
        base_url=base_url,
        api_key=api_key,
    )


async def test_healthy_upstream_is_ready_without_a_process(
    supervisor: Supervisor, upstream: FakeUpstream
) -> None:
    spec = _upstream_spec(upstream.base_url + "/", "sk-up")
    await supervisor.ensure({spec.name: spec})

    status = await wait_for(supervisor, spec.name, lambda s: s.ready)

    assert status.state is ReplicaState.READY
    assert status.address == upstream.base_url
    assert status.pid is None
    assert upstream.authorizations[0] == "bearer sk-up"


async def test_wrong_key_keeps_the_upstream_pending_with_the_reason(
    supervisor: Supervisor, upstream: FakeUpstream
) -> None:
    spec = _upstream_spec(upstream.base_url, "sk-wrong")
    await supervisor.ensure({spec.name: spec})

    status = await wait_for(supervisor, spec.name, lambda s: "answered" in s.message)

    assert status.state is ReplicaState.PENDING
    assert not status.ready
    assert status.message == f"GET {upstream.base_url}/models answered 401"


async def test_failing_upstream_leaves_rotation_after_repeated_failures_and_returns(
    supervisor: Supervisor, upstream: FakeUpstream, recorder: Recorder
) -> None:
    spec = _upstream_spec(upstream.base_url, "sk-up")
    await supervisor.ensure({spec.name: spec})
    await wait_for(supervisor, spec.name, lambda s: s.ready)

    upstream.healthy = False
    down = await wait_for(supervisor, spec.name, lambda s: not s.ready)
    checks_when_down = len(upstream.authorizations)
    upstream.healthy = True
    await wait_for(supervisor, spec.name, lambda s: s.ready)
    async with asyncio.timeout(10):  # on_change is called soon after the status shows it
        while True:
            if recorder.states(spec.name)[-1] == "Ready":
                break
            await asyncio.sleep(0.02)

    assert down.message.endswith("answered 503")
    # QUICK allows 2 consecutive failures: the first failed check alone changed nothing.
    assert checks_when_down >= 3
    states = recorder.states(spec.name)
    assert states[states.index("Ready") :] == ["Ready", "Pending", "Ready"]


async def test_unreachable_upstream_is_pending_and_removal_stops_it(
    supervisor: Supervisor, recorder: Recorder
) -> None:
    spec = _upstream_spec("http://127.0.0.1:9/v1", "sk-up")
    await supervisor.ensure({spec.name: spec})

    status = await wait_for(supervisor, spec.name, lambda s: "failed" in s.message)
    await supervisor.ensure({})
    await wait_for_event(recorder, spec.name, ReplicaState.STOPPED)

    assert status.message.startswith("GET http://127.0.0.1:9/v1/models failed: ConnectError")
    assert supervisor.statuses() == []
