"""Our metric names in lm-eval's registry, so task YAMLs name them in `metric_list` like lm-eval's own.

Metric functions follow lm-eval's calling convention for generate_until tasks,
`fn(references=[gold], predictions=[prediction])`, where a gold may be a list of references. Per-sample
metrics return a number (aggregated by mean); corpus metrics return the (gold, prediction) item that
their aggregation scores over the whole corpus.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import lm_eval.api.metrics  # noqa: F401  lm-eval's own metrics first: its registry self-loads only when empty
from lm_eval.api.registry import register_aggregation, register_metric

from harness.scorers.bleu import corpus_score
from harness.scorers.correlation import pearson, spearman
from harness.scorers.rouge import ROUGE_TYPES, as_references, score_rouge
from harness.scorers.squad import squad_exact_match, squad_f1

# name -> (aggregation, higher_is_better); the names are not lm-eval's (checked in tests)
METRICS: dict[str, tuple[str, bool]] = {
    **{t: ("mean", True) for t in ROUGE_TYPES},
    "corpus_bleu": ("corpus_bleu", True),
    "corpus_chrf": ("corpus_chrf", True),
    "squad_exact_match": ("mean", True),
    "squad_f1": ("mean", True),
    "pearson": ("pearson", True),
    "spearman": ("spearman", True),
}


def _single(references: Sequence[Any], predictions: Sequence[Any]) -> tuple[Any, Any]:
    if len(references) != 1 or len(predictions) != 1:
        raise ValueError("harness metrics score one sample at a time: references=[gold], predictions=[prediction]")
    return references[0], predictions[0]


def _number(value: Any) -> float:
    """A number, or a numeric string; anything else is NaN (and makes the correlation NaN)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _register_rouge(rouge_type: str) -> None:
    def rouge(references, predictions, **kwargs) -> float:
        gold, prediction = _single(references, predictions)
        return score_rouge(gold, prediction, rouge_type)

    rouge.__name__ = rouge.__qualname__ = rouge_type
    register_metric(metric=rouge_type, higher_is_better=True, output_type="generate_until", aggregation="mean")(rouge)


for _t in ROUGE_TYPES:
    _register_rouge(_t)


@register_aggregation("corpus_bleu")
def corpus_bleu_aggregation(items) -> float:
    """sacrebleu corpus BLEU (defaults, 0-100) over (references, prediction) items."""
    return corpus_score("bleu", [p for _, p in items], [r for r, _ in items])


@register_aggregation("corpus_chrf")
def corpus_chrf_aggregation(items) -> float:
    """sacrebleu corpus chrF (defaults, 0-100) over (references, prediction) items."""
    return corpus_score("chrf", [p for _, p in items], [r for r, _ in items])


@register_metric(metric="corpus_bleu", higher_is_better=True, output_type="generate_until", aggregation="corpus_bleu")
def corpus_bleu_item(references, predictions, **kwargs):
    """(references, prediction) for the corpus aggregation; a gold may be a list of references."""
    gold, prediction = _single(references, predictions)
    return (list(as_references(gold)), prediction)


@register_metric(metric="corpus_chrf", higher_is_better=True, output_type="generate_until", aggregation="corpus_chrf")
def corpus_chrf_item(references, predictions, **kwargs):
    """(references, prediction) for the corpus aggregation; a gold may be a list of references."""
    gold, prediction = _single(references, predictions)
    return (list(as_references(gold)), prediction)


@register_metric(metric="squad_exact_match", higher_is_better=True, output_type="generate_until", aggregation="mean")
def squad_exact_match_metric(references, predictions, **kwargs) -> float:
    """Official SQuAD v1.1 exact match, max over the gold answers (0/1)."""
    golds, prediction = _single(references, predictions)
    return squad_exact_match(golds, prediction)


@register_metric(metric="squad_f1", higher_is_better=True, output_type="generate_until", aggregation="mean")
def squad_f1_metric(references, predictions, **kwargs) -> float:
    """Official SQuAD v1.1 token F1, max over the gold answers (0-1)."""
    golds, prediction = _single(references, predictions)
    return squad_f1(golds, prediction)


@register_aggregation("pearson")
def pearson_aggregation(items) -> float:
    """scipy Pearson r over (prediction, gold) items."""
    return pearson([p for p, _ in items], [g for _, g in items])


@register_aggregation("spearman")
def spearman_aggregation(items) -> float:
    """scipy Spearman rho over (prediction, gold) items."""
    return spearman([p for p, _ in items], [g for _, g in items])


def _pair(references, predictions, **kwargs) -> tuple[float, float]:
    gold, prediction = _single(references, predictions)
    return (_number(prediction), _number(gold))


register_metric(metric="pearson", higher_is_better=True, output_type=["generate_until", "multiple_choice"],
                aggregation="pearson")(_pair)
register_metric(metric="spearman", higher_is_better=True, output_type=["generate_until", "multiple_choice"],
                aggregation="spearman")(_pair)
