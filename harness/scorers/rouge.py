"""ROUGE through Google's rouge-score: F-measure, Porter stemming, max over references."""

from __future__ import annotations

import functools
from collections.abc import Sequence

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


@functools.lru_cache(maxsize=1)
def _scorer():
    from rouge_score import rouge_scorer

    # split_summaries=False: rougeLsum splits sentences on "\n" only, as rouge-score does by default.
    # Its alternative (nltk punkt) needs a data download, which is not available offline.
    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True, split_summaries=False)


def as_references(gold: str | Sequence[str]) -> tuple[str, ...]:
    """A gold that is one reference string or a list of them, as a tuple of strings."""
    refs = (gold,) if isinstance(gold, str) else tuple(gold)
    if not refs or not all(isinstance(r, str) for r in refs):
        raise ValueError(f"references must be a string or a non-empty list of strings, got {gold!r}")
    return refs


@functools.lru_cache(maxsize=4096)  # the four rouge metrics of one sample are asked for one by one
def _rouge_all(references: tuple[str, ...], prediction: str) -> dict[str, float]:
    best = _scorer().score_multi(list(references), prediction)  # per type: the reference with max F
    return {t: best[t].fmeasure for t in ROUGE_TYPES}


def score_rouge(references: str | Sequence[str], prediction: str, rouge_type: str = "rougeL") -> float:
    """ROUGE F-measure of prediction against its best-matching reference (0-1)."""
    if rouge_type not in ROUGE_TYPES:
        raise ValueError(f"unknown rouge type {rouge_type!r} (known: {', '.join(ROUGE_TYPES)})")
    return _rouge_all(as_references(references), prediction)[rouge_type]


def rouge_options(rouge_type: str) -> dict[str, object]:
    """The options that decide a ROUGE score, for its signature."""
    options: dict[str, object] = {"score": "f", "stem": True, "multiref": "max"}
    if rouge_type == "rougeLsum":
        options["split"] = "newline"
    return options
