"""Stderr, 95% interval and signature for every score of an lm-eval run; ECE; sentence BLEU per sample.

The engine runs lm-eval with `bootstrap_iters=0` (lm-eval then computes no stderr at all) and hands the
results and the per-sample records lm-eval logged to `attach_statistics`, which fills in, in place:

- `results[task]["<metric>_stderr,<filter>"]`: lm-eval's own key, now a number for every metric
  (closed form for means, the same value lm-eval reports; a vectorised seeded bootstrap otherwise);
- `ci95[task]["<metric>,<filter>"]`: the 95% interval [lo, hi] (normal for means and group scores,
  bootstrap percentiles otherwise), or null;
- `signatures[task]["<metric>,<filter>"]`: the score's signature (see harness.scorers.signature);
- `results[task]["ece,<filter>"]` (+ stderr, interval, signature) for every multiple-choice task;
- groups: lm-eval's own `Group.aggregate` re-run on the filled-in task stderrs (pooled stderr);
- `sentence_bleu` on each sample record of a task that reports `corpus_bleu` or lm-eval's `bleu`.
"""

from __future__ import annotations

import logging
import numbers
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from lm_eval.api import metrics as lm_metrics

from harness.scorers.bleu import sentence_bleu
from harness.scorers.bootstrap import Estimate, bootstrap_statistic, normal_interval
from harness.scorers.calibration import choice_confidence, ece_from_sums, ece_rows
from harness.scorers.keys import is_score, parse_worst, split_key, stderr_key
from harness.scorers.metrics import METRICS, Resampling, describe_metric, stderr_method
from harness.scorers.signature import format_signature

log = logging.getLogger(__name__)

_CONFIG_KEYS = ("metric", "aggregation", "higher_is_better", "hf_evaluate")


def attach_statistics(
    results: dict[str, Any], samples: dict[str, list[dict]], tasks: Iterable[Any], *, seed: int, resamples: int
) -> None:
    """Fill in stderr, ci95, signatures, ECE and sentence BLEU (see the module docstring); in place."""
    leaves, groups = flatten_tasks(tasks)
    annotator = _Annotator(results, seed, resamples)
    for name, task in leaves.items():
        if name in annotator.scores:
            annotator.task(name, task, samples.get(name, []))
    for group in _bottom_up(groups):
        if group.name in annotator.scores:
            annotator.group(group)


class _Annotator:
    """Writes one run's stderr, intervals and signatures into its lm-eval results dict."""

    def __init__(self, results: dict[str, Any], seed: int, resamples: int):
        self.results, self.seed, self.resamples = results, seed, resamples
        self.scores: dict[str, dict[str, Any]] = results.setdefault("results", {})
        self.ci95: dict[str, dict[str, Any]] = results.setdefault("ci95", {})
        self.signatures: dict[str, dict[str, str]] = results.setdefault("signatures", {})
        self.described: dict[tuple[str, str], tuple[dict, list[str]]] = {}  # (task, key) -> options, libraries
        self.calibration: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}  # (task, filter) -> conf, correct

    def record(self, task: str, key: str, estimate: Estimate | None, options: dict, libraries: list[str]) -> None:
        metric, filt = split_key(key)
        stderr = estimate.stderr if estimate is not None else None
        self.scores[task][stderr_key(metric, filt)] = stderr if stderr is not None else "N/A"
        self.ci95.setdefault(task, {})[key] = list(estimate.ci95) if estimate is not None and estimate.ci95 else None
        self.signatures.setdefault(task, {})[key] = format_signature(metric, options, estimate, libraries)
        self.described[(task, key)] = (options, libraries)

    def task(self, name: str, task: Any, rows: list[dict]) -> None:
        """Every score of a leaf task from its logged samples; ECE if multiple-choice; sentence BLEU."""
        by_filter: dict[str, list[dict]] = defaultdict(list)
        for row in rows:
            by_filter[row.get("filter", "none")].append(row)
        aggregations = task.aggregation()
        config = self.results.get("configs", {}).get(name, {})
        for key in [k for k, v in self.scores[name].items() if is_score(k, v)]:
            metric, filt = split_key(key)
            items = [row[metric] for row in by_filter.get(filt, []) if metric in row]
            base, worst_of = parse_worst(metric)  # a worst-case score is its metric's, over other items
            aggregation = aggregations.get(base, lm_metrics.mean)  # lm-eval's fallback is mean too
            options, libraries = describe_metric(base, aggregation, _metric_config(config, base))
            try:
                estimate, options, libraries = estimate_score(
                    base, aggregation, items, _metric_config(config, base), seed=self.seed, resamples=self.resamples
                )
            except Exception as exc:  # per-sample items we cannot read must not cost the finished run
                log.warning("%s %s: no stderr or interval (%s: %s)", name, key, type(exc).__name__, exc)
                estimate = None
            if worst_of is not None:
                options = {**options, "worst_case": worst_of}
            self.record(name, key, estimate, options, libraries)
        if getattr(task, "OUTPUT_TYPE", config.get("output_type")) == "multiple_choice":
            for filt, filter_rows in by_filter.items():
                pairs = confidence_and_correct(filter_rows)
                if pairs is not None:
                    self.calibration[(name, filt)] = pairs
                    self.ece(name, filt, pairs)
        add_sentence_bleu(rows)

    def group(self, group: Any) -> None:
        """lm-eval's own group aggregation over the filled-in task stderrs; normal intervals; pooled ECE."""
        aggregated = group.aggregate(self.scores)
        self.scores[group.name] = aggregated
        if group.name in self.results.get("groups", {}):
            self.results["groups"][group.name] = aggregated  # the same dict: later additions show in both
        leaf_names = [t.task_name for t in group.get_all_tasks()]
        weighting = {a.metric: a.weight_by_size for a in group.aggregate_metric_list or []}
        for key in [k for k, v in aggregated.items() if is_score(k, v)]:
            metric, filt = split_key(key)
            stderr = aggregated.get(stderr_key(metric, filt))
            estimate = (
                Estimate(float(stderr), normal_interval(aggregated[key], float(stderr)), "normal")
                if isinstance(stderr, numbers.Real)
                else None
            )
            options, libraries = next(
                (self.described[(t, key)] for t in leaf_names if (t, key) in self.described), ({}, [])
            )
            group_options = {**options, "group": "size-weighted" if weighting.get(metric, True) else "mean"}
            self.record(group.name, key, estimate, group_options, libraries)
        for filt in {f for (t, f) in self.calibration if t in leaf_names}:
            if all((t, filt) in self.calibration for t in leaf_names):  # ECE over all the group's docs
                conf, correct = (np.concatenate([self.calibration[(t, filt)][i] for t in leaf_names]) for i in (0, 1))
                pooled = (conf, correct)
                self.calibration[(group.name, filt)] = pooled
                self.ece(group.name, filt, pooled, {"group": "pooled-docs"})

    def ece(self, name: str, filt: str, pairs: tuple[np.ndarray, np.ndarray], extra: dict | None = None) -> None:
        rows = ece_rows(*pairs)  # type: ignore[arg-type]  # arrays, as Sequence[float]
        key = f"ece,{filt}"
        self.scores[name][key] = float(ece_from_sums(rows.sum(axis=0))[0])
        estimate = bootstrap_statistic(rows, ece_from_sums, self.resamples, self.seed) if self.resamples > 0 else None
        ece = METRICS["ece"]
        self.record(name, key, estimate, {**(ece.options or {}), **(extra or {})}, list(ece.libraries))
        self.results.setdefault("higher_is_better", {}).setdefault(name, {})["ece"] = False


