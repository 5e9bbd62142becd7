"""Guardrails stage benchmark: what the gateway's guardrails stage adds to one request, in µs.

    python benchmarks/guardrails_stage_bench.py [--quick]

The real stage of ``corral.server.guardrails_extension`` runs with an Endpoint's default
guardrails (on: PII, secrets, Unicode redacted, injection blocked; output redacted) on a chat
request whose one user message is a 2 KB prompt, with a terminal handler that relays a 1 KB
answer through the stage's response hook (no network: the stage's own work only). Rows:

- the stage with ``enabled: false`` (the floor: a Call, a dict lookup, two awaits);
- a clean 2 KB prompt (nothing found): input only (with and without the injection
  heuristics), then with the answer not streamed, and streamed in 200 SSE events;
- a 2 KB prompt holding an email and a card number: found, redacted, body re-serialised;
- for scale: ``orjson`` loads + dumps of the same request body, and the library's
  ``Guardrails().scan_text`` of the prompt alone (the stage's own overhead is the difference).

Each row is the median over 5 rounds of the mean CPU µs (this thread's CPU time, so a busy
shared machine inflates it less than wall time would) per request over N requests.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import orjson
from rich.console import Console
from rich.table import Table

from corral.gateway import Call, Handler, RouteTable
from corral.guardrails import Guardrails
from corral.server.config import ServerConfig
from corral.server.extensions import ServerContext
from corral.server.guardrails_extension import GuardrailsExtension
from corral.store.protocol import Store

SENTENCES = (
    "Could you help me refactor this function so that it reads the configuration once? ",
    "Our support team noticed that invoices from last month show the wrong totals. ",
    "Please summarise the meeting notes below in three bullet points for the team. ",
    "The deployment failed at the database migration step with a timeout after 30 s. ",
    "I would like to know how the caching layer decides when an entry is stale. ",
)


def prompt_2kb(extra: str = "") -> str:
    text = extra
    index = 0
    while len(text) < 2048:
        text += SENTENCES[index % len(SENTENCES)]
        index += 1
    return text[:2048]


ANSWER_TEXT = prompt_2kb()[:1024]
ANSWER_JSON = orjson.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": ANSWER_TEXT},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 500, "completion_tokens": 250, "total_tokens": 750},
    }
)


def answer_sse(events: int = 200) -> list[bytes]:
    step = max(1, len(ANSWER_TEXT) // events)
    out = []
    for start in range(0, len(ANSWER_TEXT), step):
        chunk = {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": {"content": ANSWER_TEXT[start : start + step]}}],
        }
        out.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
    out.append(b"data: [DONE]\n\n")
    return out


def extension(guardrails: dict[str, Any] | None = None) -> GuardrailsExtension:
    state = Path(tempfile.mkdtemp(prefix="guardrails-bench-"))
    context = ServerContext(
        config=ServerConfig(state_dir=state),
        state_dir=state,
        store=cast(Store, None),  # the stage never touches the store
        store_url="sqlite:///unused",
        stop=asyncio.Event(),
    )
    ext = GuardrailsExtension(context)
    if guardrails is not None:
        # What the stage applies to an Endpoint it has not seen (the defaults) becomes these.
        endpoint = {"metadata": {"name": "bench"}, "spec": {"guardrails": guardrails}}
        ext._default = ext.compile(endpoint)
    # Time the stage as a warmed-up server runs it: with the guardrails' Hyperscan prefilter
    # compiled (a background thread, about a second).
    for scanners in (ext._default.input, ext._default.output):
        if scanners is not None:
            scanners.prefilter.wait(120.0)
    return ext


def relay_terminal(chunks: list[bytes], content_type: bytes = b"application/json") -> Handler:
    headers = [(b"content-type", content_type)]

    async def terminal(call: Call) -> None:
        for hook in call.response_hooks:
            hook.start(200, headers)
        for data in chunks:
            for hook in call.response_hooks:
                data = hook.chunk(data)
        for hook in call.response_hooks:
            hook.end()

    return terminal


async def per_request_us(
    ext: GuardrailsExtension, body: bytes, stream: bool, terminal: Handler, requests: int
) -> float:
    routes = RouteTable()
    payload = orjson.loads(body)

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(_message: Any) -> None:
        return None

    started = time.thread_time_ns()
    for _ in range(requests):
        call = Call({"headers": []}, receive, send, "/v1/chat/completions", routes)
        call.body = body
        call.payload = orjson.loads(body) if payload is None else _fresh(payload)
        call.stream = stream
        await ext.stage(call, terminal)
    return (time.thread_time_ns() - started) / requests / 1000


def _fresh(payload: dict[str, Any]) -> dict[str, Any]:
    # The stage may rewrite the payload in place; each request gets its own (as parsed).
    return {**payload, "messages": [dict(m) for m in payload["messages"]]}


def median_of(rounds: int, measure: Any) -> float:
    return statistics.median(asyncio.run(measure()) for _ in range(rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    requests = 300 if args.quick else 2000
    rounds = 5
    clean = orjson.dumps(
        {"model": "m", "messages": [{"role": "user", "content": prompt_2kb()}], "max_tokens": 64}
    )
    pii = orjson.dumps(
        {
            "model": "m",
            "messages": [
                {
                    "role": "user",
                    "content": prompt_2kb("Mail alice@example.com, card 4111 1111 1111 1111. "),
                }
            ],
        }
    )
    on, off = extension(), extension({"enabled": False})
    no_injection = extension({"input": {"injection": "off"}})
    whole = relay_terminal([ANSWER_JSON[:512], ANSWER_JSON[512:]])
    streamed = relay_terminal(answer_sse(), b"text/event-stream")
    nothing = relay_terminal([])
    rows: list[tuple[str, float]] = []

    def row(name: str, ext: GuardrailsExtension, body: bytes, stream: bool, term: Handler) -> None:
        rows.append(
            (name, median_of(rounds, lambda: per_request_us(ext, body, stream, term, requests)))
        )

    row("enabled: false (floor), answer relayed", off, clean, False, whole)
    row("clean 2 KB prompt, input only (no answer)", on, clean, False, nothing)
    row("  the same, input injection: off", no_injection, clean, False, nothing)
    row("clean 2 KB prompt + 1 KB answer, not streamed", on, clean, False, whole)
    row("clean 2 KB prompt + 1 KB answer in 200 SSE events", on, clean, True, streamed)
    row("2 KB prompt with email + card: redacted, re-serialised", on, pii, False, nothing)

    def orjson_round() -> float:
        started = time.thread_time_ns()
        for _ in range(requests):
            orjson.dumps(orjson.loads(clean))
        return (time.thread_time_ns() - started) / requests / 1000

    rows.append(
        (
            "for scale: orjson loads+dumps of the request",
            statistics.median(orjson_round() for _ in range(rounds)),
        )
    )
    library = Guardrails()
    text = orjson.loads(clean)["messages"][0]["content"]

    def library_round() -> float:
        started = time.thread_time_ns()
        for _ in range(requests):
            library.scan_text(text, "messages[0].content")
        return (time.thread_time_ns() - started) / requests / 1000

    rows.append(
        (
            "for scale: Guardrails().scan_text of the 2 KB prompt alone",
            statistics.median(library_round() for _ in range(rounds)),
        )
    )
    floor = rows[0][1]
    table = Table(title=f"guardrails stage, CPU µs per request (median of {rounds} × {requests})")
    table.add_column("case")
    table.add_column("µs", justify="right")
    table.add_column("over the floor", justify="right")
    for name, value in rows:
        table.add_row(
            name,
            f"{value:.1f}",
            "" if name.startswith(("enabled", "for")) else f"{value - floor:.1f}",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
