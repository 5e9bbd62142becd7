"""Fuzzing the gateway from its own OpenAPI document: no 5xx, every 4xx OpenAI-shaped.

schemathesis generates requests (valid and invalid bodies, odd path parameters) for every
operation of ``GET /v1/openapi.json`` and sends them to a real ``corral up`` whose one Endpoint
fronts an upstream that always answers well: so any 5xx is the gateway's own fault. The run is
deterministic (derandomized, no example database) and bounded (a fixed number of examples per
operation, no shrinking). Negative examples also drop the credential now and then (a 401 is
then the right answer). Answers must also conform to the document (status codes, content
types, response schemas), which keeps the document honest.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from corral.gateway.openapi import DOCUMENT
from serving.helpers import Corral, endpoint, is_ready

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

EXAMPLES_PER_CASE = 10  # 5 operations x 2 modes x 2 credentials x 10 = 200 requests
ENDPOINT = "fuzz"
FUZZER_MAY_INVOKE = """
permit (principal == Agent::"spiffe://corral.local/ns/default/agent/fuzzer",
        action == Action::"invoke", resource == Endpoint::"default/fuzz");
"""
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]


@contextmanager
def well_behaved_upstream() -> Iterator[str]:
    """An OpenAI-compatible upstream that answers every request 200 (streamed when asked)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: object) -> None:
            pass

        def do_GET(self) -> None:
            self._json({"object": "list", "data": [{"id": "up", "object": "model"}]})

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                body = {}
            body = body if isinstance(body, dict) else {}
            usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
            if self.path.endswith("/embeddings"):
                self._json(
                    {
                        "object": "list",
                        "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
                        "model": "up",
                        "usage": {"prompt_tokens": 3, "total_tokens": 3},
                    }
                )
                return
            chat = self.path.endswith("/chat/completions")
            if body.get("stream") is True:
                self._stream(chat, usage)
                return
            choice = (
                {"index": 0, "message": {"role": "assistant", "content": "ok"}}
                if chat
                else {"index": 0, "text": "ok"}
            )
            self._json(
                {
                    "id": "up-1",
                    "object": "chat.completion" if chat else "text_completion",
                    "created": 1,
                    "model": "up",
                    "choices": [{**choice, "finish_reason": "stop"}],
                    "usage": usage,
                }
            )

        def _json(self, payload: object) -> None:
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, chat: bool, usage: dict[str, int]) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("connection", "close")
            self.end_headers()
            delta = {"delta": {"content": "ok"}} if chat else {"text": "ok"}
            chunk = {"id": "up-1", "object": "chunk", "choices": [{"index": 0, **delta}]}
            final = {"id": "up-1", "object": "chunk", "choices": [], "usage": usage}
            for event in (chunk, final):
                self.wfile.write(b"data: " + json.dumps(event).encode() + b"\n\n")
            self.wfile.write(b"data: [DONE]\n\n")
            self.close_connection = True

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="fuzz-upstream", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def corral(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corral]:
    root = tmp_path_factory.mktemp("corral-fuzz")
    server = Corral(root / "state", root / "logs").start()
    try:
        with well_behaved_upstream() as upstream_url:
            server.wait_ready()
            server.apply(
                endpoint(ENDPOINT, {"up": 100}, runtime={"type": "openai", "baseURL": upstream_url})
            )
            server.wait_for("endpoints", ENDPOINT, is_ready)
            server.apply(
                {
                    "apiVersion": "corral.dev/v1alpha1",
                    "kind": "Policy",
                    "metadata": {"name": "fuzzer-invokes"},
                    "spec": {"cedar": FUZZER_MAY_INVOKE},
                }
            )
            _wait_for_route(server)
            yield server
    finally:
        code = server.stop()
    assert code == 0, server.stderr


def _wait_for_route(server: Corral) -> None:
    deadline = time.monotonic() + 60
    while server.api().get(f"/v1/models/{ENDPOINT}").status_code != 200:
        assert time.monotonic() < deadline, "the gateway never routed the Endpoint"
        time.sleep(0.05)


