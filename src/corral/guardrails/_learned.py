"""The learned cue: a small linear model over words and word pairs, one weak injection cue.

Many in-the-wild jailbreaks are role-play set-ups whose intent shows in their vocabulary as a
whole ("you will answer as", "no matter", "two responses", "stay in") rather than in one phrase a
rule can name. A linear model over a text's distinct lower-cased words and adjacent word pairs
scores that vocabulary: ``bias + sum(weights) / sqrt(feature count)``, an attack above 0.

It is only a weak cue (weight 0.5, type ``learned_cue``), so it never flags a text alone: it tips a
text that already shows a different weak cue (a persona, talk of policies) over the threshold. It
only speaks about texts of at least ``MIN_WORDS`` words: a bag of words says little about a one-line
request ("act as my Spanish tutor"), and the phrase rules judge those. The weights live in
``_learned_cue.json`` beside this module, written by
``benchmarks/data/guardrails/train_learned_cue.py`` from the development halves of the evaluation
data only (its docstring says how; rerun it to retrain).

It is a detector like the regex ones so the engine and the benchmark treat it alike: its one rule
matches the whole text and its validator is the model.
"""

from __future__ import annotations

import json
import math
import re
from functools import cache
from importlib.resources import files
from itertools import pairwise

from corral.guardrails._detector import Detector, Rule

WORD = re.compile(r"[a-z0-9']+")
MIN_WORDS = 30
_WEIGHTS_FILE = "_learned_cue.json"


class LinearCue:
    """Weights for words (``str`` keys) and word pairs (``(first, second)`` keys)."""

    __slots__ = ("bias", "pairs", "words")

    def __init__(self, bias: float, weights: dict[str, float]) -> None:
        self.bias = bias
        self.words = {k: v for k, v in weights.items() if " " not in k}
        self.pairs = {tuple(k.split(" ")): v for k, v in weights.items() if " " in k}

    def score(self, text: str) -> float:
        return self._score(WORD.findall(text.lower()))

    def says_attack(self, text: str) -> bool:
        words = WORD.findall(text.lower())
        return len(words) >= MIN_WORDS and self._score(words) > 0.0

    def _score(self, words: list[str]) -> float:
        distinct_words = set(words)
        distinct_pairs = set(pairwise(words))
        count = len(distinct_words) + len(distinct_pairs)
        if not count:
            return self.bias
        # Set intersections run in C; only the few known features are looked up in Python.
        word_weights, pair_weights = self.words, self.pairs
        total = sum(word_weights[w] for w in distinct_words & word_weights.keys())
        total += sum(pair_weights[p] for p in distinct_pairs & pair_weights.keys())
        return self.bias + total / math.sqrt(count)


@cache
def learned_cue() -> LinearCue:
    """The shipped model, read once per process."""
    document = json.loads(files("corral.guardrails").joinpath(_WEIGHTS_FILE).read_text("utf-8"))
    weights = document["weights"]
    if not isinstance(weights, dict) or not isinstance(document["bias"], int | float):
        raise ValueError(f"corral.guardrails/{_WEIGHTS_FILE}: expected 'bias' and 'weights'")
    return LinearCue(float(document["bias"]), {str(k): float(v) for k, v in weights.items()})


def learned_detector() -> Detector:
    model = learned_cue()
    rules = {
        # The whole text (DOTALL: across lines), once: "\A" never matches a later position.
        "learned_cue": (r"\A(?s:.+)", Rule("learned_cue", "medium", model.says_attack)),
    }
    # Injection is judged on whole inputs and never streamed, so max_span is nominal.
    return Detector("injection", rules, max_span=300, lookahead=1)
