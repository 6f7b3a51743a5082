"""What harness knows about each metric, in one place: the libraries behind it, the options its
signature names, and how its standard error is obtained (closed form or bootstrap).

`METRICS` is keyed by metric name: lm-eval's built-ins, the metrics harness registers with lm-eval
(their aggregation and direction too: harness.scorers.registry registers them from here) and ECE.
A row holds for the aggregations its `scope` names, so a task that aggregates `acc` its own way is
described as a task's own metric. `STDERR` is keyed by aggregation, as lm-eval registers it: how a
score aggregated that way gets its standard error, whatever the metric's name (a task's own metric
averaged with `mean` gets the closed form). The statistics (harness.scorers.statistics) consult both
and write each score's signature (harness.scorers.signature) from a row's options and libraries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import sacrebleu

from harness.scorers.bleu import (
    new_metric,
    reference_streams,
    sacrebleu_options,
    scores_from_statistics,
    segment_statistics,
)
from harness.scorers.bootstrap import Estimate, bootstrap_resampled, bootstrap_statistic, mean_estimate
from harness.scorers.calibration import ECE_BINS
from harness.scorers.classification import confusion_rows, f1_from_counts, f1_rows, mcc_from_confusion
from harness.scorers.correlation import pearson_from_sums, pearson_rows, spearman_resampled
from harness.scorers.perplexity import bits_per_byte_from_sums, weighted_perplexity_from_sums
from harness.scorers.rouge import ROUGE_TYPES, rouge_options

LM_EVAL = "lm_eval"  # a scope: lm-eval's own aggregation for the metric


@dataclass(frozen=True)
class Registration:
    """How harness registers one of its metrics with lm-eval."""

    aggregation: str
    output_type: str | list[str] = "generate_until"
    higher_is_better: bool = True


@dataclass(frozen=True)
class Metric:
    """A metric's signature knowledge: libraries and options, for the aggregations in its scope."""

    libraries: tuple[str, ...]
    options: Mapping[str, object] | None = None  # None: the options the task's metric_list gives it
    scope: str | tuple[str, ...] | None = None  # None: any aggregation; LM_EVAL; or these aggregation names
    registration: Registration | None = None  # a metric harness registers with lm-eval

    def applies_to(self, aggregation: Callable) -> bool:
        if self.scope is None:
            return True
        if self.scope == LM_EVAL:
            from lm_eval.api import metrics as lm_metrics

            return getattr(aggregation, "__module__", "") == lm_metrics.__name__
        return any(_registered(name) is aggregation for name in self.scope)


_SACREBLEU_LIBS = ("sacrebleu", LM_EVAL)
METRICS: dict[str, Metric] = {
    **{t: Metric(("rouge-score",), rouge_options(t), registration=Registration("mean")) for t in ROUGE_TYPES},
    "corpus_bleu": Metric(("sacrebleu",), {}, registration=Registration("corpus_bleu")),
    "corpus_chrf": Metric(("sacrebleu",), {}, registration=Registration("corpus_chrf")),
    "squad_exact_match": Metric(
        ("harness",), {"norm": "squad-v1.1", "multiref": "max"}, registration=Registration("mean")
    ),
    "squad_f1": Metric(("harness",), {"norm": "squad-v1.1", "multiref": "max"}, registration=Registration("mean")),
    **{
        name: Metric(
            ("scipy",),
            {},
            scope=("pearson", "spearman"),
            registration=Registration(name, ["generate_until", "multiple_choice"]),
        )
        for name in ("pearson", "spearman")
    },
    # computed by harness itself for multiple-choice tasks: no aggregation of a task's is ECE (scope empty)
    "ece": Metric(("harness",), {"bins": ECE_BINS, "binning": "equal-width", "conf": "max-softmax"}, scope=()),
    # lm-eval's own metrics, when lm-eval's own aggregation scores them
    "acc": Metric((LM_EVAL,), {}, LM_EVAL),
    "acc_norm": Metric((LM_EVAL,), {"norm": "chars"}, LM_EVAL),
    "acc_bytes": Metric((LM_EVAL,), {"norm": "bytes"}, LM_EVAL),
    "acc_mutual_info": Metric((LM_EVAL,), {"pmi": True}, LM_EVAL),
    "exact_match": Metric((LM_EVAL,), None, LM_EVAL),  # ignore_case, regexes_to_ignore ...
    "mcc": Metric(("scikit-learn", LM_EVAL), {}, LM_EVAL),
    "f1": Metric(("scikit-learn", LM_EVAL), {"average": "binary", "pos_label": 1}, LM_EVAL),
    "word_perplexity": Metric((LM_EVAL,), {"unit": "words"}, LM_EVAL),
    "byte_perplexity": Metric((LM_EVAL,), {"unit": "bytes"}, LM_EVAL),
    "bits_per_byte": Metric((LM_EVAL,), {}, LM_EVAL),
    "perplexity": Metric((LM_EVAL,), {}, LM_EVAL),
    "brier_score": Metric((LM_EVAL,), {}, LM_EVAL),
    **{name: Metric(_SACREBLEU_LIBS, {}, LM_EVAL) for name in ("bleu", "chrf", "chrf++", "ter")},
}


