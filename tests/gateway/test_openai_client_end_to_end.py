"""The official openai client talks to the gateway over real HTTP, as to OpenAI itself."""

import openai
import orjson
import pytest
from gateway_harness import (
    TOKEN,
    FakeOpenAIServer,
    accept_test_token,
    endpoint,
    replica,
    serve_asgi,
)

from corral.gateway import RouteSource, RouteTable, create_gateway

MESSAGES = [{"role": "user", "content": "ping"}]


@pytest.fixture
async def stack():
    """A fake OpenAI upstream, and the gateway (real uvicorn) routing 'chat' and 'team-a/chat'."""
    upstream = FakeOpenAIServer()
    async with serve_asgi(upstream) as upstream_url:
        routes = RouteSource(
            RouteTable.from_endpoints(
                [
                    endpoint("chat", {"v1": 100}, [replica("v1", upstream_url)]),
                    endpoint(
                        "chat", {"v1": 100}, [replica("v1", upstream_url)], namespace="team-a"
                    ),
                    endpoint("cold", {"v1": 100}, [replica("v1", upstream_url, ready=False)]),
                ]
            )
        )
        app = create_gateway(routes, authenticate=accept_test_token)
        async with serve_asgi(app) as gateway_url:
            client = openai.AsyncOpenAI(base_url=f"{gateway_url}/v1", api_key=TOKEN, max_retries=0)
            async with client:
                yield client, upstream


async def test_chat_completion(stack):
    client, upstream = stack
    answer = await client.chat.completions.create(model="chat", messages=MESSAGES)
    assert answer.choices[0].message.content == "echo: ping"
    assert answer.usage is not None
    assert answer.usage.total_tokens == 5
    path, headers, body = upstream.requests[0]
    assert path == "/v1/chat/completions"
    # The upstream is asked for the version it serves; the answer names it too.
    assert orjson.loads(body) == {"model": "v1", "messages": MESSAGES}
    assert answer.model == "v1"
    assert "authorization" not in headers  # the caller's key stays at the gateway


async def test_chat_completion_stream(stack):
    client, _ = stack
    stream = await client.chat.completions.create(
        model="team-a/chat", messages=MESSAGES, stream=True
    )
    deltas = [chunk.choices[0].delta.content async for chunk in stream]
    assert "".join(deltas) == "Hello from upstream"


async def test_completion_plain_and_stream(stack):
    client, upstream = stack
    answer = await client.completions.create(model="chat", prompt="say hi")
    assert answer.choices[0].text == "echo: say hi"
    stream = await client.completions.create(model="chat", prompt="say hi", stream=True)
    assert "".join([chunk.choices[0].text async for chunk in stream]) == "Hello from upstream"
    assert [request[0] for request in upstream.requests] == ["/v1/completions"] * 2


async def test_models_list_and_retrieve(stack):
    client, _ = stack
    listed = await client.models.list()
    assert [model.id for model in listed.data] == ["chat", "cold", "team-a/chat"]
    assert {model.owned_by for model in listed.data} == {"corral"}
    assert (await client.models.retrieve("cold")).id == "cold"


async def test_client_errors_map_onto_openai_exceptions(stack):
    client, _ = stack
    with pytest.raises(openai.NotFoundError) as not_found:
        await client.chat.completions.create(model="missing", messages=MESSAGES)
    assert not_found.value.code == "model_not_found"
    with pytest.raises(openai.InternalServerError) as unavailable:
        await client.chat.completions.create(model="cold", messages=MESSAGES)
    assert unavailable.value.status_code == 503
    assert unavailable.value.response.headers["retry-after"] == "5"
    wrong_key = client.with_options(api_key="not-the-token")
    with pytest.raises(openai.AuthenticationError):
        await wrong_key.models.list()
