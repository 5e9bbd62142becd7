"""Train the injection scanner's learned cue: a linear model over word unigrams and bigrams.

    python benchmarks/data/guardrails/train_learned_cue.py [--check]

Reads only the development halves: attack prompts whose ``split`` is ``dev`` (every family but
``harmful_request``, which is not an injection) as positives, and the benign prompts whose text
falls in the dev half by the same rule as the attacks (first byte of the SHA-256 of the text
even) as negatives. The held-out attack half and the held-out benign half are never read here,
so ``benchmarks/guardrails_eval.py`` can report both honestly.

The model: features are the distinct lower-cased words (``[a-z0-9']+``) and adjacent word pairs
of a text; a text's score is ``bias + sum(weights of its features) / sqrt(feature count)``; it
is an attack when the score is above 0 and the text has at least ``MIN_WORDS`` words. Weights
come from L2-regularised logistic regression with the two classes weighted equally, fitted by
full-batch gradient descent from zero (numpy, no randomness, so a rerun writes the same file),
then only the ``KEEP`` largest weights by magnitude are kept and rounded to 4 decimals. Before
writing, 5-fold cross-validation on the same dev data prints how often the cue fires on unseen
attacks and unseen benign prompts.

Writes ``src/corral/guardrails/_learned_cue.json``; ``--check`` fails instead when the file
differs from what training produces.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from itertools import pairwise
from pathlib import Path

import numpy as np

from corral.guardrails._learned import MIN_WORDS, WORD

HERE = Path(__file__).resolve().parent
OUTPUT = HERE.parents[2] / "src" / "corral" / "guardrails" / "_learned_cue.json"
NOT_INJECTION = {"harmful_request"}
MIN_DOCUMENTS = 2  # a feature seen in one training text only is noise
L2 = 1.0
EPOCHS = 300
LEARNING_RATE = 0.5
KEEP = 3000
FOLDS = 5


def features(text: str) -> set[str]:
    """The same features ``corral.guardrails._learned`` scores (pairs joined by a space)."""
    words = WORD.findall(text.lower())
    found = set(words)
    found.update(f"{a} {b}" for a, b in pairwise(words))
    return found


def is_dev(text: str) -> bool:
    return hashlib.sha256(text.encode()).digest()[0] % 2 == 0


def load(name: str) -> list[dict[str, str]]:
    with (HERE / name).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def training_data() -> tuple[list[str], list[int]]:
    attacks = [
        r["text"]
        for r in load("attacks.jsonl")
        if r["split"] == "dev" and r["family"] not in NOT_INJECTION
    ]
    benign = [r["text"] for r in load("benign.jsonl") if is_dev(r["text"])]
    return attacks + benign, [1] * len(attacks) + [0] * len(benign)


def fit(texts: list[str], labels: list[int]) -> tuple[dict[str, float], float]:
    feature_sets = [features(text) for text in texts]
    documents: dict[str, int] = {}
    for found in feature_sets:
        for feature in found:
            documents[feature] = documents.get(feature, 0) + 1
    vocabulary = sorted(f for f, count in documents.items() if count >= MIN_DOCUMENTS)
    column = {feature: i for i, feature in enumerate(vocabulary)}
    matrix = np.zeros((len(texts), len(vocabulary)), np.float64)
    for row, found in enumerate(feature_sets):
        # Normalised by all of the text's features, as at scoring time (unknown ones count too).
        columns = [column[f] for f in found if f in column]
        matrix[row, columns] = 1.0 / math.sqrt(max(1, len(found)))
    y = np.array(labels, np.float64)
    sample_weight = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    weights = np.zeros(len(vocabulary))
    bias = 0.0
    for _ in range(EPOCHS):
        probability = 1 / (1 + np.exp(-(matrix @ weights + bias)))
        gradient = (probability - y) * sample_weight
        weights -= LEARNING_RATE * (matrix.T @ gradient + L2 * weights) / len(y)
        bias -= LEARNING_RATE * float(gradient.mean())
    kept = sorted(np.argsort(-np.abs(weights), kind="stable")[:KEEP])
    return {vocabulary[i]: round(float(weights[i]), 4) for i in kept}, round(bias, 4)


def says_attack(model: tuple[dict[str, float], float], text: str) -> bool:
    weights, bias = model
    found = features(text)
    score = bias + sum(weights.get(f, 0.0) for f in found) / math.sqrt(max(1, len(found)))
    return score > 0 and len(WORD.findall(text.lower())) >= MIN_WORDS


def cross_validate(texts: list[str], labels: list[int]) -> None:
    fired = {0: 0, 1: 0}
    totals = {0: labels.count(0), 1: labels.count(1)}
    for fold in range(FOLDS):
        train = [i for i in range(len(texts)) if i % FOLDS != fold]
        model = fit([texts[i] for i in train], [labels[i] for i in train])
        for i in range(fold, len(texts), FOLDS):
            fired[labels[i]] += says_attack(model, texts[i])
    print(
        f"{FOLDS}-fold cross-validation on the dev data: the cue fires on "
        f"{fired[1]}/{totals[1]} unseen attacks and {fired[0]}/{totals[0]} unseen benign prompts"
    )


def render(model: tuple[dict[str, float], float]) -> str:
    weights, bias = model
    document = {
        "about": "corral injection scanner learned cue; generated by "
        "benchmarks/data/guardrails/train_learned_cue.py from the dev halves only",
        "features": "distinct lower-cased words [a-z0-9']+ and adjacent word pairs",
        "score": "bias + sum(weights) / sqrt(feature count); above 0 is an attack",
        "bias": bias,
        "weights": weights,
    }
    return json.dumps(document, ensure_ascii=False, indent=0, sort_keys=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the stored file is stale")
    args = parser.parse_args()
    texts, labels = training_data()
    print(f"training on {labels.count(1)} dev attacks and {labels.count(0)} dev benign prompts")
    if not args.check:
        cross_validate(texts, labels)
    rendered = render(fit(texts, labels))
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != rendered:
            print(f"{OUTPUT} is stale: rerun without --check", file=sys.stderr)
            return 1
        print(f"{OUTPUT} is up to date")
        return 0
    OUTPUT.write_text(rendered, encoding="utf-8")
    print(f"wrote {OUTPUT} ({len(rendered):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
