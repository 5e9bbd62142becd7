"""Telemetry end to end: a real ``corral up`` exporting OTLP/HTTP to a collector in the test, the
official ``openai`` client, an upstream whose token usage is known, ``/metrics`` and
``corral traces``.

After one plain and one streamed request, ``/metrics`` counts both with their tokens for that
endpoint, ``corral traces`` lists both (the streamed one with a time to first chunk), and the
collector received a ``chat {model}`` span per request with the GenAI usage attributes and the
same trace ids. A request the policy refuses is traced with its 403. The prompt is in no trace
(store, database or span) unless content capture is switched on.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import openai
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from prometheus_client.parser import text_string_to_metric_families

from .budget_upstream import PROMPT_TOKENS, MeteredUpstream, metered_upstream
from .helpers import CONVERGE_TIMEOUT_S, CORRAL, Corral, endpoint, is_ready

pytestmark = pytest.mark.slow

ENDPOINT = "tele-chat"
SECRET_PROMPT = "the launch code is PINEAPPLE-4471"
MESSAGES: Any = [{"role": "user", "content": SECRET_PROMPT}]
PLAIN_MAX_TOKENS = 4
STREAM_MAX_TOKENS = 7


@dataclass
class Collector:
    """An OTLP/HTTP receiver: every protobuf export request, decoded."""

    url: str = ""
    spans: list[Any] = field(default_factory=list)
    metric_names: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def spans_named(self, name: str) -> list[Any]:
        with self.lock:
            return [span for span in self.spans if span.name == name]


@contextmanager
def otlp_collector() -> Iterator[Collector]:
    state = Collector()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            assert self.headers.get("content-type") == "application/x-protobuf"
            with state.lock:
                if self.path == "/v1/traces":
                    traces = ExportTraceServiceRequest.FromString(body)
                    for resource in traces.resource_spans:
                        for scope in resource.scope_spans:
                            state.spans.extend(scope.spans)
                elif self.path == "/v1/metrics":
                    metrics = ExportMetricsServiceRequest.FromString(body)
                    for resource in metrics.resource_metrics:
                        for scope in resource.scope_metrics:
                            state.metric_names.update(m.name for m in scope.metrics)
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="otlp-collector", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextmanager
def corral_with(root: Path, env: dict[str, str]) -> Iterator[tuple[Corral, MeteredUpstream]]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        server = Corral(root / "state", root / "logs").start()  # inherits the environment
    try:
        with metered_upstream() as upstream:
            server.wait_ready()
            runtime = {"type": "openai", "baseURL": upstream.base_url}
            server.apply(endpoint(ENDPOINT, {"gpt-4o-mini": 100}, runtime=runtime))
            server.wait_for("endpoints", ENDPOINT, is_ready)
            yield server, upstream
    finally:
        code = server.stop()
    assert code == 0, server.stderr


def corral_cli(server: Corral, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [CORRAL, *args, "--server", server.url, "--token", server.token]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def traces_json(server: Corral, *args: str) -> list[dict[str, Any]]:
    listed = corral_cli(server, "traces", *args, "-o", "json")
    assert listed.returncode == 0, listed.stderr
    items: list[dict[str, Any]] = json.loads(listed.stdout)["items"]
    return items


def prometheus_samples(server: Corral) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    answer = server.api().get("/metrics")
    assert answer.status_code == 200, answer.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def one_request_each(server: Corral) -> None:
    with server.openai() as client:
        plain = client.chat.completions.create(
            model=ENDPOINT, messages=MESSAGES, max_tokens=PLAIN_MAX_TOKENS
        )
        assert plain.usage is not None
        assert plain.usage.completion_tokens == PLAIN_MAX_TOKENS
        chunks = list(
            client.chat.completions.create(
                model=ENDPOINT, messages=MESSAGES, max_tokens=STREAM_MAX_TOKENS, stream=True
            )
        )
        assert len(chunks) >= STREAM_MAX_TOKENS


def wait_for_traces(server: Corral, count: int, **params: str) -> None:
    """Until ``count`` traces match: the client may read the last byte of an answer before the
    stages inside telemetry (budget settling, say) return and the request is recorded."""
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while True:
        answer = server.api().get("/corral/v1/traces", params=params)
        assert answer.status_code == 200, answer.text
        if len(answer.json()["items"]) >= count:
            return
        assert time.monotonic() < deadline, f"{count} traces never showed: {answer.json()}"
        time.sleep(0.05)


def attribute(span: Any, key: str) -> Any:
    for kv in span.attributes:
        if kv.key == key:
            value: AnyValue = kv.value
            return getattr(value, str(value.WhichOneof("value")))
    return None


@pytest.mark.timeout(240)
def test_metrics_traces_and_spans_after_a_plain_and_a_streamed_request(
    tmp_path: Path,
) -> None:
    with otlp_collector() as collector:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            "OTEL_METRIC_EXPORT_INTERVAL": "500",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        with corral_with(tmp_path, env) as (server, upstream):
            one_request_each(server)
            assert upstream.calls() == 2
            wait_for_traces(server, 2)

            # Prometheus: both requests and their tokens, for this endpoint and the admin team.
            samples = prometheus_samples(server)
            labels = {("endpoint", ENDPOINT), ("team", "admin")}
            requests = frozenset({*labels, ("status", "200")})
            assert samples[("corral_gateway_requests_total", requests)] == 2
            tokens = {
                kind: samples[("corral_gateway_tokens_total", frozenset({*labels, ("type", kind)}))]
                for kind in ("input", "output")
            }
            assert tokens == {
                "input": 2 * PROMPT_TOKENS,
                "output": PLAIN_MAX_TOKENS + STREAM_MAX_TOKENS,
            }
            ttfc_count = ("corral_gateway_time_to_first_chunk_seconds_count", frozenset(labels))
            assert samples[ttfc_count] == 1  # only the streamed request has one
            duration_count = ("corral_gateway_request_duration_seconds_count", requests)
            assert samples[duration_count] == 2

            # corral traces: both, newest (the streamed one) first, with tokens and a TTFT.
            streamed, plain = traces_json(server, "--endpoint", ENDPOINT)
            assert streamed["stream"] is True
            assert plain["stream"] is False
            assert (plain["input_tokens"], plain["output_tokens"]) == (
                PROMPT_TOKENS,
                PLAIN_MAX_TOKENS,
            )
            assert (streamed["input_tokens"], streamed["output_tokens"]) == (
                PROMPT_TOKENS,
                STREAM_MAX_TOKENS,
            )
            assert 0 < streamed["time_to_first_chunk_s"] <= streamed["duration_s"]
            assert plain["time_to_first_chunk_s"] is None
            for trace in (plain, streamed):
                assert (trace["status"], trace["team"], trace["provider"]) == (
                    200,
                    "admin",
                    "openai",
                )
                assert trace["input_content"] is None
                assert trace["output_content"] is None
            assert traces_json(server, "--endpoint", "no-such-endpoint") == []
            assert len(traces_json(server, "--limit", "1")) == 1

            table = corral_cli(server, "traces")
            assert table.returncode == 0, table.stderr
            header, *rows = table.stdout.splitlines()
            assert header.split()[:5] == ["TIME", "TRACE", "ID", "ENDPOINT", "TEAM"]
            assert [row.split()[1] for row in rows[:2]] == [
                streamed["trace_id"],
                plain["trace_id"],
            ]

            shown = corral_cli(server, "traces", "show", streamed["trace_id"])
            assert shown.returncode == 0, shown.stderr
            assert f"gen_ai.usage.output_tokens = {STREAM_MAX_TOKENS}" in shown.stdout
            assert "gen_ai.first_chunk" in shown.stdout
            detail = json.loads(
                corral_cli(server, "traces", "show", plain["trace_id"], "-o", "json").stdout
            )
            assert detail["span_name"] == f"chat {ENDPOINT}"
            assert detail["attributes"]["gen_ai.usage.input_tokens"] == PROMPT_TOKENS
            missing = corral_cli(server, "traces", "show", "0" * 31 + "1")
            assert missing.returncode == 1
            assert "not found" in missing.stderr

            # The collector: one span per request, exported within the batch delay.
            deadline = time.monotonic() + CONVERGE_TIMEOUT_S
            while len(collector.spans_named(f"chat {ENDPOINT}")) < 2:
                assert time.monotonic() < deadline, "the spans never reached the collector"
                time.sleep(0.1)
        # The server has stopped: whatever it had queued was flushed on the way out.
        spans = {span.trace_id.hex(): span for span in collector.spans_named(f"chat {ENDPOINT}")}
        assert set(spans) == {plain["trace_id"], streamed["trace_id"]}
        for trace, max_tokens in ((plain, PLAIN_MAX_TOKENS), (streamed, STREAM_MAX_TOKENS)):
            span = spans[trace["trace_id"]]
            assert attribute(span, "gen_ai.operation.name") == "chat"
            assert attribute(span, "gen_ai.request.model") == ENDPOINT
            assert attribute(span, "gen_ai.provider.name") == "openai"
            assert attribute(span, "gen_ai.usage.input_tokens") == PROMPT_TOKENS
            assert attribute(span, "gen_ai.usage.output_tokens") == max_tokens
            assert attribute(span, "gen_ai.request.max_tokens") == max_tokens
            assert attribute(span, "gen_ai.input.messages") is None
            assert SECRET_PROMPT.encode() not in span.SerializeToString()
        assert {"gen_ai.client.token.usage", "gen_ai.client.operation.duration"} <= (
            collector.metric_names
        )
        database = (server.state_dir / "traces.db").read_bytes()
        assert plain["trace_id"].encode() in database  # the trace database has the traces...
        assert b"PINEAPPLE" not in database  # ...and never the prompt


def refused_for_policy(server: Corral, key: str) -> openai.PermissionDeniedError:
    """The 403 of a team no policy lets invoke; a 401 while the key propagates is retried."""
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    with server.openai(api_key=key) as client:
        while True:
            try:
                client.chat.completions.create(model=ENDPOINT, messages=MESSAGES)
            except openai.AuthenticationError:
                assert time.monotonic() < deadline, "the key was never accepted"
                time.sleep(0.05)
                continue
            except openai.PermissionDeniedError as refused:
                return refused
            raise AssertionError("a team without a policy was allowed to invoke")


@pytest.mark.timeout(240)
def test_refusals_are_traced_and_content_is_captured_only_when_enabled(tmp_path: Path) -> None:
    with corral_with(tmp_path, {"CORRAL_TELEMETRY_CAPTURE_CONTENT": "true"}) as (server, upstream):
        one_request_each(server)
        wait_for_traces(server, 2)
        created = corral_cli(server, "keys", "create", "--team", "gamma", "--create-team")
        assert created.returncode == 0, created.stderr
        refused_for_policy(server, created.stdout.strip())
        assert upstream.calls() == 2  # the refusal reached no upstream
        wait_for_traces(server, 1, status="403")

        (denied,) = traces_json(server, "--status", "403")
        assert (denied["team"], denied["error"], denied["input_tokens"]) == (
            "gamma",
            "denied_by_policy",
            None,
        )
        assert traces_json(server, "--status", "error") == [denied]
        assert len(traces_json(server, "--status", "ok", "--team", "admin")) == 2

        streamed, plain = traces_json(server, "--team", "admin")
        for trace in (streamed, plain):
            assert SECRET_PROMPT in trace["input_content"]
            assert trace["output_content"].startswith("tok tok")

        bad = corral_cli(server, "traces", "--since", "yesterday")
        assert bad.returncode == 2
        assert "--since" in bad.stderr
        answer = server.api().get("/corral/v1/traces", params={"limit": "0"})
        assert answer.status_code == 400
        assert "limit" in answer.json()["message"]
        answer = server.api().get("/corral/v1/traces", params={"colour": "red"})
        assert answer.status_code == 400
        assert "colour" in answer.json()["message"]
        assert server.api().get("/corral/v1/traces", headers={"authorization": ""}).status_code in (
            401,
            403,
        )
