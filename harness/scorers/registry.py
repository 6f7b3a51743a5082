"""Our metric names in lm-eval's registry, so task YAMLs name them in `metric_list` like lm-eval's own.

Metric functions follow lm-eval's calling convention for generate_until tasks,
`fn(references=[gold], predictions=[prediction])`, where a gold may be a list of references. Per-sample
metrics return a number (aggregated by mean); corpus metrics return the (gold, prediction) item that
their aggregation scores over the whole corpus.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import lm_eval.api.metrics  # noqa: F401  lm-eval's own metrics first: its registry self-loads only when empty
from lm_eval.api.registry import register_aggregation, register_metric

from harness.scorers.bleu import corpus_score
from harness.scorers.correlation import pearson, spearman
from harness.scorers.metrics import METRICS
from harness.scorers.rouge import ROUGE_TYPES, as_references, score_rouge
from harness.scorers.squad import squad_exact_match, squad_f1


def _register(name: str):
    """Register a metric function under name, with the aggregation and direction METRICS gives it
    (the names are not lm-eval's: checked in tests)."""
    registration = METRICS[name].registration
    assert registration is not None, name
    return register_metric(
        metric=name,
        higher_is_better=registration.higher_is_better,
        output_type=registration.output_type,
        aggregation=registration.aggregation,
    )


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
    _register(rouge_type)(rouge)


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


@_register("corpus_bleu")
def corpus_bleu_item(references, predictions, **kwargs):
    """(references, prediction) for the corpus aggregation; a gold may be a list of references."""
    gold, prediction = _single(references, predictions)
    return (list(as_references(gold)), prediction)


@_register("corpus_chrf")
def corpus_chrf_item(references, predictions, **kwargs):
    """(references, prediction) for the corpus aggregation; a gold may be a list of references."""
    gold, prediction = _single(references, predictions)
    return (list(as_references(gold)), prediction)


@_register("squad_exact_match")
def squad_exact_match_metric(references, predictions, **kwargs) -> float:
    """Official SQuAD v1.1 exact match, max over the gold answers (0/1)."""
    golds, prediction = _single(references, predictions)
    return squad_exact_match(golds, prediction)


@_register("squad_f1")
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


_register("pearson")(_pair)
_register("spearman")(_pair)