def test_the_document_is_served_without_auth_and_loads(corral: Corral) -> None:
    answer = httpx.get(f"{corral.url}/v1/openapi.json", timeout=30)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    document = answer.json()
    assert document == json.loads(json.dumps(DOCUMENT))
    operations = [op.ok() for op in schemathesis.openapi.from_dict(document).get_all_operations()]
    assert sorted(op.label for op in operations) == [
        "GET /v1/models",
        "GET /v1/models/{model}",
        "POST /v1/chat/completions",
        "POST /v1/completions",
        "POST /v1/embeddings",
    ]


def aimed_at_the_endpoint(document: dict[str, Any]) -> dict[str, Any]:
    """The served document with ``model`` naming the real Endpoint, so valid requests get past
    routing and reach the upstream (negative examples still break it; unknown models are
    tested in test_errors_are_openai_shaped)."""
    aimed = copy.deepcopy(document)
    model = {"enum": [ENDPOINT, f"default/{ENDPOINT}"]}
    for name in ("ChatCompletionRequest", "CompletionRequest", "EmbeddingRequest"):
        aimed["components"]["schemas"][name]["properties"]["model"] = model
    return aimed


def openai_shaped(response: httpx.Response | Any) -> str | None:
    """What is wrong with a 4xx body, or None when it is an OpenAI error object."""
    try:
        body = json.loads(response.content)
    except ValueError:
        return f"not JSON: {response.content[:200]!r}"
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or set(error) != {"message", "type", "param", "code"}:
        return f"not an OpenAI error object: {body!r}"
    if not isinstance(error["message"], str) or not error["message"]:
        return f"no message: {body!r}"
    return None


@pytest.fixture(scope="module")
def credentials(corral: Corral) -> dict[str, str]:
    """The admin token, and a workload token whose Agent a Policy lets invoke the Endpoint
    (so fuzzed requests also go through JWT verification and a Cedar decision)."""
    issued = corral.api().post(
        "/corral/v1/tokens", json={"subject": "default/fuzzer", "ttlSeconds": 3600}
    )
    assert issued.status_code == 200, issued.text
    return {"admin": corral.token, "workload": issued.json()["token"]}


@pytest.mark.parametrize("credential", ["admin", "workload"])
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize(
    "label",
    [
        "POST /v1/chat/completions",
        "POST /v1/completions",
        "POST /v1/embeddings",
        "GET /v1/models",
        "GET /v1/models/{model}",
    ],
)
def test_fuzzing_finds_no_5xx_and_only_openai_shaped_errors(
    corral: Corral, credentials: dict[str, str], label: str, mode: GenerationMode, credential: str
) -> None:
    document = aimed_at_the_endpoint(httpx.get(f"{corral.url}/v1/openapi.json", timeout=30).json())
    schema = schemathesis.openapi.from_dict(document)
    operation = schema.find_operation_by_label(label)
    assert operation is not None
    # Credentials are the test's (garbled ones are tested in test_bad_input_*): only the
    # requests themselves are generated.
    schema.config.generation.update(with_security_parameters=False)
    auth = {"Authorization": f"Bearer {credentials[credential]}"}
    failures: list[str] = []

    @settings(
        max_examples=EXAMPLES_PER_CASE,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def send(case: schemathesis.Case) -> None:
        case.headers = {
            name: value
            for name, value in (case.headers or {}).items()
            if name.lower() != "authorization"
        }
        response = case.call(base_url=corral.url, headers=auth, timeout=30)
        where = f"{case.as_curl_command(headers=auth)} -> {response.status_code}"
        if response.status_code >= 500:
            failures.append(f"{where}: {response.content[:300]!r}")
            return
        if response.status_code >= 400 and (problem := openai_shaped(response)):
            failures.append(f"{where}: {problem}")
            return
        try:
            case.validate_response(response, checks=CHECKS, headers=auth)
        except Exception as error:  # schemathesis raises a FailureGroup of what it found
            failures.append(f"{where}: does not conform to the document: {error}")

    send()
    assert not failures, "\n".join(failures[:10])
