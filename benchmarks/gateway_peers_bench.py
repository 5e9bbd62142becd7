"""The governed gateway beside its peers: corral with all governance on vs bare pass-throughs
and LiteLLM, one run, one machine, the same fast fake upstream (issue 4, "Numbers").

Targets, each one process pinned to its own core (the first), in front of nginx answering
fixed OpenAI-shaped JSON and SSE (``peers/fake_upstream.py``), nginx and the load generator
pinned together on the other core:

- direct: the load straight to nginx (the baseline "added latency" is measured against);
- bare raw-ASGI pass-through: uvicorn + httptools + uvloop + a pooled client, twice: with
  aiohttp's ClientSession (the issue's floor, the goal's denominator) and with corral's own
  HTTP client (a stricter floor, about twice as fast: reported beside, no goal on it);
- bare aiohttp pass-through (aiohttp server + ClientSession, uvloop);
- LiteLLM proxy, one worker, master key, no database (own venv, pinned version);
- corral ``up`` with all governance on: API key of a Team, a Cedar Policy, a hard Budget, a
  RateLimit, input guardrails, metrics, tracing, audit (``peers/governed_corral.py``). Pieces
  the server does not have yet are reported and the row marked "partial governance". Every
  request to corral carries a prompt of its own (six letters of a counter in it, see
  ``peers/loadgen.py``'s ``VARY_MARK``), so its input guardrails scan each one as they would
  real users' messages; ``--repeated-prompt`` adds a row with one prompt repeated, which its
  cache of texts found clean answers. The upstream's plain answers differ too (nginx's
  ``$request_id`` in them), so output screening is never a cache hit either.

Per target and run: saturation (``wrk``, 64 connections, non-streamed), latency at fixed rates
(300 and 200 req/s; LiteLLM only at 30 req/s, all it sustains) from an open-loop generator that
measures from each request's scheduled send time, and time to the first streamed chunk at a
fixed rate. "Added" is the target minus direct in the same run; figures are medians over runs
(targets interleaved in each run, so background load on a shared machine hits all alike).

    python benchmarks/gateway_peers_bench.py [--quick] [--runs N] [--skip litellm,aiohttp]
        [--repeated-prompt]

Needs ``nginx`` and ``wrk`` (``apt-get install -y nginx wrk``); creates the LiteLLM venv under
~/.cache/corral/bench on first use (PyPI).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvloop
from peers.fake_upstream import CHAT_MODEL, STREAM_MODEL, STREAM_PREFIX, NginxUpstream
from peers.governed_corral import (
    PROMPT,
    VARIED_PROMPT,
    GovernedCorral,
    chat_body,
    corral_version,
    governance_gaps,
    stream_body,
)
from peers.litellm_peer import LiteLLMProxy, bench_python, ensure_bench_venv, installed_version
from peers.loadgen import OpenLoopResult, open_loop, wrk, wrk_version
from peers.processes import Process, answers, cpu_layout, free_port, missing_tools, wait_until

PEERS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers")


@dataclass
class Target:
    """One server under test: where to send plain and streamed chats, how, and at what rates."""

    label: str
    chat_url: str
    stream_url: str
    headers: dict[str, str]
    chat: bytes
    stream: bytes
    rates: list[int]
    stream_rate: int
    stop: Any = None
    note: str = ""
    saturation: list[float] = field(default_factory=list)
    latency: dict[int, list[OpenLoopResult]] = field(default_factory=dict)
    streams: dict[int, list[OpenLoopResult]] = field(default_factory=dict)
    errors: int = 0


def pass_through_target(label: str, url: str, rates: list[int], stream_rate: int) -> Target:
    """A bare pass-through forwards the path it is given: the stream lives under /stream."""
    return Target(
        label,
        url + "/v1/chat/completions",
        url + STREAM_PREFIX + "/v1/chat/completions",
        {"content-type": "application/json"},
        chat_body(CHAT_MODEL),
        stream_body(CHAT_MODEL),
        rates,
        stream_rate,
    )


def model_target(
    label: str,
    url: str,
    headers: dict[str, str],
    rates: list[int],
    stream_rate: int,
    prompt: str = PROMPT,
) -> Target:
    """A gateway routing by model name: ``chat`` and ``chat-stream`` on the same URL."""
    return Target(
        label,
        url + "/v1/chat/completions",
        url + "/v1/chat/completions",
        {"content-type": "application/json", **headers},
        chat_body(CHAT_MODEL, prompt=prompt),
        stream_body(STREAM_MODEL, prompt=prompt),
        rates,
        stream_rate,
    )


def start_pass_through(
    script: str,
    python: str,
    upstream: NginxUpstream,
    cpu: int | None,
    options: tuple[str, ...] = (),
) -> tuple[Process, str]:
    port = free_port()
    command = [python, os.path.join(PEERS_DIR, script), *options, str(port), upstream.url]
    process = Process(command, script, cpu)
    url = f"http://127.0.0.1:{port}"
    wait_until(process, lambda: answers(url + "/", status=None), 30, "listening")
    return process, url


def check_target(target: Target) -> None:
    """Each target answers a plain chat with usage and a stream ending in [DONE] before timing."""
    chat = httpx.post(target.chat_url, content=target.chat, headers=target.headers, timeout=30)
    stream = httpx.post(
        target.stream_url, content=target.stream, headers=target.headers, timeout=30
    )
    if chat.status_code != 200 or "usage" not in chat.text:
        raise SystemExit(
            f"{target.label}: plain chat answered {chat.status_code}: {chat.text[:300]}"
        )
    if stream.status_code != 200 or "[DONE]" not in stream.text:
        raise SystemExit(
            f"{target.label}: stream answered {stream.status_code}: {stream.text[:300]}"
        )


def measure_latency(
    url: str, body: bytes, headers: dict[str, str], rate: int, seconds: float
) -> OpenLoopResult:
    return uvloop.run(open_loop(url, body, headers, rate, seconds, warmup=min(1.0, seconds / 3)))


def run_round(
    direct: Target, targets: list[Target], args: argparse.Namespace, load_cpu: int | None
) -> None:
    rates = sorted({rate for target in targets for rate in target.rates}, reverse=True)
    stream_rates = sorted({target.stream_rate for target in targets}, reverse=True)
    for rate in rates:
        direct.latency.setdefault(rate, []).append(
            measure_latency(direct.chat_url, direct.chat, direct.headers, rate, args.seconds)
        )
    for rate in stream_rates:
        direct.streams.setdefault(rate, []).append(
            measure_latency(
                direct.stream_url, direct.stream, direct.headers, rate, args.stream_seconds
            )
        )
    for target in targets:
        started = time.monotonic()
        result = wrk(
            target.chat_url,
            target.chat,
            target.headers,
            args.connections,
            args.wrk_seconds,
            load_cpu,
        )
        target.saturation.append(result.requests_per_second)
        target.errors += result.errors
        if result.errors:
            print(f"  ! {target.label}: wrk saw {result.errors} errors:\n{result.output}")
        for rate in target.rates:
            target.latency.setdefault(rate, []).append(
                measure_latency(target.chat_url, target.chat, target.headers, rate, args.seconds)
            )
        target.streams.setdefault(target.stream_rate, []).append(
            measure_latency(
                target.stream_url,
                target.stream,
                target.headers,
                target.stream_rate,
                args.stream_seconds,
            )
        )
        runs = target.latency[target.rates[0]][-1]
        print(
            f"  {target.label}: {result.requests_per_second:,.0f} req/s saturated; "
            f"p50 {runs.p(0.5) * 1e3:.2f} ms @{target.rates[0]}/s; "
            f"({time.monotonic() - started:.0f}s)",
            flush=True,
        )


def added(
    target: Target, rate: int, fraction: float, direct: Target, first_chunk: bool = False
) -> float:
    """Median over runs of (target - direct) at ``fraction``, ms."""
    runs = target.streams if first_chunk else target.latency
    baseline = direct.streams if first_chunk else direct.latency
    mine, base = runs[rate], baseline[rate]
    return statistics.median(
        (a.p(fraction, first_chunk) - b.p(fraction, first_chunk)) * 1e3
        for a, b in zip(mine, base, strict=True)
    )


def errors_of(target: Target) -> int:
    results = [r for runs in (*target.latency.values(), *target.streams.values()) for r in runs]
    return target.errors + sum(r.errors + r.unfinished for r in results)


def latency_cell(target: Target, rate: int, direct: Target) -> str:
    """Added p50 / p99 ms at ``rate``, or, for a target measured only below it, "overloaded"."""
    if rate in target.rates:
        return f"{added(target, rate, 0.5, direct):.2f} / {added(target, rate, 0.99, direct):.2f}"
    own = target.rates[0]
    p50, p99 = added(target, own, 0.5, direct), added(target, own, 0.99, direct)
    return f"overloaded (@{own}: {p50:.1f} / {p99:.1f})"


def ttfc_cell(target: Target, direct: Target) -> str:
    ttfc = added(target, target.stream_rate, 0.5, direct, first_chunk=True)
    return f"{ttfc:.2f} ms @{target.stream_rate}/s"


def report(direct: Target, targets: list[Target], header: str) -> None:
    by_label = {target.label: target for target in targets}
    print(f"\n{header}\n")
    columns = ["target", "saturation req/s", "added p50 / p99 ms @300 req/s", "@200 req/s"]
    columns += ["stream 1st chunk added p50", "errors"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for target in targets:
        cells = [target.label, f"{statistics.median(target.saturation):,.0f}"]
        cells += [latency_cell(target, 300, direct), latency_cell(target, 200, direct)]
        cells += [ttfc_cell(target, direct), str(errors_of(target))]
        print("| " + " | ".join(cells) + " |")
    for target in targets:
        if target.note:
            print(f"{target.label}: {target.note}")
    baseline = ", ".join(
        f"@{rate}/s {statistics.median(r.p(0.5) for r in runs) * 1e3:.2f} / "
        f"{statistics.median(r.p(0.99) for r in runs) * 1e3:.2f}"
        for rate, runs in direct.latency.items()
    )
    first_chunks = ", ".join(
        f"@{rate}/s {statistics.median(r.p(0.5, True) for r in runs) * 1e3:.2f}"
        for rate, runs in direct.streams.items()
    )
    print(f"\ndirect to nginx (the baseline) p50 / p99 ms: {baseline}")
    print(f"direct streamed first chunk p50 ms: {first_chunks}")
    lags = [r.lag_p99 for runs in direct.latency.values() for r in runs]
    print(f"generator's own send lag p99 (its noise floor): {statistics.median(lags) * 1e3:.2f} ms")

    corral = by_label.get(CORRAL_LABEL)
    if corral is None:
        return
    peers = (RAW_LABEL, RAW_OWN_CLIENT_LABEL, LITELLM_LABEL)
    for peer in (by_label.get(label) for label in peers):
        if peer is not None:
            ratios = [a / b for a, b in zip(corral.saturation, peer.saturation, strict=True)]
            shown = ", ".join(f"{ratio:.2f}" for ratio in ratios)
            print(f"saturation corral / {peer.label}, per run: {shown}")
    print("\ngoals, corral with governance (saturation ratios: median of the per-run ratios):")
    raw = by_label.get(RAW_LABEL)
    if raw is not None:
        share = statistics.median(
            a / b for a, b in zip(corral.saturation, raw.saturation, strict=True)
        )
        goal_line("saturation, corral / bare raw-ASGI", f"{share:.0%}", ">= 40%", share >= 0.40)
    strict = by_label.get(RAW_OWN_CLIENT_LABEL)
    if strict is not None:
        share = statistics.median(
            a / b for a, b in zip(corral.saturation, strict.saturation, strict=True)
        )
        print(f"  {'(corral / the stricter floor':36}{share:>10.0%}   no goal: see the module doc)")
    litellm = by_label.get(LITELLM_LABEL)
    if litellm is not None:
        times = statistics.median(
            a / b for a, b in zip(corral.saturation, litellm.saturation, strict=True)
        )
        goal_line("saturation, corral / LiteLLM", f"{times:.1f}x", ">= 25x", times >= 25)
    if 300 in corral.rates:
        p50, p99 = added(corral, 300, 0.5, direct), added(corral, 300, 0.99, direct)
        goal_line("added latency p50 @300 req/s", f"{p50:.2f} ms", "<= 1.5 ms", p50 <= 1.5)
        goal_line("added latency p99 @300 req/s", f"{p99:.2f} ms", "<= 3 ms", p99 <= 3.0)
    ttfc = added(corral, corral.stream_rate, 0.5, direct, first_chunk=True)
    goal_line("streamed first chunk added p50", f"{ttfc:.2f} ms", "<= 1 ms", ttfc <= 1.0)


def goal_line(what: str, value: str, goal: str, met: bool) -> None:
    print(f"  {what:36}{value:>10}   goal {goal:10} {'met' if met else 'NOT MET'}")


BUSY_LOAD = 2.5
RAW_LABEL = "bare raw-ASGI pass-through (uvicorn+httptools+uvloop, aiohttp pooled client)"
RAW_OWN_CLIENT_LABEL = "bare raw-ASGI pass-through with corral's own HTTP client (stricter floor)"
AIOHTTP_LABEL = "bare aiohttp pass-through"
LITELLM_LABEL = "LiteLLM proxy, 1 worker, master key, no DB"
CORRAL_LABEL = "corral up, all governance on, a prompt of its own per request"
CORRAL_REPEATED_LABEL = "corral up, all governance on, one prompt repeated (guardrail cache hits)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="one run, short durations (smoke test)"
    )
    parser.add_argument("--runs", type=int, help="rounds over all targets (default 3, quick 1)")
    parser.add_argument("--skip", default="", help="comma-separated: raw, aiohttp, litellm, corral")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument(
        "--repeated-prompt",
        action="store_true",
        help="also time corral with one prompt repeated (its guardrails then answer from the "
        "cache of texts found clean); the goals use the varied prompts either way",
    )
    args = parser.parse_args()
    args.runs = args.runs or (1 if args.quick else 3)
    args.wrk_seconds, args.seconds, args.stream_seconds = (3, 3, 3) if args.quick else (10, 8, 6)
    skip = {name.strip() for name in args.skip.split(",") if name.strip()}

    missing = missing_tools(["nginx", "wrk", "taskset"])
    if missing:
        raise SystemExit(
            f"missing {', '.join(missing)}: install with\n  apt-get install -y nginx wrk util-linux"
        )
    layout = cpu_layout()
    if layout.pinned:
        os.sched_setaffinity(0, {layout.load})  # this process is the open-loop generator

    stops: list[Any] = []
    targets: list[Target] = []
    try:
        upstream = NginxUpstream(layout.load)
        stops.append(upstream.stop)
        direct = Target(
            "direct to nginx",
            upstream.chat_base + "/chat/completions",
            upstream.stream_base + "/chat/completions",
            {"content-type": "application/json"},
            chat_body(CHAT_MODEL),
            stream_body(CHAT_MODEL),
            [300, 200],
            100,
        )
        if not {"raw", "aiohttp", "litellm"} <= skip:
            ensure_bench_venv()
        if "raw" not in skip:
            for label, python, client in (
                (RAW_LABEL, str(bench_python()), "aiohttp"),
                (RAW_OWN_CLIENT_LABEL, sys.executable, "corral"),
            ):
                process, url = start_pass_through(
                    "raw_asgi_passthrough.py",
                    python,
                    upstream,
                    layout.server,
                    ("--client", client),
                )
                stops.append(process.stop)
                targets.append(pass_through_target(label, url, [300, 200], 100))
        if "aiohttp" not in skip:
            process, url = start_pass_through(
                "aiohttp_passthrough.py", str(bench_python()), upstream, layout.server
            )
            stops.append(process.stop)
            targets.append(pass_through_target(AIOHTTP_LABEL, url, [300, 200], 100))
        if "litellm" not in skip:
            litellm = LiteLLMProxy(upstream, layout.server)
            stops.append(litellm.stop)
            target = model_target(LITELLM_LABEL, litellm.url, litellm.headers, [30], 20)
            target.note = (
                "cannot sustain 300 or 200 req/s: latency measured at 30 req/s, streams at 20/s"
            )
            targets.append(target)
        governance = "corral not measured"
        if "corral" not in skip:
            print("starting corral with governance...", flush=True)
            corral = GovernedCorral(upstream, layout.server).start()
            stops.append(corral.stop)
            target = model_target(
                CORRAL_LABEL, corral.url, corral.headers, [300, 200], 100, VARIED_PROMPT
            )
            probes = corral.probe()
            gaps = governance_gaps(corral.missing, probes)
            target.note = (
                "partial governance: missing " + ", ".join(gaps)
                if gaps
                else "all governance verified acting"
            )
            governance = "\n".join(
                f"  {'ok ' if p.ok else 'NO '} {p.name}: {p.detail}" for p in probes
            )
            governance += "".join(f"\n  missing {piece}: {why}" for piece, why in gaps.items())
            targets.append(target)
            if args.repeated_prompt:
                repeated = model_target(
                    CORRAL_REPEATED_LABEL, corral.url, corral.headers, [300, 200], 100
                )
                repeated.note = "the same process, every request the same prompt"
                targets.append(repeated)
        for target in targets:
            check_target(target)
        versions = {
            "nginx": upstream.version(),
            "wrk": wrk_version(),
            "litellm": installed_version("litellm") if "litellm" not in skip else "skipped",
            "corral": corral_version(),
        }
        print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
        print(f"governance probes (corral):\n{governance}", flush=True)
        loads = [os.getloadavg()[0]]
        for index in range(args.runs):
            print(
                f"run {index + 1}/{args.runs} (load average {os.getloadavg()[0]:.2f})", flush=True
            )
            run_round(direct, targets, args, layout.load)
            loads.append(os.getloadavg()[0])
        where = (
            f"servers under test on CPU {layout.server}, nginx + load on CPU {layout.load}"
            if layout.pinned
            else "unpinned (one CPU)"
        )
        header = (
            f"{args.runs} run(s), medians; {where}; saturation: wrk -t1 -c{args.connections} "
            f"{args.wrk_seconds}s non-streamed; latency: open loop {args.seconds}s per rate, "
            f"measured from the scheduled send; streams: open loop {args.stream_seconds}s; "
            f"1-min load average {min(loads):.2f}..{max(loads):.2f}"
        )
        if max(loads) > BUSY_LOAD:
            header += (
                f"\nWARNING: the machine was busy (load average up to {max(loads):.1f} on "
                f"{os.cpu_count()} CPUs; this benchmark alone makes ~1.5-2): absolute figures "
                "are inflated, compare the per-run ratios"
            )
        report(direct, targets, header)
    finally:
        for stop in reversed(stops):
            stop()


if __name__ == "__main__":
    main()
