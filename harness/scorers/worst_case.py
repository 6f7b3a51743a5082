"""Worst-case scores over perturbations, as HELM scores robustness and fairness.

HELM's `compute_worst_case_metrics` (crfm-helm 0.5.16, metrics/metric.py) takes, per instance and
metric, the worst of the original and its perturbations in a set (robustness, fairness, or one
perturbation), and averages over instances. `add_worst_case` does the same on lm-eval's per-sample
records: the clean pass's rows get one more field per set, `<metric>_worst_<set>` (keys.worst_metric),
the worst item of that document over the clean and perturbed passes; the task's score of that name
is the metric's own aggregation of those items. attach_statistics then gives it a stderr, interval
and signature like any score, and compare pairs it per document.

Two choices where HELM leaves room: the worst follows the metric's direction (HELM takes the
minimum always, with a TODO for lower-is-better metrics), and on a tie the clean item is kept. An
item that is a (gold, prediction) pair (lm-eval's f1, mcc) is ranked by whether it is right, so its
corpus-level aggregation runs over the worst documents; items of any other shape (BLEU's
references and prediction) have no per-document order, and the metric gets no worst case.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

from lm_eval.api import metrics as lm_metrics

from harness.scorers.keys import is_score, parse_worst, split_key, worst_metric

Rows = Mapping[str, list[dict[str, Any]]]  # task -> lm-eval's logged samples


def add_worst_case(
    results: dict[str, Any],
    samples: Rows,
    variants: Mapping[str, Rows],
    sets: Mapping[str, tuple[str, ...]],
    tasks: Iterable[Any],
) -> dict[str, list[str]]:
    """Worst-case scores of every metric of every task, per set (see the module doc); in place.

    `variants`: perturbation -> its pass's samples. Returns, per task, the metrics given no worst case."""
    from harness.scorers.statistics import flatten_tasks

    leaves, groups = flatten_tasks(tasks)
    scores_of: dict[str, dict[str, Any]] = results.get("results", {})
    directions = results.setdefault("higher_is_better", {})
    without: dict[str, list[str]] = {}
    for task, rows in samples.items():
        scores = scores_of.get(task)
        if scores is None:
            continue
        aggregations = leaves[task].aggregation() if task in leaves else {}
        higher = directions.setdefault(task, {})
        by_doc = {m: {(r["doc_id"], r.get("filter", "none")): r for r in v.get(task, [])} for m, v in variants.items()}
        for key in [k for k, v in scores.items() if is_score(k, v)]:
            metric, filt = split_key(key)
            if parse_worst(metric)[1] is not None:
                continue
            aggregation = aggregations.get(metric, lm_metrics.mean)
            for name, members in sets.items():
                items = _worst_items(rows, by_doc, members, metric, filt, bool(higher.get(metric, True)))
                if items is None:
                    if metric not in without.setdefault(task, []):
                        without[task].append(metric)
                    continue
                worst = worst_metric(metric, name)
                for row, item in items:
                    row[worst] = item
                scores[f"{worst},{filt}"] = aggregation([item for _, item in items])
                higher[worst] = higher.get(metric, True)
    for group in groups.values():  # the group scores its members' worst cases as it scores their metrics
        configs: list[Any] = [
            c for c in getattr(group, "aggregate_metric_list", None) or [] if dataclasses.is_dataclass(c)
        ]
        if configs:
            group.aggregate_metric_list = list(group.aggregate_metric_list) + [
                dataclasses.replace(c, metric=worst_metric(c.metric, name)) for c in configs for name in sets
            ]
    return without


def _worst_items(rows, by_doc, members, metric: str, filt: str, higher: bool) -> list[tuple[dict, Any]] | None:
    """(clean row, its worst item) per document scored by metric under filt; None if items have no order."""
    out = []
    for row in rows:
        if row.get("filter", "none") != filt or metric not in row:
            continue
        candidates = [row[metric]]
        for member in members:
            other = by_doc.get(member, {}).get((row["doc_id"], filt))
            if other is not None and metric in other:
                candidates.append(other[metric])
        ranks = [_rank(c, higher) for c in candidates]
        if any(r is None for r in ranks):
            return None
        best = min(range(len(candidates)), key=lambda i: ranks[i])  # type: ignore[arg-type,return-value]
        out.append((row, candidates[best]))
    return out or None


def _rank(item: Any, higher: bool) -> float | None:
    """Lower is worse-for-the-model first: a number (by direction), a (gold, prediction) pair by rightness."""
    if isinstance(item, numbers.Real):
        return float(item) if higher else -float(item)
    if isinstance(item, (list, tuple)) and len(item) == 2 and all(_scalar(x) for x in item) and higher:
        return float(item[0] == item[1])
    return None


def _scalar(x: Any) -> bool:
    return isinstance(x, (str, numbers.Number))


def attach_perturbed(samples: Rows, variants: Mapping[str, Rows]) -> None:
    """Each clean row gets `perturbed`: per perturbation, the doc fields it changed, the perturbed
    pass's filtered response and its per-document metrics (for browsing what the model saw)."""
    for task, rows in samples.items():
        for member, variant in variants.items():
            by_doc = {(r["doc_id"], r.get("filter", "none")): r for r in variant.get(task, [])}
            for row in rows:
                other = by_doc.get((row["doc_id"], row.get("filter", "none")))
                if other is None:
                    continue
                doc, changed = row.get("doc") or {}, other.get("doc") or {}
                row.setdefault("perturbed", {})[member] = {
                    "doc": {k: v for k, v in changed.items() if doc.get(k) != v},
                    "filtered_resps": other.get("filtered_resps"),
                    **{m: other[m] for m in row.get("metrics") or [] if m in other},
                }