def describe_metric(metric: str, aggregation: Callable, config: dict) -> tuple[dict[str, object], list[str]]:
    """Signature options and libraries of a metric: ours, lm-eval's built-ins, or a task's own."""
    row = METRICS.get(metric)
    if row is not None and row.applies_to(aggregation):
        return dict(config) if row.options is None else dict(row.options), list(row.libraries)
    return {"agg": getattr(aggregation, "__name__", str(aggregation)), **config}, [LM_EVAL]  # name the aggregation


# ---------------------------------------------------------------------------------- standard errors
@dataclass(frozen=True)
class Resampling:
    """The run's bootstrap settings for one score's items."""

    seed: int
    resamples: int
    n: int  # per-sample items

    @property
    def on(self) -> bool:
        return self.resamples > 0 and self.n > 1

    def statistic(self, stats: np.ndarray, score: Callable[[np.ndarray], np.ndarray]) -> Estimate | None:
        """The bootstrap of a score that is a function of summed per-sample rows (one matrix product a resample)."""
        return bootstrap_statistic(stats, score, self.resamples, self.seed) if self.on else None


# (items, signature options, resampling, aggregation) -> (estimate, signature options)
Estimator = Callable[[list, dict, Resampling, Callable], tuple["Estimate | None", dict]]


@dataclass(frozen=True)
class Stderr:
    """How a score's standard error is obtained: "closed form", "bootstrap" or "none"."""

    method: str
    estimate: Estimator


def _none(items, options, r, aggregation):
    return None, options


def _mean(items, options, r, aggregation):
    return mean_estimate([float(x) for x in items]), options


def _nanmean(items, options, r, aggregation):
    x = np.asarray(items, dtype=np.float64)
    return mean_estimate(x[np.isfinite(x)]), {**options, "nan": "dropped"}


def _brier(items, options, r, aggregation):  # mean over docs of Σ (p - one_hot(gold))²
    return mean_estimate([float(np.sum((np.asarray(p) - np.eye(len(p))[g]) ** 2)) for g, p in items]), options


def _perplexity(score: Callable[[np.ndarray], np.ndarray], weighted: bool = True) -> Estimator:
    def estimate(items, options, r, aggregation):
        # perplexity is exp(-mean ll): a weighted perplexity with weight 1
        stats = np.array(
            [(float(ll), float(units)) for ll, units in items] if weighted else [(float(ll), 1.0) for ll in items]
        )
        return r.statistic(stats, score), options

    return estimate


def _label(value: Any) -> Any:
    """A hashable class label (lm-eval's gold may be a one-element list)."""
    if isinstance(value, (list, tuple)) and len(value) == 1:
        return value[0]
    return value.item() if isinstance(value, np.generic) else value


def _mcc(items, options, r, aggregation):
    rows, k = confusion_rows([_label(g) for g, _ in items], [_label(p) for _, p in items])
    return r.statistic(rows, lambda s: mcc_from_confusion(s, k)), options


def _f1(items, options, r, aggregation):
    return r.statistic(f1_rows([_label(g) for g, _ in items], [_label(p) for _, p in items]), f1_from_counts), options


