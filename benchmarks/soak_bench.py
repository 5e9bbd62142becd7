"""RSS soak: N minutes of steady load through corral with all governance on (issue 4 goal:
resident memory grows <= 10% over 30 minutes).

The stack is the one ``gateway_peers_bench.py`` measures (``peers/``): nginx as the fake
OpenAI upstream, ``corral up`` with an API key of a Team, a Cedar Policy, a hard Budget, a
RateLimit, input guardrails, metrics, tracing and audit; corral pinned to one core, nginx and
the load on the other. The load is open loop at a fixed rate (default 100 req/s), a mix of
non-streamed and streamed chats (default 20% streamed). Every 10 s the corral process's RSS is
sampled (psutil when installed, else /proc/PID/status VmRSS), with its open file descriptors.

Reported: RSS after the warm-up (the first 2 minutes; a quarter of the run when it is shorter
than 8 minutes), at the end, the growth between them, the peak, the slope after warm-up, the
requests answered and the errors.

    python benchmarks/soak_bench.py [--minutes 30] [--rate 100] [--stream-share 0.2]

Needs ``nginx`` (``apt-get install -y nginx wrk``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path

import uvloop
from peers.fake_upstream import CHAT_MODEL, STREAM_MODEL, NginxUpstream
from peers.governed_corral import GovernedCorral, chat_body, governance_gaps, stream_body
from peers.loadgen import OpenLoop, percentile
from peers.processes import cpu_layout, missing_tools

SAMPLE_EVERY_S = 10.0
GOAL_GROWTH = 0.10


@dataclass
class Sample:
    elapsed_s: float
    rss_kib: int
    open_fds: int
    answered: int
    errors: int


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def slope_kib_per_min(samples: list[Sample]) -> float:
    """Least-squares slope of RSS over time (KiB per minute)."""
    if len(samples) < 2:
        return 0.0
    xs = [s.elapsed_s / 60 for s in samples]
    ys = [float(s.rss_kib) for s in samples]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


async def soak(corral: GovernedCorral, args: argparse.Namespace) -> list[Sample]:
    seconds = args.minutes * 60
    stream_rate = args.rate * args.stream_share
    url = corral.url + "/v1/chat/completions"
    generators = [
        OpenLoop.for_url(url, chat_body(CHAT_MODEL), corral.headers, args.rate - stream_rate)
    ]
    if stream_rate > 0:
        generators.append(
            OpenLoop.for_url(url, stream_body(STREAM_MODEL), corral.headers, stream_rate)
        )
    runs = [asyncio.ensure_future(g.run(seconds, warmup=0.0, prewarm=4)) for g in generators]
    samples: list[Sample] = []
    started = time.monotonic()
    next_print = 0.0
    while not all(run.done() for run in runs):
        elapsed = time.monotonic() - started
        sample = Sample(
            elapsed,
            corral.rss_kib(),
            open_fds(corral.pid),
            sum(g.result.answered for g in generators),
            sum(g.result.errors for g in generators),
        )
        samples.append(sample)
        if elapsed >= next_print:
            print(
                f"  {elapsed / 60:5.1f} min  RSS {sample.rss_kib / 1024:7.1f} MiB  "
                f"fds {sample.open_fds:4}  answered {sample.answered:8,}  errors {sample.errors}",
                flush=True,
            )
            next_print += 60.0
        failure = corral.process.failure() if corral.process else None
        if failure:
            raise SystemExit(failure)
        await asyncio.wait(runs, timeout=SAMPLE_EVERY_S)
    for run in runs:
        run.result()
    samples.append(
        Sample(
            time.monotonic() - started,
            corral.rss_kib(),
            open_fds(corral.pid),
            sum(g.result.answered for g in generators),
            sum(g.result.errors + g.result.unfinished for g in generators),
        )
    )
    latencies = [latency for g in generators for latency in g.result.latencies]
    print(
        f"  latency over the whole run p50 {percentile(latencies, 0.5) * 1e3:.2f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1e3:.2f} ms"
    )
    for generator in generators:
        for sample_error in generator.result.error_samples:
            print(f"  error sample: {sample_error}")
    return samples


def report(samples: list[Sample], args: argparse.Namespace, warmup_s: float) -> None:
    after_warmup = next((s for s in samples if s.elapsed_s >= warmup_s), samples[-1])
    steady = [s for s in samples if s.elapsed_s >= warmup_s]
    end = samples[-1]
    growth = (end.rss_kib - after_warmup.rss_kib) / after_warmup.rss_kib
    peak = max(s.rss_kib for s in samples)
    print(
        f"\n{args.minutes:g} min at {args.rate:g} req/s ({args.stream_share:.0%} streamed), "
        f"corral with governance; RSS sampled every {SAMPLE_EVERY_S:.0f} s\n"
    )
    columns = ["minutes", "requests", "errors", "RSS after warm-up", "RSS at end", "growth"]
    columns += ["peak RSS", "slope after warm-up", "open fds warm-up / end"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    cells = [
        f"{args.minutes:g}",
        f"{end.answered:,}",
        f"{end.errors:,}",
        f"{after_warmup.rss_kib / 1024:.1f} MiB (at {after_warmup.elapsed_s / 60:.1f} min)",
        f"{end.rss_kib / 1024:.1f} MiB",
        f"**{growth:+.1%}**",
        f"{peak / 1024:.1f} MiB",
        f"{slope_kib_per_min(steady) / 1024:+.2f} MiB/min",
        f"{after_warmup.open_fds} / {end.open_fds}",
    ]
    print("| " + " | ".join(cells) + " |")
    print(f"\ngoal: growth <= {GOAL_GROWTH:.0%}: {'met' if growth <= GOAL_GROWTH else 'NOT MET'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the load")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second, all kinds")
    parser.add_argument("--stream-share", type=float, default=0.2, help="fraction streamed")
    parser.add_argument(
        "--warmup-minutes", type=float, help="RSS baseline after this (default 2, or minutes/4)"
    )
    parser.add_argument("--samples-out", type=Path, help="write every sample as CSV here")
    args = parser.parse_args()
    if not 0 <= args.stream_share <= 1 or args.rate <= 0 or args.minutes <= 0:
        raise SystemExit("--rate and --minutes must be > 0, --stream-share within 0..1")
    warmup_min = args.warmup_minutes
    if warmup_min is None:
        warmup_min = 2.0 if args.minutes >= 8 else args.minutes / 4
    missing = missing_tools(["nginx", "taskset"])
    if missing:
        raise SystemExit(
            f"missing {', '.join(missing)}: install with\n  apt-get install -y nginx wrk"
        )
    layout = cpu_layout()
    if layout.pinned:
        os.sched_setaffinity(0, {layout.load})
    upstream = NginxUpstream(layout.load)
    corral: GovernedCorral | None = None
    try:
        corral = GovernedCorral(upstream, layout.server).start()
        probes = corral.probe()
        gaps = governance_gaps(corral.missing, probes)
        print("governance: " + ("partial" if gaps else "all verified acting"))
        for piece, why in gaps.items():
            print(f"  missing {piece}: {why}")
        print(f"soaking {args.minutes:g} min; RSS baseline after {warmup_min:g} min", flush=True)
        samples = uvloop.run(soak(corral, args))
    finally:
        if corral is not None:
            corral.stop()
        upstream.stop()
    if args.samples_out:
        lines = ["elapsed_s,rss_kib,open_fds,answered,errors"]
        lines += [
            f"{s.elapsed_s:.1f},{s.rss_kib},{s.open_fds},{s.answered},{s.errors}" for s in samples
        ]
        args.samples_out.write_text("\n".join(lines) + "\n")
    report(samples, args, warmup_min * 60)


if __name__ == "__main__":
    main()