def estimate_score(
    metric: str, aggregation: Callable, items: list, config: dict, *, seed: int, resamples: int
) -> tuple[Estimate | None, dict[str, object], list[str]]:
    """(uncertainty, signature options, libraries) of one score from its per-sample items."""
    options, libraries = describe_metric(metric, aggregation, config)
    if not items:
        return None, options, libraries
    estimate, options = stderr_method(aggregation).estimate(
        items, options, Resampling(seed, resamples, len(items)), aggregation
    )
    return estimate, options, libraries


def confidence_and_correct(rows: list[dict]) -> tuple[np.ndarray, np.ndarray] | None:
    """Per doc of a multiple-choice task: softmax confidence of the argmax choice, and whether it is right.

    Correctness is lm-eval's own per-doc `acc` (or gold == prediction of `mcc`/`f1`); a task reporting
    neither has no ECE.
    """
    conf, correct = [], []
    for row in rows:
        try:
            lls = [float(resp[0]) for resp in row.get("filtered_resps") or []]
        except (TypeError, ValueError, IndexError):
            return None
        if "acc_mutual_info" in row:  # the second half are the unconditional loglikelihoods
            lls = lls[: len(lls) // 2]
        if "acc" in row:
            right = float(row["acc"])
        elif "mcc" in row or "f1" in row:
            gold, pred = row["mcc"] if "mcc" in row else row["f1"]
            right = float(gold == pred)
        else:
            return None
        if not lls:
            return None
        conf.append(choice_confidence(lls))
        correct.append(right)
    return (np.array(conf), np.array(correct)) if conf else None


def add_sentence_bleu(rows: list[dict]) -> None:
    """sacrebleu sentence BLEU on each sample that carries a corpus BLEU item, for browsing."""
    for row in rows:
        item = row.get("corpus_bleu", row.get("bleu"))
        if item is None or "sentence_bleu" in row:
            continue
        references, prediction = item
        if isinstance(prediction, (list, tuple)):  # lm-eval's own items may wrap the prediction
            prediction = prediction[0]
        row["sentence_bleu"] = sentence_bleu(prediction, references)


def _metric_config(config: dict, metric: str) -> dict:
    """The options a task's metric_list gives a metric (e.g. exact_match's ignore_case), in YAML order."""
    for entry in config.get("metric_list") or []:
        if isinstance(entry, dict) and entry.get("metric") == metric:
            return {k: v for k, v in entry.items() if k not in _CONFIG_KEYS}
    return {}


def flatten_tasks(tasks: Iterable[Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Leaf tasks and groups (every level) of lm-eval's built Task/Group objects, by name."""
    from lm_eval.api.group import Group

    leaves: dict[str, Any] = {}
    groups: dict[str, Any] = {}
    for obj in tasks:
        if isinstance(obj, Group):
            groups[obj.name] = obj
            groups.update({g.name: g for g in obj.get_all_groups(recursive=True)})
            leaves.update({t.task_name: t for t in obj.get_all_tasks(recursive=True)})
        else:
            leaves[obj.task_name] = obj
    return leaves, groups


def _bottom_up(groups: dict[str, Any]) -> list[Any]:
    """Groups with every subgroup before its parent."""
    order: list[Any] = []
    seen: set[str] = set()

    def visit(group) -> None:
        if group.name in seen:
            return
        seen.add(group.name)
        for child in group.get_all_groups(recursive=False):
            visit(child)
        order.append(group)

    for group in groups.values():
        visit(group)
    return order
