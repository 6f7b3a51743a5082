"""BLEU and chrF through sacrebleu (its defaults): corpus scores, per-segment statistics, sentence BLEU.

Corpus BLEU/chrF are functions of statistics summed over segments (n-gram matches, lengths), so a
bootstrap resample only needs those per-segment statistics re-summed: `segment_statistics` gives them,
`scores_from_statistics` turns summed rows back into scores with sacrebleu's own formula.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import sacrebleu
from sacrebleu.metrics.base import Metric

from harness.scorers.rouge import as_references

KINDS = ("bleu", "chrf")


def new_metric(kind: str) -> Metric:
    """A sacrebleu metric object with sacrebleu's default options (BLEU: 13a, exp smoothing; chrF: c6 w0 b2)."""
    if kind == "bleu":
        return sacrebleu.metrics.BLEU()
    if kind == "chrf":
        return sacrebleu.metrics.CHRF()
    raise ValueError(f"unknown sacrebleu metric {kind!r} (known: {', '.join(KINDS)})")


def reference_streams(references: Sequence[str | Sequence[str]]) -> list[list[Any]]:  # str, or None: no reference
    """Per-segment reference lists as sacrebleu's streams (one per reference position).

    A segment with fewer references than the widest is padded with None, which sacrebleu skips: its
    documented way to give segments different numbers of references.
    """
    refs = [as_references(r) for r in references]
    width = max((len(r) for r in refs), default=0)
    return [[r[i] if i < len(r) else None for r in refs] for i in range(width)]


def corpus_score(kind: str, predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> float:
    """sacrebleu corpus BLEU or chrF (0-100) of predictions against their reference(s)."""
    return new_metric(kind).corpus_score(list(predictions), reference_streams(references)).score


def segment_statistics(metric: Metric, predictions: Sequence[str], streams: list[list[Any]]) -> np.ndarray:
    """sacrebleu's per-segment sufficient statistics (one row a segment) for summing and resampling."""
    # the same private step corpus_score and sacrebleu's own bootstrap (significance.py) use
    return np.asarray(metric._extract_corpus_statistics(list(predictions), streams), dtype=np.float64)


def scores_from_statistics(metric: Metric, sums: np.ndarray) -> np.ndarray:
    """Scores for rows of summed segment statistics, by sacrebleu's formula."""
    sums = np.atleast_2d(sums)
    return np.array([metric._compute_score_from_stats(row).score for row in sums], dtype=np.float64)


def sentence_bleu(prediction: str, references: str | Sequence[str]) -> float:
    """sacrebleu sentence BLEU (0-100; exp smoothing with effective order, sacrebleu's sentence defaults)."""
    return sacrebleu.sentence_bleu(prediction, list(as_references(references))).score


def sacrebleu_options(metric: Metric) -> dict[str, str]:
    """sacrebleu's own signature fields for a metric that has scored (nrefs known), without its version."""
    fields = dict(pair.split(":", 1) for pair in metric.get_signature().format().split("|"))
    fields.pop("version", None)
    return fields