def _lm_eval_sacrebleu(metric: Callable[[], Any]) -> Estimator:
    """lm-eval's sacrebleu aggregations: the sacrebleu metric each one calls, with lm-eval's arguments."""

    def estimate(items, options, r, aggregation):
        from harness.lm_eval_compat import sacreformat

        metric_obj = metric()
        streams, preds = sacreformat([ref for ref, _ in items], [p for _, p in items])
        return _sacrebleu(metric_obj, list(preds), [list(s) for s in streams], options, r)

    return estimate


def _corpus(kind: str) -> Estimator:
    def estimate(items, options, r, aggregation):
        return _sacrebleu(
            new_metric(kind), [p for _, p in items], reference_streams([ref for ref, _ in items]), options, r
        )

    return estimate


def _sacrebleu(metric_obj, preds, streams, options, r):
    stats = segment_statistics(metric_obj, preds, streams)
    return r.statistic(stats, lambda s: scores_from_statistics(metric_obj, s)), {
        **sacrebleu_options(metric_obj),
        **options,
    }


def _pearson(items, options, r, aggregation):
    return r.statistic(pearson_rows([p for p, _ in items], [g for _, g in items]), pearson_from_sums), options


def _spearman(items, options, r, aggregation):
    x, y = [p for p, _ in items], [g for _, g in items]
    estimate = (
        bootstrap_resampled(r.n, lambda idx: spearman_resampled(x, y, idx), r.resamples, r.seed) if r.on else None
    )
    return estimate, options


def _task_own(items, options, r, aggregation):
    """A task's own aggregation, called once per resample (lm-eval's way; slow but general)."""
    import logging

    def replicate(idx: np.ndarray) -> np.ndarray:
        return np.array([float(aggregation([items[i] for i in row])) for row in idx])

    if not r.on:
        return None, options
    try:
        return bootstrap_resampled(r.n, replicate, r.resamples, r.seed), options
    except Exception as exc:  # a custom aggregation may not accept resampled items; report no interval
        logging.getLogger(__name__).warning(
            "no bootstrap for aggregation %s: %s", getattr(aggregation, "__name__", aggregation), exc
        )
        return None, options


STDERR: dict[str, Stderr] = {
    "bypass": Stderr("none", _none),
    "mean": Stderr("closed form", _mean),
    "nanmean": Stderr("closed form", _nanmean),
    "brier_score": Stderr("closed form", _brier),
    "perplexity": Stderr("bootstrap", _perplexity(weighted_perplexity_from_sums, weighted=False)),
    "weighted_perplexity": Stderr("bootstrap", _perplexity(weighted_perplexity_from_sums)),
    "bits_per_byte": Stderr("bootstrap", _perplexity(bits_per_byte_from_sums)),
    "matthews_corrcoef": Stderr("bootstrap", _mcc),
    "f1": Stderr("bootstrap", _f1),
    "bleu": Stderr("bootstrap", _lm_eval_sacrebleu(lambda: sacrebleu.metrics.BLEU())),
    "chrf": Stderr("bootstrap", _lm_eval_sacrebleu(lambda: sacrebleu.metrics.CHRF())),
    "chrf++": Stderr("bootstrap", _lm_eval_sacrebleu(lambda: sacrebleu.metrics.CHRF(word_order=2))),
    "ter": Stderr("bootstrap", _lm_eval_sacrebleu(lambda: sacrebleu.metrics.TER())),
    "corpus_bleu": Stderr("bootstrap", _corpus("bleu")),
    "corpus_chrf": Stderr("bootstrap", _corpus("chrf")),
    "pearson": Stderr("bootstrap", _pearson),
    "spearman": Stderr("bootstrap", _spearman),
}
TASK_OWN = Stderr("bootstrap", _task_own)  # any other aggregation


def _registered(name: str) -> Callable | None:
    """The aggregation function lm-eval's registry holds under a name (ours once registry.py has run)."""
    from lm_eval.api.registry import AGGREGATION_REGISTRY

    return AGGREGATION_REGISTRY.get(name)


def stderr_method(aggregation: Callable) -> Stderr:
    """How a score computed by this aggregation gets its standard error."""
    return next((m for name, m in STDERR.items() if _registered(name) is aggregation), TASK_OWN)
